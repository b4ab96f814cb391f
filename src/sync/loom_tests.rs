//! Loom models of the wait/notify protocol and of every primitive: mutual exclusion, owner death at any step, no lost wake-ups,
//! barrier leaders and reuse, rwlock exclusion.
//!
//! Run: `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!       cargo test --lib --release sync::loom_tests`
//!
//! The futex model (`crate::loom::futex`) makes an untimed wait block until woken, so a lost
//! wake-up is a loom deadlock; a timed wait times out at once (after a yield). Data is kept in
//! loom `UnsafeCell`s, so two threads in a critical section at once is a detected race.

use super::owner::model::{self, ModelProbe};
use super::raw_mutex::{Locked, RawMutex, WAITERS, owner_word};
use super::wait::{Asymmetric, Points, Poll, Signal, Symmetric, Waiters, block_on};
use super::{Barrier, BarrierError, Condvar, Event, LockError, Mutex, RwLock, Semaphore};
use crate::loom::UnsafeCell;
use crate::loom::futex;
use crate::loom::model;
use crate::loom::sync::Arc;
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use crate::loom::thread;

/// Runs `f` on a new thread with its own reference to `shared` (loom's threads need no `Send`:
/// the cells that hold data unsynchronised on purpose are not `Sync`).
fn spawn_with<S: 'static, R: 'static>(
    shared: &Arc<S>,
    f: impl FnOnce(&S) -> R + 'static,
) -> thread::JoinHandle<R> {
    let shared = Arc::clone(shared);
    thread::spawn(move || f(&shared))
}

/// Runs `f` on `n` new threads, each with its own reference to `shared`.
fn spawn_n<S: Send + Sync + 'static, R: Send + 'static>(
    n: usize,
    shared: &Arc<S>,
    f: impl Fn(&S) -> R + Clone + Send + 'static,
) -> Vec<thread::JoinHandle<R>> {
    (0..n).map(|_| spawn_with(shared, f.clone())).collect()
}

/// A thread that makes time pass twice, at arbitrary points of the other threads, so that
/// waiters check on live holders wherever those are.
fn ticker() -> thread::JoinHandle<()> {
    thread::spawn(|| {
        model::time_passes();
        model::time_passes();
    })
}

/// The calling thread dies holding `guard` (forgotten: it is never released).
fn die_holding<G>(guard: G) {
    std::mem::forget(guard);
    model::die();
}

/// Joins every thread of `hs`, in order; what they returned.
fn join_all<R>(hs: Vec<thread::JoinHandle<R>>) -> Vec<R> {
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

/// A raw mutex and a cell it protects.
struct Guarded {
    raw: RawMutex,
    cell: UnsafeCell<u32>,
}

impl Guarded {
    fn new() -> Self {
        Guarded {
            raw: RawMutex::new(),
            cell: UnsafeCell::new(0),
        }
    }

    fn touch(&self) {
        // SAFETY: called with the lock held (that is what the model checks: loom reports a race
        // if two threads get here concurrently).
        self.cell.with_mut(|p| unsafe { *p += 1 });
    }

    /// Locks (cleanly: nobody dies here), touches the cell and unlocks.
    fn lock_touch_unlock(&self, probe: &ModelProbe) {
        assert_eq!(self.raw.lock(probe, None), Ok(Locked::Clean));
        self.touch();
        self.raw.unlock();
    }
}

#[test]
fn mutex_exclusion_two_threads_no_lost_wakeup() {
    // No polling: waiters sleep until woken, so a lost wake-up deadlocks the model.
    model(|| {
        let g = Arc::new(Guarded::new());
        let probe = ModelProbe { poll: false };
        let t = spawn_with(&g, move |g| g.lock_touch_unlock(&probe));
        g.lock_touch_unlock(&probe);
        t.join().unwrap();
        g.cell.with(|p| {
            // SAFETY: both threads are done.
            assert_eq!(unsafe { *p }, 2)
        });
    });
}

#[test]
fn mutex_exclusion_three_threads_polling() {
    // Polling waiters (as in production) must never judge a live owner dead.
    model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let hs = spawn_n(2, &m, |m| *m.lock().unwrap() += 1);
        *m.lock().unwrap() += 1;
        join_all(hs);
        assert_eq!(*m.lock().unwrap(), 3);
    });
}

#[test]
fn mutex_polling_never_judges_a_live_owner_dead() {
    // A third thread makes time pass twice at arbitrary points, so the waiter checks on the live
    // owner wherever it is (including right after its CAS): it must never take over.
    model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let t = spawn_with(&m, |m| *m.lock().unwrap() += 1);
        let ticker = ticker();
        *m.lock().unwrap() += 1;
        t.join().unwrap();
        ticker.join().unwrap();
        assert_eq!(*m.lock().unwrap(), 2);
    });
}

#[test]
fn mutex_try_lock_exclusion() {
    model(|| {
        let g = Arc::new(Guarded::new());
        let probe = ModelProbe { poll: false };
        let t = spawn_with(&g, move |g| {
            if g.raw.try_lock(&probe).is_ok() {
                g.touch();
                g.raw.unlock();
            }
        });
        g.lock_touch_unlock(&probe);
        t.join().unwrap();
    });
}

/// The owner runs lock/critical section/unlock as separate steps and stops for good after step
/// `stop` (0 = before locking, 1 = right after its CAS, 2 = after writing the data, 3 = after a
/// complete unlock); its id then names no thread (or, with `reuse`, a newer thread). The other
/// thread must lock cleanly or get `OwnerDied`, exactly when the owner stopped while holding;
/// never hang, never overlap (the data cell would report a race).
fn owner_stops_at(stop: u32, reuse: bool) {
    model(move || {
        let g = Arc::new(Guarded::new());
        let owner = spawn_with(&g, move |g2| {
            let probe = ModelProbe::default();
            let word = g2.raw.raw_word();
            let finish = |held: bool| {
                if reuse {
                    model::die_and_reuse();
                } else {
                    model::die();
                }
                held
            };
            let (tid, start) = super::owner::OwnerProbe::identity(&probe);
            if stop == 0 {
                return finish(false);
            }
            if word
                .compare_exchange(
                    0,
                    owner_word(tid, start),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                // The other thread holds it: give up and exit without holding.
                return finish(false);
            }
            if stop == 1 {
                return finish(true);
            }
            g2.touch();
            if stop == 2 {
                return finish(true);
            }
            if word.swap(0, Ordering::Release) & WAITERS != 0 {
                futex::wake_low(word, 1);
            }
            finish(false)
        });
        let r = g.raw.lock(&ModelProbe::default(), None);
        g.touch();
        let owner_died_holding = owner.join().unwrap();
        match r {
            Ok(Locked::OwnerDied) => assert!(owner_died_holding, "OwnerDied for a live owner"),
            Ok(Locked::Clean) => assert!(!owner_died_holding, "missed an owner death"),
            Err(e) => panic!("unexpected {e:?}"),
        }
        g.raw.make_consistent();
        g.raw.unlock();
    });
}

#[test]
fn mutex_owner_stops_at_any_step() {
    for stop in 0..=3 {
        owner_stops_at(stop, false);
    }
}

#[test]
fn mutex_owner_stops_and_tid_is_reused() {
    for stop in 0..=3 {
        owner_stops_at(stop, true);
    }
}

#[test]
fn mutex_two_waiters_exactly_one_owner_died() {
    // The owner dies holding; of two lockers exactly one is told OwnerDied. The one told repairs
    // or not; without repair the other gets NotRecoverable.
    for repair in [true, false] {
        model(move || {
            let m = Arc::new(Mutex::new(0u32));
            spawn_with(&m, |m| die_holding(m.lock().unwrap()))
                .join()
                .unwrap();
            let outcome = move |m: &Mutex<u32>| match m.lock() {
                Ok(_) => 0,
                Err(LockError::OwnerDied(mut g)) => {
                    if repair {
                        g.make_consistent();
                    }
                    1
                }
                Err(LockError::NotRecoverable) => 2,
                Err(e) => panic!("unexpected {e:?}"),
            };
            let other = spawn_with(&m, outcome);
            let mine = outcome(&m);
            let theirs = other.join().unwrap();
            let mut both = [mine, theirs];
            both.sort();
            assert_eq!(both, if repair { [0, 1] } else { [1, 2] });
        });
    }
}

#[test]
fn mutex_blocked_waiter_sees_death_without_wake() {
    // The waiter blocks first; the owner then dies holding. Nobody wakes the waiter: it must find
    // out by polling.
    model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let g = m.lock().unwrap();
        let waiter = spawn_with(&m, |m| matches!(m.lock(), Err(LockError::OwnerDied(_))));
        die_holding(g);
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn condvar_no_lost_wakeup() {
    model(|| {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let t = spawn_with(&pair, |pair| {
            *pair.0.lock().unwrap() = true;
            pair.1.notify_one();
        });
        let g = pair.1.wait_while(pair.0.lock().unwrap(), |ready| !*ready);
        assert!(*g.unwrap());
        t.join().unwrap();
    });
}

#[test]
fn condvar_notify_outside_lock_and_all() {
    model(|| {
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        let waiter = spawn_with(&pair, |pair| {
            let g = pair.1.wait_while(pair.0.lock().unwrap(), |n| *n == 0);
            *g.unwrap()
        });
        {
            *pair.0.lock().unwrap() = 1;
        }
        pair.1.notify_all();
        assert_eq!(waiter.join().unwrap(), 1);
    });
}

#[test]
fn semaphore_no_lost_wakeup() {
    model(|| {
        let s = Arc::new(Semaphore::new(0));
        let a = spawn_with(&s, |s| s.acquire());
        let b = spawn_with(&s, |s| s.release().unwrap());
        s.release().unwrap();
        s.acquire();
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.value(), 0);
    });
}

#[test]
fn semaphore_bounded_never_exceeds() {
    model(|| {
        let s = Arc::new(Semaphore::bounded(1));
        s.acquire();
        let t = spawn_with(&s, |s| s.release().is_ok());
        let mine = s.release().is_ok();
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "exactly one release fits");
        assert_eq!(s.value(), 1);
    });
}

/// A waiter in `block_on` on a word that a second thread sets to 7 and then ends with `peer`
/// (a notify, or death without one): the waiter returns 7 and leaves no waiter counted.
fn waiters_model(peer: fn(&(AtomicU32, Waiters<Symmetric>))) {
    model(move || {
        let s = Arc::new((AtomicU32::new(0), Waiters::<Symmetric>::new()));
        let t = spawn_with(&s, move |s| {
            s.0.store(7, Ordering::Release);
            peer(s);
        });
        let got = block_on(&s.1, &s.0, None, true, Points::NONE, || {
            match s.0.load(Ordering::Acquire) {
                0 => Poll::Sleep(0),
                v => Poll::Ready(v),
            }
        });
        assert_eq!(got, Some(7));
        t.join().unwrap();
        assert_eq!(s.1.count(), 0);
    });
}

/// The same through a ring's [`Signal`] with [`Asymmetric`] fences: progress published outside
/// the futex word (a ring index, set to 1 here) and a sequence word that only wakes bump.
fn signal_model(peer: fn(&(AtomicU32, Signal<Asymmetric>))) {
    model(move || {
        let s = Arc::new((AtomicU32::new(0), Signal::<Asymmetric>::new()));
        let t = spawn_with(&s, move |s| {
            s.0.store(1, Ordering::Release);
            peer(s);
        });
        let got = s.1.block_on(
            None,
            true,
            || match s.0.load(Ordering::Acquire) {
                0 => Err(()),
                v => Ok(v),
            },
            |_| true,
        );
        assert_eq!(got, Ok(1));
        t.join().unwrap();
    });
}

/// The wait/notify protocol of `sync/wait.rs` alone, as the primitives use it: a waiter in
/// `block_on` on a word that a notifier changes and then notifies is always woken (a lost
/// wake-up is a loom deadlock), and leaves the waiter count as it found it. The per-primitive
/// models below check each primitive's use of it (what it sleeps on, what it publishes).
#[test]
fn wait_protocol_no_lost_wakeup() {
    waiters_model(|s| {
        s.1.notify(&s.0, false);
    });
}

/// The same protocol through a ring's [`Signal`].
#[test]
fn signal_protocol_no_lost_wakeup() {
    signal_model(|s| s.1.notify_one());
}

/// A notifier that changes the word and dies before its wake call (no `notify`): the waiter,
/// with no deadline, still returns, because it sleeps in slices and re-checks (in the model, a
/// slice ends when a thread dies). Before the slices, this model deadlocked.
#[test]
fn block_on_survives_a_waker_that_never_wakes() {
    waiters_model(|_| model::die());
}

/// The same for a ring's [`Signal`]: a producer that published and died before `notify_one`.
#[test]
fn signal_survives_a_waker_that_never_wakes() {
    signal_model(|_| model::die());
}

/// A condvar notifier that bumps the sequence and dies before its wake: the waiter (no
/// deadline) returns from its sleep, not spuriously: the sequence changed.
#[test]
fn condvar_sleep_survives_a_notifier_that_never_wakes() {
    model(|| {
        let s = Arc::new((AtomicU32::new(0), Waiters::<Symmetric>::new()));
        let covered = s.1.register();
        let seq = s.0.load(Ordering::Relaxed);
        let t = spawn_with(&s, |s| {
            s.0.fetch_add(1, Ordering::Relaxed);
            model::die();
        });
        assert!(super::wait::sleep_while_eq(&s.0, seq, None, covered));
        s.1.unregister();
        t.join().unwrap();
    });
}

/// A party that arrives and dies while it waits breaks the barrier for the other waiter (no
/// deadline), naming it, whichever arrived first; the dead party is left for, so nobody is
/// counted afterwards.
#[test]
fn barrier_party_death_breaks_it_for_the_waiter() {
    model(|| {
        let b = Arc::new(Barrier::new(3).unwrap());
        let t = spawn_with(&b, |b| {
            b.arrive_and_die();
            model::current_tid()
        });
        let r = b.wait();
        let pid = t.join().unwrap();
        assert_eq!(r, Err(BarrierError::PartyDied { pid }));
        assert_eq!(b.n_waiting(), 0);
        assert!(b.is_broken());
    });
}

/// A registered party that dies without arriving breaks the barrier for the waiter (no
/// deadline), naming it.
#[test]
fn barrier_registered_party_death_breaks_it_for_the_waiter() {
    model(|| {
        let b = Arc::new(Barrier::new(2).unwrap());
        let t = spawn_with(&b, |b| {
            die_holding(b.register().unwrap());
            model::current_tid()
        });
        let r = b.wait();
        let pid = t.join().unwrap();
        assert_eq!(r, Err(BarrierError::PartyDied { pid }));
        assert_eq!(b.n_waiting(), 0);
    });
}

#[test]
fn event_set_then_clear_releases_waiter() {
    model(|| {
        let e = Arc::new(Event::new());
        let t = spawn_with(&e, |e| e.wait());
        // Set and clear only once the waiter waits (a waiter arriving after the clear would
        // rightly block).
        while e.waiters() == 0 {
            thread::yield_now();
        }
        e.set();
        e.clear();
        // The waiter must return even though the flag is clear again.
        t.join().unwrap();
    });
}

#[test]
fn barrier_one_leader_two_generations() {
    model(|| {
        let s = Arc::new((
            Barrier::new(2).unwrap(),
            [AtomicU32::new(0), AtomicU32::new(0)],
        ));
        let run = |(b, leaders): &(Barrier, [AtomicU32; 2])| {
            for lead in leaders {
                if b.wait().unwrap() == 0 {
                    lead.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        let t = spawn_with(&s, run);
        run(&s);
        t.join().unwrap();
        for lead in s.1.iter() {
            assert_eq!(lead.load(Ordering::Relaxed), 1);
        }
    });
}

#[test]
fn barrier_reset_vs_completion_no_aba() {
    // Two parties that retry after Broken; a third thread resets once. A party told Ok must
    // really have completed a generation with its partner: if one were told Ok by mistake (a
    // reset taken for a completion), the other would retry alone and loom would report the
    // deadlock. The barrier must end empty and unbroken.
    model(|| {
        let b = Arc::new(Barrier::new(2).unwrap());
        let until_ok = |b: &Barrier| loop {
            match b.wait() {
                Ok(i) => return i,
                Err(BarrierError::Broken) => continue,
                Err(e) => panic!("unexpected {e:?}"),
            }
        };
        let w1 = spawn_with(&b, until_ok);
        let r = spawn_with(&b, |b| b.reset());
        let mine = until_ok(&b);
        let theirs = w1.join().unwrap();
        r.join().unwrap();
        assert_eq!(mine + theirs, 1, "one leader");
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    });
}

#[test]
fn barrier_abort_breaks_waiter() {
    model(|| {
        let b = Arc::new(Barrier::new(2).unwrap());
        let w = spawn_with(&b, |b| b.wait());
        b.abort();
        assert_eq!(w.join().unwrap(), Err(BarrierError::Broken));
        assert!(b.is_broken());
    });
}

#[test]
fn rwlock_exclusion_and_no_lost_wakeup() {
    model(|| {
        let l = Arc::new(RwLock::new(0u32));
        let w = spawn_with(&l, |l| *l.write().unwrap() += 1);
        let r = spawn_with(&l, |l| {
            let v = *l.read().unwrap();
            assert!(v <= 2);
        });
        *l.write().unwrap() += 1;
        w.join().unwrap();
        r.join().unwrap();
        assert_eq!(*l.read().unwrap(), 2);
    });
}

#[test]
fn rwlock_readers_share_writer_waits() {
    model(|| {
        let l = Arc::new(RwLock::new(0u32));
        let reader = spawn_with(&l, |l| *l.read().unwrap());
        let v = {
            let g = l.read().unwrap();
            *g
        };
        *l.write().unwrap() = 5;
        assert!(reader.join().unwrap() <= 5);
        assert_eq!(v, 0);
    });
}

#[test]
fn semaphore_two_blocked_acquirers() {
    model(|| {
        let s = Arc::new(Semaphore::new(0));
        let hs = spawn_n(2, &s, |s| s.acquire());
        s.release().unwrap();
        s.release().unwrap();
        join_all(hs);
        assert_eq!(s.value(), 0);
    });
}

#[test]
fn condvar_two_waiters_two_notify_one() {
    model(|| {
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        let hs = spawn_n(2, &pair, |pair| {
            let mut g = pair
                .1
                .wait_while(pair.0.lock().unwrap(), |n| *n == 0)
                .unwrap();
            *g -= 1;
        });
        for _ in 0..2 {
            *pair.0.lock().unwrap() += 1;
            pair.1.notify_one();
        }
        join_all(hs);
        assert_eq!(*pair.0.lock().unwrap(), 0);
    });
}

#[test]
fn event_two_waiters() {
    model(|| {
        let e = Arc::new(Event::new());
        let hs = spawn_n(2, &e, |e| e.wait());
        e.set();
        join_all(hs);
    });
}

#[test]
fn barrier_three_parties() {
    model(|| {
        let b = Arc::new(Barrier::new(3).unwrap());
        let hs = spawn_n(2, &b, |b| b.wait().unwrap());
        let mut idx = vec![b.wait().unwrap()];
        idx.extend(join_all(hs));
        idx.sort();
        assert_eq!(idx, [0, 1, 2]);
    });
}

#[test]
fn rwlock_two_writers_one_reader() {
    model(|| {
        let l = Arc::new(RwLock::new(0u32));
        let hs = spawn_n(2, &l, |l| *l.write().unwrap() += 1);
        let v = *l.read().unwrap();
        assert!(v <= 2);
        join_all(hs);
        assert_eq!(*l.read().unwrap(), 2);
    });
}

/// A robust holder's thread takes a permit of a bounded(1) semaphore and dies holding it (its
/// guard forgotten); a plain acquirer, blocked or not yet, gets the permit back without any
/// wake-up, and afterwards the semaphore holds exactly one permit.
#[test]
fn semaphore_robust_holder_dies_holding() {
    model(|| {
        let s = Arc::new(Semaphore::bounded(1));
        let holder = spawn_with(&s, |s| die_holding(s.acquire_robust().unwrap()));
        s.acquire();
        s.release().unwrap();
        holder.join().unwrap();
        s.reclaim();
        assert_eq!(s.value(), 1);
        assert_eq!(s.occupied_slots(), 0);
    });
}

/// A robust holder runs acquire and release as separate steps and dies for good after step
/// `stop` (0 = before claiming a slot, 1 = slot claimed, 2 = holding, 3 = permit returned but
/// slot not freed, 4 = slot freed but no wake). A plain acquirer must get a permit (reclaimed
/// from a dead holder, or returned), never hang; in the end exactly one permit exists and every
/// slot is free: none lost, none doubled.
fn semaphore_robust_stops_at(stop: u32) {
    model(move || {
        let s = Arc::new(Semaphore::bounded(1));
        let holder = spawn_with(&s, move |s1| {
            let (tid, start) = super::owner::OwnerProbe::identity(&ModelProbe::default());
            let me = owner_word(tid, start);
            let steps = || {
                if stop == 0 {
                    return;
                }
                let Some(slot) = s1.claim_slot(me) else {
                    panic!("16 free slots");
                };
                if stop == 1 {
                    return;
                }
                if !s1.try_take(super::semaphore::held_bit(slot)) {
                    // The acquirer holds it: give the slot back and stop.
                    s1.free_slot(slot, me);
                    return;
                }
                if stop == 2 {
                    return;
                }
                s1.return_held(slot);
                if stop == 3 {
                    return;
                }
                s1.free_slot(slot, me);
                if stop == 4 {
                    return;
                }
                s1.wake_one();
            };
            steps();
            model::die();
        });
        s.acquire();
        s.release().unwrap();
        holder.join().unwrap();
        s.reclaim();
        assert_eq!(s.value(), 1);
        assert_eq!(s.occupied_slots(), 0);
    });
}

#[test]
fn semaphore_robust_holder_stops_at_any_step() {
    for stop in 0..=4 {
        semaphore_robust_stops_at(stop);
    }
}

/// A holder dies holding the only robust permit; two robust acquirers race to reclaim it and
/// then hold it one at a time (loom reports a race on the cell if both hold at once, e.g. if a
/// stale reclaimer cleared the HELD bit of the slot's next holder).
#[test]
fn semaphore_robust_two_reclaimers_exclusion() {
    model(|| {
        let s = Arc::new((Semaphore::bounded(1), UnsafeCell::new(0u32)));
        spawn_with(&s, |s| die_holding(s.0.acquire_robust().unwrap()))
            .join()
            .unwrap();
        let take = |s: &(Semaphore, UnsafeCell<u32>)| {
            let p = s.0.acquire_robust().unwrap();
            // SAFETY: the permit (of one) gives exclusive access; the model checks that.
            s.1.with_mut(|c| unsafe { *c += 1 });
            drop(p);
        };
        let other = spawn_with(&s, take);
        take(&s);
        other.join().unwrap();
        assert_eq!(s.0.value(), 1);
        // SAFETY: both takers were joined; nobody else touches the cell.
        s.1.with(|c| assert_eq!(unsafe { *c }, 2));
    });
}

/// No death: a plain acquirer blocked on a robust holder's permit is woken by the guard's drop
/// (a lost wake-up is a loom deadlock: no modelled time passes).
#[test]
fn semaphore_robust_release_no_lost_wakeup() {
    model(|| {
        let s = Arc::new(Semaphore::new(1));
        let p = s.acquire_robust().unwrap();
        let waiter = spawn_with(&s, |s| s.acquire());
        drop(p);
        waiter.join().unwrap();
        assert_eq!(s.value(), 0);
    });
}

#[test]
fn rwlock_dead_reader_reclaimed() {
    // A reader dies holding (its guard forgotten, its id then names no thread): a writer frees
    // its slot and gets in cleanly; no other thread is told anything.
    model(|| {
        let l = Arc::new(RwLock::new(0u32));
        let reader = spawn_with(&l, |l| {
            let g = l.read().unwrap();
            assert!(*g <= 1);
            die_holding(g);
        });
        *l.write().unwrap() = 1;
        reader.join().unwrap();
        assert_eq!(*l.read().unwrap(), 1);
    });
}

#[test]
fn rwlock_dead_writer_owner_died_exactly_once() {
    // A writer dies holding after a half update: the first locker after it, reader or writer,
    // is told OwnerDied (a reader holds it exclusively), repairs, and everyone after locks
    // cleanly. A reader before it sees the old value.
    model(|| {
        let l = Arc::new(RwLock::new((0u32, 0u32)));
        let writer = spawn_with(&l, |l| {
            let mut g = l.write().unwrap();
            g.0 = 1;
            die_holding(g);
        });
        let mut told = 0;
        match l.read() {
            Ok(g) => assert_eq!(*g, (0, 0)),
            Err(LockError::OwnerDied(mut g)) => {
                assert_eq!(*g, (1, 0));
                told += 1;
                g.make_consistent();
            }
            Err(e) => panic!("{e:?}"),
        }
        writer.join().unwrap();
        let mut g = match l.write() {
            Ok(g) => {
                // Clean only if the reader above was told.
                assert_eq!(told, 1);
                g
            }
            Err(LockError::OwnerDied(mut g)) => {
                told += 1;
                g.make_consistent();
                g
            }
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(*g, (1, 0));
        g.1 = 1;
        drop(g);
        assert_eq!(told, 1);
        assert_eq!(*l.read().unwrap(), (1, 1));
    });
}

#[test]
fn rwlock_polling_writer_never_reclaims_a_live_reader() {
    // Time passes twice at arbitrary points, so the draining writer checks on the live reader
    // wherever it is: it must never free its slot (the data cell would report the overlap).
    model(|| {
        let l = Arc::new(RwLock::new(0u32));
        let reader = spawn_with(&l, |l| *l.read().unwrap());
        let ticker = ticker();
        *l.write().unwrap() += 1;
        let seen = reader.join().unwrap();
        ticker.join().unwrap();
        assert!(seen <= 1);
        assert_eq!(*l.read().unwrap(), 1);
    });
}

#[test]
fn rwlock_unrepaired_owner_died_is_not_recoverable_for_readers() {
    // A writer dies holding; the reader told OwnerDied drops its guard without repair: from then
    // on every reader and writer, blocked or not, gets NotRecoverable (the gate stays closed).
    model(|| {
        let l = Arc::new(RwLock::new(0u32));
        spawn_with(&l, |l| die_holding(l.write().unwrap()))
            .join()
            .unwrap();
        let read_abandoned = |l: &RwLock<u32>| match l.read() {
            Err(LockError::OwnerDied(g)) => drop(g),
            Err(LockError::NotRecoverable) => {}
            Ok(_) => panic!("clean read of an abandoned lock"),
            Err(e) => panic!("{e:?}"),
        };
        let other = spawn_with(&l, read_abandoned);
        read_abandoned(&l);
        other.join().unwrap();
        assert!(l.is_not_recoverable());
        assert!(matches!(l.read(), Err(LockError::NotRecoverable)));
        assert!(matches!(l.try_read(), Err(LockError::NotRecoverable)));
        assert!(matches!(l.write(), Err(LockError::NotRecoverable)));
    });
}
