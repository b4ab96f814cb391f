//! `JoinableQueue<T>`: a [`Queue`] plus a count of unfinished tasks, Python's
//! `multiprocessing.JoinableQueue`.
//!
//! ```text
//! TaskCount (its own segment): unfinished (u32, the futex word) | waiters (u32)
//! push:      unfinished += 1, then push (undone if the push fails)
//! task_done: unfinished -= 1 (an error at 0); at 0: fence, wake every joiner if any
//! join:      waiters += 1; fence; while unfinished != 0: futex_wait(unfinished, seen)
//! ```
//! The increment comes before the push so that a `join` can never see 0 while a value is
//! queued. No lost wake-up: joiners sleep on the count through the protocol of `sync/wait.rs`.
//! A worker killed between `pop` and `task_done` leaves the count above
//! zero for good, as in Python: use [`JoinableQueue::join_timeout`] where that can happen.

use super::error::{PopError, PushError, TaskDoneError};
use super::handle::Queue;
use super::ring::Wait;
use crate::error::{Error, Result};
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use crate::shm::ShmOptions;
use crate::shm::header::{Kind, Spec};
use crate::shm::object::Object;
use crate::sync::wait::{Points, Poll, Waiters, block_on};
use bytemuck::Pod;
use std::marker::PhantomData;

/// The shared counter (of a [`JoinableQueue`] or a
/// [`JoinableChannel`](super::JoinableChannel)).
#[repr(C)]
pub(crate) struct TaskCount {
    /// Values pushed and not yet marked done; the futex word joiners sleep on.
    unfinished: AtomicU32,
    /// Threads inside `join`; `task_done` reaching 0 wakes only if non-zero.
    waiters: Waiters,
}

impl TaskCount {
    /// The counter object of a joinable queue or channel whose objects are of `spec`:
    /// anonymous, or under `name-tasks` (opened instead if it exists and `open_existing`).
    pub(crate) fn create(
        spec: &Spec,
        name: Option<&str>,
        open_existing: bool,
        opts: &ShmOptions,
    ) -> Result<Object> {
        let len = size_of::<TaskCount>();
        let name = name.map(Self::name_for);
        Object::make(name.as_deref(), open_existing, spec, len, opts, Self::init)
    }

    /// Opens the counter object of the joinable queue or channel `name`.
    pub(crate) fn open(spec: &Spec, name: &str, opts: &ShmOptions) -> Result<Object> {
        Object::open(&Self::name_for(name), spec, opts)
    }

    /// The name of the counter object of the joinable queue or channel `name`.
    fn name_for(name: &str) -> String {
        format!("{name}-tasks")
    }

    /// Writes a zero count into a new counter object's payload.
    fn init(p: std::ptr::NonNull<u8>) {
        // SAFETY: `Object` hands us zeroed, writable bytes aligned and sized for `TaskCount`
        // (the spec's unit), not yet visible to anyone else.
        unsafe {
            p.cast::<TaskCount>().write(TaskCount {
                unfinished: AtomicU32::new(0),
                waiters: Waiters::new(),
            })
        }
    }

    /// Refuses a counter object whose payload is not one `TaskCount`.
    pub(crate) fn check(tasks: &Object) -> Result<()> {
        if tasks.payload_len() != size_of::<TaskCount>() {
            return Err(Error::Corrupted("task counter has the wrong length"));
        }
        Ok(())
    }

    /// The counter in `tasks`, which passed [`check`](TaskCount::check).
    pub(crate) fn of(tasks: &Object) -> &TaskCount {
        // SAFETY: the payload is aligned for `TaskCount` (the spec's unit) and exactly its size
        // (checked in `check` when the handle was built); two atomics are valid for any bits
        // and made for concurrent access; the mapping lives as long as `tasks`.
        unsafe { tasks.payload().cast::<TaskCount>().as_ref() }
    }

    /// Counts one more unfinished task; `false` if the counter is at its maximum.
    pub(crate) fn add(&self) -> bool {
        self.unfinished
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .is_ok()
    }

    /// Marks one task done; wakes every joiner when none are left.
    pub(crate) fn done(&self) -> std::result::Result<(), TaskDoneError> {
        // Release: what the worker did before is visible to a joiner that sees the new count.
        let before = self
            .unfinished
            .fetch_update(Ordering::Release, Ordering::Relaxed, |n| n.checked_sub(1))
            .map_err(|_| TaskDoneError)?;
        if before == 1 {
            crate::crash::point("joinable.task_done.before_wake");
            self.waiters.notify(&self.unfinished, true);
        }
        Ok(())
    }

    /// Waits until the count is zero or `deadline` passes; whether it is zero.
    pub(crate) fn join(&self, deadline: Option<Deadline>) -> bool {
        // Acquire: pairs with `done`'s Release.
        if self.unfinished.load(Ordering::Acquire) == 0 {
            return true;
        }
        block_on(
            &self.waiters,
            &self.unfinished,
            deadline,
            false,
            Points::NONE,
            || match self.unfinished.load(Ordering::Acquire) {
                0 => Poll::Ready(()),
                n => Poll::Sleep(n),
            },
        )
        .is_some()
    }

    /// [`join`](Self::join) with a deadline, as the handles report it: [`Error::Timeout`] if
    /// tasks were still unfinished.
    pub(crate) fn join_by(&self, deadline: Deadline) -> Result<()> {
        if self.join(Some(deadline)) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    /// Sends `value` through `send`, counting it as an unfinished task first. With `u32::MAX`
    /// tasks unfinished there is no room for another: `full(value)`, even from a blocking send.
    pub(crate) fn counted<T, E>(
        &self,
        value: T,
        full: fn(T) -> E,
        send: impl FnOnce(T) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        if !self.add() {
            // No room for another task (2^32 - 1 unfinished): the queue is full of tasks.
            return Err(full(value));
        }
        send(value).inspect_err(|_| {
            // Not sent: not a task. Cannot underflow: we counted it.
            let _ = self.done();
        })
    }

    /// Tasks not yet marked done.
    pub(crate) fn unfinished(&self) -> u32 {
        self.unfinished.load(Ordering::Relaxed)
    }
}

/// The unfinished-task count of the counter segment whose payload is the `len` bytes at `ptr`
/// (inspection tools), or `None` if they cannot hold one.
///
/// # Safety
/// `ptr` is valid for reads of `len` bytes while the call runs; other processes may write them
/// at any time. One atomic load is made, so a read-only mapping is enough.
pub(crate) unsafe fn peek_unfinished(ptr: *const u8, len: usize) -> Option<u32> {
    if len < size_of::<TaskCount>() || ptr as usize % align_of::<TaskCount>() != 0 {
        return None;
    }
    // SAFETY: `ptr` is aligned and valid for reads of a whole `TaskCount` (checked above and the
    // caller's contract); it is atomics, valid for every bit pattern, and only loaded.
    let count = unsafe { &*ptr.cast::<TaskCount>() };
    Some(count.unfinished.load(Ordering::Relaxed))
}

/// The methods [`JoinableQueue`] and [`JoinableChannel`](super::JoinableChannel) share: the
/// task count's (`task_done`, the joins, `unfinished_tasks`), and those that forward to the
/// `$inner: $Inner` underneath (`close`, `is_closed`, `len`, `is_empty`, `persist`). The docs
/// call it a `$what` of `$items` (`$Items`), `$verbed` by `$sending`, taken as `$taken`.
macro_rules! joinable_methods {
    (
        $inner:ident: $Inner:ident,
        $what:literal,
        $items:literal,
        $Items:literal,
        $verbed:literal,
        $sending:literal,
        $taken:literal $(,)?
    ) => {
        #[doc = concat!(
            "Marks one ", $taken, " as processed; wakes every joiner when none are left."
        )]
        ///
        /// # Errors
        #[doc = concat!(
            "[`TaskDoneError`](crate::queue::TaskDoneError) if called more times than ",
            $items, " were ", $verbed, "."
        )]
        pub fn task_done(&self) -> std::result::Result<(), $crate::queue::TaskDoneError> {
            self.count().done()
        }

        #[doc = concat!("Waits until all ", $items, " ", $verbed, " have been marked done.")]
        pub fn join(&self) {
            self.count().join(None);
        }

        /// Like [`join`](Self::join), giving up after `timeout`.
        ///
        /// # Errors
        /// [`Error::Timeout`](crate::Error::Timeout) if tasks were still unfinished.
        pub fn join_timeout(&self, timeout: std::time::Duration) -> $crate::error::Result<()> {
            self.count().join_by($crate::loom::futex::Deadline::after(timeout))
        }

        /// Like [`join`](Self::join), giving up at `deadline`.
        ///
        /// # Errors
        /// [`Error::Timeout`](crate::Error::Timeout) if tasks were still unfinished.
        pub fn join_until(&self, deadline: std::time::Instant) -> $crate::error::Result<()> {
            self.count().join_by($crate::loom::futex::Deadline::at(deadline))
        }

        #[doc = concat!($Items, " ", $verbed, " and not yet marked done.")]
        pub fn unfinished_tasks(&self) -> u32 {
            self.count().unfinished()
        }

        #[doc = concat!(
            "The ", $what, " underneath (", $sending, " through it directly does not count tasks)."
        )]
        pub fn $inner(&self) -> &$Inner<T> {
            &self.$inner
        }

        #[doc = concat!(
            "Closes the ", $what, " (see [`", stringify!($Inner), "::close`](crate::",
            stringify!($Inner), "::close)); joiners are not woken by it."
        )]
        pub fn close(&self) {
            self.$inner.close()
        }

        #[doc = concat!("Whether the ", $what, " was closed.")]
        pub fn is_closed(&self) -> bool {
            self.$inner.is_closed()
        }

        #[doc = concat!("Number of queued ", $items, " (approximate).")]
        pub fn len(&self) -> usize {
            self.$inner.len()
        }

        #[doc = concat!("Whether the ", $what, " looks empty.")]
        pub fn is_empty(&self) -> bool {
            self.$inner.is_empty()
        }

        /// Keeps the names after the creator's handles drop.
        pub fn persist(&self) {
            self.$inner.persist();
            self.tasks.persist();
        }
    };
}
pub(crate) use joinable_methods;

/// What [`JoinableQueue`] and [`JoinableChannel`](super::JoinableChannel) build the same way
/// from their `$inner: $Inner<T>` and the counter object `tasks`: in an impl with the bounds
/// `[$main]`, the spec (of kind `$kind`), `from_parts`, `count` and `make`; `Deserialize` with
/// those bounds too, and `Clone`, `Debug` and `Serialize` with the bounds `[$any]`. Names
/// `TaskCount`, `Object`, `ShmOptions`, `Spec`, `Kind`, `Result` and `PhantomData` as the
/// calling module imports them.
macro_rules! joinable_handle {
    (
        $Ty:ident { $inner:ident: $Inner:ident }, $kind:ident,
        [$($main:tt)*], [$($any:tt)*] $(,)?
    ) => {
        impl<T: $($main)*> $Ty<T> {
            fn spec() -> Spec {
                Spec::new::<T, TaskCount>(Kind::$kind)
            }

            fn from_parts($inner: $Inner<T>, tasks: Object) -> Result<Self> {
                TaskCount::check(&tasks)?;
                Ok(Self {
                    $inner,
                    tasks,
                    _type: PhantomData,
                })
            }

            fn count(&self) -> &TaskCount {
                TaskCount::of(&self.tasks)
            }

            #[doc = concat!("The ", stringify!($inner), " and its counter: anonymous, or under")]
            /// `name` (opened instead if they exist and `open_existing`).
            fn make(
                name: Option<&str>,
                open_existing: bool,
                capacity: usize,
                opts: &ShmOptions,
            ) -> Result<Self> {
                Self::from_parts(
                    $Inner::make(name, open_existing, capacity, opts)?,
                    TaskCount::create(&Self::spec(), name, open_existing, opts)?,
                )
            }
        }

        impl<T: $($any)*> Clone for $Ty<T> {
            fn clone(&self) -> Self {
                Self {
                    $inner: self.$inner.clone(),
                    tasks: self.tasks.clone(),
                    _type: PhantomData,
                }
            }
        }

        impl<T: $($any)*> std::fmt::Debug for $Ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($Ty))
                    .field(stringify!($inner), &self.$inner)
                    .field("unfinished", &TaskCount::of(&self.tasks).unfinished())
                    .finish()
            }
        }

        impl<T: $($any)*> serde::Serialize for $Ty<T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&(&self.$inner, self.tasks.segment()), s)
            }
        }

        impl<'de, T: $($main)*> serde::Deserialize<'de> for $Ty<T> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let (inner, segment) =
                    <($Inner<T>, $crate::Segment) as serde::Deserialize>::deserialize(d)?;
                Object::from_segment(segment, &Self::spec(), &ShmOptions::default())
                    .and_then(|tasks| Self::from_parts(inner, tasks))
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use joinable_handle;

/// A [`Queue`] whose consumers report each value done with [`task_done`](Self::task_done), so
/// that a producer can [`join`](Self::join) until all of them are.
///
/// ```
/// let q = multiproc::JoinableQueue::<u32>::new(8)?;
/// q.push(1).unwrap();
/// assert_eq!(q.pop().unwrap(), 1);
/// assert_eq!(q.unfinished_tasks(), 1);
/// q.task_done().unwrap();
/// q.join(); // returns at once: every pushed value is done
/// assert!(q.task_done().is_err(), "one too many");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Between processes: the parent waits until a child has finished every job.
///
/// ```rust,standalone_crate
/// use multiproc::{JoinableQueue, Process};
///
/// fn worker(q: JoinableQueue<u32>) {
///     while let Ok(_job) = q.pop() {
///         q.task_done().unwrap();
///     }
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let q = JoinableQueue::<u32>::new(8)?;
///     let w = Process::spawn(worker, q.clone())?;
///     for job in 0..20 {
///         q.push(job).unwrap();
///     }
///     q.join(); // every job was popped and marked done by the worker
///     assert_eq!(q.unfinished_tasks(), 0);
///     q.close(); // ends the worker's loop
///     w.join()?;
///     Ok(())
/// }
/// ```
pub struct JoinableQueue<T: Pod + Send> {
    queue: Queue<T>,
    tasks: Object,
    _type: PhantomData<fn() -> T>,
}

joinable_handle!(
    JoinableQueue { queue: Queue },
    JoinableQueue,
    [Pod + Send],
    [Pod + Send],
);

impl<T: Pod + Send> JoinableQueue<T> {
    crate::shm::object::shared_constructors! {
        JoinableQueue(capacity: usize);
        /// A new anonymous queue of `capacity` values.
        ///
        /// # Errors
        /// As [`Queue::new`].
        with:
        /// For both its segments.
        fn new, new_with;
        /// A new queue under `name` (its counter lives under `name-tasks`).
        with:
        /// For both its segments.
        fn create;
        /// Opens the queue another process created under `name`.
        with:
        /// For both its segments.
        fn open(name, opts) => {
            let tasks = TaskCount::open(&Self::spec(), name, opts)?;
            Self::from_parts(Queue::open_with(name, opts)?, tasks)
        };
        /// Opens `name`, or creates it with `capacity` (race-safe).
        fn open_or_create;
    }

    /// Appends `value` and counts it as an unfinished task, waiting per `wait` while the queue
    /// is full.
    fn push_wait(&self, value: T, wait: Wait) -> std::result::Result<(), PushError<T>> {
        self.count()
            .counted(value, PushError::Full, |v| self.queue.push_wait(v, wait))
    }

    super::ring::wait_variants! {
        push_wait(&self, value: T) -> std::result::Result<(), PushError<T>>;
        /// Appends `value` and counts it as an unfinished task, waiting while the queue is full.
        /// `Full(value)` if `u32::MAX` tasks are unfinished already (the counter has no room).
        fn push;
        /// Appends `value` if there is room now, else `Full(value)`.
        fn try_push;
        /// Like [`push`](Self::push), giving up with `Timeout(value)` after `timeout`.
        fn push_timeout;
        /// Like [`push`](Self::push), giving up with `Timeout(value)` at `deadline`.
        fn push_until;
    }

    super::ring::wait_variants! {
        queue.pop_wait(&self) -> std::result::Result<T, PopError>;
        /// Removes the oldest value, waiting while the queue is empty. Call
        /// [`task_done`](Self::task_done) when it is processed.
        fn pop;
        /// Removes the oldest value if there is one now, else `Empty`.
        fn try_pop;
        /// Like [`pop`](Self::pop), giving up with `Timeout` after `timeout`.
        fn pop_timeout;
        /// Like [`pop`](Self::pop), giving up with `Timeout` at `deadline`.
        fn pop_until;
    }

    joinable_methods!(
        queue: Queue,
        "queue",
        "values",
        "Values",
        "pushed",
        "pushing",
        "popped value",
    );

    /// Maximum number of queued values.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::watchdog;
    use std::time::Duration;

    #[test]
    fn join_waits_for_every_task_done() {
        watchdog(10, || {
            let q = JoinableQueue::<u64>::new(4).unwrap();
            q.join();
            for i in 0..3 {
                q.push(i).unwrap();
            }
            assert_eq!(q.unfinished_tasks(), 3);
            assert_eq!(
                q.join_timeout(Duration::from_millis(20))
                    .unwrap_err()
                    .to_string(),
                "timed out"
            );
            let w = q.clone();
            let worker = std::thread::spawn(move || {
                while let Ok(_v) = w.pop_timeout(Duration::from_millis(200)) {
                    std::thread::sleep(Duration::from_millis(5));
                    w.task_done().unwrap();
                }
            });
            q.join();
            assert_eq!(q.unfinished_tasks(), 0);
            assert_eq!(q.task_done(), Err(TaskDoneError));
            worker.join().unwrap();
        });
    }

    #[test]
    fn a_failed_push_is_not_a_task() {
        let q = JoinableQueue::<u8>::new(1).unwrap();
        q.push(1).unwrap();
        assert!(matches!(q.try_push(2), Err(PushError::Full(2))));
        assert_eq!(q.unfinished_tasks(), 1);
        q.close();
        assert!(matches!(q.push(3), Err(PushError::Closed(3))));
        assert_eq!(q.unfinished_tasks(), 1);
    }
}
