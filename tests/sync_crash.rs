//! Crash tests for the sync primitives: peers that die (SIGKILL or `_exit`) at any point of a
//! primitive's protocol must not hang, corrupt or confuse the survivors.
//!
//! - `mutex_soak_*`: a child loops lock/unlock and is SIGKILLed after a random delay, or dies at a
//!   randomly armed crash point; a second child contends. Checks, per run, that every survivor
//!   acquires within 1 s, that `OwnerDied` appears exactly when the victim died holding the lock,
//!   and the `make_consistent` / `NotRecoverable` rules. Prints death-detection latencies.
//!   Default: 200 runs. Longer soak:
//!   `MULTIPROC_SOAK_RUNS=5000 cargo test --test sync_crash mutex_soak -- --nocapture` (a debug build:
//!   crash points are compiled out of release builds)
//! - `battery_*`: every crash point of every primitive (`multiproc::crash::point` names), with 0, 1
//!   and 2 waiting children, `Kill` (and `Exit` with one waiter): survivors finish within 1 s with
//!   `Ok` and the invariant intact, or the documented error.
//! - `glibc_robust_mutex_and_ours_both_report_owner_death`: a thread holds a robust pthread mutex
//!   and ours when its process dies.

mod common;

use common::{Rng, now_ns, percentile, spin_us, wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::{
    Barrier, BarrierError, Condvar, Event, LockError, Mutex, ReentrantMutex, RwLock, Semaphore,
    SemaphoreError,
};
use multiproc::{Error, Process, Segment, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

/// How long after a victim's death every survivor must have finished.
const SURVIVE: Duration = Duration::from_secs(1);

fn action_of(kill: bool) -> CrashAction {
    if kill {
        CrashAction::Kill
    } else {
        CrashAction::Exit
    }
}

/// Joins a victim; true if it died the way its armed action makes it die, false if it returned
/// (the point was not reached in that interleaving).
fn victim_died<R: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(
    mut v: Process<R>,
    action: CrashAction,
    point: &str,
) -> bool {
    match v.join_timeout(Duration::from_secs(10)) {
        Ok(_) => false,
        Err(Error::ChildExited { code: 77 }) if action == CrashAction::Exit => true,
        Err(Error::ChildSignaled { signal: 9 }) if action == CrashAction::Kill => true,
        Err(e) => {
            let _ = v.kill();
            panic!("victim at {point}: unexpected outcome {e}")
        }
    }
}

/// Joins survivors, each within [`SURVIVE`] of `since`.
fn join_survivors<R: serde::Serialize + serde::de::DeserializeOwned>(
    ws: Vec<Process<R>>,
    since: Instant,
    what: &str,
) -> Vec<R> {
    ws.into_iter()
        .map(|mut w| {
            let left = (since + SURVIVE).saturating_duration_since(Instant::now());
            match w.join_timeout(left.max(Duration::from_millis(1))) {
                Ok(r) => r,
                Err(e) => {
                    let _ = w.kill();
                    panic!("{what}: a survivor did not finish within {SURVIVE:?}: {e}")
                }
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What a surviving child reports (its entry's return value).

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Outcome {
    /// Acquired (or passed) cleanly.
    Ok,
    /// Acquired from a holder that died (`LockError::OwnerDied`).
    OwnerDied,
    /// `LockError::NotRecoverable`.
    NotRecoverable,
    /// The deadline passed first.
    Timeout,
    /// A clean acquisition found the in-critical-section marker set: the invariant was broken.
    MarkerViolation,
    /// `LockError::WouldBlock` (a `try_` form found it held).
    WouldBlock,
    /// `LockError::RecursionLimit` (never expected from a plain mutex).
    RecursionLimit,
    /// A barrier generation completed; this party's arrival index.
    Arrived(usize),
    /// `BarrierError::Broken`.
    Broken,
}

/// Locks `m` (`[marker, counter]`) once as a survivor: checks the marker on a clean acquisition,
/// repairs it and calls `make_consistent` (if `repair`) after `OwnerDied`, then runs a critical
/// section that increments the counter. Returns the result code.
fn survive_lock(m: &Mutex<[u64; 2]>, timeout: Duration, repair: bool) -> Outcome {
    match m.lock_timeout(timeout) {
        Ok(mut g) => {
            if g[0] != 0 {
                return Outcome::MarkerViolation;
            }
            g[0] = 1;
            g[1] += 1;
            g[0] = 0;
            Outcome::Ok
        }
        Err(LockError::OwnerDied(mut g)) => {
            g[0] = 0;
            if repair {
                g.make_consistent();
                g[1] += 1;
            }
            Outcome::OwnerDied
        }
        Err(LockError::NotRecoverable) => Outcome::NotRecoverable,
        Err(LockError::Timeout) => Outcome::Timeout,
        Err(LockError::WouldBlock) => Outcome::WouldBlock,
        Err(LockError::RecursionLimit) => Outcome::RecursionLimit,
    }
}

// =============================================================================================
// (a) Mutex soak: random SIGKILLs and random crash points.

/// The victim's progress around its lock operations.
const IDLE: u32 = 0;
const LOCKING: u32 = 1;
const HOLDING: u32 = 2;
const UNLOCKING: u32 = 3;
const RELEASED: u32 = 4;

#[repr(C)]
struct Soak {
    /// `[in-critical-section marker, counter]`.
    m: Mutex<[u64; 2]>,
    /// The victim's phase (IDLE..=RELEASED).
    phase: AtomicU32,
    /// Set by the parent once the victim is reaped.
    victim_dead: AtomicU32,
    /// The waiter's lock epochs: odd while it holds the lock.
    w_epoch: AtomicU64,
    /// When the waiter's last lock call started / returned (CLOCK_MONOTONIC ns).
    w_start: AtomicU64,
    w_acquired: AtomicU64,
}

// SAFETY: `#[repr(C)]` of a mutex around integers and atomics, all `ShmSafe`.
unsafe impl ShmSafe for Soak {}

/// Crash points a soak victim (which only ever locks and unlocks cleanly) can reach, with whether
/// it holds the lock when it dies there.
const SOAK_POINTS: &[(&str, bool)] = &[
    ("mutex.lock.before_cas", false),
    ("mutex.lock.after_cas", true),
    ("mutex.contended.before_waiters", false),
    ("mutex.contended.after_waiters", false),
    ("mutex.contended.before_wait", false),
    ("mutex.contended.after_wait", false),
    ("mutex.contended.after_cas", true),
    ("mutex.unlock.before_swap", true),
    ("mutex.unlock.after_swap", false),
    ("mutex.unlock.after_wake", false),
];

/// Loops lock / critical section / unlock for at most 2 s, publishing its phase.
fn soak_victim((s, seed, arm): (Shared<Soak>, u64, Option<(String, u64, bool)>)) {
    if let Some((point, nth, kill)) = &arm {
        crash::arm(point, *nth, action_of(*kill));
    }
    let mut rng = Rng(seed | 1);
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        s.phase.store(LOCKING, Ordering::SeqCst);
        let mut g = s.m.lock().expect("the victim is the first to die");
        s.phase.store(HOLDING, Ordering::SeqCst);
        g[0] = 1;
        g[1] += 1;
        spin_us(rng.below(300));
        g[0] = 0;
        s.phase.store(UNLOCKING, Ordering::SeqCst);
        drop(g);
        s.phase.store(RELEASED, Ordering::SeqCst);
        spin_us(rng.below(200));
    }
}

/// Contends with the victim until it is dead; returns the result code of the first acquisition
/// that saw the death (`OwnerDied`) or that happened after it.
fn soak_waiter((s, repair, seed): (Shared<Soak>, bool, u64)) -> Outcome {
    let mut rng = Rng(seed | 1);
    loop {
        s.w_start.store(now_ns(), Ordering::SeqCst);
        match s.m.lock_timeout(Duration::from_secs(3)) {
            Ok(mut g) => {
                s.w_acquired.store(now_ns(), Ordering::SeqCst);
                s.w_epoch.fetch_add(1, Ordering::SeqCst);
                if g[0] != 0 {
                    return Outcome::MarkerViolation;
                }
                if s.victim_dead.load(Ordering::SeqCst) != 0 {
                    s.w_epoch.fetch_add(1, Ordering::SeqCst);
                    return Outcome::Ok;
                }
                g[0] = 1;
                g[1] += 1;
                spin_us(rng.below(100));
                g[0] = 0;
                s.w_epoch.fetch_add(1, Ordering::SeqCst);
            }
            Err(LockError::OwnerDied(mut g)) => {
                s.w_acquired.store(now_ns(), Ordering::SeqCst);
                g[0] = 0;
                if repair {
                    g.make_consistent();
                }
                return Outcome::OwnerDied;
            }
            Err(LockError::NotRecoverable) => return Outcome::NotRecoverable,
            Err(LockError::Timeout) => return Outcome::Timeout,
            Err(LockError::WouldBlock) => return Outcome::WouldBlock,
            Err(LockError::RecursionLimit) => return Outcome::RecursionLimit,
        }
        spin_us(rng.below(100));
    }
}

/// A later locker in a fresh process.
fn late_locker(s: Shared<Soak>) -> Outcome {
    survive_lock(&s.m, Duration::from_secs(1), true)
}

#[derive(Default)]
struct SoakStats {
    runs: u64,
    died_inside: u64,
    died_outside: u64,
    ambiguous: u64,
    by_point: u64,
    not_recoverable: u64,
    blocked_ns: Vec<u64>,
    late_ns: Vec<u64>,
}

fn soak_runs() -> u64 {
    std::env::var("MULTIPROC_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn soak_run(rng: &mut Rng, stats: &mut SoakStats) {
    let s = Shared::new(Soak {
        m: Mutex::new([0, 0]),
        phase: AtomicU32::new(IDLE),
        victim_dead: AtomicU32::new(0),
        w_epoch: AtomicU64::new(0),
        w_start: AtomicU64::new(0),
        w_acquired: AtomicU64::new(0),
    })
    .unwrap();
    let with_waiter = rng.below(4) != 0;
    let repair = rng.below(3) != 0;
    let armed = (rng.below(2) == 0).then(|| {
        let (p, _) = SOAK_POINTS[rng.below(SOAK_POINTS.len() as u64) as usize];
        (p.to_owned(), 1 + rng.below(6), rng.below(2) == 0)
    });
    let mut victim = Process::spawn(soak_victim, (s.clone(), rng.next(), armed.clone())).unwrap();
    let waiter =
        with_waiter.then(|| Process::spawn(soak_waiter, (s.clone(), repair, rng.next())).unwrap());
    wait_for("the victim to start", || {
        s.phase.load(Ordering::SeqCst) != IDLE || !victim.is_alive()
    });

    // With an armed point, give it time to fire before killing (a backstop); else a random delay.
    let wait = if armed.is_some() {
        Duration::from_millis(100)
    } else {
        Duration::from_micros(rng.below(8_000))
    };
    let by_point = !matches!(victim.join_timeout(wait), Err(Error::Timeout));
    if !by_point && armed.is_none() && rng.below(2) == 0 {
        // Half the random kills aim at the critical section, where waiters are blocked.
        let end = Instant::now() + Duration::from_millis(50);
        while s.phase.load(Ordering::SeqCst) != HOLDING && Instant::now() < end {
            std::hint::spin_loop();
        }
    }
    let epoch_before = s.w_epoch.load(Ordering::SeqCst);
    let t_kill = now_ns();
    if !by_point {
        let _ = victim.kill();
    }
    let outcome = victim.join_timeout(Duration::from_secs(5));
    let dead_at = Instant::now();
    let phase = s.phase.load(Ordering::SeqCst);
    let epoch_after = s.w_epoch.load(Ordering::SeqCst);
    match outcome {
        Err(Error::ChildSignaled { signal: 9 }) | Err(Error::ChildExited { code: 77 }) => {}
        other => panic!("victim: unexpected outcome {other:?}"),
    }
    s.victim_dead.store(1, Ordering::SeqCst);

    // Did the victim die holding the lock? `None` when the kill landed inside lock/unlock.
    let held = if by_point {
        let name = &armed
            .as_ref()
            .expect("only armed victims die by themselves")
            .0;
        stats.by_point += 1;
        SOAK_POINTS.iter().find(|(p, _)| p == name).map(|&(_, h)| h)
    } else if epoch_before == epoch_after && epoch_before % 2 == 1 {
        // The waiter held the lock from before the kill until after the death.
        Some(false)
    } else {
        match phase {
            HOLDING => Some(true),
            IDLE | RELEASED => Some(false),
            _ => None,
        }
    };
    match held {
        Some(true) => stats.died_inside += 1,
        Some(false) => stats.died_outside += 1,
        None => stats.ambiguous += 1,
    }
    let ctx = format!("run {} (phase {phase}, armed {armed:?})", stats.runs);

    let mut owner_died_seen = false;
    let mut abandoned = false;
    if let Some(w) = waiter {
        let code = join_survivors(vec![w], dead_at, &ctx)[0];
        match (code, held) {
            (Outcome::OwnerDied, Some(true) | None) | (Outcome::Ok, Some(false) | None) => {}
            _ => panic!("{ctx}: waiter got {code:?}, victim held: {held:?}"),
        }
        if code == Outcome::OwnerDied {
            owner_died_seen = true;
            abandoned = !repair;
            let (start, acq) = (
                s.w_start.load(Ordering::SeqCst),
                s.w_acquired.load(Ordering::SeqCst),
            );
            if !by_point {
                if start < t_kill {
                    stats.blocked_ns.push(acq.saturating_sub(t_kill));
                } else {
                    stats.late_ns.push(acq.saturating_sub(start));
                }
            }
        }
    }

    // A later locker (this process).
    let t0 = Instant::now();
    let r = s.m.lock_timeout(SURVIVE);
    let took = t0.elapsed();
    match r {
        Ok(g) => {
            assert!(
                !abandoned,
                "{ctx}: an abandoned OwnerDied must make it not recoverable"
            );
            assert!(
                owner_died_seen || held != Some(true),
                "{ctx}: the holder died inside but nobody was told OwnerDied"
            );
            assert_eq!(g[0], 0, "{ctx}: clean acquisition with the marker set");
        }
        Err(LockError::OwnerDied(mut g)) => {
            assert!(
                !owner_died_seen && held != Some(false),
                "{ctx}: unexpected OwnerDied for a later locker (held {held:?})"
            );
            if !by_point {
                stats.late_ns.push(took.as_nanos() as u64);
            }
            g[0] = 0;
            g.make_consistent();
            drop(g);
            // Repaired: the lock works again.
            let g =
                s.m.lock_timeout(SURVIVE)
                    .expect("usable after make_consistent");
            assert_eq!(g[0], 0);
        }
        Err(LockError::NotRecoverable) => {
            assert!(
                abandoned,
                "{ctx}: NotRecoverable without an abandoned OwnerDied"
            );
            stats.not_recoverable += 1;
            assert!(s.m.is_not_recoverable());
            // For everyone: another process too, and again.
            if stats.not_recoverable % 4 == 1 {
                let code = Process::spawn(late_locker, s.clone())
                    .unwrap()
                    .join()
                    .unwrap();
                assert_eq!(code, Outcome::NotRecoverable, "{ctx}");
            }
            assert!(matches!(s.m.try_lock(), Err(LockError::NotRecoverable)));
        }
        Err(e) => panic!("{ctx}: the mutex is wedged: {e:?} after {took:?}"),
    }
    assert!(took < SURVIVE, "{ctx}: late locker took {took:?}");
    stats.runs += 1;
}

#[test]
fn mutex_soak_random_kills_and_crash_points() {
    let runs = soak_runs();
    let stats = watchdog(60 + runs / 4, move || {
        let seed = now_ns();
        eprintln!("mutex soak: seed {seed}, {runs} runs");
        let mut rng = Rng(seed | 1);
        let mut stats = SoakStats::default();
        for _ in 0..runs {
            soak_run(&mut rng, &mut stats);
        }
        stats
    });
    let SoakStats {
        runs,
        died_inside,
        died_outside,
        ambiguous,
        by_point,
        not_recoverable,
        mut blocked_ns,
        mut late_ns,
    } = stats;
    eprintln!(
        "mutex soak: {runs} runs: died holding {died_inside}, not holding {died_outside}, \
         inside lock/unlock (either answer accepted) {ambiguous}; {by_point} at crash points; \
         {not_recoverable} not recoverable"
    );
    for (what, v) in [
        ("already-blocked waiter", &mut blocked_ns),
        ("later arrival", &mut late_ns),
    ] {
        let n = v.len();
        eprintln!(
            "owner-death detection, {what}: n={n} p50={:.2} ms p99={:.2} ms max={:.2} ms",
            percentile(v, 50) as f64 / 1e6,
            percentile(v, 99) as f64 / 1e6,
            percentile(v, 100) as f64 / 1e6,
        );
        assert!(
            percentile(v, 100) < 1_000_000_000,
            "{what}: detection over 1 s"
        );
    }
    assert_eq!(runs, soak_runs());
    // The runs covered both sides, or the test proves little.
    assert!(died_inside >= runs / 10, "only {died_inside} deaths inside");
    assert!(
        died_outside >= runs / 20,
        "only {died_outside} deaths outside"
    );
    assert!(!blocked_ns.is_empty() && !late_ns.is_empty());
}

// =============================================================================================
// (b) The crash-injection battery.

/// Waiter counts and actions every point is run with: Kill with 0, 1, 2 waiters; Exit with 1.
const PLAN: &[(usize, bool)] = &[(0, true), (1, true), (2, true), (1, false)];

/// Runs `scene(point, waiters, kill)` for every plan entry and asserts it died there at least once.
fn run_point(point: &str, scene: impl Fn(&str, usize, CrashAction) -> bool) {
    let mut hits = 0;
    for &(waiters, kill) in PLAN {
        hits += u32::from(scene(point, waiters, action_of(kill)));
    }
    eprintln!("{point}: died there in {hits} of {} runs", PLAN.len());
    assert!(hits > 0, "crash point {point} was never reached");
}

// ---- Mutex ----------------------------------------------------------------------------------

#[repr(C)]
struct MutexScene {
    /// `[in-critical-section marker, counter]`.
    m: Mutex<[u64; 2]>,
    v_started: AtomicU32,
    v_cs_done: AtomicU32,
}

// SAFETY: `#[repr(C)]` of a mutex around integers and atomics.
unsafe impl ShmSafe for MutexScene {}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    /// Nobody holds the lock when the victim starts.
    Free,
    /// The parent holds it while the victim and the waiters queue, then releases it.
    ParentHolds,
    /// A child took it and exited: the victim (or a waiter) takes over from a dead owner.
    DeadOwner,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Every survivor gets the lock cleanly.
    NoOwnerDied,
    /// Exactly one survivor is told `OwnerDied`; the rest get it cleanly.
    OneOwnerDied,
    /// Everyone gets `NotRecoverable`.
    AllNotRecoverable,
}

/// Mutex points: setup, whether the victim repairs an `OwnerDied`, and what survivors see.
const MUTEX_SCENES: &[(&str, Setup, bool, Expect)] = &[
    (
        "mutex.lock.before_cas",
        Setup::Free,
        true,
        Expect::NoOwnerDied,
    ),
    (
        "mutex.lock.after_cas",
        Setup::Free,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.contended.before_waiters",
        Setup::ParentHolds,
        true,
        Expect::NoOwnerDied,
    ),
    (
        "mutex.contended.after_waiters",
        Setup::ParentHolds,
        true,
        Expect::NoOwnerDied,
    ),
    (
        "mutex.contended.before_wait",
        Setup::ParentHolds,
        true,
        Expect::NoOwnerDied,
    ),
    (
        "mutex.contended.after_wait",
        Setup::ParentHolds,
        true,
        Expect::NoOwnerDied,
    ),
    (
        "mutex.contended.after_cas",
        Setup::ParentHolds,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.takeover.before_cas",
        Setup::DeadOwner,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.takeover.after_cas",
        Setup::DeadOwner,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.takeover.before_mark",
        Setup::DeadOwner,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.takeover.after_mark",
        Setup::DeadOwner,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.consistent.before_store",
        Setup::DeadOwner,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.consistent.after_store",
        Setup::DeadOwner,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.unlock.before_swap",
        Setup::Free,
        true,
        Expect::OneOwnerDied,
    ),
    (
        "mutex.unlock.after_swap",
        Setup::Free,
        true,
        Expect::NoOwnerDied,
    ),
    (
        "mutex.unlock.after_wake",
        Setup::Free,
        true,
        Expect::NoOwnerDied,
    ),
    (
        "mutex.unlock.after_not_recoverable",
        Setup::DeadOwner,
        false,
        Expect::AllNotRecoverable,
    ),
    (
        "mutex.unlock.after_swap",
        Setup::DeadOwner,
        false,
        Expect::AllNotRecoverable,
    ),
];

fn mutex_victim((s, point, kill, repair): (Shared<MutexScene>, String, bool, bool)) {
    crash::arm(&point, 1, action_of(kill));
    s.v_started.store(1, Ordering::SeqCst);
    let mut g = match s.m.lock() {
        Ok(g) => g,
        Err(LockError::OwnerDied(mut g)) => {
            if repair {
                g.make_consistent();
            }
            g
        }
        Err(e) => panic!("victim: {e:?}"),
    };
    g[0] = 1;
    g[1] += 1;
    // Long enough for the waiters to queue behind us.
    std::thread::sleep(Duration::from_millis(20));
    g[0] = 0;
    s.v_cs_done.store(1, Ordering::SeqCst);
}

fn mutex_waiter(s: Shared<MutexScene>) -> Outcome {
    wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
    std::thread::sleep(Duration::from_millis(2));
    survive_lock(&s.m, Duration::from_secs(3), true)
}

fn lock_and_exit(s: Shared<MutexScene>) {
    std::mem::forget(s.m.lock().unwrap());
}

fn mutex_scene(
    point: &str,
    setup: Setup,
    repair: bool,
    expect: Expect,
    waiters: usize,
    action: CrashAction,
) -> bool {
    let s = Shared::new(MutexScene {
        m: Mutex::new([0, 0]),
        v_started: AtomicU32::new(0),
        v_cs_done: AtomicU32::new(0),
    })
    .unwrap();
    let mut parent_guard = None;
    match setup {
        Setup::Free => {}
        Setup::ParentHolds => parent_guard = Some(s.m.lock().unwrap()),
        Setup::DeadOwner => Process::spawn(lock_and_exit, s.clone())
            .unwrap()
            .join()
            .unwrap(),
    }
    let kill = action == CrashAction::Kill;
    let v = Process::spawn(mutex_victim, (s.clone(), point.to_owned(), kill, repair)).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|_| Process::spawn(mutex_waiter, s.clone()).unwrap())
        .collect();
    if let Some(g) = parent_guard.take() {
        wait_for("the victim", || s.v_started.load(Ordering::SeqCst) != 0);
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
    }
    let died = victim_died(v, action, point);
    let dead_at = Instant::now();
    let ctx = format!("{point} ({setup:?}, {waiters} waiters, {action:?}, died {died})");
    let mut codes = join_survivors(ws, dead_at, &ctx);
    let final_code = survive_lock(&s.m, SURVIVE, true);
    assert!(dead_at.elapsed() < SURVIVE + SURVIVE, "{ctx}: slow");
    codes.push(final_code);
    let count = |c| codes.iter().filter(|&&x| x == c).count();
    assert_eq!(count(Outcome::Timeout), 0, "{ctx}: wedged: {codes:?}");
    assert_eq!(
        count(Outcome::MarkerViolation),
        0,
        "{ctx}: invariant broken: {codes:?}"
    );
    if !died {
        // The interleaving did not reach the point: a normal run, nothing lost.
        if repair {
            assert!(count(Outcome::OwnerDied) <= 1, "{ctx}: {codes:?}");
            assert_eq!(count(Outcome::NotRecoverable), 0, "{ctx}: {codes:?}");
        }
        return false;
    }
    match expect {
        Expect::NoOwnerDied => assert_eq!(count(Outcome::Ok), codes.len(), "{ctx}: {codes:?}"),
        Expect::OneOwnerDied => {
            assert_eq!(count(Outcome::OwnerDied), 1, "{ctx}: {codes:?}");
            assert_eq!(count(Outcome::Ok), codes.len() - 1, "{ctx}: {codes:?}");
        }
        Expect::AllNotRecoverable => {
            assert_eq!(
                count(Outcome::NotRecoverable),
                codes.len(),
                "{ctx}: {codes:?}"
            );
            return true;
        }
    }
    // Every survivor's critical section (not the final check's) and the victim's, if it ran.
    let survivors = codes.len() as u64 - 1;
    let g = s.m.lock_timeout(SURVIVE).expect("usable after the scene");
    assert_eq!(
        g[1],
        survivors + u64::from(s.v_cs_done.load(Ordering::SeqCst)) + 1,
        "{ctx}: lost or extra critical sections: {codes:?}"
    );
    true
}

#[test]
fn battery_mutex() {
    watchdog(120, || {
        for &(point, setup, repair, expect) in MUTEX_SCENES {
            run_point(point, |p, w, a| mutex_scene(p, setup, repair, expect, w, a));
        }
    });
}

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

// ---- Every crash point in the sources is exercised ------------------------------------------

/// The text of every `.rs` file under `dir`, recursively.
fn sources_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    out
}

/// Every crash point in `src/` (found by scanning the code, so a new point cannot be missed) is
/// named by a crash test in `tests/`.
#[test]
fn every_crash_point_is_in_the_battery() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests: Vec<String> = sources_under(&root.join("tests"))
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    let mut n = 0;
    for (path, src) in sources_under(&root.join("src")) {
        // Points are named inline (`crash::point("..")`) or, around a blocking loop's sleep,
        // in a `wait::Points { registered: "..", woke: ".." }`.
        let parts = ["crash::point(\"", "registered: \"", "woke: \""]
            .into_iter()
            .flat_map(|p| src.split(p).skip(1));
        for part in parts {
            let name = &part[..part.find('"').unwrap()];
            n += 1;
            let quoted = format!("\"{name}\"");
            assert!(
                tests.iter().any(|t| t.contains(&quoted)),
                "crash point {name} ({}) is in no crash test",
                path.display()
            );
        }
    }
    assert!(n >= 60, "found only {n} crash points");
}

// =============================================================================================
// (c) A glibc robust pthread mutex and ours, held by one thread of a process that dies.

/// Takes the pthread mutex at the start of `seg` and our mutex on a thread, then signals `held`
/// and waits to be killed.
fn hold_both((name, ours, held): (String, Shared<Mutex<u64>>, Shared<Event>)) {
    let seg = Segment::open(&name).unwrap();
    std::thread::spawn(move || {
        let pm = seg.as_ptr().cast::<libc::pthread_mutex_t>();
        // SAFETY: the parent initialised a process-shared robust mutex at the segment start
        // (page aligned, large enough); the mapping lives as long as `seg`, which this thread owns.
        assert_eq!(unsafe { libc::pthread_mutex_lock(pm) }, 0);
        std::mem::forget(ours.lock().unwrap());
        held.set();
        std::thread::sleep(Duration::from_secs(30));
        drop(seg);
    });
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn glibc_robust_mutex_and_ours_both_report_owner_death() {
    watchdog(30, || {
        let name = common::unique("pthread");
        let seg = Segment::create(&name, 4096).unwrap();
        let pm = seg.as_ptr().cast::<libc::pthread_mutex_t>();
        // SAFETY: the segment is a fresh, page-aligned 4 KiB mapping owned by this test, large
        // enough for a pthread_mutex_t; the attribute object is initialised before use and
        // destroyed after.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                0
            );
            assert_eq!(libc::pthread_mutex_init(pm, &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        let ours = Shared::new(Mutex::new(0u64)).unwrap();
        let held = Shared::new(Event::new()).unwrap();
        let child = Process::spawn(hold_both, (name, ours.clone(), held.clone())).unwrap();
        assert!(held.wait_timeout(Duration::from_secs(10)));

        // One thread of ours blocks on each lock before the death.
        let seg_addr = pm as usize;
        let pthread_waiter = std::thread::spawn(move || {
            let r = {
                // SAFETY: the mutex was initialised above and the segment outlives this thread
                // (joined below, before `seg` is dropped).
                unsafe { libc::pthread_mutex_lock(seg_addr as *mut libc::pthread_mutex_t) }
            };
            let at = now_ns();
            if r == libc::EOWNERDEAD {
                // SAFETY: as above; we hold it after EOWNERDEAD.
                unsafe {
                    libc::pthread_mutex_consistent(seg_addr as *mut libc::pthread_mutex_t);
                    libc::pthread_mutex_unlock(seg_addr as *mut libc::pthread_mutex_t);
                }
            }
            (r, at)
        });
        let ours2 = ours.clone();
        let our_waiter = std::thread::spawn(move || {
            let r = match ours2.lock_timeout(Duration::from_secs(5)) {
                Err(LockError::OwnerDied(mut g)) => {
                    g.make_consistent();
                    "OwnerDied"
                }
                Ok(_) => "Ok",
                Err(_) => "error",
            };
            (r, now_ns())
        });
        std::thread::sleep(Duration::from_millis(50));
        let t_kill = now_ns();
        child.kill().unwrap();
        let (pr, pat) = pthread_waiter.join().unwrap();
        let (or, oat) = our_waiter.join().unwrap();
        let _ = child.join();
        assert_eq!(pr, libc::EOWNERDEAD, "pthread robust mutex");
        assert_eq!(or, "OwnerDied", "our mutex");
        eprintln!(
            "owner death seen by a blocked waiter: glibc robust mutex {:.3} ms, ours {:.3} ms",
            pat.saturating_sub(t_kill) as f64 / 1e6,
            oat.saturating_sub(t_kill) as f64 / 1e6
        );
        assert!(oat - t_kill < 1_000_000_000 && pat - t_kill < 1_000_000_000);
        // Both work again.
        // SAFETY: as above.
        assert_eq!(unsafe { libc::pthread_mutex_lock(pm) }, 0);
        // SAFETY: as above; we hold it.
        unsafe { libc::pthread_mutex_unlock(pm) };
        assert!(ours.lock().is_ok());
    });
}
