//! What a queue operation can fail with. Every failure is a value; a value that could not be
//! pushed is handed back inside the error.

use std::fmt;

/// `Display`, one message per variant (`pattern => "format string"`, which may name the
/// pattern's bindings), and `std::error::Error` for the error type `$ty`.
macro_rules! display_and_error {
    ($ty:ident $(<$t:ident>)? { $($pat:pat => $msg:literal;)* }) => {
        impl$(<$t>)? fmt::Display for $ty$(<$t>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($pat => write!(f, $msg),)*
                }
            }
        }

        impl$(<$t>)? std::error::Error for $ty$(<$t>)? {}
    };
}

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

display_and_error!(PushError<T> {
    PushError::Full(_) => "queue is full";
    PushError::Closed(_) => "queue is closed";
    PushError::Timeout(_) => "timed out waiting for room in the queue";
    PushError::Corrupted(what) => "queue is corrupted: {what}";
});

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

display_and_error!(PopError {
    PopError::Empty => "queue is empty";
    PopError::Closed => "queue is closed and drained";
    PopError::Timeout => "timed out waiting for a value";
    PopError::Corrupted(what) => "queue is corrupted: {what}";
});

/// A batch operation (`push_slice`, `pop_into`) that moved nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The queue is closed (for a pop: and drained).
    Closed,
    /// The ring's shared state is impossible (a peer wrote garbage into it).
    Corrupted(&'static str),
}

display_and_error!(BatchError {
    BatchError::Closed => "queue is closed";
    BatchError::Corrupted(what) => "queue is corrupted: {what}";
});

/// Claiming the producer or consumer end of a single-producer single-consumer queue failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleError {
    /// A live process already holds that end.
    Taken,
    /// The ring's shared indices are impossible (a peer wrote garbage into them).
    Corrupted(&'static str),
}

display_and_error!(RoleError {
    RoleError::Taken => "that end of the queue is held by a live process";
    RoleError::Corrupted(what) => "queue is corrupted: {what}";
});

/// A [`Channel`](super::Channel) send that did not enqueue its message. The message comes back
/// where it can.
pub enum SendError<T> {
    /// No room for the message now (`try_send` only).
    Full(T),
    /// The channel was closed; nothing more is accepted.
    Closed(T),
    /// The deadline passed while there was no room.
    Timeout(T),
    /// The encoded message is larger than the channel can ever hold: a record must fit in the
    /// ring in one piece. Make the channel larger (or split the message).
    TooLarge {
        /// The message.
        value: T,
        /// Its encoded length in bytes.
        size: usize,
        /// The largest encoded length this channel takes.
        max: usize,
    },
    /// The message could not be encoded (its `Serialize` impl failed).
    Serialize {
        /// The message.
        value: T,
        /// What the encoder said.
        reason: String,
    },
    /// The channel's shared state is impossible (a peer wrote garbage into it). The message is
    /// dropped.
    Corrupted(&'static str),
}

impl<T> SendError<T> {
    /// The message that was not sent, if the error carries it.
    pub fn into_inner(self) -> Option<T> {
        match self {
            SendError::Full(v) | SendError::Closed(v) | SendError::Timeout(v) => Some(v),
            SendError::TooLarge { value, .. } | SendError::Serialize { value, .. } => Some(value),
            SendError::Corrupted(_) => None,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    // No `T: Debug` bound: the message prints as "..".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Timeout(_) => f.write_str("Timeout(..)"),
            SendError::TooLarge { size, max, .. } => f
                .debug_struct("TooLarge")
                .field("size", size)
                .field("max", max)
                .finish_non_exhaustive(),
            SendError::Serialize { reason, .. } => f
                .debug_struct("Serialize")
                .field("reason", reason)
                .finish_non_exhaustive(),
            SendError::Corrupted(what) => f.debug_tuple("Corrupted").field(what).finish(),
        }
    }
}

display_and_error!(SendError<T> {
    SendError::Full(_) => "channel is full";
    SendError::Closed(_) => "channel is closed";
    SendError::Timeout(_) => "timed out waiting for room in the channel";
    SendError::TooLarge { size, max, .. } =>
        "message larger than the channel: {size} bytes encoded, at most {max} fit";
    SendError::Serialize { reason, .. } => "cannot encode the message: {reason}";
    SendError::Corrupted(what) => "channel is corrupted: {what}";
});

/// A [`Channel`](super::Channel) receive that returned no message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// No message now (`try_recv` only).
    Empty,
    /// The channel is closed and every message sent before has been taken.
    Closed,
    /// The deadline passed while the channel stayed empty.
    Timeout,
    /// A well-framed record did not decode as the channel's type (a peer wrote garbage into
    /// it). The record is consumed; the next receive goes on with the next message.
    Deserialize(String),
    /// The buffer given to `recv_bytes_into` is shorter than the next message's `needed`
    /// bytes (Python's `BufferTooShort`). The message stays in the channel: receive it again
    /// with a buffer that large.
    BufferTooShort {
        /// The message's length in bytes.
        needed: usize,
    },
    /// The channel's shared state is impossible (a peer wrote garbage into it).
    Corrupted(&'static str),
}

display_and_error!(RecvError {
    RecvError::Empty => "channel is empty";
    RecvError::Closed => "channel is closed and drained";
    RecvError::Timeout => "timed out waiting for a message";
    RecvError::Deserialize(why) => "cannot decode a message: {why}";
    RecvError::BufferTooShort { needed } => "buffer too short for a message of {needed} bytes";
    RecvError::Corrupted(what) => "channel is corrupted: {what}";
});

/// [`JoinableQueue::task_done`](super::JoinableQueue::task_done) was called more times than
/// values were pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDoneError;

display_and_error!(TaskDoneError {
    TaskDoneError => "task_done() called more times than values were pushed";
});
