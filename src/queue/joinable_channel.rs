//! `JoinableChannel<T>`: a [`Channel`] of any serde message plus a count of unfinished tasks,
//! Python's `multiprocessing.JoinableQueue` of arbitrary objects ([`JoinableQueue`] is its
//! `Pod`-only, copy-in copy-out sibling).
//!
//! The count is the same [`TaskCount`] as a `JoinableQueue`'s, in a segment of its own, with
//! the same protocol (see `joinable.rs`): a put counts the task before it sends (and uncounts
//! it if the send fails), so a `join` never sees zero while a message is queued.
//!
//! [`JoinableQueue`]: super::JoinableQueue

use super::error::{RecvError, SendError};
use super::handle::Channel;
use super::joinable::TaskCount;
use super::ring::Wait;
use crate::error::Result;
use crate::shm::ShmOptions;
use crate::shm::header::{Kind, Spec};
use crate::shm::object::Object;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// A [`Channel`] whose consumers report each message done with
/// [`task_done`](Self::task_done), so that a producer can [`join`](Self::join) until all of
/// them are: Python's `JoinableQueue` for any `Serialize + DeserializeOwned` message.
///
/// ```
/// let q = multiproc::JoinableChannel::<String>::new(4096)?;
/// q.put("job".to_string()).unwrap();
/// assert_eq!(q.get().unwrap(), "job");
/// assert_eq!(q.unfinished_tasks(), 1);
/// q.task_done().unwrap();
/// q.join(); // returns at once: every message put is done
/// assert!(q.task_done().is_err(), "one too many");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Between processes: the parent waits until a child has finished every job.
///
/// ```rust,standalone_crate
/// use multiproc::{JoinableChannel, Process};
///
/// fn worker(q: JoinableChannel<Vec<u32>>) {
///     while let Ok(job) = q.get() {
///         let _sum: u32 = job.iter().sum();
///         q.task_done().unwrap();
///     }
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let q = JoinableChannel::<Vec<u32>>::new(4096)?;
///     let w = Process::spawn(worker, q.clone())?;
///     for n in 0..20 {
///         q.put((0..n).collect()).unwrap();
///     }
///     q.join(); // every job was taken and marked done by the worker
///     q.close(); // ends the worker's loop
///     w.join()?;
///     Ok(())
/// }
/// ```
///
/// A worker killed between `get` and `task_done` leaves the count above zero for good, as in
/// Python: use [`join_timeout`](Self::join_timeout) where that can happen.
pub struct JoinableChannel<T> {
    channel: Channel<T>,
    tasks: Object,
    _type: PhantomData<fn(T) -> T>,
}

super::joinable::joinable_handle!(
    JoinableChannel { channel: Channel },
    JoinableChannel,
    [Serialize + DeserializeOwned],
    [],
);

impl<T: Serialize + DeserializeOwned> JoinableChannel<T> {
    crate::shm::object::shared_constructors! {
        JoinableChannel(capacity_bytes: usize);
        /// A new anonymous channel of `capacity_bytes` (see [`Channel::new`]).
        ///
        /// # Errors
        /// As [`Channel::new`].
        with:
        /// For both its segments.
        fn new, new_with;
        /// A new channel under `name` (its counter lives under `name-tasks`).
        ///
        /// # Errors
        /// As [`Channel::create`].
        with:
        /// For both its segments.
        fn create;
        /// Opens the channel another process created under `name`.
        ///
        /// # Errors
        /// As [`Channel::open`], for either segment.
        with:
        /// For both its segments.
        fn open(name, opts) => {
            let tasks = TaskCount::open(&Self::spec(), name, opts)?;
            Self::from_parts(Channel::open_with(name, opts)?, tasks)
        };
        /// Opens `name`, or creates it with `capacity_bytes` (race-safe).
        ///
        /// # Errors
        /// As [`Channel::open_or_create`].
        fn open_or_create;
    }

    /// Sends `msg` and counts it as an unfinished task, waiting per `wait` while there is no
    /// room.
    fn put_wait(&self, msg: T, wait: Wait) -> std::result::Result<(), SendError<T>> {
        self.count()
            .counted(msg, SendError::Full, |m| self.channel.send_wait(m, wait))
    }

    super::ring::wait_variants! {
        put_wait(&self, msg: T) -> std::result::Result<(), SendError<T>>;
        /// Sends `msg` and counts it as an unfinished task, waiting while there is no room.
        ///
        /// # Errors
        /// As [`Channel::send`]; `Full(msg)` if `u32::MAX` tasks are unfinished already.
        fn put;
        /// Sends `msg` if there is room now, else `Full(msg)`.
        fn try_put;
        /// Like [`put`](Self::put), giving up with `Timeout(msg)` after `timeout`.
        fn put_timeout;
        /// Like [`put`](Self::put), giving up with `Timeout(msg)` at `deadline`.
        fn put_until;
    }

    super::ring::wait_variants! {
        channel.recv_wait(&self) -> std::result::Result<T, RecvError>;
        /// Receives the oldest message, waiting while there is none. Call
        /// [`task_done`](Self::task_done) when it is processed.
        ///
        /// # Errors
        /// As [`Channel::recv`]. A message that fails to decode (`Deserialize`) was still a task:
        /// call `task_done` for it too.
        fn get;
        /// Receives the oldest message if there is one now, else `Empty`.
        fn try_get;
        /// Like [`get`](Self::get), giving up with `Timeout` after `timeout`.
        fn get_timeout;
        /// Like [`get`](Self::get), giving up with `Timeout` at `deadline`.
        fn get_until;
    }

    super::joinable::joinable_methods!(
        channel: Channel,
        "channel",
        "messages",
        "Messages",
        "put",
        "sending",
        "received message",
    );

    /// The channel's size in bytes.
    pub fn capacity(&self) -> usize {
        self.channel.capacity()
    }

    /// The name, or `None` for an anonymous channel.
    pub fn name(&self) -> Option<&str> {
        self.channel.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::queue::TaskDoneError;
    use std::time::Duration;

    #[test]
    fn counts_tasks_and_undoes_failed_puts() {
        let q = JoinableChannel::<Vec<u8>>::new(64).unwrap();
        q.put(vec![1; 20]).unwrap();
        assert_eq!(q.unfinished_tasks(), 1);
        // Too large for the channel: not sent, not counted.
        assert!(matches!(
            q.put(vec![0; 100]),
            Err(SendError::TooLarge { .. })
        ));
        assert_eq!(q.unfinished_tasks(), 1);
        q.put(vec![2; 20]).unwrap();
        assert!(matches!(q.try_put(vec![3; 20]), Err(SendError::Full(_))));
        assert_eq!(q.unfinished_tasks(), 2);
        assert!(matches!(
            q.join_timeout(Duration::from_millis(10)),
            Err(Error::Timeout)
        ));
        assert_eq!(q.get().unwrap(), vec![1; 20]);
        q.task_done().unwrap();
        assert_eq!(q.get().unwrap(), vec![2; 20]);
        q.task_done().unwrap();
        assert_eq!(q.task_done(), Err(TaskDoneError));
        q.join_timeout(Duration::ZERO).unwrap();
    }
}
