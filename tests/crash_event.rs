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
    assert!(t.elapsed() < Duration::from_secs(5), "{ctx}");
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

// =============================================================================================
// Random-time SIGKILL soak (shared parts in tests/common/soak.rs).

mod soak {
    use super::*;

    use crate::common::soak::*;
    use crate::common::{Rng, spin_us};

    use multiproc::sync::Event;
    use multiproc::{Process, Shared, ShmSafe};

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

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
                let mut victim =
                    Process::spawn(event_victim, (s.clone(), rng.next(), setter)).unwrap();
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
                assert!(t0.elapsed() < SLACK, "{ctx}");
                s.stop.store(1, Ordering::SeqCst);
                let t0 = Instant::now();
                waiter.join_timeout(SURVIVE).unwrap();
                assert!(t0.elapsed() < SURVIVE, "{ctx}");
                assert!(s.ev.is_set(), "{ctx}");
            });
        });
    }
}
