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
        t.elapsed() < Duration::from_millis(500),
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
