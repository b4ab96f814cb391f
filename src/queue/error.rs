//! What a queue operation can fail with. Every failure is a value; a value that could not be
//! pushed is handed back inside the error.

use std::fmt;

/// A push that did not enqueue its value. The value comes back where it can.
pub enum PushError<T> {
    /// The queue was full (`try_push` only).
    Full(T),
    /// The queue was closed; nothing more is accepted.
    Closed(T),
    /// The deadline passed while the queue stayed full.
    Timeout(T),
    /// The ring's shared state is impossible (a peer wrote garbage into it). The value is dropped.
    Corrupted(&'static str),
}

impl<T> PushError<T> {
    /// The value that was not pushed, if the error carries it.
    pub fn into_inner(self) -> Option<T> {
        match self {
            PushError::Full(v) | PushError::Closed(v) | PushError::Timeout(v) => Some(v),
            PushError::Corrupted(_) => None,
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    // Like std's `SendError`: no `T: Debug` bound, the value prints as "..".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
            PushError::Timeout(_) => f.write_str("Timeout(..)"),
            PushError::Corrupted(what) => f.debug_tuple("Corrupted").field(what).finish(),
        }
    }
}

impl<T> PartialEq for PushError<T> {
    /// Compares the kind of failure only, not the carried value.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PushError::Corrupted(a), PushError::Corrupted(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("queue is full"),
            PushError::Closed(_) => f.write_str("queue is closed"),
            PushError::Timeout(_) => f.write_str("timed out waiting for room in the queue"),
            PushError::Corrupted(what) => write!(f, "queue is corrupted: {what}"),
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

/// A pop that returned no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopError {
    /// The queue was empty (`try_pop` only).
    Empty,
    /// The queue is closed and everything pushed before has been taken.
    Closed,
    /// The deadline passed while the queue stayed empty.
    Timeout,
    /// The ring's shared state is impossible (a peer wrote garbage into it).
    Corrupted(&'static str),
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopError::Empty => f.write_str("queue is empty"),
            PopError::Closed => f.write_str("queue is closed and drained"),
            PopError::Timeout => f.write_str("timed out waiting for a value"),
            PopError::Corrupted(what) => write!(f, "queue is corrupted: {what}"),
        }
    }
}

impl std::error::Error for PopError {}

/// A batch operation (`push_slice`, `pop_into`) that moved nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The queue is closed (for a pop: and drained).
    Closed,
    /// The ring's shared state is impossible (a peer wrote garbage into it).
    Corrupted(&'static str),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Closed => f.write_str("queue is closed"),
            BatchError::Corrupted(what) => write!(f, "queue is corrupted: {what}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// Claiming the producer or consumer end of a single-producer single-consumer queue failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleError {
    /// A live process already holds that end.
    Taken,
    /// The ring's shared indices are impossible (a peer wrote garbage into them).
    Corrupted(&'static str),
}

impl fmt::Display for RoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleError::Taken => f.write_str("that end of the queue is held by a live process"),
            RoleError::Corrupted(what) => write!(f, "queue is corrupted: {what}"),
        }
    }
}

impl std::error::Error for RoleError {}
