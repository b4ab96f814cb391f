//! Error types. Every failure is a value to match on, with the OS error as its source where one
//! exists; nothing in the library panics on a peer's behaviour or a user's bad input.

use std::fmt;
use std::io;

/// The crate's error for creating, opening and passing shared objects, and for processes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No segment has this name.
    NotFound {
        /// The name looked up.
        name: String,
    },
    /// `create` found the name taken.
    AlreadyExists {
        /// The name asked for.
        name: String,
    },
    /// The name is empty, too long, or holds `/` or NUL.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A length or size of zero, or one too large to map.
    InvalidSize {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The segment holds another type than the one asked for.
    TypeMismatch {
        /// The type the caller asked for.
        expected: String,
        /// The type the segment was created with.
        found: String,
    },
    /// The segment or a shared structure in it holds an impossible state: it was truncated, never
    /// finished initialising, or a peer wrote garbage into it.
    Corrupted(&'static str),
    /// The segment is owned by another user, writable by group or others, a symlink, or the OS
    /// refused access.
    PermissionDenied {
        /// Why it was refused.
        reason: &'static str,
    },
    /// A deadline passed first.
    Timeout,
    /// The object was closed.
    Closed,
    /// The child process panicked; the message is its panic payload.
    ChildPanicked {
        /// The panic message.
        message: String,
    },
    /// The child process was killed by a signal before it returned.
    ChildSignaled {
        /// The signal number (`libc::SIGKILL`, ...).
        signal: i32,
    },
    /// The child process exited without returning a value.
    ChildExited {
        /// Its exit code.
        code: i32,
    },
    /// Spawning or talking to a child failed (it could not start, or its protocol broke).
    Spawn(&'static str),
    /// (De)serialising spawn arguments, results or channel messages failed.
    Serialization(String),
    /// A [`Heap`](crate::heap::Heap) has no free block large enough for an allocation.
    HeapFull {
        /// Bytes asked for.
        requested: usize,
    },
    /// An OS call failed.
    Os(io::Error),
    /// A `try_` call found the lock held or no permit available.
    WouldBlock,
    /// A lock's previous holder died holding it. Converted from
    /// [`LockError::OwnerDied`](crate::sync::LockError): its guard was dropped without
    /// `make_consistent()`, so the lock is now not recoverable. Match the `LockError` instead to
    /// repair the data.
    OwnerDied,
    /// A holder died and the lock was released without being made consistent: it can never be
    /// acquired again.
    NotRecoverable,
    /// A reentrant mutex is already held as many levels deep as it can count.
    RecursionLimit,
    /// A barrier is broken (a party timed out, or it was aborted or reset).
    Broken,
    /// A queue or channel is full (`try_` calls).
    Full,
    /// A queue or channel is empty (`try_` calls).
    Empty,
    /// More releases than acquisitions: a bounded semaphore released past its maximum, or
    /// `task_done()` called more often than values were pushed.
    Overflow(&'static str),
    /// That end of a single-producer single-consumer queue is held by a live process.
    Taken,
    /// A message is larger than the channel can ever hold.
    TooLarge {
        /// Its encoded length in bytes.
        size: usize,
        /// The largest encoded length the channel takes.
        max: usize,
    },
    /// A pool task gave no result. Converted from [`TaskError`](crate::TaskError) (`index`
    /// `None`) or [`MapError`](crate::MapError) (the failed task's input position); a task's
    /// `Timeout` and `Closed` convert to [`Error::Timeout`] and [`Error::Closed`] instead.
    #[cfg(not(multiproc_loom))]
    Task {
        /// The failed task's position in a `map`'s input, if known.
        index: Option<usize>,
        /// Why it failed.
        error: crate::TaskError,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { name } => write!(f, "no shared segment named {name:?}"),
            Error::AlreadyExists { name } => {
                write!(f, "a shared segment named {name:?} already exists")
            }
            Error::InvalidName { name, reason } => {
                write!(f, "invalid segment name {name:?}: {reason}")
            }
            Error::InvalidSize { reason } => write!(f, "invalid size: {reason}"),
            Error::TypeMismatch { expected, found } => {
                write!(
                    f,
                    "type mismatch: expected {expected}, segment holds {found}"
                )
            }
            Error::Corrupted(what) => write!(f, "shared state is corrupted: {what}"),
            Error::PermissionDenied { reason } => write!(f, "permission denied: {reason}"),
            Error::Timeout => f.write_str("timed out"),
            Error::Closed => f.write_str("closed"),
            Error::ChildPanicked { message } => write!(f, "child process panicked: {message}"),
            Error::ChildSignaled { signal } => write!(f, "child process killed by signal {signal}"),
            Error::ChildExited { code } => {
                write!(
                    f,
                    "child process exited with code {code} without returning a value"
                )
            }
            Error::Spawn(what) => write!(f, "spawn failed: {what}"),
            Error::Serialization(what) => write!(f, "serialization failed: {what}"),
            Error::HeapFull { requested } => {
                write!(f, "the heap has no free block for {requested} bytes")
            }
            Error::Os(e) => write!(f, "OS error: {e}"),
            Error::WouldBlock => f.write_str("the operation would block"),
            Error::OwnerDied => f.write_str(
                "the previous holder of the lock died while holding it (the lock is now not \
                 recoverable)",
            ),
            Error::NotRecoverable => f.write_str("the lock is not recoverable"),
            Error::RecursionLimit => {
                f.write_str("the reentrant mutex is held too many levels deep")
            }
            Error::Broken => f.write_str("the barrier is broken"),
            Error::Full => f.write_str("full"),
            Error::Empty => f.write_str("empty"),
            Error::Overflow(what) => write!(f, "overflow: {what}"),
            Error::Taken => f.write_str("that end of the queue is held by a live process"),
            Error::TooLarge { size, max } => write!(
                f,
                "message larger than the channel: {size} bytes encoded, at most {max} fit"
            ),
            #[cfg(not(multiproc_loom))]
            Error::Task {
                index: Some(i),
                error,
            } => write!(f, "task {i}: {error}"),
            #[cfg(not(multiproc_loom))]
            Error::Task { index: None, error } => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os(e) => Some(e),
            #[cfg(not(multiproc_loom))]
            Error::Task { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Os(e)
    }
}

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
