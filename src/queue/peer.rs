//! Who is on the other side of a ring: the caller's identity, written into the slot or role it
//! claims, and the liveness test that lets survivors reclaim what a killed peer held.
//!
//! The rings receive this as a value (`impl Env`) rather than calling the OS, so loom models and
//! tests can stand in a peer that stops at a chosen step and is then reported dead.

use crate::sync::owner::{OwnerProbe, SysProbe};
use crate::sys::proc::{current_process_identity, current_thread_identity};

/// A point inside a push or pop where a model peer can stop as if killed.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The slot is claimed (its stamp holds our id); the index is not yet advanced.
    Claimed,
    /// The head index is advanced past the slot (pop).
    Advanced,
    /// The value is published; the tail index is not yet advanced (push).
    Published,
    /// The value is copied in or out; the slot is not yet released.
    Copied,
}

/// Identity and liveness, as the ring algorithms need them.
pub(crate) trait Env {
    /// The calling thread's id as stored in a slot stamp: nonzero and below `2^22`, or 0 when it
    /// does not fit (0 is never declared dead, so such a claim is simply never reclaimed).
    fn me(&self) -> u32;
    /// Whether thread `tid` is definitely dead. `false` when unsure.
    fn is_dead(&self, tid: u32) -> bool;
    /// The calling process's identity for a role word (pid and start time); never 0.
    fn process_identity(&self) -> u64;
    /// Whether the process named by a role word is definitely dead. `false` when unsure.
    fn process_dead(&self, id: u64) -> bool;
    /// How often a thread sleeping on a full or empty MPMC ring re-checks it even if nobody
    /// wakes it: a peer that claimed the slot it waits for and was then killed never will.
    /// `None` (models only) sleeps until woken, so that a lost wake-up shows as a deadlock.
    #[inline(always)]
    fn recheck(&self) -> Option<std::time::Duration> {
        Some(RECHECK)
    }
    /// Test hook: `false` makes the operation stop here as if its thread were killed. Only the
    /// crate's tests have it: production operations never stop half-way on their own.
    #[cfg(test)]
    #[inline(always)]
    fn survive(&self, _at: Step) -> bool {
        true
    }
}

/// Default period of [`Env::recheck`].
pub(crate) const RECHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// The real environment: kernel thread ids and `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OsEnv;

/// Thread ids fit in 22 bits on Linux (`PID_MAX_LIMIT` is `2^22`).
pub(crate) const TID_LIMIT: u32 = 1 << 22;

impl Env for OsEnv {
    #[inline]
    fn me(&self) -> u32 {
        let tid = current_thread_identity().0;
        if tid < TID_LIMIT { tid } else { 0 }
    }

    fn is_dead(&self, tid: u32) -> bool {
        // Gone or a zombie is a definite death. A running thread with that id may be a new
        // thread that reused it: we cannot tell (the stamp has no room for a start time), so we
        // keep waiting rather than risk reclaiming a slot a live writer still fills.
        tid != 0 && SysProbe.liveness(tid).proves_gone(0, |_| 0)
    }

    fn process_identity(&self) -> u64 {
        let (pid, start) = current_process_identity();
        (u64::from(pid) << 32) | u64::from(start as u32)
    }

    fn process_dead(&self, id: u64) -> bool {
        let pid = (id >> 32) as u32;
        let start = id as u32;
        if pid == 0 {
            // Not a process id: garbage in the role word, no holder to wait for.
            return true;
        }
        // A different start time: the pid was reused, the holder is gone.
        SysProbe.liveness(pid).proves_gone(start, |t| t as u32)
    }
}
