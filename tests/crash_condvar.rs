//! Crash-point battery for `Condvar` (see tests/common/crash.rs for the plan).

mod common;

use common::crash::*;
use common::{wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::{Condvar, LockError, Mutex};
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

// ---- Condvar --------------------------------------------------------------------------------

#[repr(C)]
struct CvScene {
    /// `[items, consumed by the victim]`.
    m: Mutex<[u64; 2]>,
    cv: Condvar,
    v_started: AtomicU32,
    owner_died_seen: AtomicU32,
}

// SAFETY: `#[repr(C)]` of a mutex around integers, a condvar and atomics.
unsafe impl ShmSafe for CvScene {}

/// Locks, counting and repairing an `OwnerDied`.
fn cv_lock(s: &CvScene) -> multiproc::sync::MutexGuard<'_, [u64; 2]> {
    match s.m.lock_timeout(Duration::from_secs(3)) {
        Ok(g) => g,
        Err(LockError::OwnerDied(mut g)) => {
            s.owner_died_seen.fetch_add(1, Ordering::SeqCst);
            g.make_consistent();
            g
        }
        Err(e) => panic!("condvar scene: lock failed: {e:?}"),
    }
}

/// Takes one item, waiting in 50 ms slices (so a notifier that died before waking us costs at
/// most one slice). Returns false if none came within 3 s.
fn cv_take(s: &CvScene, victim: bool) -> bool {
    let end = Instant::now() + Duration::from_secs(3);
    let mut g = cv_lock(s);
    while g[0] == 0 {
        if Instant::now() > end {
            return false;
        }
        g = match s.cv.wait_timeout(g, Duration::from_millis(50)) {
            Ok((g, _)) => g,
            Err(LockError::OwnerDied((mut g, _))) => {
                s.owner_died_seen.fetch_add(1, Ordering::SeqCst);
                g.make_consistent();
                g
            }
            Err(e) => panic!("condvar scene: relock failed: {e:?}"),
        };
    }
    g[0] -= 1;
    if victim {
        g[1] += 1;
    }
    true
}

fn cv_victim((s, point, kill, items): (Shared<CvScene>, String, bool, u64)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    if point.contains("notify") {
        // The producer.
        std::thread::sleep(Duration::from_millis(20));
        cv_lock(&s)[0] += items;
        s.cv.notify_all();
    } else {
        assert!(cv_take(&s, true));
    }
}

fn cv_waiter(s: Shared<CvScene>) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    if cv_take(&s, false) {
        Outcome::Ok
    } else {
        Outcome::Timeout
    }
}

/// Condvar points, and whether the victim holds the mutex when it dies there.
const CV_POINTS: &[(&str, bool)] = &[
    ("condvar.wait.after_count", true),
    ("condvar.wait.after_unlock", false),
    ("condvar.wait.after_wait", false),
    ("condvar.wait.before_relock", false),
    ("condvar.notify.after_bump", false),
    ("condvar.notify.after_wake", false),
];

fn cv_scene(point: &str, held: bool, waiters: usize, action: CrashAction) -> bool {
    let s = Shared::new(CvScene {
        m: Mutex::new([0, 0]),
        cv: Condvar::new(),
        v_started: AtomicU32::new(0),
        owner_died_seen: AtomicU32::new(0),
    })
    .unwrap();
    let producer = point.contains("notify");
    let kill = action == CrashAction::Kill;
    let items = waiters as u64;
    let v = Process::spawn(cv_victim, (s.clone(), point.to_owned(), kill, items)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|_| Process::spawn(cv_waiter, s.clone()).unwrap())
        .collect();
    if !producer {
        // The parent produces one item per consumer (victim included).
        wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
        std::thread::sleep(Duration::from_millis(20));
        cv_lock(&s)[0] += items + 1;
        s.cv.notify_all();
    }
    let died = victim_died(v, action, point);
    let ctx = format!("{point} ({waiters} waiters, {action:?}, died {died})");
    let codes = join_survivors(ws, Instant::now(), &ctx);
    assert!(codes.iter().all(|&c| c == Outcome::Ok), "{ctx}: {codes:?}");
    let g = cv_lock(&s);
    // Every item produced was taken once: by a waiter, by the victim, or is still there.
    let produced = if producer { items } else { items + 1 };
    assert_eq!(g[0] + g[1] + waiters as u64, produced, "{ctx}");
    drop(g);
    let ods = s.owner_died_seen.load(Ordering::SeqCst);
    assert_eq!(
        ods,
        u32::from(died && held),
        "{ctx}: OwnerDied seen {ods} times"
    );
    died
}

#[test]
fn battery_condvar() {
    watchdog(60, || {
        for &(point, held) in CV_POINTS {
            run_point(point, |p, w, a| cv_scene(p, held, w, a));
        }
    });
}
