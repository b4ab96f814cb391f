//! Crash-point battery for `Event` (see tests/common/crash.rs for the plan).

mod common;

use common::crash::*;
use common::{wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::Event;
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

// ---- Event ----------------------------------------------------------------------------------

#[repr(C)]
struct EventScene {
    ev: Event,
    v_started: AtomicU32,
}

// SAFETY: `#[repr(C)]` of an event and an atomic.
unsafe impl ShmSafe for EventScene {}

/// Waits in 50 ms slices (a setter that died before waking us costs at most one slice).
fn event_wait(ev: &Event) -> bool {
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if ev.wait_timeout(Duration::from_millis(50)) {
            return true;
        }
    }
    false
}

fn event_victim((s, point, kill): (Shared<EventScene>, String, bool)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    if point.contains("set") {
        std::thread::sleep(Duration::from_millis(20));
        s.ev.set();
    } else {
        assert!(event_wait(&s.ev));
    }
}

fn event_waiter(s: Shared<EventScene>) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    if event_wait(&s.ev) {
        Outcome::Ok
    } else {
        Outcome::Timeout
    }
}

fn event_scene(point: &str, waiters: usize, action: CrashAction) -> bool {
    let s = Shared::new(EventScene {
        ev: Event::new(),
        v_started: AtomicU32::new(0),
    })
    .unwrap();
    let setter = point.contains("set");
    let kill = action == CrashAction::Kill;
    let v = Process::spawn(event_victim, (s.clone(), point.to_owned(), kill)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|_| Process::spawn(event_waiter, s.clone()).unwrap())
        .collect();
    if !setter {
        wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
        std::thread::sleep(Duration::from_millis(20));
        s.ev.set();
    }
    let died = victim_died(v, action, point);
    let ctx = format!("{point} ({waiters} waiters, {action:?}, died {died})");
    let codes = join_survivors(ws, Instant::now(), &ctx);
    assert!(codes.iter().all(|&c| c == Outcome::Ok), "{ctx}: {codes:?}");
    // Both points of the setter come after the flag is set.
    assert!(s.ev.is_set(), "{ctx}");
    // Still usable: clear gates again, timeouts fire, set releases.
    s.ev.clear();
    let t = Instant::now();
    assert!(!s.ev.wait_timeout(Duration::from_millis(20)));
    assert!(t.elapsed() < Duration::from_millis(500), "{ctx}");
    s.ev.set();
    assert!(s.ev.wait_timeout(Duration::ZERO));
    died
}

#[test]
fn battery_event() {
    watchdog(60, || {
        for point in [
            "event.set.after_cas",
            "event.set.after_wake",
            "event.wait.after_count",
            "event.wait.after_wait",
        ] {
            run_point(point, event_scene);
        }
    });
}
