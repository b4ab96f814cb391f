//! Crash tests for `Mutex`: a soak with random SIGKILLs and crash points (`mutex_soak_*`;
//! default 200 runs, longer: `MULTIPROC_SOAK_RUNS=5000 cargo test --test crash_mutex mutex_soak --
//! --nocapture` in a debug build, where crash points exist), the crash-point battery (0, 1, 2
//! waiting children; `Kill`, and `Exit` with one waiter), and a glibc robust pthread mutex next to ours.

mod common;

use common::crash::*;
use common::{Rng, now_ns, percentile, spin_us, wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::{Event, LockError, Mutex};
use multiproc::{Error, Process, Segment, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

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

// ---- Mutex ----------------------------------------------------------------------------------

#[repr(C)]
struct MutexScene {
    /// `[in-critical-section marker, counter]`.
    m: Mutex<[u64; 2]>,
    v_started: AtomicU32,
    /// The victim's lock succeeded without `OwnerDied`.
    v_clean: AtomicU32,
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
        Ok(g) => {
            s.v_clean.store(1, Ordering::SeqCst);
            g
        }
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
        v_clean: AtomicU32::new(0),
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
    // A `DeadOwner` scene is about the victim's takeover; under load a waiter may take over
    // first (and repair), and the victim then locks cleanly: another scene.
    let scene_reached =
        died && !(setup == Setup::DeadOwner && s.v_clean.load(Ordering::SeqCst) != 0);
    if !scene_reached {
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
