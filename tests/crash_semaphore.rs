//! Crash-point battery for `Semaphore` (see tests/common/crash.rs for the plan).

mod common;

use common::crash::*;
use common::{wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::{Semaphore, SemaphoreError};
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

// ---- Semaphore ------------------------------------------------------------------------------

#[repr(C)]
struct SemScene {
    sem: Semaphore,
    v_started: AtomicU32,
}

// SAFETY: `#[repr(C)]` of a semaphore and an atomic.
unsafe impl ShmSafe for SemScene {}

const PERMITS: u32 = 2;

/// Semaphore points and whether the victim holds a permit (which is then lost) when it dies.
const SEM_POINTS: &[(&str, bool)] = &[
    ("semaphore.acquire.after_cas", true),
    ("semaphore.acquire.after_count", false),
    ("semaphore.acquire.after_wait", false),
    ("semaphore.release.before_cas", true),
    ("semaphore.release.after_cas", false),
    ("semaphore.release.after_wake", false),
];

fn sem_victim((s, point, kill): (Shared<SemScene>, String, bool)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    s.sem.acquire();
    std::thread::sleep(Duration::from_millis(20));
    s.sem.release().unwrap();
}

fn sem_waiter(s: Shared<SemScene>) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    std::thread::sleep(Duration::from_millis(2));
    match s.sem.acquire_timeout(Duration::from_secs(3)) {
        Ok(()) => {
            std::thread::sleep(Duration::from_millis(5));
            s.sem.release().unwrap();
            Outcome::Ok
        }
        Err(_) => Outcome::Timeout,
    }
}

fn sem_scene(point: &str, lost: bool, waiters: usize, action: CrashAction) -> bool {
    let s = Shared::new(SemScene {
        sem: Semaphore::bounded(PERMITS),
        v_started: AtomicU32::new(0),
    })
    .unwrap();
    // Acquire points need a victim that waits: the parent holds every permit for a while.
    let parent_holds =
        point.contains("acquire.after_count") || point.contains("acquire.after_wait");
    if parent_holds {
        for _ in 0..PERMITS {
            s.sem.try_acquire().unwrap();
        }
    }
    let kill = action == CrashAction::Kill;
    let v = Process::spawn(sem_victim, (s.clone(), point.to_owned(), kill)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|_| Process::spawn(sem_waiter, s.clone()).unwrap())
        .collect();
    if parent_holds {
        wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..PERMITS {
            s.sem.release().unwrap();
        }
    }
    // Release points need waiters asleep when the victim releases: hold the other permits
    // while the victim holds its own.
    let mut held_by_parent = 0;
    if point.contains("release") && waiters > 0 {
        wait_for("the victim's permit", || s.sem.value() < PERMITS);
        while s.sem.try_acquire().is_ok() {
            held_by_parent += 1;
        }
    }
    let died = victim_died(v, action, point);
    for _ in 0..held_by_parent {
        s.sem.release().unwrap();
    }
    let ctx = format!("{point} ({waiters} waiters, {action:?}, died {died})");
    let codes = join_survivors(ws, Instant::now(), &ctx);
    assert!(codes.iter().all(|&c| c == Outcome::Ok), "{ctx}: {codes:?}");
    // A permit held by the dead victim is lost (documented); the others all came back.
    let expected = PERMITS - u32::from(died && lost);
    assert_eq!(s.sem.value(), expected, "{ctx}");
    // The remaining permits work, and a timeout still fires when none is left.
    for _ in 0..expected {
        s.sem.try_acquire().unwrap();
    }
    let t = Instant::now();
    assert_eq!(
        s.sem.acquire_timeout(Duration::from_millis(20)),
        Err(SemaphoreError::Timeout)
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{ctx}: {:?}",
        t.elapsed()
    );
    for _ in 0..expected {
        s.sem.release().unwrap();
    }
    died
}

#[test]
fn battery_semaphore() {
    watchdog(60, || {
        for &(point, lost) in SEM_POINTS {
            run_point(point, |p, w, a| sem_scene(p, lost, w, a));
        }
    });
}

// ---- Semaphore, robust permits -------------------------------------------------------------

/// Robust points; in every one no permit may be lost or doubled, whatever the victim held.
const ROBUST_POINTS: &[&str] = &[
    "semaphore.robust.after_claim",
    "semaphore.robust.after_take",
    "semaphore.acquire.after_count",
    "semaphore.acquire.after_wait",
    "semaphore.robust_release.before_cas",
    "semaphore.robust_release.after_cas",
    "semaphore.robust_release.after_free",
    "semaphore.reclaim.after_mark",
    "semaphore.reclaim.after_return",
];

/// Takes `n` robust permits and exits holding them (a holder that died before the scene).
fn robust_ghost((s, n): (Shared<SemScene>, u32)) {
    for _ in 0..n {
        std::mem::forget(s.sem.acquire_robust().unwrap());
    }
}

fn robust_victim((s, point, kill): (Shared<SemScene>, String, bool)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    let p = s.sem.acquire_robust().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    drop(p);
}

fn robust_waiter((s, robust): (Shared<SemScene>, bool)) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    std::thread::sleep(Duration::from_millis(2));
    let got = if robust {
        s.sem
            .acquire_robust_timeout(Duration::from_secs(3))
            .map(|p| {
                std::thread::sleep(Duration::from_millis(5));
                drop(p);
            })
    } else {
        s.sem.acquire_timeout(Duration::from_secs(3)).map(|()| {
            std::thread::sleep(Duration::from_millis(5));
            s.sem.release().unwrap();
        })
    };
    match got {
        Ok(()) => Outcome::Ok,
        Err(_) => Outcome::Timeout,
    }
}

fn robust_scene(point: &str, waiters: usize, action: CrashAction) -> bool {
    let s = Shared::new(SemScene {
        sem: Semaphore::bounded(PERMITS),
        v_started: AtomicU32::new(0),
    })
    .unwrap();
    // Reclaim points need a dead holder first: a ghost takes every permit and exits holding
    // them, so the victim reclaims one (and dies there).
    if point.contains("reclaim") {
        let ghost = Process::spawn(robust_ghost, (s.clone(), PERMITS)).unwrap();
        ghost.join().unwrap();
        assert_eq!(s.sem.value(), 0);
    }
    // Acquire points need a victim that waits: the parent holds every permit for a while.
    let parent_holds = point.contains("acquire.after");
    if parent_holds {
        for _ in 0..PERMITS {
            s.sem.try_acquire().unwrap();
        }
    }
    let kill = action == CrashAction::Kill;
    let v = Process::spawn(robust_victim, (s.clone(), point.to_owned(), kill)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|i| Process::spawn(robust_waiter, (s.clone(), i % 2 == 0)).unwrap())
        .collect();
    if parent_holds {
        wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..PERMITS {
            s.sem.release().unwrap();
        }
    }
    // Release points need waiters asleep when the victim releases: hold the other permits
    // while the victim holds its own.
    let mut held_by_parent = 0;
    if point.contains("release") && waiters > 0 {
        wait_for("the victim's permit", || s.sem.value() < PERMITS);
        while s.sem.try_acquire().is_ok() {
            held_by_parent += 1;
        }
    }
    let died = victim_died(v, action, point);
    for _ in 0..held_by_parent {
        s.sem.release().unwrap();
    }
    let ctx = format!("{point} ({waiters} waiters, {action:?}, died {died})");
    let codes = join_survivors(ws, Instant::now(), &ctx);
    assert!(codes.iter().all(|&c| c == Outcome::Ok), "{ctx}: {codes:?}");
    // Whatever the dead held comes back: every permit, and every owner slot.
    s.sem.reclaim();
    assert_eq!(
        s.sem.value(),
        PERMITS,
        "{ctx}: a permit was lost or doubled"
    );
    let ps: Vec<_> = (0..PERMITS)
        .map(|_| s.sem.try_acquire_robust().unwrap())
        .collect();
    let t = Instant::now();
    assert_eq!(
        s.sem.acquire_timeout(Duration::from_millis(20)),
        Err(SemaphoreError::Timeout),
        "{ctx}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{ctx}: {:?}",
        t.elapsed()
    );
    drop(ps);
    assert_eq!(s.sem.reclaim(), 0, "{ctx}");
    assert_eq!(s.sem.value(), PERMITS, "{ctx}");
    died
}

#[test]
fn battery_semaphore_robust() {
    watchdog(120, || {
        for &point in ROBUST_POINTS {
            run_point(point, robust_scene);
        }
    });
}

// =============================================================================================
// Random-time SIGKILL soak (shared parts in tests/common/soak.rs).

mod soak {
    use super::*;

    use crate::common::soak::*;
    use crate::common::{Rng, spin_us};

    use multiproc::sync::{Semaphore, SemaphoreError};
    use multiproc::{Process, Shared, ShmSafe};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::{Duration, Instant};

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
    // Semaphore, robust permits: a permit held by the dead child comes back to a blocked
    // acquirer (reclaim latency measured from the SIGKILL); none is ever lost or doubled.

    fn robust_victim((s, seed): (Shared<SemSoak>, u64)) {
        let mut rng = Rng(seed | 1);
        let end = Instant::now() + VICTIM_LIFE;
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            s.phase.store(TAKING, Ordering::SeqCst);
            let Ok(p) = s.sem.acquire_robust_timeout(Duration::from_secs(1)) else {
                continue;
            };
            s.phase.store(HOLDING, Ordering::SeqCst);
            spin_us(rng.below(1_000));
            s.phase.store(RETURNING, Ordering::SeqCst);
            drop(p);
            s.phase.store(RETURNED, Ordering::SeqCst);
            spin_us(rng.below(100));
        }
    }

    #[test]
    fn semaphore_robust_soak_random_kills() {
        soak_watchdog(|| {
            let mut latencies = Vec::new();
            // Baseline in the same runs: the victim held nothing when it died.
            let mut free_at_death = Vec::new();
            let mut from_reap = Vec::new();
            soak("semaphore_robust", 9, |rng, ctx| {
                let s = Shared::new(SemSoak {
                    sem: Semaphore::bounded(1),
                    started: AtomicU32::new(0),
                    phase: AtomicU32::new(IDLE),
                })
                .unwrap();
                let mut victim = Process::spawn(robust_victim, (s.clone(), rng.next())).unwrap();
                // A contender thread here, blocked in robust acquires when the victim dies; it
                // notes when it gets each permit.
                let stop = Arc::new(AtomicBool::new(false));
                let got = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
                let contender = {
                    let (s, stop, got) = (s.clone(), stop.clone(), got.clone());
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            if let Ok(p) = s.sem.acquire_robust_timeout(Duration::from_millis(20)) {
                                got.lock().unwrap().push(Instant::now());
                                spin_us(50);
                                drop(p);
                            }
                        }
                    })
                };
                wait_for("the victim to start", || {
                    s.started.load(Ordering::SeqCst) != 0 || !victim.is_alive()
                });
                spin_us(rng.below(3_000));
                let killed_at = Instant::now();
                let _ = victim.kill();
                match victim.join_timeout(Duration::from_secs(5)) {
                    Err(multiproc::Error::ChildSignaled { signal: 9 }) => {}
                    other => panic!("{ctx}: victim: unexpected outcome {other:?}"),
                }
                let reaped_at = Instant::now();
                let phase = s.phase.load(Ordering::SeqCst);
                // The contender gets a permit after the death, whatever the victim held.
                let after_kill = || {
                    got.lock()
                        .unwrap()
                        .iter()
                        .find(|&&t| t >= killed_at)
                        .map(|&t| t - killed_at)
                };
                wait_for("the contender's permit after the kill", || {
                    after_kill().is_some()
                });
                let latency = after_kill().unwrap();
                assert!(latency < SURVIVE, "{ctx}: {latency:?}");
                if phase == HOLDING {
                    latencies.push(latency);
                    // The part after the victim was reaped (its teardown under load excluded).
                    from_reap.push((killed_at + latency).saturating_duration_since(reaped_at));
                } else if phase == RETURNED || phase == IDLE {
                    free_at_death.push(latency);
                }
                stop.store(true, Ordering::SeqCst);
                contender.join().unwrap();
                // Exactly one permit, whatever step the victim died at.
                s.sem.reclaim();
                assert_eq!(s.sem.value(), 1, "{ctx}: phase {phase}");
                let p = s.sem.try_acquire_robust().unwrap();
                let t0 = Instant::now();
                assert_eq!(
                    s.sem.acquire_timeout(SHORT),
                    Err(SemaphoreError::Timeout),
                    "{ctx}"
                );
                assert_timed_out(t0.elapsed(), SHORT, ctx);
                drop(p);
                assert_eq!(s.sem.value(), 1, "{ctx}");
            });
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            for (what, v) in [
                (
                    "died holding, reclaim latency from the SIGKILL",
                    &mut latencies,
                ),
                (
                    "died holding, reclaim latency from the reap",
                    &mut from_reap,
                ),
                (
                    "held nothing (baseline), next-permit latency from the SIGKILL",
                    &mut free_at_death,
                ),
            ] {
                v.sort();
                let n = v.len();
                if n > 0 {
                    println!(
                        "semaphore_robust: {n} runs {what}: \
                         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                        ms(v[n / 2]),
                        ms(v[(n * 99 / 100).min(n - 1)]),
                        ms(v[n - 1]),
                    );
                }
            }
        });
    }
}
