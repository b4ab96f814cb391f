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

// =============================================================================================
// Random-time SIGKILL soak (shared parts in tests/common/soak.rs).

mod soak {
    use super::*;

    use crate::common::soak::*;
    use crate::common::{Rng, spin_us};

    use multiproc::sync::{LockError, RwLock};
    use multiproc::{Process, Shared, ShmSafe};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    // ---------------------------------------------------------------------------------------------
    // RwLock (not robust): a dead writer blocks everyone until their timeouts; a dead reader blocks
    // writers. Data is never torn.

    #[repr(C)]
    struct RwSoak {
        l: RwLock<[u64; 2]>,
        started: AtomicU32,
        /// IDLE..RETURNED for the write lock, +10 for a read lock.
        phase: AtomicU32,
    }
    // SAFETY: `#[repr(C)]` of an rwlock around integers and atomics, all `ShmSafe`.
    unsafe impl ShmSafe for RwSoak {}

    const READ: u32 = 10;

    fn rw_victim((s, seed): (Shared<RwSoak>, u64)) {
        let mut rng = Rng(seed | 1);
        let end = Instant::now() + VICTIM_LIFE;
        s.started.store(1, Ordering::SeqCst);
        let mut v = 0u64;
        while Instant::now() < end {
            if rng.below(2) == 0 {
                s.phase.store(TAKING, Ordering::SeqCst);
                let Ok(mut g) = s.l.write_timeout(Duration::from_secs(1)) else {
                    continue;
                };
                s.phase.store(HOLDING, Ordering::SeqCst);
                v += 1;
                g[0] = v;
                spin_us(rng.below(100));
                g[1] = !v;
                s.phase.store(RETURNING, Ordering::SeqCst);
                drop(g);
                s.phase.store(RETURNED, Ordering::SeqCst);
            } else {
                s.phase.store(READ + TAKING, Ordering::SeqCst);
                let Ok(g) = s.l.read_timeout(Duration::from_secs(1)) else {
                    continue;
                };
                s.phase.store(READ + HOLDING, Ordering::SeqCst);
                assert_eq!(g[1], !g[0]);
                spin_us(rng.below(100));
                s.phase.store(READ + RETURNING, Ordering::SeqCst);
                drop(g);
                s.phase.store(READ + RETURNED, Ordering::SeqCst);
            }
            spin_us(rng.below(50));
        }
    }

    /// A `read_timeout(SHORT)`: whether it passed (an expected timeout must fire within bounds, and
    /// the data must not be torn).
    fn try_read(l: &RwLock<[u64; 2]>, ctx: &str) -> bool {
        let t0 = Instant::now();
        match l.read_timeout(SHORT) {
            Ok(g) => {
                assert_eq!(g[1], !g[0], "{ctx}: torn read");
                true
            }
            Err(LockError::Timeout) => {
                assert_timed_out(t0.elapsed(), SHORT, ctx);
                false
            }
            Err(e) => panic!("{ctx}: read_timeout: {e:?}"),
        }
    }

    /// A `write_timeout(SHORT)`, as [`try_read`].
    fn try_write(l: &RwLock<[u64; 2]>, ctx: &str) -> bool {
        let t0 = Instant::now();
        match l.write_timeout(SHORT) {
            Ok(g) => {
                assert_eq!(g[1], !g[0], "{ctx}: torn value under the write lock");
                true
            }
            Err(LockError::Timeout) => {
                assert_timed_out(t0.elapsed(), SHORT, ctx);
                false
            }
            Err(e) => panic!("{ctx}: write_timeout: {e:?}"),
        }
    }

    #[test]
    fn rwlock_soak_random_kills() {
        soak_watchdog(|| {
            let (mut dead_writer, mut dead_reader, mut stale_bit, mut ambiguous) = (0, 0, 0, 0);
            let mut stale_waiting = 0;
            soak("rwlock", 5, |rng, ctx| {
                let s = Shared::new(RwSoak {
                    l: RwLock::new([0, !0]),
                    started: AtomicU32::new(0),
                    phase: AtomicU32::new(IDLE),
                })
                .unwrap();
                let mut victim = Process::spawn(rw_victim, (s.clone(), rng.next())).unwrap();
                // A reader thread here contends (with timeouts) until the victim is dead.
                let stop = Arc::new(AtomicBool::new(false));
                let reader = {
                    let (s, stop) = (s.clone(), stop.clone());
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            if let Ok(g) = s.l.read_timeout(Duration::from_millis(20)) {
                                assert_eq!(g[1], !g[0], "torn read");
                            }
                        }
                    })
                };
                kill_after_random_delay(rng, &mut victim, &s.started, ctx);
                stop.store(true, Ordering::SeqCst);
                let t0 = Instant::now();
                reader.join().unwrap();
                assert!(t0.elapsed() < SURVIVE, "{ctx}");

                let phase = s.phase.load(Ordering::SeqCst);
                let r1 = try_read(&s.l, ctx);
                let w = try_write(&s.l, ctx);
                let r2 = try_read(&s.l, ctx);
                // Died holding the write lock: everyone times out. Holding a read lock: readers
                // pass, writers time out; and a writer that timed out leaves WRITERS_WAITING set,
                // which no unlock will ever clear, so later readers may time out too. Free: all pass.
                match (phase, r1, w, r2) {
                    (HOLDING, false, false, false) => dead_writer += 1,
                    (p, true, false, r2) if p == READ + HOLDING => {
                        dead_reader += 1;
                        stale_bit += u64::from(!r2);
                    }
                    (IDLE | RETURNED, true, true, true) => {}
                    (p, true, true, true) if p == READ + RETURNED => {}
                    (p, r1, w, r2)
                        if [TAKING, RETURNING, READ + TAKING, READ + RETURNING].contains(&p) =>
                    {
                        // Between a phase mark and the operation: either outcome, but a lock
                        // writers can take is one readers can take once that writer unlocked. (A
                        // writer killed while waiting leaves a stale WRITERS_WAITING bit: readers
                        // before the next unlock queue behind it and time out; the unlock clears it.)
                        assert!(!w || r2, "{ctx}: write passed, the read after it did not");
                        stale_waiting += u64::from(w && !r1);
                        ambiguous += 1;
                    }
                    other => panic!("{ctx}: phase/outcome {other:?}"),
                }
            });
            println!(
                "rwlock: {dead_writer} dead writers (all time out), {dead_reader} dead readers \
                 (writers time out; later readers too in {stale_bit}), {ambiguous} ambiguous \
                 ({stale_waiting} with a stale waiting bit until the next unlock)"
            );
        });
    }
}
