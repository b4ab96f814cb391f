//! Every error type of the crate converts into [`Error`] with `?`, and says whether it is a
//! timeout through one trait, [`IsTimeout`].
//!
//! ```
//! use multiproc::{Error, IsTimeout, sync::Mutex, Shared};
//! use std::time::Duration;
//!
//! fn bump(counter: &Mutex<u64>) -> Result<u64, Error> {
//!     let mut n = counter.lock_timeout(Duration::from_secs(1))?; // LockError -> Error
//!     *n += 1;
//!     Ok(*n)
//! }
//!
//! let counter = Shared::new(Mutex::new(0u64))?;
//! assert_eq!(bump(&counter)?, 1);
//! let held = counter.lock();
//! let err = bump(&counter).unwrap_err();
//! assert!(err.is_timeout());
//! drop(held);
//! # Ok::<(), Error>(())
//! ```
//!
//! What each conversion keeps: the kind of failure and its text. What it drops: a value that
//! was not sent (use the specific error's `into_inner` first to keep it) and an `OwnerDied`
//! guard (dropping it unrepaired makes the lock not recoverable, as documented on
//! [`Error::OwnerDied`]: match the [`LockError`] to repair instead).

#[cfg(not(multiproc_loom))]
use crate::TaskError;
use crate::error::Error;
use crate::queue::{
    BatchError, PopError, PushError, RecvError, RoleError, SendError, TaskDoneError,
};
use crate::sync::{BarrierError, LockError, SemaphoreError};

#[cfg(not(multiproc_loom))]
impl From<crate::TaskError> for Error {
    fn from(e: crate::TaskError) -> Self {
        match e {
            crate::TaskError::Timeout => Error::Timeout,
            crate::TaskError::Closed => Error::Closed,
            error => Error::Task { index: None, error },
        }
    }
}

#[cfg(not(multiproc_loom))]
impl From<crate::MapError> for Error {
    fn from(e: crate::MapError) -> Self {
        Error::Task {
            index: Some(e.index),
            error: e.error,
        }
    }
}

#[cfg(not(multiproc_loom))]
impl IsTimeout for crate::MapError {
    fn is_timeout(&self) -> bool {
        self.error.is_timeout()
    }
}

/// Whether an error means "the deadline passed": one question for every error type of the crate.
pub trait IsTimeout {
    /// True if the operation gave up because its timeout or deadline passed.
    fn is_timeout(&self) -> bool;
}

impl IsTimeout for Error {
    fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout => true,
            #[cfg(not(multiproc_loom))]
            Error::Task { error, .. } => error.is_timeout(),
            _ => false,
        }
    }
}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Self {
        match e {
            LockError::OwnerDied(_) => Error::OwnerDied,
            LockError::NotRecoverable => Error::NotRecoverable,
            LockError::Timeout => Error::Timeout,
            LockError::WouldBlock => Error::WouldBlock,
            LockError::RecursionLimit => Error::RecursionLimit,
        }
    }
}

impl From<SemaphoreError> for Error {
    fn from(e: SemaphoreError) -> Self {
        match e {
            SemaphoreError::Timeout => Error::Timeout,
            SemaphoreError::WouldBlock => Error::WouldBlock,
            SemaphoreError::Overflow => Error::Overflow("semaphore released too many times"),
            SemaphoreError::OwnersFull => Error::Full,
        }
    }
}

impl From<BarrierError> for Error {
    fn from(e: BarrierError) -> Self {
        match e {
            BarrierError::Broken | BarrierError::PartyDied { .. } => Error::Broken,
            BarrierError::Timeout => Error::Timeout,
        }
    }
}

impl<T> From<PushError<T>> for Error {
    fn from(e: PushError<T>) -> Self {
        match e {
            PushError::Full(_) => Error::Full,
            PushError::Closed(_) => Error::Closed,
            PushError::Timeout(_) => Error::Timeout,
            PushError::Corrupted(what) => Error::Corrupted(what),
        }
    }
}

impl From<PopError> for Error {
    fn from(e: PopError) -> Self {
        match e {
            PopError::Empty => Error::Empty,
            PopError::Closed => Error::Closed,
            PopError::Timeout => Error::Timeout,
            PopError::Corrupted(what) => Error::Corrupted(what),
        }
    }
}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Closed => Error::Closed,
            BatchError::Corrupted(what) => Error::Corrupted(what),
        }
    }
}

impl From<RoleError> for Error {
    fn from(e: RoleError) -> Self {
        match e {
            RoleError::Taken => Error::Taken,
            RoleError::Corrupted(what) => Error::Corrupted(what),
        }
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Full(_) => Error::Full,
            SendError::Closed(_) => Error::Closed,
            SendError::Timeout(_) => Error::Timeout,
            SendError::TooLarge { size, max, .. } => Error::TooLarge { size, max },
            SendError::Serialize { reason, .. } => Error::Serialization(reason),
            SendError::Corrupted(what) => Error::Corrupted(what),
        }
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Empty => Error::Empty,
            RecvError::Closed => Error::Closed,
            RecvError::Timeout => Error::Timeout,
            RecvError::Deserialize(why) => Error::Serialization(why),
            RecvError::BufferTooShort { .. } => Error::InvalidSize {
                reason: "receive buffer too short for the message",
            },
            RecvError::Corrupted(what) => Error::Corrupted(what),
        }
    }
}

impl From<TaskDoneError> for Error {
    fn from(_: TaskDoneError) -> Self {
        Error::Overflow("task_done() called more times than values were pushed")
    }
}

/// [`IsTimeout`] for the error types that time out in the variant a pattern matches, and (after
/// `never:`) for those that never time out.
macro_rules! is_timeout {
    ($($(#[$attr:meta])* $ty:ident$(<$g:ident>)? => $timeout:pat,)+) => {$(
        $(#[$attr])*
        impl$(<$g>)? IsTimeout for $ty$(<$g>)? {
            fn is_timeout(&self) -> bool {
                matches!(self, $timeout)
            }
        }
    )+};
    (never: $($ty:ty),+) => {$(
        impl IsTimeout for $ty {
            fn is_timeout(&self) -> bool {
                false
            }
        }
    )+};
}

is_timeout! {
    #[cfg(not(multiproc_loom))]
    TaskError => TaskError::Timeout,
    LockError<G> => LockError::Timeout,
    SemaphoreError => SemaphoreError::Timeout,
    BarrierError => BarrierError::Timeout,
    PushError<T> => PushError::Timeout(_),
    PopError => PopError::Timeout,
    SendError<T> => SendError::Timeout(_),
    RecvError => RecvError::Timeout,
}

is_timeout!(never: BatchError, RoleError, TaskDoneError);

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_composable<E: std::error::Error + Send + Sync + 'static>() {}

    #[test]
    fn every_error_is_send_sync_static_and_boxes() {
        assert_composable::<Error>();
        assert_composable::<SemaphoreError>();
        assert_composable::<BarrierError>();
        assert_composable::<PushError<u64>>();
        assert_composable::<PopError>();
        assert_composable::<BatchError>();
        assert_composable::<RoleError>();
        assert_composable::<SendError<String>>();
        assert_composable::<RecvError>();
        assert_composable::<TaskDoneError>();
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Error::from(PopError::Empty));
        assert_eq!(boxed.to_string(), "empty");
    }

    #[test]
    fn timeouts_are_timeouts_everywhere() {
        assert!(Error::from(LockError::<()>::Timeout).is_timeout());
        assert!(Error::from(SemaphoreError::Timeout).is_timeout());
        assert!(Error::from(BarrierError::Timeout).is_timeout());
        assert!(Error::from(PushError::Timeout(1u8)).is_timeout());
        assert!(Error::from(SendError::Timeout(1u8)).is_timeout());
        assert!(Error::from(RecvError::Timeout).is_timeout());
        assert!(PopError::Timeout.is_timeout() && !PopError::Closed.is_timeout());
        assert!(!Error::from(LockError::<()>::OwnerDied(())).is_timeout());
        assert!(matches!(
            Error::from(SendError::TooLarge {
                value: 0u8,
                size: 9,
                max: 4
            }),
            Error::TooLarge { size: 9, max: 4 }
        ));
    }

    #[cfg(not(multiproc_loom))]
    #[test]
    fn pool_errors_compose() {
        assert_composable::<crate::TaskError>();
        assert_composable::<crate::MapError>();
        assert!(Error::from(crate::TaskError::Timeout).is_timeout());
        let failed = crate::MapError {
            index: 3,
            error: crate::TaskError::Timeout,
        };
        assert!(failed.is_timeout() && Error::from(failed).is_timeout());
        let died = Error::from(crate::MapError {
            index: 7,
            error: crate::TaskError::Panicked("boom".into()),
        });
        assert!(matches!(died, Error::Task { index: Some(7), .. }) && !died.is_timeout());
        assert_eq!(died.to_string(), "task 7: task panicked: boom");
        assert!(std::error::Error::source(&died).is_some());
    }
}
