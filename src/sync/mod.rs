//! Process-shared synchronisation primitives.
//!
//! Every type here is an in-place `#[repr(C)]` value made only of atomics (and, for the locks, the
//! protected data): put it in shared memory (directly, through `Shared<T>`, or inside your own
//! `#[repr(C)]` struct) and every process that maps it synchronises through it. All waiting is on
//! *shared* futexes with absolute `CLOCK_MONOTONIC` deadlines.
//!
//! - [`Mutex`] and [`ReentrantMutex`]: robust locks; a holder that dies is reported to the next
//!   locker as [`LockError::OwnerDied`].
//! - [`Condvar`]: waits on a [`MutexGuard`].
//! - [`Semaphore`] (optionally bounded), [`Barrier`], [`Event`], [`RwLock`].
//!
//! Every blocking call has a `try_` and a `_timeout` form. Shared memory is hostile: whatever a
//! peer writes into one of these types can make it report wrong results or wait, but never causes
//! undefined behaviour or a panic. `SAFETY.md` ("Sync primitives") lists the
//! cross-process invariants and the tests that cover them.

use std::fmt;

/// `Debug` for a lock type (`Name { .. }`: showing the data would need the lock) and for its
/// guards (the guarded value).
macro_rules! impl_lock_debug {
    ($lock:ident $(, $guard:ident)*) => {
        impl<T: ?Sized> std::fmt::Debug for $lock<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($lock)).finish_non_exhaustive()
            }
        }
        $(impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for $guard<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&**self, f)
            }
        })*
    };
}

mod barrier;
mod condvar;
mod event;
mod mutex;
pub(crate) mod owner;
pub(crate) mod raw_mutex;
mod reentrant;
mod rwlock;
mod semaphore;
pub(crate) mod wait;

#[cfg(all(test, multiproc_loom))]
mod loom_tests;

pub use barrier::{Barrier, Registration};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use event::Event;
pub use mutex::{Mutex, MutexGuard};
pub use reentrant::{ReentrantMutex, ReentrantMutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{RobustPermit, Semaphore, SemaphorePermit};

/// Why a lock was not acquired cleanly.
pub enum LockError<G> {
    /// The lock is held, but its previous holder died while holding it: the protected data may be
    /// half-updated. Repair it through the guard and call `make_consistent()`; dropping the guard
    /// without doing so makes the lock [`LockError::NotRecoverable`] for everyone.
    OwnerDied(G),
    /// A holder died and the next one released the lock without making it consistent: the lock
    /// can never be acquired again.
    NotRecoverable,
    /// The deadline passed first.
    Timeout,
    /// The lock is held (from a `try_` call).
    WouldBlock,
    /// This thread already holds the reentrant lock `u32::MAX` levels deep: one more level cannot
    /// be counted (from a [`ReentrantMutex`]). The levels already held are unaffected.
    RecursionLimit,
}

/// The result of a lock operation: the guard, or why there is none (or a guard with a warning).
pub type LockResult<G> = Result<G, LockError<G>>;

impl<G> LockError<G> {
    /// The guard carried by [`LockError::OwnerDied`], if any.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// Maps the guard of an `OwnerDied` error (used when a guard is wrapped in another value).
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::NotRecoverable => LockError::NotRecoverable,
            LockError::Timeout => LockError::Timeout,
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::RecursionLimit => LockError::RecursionLimit,
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::OwnerDied(_) => "OwnerDied(..)",
            LockError::NotRecoverable => "NotRecoverable",
            LockError::Timeout => "Timeout",
            LockError::WouldBlock => "WouldBlock",
            LockError::RecursionLimit => "RecursionLimit",
        })
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::OwnerDied(_) => "the previous holder of the lock died while holding it",
            LockError::NotRecoverable => "the lock is not recoverable",
            LockError::Timeout => "timed out waiting for the lock",
            LockError::WouldBlock => "the lock is held",
            LockError::RecursionLimit => "the reentrant lock is held too many levels deep",
        })
    }
}

impl<G> std::error::Error for LockError<G> {}

/// Why [`Barrier::wait`] did not complete a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierError {
    /// The barrier is broken: a waiter timed out, or `abort()` or `reset()` was called while this
    /// caller waited, or it was already broken when called (Python's `BrokenBarrierError`).
    Broken,
    /// This caller's deadline passed; it broke the barrier for the others.
    Timeout,
    /// A party was found dead while it waited: the barrier is broken for everyone until
    /// `reset()`.
    PartyDied {
        /// The dead party's process id.
        pid: u32,
    },
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("the barrier is broken"),
            BarrierError::Timeout => f.write_str("timed out waiting at the barrier"),
            BarrierError::PartyDied { pid } => {
                write!(f, "the barrier is broken: party {pid} died while waiting")
            }
        }
    }
}

impl std::error::Error for BarrierError {}

/// Why a semaphore operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemaphoreError {
    /// The deadline passed before a permit was available.
    Timeout,
    /// No permit is available (from `try_acquire`).
    WouldBlock,
    /// `release` on a bounded semaphore that is already at its maximum.
    Overflow,
    /// Every owner slot of the semaphore is taken by a robust permit (held or being acquired),
    /// so no further `acquire_robust` can record its holder
    /// ([`Semaphore::OWNER_SLOTS`](crate::sync::Semaphore::OWNER_SLOTS) at once).
    OwnersFull,
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SemaphoreError::Timeout => "timed out waiting for a permit",
            SemaphoreError::WouldBlock => "no permit available",
            SemaphoreError::Overflow => "semaphore released too many times",
            SemaphoreError::OwnersFull => "every owner slot of the semaphore is taken",
        })
    }
}

impl std::error::Error for SemaphoreError {}

/// For tests: runs `f` with a timeout of `ms` milliseconds, checks that it took at least that
/// long (and, generously, under 5 s: tests run in parallel on few cores), and returns its result.
#[cfg(all(test, not(multiproc_loom)))]
pub(crate) fn waits_for<R>(ms: u64, f: impl FnOnce(std::time::Duration) -> R) -> R {
    let (timeout, t) = (
        std::time::Duration::from_millis(ms),
        std::time::Instant::now(),
    );
    let r = f(timeout);
    let e = t.elapsed();
    assert!(
        e >= timeout && e < std::time::Duration::from_secs(5),
        "{e:?}"
    );
    r
}

/// For tests: runs `f` on a thread that exits afterwards (so its id names no thread any more).
#[cfg(all(test, not(multiproc_loom)))]
pub(crate) fn on_dead_thread(f: impl FnOnce() + Send) {
    std::thread::scope(|s| s.spawn(f).join().unwrap());
}
