//! The robust lock word under [`Mutex`](super::Mutex) and [`ReentrantMutex`](super::ReentrantMutex):
//! a futex holding the owner's thread id, with owner death detected by timed polling of `/proc`
//! instead of the kernel's robust list (which belongs to glibc; see `SAFETY-sync.md`).
//!
//! # Layout (`#[repr(C)]`, 16 bytes, all-zero = unlocked and consistent)
//!
//! ```text
//! word:  bit 31      WAITERS: some locker may sleep on the futex; unlock must wake
//!        bit 30      unused (ignored when read)
//!        bits 0..=29 owner TID; 0 = unlocked
//! state: CONSISTENT (0) | INCONSISTENT (1) | anything else = NOT_RECOVERABLE
//! owner_start: the owner's thread start time; 0 = not recorded yet
//! ```
//!
//! | word               | meaning                                              |
//! |--------------------|------------------------------------------------------|
//! | `0`                | unlocked, nobody sleeps                              |
//! | `WAITERS`          | unlocked; a former sleeper may still be asleep       |
//! | `tid`              | held by `tid`, uncontended                           |
//! | `tid | WAITERS`    | held by `tid`, lockers sleep: unlock wakes one       |
//!
//! # Owner death
//!
//! Contended lockers sleep in slices of a few milliseconds. When a slice times out with the word
//! unchanged they ask the probe about the owner: **dead** if the thread is gone or a zombie, or if
//! a live thread with that id has another start time than the one recorded (the id was reused) on
//! two consecutive checks with the same word and record, or if no start time was recorded on many
//! consecutive checks (the owner died between its CAS and its store, and its id was reused). The
//! first waiter whose CAS from the observed word succeeds owns the lock and is told `OwnerDied`;
//! every other CAS fails because the word changed, so exactly one waiter takes over.

use super::owner::{Liveness, OwnerProbe, UNKNOWN_START};
use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Owner TID bits of the word; Linux TIDs are below 2^22.
const TID_MASK: u32 = (1 << 30) - 1;
/// Some locker may sleep on the futex: unlock must wake one.
const WAITERS: u32 = 1 << 31;
/// Unlocked, nobody sleeps.
const UNLOCKED: u32 = 0;

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
/// Consecutive checks that must see the same live thread with another start time than recorded.
const MISMATCH_CHECKS: u32 = 2;
/// Consecutive checks that must see a live thread and no recorded start time. Large because an
/// owner preempted between its CAS and its store looks exactly like this; about 100 ms of slices.
const UNRECORDED_CHECKS: u32 = if cfg!(loom) { 3 } else { 25 };

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

/// What a waiter has seen of the current owner so far.
#[derive(Default)]
struct Suspicion {
    word: u32,
    recorded: u64,
    count: u32,
}

/// A robust, process-shared lock without data. See the module docs.
#[repr(C)]
pub(crate) struct RawMutex {
    word: AtomicU32,
    state: AtomicU32,
    owner_start: AtomicU64,
}

impl RawMutex {
    /// An unlocked, consistent lock (all zeroes).
    pub(crate) fn new() -> Self {
        RawMutex {
            word: AtomicU32::new(UNLOCKED),
            state: AtomicU32::new(CONSISTENT),
            owner_start: AtomicU64::new(0),
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
        // Acquire: pairs with the Release swap of the previous unlock, so we see its writes.
        if self
            .word
            .compare_exchange(UNLOCKED, tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.owner_start.store(start, Ordering::Relaxed);
            return self.acquired(false);
        }
        self.lock_contended(tid, start, probe, deadline)
    }

    /// Acquires the lock if nobody holds it. Does not probe the holder's liveness.
    pub(crate) fn try_lock<P: OwnerProbe>(&self, probe: &P) -> Result<Locked, Failed> {
        let (tid, start) = probe.identity();
        let w = self.word.load(Ordering::Relaxed);
        if w & TID_MASK != 0 {
            return Err(Failed::WouldBlock);
        }
        // Keep WAITERS: a sleeper may still be asleep and our unlock must wake it.
        match self.word.compare_exchange(
            w,
            tid | (w & WAITERS),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                self.owner_start.store(start, Ordering::Relaxed);
                self.acquired(false)
            }
            Err(_) => Err(Failed::WouldBlock),
        }
    }

    /// Whether the calling thread (as `probe` names it) holds the lock. Compares the start time
    /// too, so a thread that inherited a dead owner's id is not mistaken for it.
    pub(crate) fn is_held_by<P: OwnerProbe>(&self, probe: &P) -> bool {
        let (tid, start) = probe.identity();
        // Relaxed: only this thread could have written its own id and start time.
        self.word.load(Ordering::Relaxed) & TID_MASK == tid
            && self.owner_start.load(Ordering::Relaxed) == start
    }

    /// Whether the lock can never be acquired again.
    pub(crate) fn is_not_recoverable(&self) -> bool {
        self.state.load(Ordering::Relaxed) >= NOT_RECOVERABLE
    }

    /// Marks the data repaired after an `OwnerDied` acquisition. Caller holds the lock.
    pub(crate) fn make_consistent(&self) {
        if self.state.load(Ordering::Relaxed) == INCONSISTENT {
            self.state.store(CONSISTENT, Ordering::Relaxed);
        }
    }

    /// Releases the lock. Caller holds it. If it was acquired with `OwnerDied` and not made
    /// consistent, the lock becomes not recoverable and every waiter is woken to learn it.
    #[inline]
    pub(crate) fn unlock(&self) {
        // Relaxed: the state is only written by holders; we hold the lock.
        if self.state.load(Ordering::Relaxed) != CONSISTENT {
            self.state.store(NOT_RECOVERABLE, Ordering::Relaxed);
            self.release(true);
        } else {
            self.release(false);
        }
    }

    #[inline]
    fn release(&self, wake_all: bool) {
        // Cleared before the word, so a waiter that sees the next owner's id in the word never
        // sees our start time (the Release swap orders this store before the next owner's CAS).
        self.owner_start.store(0, Ordering::Relaxed);
        let prev = self.word.swap(UNLOCKED, Ordering::Release);
        if prev & WAITERS != 0 {
            if wake_all {
                futex::wake_all(&self.word);
            } else {
                futex::wake_one(&self.word);
            }
        }
    }

    /// Classifies a fresh acquisition by the consistency state.
    #[inline]
    fn acquired(&self, owner_died: bool) -> Result<Locked, Failed> {
        // Relaxed: written only by holders, ordered by the word's acquire.
        match self.state.load(Ordering::Relaxed) {
            CONSISTENT if !owner_died => Ok(Locked::Clean),
            CONSISTENT => {
                self.state.store(INCONSISTENT, Ordering::Relaxed);
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
        tid: u32,
        start: u64,
        probe: &P,
        deadline: Option<Deadline>,
    ) -> Result<Locked, Failed> {
        // Spin while the lock is held and nobody sleeps yet.
        let mut w = self.word.load(Ordering::Relaxed);
        super::spin_until(|| {
            w = self.word.load(Ordering::Relaxed);
            w & TID_MASK == 0 || w & WAITERS != 0
        });
        let mut slice = FIRST_SLICE;
        let mut suspicion = Suspicion::default();
        loop {
            if self.is_not_recoverable() {
                return Err(Failed::NotRecoverable);
            }
            if w & TID_MASK == 0 {
                // Free. Others may sleep (we may have), so take it with WAITERS set: our unlock
                // then wakes the next one.
                match self.word.compare_exchange(
                    w,
                    tid | WAITERS,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.owner_start.store(start, Ordering::Relaxed);
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
                if let Err(now) =
                    self.word
                        .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                {
                    w = now;
                    continue;
                }
                w |= WAITERS;
            }
            let polls = probe.polls();
            let wake_by = if polls {
                let d = Deadline::after(slice);
                slice = (slice * 2).min(MAX_SLICE);
                Some(deadline.map_or(d, |dl| dl.min(d)))
            } else {
                deadline
            };
            if !futex::wait(&self.word, w, wake_by) && polls {
                // A slice (or the deadline) ran out with the word unchanged: is the owner alive?
                if self.owner_is_dead(w, &mut suspicion, probe) {
                    // One CAS from the observed word: of all waiters that judged this owner dead,
                    // exactly one succeeds; the rest see a changed word.
                    if self
                        .word
                        .compare_exchange(w, tid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.owner_start.store(start, Ordering::Relaxed);
                        return self.acquired(true);
                    }
                }
            }
            w = self.word.load(Ordering::Relaxed);
        }
    }

    /// One liveness check of the owner named by `w` (which the caller saw unchanged).
    fn owner_is_dead<P: OwnerProbe>(&self, w: u32, s: &mut Suspicion, probe: &P) -> bool {
        // Acquire on the word, then the record: we never see a start time older than the last
        // unlock before the owner in `w` (see `release`).
        if self.word.load(Ordering::Acquire) != w {
            *s = Suspicion::default();
            return false;
        }
        let recorded = self.owner_start.load(Ordering::Relaxed);
        match probe.liveness(w & TID_MASK) {
            Liveness::Dead => true,
            Liveness::Unknown => {
                *s = Suspicion::default();
                false
            }
            Liveness::Alive { start_time } => {
                if recorded == start_time || recorded == UNKNOWN_START {
                    *s = Suspicion::default();
                    return false;
                }
                if s.count > 0 && s.word == w && s.recorded == recorded {
                    s.count += 1;
                } else {
                    *s = Suspicion {
                        word: w,
                        recorded,
                        count: 1,
                    };
                }
                let needed = if recorded == 0 {
                    UNRECORDED_CHECKS
                } else {
                    MISMATCH_CHECKS
                };
                s.count >= needed
            }
        }
    }

    /// Test and model hooks: the raw steps of `lock`/`unlock`, so a model can stop between them.
    #[cfg(test)]
    pub(crate) fn raw_word(&self) -> &AtomicU32 {
        &self.word
    }

    /// See [`RawMutex::raw_word`].
    #[cfg(test)]
    pub(crate) fn raw_owner_start(&self) -> &AtomicU64 {
        &self.owner_start
    }
}
