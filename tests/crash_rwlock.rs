//! Crash-point battery for `RwLock` (see tests/common/crash.rs for the plan).

mod common;

use common::crash::*;
use common::{wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::RwLock;
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

// ---- RwLock (not robust) --------------------------------------------------------------------

#[repr(C)]
struct RwScene {
    /// Writers keep both halves equal.
    rw: RwLock<[u64; 2]>,
    v_started: AtomicU32,
}

// SAFETY: `#[repr(C)]` of an rwlock around integers and an atomic.
unsafe impl ShmSafe for RwScene {}

/// RwLock points: whether the victim writes (else reads), whether the parent write-holds the lock
/// first (so the victim waits), and whether the victim holds the lock when it dies there.
const RW_POINTS: &[(&str, bool, bool, bool)] = &[
    ("rwlock.read.acquired", false, false, true),
    ("rwlock.read.before_wait", false, true, false),
    ("rwlock.read.after_wait", false, true, false),
    ("rwlock.read.after_contended_cas", false, true, true),
    ("rwlock.read_unlock.before_sub", false, false, true),
    ("rwlock.read_unlock.after_sub", false, false, false),
    ("rwlock.write.acquired", true, false, true),
    ("rwlock.write.before_wait", true, true, false),
    ("rwlock.write.after_wait", true, true, false),
    ("rwlock.write.after_contended_cas", true, true, true),
    ("rwlock.write_unlock.before_sub", true, false, true),
    ("rwlock.write_unlock.after_sub", true, false, false),
];

/// How long surviving rwlock users wait.
const RW_TIMEOUT: Duration = Duration::from_millis(300);

fn rw_victim((s, point, kill, writes): (Shared<RwScene>, String, bool, bool)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    if writes {
        let mut g = s.rw.write().unwrap();
        g[0] += 1;
        std::thread::sleep(Duration::from_millis(20));
        g[1] += 1;
    } else {
        let g = s.rw.read().unwrap();
        assert_eq!(g[0], g[1]);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waiter `i`: even ones write, odd ones read.
fn rw_waiter((s, i): (Shared<RwScene>, usize)) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    std::thread::sleep(Duration::from_millis(2));
    if i % 2 == 0 {
        match s.rw.write_timeout(RW_TIMEOUT) {
            Ok(mut g) if g[0] == g[1] => {
                g[0] += 1;
                g[1] += 1;
                Outcome::Ok
            }
            Ok(_) => Outcome::MarkerViolation,
            Err(_) => Outcome::Timeout,
        }
    } else {
        match s.rw.read_timeout(RW_TIMEOUT) {
            Ok(g) if g[0] == g[1] => Outcome::Ok,
            Ok(_) => Outcome::MarkerViolation,
            Err(_) => Outcome::Timeout,
        }
    }
}

fn rw_scene(
    point: &str,
    writes: bool,
    parent_holds: bool,
    held: bool,
    waiters: usize,
    action: CrashAction,
) -> (bool, Vec<Outcome>) {
    let s = Shared::new(RwScene {
        rw: RwLock::new([0, 0]),
        v_started: AtomicU32::new(0),
    })
    .unwrap();
    let guard = parent_holds.then(|| s.rw.write().unwrap());
    let kill = action == CrashAction::Kill;
    let v = Process::spawn(rw_victim, (s.clone(), point.to_owned(), kill, writes)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|i| Process::spawn(rw_waiter, (s.clone(), i)).unwrap())
        .collect();
    if let Some(g) = guard {
        wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
    }
    let died = victim_died(v, action, point);
    let ctx = format!("{point} ({waiters} waiters, {action:?}, died {died})");
    // Survivors finish by their own timeouts at the latest.
    let codes = join_survivors(ws, Instant::now(), &ctx);
    assert!(
        codes
            .iter()
            .all(|&c| c == Outcome::Ok || c == Outcome::Timeout),
        "{ctx}: torn data: {codes:?}"
    );
    if died && held && writes {
        // A dead writer keeps the lock (documented): nobody gets in, everybody times out.
        assert!(
            codes.iter().all(|&c| c == Outcome::Timeout),
            "{ctx}: {codes:?}"
        );
        assert!(s.rw.write_timeout(Duration::from_millis(10)).is_err());
        assert!(s.rw.read_timeout(Duration::from_millis(10)).is_err());
    } else if died && held {
        // A dead reader keeps its share: writers time out (readers may still get in).
        assert!(
            s.rw.write_timeout(Duration::from_millis(10)).is_err(),
            "{ctx}"
        );
    }
    (died, codes)
}

#[test]
fn battery_rwlock() {
    watchdog(90, || {
        for &(point, writes, parent_holds, held) in RW_POINTS {
            let mut hits = 0;
            let mut outcomes = Vec::new();
            for &(waiters, kill) in PLAN {
                let (died, codes) =
                    rw_scene(point, writes, parent_holds, held, waiters, action_of(kill));
                hits += u32::from(died);
                outcomes.push(codes);
            }
            eprintln!(
                "{point}: died there in {hits} of {} runs; survivors {outcomes:?}",
                PLAN.len()
            );
            assert!(hits > 0, "crash point {point} was never reached");
        }
    });
}
