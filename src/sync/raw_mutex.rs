//! The robust lock word under [`Mutex`](super::Mutex) and [`ReentrantMutex`](super::ReentrantMutex):
//! a futex holding the owner's thread id, with owner death detected by timed polling of `/proc`
//! instead of the kernel's robust list (which belongs to glibc; see `SAFETY.md`).
//!
//! # Layout (`#[repr(C)]`, 16 bytes, all-zero = unlocked and consistent)
//!
//! ```text
//! word (AtomicU64):
//!   bits 32..=63  owner's start tag: low 32 bits of its thread start time (0 = unknown; a time
//!                 whose low bits are 0 is tagged 1)
//!   bit  31       WAITERS: some locker may sleep on the futex; unlock must wake
//!   bit  30       unused (ignored when read)
//!   bits 0..=29   owner TID; 0 = unlocked
//!   The futex is the low 32 bits (TID and WAITERS), the part every unlock changes.
//! state (AtomicU32): CONSISTENT (0) | INCONSISTENT (1) | anything else = NOT_RECOVERABLE
//! ```
//!
//! | low 32 bits        | meaning                                              |
//! |--------------------|------------------------------------------------------|
//! | `0`                | unlocked, nobody sleeps                              |
//! | `WAITERS`          | unlocked; a former sleeper may still be asleep       |
//! | `tid`              | held by `tid`, uncontended                           |
//! | `tid | WAITERS`    | held by `tid`, lockers sleep: unlock wakes one       |
//!
//! # Owner death
//!
//! The owner's full identity (TID *and* start time) enters the word in the one CAS that takes the
//! lock, so there is no moment when a lock is held by an owner that waiters cannot name.
//! Contended lockers sleep in slices of a few milliseconds. When a slice times out with the word
//! unchanged they ask `/proc` about the owner: it is **dead** if no thread has its TID, if that
//! thread is a zombie, or if a live thread with that TID started at another time (the TID was
//! reused). The first waiter whose CAS from the observed word succeeds owns the lock and is told
//! `OwnerDied`; every other CAS fails because the word changed, so exactly one waiter takes over.

use super::owner::{OwnerProbe, UNKNOWN_START};
use crate::crash;
use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Owner TID bits of the word; Linux TIDs are below 2^22.
const TID_MASK: u64 = (1 << 30) - 1;
/// Some locker may sleep on the futex: unlock must wake one.
pub(crate) const WAITERS: u64 = 1 << 31;
/// Unlocked, nobody sleeps.
const UNLOCKED: u64 = 0;
/// Where the owner's start tag begins.
const TAG_SHIFT: u32 = 32;

/// The data is consistent.
const CONSISTENT: u32 = 0;
/// The previous owner died holding the lock; the current owner has not repaired it yet.
const INCONSISTENT: u32 = 1;
/// Released without repair after an owner death: unusable forever (so is any unknown value).
const NOT_RECOVERABLE: u32 = 2;

/// First sleep slice of a contended locker; doubles up to [`MAX_SLICE`].
const FIRST_SLICE: Duration = Duration::from_millis(1);
/// Longest sleep slice, which bounds how late a sleeper notices an owner's death.
const MAX_SLICE: Duration = Duration::from_millis(4);

#[inline]
pub(crate) fn tid_of(w: u64) -> u32 {
    (w & TID_MASK) as u32
}

#[inline]
pub(crate) fn tag_of(w: u64) -> u32 {
    (w >> TAG_SHIFT) as u32
}

/// The futex half of the word.
#[inline]
fn low(w: u64) -> u32 {
    w as u32
}

/// The start tag recorded for a thread start time (0 = unknown).
#[inline]
pub(crate) fn start_tag(start: u64) -> u32 {
    if start == UNKNOWN_START {
        0
    } else {
        (start as u32).max(1)
    }
}

/// The word naming the calling thread as owner (without WAITERS).
#[inline]
pub(crate) fn owner_word(tid: u32, start: u64) -> u64 {
    (u64::from(start_tag(start)) << TAG_SHIFT) | (u64::from(tid) & TID_MASK)
}

/// Whether the owner named by a word built by [`owner_word`] is proven gone by `probe` (dead, or
/// its TID reused by a thread with another start tag). A zero word names nobody: `false`.
pub(crate) fn word_owner_gone<P: OwnerProbe>(w: u64, probe: &P) -> bool {
    tid_of(w) != 0 && probe.liveness(tid_of(w)).proves_gone(tag_of(w), start_tag)
}

/// The futex half of an owner word (its TID bits), on which a waiter for that word sleeps.
#[inline]
pub(crate) fn owner_futex(w: u64) -> u32 {
    low(w)
}

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Normally.
    Clean,
    /// From (or after) an owner that died holding it: the data may be inconsistent.
    OwnerDied,
}

/// Why a lock was not acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// The lock is not recoverable.
    NotRecoverable,
    /// The deadline passed.
    Timeout,
    /// Held (from `try_lock`).
    WouldBlock,
}

/// A snapshot of a lock for inspection tools (see [`RawMutex::peek`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LockPeek {
    /// The owner's TID, and whether it may be alive (`false`: it is definitely gone).
    pub(crate) owner: Option<(u32, bool)>,
    /// Some locker may be asleep on it.
    pub(crate) waiters: bool,
    /// Whether the data is consistent.
    pub(crate) state: &'static str,
}

/// A robust, process-shared lock without data. See the module docs.
#[repr(C)]
pub(crate) struct RawMutex {
    word: AtomicU64,
    state: AtomicU32,
}

impl RawMutex {
    /// An unlocked, consistent lock (all zeroes).
    pub(crate) fn new() -> Self {
        RawMutex {
            word: AtomicU64::new(UNLOCKED),
            state: AtomicU32::new(CONSISTENT),
        }
    }

    /// Acquires the lock, waiting until `deadline` (forever if `None`).
    #[inline]
    pub(crate) fn lock<P: OwnerProbe>(
        &self,
        probe: &P,
        deadline: Option<Deadline>,
    ) -> Result<Locked, Failed> {
        let (tid, start) = probe.identity();
        let me = owner_word(tid, start);
        crash::point("mutex.lock.before_cas");
        // Acquire: pairs with the Release swap of the previous unlock, so we see its writes.
        if self
            .word
            .compare_exchange(UNLOCKED, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            crash::point("mutex.lock.after_cas");
            return self.acquired(false);
        }
        self.lock_contended(me, probe, deadline)
    }

    /// Acquires the lock if nobody holds it. Does not probe the holder's liveness.
    pub(crate) fn try_lock<P: OwnerProbe>(&self, probe: &P) -> Result<Locked, Failed> {
        let (tid, start) = probe.identity();
        let w = self.word.load(Ordering::Relaxed);
        if tid_of(w) != 0 {
            return Err(Failed::WouldBlock);
        }
        // Keep WAITERS: a sleeper may still be asleep and our unlock must wake it.
        match self.word.compare_exchange(
            w,
            owner_word(tid, start) | (w & WAITERS),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => self.acquired(false),
            Err(_) => Err(Failed::WouldBlock),
        }
    }

    /// Whether the calling thread (as `probe` names it) holds the lock. Compares the start tag
    /// too, so a thread that inherited a dead owner's id is not mistaken for it.
    pub(crate) fn is_held_by<P: OwnerProbe>(&self, probe: &P) -> bool {
        let (tid, start) = probe.identity();
        // Relaxed: only this thread could have written its own identity into the word.
        let w = self.word.load(Ordering::Relaxed);
        w & !(WAITERS | (1 << 30)) == owner_word(tid, start) && tid != 0
    }

    /// Whether the lock can never be acquired again.
    pub(crate) fn is_not_recoverable(&self) -> bool {
        self.state.load(Ordering::Relaxed) >= NOT_RECOVERABLE
    }

    /// Whether the data is consistent (not `OwnerDied`-and-unrepaired, not recoverable). Caller
    /// holds the lock (only holders write the state).
    pub(crate) fn is_consistent(&self) -> bool {
        self.state.load(Ordering::Relaxed) == CONSISTENT
    }

    /// Releases the lock without judging the data: an `OwnerDied` state stays as it is, so the
    /// next locker is told `OwnerDied` in turn (for a holder that gives up before it could look at
    /// the data, e.g. an `RwLock` writer that timed out waiting for readers). Caller holds it.
    pub(crate) fn abandon(&self) {
        self.release(false);
    }

    /// Takes the lock over at once if its owner is proven gone, for a caller that already slept
    /// its slice elsewhere (an `RwLock` reader at the gate): `None` if the lock is free, its owner
    /// may live, or another waiter took over first. Otherwise as [`RawMutex::lock`] after a
    /// takeover.
    pub(crate) fn take_over_if_gone<P: OwnerProbe>(
        &self,
        probe: &P,
    ) -> Option<Result<Locked, Failed>> {
        let w = self.word.load(Ordering::Relaxed);
        if tid_of(w) == 0 || !word_owner_gone(w, probe) {
            return None;
        }
        let (tid, start) = probe.identity();
        // One CAS from the observed word, as in `lock_contended`: exactly one waiter wins.
        self.word
            .compare_exchange(
                w,
                owner_word(tid, start) | WAITERS,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()?;
        Some(self.acquired(true))
    }

    /// Whether nobody live holds the lock: it is free, or the word names a thread that `/proc`
    /// (`probe`) proves gone. Loads only; for waiters outside the lock (an `RwLock`'s readers)
    /// deciding whether to contend for it.
    pub(crate) fn owner_gone<P: OwnerProbe>(&self, probe: &P) -> bool {
        let w = self.word.load(Ordering::Relaxed);
        tid_of(w) == 0 || word_owner_gone(w, probe)
    }

    /// Marks the data repaired after an `OwnerDied` acquisition. Caller holds the lock.
    pub(crate) fn make_consistent(&self) {
        if self.state.load(Ordering::Relaxed) == INCONSISTENT {
            crash::point("mutex.consistent.before_store");
            self.state.store(CONSISTENT, Ordering::Relaxed);
            crash::point("mutex.consistent.after_store");
        }
    }

    /// Releases the lock. Caller holds it. If it was acquired with `OwnerDied` and not made
    /// consistent, the lock becomes not recoverable and every waiter is woken to learn it.
    #[inline]
    pub(crate) fn unlock(&self) {
        // Relaxed: the state is only written by holders; we hold the lock.
        if self.state.load(Ordering::Relaxed) != CONSISTENT {
            self.state.store(NOT_RECOVERABLE, Ordering::Relaxed);
            crash::point("mutex.unlock.after_not_recoverable");
            self.release(true);
        } else {
            self.release(false);
        }
    }

    #[inline]
    fn release(&self, wake_all: bool) {
        crash::point("mutex.unlock.before_swap");
        // Release: the next owner's Acquire CAS sees our writes to the data.
        let prev = self.word.swap(UNLOCKED, Ordering::Release);
        crash::point("mutex.unlock.after_swap");
        if prev & WAITERS != 0 {
            futex::wake_low(&self.word, if wake_all { u32::MAX } else { 1 });
            crash::point("mutex.unlock.after_wake");
        }
    }

    /// Classifies a fresh acquisition by the consistency state.
    #[inline]
    fn acquired(&self, owner_died: bool) -> Result<Locked, Failed> {
        // Relaxed: written only by holders, ordered by the word's acquire.
        match self.state.load(Ordering::Relaxed) {
            CONSISTENT if !owner_died => Ok(Locked::Clean),
            CONSISTENT => {
                crash::point("mutex.takeover.before_mark");
                self.state.store(INCONSISTENT, Ordering::Relaxed);
                crash::point("mutex.takeover.after_mark");
                Ok(Locked::OwnerDied)
            }
            // A holder that was told OwnerDied died too before repairing.
            INCONSISTENT => Ok(Locked::OwnerDied),
            _ => {
                self.release(true);
                Err(Failed::NotRecoverable)
            }
        }
    }

    #[cold]
    fn lock_contended<P: OwnerProbe>(
        &self,
        me: u64,
        probe: &P,
        deadline: Option<Deadline>,
    ) -> Result<Locked, Failed> {
        // Spin while the lock is held and nobody sleeps yet.
        let mut w = self.word.load(Ordering::Relaxed);
        super::wait::Backoff::spin_until(|| {
            w = self.word.load(Ordering::Relaxed);
            tid_of(w) == 0 || w & WAITERS != 0
        });
        let mut slice = FIRST_SLICE;
        loop {
            if self.is_not_recoverable() {
                return Err(Failed::NotRecoverable);
            }
            if tid_of(w) == 0 {
                // Free. Others may sleep (we may have), so take it with WAITERS set: our unlock
                // then wakes the next one.
                match self.word.compare_exchange(
                    w,
                    me | WAITERS,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        crash::point("mutex.contended.after_cas");
                        return self.acquired(false);
                    }
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(Failed::Timeout);
            }
            if w & WAITERS == 0 {
                crash::point("mutex.contended.before_waiters");
                if let Err(now) =
                    self.word
                        .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                {
                    w = now;
                    continue;
                }
                crash::point("mutex.contended.after_waiters");
                w |= WAITERS;
            }
            if !probe.polls() {
                futex::wait_low(&self.word, low(w), deadline);
                w = self.word.load(Ordering::Relaxed);
                continue;
            }
            let slice_end = Deadline::after(slice);
            slice = (slice * 2).min(MAX_SLICE);
            let wake_by = deadline.map_or(slice_end, |d| d.min(slice_end));
            crash::point("mutex.contended.before_wait");
            // A slice (or the deadline) ran out with the word unchanged: is the owner alive?
            // One CAS from the observed word: of all waiters that judged this owner dead,
            // exactly one succeeds; the rest see a changed word.
            let woken = futex::poll_wait_low(&self.word, low(w), wake_by);
            crash::point("mutex.contended.after_wait");
            if !woken && self.owner_is_dead(w, probe) {
                crash::point("mutex.takeover.before_cas");
                if self
                    .word
                    .compare_exchange(w, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    crash::point("mutex.takeover.after_cas");
                    return self.acquired(true);
                }
            }
            w = self.word.load(Ordering::Relaxed);
        }
    }

    /// Checks the owner named by `w` (which the caller saw unchanged after a timed-out sleep).
    fn owner_is_dead<P: OwnerProbe>(&self, w: u64, probe: &P) -> bool {
        // The whole word, so the TID and start tag we judge are the current owner's.
        if self.word.load(Ordering::Relaxed) != w {
            return false;
        }
        // A live thread with this TID is the owner unless its start tag differs (reused TID).
        word_owner_gone(w, probe)
    }

    /// What the lock looks like now, for inspection tools: loads only, so it works on a
    /// read-only mapping and never disturbs the lock's users.
    #[cfg_attr(multiproc_loom, allow(dead_code))]
    pub(crate) fn peek<P: OwnerProbe>(&self, probe: &P) -> LockPeek {
        let w = self.word.load(Ordering::Relaxed);
        let tid = tid_of(w);
        LockPeek {
            owner: (tid != 0).then(|| {
                let gone = probe.liveness(tid).proves_gone(tag_of(w), start_tag);
                (tid, !gone)
            }),
            waiters: w & WAITERS != 0,
            state: match self.state.load(Ordering::Relaxed) {
                CONSISTENT => "consistent",
                INCONSISTENT => "owner died, not yet made consistent",
                _ => "not recoverable",
            },
        }
    }

    /// Test and model hook: the lock word.
    #[cfg(test)]
    pub(crate) fn raw_word(&self) -> &AtomicU64 {
        &self.word
    }
}
