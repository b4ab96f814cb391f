//! Blocking primitives across processes: ping-pong round trips that sleep in the kernel, and a
//! 2-process barrier round.
//!
//! Groups and ids (the report pairs "ours_*" with the others by group):
//! - `pingpong_blocking`: one iteration = parent signals child, child signals back. `raw_futex`
//!   (the limit: shared futex word, FUTEX_WAIT/FUTEX_WAKE), `pipe` (8-byte messages),
//!   `posix_sem` (two unnamed process-shared `sem_t`), `raw_sync_event` (raw_sync's
//!   auto-reset Event: pthread mutex + condvar); ours: `ours_event` (two `Shared<sync::Event>`),
//!   `ours_semaphore` (two `Shared<sync::Semaphore>` at 0).
//! - `barrier_2proc`: one iteration = one round of a 2-party barrier across processes:
//!   `pthread_barrier` (PROCESS_SHARED); ours: `ours` (`Shared<sync::Barrier>`).
//!
//! Not a criterion group: `owner_death` (runs unless a filter excludes it), a measured loop of
//! how long a locker takes to get `OwnerDied` after the holder was killed: `blocked` (the
//! waiter already sleeps in `lock()` when the holder dies) and `late` (the locker arrives
//! after the holder died and was reaped), for our `sync::Mutex` and a glibc robust pthread
//! mutex. Prints p50/p99/max and writes `<target>/bench-report/owner_death.json`, which
//! `scripts/bench-report.py` reads.

mod common;

use common::pingpong::{self, GRACE};
use common::{Child, PthreadRobustMutex, ShmPages, timed};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use multiproc::Shared;
use multiproc::sync::{Barrier, Event, LockError, Mutex, Semaphore};
use raw_sync::Timeout;
use raw_sync::events::{EventInit, EventState};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

fn main() {
    common::bench_main(&[pingpong_blocking, barrier_2proc, owner_death]);
}

fn pingpong_blocking(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong_blocking");
    pingpong::raw_futex(&mut g, "raw_futex");
    pingpong::pipe_u64(&mut g, "pipe");
    posix_sem(&mut g);
    raw_sync_event(&mut g);
    ours_event(&mut g);
    ours_semaphore(&mut g);
    g.finish();
}

/// Two of our `Event`s: the parent sets A and waits for B (then clears it); the child waits for
/// A, clears it and sets B. Each side clears the event it waited for before the other can set
/// it again, so every round trip sleeps and wakes once each way.
fn ours_event(g: &mut BenchmarkGroup<'_, WallTime>) {
    let a = Shared::new(Event::new()).expect("Shared::new(Event)");
    let b = Shared::new(Event::new()).expect("Shared::new(Event)");
    let stop = Shared::new(AtomicU32::new(0)).expect("Shared::new(AtomicU32)");
    common::roundtrip(
        g,
        "ours_event",
        || {
            loop {
                a.wait();
                a.clear();
                if stop.load(Ordering::Acquire) != 0 {
                    break;
                }
                b.set();
            }
        },
        || {
            a.set();
            b.wait();
            b.clear();
        },
        || {
            stop.store(1, Ordering::Release);
            a.set();
        },
    );
}

/// Two of our `Semaphore`s at 0: the parent releases A and acquires B; the child acquires A and
/// releases B.
fn ours_semaphore(g: &mut BenchmarkGroup<'_, WallTime>) {
    let a = Shared::new(Semaphore::new(0)).expect("Shared::new(Semaphore)");
    let b = Shared::new(Semaphore::new(0)).expect("Shared::new(Semaphore)");
    let stop = Shared::new(AtomicU32::new(0)).expect("Shared::new(AtomicU32)");
    common::roundtrip(
        g,
        "ours_semaphore",
        || {
            loop {
                a.acquire();
                if stop.load(Ordering::Acquire) != 0 {
                    break;
                }
                b.release().expect("release");
            }
        },
        || {
            a.release().expect("release");
            b.acquire();
        },
        || {
            stop.store(1, Ordering::Release);
            a.release().expect("release");
        },
    );
}

/// Offsets in the shared page: stop flag, then two `sem_t`/events on their own cache lines.
const STOP_AT: usize = 0;
const A_AT: usize = 128;
const B_AT: usize = 256;

/// Two unnamed POSIX semaphores (`sem_init(.., pshared = 1, 0)`) in shared memory.
fn posix_sem(g: &mut BenchmarkGroup<'_, WallTime>) {
    let shm = ShmPages::new(4096);
    let stop: &AtomicBool = shm.at(STOP_AT);
    let a = shm.ptr().wrapping_add(A_AT).cast::<libc::sem_t>();
    let b = shm.ptr().wrapping_add(B_AT).cast::<libc::sem_t>();
    // SAFETY: a and b point to distinct, aligned, writable sem_t-sized spots of the mapping.
    unsafe {
        assert_eq!(libc::sem_init(a, 1, 0), 0);
        assert_eq!(libc::sem_init(b, 1, 0), 0);
    }
    let wait = |s: *mut libc::sem_t| {
        // SAFETY: `s` is an initialised process-shared semaphore in the mapping.
        while unsafe { libc::sem_wait(s) } != 0 {}
    };
    // SAFETY: as above.
    let post = |s: *mut libc::sem_t| unsafe {
        libc::sem_post(s);
    };
    common::roundtrip(
        g,
        "posix_sem",
        || {
            loop {
                wait(a);
                if stop.load(Ordering::Acquire) {
                    break;
                }
                post(b);
            }
        },
        || {
            post(a);
            wait(b);
        },
        || {
            stop.store(true, Ordering::Release);
            post(a);
        },
    );
}

/// raw_sync's auto-reset `Event` (pthread mutex + condition variable, process-shared).
fn raw_sync_event(g: &mut BenchmarkGroup<'_, WallTime>) {
    let shm = ShmPages::new(4096);
    let stop: &AtomicBool = shm.at(STOP_AT);
    // SAFETY: distinct, writable spots of a fresh mapping that outlives the events.
    let (a, _) = unsafe { raw_sync::events::Event::new(shm.ptr().add(A_AT), true) }.expect("event");
    // SAFETY: as above (B_AT leaves 128 bytes, enough for raw_sync's event).
    let (b, _) = unsafe { raw_sync::events::Event::new(shm.ptr().add(1024), true) }.expect("event");
    let child = Child::fork(|| {
        loop {
            a.wait(Timeout::Infinite).expect("wait");
            if stop.load(Ordering::Acquire) {
                break;
            }
            b.set(EventState::Signaled).expect("set");
        }
    });
    g.bench_function("raw_sync_event", |bch| {
        bch.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    a.set(EventState::Signaled).expect("set");
                    b.wait(Timeout::Infinite).expect("wait");
                }
            })
        })
    });
    stop.store(true, Ordering::Release);
    a.set(EventState::Signaled).expect("set");
    child.finish(GRACE);
}

fn barrier_2proc(c: &mut Criterion) {
    let mut g = c.benchmark_group("barrier_2proc");
    pthread_barrier(&mut g);
    ours_barrier(&mut g);
    g.finish();
}

/// Our `Barrier` of 2 in a `Shared`, with the same stop protocol as [`pthread_barrier`].
fn ours_barrier(g: &mut BenchmarkGroup<'_, WallTime>) {
    let bar = Shared::new(Barrier::new(2).expect("Barrier::new")).expect("Shared::new(Barrier)");
    let last = Shared::new(AtomicU64::new(0)).expect("Shared::new(AtomicU64)");
    let child = Child::fork(|| {
        let mut crossed = 0u64;
        loop {
            bar.wait().expect("barrier");
            crossed += 1;
            if last.load(Ordering::Acquire) == crossed {
                break;
            }
        }
    });
    let mut crossed = 0u64;
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    bar.wait().expect("barrier");
                }
                crossed += n;
            })
        })
    });
    common::Watchdog::arm();
    last.store(crossed + 1, Ordering::Release);
    bar.wait().expect("barrier");
    assert!(child.finish(GRACE), "barrier child failed");
}

/// A glibc `pthread_barrier_t` of 2 with `PTHREAD_PROCESS_SHARED`. The child waits in a loop;
/// at the end the parent writes the number of its last crossing to `last` and crosses once
/// more: the child leaves after that crossing (and only that one).
fn pthread_barrier(g: &mut BenchmarkGroup<'_, WallTime>) {
    let shm = ShmPages::new(4096);
    let last: &AtomicU64 = shm.at(STOP_AT);
    let bar = shm
        .ptr()
        .wrapping_add(A_AT)
        .cast::<libc::pthread_barrier_t>();
    // SAFETY: `attr` is initialised before use; `bar` is an aligned, writable spot of the mapping.
    unsafe {
        let mut attr: libc::pthread_barrierattr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_barrierattr_init(&mut attr), 0);
        assert_eq!(
            libc::pthread_barrierattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
            0
        );
        assert_eq!(libc::pthread_barrier_init(bar, &attr, 2), 0);
        libc::pthread_barrierattr_destroy(&mut attr);
    }
    let wait = || {
        // SAFETY: `bar` is an initialised process-shared barrier in the mapping.
        unsafe { libc::pthread_barrier_wait(bar) };
    };
    let child = Child::fork(|| {
        let mut crossed = 0u64;
        loop {
            wait();
            crossed += 1;
            // The parent stores `last` before its last crossing, so after that crossing we
            // see it; an earlier crossing may see it too, but then crossed != last.
            if last.load(Ordering::Acquire) == crossed {
                break;
            }
        }
    });
    let mut crossed = 0u64;
    g.bench_function("pthread_barrier", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    wait();
                }
                crossed += n;
            })
        })
    });
    common::Watchdog::arm();
    last.store(crossed + 1, Ordering::Release);
    wait();
    child.finish(GRACE);
}

// ---------------------------------------------------------------------------------------------
// Owner-death detection latency (a measured loop, not a criterion benchmark).

/// Samples per scenario and lock.
const DEATH_SAMPLES: usize = 200;

/// Offsets in the control page of the owner-death loop.
const HELD_AT: usize = 0;
const DIED_AT: usize = 128;

/// A robust lock whose holder can be killed: `hold` takes it and never releases it, `recover`
/// takes it and returns whether the previous owner was reported dead (then makes it
/// consistent and releases it).
struct Robust<'a> {
    name: &'static str,
    hold: &'a dyn Fn(),
    recover: &'a dyn Fn() -> bool,
}

fn owner_death(_: &mut Criterion) {
    if !common::selected("owner_death") {
        return;
    }
    let samples = if common::test_mode() {
        2
    } else {
        DEATH_SAMPLES
    };
    let ours = Shared::new(Mutex::new(0u64)).expect("Shared::new(Mutex)");
    let ours_hold = || std::mem::forget(ours.lock().expect("lock"));
    let ours_recover = || match ours.lock() {
        Err(LockError::OwnerDied(mut guard)) => {
            guard.make_consistent();
            true
        }
        Ok(_) => false,
        Err(e) => panic!("ours: unexpected {e:?}"),
    };
    let shm = ShmPages::new(4096);
    let pm = PthreadRobustMutex::init(shm.ptr());
    let pthread_hold = || pm.lock();
    let pthread_recover = || {
        let died = pm.lock_owner_died();
        pm.unlock();
        died
    };
    let locks = [
        Robust {
            name: "ours",
            hold: &ours_hold,
            recover: &ours_recover,
        },
        Robust {
            name: "pthread_robust",
            hold: &pthread_hold,
            recover: &pthread_recover,
        },
    ];
    let mut results = Vec::new();
    println!("owner_death: time until a locker gets OwnerDied after the holder was killed");
    for lock in &locks {
        for (scenario, f) in [
            (
                "blocked",
                death_blocked as fn(&Robust<'_>, u64) -> Option<u64>,
            ),
            ("late", death_late),
        ] {
            let mut lat: Vec<u64> = Vec::with_capacity(samples);
            let mut skipped = 0;
            for i in 0..samples {
                match f(lock, i as u64) {
                    Some(ns) => lat.push(ns),
                    None => skipped += 1,
                }
            }
            lat.sort_unstable();
            let pct =
                |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
            let id = format!("owner_death/{}_{scenario}", lock.name);
            let (p50, p99, max) = (pct(0.5), pct(0.99), lat[lat.len() - 1]);
            println!(
                "{id:<36} p50 {:>9.3} ms  p99 {:>9.3} ms  max {:>9.3} ms  (n = {}{})",
                p50 as f64 / 1e6,
                p99 as f64 / 1e6,
                max as f64 / 1e6,
                lat.len(),
                if skipped > 0 {
                    format!(", {skipped} not blocked in time: left out")
                } else {
                    String::new()
                }
            );
            results.push(format!(
                "\"{id}\": {{\"p50_ns\": {p50}, \"p99_ns\": {p99}, \"max_ns\": {max}, \"n\": {}}}",
                lat.len()
            ));
        }
    }
    let dir = common::report_dir();
    let json = format!(
        "{{\"samples\": {samples}, \"results\": {{\n  {}\n}}}}\n",
        results.join(",\n  ")
    );
    if let Err(e) = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("owner_death.json"), json))
    {
        eprintln!("owner_death: could not write {}: {e}", dir.display());
    }
}

/// A holder that takes the lock, says so, lives `hold_us` more microseconds, records the
/// instant and SIGKILLs itself.
fn doomed_holder(lock: &Robust<'_>, shm: &ShmPages, hold_us: u64) -> Child {
    let held: &AtomicBool = shm.at(HELD_AT);
    let died_at: &AtomicU64 = shm.at(DIED_AT);
    held.store(false, Ordering::Release);
    Child::fork(|| {
        (lock.hold)();
        held.store(true, Ordering::Release);
        std::thread::sleep(Duration::from_micros(hold_us));
        died_at.store(common::mono_ns(), Ordering::Release);
        // SAFETY: killing this (child) process; nothing to clean up.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    })
}

/// One sample of "the waiter already sleeps when the holder dies": from the holder's last
/// instant to the waiter's return with OwnerDied. The holder dies 1 to 5 ms after taking the
/// lock (spread over the waiter's sleep slices). `None` if the waiter did not get into `lock`
/// before the death (a busy machine), which would be the other scenario.
fn death_blocked(lock: &Robust<'_>, i: u64) -> Option<u64> {
    let shm = ShmPages::new(4096);
    let held: &AtomicBool = shm.at(HELD_AT);
    let died_at: &AtomicU64 = shm.at(DIED_AT);
    let hold_us = 1000 + (i.wrapping_mul(2_654_435_761) % 4000);
    let child = doomed_holder(lock, &shm, hold_us);
    common::spin_until(|| held.load(Ordering::Acquire));
    let entered = common::mono_ns();
    let died = (lock.recover)();
    let done = common::mono_ns();
    child.finish(GRACE); // killed itself: not a clean exit
    assert!(died, "{}: owner death not reported", lock.name);
    let death = died_at.load(Ordering::Acquire);
    (entered < death).then(|| done - death)
}

/// One sample of "the locker arrives after the holder died": the holder dies at once and is
/// reaped, then the time of one `lock` call that reports OwnerDied.
fn death_late(lock: &Robust<'_>, _: u64) -> Option<u64> {
    let shm = ShmPages::new(4096);
    let child = doomed_holder(lock, &shm, 0);
    child.finish(GRACE);
    let start = common::mono_ns();
    let died = (lock.recover)();
    let took = common::mono_ns() - start;
    assert!(died, "{}: owner death not reported", lock.name);
    Some(took)
}
