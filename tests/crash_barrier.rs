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
