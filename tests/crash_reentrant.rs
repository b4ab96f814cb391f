//! Crash-point battery for `ReentrantMutex` (see tests/common/crash.rs for the plan).

mod common;

use common::crash::*;
use common::{wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::{LockError, ReentrantMutex};
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

// ---- ReentrantMutex -------------------------------------------------------------------------

#[repr(C)]
struct ReentrantScene {
    m: ReentrantMutex<AtomicU64>,
    v_started: AtomicU32,
}

// SAFETY: `#[repr(C)]` of a reentrant mutex around an atomic, and an atomic.
unsafe impl ShmSafe for ReentrantScene {}

fn reentrant_victim((s, point, kill): (Shared<ReentrantScene>, String, bool)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    let outer = s.m.lock().unwrap();
    let inner = s.m.lock().unwrap();
    inner.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    drop(inner);
    drop(outer);
}

fn reentrant_waiter(s: Shared<ReentrantScene>) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    std::thread::sleep(Duration::from_millis(2));
    match s.m.lock_timeout(Duration::from_secs(3)) {
        Ok(_) => Outcome::Ok,
        Err(LockError::OwnerDied(mut g)) => {
            g.make_consistent();
            Outcome::OwnerDied
        }
        Err(LockError::Timeout) => Outcome::Timeout,
        Err(_) => Outcome::NotRecoverable,
    }
}

fn reentrant_scene(point: &str, waiters: usize, action: CrashAction) -> bool {
    let s = Shared::new(ReentrantScene {
        m: ReentrantMutex::new(AtomicU64::new(0)),
        v_started: AtomicU32::new(0),
    })
    .unwrap();
    let kill = action == CrashAction::Kill;
    let v = Process::spawn(reentrant_victim, (s.clone(), point.to_owned(), kill)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|_| Process::spawn(reentrant_waiter, s.clone()).unwrap())
        .collect();
    let died = victim_died(v, action, point);
    let ctx = format!("{point} ({waiters} waiters, {action:?})");
    let mut codes = join_survivors(ws, Instant::now(), &ctx);
    codes.push(reentrant_waiter(s.clone()));
    let ods = codes.iter().filter(|&&c| c == Outcome::OwnerDied).count();
    let oks = codes.iter().filter(|&&c| c == Outcome::Ok).count();
    // Both points are inside the victim's hold.
    assert_eq!(
        (ods, oks),
        (usize::from(died), codes.len() - usize::from(died)),
        "{ctx}: {codes:?}"
    );
    died
}

#[test]
fn battery_reentrant_mutex() {
    watchdog(60, || {
        for point in [
            "reentrant.lock.before_count",
            "reentrant.unlock.after_count",
        ] {
            run_point(point, reentrant_scene);
        }
    });
}
