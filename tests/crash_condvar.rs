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

/// Takes one item, waiting without a timeout: a notifier that died between its bump and its
/// wake costs at most one slice of the condvar's sleep (survivors must finish within `SURVIVE`).
fn cv_take(s: &CvScene, victim: bool) -> bool {
    let mut g = cv_lock(s);
    while g[0] == 0 {
        g = match s.cv.wait(g) {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) => {
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

// =============================================================================================
// Random-time SIGKILL soak (shared parts in tests/common/soak.rs).

mod soak {
    use super::*;

    use crate::common::soak::*;
    use crate::common::{Rng, spin_us, wait_for};

    use multiproc::sync::{Condvar, LockError, Mutex};
    use multiproc::{Process, Shared, ShmSafe};

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    // ---------------------------------------------------------------------------------------------
    // Condvar + Mutex: producers and consumers; a dead holder is `OwnerDied` for exactly one
    // survivor, who repairs the counts; a dead notifier costs waiters a timeout slice.

    /// `[items, produced, consumed, in-critical-section marker]`.
    type Counts = [u64; 4];

    #[repr(C)]
    struct CvSoak {
        m: Mutex<Counts>,
        cv: Condvar,
        started: AtomicU32,
        stop: AtomicU32,
        /// How many `OwnerDied` were reported, and how many of them found the marker set.
        owner_died: AtomicU32,
        repaired_marker: AtomicU32,
    }
    // SAFETY: `#[repr(C)]` of a mutex around integers, a condvar and atomics, all `ShmSafe`.
    unsafe impl ShmSafe for CvSoak {}

    /// Locks, repairing after a dead holder: items are recomputed from the (monotonic) counters.
    fn cv_lock(s: &CvSoak, timeout: Duration) -> multiproc::sync::MutexGuard<'_, Counts> {
        match s.m.lock_timeout(timeout) {
            Ok(g) => {
                assert_eq!(g[3], 0, "clean acquisition with the marker set");
                g
            }
            Err(LockError::OwnerDied(g)) => repair(s, g),
            Err(e) => panic!("condvar mutex: {e:?}"),
        }
    }

    fn repair<'a>(
        s: &CvSoak,
        mut g: multiproc::sync::MutexGuard<'a, Counts>,
    ) -> multiproc::sync::MutexGuard<'a, Counts> {
        s.owner_died.fetch_add(1, Ordering::SeqCst);
        if g[3] != 0 {
            s.repaired_marker.fetch_add(1, Ordering::SeqCst);
        }
        g[0] = g[1] - g[2];
        g[3] = 0;
        g.make_consistent();
        g
    }

    fn cv_produce_one(s: &CvSoak, timeout: Duration) {
        let mut g = cv_lock(s, timeout);
        g[3] = 1;
        g[1] += 1;
        g[0] += 1;
        g[3] = 0;
        drop(g);
        s.cv.notify_one();
    }

    /// Consumes one item if one comes within `timeout`; false otherwise.
    fn cv_consume_one(s: &CvSoak, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = cv_lock(s, SURVIVE);
        while g[0] == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // Short slices: a notifier may die between its bump and its wake.
            g = match s.cv.wait_timeout(g, left.min(Duration::from_millis(20))) {
                Ok((g, _)) => g,
                Err(LockError::OwnerDied((g, _))) => repair(s, g),
                Err(e) => panic!("condvar wait: {e:?}"),
            };
        }
        g[3] = 1;
        g[0] -= 1;
        g[2] += 1;
        g[3] = 0;
        true
    }

    /// Produces or consumes until told to stop; a consumer drains what is left before returning.
    fn cv_party((s, seed, producer): (Shared<CvSoak>, u64, bool)) {
        let mut rng = Rng(seed | 1);
        let end = Instant::now() + VICTIM_LIFE;
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            if producer {
                if s.stop.load(Ordering::SeqCst) != 0 {
                    return;
                }
                // Bounded backlog: the consumer may be dead.
                if cv_lock(&s, SURVIVE)[0] < 16 {
                    cv_produce_one(&s, SURVIVE);
                }
                spin_us(rng.below(50));
            } else if !cv_consume_one(&s, Duration::from_millis(20))
                && s.stop.load(Ordering::SeqCst) != 0
            {
                return;
            }
        }
    }

    #[test]
    fn condvar_soak_random_kills() {
        soak_watchdog(|| {
            let mut owner_died = 0;
            soak("condvar", 3, |rng, ctx| {
                let s = Shared::new(CvSoak {
                    m: Mutex::new([0; 4]),
                    cv: Condvar::new(),
                    started: AtomicU32::new(0),
                    stop: AtomicU32::new(0),
                    owner_died: AtomicU32::new(0),
                    repaired_marker: AtomicU32::new(0),
                })
                .unwrap();
                let victim_produces = rng.below(2) == 0;
                let mut victim =
                    Process::spawn(cv_party, (s.clone(), rng.next(), victim_produces)).unwrap();
                let mut other =
                    Process::spawn(cv_party, (s.clone(), rng.next(), !victim_produces)).unwrap();
                kill_after_random_delay(rng, &mut victim, &s.started, ctx);
                // The survivor side: this process produces three items (the other child may be the
                // consumer) or consumes (if the child is the producer); everything within 1 s.
                let t0 = Instant::now();
                for _ in 0..3 {
                    cv_produce_one(&s, SURVIVE);
                }
                if victim_produces {
                    // The surviving child consumes; it drains and returns once told to stop.
                    wait_for("the consumer to drain", || cv_lock(&s, SURVIVE)[0] == 0);
                }
                s.stop.store(1, Ordering::SeqCst);
                other.join_timeout(SURVIVE).unwrap();
                if !victim_produces {
                    // Everything the producers made, ours included.
                    while cv_consume_one(&s, SHORT) {}
                }
                assert!(
                    t0.elapsed() < SURVIVE + SURVIVE,
                    "{ctx}: took {:?}",
                    t0.elapsed()
                );
                let g = cv_lock(&s, SURVIVE);
                let died = s.owner_died.load(Ordering::SeqCst);
                assert!(died <= 1, "{ctx}: OwnerDied reported {died} times");
                assert!(
                    s.repaired_marker.load(Ordering::SeqCst) <= died,
                    "{ctx}: marker repaired without OwnerDied"
                );
                assert_eq!(g[0], 0, "{ctx}: items left {g:?}");
                assert_eq!(g[1], g[2], "{ctx}: produced != consumed: {g:?}");
                owner_died += u64::from(died);
            });
            println!("condvar: {owner_died} runs saw OwnerDied");
        });
    }
}
