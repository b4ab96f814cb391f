//! Crash-point battery for `Barrier` (see tests/common/crash.rs for the plan).

mod common;

use common::crash::*;
use common::{wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::{Barrier, BarrierError};
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

// ---- Barrier --------------------------------------------------------------------------------

#[repr(C)]
struct BarrierScene {
    b: Barrier,
    v_started: AtomicU32,
}

// SAFETY: `#[repr(C)]` of a barrier and an atomic.
unsafe impl ShmSafe for BarrierScene {}

/// How long surviving parties wait at the barrier.
const PARTY_TIMEOUT: Duration = Duration::from_millis(400);

fn barrier_code(r: Result<usize, BarrierError>) -> Outcome {
    match r {
        Ok(i) => Outcome::Arrived(i),
        Err(BarrierError::Timeout) => Outcome::Timeout,
        Err(BarrierError::Broken) => Outcome::Broken,
    }
}

fn barrier_victim((s, point, kill, others): (Shared<BarrierScene>, String, bool, u32)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    match point.as_str() {
        // Arrive last, completing the generation.
        "barrier.complete.before_wake" => {
            wait_for("the others", || s.b.n_waiting() >= others);
            let _ = s.b.wait_timeout(PARTY_TIMEOUT);
        }
        // Time out first, breaking it.
        "barrier.timeout.before_wake" => {
            let _ = s.b.wait_timeout(Duration::from_millis(30));
        }
        // Arrive first and wait.
        _ => {
            let _ = s.b.wait_timeout(Duration::from_secs(3));
        }
    }
}

fn barrier_party(s: Shared<BarrierScene>) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    std::thread::sleep(Duration::from_millis(2));
    barrier_code(s.b.wait_timeout(PARTY_TIMEOUT))
}

fn barrier_scene(point: &str, waiters: usize, action: CrashAction) -> bool {
    // Parties: the victim, the waiters and this process; for the timeout point, one more that
    // never comes, so that the victim times out while the others sleep.
    let parties = waiters as u32 + 2 + u32::from(point == "barrier.timeout.before_wake");
    let s = Shared::new(BarrierScene {
        b: Barrier::new(parties),
        v_started: AtomicU32::new(0),
    })
    .unwrap();
    let kill = action == CrashAction::Kill;
    let others = waiters as u32 + 1;
    let v = Process::spawn(barrier_victim, (s.clone(), point.to_owned(), kill, others)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|_| Process::spawn(barrier_party, s.clone()).unwrap())
        .collect();
    let start = Instant::now();
    if point == "barrier.wait.after_wait" {
        // Arrive last, after the victim sleeps.
        wait_for("the victim", || s.b.n_waiting() >= others);
    }
    let mut codes = vec![barrier_party(s.clone())];
    let died = victim_died(v, action, point);
    let ctx = format!("{point} ({waiters} waiters, {action:?}, died {died})");
    codes.extend(join_survivors(ws, Instant::now(), &ctx));
    assert!(start.elapsed() < Duration::from_secs(2), "{ctx}: slow");
    if !died {
        return false;
    }
    if point == "barrier.timeout.before_wake" {
        // The victim broke the generation by its timeout and died before waking anyone: the
        // others learn it at their own deadline at the latest.
        assert!(
            codes.iter().all(|&c| c == Outcome::Broken),
            "{ctx}: {codes:?}"
        );
    } else {
        // The victim had arrived (a dead party that arrived still counts): the generation
        // completes for everyone, with distinct indices, even if the victim died before waking
        // the sleepers (they notice at their deadline).
        let mut idx: Vec<_> = codes
            .iter()
            .map(|&c| match c {
                Outcome::Arrived(i) => Some(i),
                _ => None,
            })
            .collect();
        assert!(idx.iter().all(Option::is_some), "{ctx}: {codes:?}");
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), codes.len(), "{ctx}: {codes:?}");
        assert!(!s.b.is_broken(), "{ctx}");
        // The next generation misses the dead party: it times out and breaks (documented).
        assert_eq!(
            s.b.wait_timeout(Duration::from_millis(20)),
            Err(BarrierError::Timeout)
        );
    }
    assert!(s.b.is_broken(), "{ctx}");
    assert_eq!(
        s.b.wait_timeout(Duration::from_millis(10)),
        Err(BarrierError::Broken)
    );
    // Nobody is left inside: reset repairs it.
    s.b.reset();
    assert!(!s.b.is_broken(), "{ctx}");
    assert_eq!(s.b.n_waiting(), 0, "{ctx}");
    died
}

#[test]
fn battery_barrier() {
    watchdog(60, || {
        for point in [
            "barrier.wait.after_arrive",
            "barrier.wait.after_wait",
            "barrier.complete.before_wake",
            "barrier.timeout.before_wake",
        ] {
            run_point(point, barrier_scene);
        }
    });
}

// =============================================================================================
// Random-time SIGKILL soak (shared parts in tests/common/soak.rs).

mod soak {
    use super::*;

    use crate::common::soak::*;

    use multiproc::sync::{Barrier, BarrierError};
    use multiproc::{Process, Shared, ShmSafe};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

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
}
