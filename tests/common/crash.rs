//! What every crash test crate shares: running a scene at each crash point, the victim/survivor
//! plumbing and what a surviving child reports.

use multiproc::crash::CrashAction;
use multiproc::sync::{LockError, Mutex};
use multiproc::{Error, Process};
use std::time::{Duration, Instant};

/// How long after a victim's death every survivor must have finished.
pub const SURVIVE: Duration = Duration::from_secs(1);

pub fn action_of(kill: bool) -> CrashAction {
    if kill {
        CrashAction::Kill
    } else {
        CrashAction::Exit
    }
}

/// Joins a victim; true if it died the way its armed action makes it die, false if it returned
/// (the point was not reached in that interleaving).
pub fn victim_died<R: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(
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
pub fn join_survivors<R: serde::Serialize + serde::de::DeserializeOwned>(
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
pub enum Outcome {
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
    /// `BarrierError::PartyDied` naming this process id.
    PartyDied(u32),
}

/// Locks `m` (`[marker, counter]`) once as a survivor: checks the marker on a clean acquisition,
/// repairs it and calls `make_consistent` (if `repair`) after `OwnerDied`, then runs a critical
/// section that increments the counter. Returns the result code.
pub fn survive_lock(m: &Mutex<[u64; 2]>, timeout: Duration, repair: bool) -> Outcome {
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

/// Waiter counts and actions every point is run with: Kill with 0, 1, 2 waiters; Exit with 1.
pub const PLAN: &[(usize, bool)] = &[(0, true), (1, true), (2, true), (1, false)];

/// Runs `scene(point, waiters, kill)` for every plan entry and asserts it died there at least once.
pub fn run_point(point: &str, scene: impl Fn(&str, usize, CrashAction) -> bool) {
    let mut hits = 0;
    for &(waiters, kill) in PLAN {
        hits += u32::from(scene(point, waiters, action_of(kill)));
    }
    eprintln!("{point}: died there in {hits} of {} runs", PLAN.len());
    assert!(hits > 0, "crash point {point} was never reached");
}
