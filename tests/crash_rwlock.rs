//! Crash-point battery for the robust `RwLock` (see tests/common/crash.rs for the plan), and its
//! random-time SIGKILL soak with recovery latencies.

mod common;

use common::crash::*;
use common::{wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::{LockError, RwLock};
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

// ---- RwLock (robust) ------------------------------------------------------------------------

#[repr(C)]
struct RwScene {
    /// Writers keep both halves equal.
    rw: RwLock<[u64; 2]>,
    v_started: AtomicU32,
}

// SAFETY: `#[repr(C)]` of an rwlock around integers and an atomic.
unsafe impl ShmSafe for RwScene {}

/// What the victim does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Role {
    /// `read()`, hold 20 ms.
    Read,
    /// `write()`, write both halves 20 ms apart.
    Write,
    /// `write_timeout(30 ms)` while the parent read-holds for longer: times out draining.
    WriteTimeout,
    /// `write()`; after `OwnerDied`, drops the guard without `make_consistent`.
    WriteNoRepair,
}

/// What happens before the victim runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Nothing,
    /// The parent write-holds until 20 ms after the victim started (the victim waits).
    ParentWrites,
    /// The parent read-holds until 20 ms (100 ms for `WriteTimeout`) after the victim started.
    ParentReads,
    /// A child died holding the write lock (its guard forgotten, then it exited).
    DeadWriter,
    /// A child died holding a read lock.
    DeadReader,
}

/// Every rwlock crash point: the victim's role, the setup, and whether the victim holds the
/// writer lock when it dies there (then exactly one survivor is told `OwnerDied`).
const RW_POINTS: &[(&str, Role, Setup, bool)] = &[
    (
        "rwlock.read.slot_claimed",
        Role::Read,
        Setup::Nothing,
        false,
    ),
    ("rwlock.read.acquired", Role::Read, Setup::Nothing, false),
    (
        "rwlock.read.slot_returned",
        Role::Read,
        Setup::ParentWrites,
        false,
    ),
    (
        "rwlock.read.before_wait",
        Role::Read,
        Setup::ParentWrites,
        false,
    ),
    (
        "rwlock.read.after_wait",
        Role::Read,
        Setup::ParentWrites,
        false,
    ),
    ("rwlock.read.took_over", Role::Read, Setup::DeadWriter, true),
    (
        "rwlock.read_unlock.before_free",
        Role::Read,
        Setup::Nothing,
        false,
    ),
    (
        "rwlock.read_unlock.after_free",
        Role::Read,
        Setup::Nothing,
        false,
    ),
    (
        "rwlock.write.writer_locked",
        Role::Write,
        Setup::Nothing,
        true,
    ),
    (
        "rwlock.write.gate_closed",
        Role::Write,
        Setup::Nothing,
        true,
    ),
    (
        "rwlock.write.before_wait",
        Role::Write,
        Setup::ParentReads,
        true,
    ),
    (
        "rwlock.write.after_wait",
        Role::Write,
        Setup::ParentReads,
        true,
    ),
    (
        "rwlock.write.reclaimed",
        Role::Write,
        Setup::DeadReader,
        true,
    ),
    (
        "rwlock.write.gave_up",
        Role::WriteTimeout,
        Setup::ParentReads,
        true,
    ),
    ("rwlock.write.acquired", Role::Write, Setup::Nothing, true),
    (
        "rwlock.write_unlock.before_open",
        Role::Write,
        Setup::Nothing,
        true,
    ),
    (
        "rwlock.write_unlock.after_open",
        Role::Write,
        Setup::Nothing,
        true,
    ),
    (
        "rwlock.write_unlock.not_recoverable",
        Role::WriteNoRepair,
        Setup::DeadWriter,
        false,
    ),
];

/// How long surviving rwlock users wait at most (they should get in within milliseconds).
const RW_TIMEOUT: Duration = Duration::from_secs(2);

fn rw_victim((s, point, kill, role): (Shared<RwScene>, String, bool, Role)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    match role {
        Role::Read => {
            let g = match s.rw.read() {
                Ok(g) => g,
                Err(LockError::OwnerDied(mut g)) => {
                    g.make_consistent();
                    g
                }
                Err(e) => panic!("victim read: {e:?}"),
            };
            assert_eq!(g[0], g[1]);
            std::thread::sleep(Duration::from_millis(20));
        }
        Role::Write | Role::WriteNoRepair => {
            let mut g = match s.rw.write() {
                Ok(g) => g,
                Err(LockError::OwnerDied(g)) if role == Role::WriteNoRepair => {
                    drop(g);
                    return;
                }
                Err(LockError::OwnerDied(mut g)) => {
                    g[1] = g[0];
                    g.make_consistent();
                    g
                }
                Err(e) => panic!("victim write: {e:?}"),
            };
            g[0] += 1;
            std::thread::sleep(Duration::from_millis(20));
            g[1] += 1;
        }
        Role::WriteTimeout => match s.rw.write_timeout(Duration::from_millis(30)) {
            Err(LockError::Timeout) => {}
            other => panic!("victim write_timeout: {other:?}"),
        },
    }
}

/// A child that dies holding the lock: forgets its guard and exits.
fn die_holding((s, write): (Shared<RwScene>, bool)) {
    if write {
        std::mem::forget(s.rw.write().unwrap());
    } else {
        std::mem::forget(s.rw.read().unwrap());
    }
}

/// Reads (`write` false) or writes once as a survivor; repairs after `OwnerDied`.
fn rw_survive(rw: &RwLock<[u64; 2]>, write: bool, timeout: Duration) -> Outcome {
    if write {
        match rw.write_timeout(timeout) {
            Ok(mut g) if g[0] == g[1] => {
                g[0] += 1;
                g[1] += 1;
                Outcome::Ok
            }
            Ok(_) => Outcome::MarkerViolation,
            Err(LockError::OwnerDied(mut g)) => {
                g[1] = g[0];
                g.make_consistent();
                Outcome::OwnerDied
            }
            Err(LockError::NotRecoverable) => Outcome::NotRecoverable,
            Err(LockError::Timeout) => Outcome::Timeout,
            Err(_) => Outcome::WouldBlock,
        }
    } else {
        match rw.read_timeout(timeout) {
            Ok(g) if g[0] == g[1] => Outcome::Ok,
            Ok(_) => Outcome::MarkerViolation,
            Err(LockError::OwnerDied(mut g)) => {
                // A reader can only check: these points never tear the data.
                assert_eq!(g[0], g[1], "torn data behind OwnerDied");
                g.make_consistent();
                Outcome::OwnerDied
            }
            Err(LockError::NotRecoverable) => Outcome::NotRecoverable,
            Err(LockError::Timeout) => Outcome::Timeout,
            Err(_) => Outcome::WouldBlock,
        }
    }
}

/// Waiter `i`: even ones write, odd ones read.
fn rw_waiter((s, i): (Shared<RwScene>, usize)) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    std::thread::sleep(Duration::from_millis(2));
    rw_survive(&s.rw, i % 2 == 0, RW_TIMEOUT)
}

fn rw_scene(
    point: &str,
    role: Role,
    setup: Setup,
    held: bool,
    waiters: usize,
    action: CrashAction,
) -> bool {
    let s = Shared::new(RwScene {
        rw: RwLock::new([0, 0]),
        v_started: AtomicU32::new(0),
    })
    .unwrap();
    if let Setup::DeadWriter | Setup::DeadReader = setup {
        Process::spawn(die_holding, (s.clone(), setup == Setup::DeadWriter))
            .unwrap()
            .join()
            .unwrap();
    }
    let write_guard = (setup == Setup::ParentWrites).then(|| s.rw.write().unwrap());
    let read_guard = (setup == Setup::ParentReads).then(|| s.rw.read().unwrap());
    let kill = action == CrashAction::Kill;
    let v = Process::spawn(rw_victim, (s.clone(), point.to_owned(), kill, role)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|i| Process::spawn(rw_waiter, (s.clone(), i)).unwrap())
        .collect();
    if setup == Setup::ParentWrites || setup == Setup::ParentReads {
        wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
        let hold = if role == Role::WriteTimeout { 100 } else { 20 };
        std::thread::sleep(Duration::from_millis(hold));
        drop(write_guard);
        drop(read_guard);
    }
    let died = victim_died(v, action, point);
    let ctx = format!("{point} ({waiters} waiters, {action:?}, died {died})");
    let mut codes = join_survivors(ws, Instant::now(), &ctx);
    // Then the parent, as one more survivor: a writer, then a reader.
    let t0 = Instant::now();
    codes.push(rw_survive(&s.rw, true, RW_TIMEOUT));
    codes.push(rw_survive(&s.rw, false, RW_TIMEOUT));
    assert!(
        t0.elapsed() < SURVIVE,
        "{ctx}: the parent took {:?}",
        t0.elapsed()
    );
    let owner_died = codes.iter().filter(|&&c| c == Outcome::OwnerDied).count();
    if died && role == Role::WriteNoRepair {
        // The victim released an unrepaired lock: unusable for everyone.
        assert!(
            codes.iter().all(|&c| c == Outcome::NotRecoverable),
            "{ctx}: {codes:?}"
        );
        assert!(s.rw.is_not_recoverable(), "{ctx}");
        assert!(matches!(s.rw.try_read(), Err(LockError::NotRecoverable)));
        return died;
    }
    assert!(
        codes
            .iter()
            .all(|&c| c == Outcome::Ok || c == Outcome::OwnerDied),
        "{ctx}: {codes:?}"
    );
    // Exactly one survivor is told, when a writer (the victim, or the setup's) died holding.
    let expected = usize::from((died && held) || setup == Setup::DeadWriter);
    assert_eq!(owner_died, expected, "{ctx}: {codes:?}");
    // Afterwards the lock is free and clean: no slot, no gate, no writer left behind.
    assert!(s.rw.try_write().is_ok(), "{ctx}");
    let (r1, r2) = (s.rw.try_read(), s.rw.try_read());
    assert!(r1.is_ok() && r2.is_ok(), "{ctx}");
    died
}

#[test]
fn battery_rwlock() {
    watchdog(300, || {
        for &(point, role, setup, held) in RW_POINTS {
            run_point(point, |point, waiters, action| {
                rw_scene(point, role, setup, held, waiters, action)
            });
        }
    });
}

// =============================================================================================
// Random-time SIGKILL soak (shared parts in tests/common/soak.rs).

mod soak {
    use crate::common::soak::*;
    use crate::common::{Rng, percentile, spin_us, wait_for};

    use multiproc::sync::{LockError, RwLock};
    use multiproc::{Process, Shared, ShmSafe};
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    // ---------------------------------------------------------------------------------------------
    // RwLock (robust): a dead writer hands exactly one survivor `OwnerDied`, a dead reader's hold
    // is freed by the next writer; data is never torn behind a clean acquisition.

    #[repr(C)]
    struct RwSoak {
        /// Writers store `[v, !v]`; a reader told `OwnerDied` repairs through the atomics.
        l: RwLock<[AtomicU64; 2]>,
        started: AtomicU32,
        /// IDLE..RETURNED for the write lock, +10 for a read lock.
        phase: AtomicU32,
    }
    // SAFETY: `#[repr(C)]` of an rwlock around atomics and atomics, all `ShmSafe`.
    unsafe impl ShmSafe for RwSoak {}

    const READ: u32 = 10;
    /// How long survivors wait at most (they get in within milliseconds).
    const LONG: Duration = Duration::from_secs(1);

    fn consistent(g: &[AtomicU64; 2]) -> bool {
        g[1].load(Ordering::Relaxed) == !g[0].load(Ordering::Relaxed)
    }

    fn repair(g: &[AtomicU64; 2]) {
        g[1].store(!g[0].load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn rw_victim((s, seed): (Shared<RwSoak>, u64)) {
        let mut rng = Rng(seed | 1);
        let end = Instant::now() + VICTIM_LIFE;
        s.started.store(1, Ordering::SeqCst);
        let mut v = 0u64;
        while Instant::now() < end {
            if rng.below(2) == 0 {
                s.phase.store(TAKING, Ordering::SeqCst);
                let Ok(g) = s.l.write_timeout(Duration::from_secs(1)) else {
                    continue;
                };
                s.phase.store(HOLDING, Ordering::SeqCst);
                v += 1;
                g[0].store(v, Ordering::Relaxed);
                spin_us(rng.below(100));
                g[1].store(!v, Ordering::Relaxed);
                s.phase.store(RETURNING, Ordering::SeqCst);
                drop(g);
                s.phase.store(RETURNED, Ordering::SeqCst);
            } else {
                s.phase.store(READ + TAKING, Ordering::SeqCst);
                let Ok(g) = s.l.read_timeout(Duration::from_secs(1)) else {
                    continue;
                };
                s.phase.store(READ + HOLDING, Ordering::SeqCst);
                assert!(consistent(&g));
                spin_us(rng.below(100));
                s.phase.store(READ + RETURNING, Ordering::SeqCst);
                drop(g);
                s.phase.store(READ + RETURNED, Ordering::SeqCst);
            }
            spin_us(rng.below(50));
        }
    }

    fn summary(what: &str, samples: &mut [u64]) -> String {
        format!(
            "{what}: n {} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            samples.len(),
            percentile(samples, 50) as f64 / 1000.0,
            percentile(samples, 99) as f64 / 1000.0,
            percentile(samples, 100) as f64 / 1000.0
        )
    }

    #[test]
    fn rwlock_soak_random_kills() {
        soak_watchdog(|| {
            let (mut dead_writer, mut dead_reader, mut ambiguous) = (0, 0, 0);
            // Recovery latency from the SIGKILL: a dead writer's lock taken over (by a blocked
            // contender thread, or the parent's writer after reaping, whichever first); a dead
            // reader's hold freed (the first write lock anyone got after the kill).
            let (mut writer_lat, mut reader_lat) = (Vec::new(), Vec::new());
            soak("rwlock", 5, |rng, ctx| {
                let s = Shared::new(RwSoak {
                    l: RwLock::new([AtomicU64::new(0), AtomicU64::new(!0)]),
                    started: AtomicU32::new(0),
                    phase: AtomicU32::new(IDLE),
                })
                .unwrap();
                let mut victim = Process::spawn(rw_victim, (s.clone(), rng.next())).unwrap();
                // A reader thread and a writer thread here contend until the victim is dead and
                // the parent wrote; they log when they took over (OwnerDied) and when they wrote.
                let stop = Arc::new(AtomicBool::new(false));
                let took_over: Arc<Mutex<Vec<Instant>>> = Arc::default();
                let wrote: Arc<Mutex<Vec<Instant>>> = Arc::default();
                let contenders: Vec<_> = [false, true]
                    .into_iter()
                    .map(|write| {
                        let (s, stop) = (s.clone(), stop.clone());
                        let (took_over, wrote) = (took_over.clone(), wrote.clone());
                        let ctx = ctx.to_owned();
                        std::thread::spawn(move || {
                            while !stop.load(Ordering::SeqCst) {
                                // Leave the victim room to run its own operations.
                                std::thread::sleep(Duration::from_micros(if write {
                                    500
                                } else {
                                    100
                                }));
                                let timeout = Duration::from_millis(20);
                                let died_at = || took_over.lock().unwrap().push(Instant::now());
                                if write {
                                    match s.l.write_timeout(timeout) {
                                        Ok(g) => {
                                            assert!(consistent(&g), "{ctx}: torn under write");
                                            wrote.lock().unwrap().push(Instant::now());
                                            let v = g[0].load(Ordering::Relaxed) + 1;
                                            g[0].store(v, Ordering::Relaxed);
                                            g[1].store(!v, Ordering::Relaxed);
                                        }
                                        Err(LockError::OwnerDied(mut g)) => {
                                            died_at();
                                            repair(&g);
                                            g.make_consistent();
                                        }
                                        Err(LockError::Timeout) => {}
                                        Err(e) => panic!("{ctx}: writer: {e:?}"),
                                    }
                                } else {
                                    match s.l.read_timeout(timeout) {
                                        Ok(g) => assert!(consistent(&g), "{ctx}: torn read"),
                                        Err(LockError::OwnerDied(mut g)) => {
                                            died_at();
                                            repair(&g);
                                            g.make_consistent();
                                        }
                                        Err(LockError::Timeout) => {}
                                        Err(e) => panic!("{ctx}: reader: {e:?}"),
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                wait_for("the victim to start", || {
                    s.started.load(Ordering::SeqCst) != 0 || !victim.is_alive()
                });
                spin_us(rng.below(3_000));
                let t_kill = Instant::now();
                let _ = victim.kill();
                match victim.join_timeout(Duration::from_secs(5)) {
                    Err(multiproc::Error::ChildSignaled { signal: 9 }) => {}
                    other => panic!("{ctx}: victim: unexpected outcome {other:?}"),
                }
                let phase = s.phase.load(Ordering::SeqCst);
                let (wrote_died, t_write) = match s.l.write_timeout(LONG) {
                    Ok(g) => {
                        assert!(consistent(&g), "{ctx}: torn value under a clean write lock");
                        (false, Instant::now())
                    }
                    Err(LockError::OwnerDied(mut g)) => {
                        let t = Instant::now();
                        repair(&g);
                        g.make_consistent();
                        (true, t)
                    }
                    Err(e) => panic!("{ctx}: write_timeout after the kill: {e:?}"),
                };
                stop.store(true, Ordering::SeqCst);
                let t0 = Instant::now();
                for c in contenders {
                    c.join().unwrap();
                }
                assert!(t0.elapsed() < Duration::from_secs(1), "{ctx}");
                let after_kill = |v: &Mutex<Vec<Instant>>| -> Vec<Instant> {
                    let v = v.lock().unwrap();
                    v.iter().filter(|&&t| t >= t_kill).copied().collect()
                };
                let reader_took = after_kill(&took_over);
                // The first write lock anyone got after the kill.
                let first_write = after_kill(&wrote)
                    .into_iter()
                    .chain(reader_took.iter().copied())
                    .chain([t_write])
                    .min()
                    .unwrap_or(t_write);
                let lat = |t: Instant| t.saturating_duration_since(t_kill).as_micros() as u64;
                let told = reader_took.len() + usize::from(wrote_died);
                assert!(told <= 1, "{ctx}: OwnerDied {told} times");
                // Afterwards everything passes at once.
                assert!(s.l.try_read().is_ok(), "{ctx}");
                assert!(s.l.try_write().is_ok(), "{ctx}");
                match phase {
                    HOLDING => {
                        assert_eq!(told, 1, "{ctx}: dead writer, OwnerDied {told} times");
                        dead_writer += 1;
                        let first = reader_took.first().copied().unwrap_or(t_write);
                        writer_lat.push(lat(first));
                    }
                    p if p == READ + HOLDING => {
                        assert_eq!(told, 0, "{ctx}: dead reader, OwnerDied");
                        dead_reader += 1;
                        reader_lat.push(lat(first_write));
                    }
                    IDLE | RETURNED => assert_eq!(told, 0, "{ctx}"),
                    p if p == READ + RETURNED => assert_eq!(told, 0, "{ctx}"),
                    _ => ambiguous += 1,
                }
            });
            println!(
                "rwlock: {dead_writer} dead writers (exactly one OwnerDied each), {dead_reader} \
                 dead readers (freed by the next writer), {ambiguous} ambiguous (killed between a \
                 phase mark and the operation)"
            );
            println!(
                "rwlock recovery {}",
                summary("dead writer", &mut writer_lat)
            );
            println!(
                "rwlock recovery {}",
                summary("dead reader", &mut reader_lat)
            );
        });
    }
}
