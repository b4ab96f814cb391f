//! Crash-point battery for `ReentrantMutex` (see tests/common/crash.rs for the plan).

mod common;

use common::crash::*;
use common::{wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::sync::{LockError, ReentrantMutex};
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

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

// =============================================================================================
// Random-time SIGKILL soak (shared parts in tests/common/soak.rs).

mod soak {
    use super::*;

    use crate::common::soak::*;
    use crate::common::{Rng, spin_us};

    use multiproc::sync::{LockError, ReentrantMutex};
    use multiproc::{Process, Shared, ShmSafe};

    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    // ---------------------------------------------------------------------------------------------
    // ReentrantMutex: a dead holder (at any nesting depth) is `OwnerDied` for the next locker.

    #[repr(C)]
    struct ReSoak {
        m: ReentrantMutex<[AtomicU64; 2]>,
        started: AtomicU32,
        phase: AtomicU32,
    }
    // SAFETY: `#[repr(C)]` of a reentrant mutex around atomics and atomics, all `ShmSafe`.
    unsafe impl ShmSafe for ReSoak {}

    fn re_victim((s, seed): (Shared<ReSoak>, u64)) {
        let mut rng = Rng(seed | 1);
        let end = Instant::now() + VICTIM_LIFE;
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            s.phase.store(TAKING, Ordering::SeqCst);
            let g =
                s.m.lock_timeout(Duration::from_secs(1))
                    .expect("victim lock");
            s.phase.store(HOLDING, Ordering::SeqCst);
            g[0].store(1, Ordering::SeqCst);
            {
                let inner =
                    s.m.lock_timeout(Duration::from_secs(1))
                        .expect("nested lock");
                inner[1].fetch_add(1, Ordering::SeqCst);
                spin_us(rng.below(100));
            }
            g[0].store(0, Ordering::SeqCst);
            s.phase.store(RETURNING, Ordering::SeqCst);
            drop(g);
            s.phase.store(RETURNED, Ordering::SeqCst);
            spin_us(rng.below(100));
        }
    }

    #[test]
    fn reentrant_mutex_soak_random_kills() {
        soak_watchdog(|| {
            let mut owner_died = 0;
            soak("reentrant", 6, |rng, ctx| {
                let s = Shared::new(ReSoak {
                    m: ReentrantMutex::new([AtomicU64::new(0), AtomicU64::new(0)]),
                    started: AtomicU32::new(0),
                    phase: AtomicU32::new(IDLE),
                })
                .unwrap();
                let mut victim = Process::spawn(re_victim, (s.clone(), rng.next())).unwrap();
                kill_after_random_delay(rng, &mut victim, &s.started, ctx);
                let phase = s.phase.load(Ordering::SeqCst);
                let t0 = Instant::now();
                let r = s.m.lock_timeout(SURVIVE);
                assert!(t0.elapsed() < SURVIVE, "{ctx}: took {:?}", t0.elapsed());
                match r {
                    Ok(g) => {
                        assert!(phase != HOLDING, "{ctx}: died holding, no OwnerDied");
                        assert_eq!(g[0].load(Ordering::SeqCst), 0, "{ctx}: marker set");
                    }
                    Err(LockError::OwnerDied(mut g)) => {
                        assert!(
                            phase != IDLE && phase != RETURNED,
                            "{ctx}: OwnerDied though the victim had released (phase {phase})"
                        );
                        owner_died += 1;
                        g[0].store(0, Ordering::SeqCst);
                        g.make_consistent();
                    }
                    Err(e) => panic!("{ctx}: {e:?}"),
                }
                // Usable again, nested.
                let g = s.m.lock_timeout(SURVIVE).expect("usable after repair");
                let inner = s.m.lock_timeout(SURVIVE).expect("nested");
                assert_eq!(inner[0].load(Ordering::SeqCst), 0, "{ctx}");
                drop(inner);
                drop(g);
            });
            println!("reentrant: {owner_died} runs saw OwnerDied");
        });
    }
}
