//! Random-time SIGKILL soaks for every primitive but the mutex (whose soak is `mutex_soak_*` in
//! `tests/crash_mutex.rs`): Semaphore, Event, Condvar (with its Mutex), Barrier, RwLock,
//! ReentrantMutex, Queue (MPMC), SpscQueue and Channel.
//!
//! Each run starts a victim child that loops the primitive's operations, SIGKILLs it after a
//! random delay (0..3 ms from the moment it started looping), and then checks that the survivors
//! (this process, its threads, or a second child) finish their operations within 1 s using the
//! `_timeout` forms, with the invariant intact or only the loss SAFETY.md documents for that
//! primitive (a lost permit, a waiter that needs its timeout, a wedged barrier or rwlock, at most
//! the victim's in-flight value).
//!
//! Found: after an RwLock reader dies holding, one `write_timeout` that times out leaves
//! `WRITERS_WAITING` set for good (only an unlock clears it, and none will come), so every later
//! reader times out too: one failed write attempt turns "writers blocked" into "everyone blocked".
//! SAFETY.md says only that readers queue behind a writer that *waits*. The rwlock soak counts it.
//!
//! The seed is fixed and printed; each run's context names the run. Default: 20 runs per
//! primitive. Longer soak (a debug build; `--test-threads=1` keeps the timing bounds honest):
//!
//! `MULTIPROC_SOAK_RUNS=2000 cargo test --test soak -- --nocapture --test-threads=1`
//!
//! `MULTIPROC_SOAK_SEED=<n>` replays a seed.

mod common;

use common::{Rng, spin_us, wait_for, watchdog};
use multiproc::queue::{PopError, RecvError};
use multiproc::sync::{
    Barrier, BarrierError, Condvar, Event, LockError, Mutex, ReentrantMutex, RwLock, Semaphore,
    SemaphoreError,
};
use multiproc::{Channel, Error, Process, Queue, Shared, ShmSafe, SpscQueue};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

/// How long after a victim's death every survivor must have finished.
const SURVIVE: Duration = Duration::from_secs(1);

/// A short timeout for operations that are expected to time out (a documented wedge).
const SHORT: Duration = Duration::from_millis(50);

/// How long a victim loops at most (it is always killed long before).
const VICTIM_LIFE: Duration = Duration::from_secs(10);

/// Slack allowed past a timeout before it counts as "did not fire".
const SLACK: Duration = Duration::from_millis(500);

fn soak_runs() -> u64 {
    std::env::var("MULTIPROC_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn soak_seed(test: u64) -> u64 {
    let base = std::env::var("MULTIPROC_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_50a4);
    base ^ test.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Waits until the victim says it is looping, then SIGKILLs it after a random 0..3 ms, reaps it
/// and checks that it died by the signal.
fn kill_after_random_delay<R>(
    rng: &mut Rng,
    victim: &mut Process<R>,
    started: &AtomicU32,
    ctx: &str,
) where
    R: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for("the victim to start", || {
        started.load(Ordering::SeqCst) != 0 || !victim.is_alive()
    });
    spin_us(rng.below(3_000));
    let _ = victim.kill();
    match victim.join_timeout(Duration::from_secs(5)) {
        Err(Error::ChildSignaled { signal: 9 }) => {}
        other => panic!("{ctx}: victim: unexpected outcome {other:?}"),
    }
}

/// Asserts that an operation expected to time out after `timeout` did so within bounds.
fn assert_timed_out(took: Duration, timeout: Duration, ctx: &str) {
    assert!(
        took + Duration::from_millis(2) >= timeout && took < timeout + SLACK,
        "{ctx}: a {timeout:?} timeout fired after {took:?}"
    );
}

/// Runs `run` `soak_runs()` times with one seeded generator, printing the seed.
fn soak(name: &str, test: u64, mut run: impl FnMut(&mut Rng, &str)) {
    let seed = soak_seed(test);
    let runs = soak_runs();
    println!("{name}: seed {seed} ({runs} runs)");
    let mut rng = Rng(seed | 1);
    let t0 = Instant::now();
    for i in 0..runs {
        let ctx = format!("{name} seed {seed} run {i}");
        run(&mut rng, &ctx);
    }
    println!("{name}: {runs} runs in {:?}", t0.elapsed());
}

/// The watchdog for a whole soak: generous per run, so longer soaks are not cut short.
fn soak_watchdog(body: impl FnOnce() + Send + 'static) {
    watchdog(30 + soak_runs() * 3, body);
}

// Phases a victim publishes around a hold (a permit, a lock).
const IDLE: u32 = 0;
const TAKING: u32 = 1;
const HOLDING: u32 = 2;
const RETURNING: u32 = 3;
const RETURNED: u32 = 4;

// ---------------------------------------------------------------------------------------------
// Semaphore: a permit held by the dead child is lost; the rest stay usable.

#[repr(C)]
struct SemSoak {
    sem: Semaphore,
    started: AtomicU32,
    phase: AtomicU32,
}
// SAFETY: `#[repr(C)]` of a semaphore and atomics, all `ShmSafe`.
unsafe impl ShmSafe for SemSoak {}

fn sem_victim((s, seed): (Shared<SemSoak>, u64)) {
    let mut rng = Rng(seed | 1);
    let end = Instant::now() + VICTIM_LIFE;
    s.started.store(1, Ordering::SeqCst);
    while Instant::now() < end {
        s.phase.store(TAKING, Ordering::SeqCst);
        if s.sem.acquire_timeout(Duration::from_secs(1)).is_err() {
            continue;
        }
        s.phase.store(HOLDING, Ordering::SeqCst);
        spin_us(rng.below(200));
        s.phase.store(RETURNING, Ordering::SeqCst);
        s.sem.release().unwrap();
        s.phase.store(RETURNED, Ordering::SeqCst);
        spin_us(rng.below(100));
    }
}

#[test]
fn semaphore_soak_random_kills() {
    soak_watchdog(|| {
        let mut lost = 0;
        soak("semaphore", 1, |rng, ctx| {
            let s = Shared::new(SemSoak {
                sem: Semaphore::bounded(1),
                started: AtomicU32::new(0),
                phase: AtomicU32::new(IDLE),
            })
            .unwrap();
            let mut victim = Process::spawn(sem_victim, (s.clone(), rng.next())).unwrap();
            // A contender thread here: blocked acquirers when the victim dies.
            let stop = Arc::new(AtomicBool::new(false));
            let contender = {
                let (s, stop) = (s.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        if s.sem.acquire_timeout(Duration::from_millis(20)).is_ok() {
                            spin_us(50);
                            s.sem.release().unwrap();
                        }
                    }
                })
            };
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            stop.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            contender.join().unwrap();
            assert!(
                t0.elapsed() < SURVIVE,
                "{ctx}: contender took {:?}",
                t0.elapsed()
            );

            let phase = s.phase.load(Ordering::SeqCst);
            let value = s.sem.value();
            match phase {
                HOLDING => assert_eq!(value, 0, "{ctx}: died holding, the permit is lost"),
                IDLE | RETURNED => assert_eq!(value, 1, "{ctx}: died not holding"),
                _ => assert!(value <= 1, "{ctx}: value {value}"),
            }
            lost += u64::from(value == 0);
            // The survivor: the permits left are usable, and an empty semaphore times out.
            for _ in 0..value {
                let t0 = Instant::now();
                s.sem.acquire_timeout(SURVIVE).unwrap();
                assert!(t0.elapsed() < SURVIVE);
            }
            let t0 = Instant::now();
            assert_eq!(
                s.sem.acquire_timeout(SHORT),
                Err(SemaphoreError::Timeout),
                "{ctx}"
            );
            assert_timed_out(t0.elapsed(), SHORT, ctx);
            // Returning the lost permit by hand repairs it.
            s.sem.release().unwrap();
            s.sem.acquire_timeout(SURVIVE).unwrap();
            s.sem.release().unwrap();
            assert_eq!(s.sem.value(), 1, "{ctx}");
        });
        println!("semaphore: {lost} runs lost the victim's permit");
    });
}

// ---------------------------------------------------------------------------------------------
// Event: a dead setter or waiter leaves the flag set or clear; waiters return by their timeout.

#[repr(C)]
struct EventSoak {
    ev: Event,
    started: AtomicU32,
    stop: AtomicU32,
}
// SAFETY: `#[repr(C)]` of an event and atomics, all `ShmSafe`.
unsafe impl ShmSafe for EventSoak {}

/// Sets and clears the event in a loop, or waits on it in a loop.
fn event_victim((s, seed, setter): (Shared<EventSoak>, u64, bool)) {
    let mut rng = Rng(seed | 1);
    let end = Instant::now() + VICTIM_LIFE;
    s.started.store(1, Ordering::SeqCst);
    while Instant::now() < end {
        if setter {
            s.ev.set();
            spin_us(rng.below(100));
            s.ev.clear();
            spin_us(rng.below(100));
        } else {
            s.ev.wait_timeout(Duration::from_millis(50));
        }
    }
}

/// Waits in a loop until told to stop; returns how many waits saw the event.
fn event_waiter(s: Shared<EventSoak>) -> u64 {
    let mut seen = 0;
    while s.stop.load(Ordering::SeqCst) == 0 {
        seen += u64::from(s.ev.wait_timeout(Duration::from_millis(100)));
    }
    seen
}

#[test]
fn event_soak_random_kills() {
    soak_watchdog(|| {
        soak("event", 2, |rng, ctx| {
            let s = Shared::new(EventSoak {
                ev: Event::new(),
                started: AtomicU32::new(0),
                stop: AtomicU32::new(0),
            })
            .unwrap();
            let setter = rng.below(3) != 0;
            let mut victim = Process::spawn(event_victim, (s.clone(), rng.next(), setter)).unwrap();
            let mut waiter = Process::spawn(event_waiter, s.clone()).unwrap();
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            // The survivor: clear waits time out, a set wakes, the waiter child finishes.
            s.ev.clear();
            let t0 = Instant::now();
            assert!(!s.ev.wait_timeout(SHORT), "{ctx}: clear event seen set");
            assert_timed_out(t0.elapsed(), SHORT, ctx);
            s.ev.set();
            let t0 = Instant::now();
            assert!(s.ev.wait_timeout(SURVIVE), "{ctx}");
            assert!(t0.elapsed() < Duration::from_millis(100), "{ctx}");
            s.stop.store(1, Ordering::SeqCst);
            let t0 = Instant::now();
            waiter.join_timeout(SURVIVE).unwrap();
            assert!(t0.elapsed() < SURVIVE, "{ctx}");
            assert!(s.ev.is_set(), "{ctx}");
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Condvar + Mutex: producers and consumers; a dead holder is `OwnerDied` for exactly one
// survivor, who repairs the counts; a dead notifier costs waiters a timeout slice.

/// `[items, produced, consumed, in-critical-section marker]`.
type Counts = [u64; 4];

#[repr(C)]
struct CvSoak {
    m: Mutex<Counts>,
    cv: Condvar,
    started: AtomicU32,
    stop: AtomicU32,
    /// How many `OwnerDied` were reported, and how many of them found the marker set.
    owner_died: AtomicU32,
    repaired_marker: AtomicU32,
}
// SAFETY: `#[repr(C)]` of a mutex around integers, a condvar and atomics, all `ShmSafe`.
unsafe impl ShmSafe for CvSoak {}

/// Locks, repairing after a dead holder: items are recomputed from the (monotonic) counters.
fn cv_lock(s: &CvSoak, timeout: Duration) -> multiproc::sync::MutexGuard<'_, Counts> {
    match s.m.lock_timeout(timeout) {
        Ok(g) => {
            assert_eq!(g[3], 0, "clean acquisition with the marker set");
            g
        }
        Err(LockError::OwnerDied(g)) => repair(s, g),
        Err(e) => panic!("condvar mutex: {e:?}"),
    }
}

fn repair<'a>(
    s: &CvSoak,
    mut g: multiproc::sync::MutexGuard<'a, Counts>,
) -> multiproc::sync::MutexGuard<'a, Counts> {
    s.owner_died.fetch_add(1, Ordering::SeqCst);
    if g[3] != 0 {
        s.repaired_marker.fetch_add(1, Ordering::SeqCst);
    }
    g[0] = g[1] - g[2];
    g[3] = 0;
    g.make_consistent();
    g
}

fn cv_produce_one(s: &CvSoak, timeout: Duration) {
    let mut g = cv_lock(s, timeout);
    g[3] = 1;
    g[1] += 1;
    g[0] += 1;
    g[3] = 0;
    drop(g);
    s.cv.notify_one();
}

/// Consumes one item if one comes within `timeout`; false otherwise.
fn cv_consume_one(s: &CvSoak, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut g = cv_lock(s, SURVIVE);
    while g[0] == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Short slices: a notifier may die between its bump and its wake.
        g = match s.cv.wait_timeout(g, left.min(Duration::from_millis(20))) {
            Ok((g, _)) => g,
            Err(LockError::OwnerDied((g, _))) => repair(s, g),
            Err(e) => panic!("condvar wait: {e:?}"),
        };
    }
    g[3] = 1;
    g[0] -= 1;
    g[2] += 1;
    g[3] = 0;
    true
}

/// Produces or consumes until told to stop; a consumer drains what is left before returning.
fn cv_party((s, seed, producer): (Shared<CvSoak>, u64, bool)) {
    let mut rng = Rng(seed | 1);
    let end = Instant::now() + VICTIM_LIFE;
    s.started.store(1, Ordering::SeqCst);
    while Instant::now() < end {
        if producer {
            if s.stop.load(Ordering::SeqCst) != 0 {
                return;
            }
            // Bounded backlog: the consumer may be dead.
            if cv_lock(&s, SURVIVE)[0] < 16 {
                cv_produce_one(&s, SURVIVE);
            }
            spin_us(rng.below(50));
        } else if !cv_consume_one(&s, Duration::from_millis(20))
            && s.stop.load(Ordering::SeqCst) != 0
        {
            return;
        }
    }
}

#[test]
fn condvar_soak_random_kills() {
    soak_watchdog(|| {
        let mut owner_died = 0;
        soak("condvar", 3, |rng, ctx| {
            let s = Shared::new(CvSoak {
                m: Mutex::new([0; 4]),
                cv: Condvar::new(),
                started: AtomicU32::new(0),
                stop: AtomicU32::new(0),
                owner_died: AtomicU32::new(0),
                repaired_marker: AtomicU32::new(0),
            })
            .unwrap();
            let victim_produces = rng.below(2) == 0;
            let mut victim =
                Process::spawn(cv_party, (s.clone(), rng.next(), victim_produces)).unwrap();
            let mut other =
                Process::spawn(cv_party, (s.clone(), rng.next(), !victim_produces)).unwrap();
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            // The survivor side: this process produces three items (the other child may be the
            // consumer) or consumes (if the child is the producer); everything within 1 s.
            let t0 = Instant::now();
            for _ in 0..3 {
                cv_produce_one(&s, SURVIVE);
            }
            if victim_produces {
                // The surviving child consumes; it drains and returns once told to stop.
                wait_for("the consumer to drain", || cv_lock(&s, SURVIVE)[0] == 0);
            }
            s.stop.store(1, Ordering::SeqCst);
            other.join_timeout(SURVIVE).unwrap();
            if !victim_produces {
                // Everything the producers made, ours included.
                while cv_consume_one(&s, SHORT) {}
            }
            assert!(
                t0.elapsed() < SURVIVE + SURVIVE,
                "{ctx}: took {:?}",
                t0.elapsed()
            );
            let g = cv_lock(&s, SURVIVE);
            let died = s.owner_died.load(Ordering::SeqCst);
            assert!(died <= 1, "{ctx}: OwnerDied reported {died} times");
            assert!(
                s.repaired_marker.load(Ordering::SeqCst) <= died,
                "{ctx}: marker repaired without OwnerDied"
            );
            assert_eq!(g[0], 0, "{ctx}: items left {g:?}");
            assert_eq!(g[1], g[2], "{ctx}: produced != consumed: {g:?}");
            owner_died += u64::from(died);
        });
        println!("condvar: {owner_died} runs saw OwnerDied");
    });
}

// ---------------------------------------------------------------------------------------------
// Barrier: two parties; a dead party breaks the partner's wait (by its timeout); reset repairs
// it unless the dead party is still counted in a resetting generation (the documented wedge).

#[repr(C)]
struct BarrierSoak {
    b: Barrier,
    started: AtomicU32,
    phases: AtomicU64,
}
// SAFETY: `#[repr(C)]` of a barrier and atomics, all `ShmSafe`.
unsafe impl ShmSafe for BarrierSoak {}

/// Waits at the barrier in a loop; after a break waits for the partner's reset.
fn barrier_victim(s: Shared<BarrierSoak>) {
    let end = Instant::now() + VICTIM_LIFE;
    s.started.store(1, Ordering::SeqCst);
    while Instant::now() < end {
        match s.b.wait_timeout(Duration::from_secs(1)) {
            Ok(_) => {
                s.phases.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                while s.b.is_broken() && Instant::now() < end {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

#[test]
fn barrier_soak_random_kills() {
    soak_watchdog(|| {
        let (mut wedged, mut completed_by_dead) = (0, 0);
        soak("barrier", 4, |rng, ctx| {
            let s = Shared::new(BarrierSoak {
                b: Barrier::new(2),
                started: AtomicU32::new(0),
                phases: AtomicU64::new(0),
            })
            .unwrap();
            let mut victim = Process::spawn(barrier_victim, s.clone()).unwrap();
            // The partner: a thread here, resetting after a timeout while the victim lives.
            let dead = Arc::new(AtomicBool::new(false));
            let partner = {
                let (s, dead) = (s.clone(), dead.clone());
                std::thread::spawn(move || {
                    let mut last = None;
                    while !dead.load(Ordering::SeqCst) {
                        let r = s.b.wait_timeout(Duration::from_millis(100));
                        if r.is_err() && !dead.load(Ordering::SeqCst) {
                            s.b.reset();
                        }
                        last = Some(r);
                    }
                    last
                })
            };
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            dead.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            partner.join().unwrap();
            assert!(
                t0.elapsed() < SURVIVE,
                "{ctx}: partner took {:?}",
                t0.elapsed()
            );

            // The victim may have died counted in a generation.
            if s.b.n_waiting() > 0 {
                let t0 = Instant::now();
                match s.b.wait_timeout(SHORT) {
                    // It had arrived: its arrival still counts, our arrival completes.
                    Ok(_) => completed_by_dead += 1,
                    Err(BarrierError::Timeout) => assert_timed_out(t0.elapsed(), SHORT, ctx),
                    Err(BarrierError::Broken) => {}
                }
                assert!(t0.elapsed() < SHORT + SLACK, "{ctx}");
            }
            let stuck = s.b.n_waiting() > 0;
            s.b.reset();
            // Two fresh parties.
            let t0 = Instant::now();
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        s.b.wait_timeout(if stuck { SHORT } else { SURVIVE })
                    })
                })
                .collect();
            let rs: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            assert!(
                t0.elapsed() < SURVIVE + SLACK,
                "{ctx}: took {:?}",
                t0.elapsed()
            );
            if stuck {
                // Documented: a party that died counted keeps reset() from draining.
                wedged += 1;
                for r in &rs {
                    assert!(r.is_err(), "{ctx}: wedged barrier completed: {rs:?}");
                }
            } else {
                let mut idx: Vec<usize> = rs
                    .iter()
                    .map(|r| r.unwrap_or_else(|e| panic!("{ctx}: fresh parties: {e:?}")))
                    .collect();
                idx.sort();
                assert_eq!(idx, [0, 1], "{ctx}");
                assert!(!s.b.is_broken(), "{ctx}");
            }
        });
        println!(
            "barrier: {completed_by_dead} completed by a dead party's arrival, {wedged} wedged"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// RwLock (not robust): a dead writer blocks everyone until their timeouts; a dead reader blocks
// writers. Data is never torn.

#[repr(C)]
struct RwSoak {
    l: RwLock<[u64; 2]>,
    started: AtomicU32,
    /// IDLE..RETURNED for the write lock, +10 for a read lock.
    phase: AtomicU32,
}
// SAFETY: `#[repr(C)]` of an rwlock around integers and atomics, all `ShmSafe`.
unsafe impl ShmSafe for RwSoak {}

const READ: u32 = 10;

fn rw_victim((s, seed): (Shared<RwSoak>, u64)) {
    let mut rng = Rng(seed | 1);
    let end = Instant::now() + VICTIM_LIFE;
    s.started.store(1, Ordering::SeqCst);
    let mut v = 0u64;
    while Instant::now() < end {
        if rng.below(2) == 0 {
            s.phase.store(TAKING, Ordering::SeqCst);
            let Ok(mut g) = s.l.write_timeout(Duration::from_secs(1)) else {
                continue;
            };
            s.phase.store(HOLDING, Ordering::SeqCst);
            v += 1;
            g[0] = v;
            spin_us(rng.below(100));
            g[1] = !v;
            s.phase.store(RETURNING, Ordering::SeqCst);
            drop(g);
            s.phase.store(RETURNED, Ordering::SeqCst);
        } else {
            s.phase.store(READ + TAKING, Ordering::SeqCst);
            let Ok(g) = s.l.read_timeout(Duration::from_secs(1)) else {
                continue;
            };
            s.phase.store(READ + HOLDING, Ordering::SeqCst);
            assert_eq!(g[1], !g[0]);
            spin_us(rng.below(100));
            s.phase.store(READ + RETURNING, Ordering::SeqCst);
            drop(g);
            s.phase.store(READ + RETURNED, Ordering::SeqCst);
        }
        spin_us(rng.below(50));
    }
}

/// A `read_timeout(SHORT)`: whether it passed (an expected timeout must fire within bounds, and
/// the data must not be torn).
fn try_read(l: &RwLock<[u64; 2]>, ctx: &str) -> bool {
    let t0 = Instant::now();
    match l.read_timeout(SHORT) {
        Ok(g) => {
            assert_eq!(g[1], !g[0], "{ctx}: torn read");
            true
        }
        Err(LockError::Timeout) => {
            assert_timed_out(t0.elapsed(), SHORT, ctx);
            false
        }
        Err(e) => panic!("{ctx}: read_timeout: {e:?}"),
    }
}

/// A `write_timeout(SHORT)`, as [`try_read`].
fn try_write(l: &RwLock<[u64; 2]>, ctx: &str) -> bool {
    let t0 = Instant::now();
    match l.write_timeout(SHORT) {
        Ok(g) => {
            assert_eq!(g[1], !g[0], "{ctx}: torn value under the write lock");
            true
        }
        Err(LockError::Timeout) => {
            assert_timed_out(t0.elapsed(), SHORT, ctx);
            false
        }
        Err(e) => panic!("{ctx}: write_timeout: {e:?}"),
    }
}

#[test]
fn rwlock_soak_random_kills() {
    soak_watchdog(|| {
        let (mut dead_writer, mut dead_reader, mut stale_bit, mut ambiguous) = (0, 0, 0, 0);
        let mut stale_waiting = 0;
        soak("rwlock", 5, |rng, ctx| {
            let s = Shared::new(RwSoak {
                l: RwLock::new([0, !0]),
                started: AtomicU32::new(0),
                phase: AtomicU32::new(IDLE),
            })
            .unwrap();
            let mut victim = Process::spawn(rw_victim, (s.clone(), rng.next())).unwrap();
            // A reader thread here contends (with timeouts) until the victim is dead.
            let stop = Arc::new(AtomicBool::new(false));
            let reader = {
                let (s, stop) = (s.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        if let Ok(g) = s.l.read_timeout(Duration::from_millis(20)) {
                            assert_eq!(g[1], !g[0], "torn read");
                        }
                    }
                })
            };
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            stop.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            reader.join().unwrap();
            assert!(t0.elapsed() < SURVIVE, "{ctx}");

            let phase = s.phase.load(Ordering::SeqCst);
            let r1 = try_read(&s.l, ctx);
            let w = try_write(&s.l, ctx);
            let r2 = try_read(&s.l, ctx);
            // Died holding the write lock: everyone times out. Holding a read lock: readers
            // pass, writers time out; and a writer that timed out leaves WRITERS_WAITING set,
            // which no unlock will ever clear, so later readers may time out too. Free: all pass.
            match (phase, r1, w, r2) {
                (HOLDING, false, false, false) => dead_writer += 1,
                (p, true, false, r2) if p == READ + HOLDING => {
                    dead_reader += 1;
                    stale_bit += u64::from(!r2);
                }
                (IDLE | RETURNED, true, true, true) => {}
                (p, true, true, true) if p == READ + RETURNED => {}
                (p, r1, w, r2)
                    if [TAKING, RETURNING, READ + TAKING, READ + RETURNING].contains(&p) =>
                {
                    // Between a phase mark and the operation: either outcome, but a lock
                    // writers can take is one readers can take once that writer unlocked. (A
                    // writer killed while waiting leaves a stale WRITERS_WAITING bit: readers
                    // before the next unlock queue behind it and time out; the unlock clears it.)
                    assert!(!w || r2, "{ctx}: write passed, the read after it did not");
                    stale_waiting += u64::from(w && !r1);
                    ambiguous += 1;
                }
                other => panic!("{ctx}: phase/outcome {other:?}"),
            }
        });
        println!(
            "rwlock: {dead_writer} dead writers (all time out), {dead_reader} dead readers \
             (writers time out; later readers too in {stale_bit}), {ambiguous} ambiguous \
             ({stale_waiting} with a stale waiting bit until the next unlock)"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// ReentrantMutex: a dead holder (at any nesting depth) is `OwnerDied` for the next locker.

#[repr(C)]
struct ReSoak {
    m: ReentrantMutex<[AtomicU64; 2]>,
    started: AtomicU32,
    phase: AtomicU32,
}
// SAFETY: `#[repr(C)]` of a reentrant mutex around atomics and atomics, all `ShmSafe`.
unsafe impl ShmSafe for ReSoak {}

fn re_victim((s, seed): (Shared<ReSoak>, u64)) {
    let mut rng = Rng(seed | 1);
    let end = Instant::now() + VICTIM_LIFE;
    s.started.store(1, Ordering::SeqCst);
    while Instant::now() < end {
        s.phase.store(TAKING, Ordering::SeqCst);
        let g =
            s.m.lock_timeout(Duration::from_secs(1))
                .expect("victim lock");
        s.phase.store(HOLDING, Ordering::SeqCst);
        g[0].store(1, Ordering::SeqCst);
        {
            let inner =
                s.m.lock_timeout(Duration::from_secs(1))
                    .expect("nested lock");
            inner[1].fetch_add(1, Ordering::SeqCst);
            spin_us(rng.below(100));
        }
        g[0].store(0, Ordering::SeqCst);
        s.phase.store(RETURNING, Ordering::SeqCst);
        drop(g);
        s.phase.store(RETURNED, Ordering::SeqCst);
        spin_us(rng.below(100));
    }
}

#[test]
fn reentrant_mutex_soak_random_kills() {
    soak_watchdog(|| {
        let mut owner_died = 0;
        soak("reentrant", 6, |rng, ctx| {
            let s = Shared::new(ReSoak {
                m: ReentrantMutex::new([AtomicU64::new(0), AtomicU64::new(0)]),
                started: AtomicU32::new(0),
                phase: AtomicU32::new(IDLE),
            })
            .unwrap();
            let mut victim = Process::spawn(re_victim, (s.clone(), rng.next())).unwrap();
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            let phase = s.phase.load(Ordering::SeqCst);
            let t0 = Instant::now();
            let r = s.m.lock_timeout(SURVIVE);
            assert!(t0.elapsed() < SURVIVE, "{ctx}: took {:?}", t0.elapsed());
            match r {
                Ok(g) => {
                    assert!(phase != HOLDING, "{ctx}: died holding, no OwnerDied");
                    assert_eq!(g[0].load(Ordering::SeqCst), 0, "{ctx}: marker set");
                }
                Err(LockError::OwnerDied(mut g)) => {
                    assert!(
                        phase != IDLE && phase != RETURNED,
                        "{ctx}: OwnerDied though the victim had released (phase {phase})"
                    );
                    owner_died += 1;
                    g[0].store(0, Ordering::SeqCst);
                    g.make_consistent();
                }
                Err(e) => panic!("{ctx}: {e:?}"),
            }
            // Usable again, nested.
            let g = s.m.lock_timeout(SURVIVE).expect("usable after repair");
            let inner = s.m.lock_timeout(SURVIVE).expect("nested");
            assert_eq!(inner[0].load(Ordering::SeqCst), 0, "{ctx}");
            drop(inner);
            drop(g);
        });
        println!("reentrant: {owner_died} runs saw OwnerDied");
    });
}

// ---------------------------------------------------------------------------------------------
// Queues. Values carry a sequence number and a check word; the victim publishes how many of its
// operations returned. One producer and one consumer, so values arrive in order.

type Msg = [u64; 2];

fn msg(seq: u64) -> Msg {
    [seq, !seq.rotate_left(17)]
}

fn check(m: Msg, ctx: &str) -> u64 {
    assert_eq!(m[1], !m[0].rotate_left(17), "{ctx}: torn value {m:?}");
    m[0]
}

/// Values the survivor pushes when the victim is the consumer.
const STREAM: u64 = 300;

#[repr(C)]
struct QSoak {
    started: AtomicU32,
    /// How many of the victim's pushes or pops returned `Ok`.
    done: AtomicU64,
    /// The last value the victim popped + 1.
    last: AtomicU64,
}
// SAFETY: atomics only, `#[repr(C)]`.
unsafe impl ShmSafe for QSoak {}

fn new_qsoak() -> Shared<QSoak> {
    Shared::new(QSoak {
        started: AtomicU32::new(0),
        done: AtomicU64::new(0),
        last: AtomicU64::new(0),
    })
    .unwrap()
}

/// The survivor's checks, once the victim is dead. `victim_produced`: the victim pushed
/// `0..done` (maybe `done` too, in flight) and `got` is what the survivor popped, in order. Else
/// the survivor pushed `0..STREAM`, the victim popped `0..done` and `got` is the rest.
fn check_stream(got: &[u64], s: &QSoak, victim_produced: bool, ctx: &str) -> bool {
    let done = s.done.load(Ordering::SeqCst);
    for w in got.windows(2) {
        assert!(w[1] == w[0] + 1, "{ctx}: out of order or duplicated: {w:?}");
    }
    if victim_produced {
        // Every acknowledged push delivered; at most the in-flight one more.
        let n = got.len() as u64;
        assert!(
            n == done || n == done + 1,
            "{ctx}: victim pushed {done}, got {n}"
        );
        if let Some(&f) = got.first() {
            assert_eq!(f, 0, "{ctx}");
        }
        false
    } else {
        // The victim's popped values are gone; at most its in-flight value more.
        let first = got.first().copied().unwrap_or(STREAM);
        assert!(
            first == done || first == done + 1,
            "{ctx}: victim popped {done}, survivor's first is {first}"
        );
        if let Some(&l) = got.last() {
            assert_eq!(l, STREAM - 1, "{ctx}: the stream's end is missing");
        }
        let last = s.last.load(Ordering::SeqCst);
        assert!(
            last == done || last + 1 == done,
            "{ctx}: victim popped {done} values but its last was {last}"
        );
        // The victim's in-flight value, popped but not yet counted, is lost.
        first == done + 1
    }
}

fn mpmc_victim((q, s, produce): (Queue<Msg>, Shared<QSoak>, bool)) {
    s.started.store(1, Ordering::SeqCst);
    let end = Instant::now() + VICTIM_LIFE;
    let mut seq = 0;
    while Instant::now() < end {
        if produce {
            if q.push_timeout(msg(seq), Duration::from_secs(1)).is_ok() {
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
            }
        } else if let Ok(m) = q.pop_timeout(Duration::from_millis(100)) {
            let v = m[0];
            assert_eq!(m[1], !v.rotate_left(17));
            assert_eq!(v, seq);
            seq += 1;
            s.done.store(seq, Ordering::SeqCst);
            s.last.store(v + 1, Ordering::SeqCst);
        }
    }
}

#[test]
fn mpmc_queue_soak_random_kills() {
    soak_watchdog(|| {
        let mut lost = 0;
        soak("mpmc", 7, |rng, ctx| {
            let q = Queue::<Msg>::new(8).unwrap();
            let s = new_qsoak();
            let victim_produces = rng.below(2) == 0;
            let mut victim =
                Process::spawn(mpmc_victim, (q.clone(), s.clone(), victim_produces)).unwrap();
            let dead = Arc::new(AtomicBool::new(false));
            // The survivor runs on a thread here during and after the victim's life.
            let survivor = {
                let (q, dead, ctx) = (q.clone(), dead.clone(), ctx.to_owned());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    if victim_produces {
                        loop {
                            match q.pop_timeout(Duration::from_millis(20)) {
                                Ok(m) => got.push(check(m, &ctx)),
                                Err(PopError::Timeout) if dead.load(Ordering::SeqCst) => {
                                    return got;
                                }
                                Err(PopError::Timeout) => {}
                                Err(e) => panic!("{ctx}: pop: {e:?}"),
                            }
                        }
                    }
                    for v in 0..STREAM {
                        let t0 = Instant::now();
                        if let Err(e) = q.push_timeout(msg(v), SURVIVE) {
                            panic!("{ctx}: push {v}: {e:?} after {:?}", t0.elapsed());
                        }
                    }
                    got
                })
            };
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            dead.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            let mut got = Vec::new();
            if !victim_produces {
                // Drain while the survivor thread pushes the rest of the stream.
                loop {
                    match q.pop_timeout(SHORT) {
                        Ok(m) => got.push(check(m, ctx)),
                        Err(PopError::Timeout) if survivor.is_finished() => break,
                        Err(PopError::Timeout) => {}
                        Err(e) => panic!("{ctx}: pop: {e:?}"),
                    }
                }
            }
            got.extend(survivor.join().unwrap());
            assert!(
                t0.elapsed() < SURVIVE + SURVIVE,
                "{ctx}: took {:?}",
                t0.elapsed()
            );
            lost += u64::from(check_stream(&got, &s, victim_produces, ctx));
            // Still a working queue.
            q.push_timeout(msg(7), SURVIVE).unwrap();
            assert_eq!(
                q.pop_timeout(SURVIVE).map(|m| check(m, ctx)),
                Ok(7),
                "{ctx}"
            );
        });
        println!("mpmc: {lost} runs: the dead consumer had popped a value it had not yet recorded");
    });
}

fn spsc_victim((q, s, produce): (SpscQueue<Msg>, Shared<QSoak>, bool)) {
    let end = Instant::now() + VICTIM_LIFE;
    let mut seq = 0;
    if produce {
        let mut tx = q.producer().unwrap();
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            if tx.push_timeout(msg(seq), Duration::from_secs(1)).is_ok() {
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
            }
        }
    } else {
        let mut rx = q.consumer().unwrap();
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            if let Ok(m) = rx.pop_timeout(Duration::from_millis(100)) {
                let v = m[0];
                assert_eq!(m[1], !v.rotate_left(17));
                assert_eq!(v, seq);
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
                s.last.store(v + 1, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn spsc_queue_soak_random_kills() {
    soak_watchdog(|| {
        let mut lost = 0;
        soak("spsc", 8, |rng, ctx| {
            let q = SpscQueue::<Msg>::new(8).unwrap();
            let s = new_qsoak();
            let victim_produces = rng.below(2) == 0;
            let mut victim =
                Process::spawn(spsc_victim, (q.clone(), s.clone(), victim_produces)).unwrap();
            wait_for("the victim's role", || {
                s.started.load(Ordering::SeqCst) != 0 || !victim.is_alive()
            });
            let dead = Arc::new(AtomicBool::new(false));
            let survivor = {
                let (q, dead, ctx) = (q.clone(), dead.clone(), ctx.to_owned());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    if victim_produces {
                        let mut rx = q.consumer().unwrap();
                        loop {
                            match rx.pop_timeout(Duration::from_millis(20)) {
                                Ok(m) => got.push(check(m, &ctx)),
                                Err(PopError::Timeout) if dead.load(Ordering::SeqCst) => {
                                    return got;
                                }
                                Err(PopError::Timeout) => {}
                                Err(e) => panic!("{ctx}: pop: {e:?}"),
                            }
                        }
                    }
                    let mut tx = q.producer().unwrap();
                    for v in 0..STREAM {
                        if let Err(e) = tx.push_timeout(msg(v), SURVIVE) {
                            panic!("{ctx}: push {v}: {e:?}");
                        }
                    }
                    got
                })
            };
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            dead.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            let mut got = Vec::new();
            // Take over the dead victim's role.
            if victim_produces {
                got = survivor.join().unwrap();
                let mut tx = q.producer().expect("the dead producer's role");
                tx.push_timeout(msg(1 << 40), SURVIVE).unwrap();
                let mut rx = q.consumer().unwrap();
                let last = rx.pop_timeout(SURVIVE).map(|m| check(m, ctx));
                assert_eq!(last, Ok(1 << 40), "{ctx}");
            } else {
                let mut rx = q.consumer().expect("the dead consumer's role");
                loop {
                    match rx.pop_timeout(SHORT) {
                        Ok(m) => got.push(check(m, ctx)),
                        Err(PopError::Timeout) if survivor.is_finished() => break,
                        Err(PopError::Timeout) => {}
                        Err(e) => panic!("{ctx}: pop: {e:?}"),
                    }
                }
                assert!(survivor.join().unwrap().is_empty());
            }
            assert!(
                t0.elapsed() < SURVIVE + SURVIVE,
                "{ctx}: took {:?}",
                t0.elapsed()
            );
            lost += u64::from(check_stream(&got, &s, victim_produces, ctx));
        });
        println!("spsc: {lost} runs: the dead consumer had popped a value it had not yet recorded");
    });
}

fn channel_victim((ch, s, produce): (Channel<Msg>, Shared<QSoak>, bool)) {
    s.started.store(1, Ordering::SeqCst);
    let end = Instant::now() + VICTIM_LIFE;
    let mut seq = 0;
    while Instant::now() < end {
        if produce {
            if ch.send_timeout(msg(seq), Duration::from_secs(1)).is_ok() {
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
            }
        } else if let Ok(m) = ch.recv_timeout(Duration::from_millis(100)) {
            let v = m[0];
            assert_eq!(m[1], !v.rotate_left(17));
            assert_eq!(v, seq);
            seq += 1;
            s.done.store(seq, Ordering::SeqCst);
            s.last.store(v + 1, Ordering::SeqCst);
        }
    }
}

#[test]
fn channel_soak_random_kills() {
    soak_watchdog(|| {
        let mut lost = 0;
        soak("channel", 9, |rng, ctx| {
            // Small: about five records, so senders block and records wrap with SKIPs.
            let ch = Channel::<Msg>::new(128).unwrap();
            let s = new_qsoak();
            let victim_produces = rng.below(2) == 0;
            let mut victim =
                Process::spawn(channel_victim, (ch.clone(), s.clone(), victim_produces)).unwrap();
            let dead = Arc::new(AtomicBool::new(false));
            let survivor = {
                let (ch, dead, ctx) = (ch.clone(), dead.clone(), ctx.to_owned());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    if victim_produces {
                        loop {
                            match ch.recv_timeout(Duration::from_millis(20)) {
                                Ok(m) => got.push(check(m, &ctx)),
                                Err(RecvError::Timeout) if dead.load(Ordering::SeqCst) => {
                                    return got;
                                }
                                Err(RecvError::Timeout) => {}
                                Err(e) => panic!("{ctx}: recv: {e:?}"),
                            }
                        }
                    }
                    for v in 0..STREAM {
                        if let Err(e) = ch.send_timeout(msg(v), SURVIVE) {
                            panic!("{ctx}: send {v}: {e:?}");
                        }
                    }
                    got
                })
            };
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            dead.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            let mut got = Vec::new();
            if !victim_produces {
                loop {
                    match ch.recv_timeout(SHORT) {
                        Ok(m) => got.push(check(m, ctx)),
                        Err(RecvError::Timeout) if survivor.is_finished() => break,
                        Err(RecvError::Timeout) => {}
                        Err(e) => panic!("{ctx}: recv: {e:?}"),
                    }
                }
            }
            got.extend(survivor.join().unwrap());
            assert!(
                t0.elapsed() < SURVIVE + SURVIVE,
                "{ctx}: took {:?}",
                t0.elapsed()
            );
            lost += u64::from(check_stream(&got, &s, victim_produces, ctx));
            ch.send_timeout(msg(7), SURVIVE).unwrap();
            assert_eq!(
                ch.recv_timeout(SURVIVE).map(|m| check(m, ctx)),
                Ok(7),
                "{ctx}"
            );
        });
        println!(
            "channel: {lost} runs: the dead consumer had popped a value it had not yet recorded"
        );
    });
}
