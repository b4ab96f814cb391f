//! The owning handles: [`Queue`], [`SpscQueue`] and [`Channel`], each a ring in its own
//! segment.

use super::channel::{ChannelHeader, ChannelRef, RawChannel, recv_error, send_error};
use super::error::{RecvError, SendError};
use super::mpmc::{MpmcRef, RawMpmc};
use super::peer::OsEnv;
use super::ring::{Place, Wait};
use super::spsc::{self, End, EndState, RawSpsc, SpscRef};
use super::{BatchError, PopError, PushError, RoleError};
use crate::error::{Error, Result};
use crate::loom::futex::Deadline;
use crate::shm::ShmOptions;
use crate::shm::header::{Kind, Spec};
use crate::shm::object::Object;
use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// Sizes, initialises and attaches one ring type; lets both handles share one implementation.
trait Ring<T: Pod + Send> {
    const KIND: Kind;
    /// The attached ring, borrowing the mapping.
    type Ref<'a>: Copy
    where
        T: 'a;
    fn bytes_for(capacity: usize) -> Option<usize>;
    /// # Safety
    /// As `RawMpmc::init` / `RawSpsc::init`.
    unsafe fn init(ptr: *mut u8, capacity: usize) -> std::result::Result<(), &'static str>;
    /// Validates the ring and says where it lies.
    ///
    /// # Safety
    /// As `RawMpmc::attach` / `RawSpsc::attach`.
    unsafe fn attach(ptr: *mut u8, len: usize) -> std::result::Result<Place, &'static str>;
    /// # Safety
    /// As `MpmcRef::at` / `SpscRef::at`.
    unsafe fn at<'a>(ptr: *mut u8, place: Place) -> Self::Ref<'a>;
}

/// [`Ring`] for the raw ring `$raw` of kind `$kind`, attached as `$ring`: forwards to its own
/// entry points with `T`'s size and alignment.
macro_rules! ring_impl {
    ($raw:ident, $ring:ident, $kind:expr) => {
        impl<T: Pod + Send> Ring<T> for $raw {
            const KIND: Kind = $kind;
            type Ref<'a>
                = $ring<'a, T>
            where
                T: 'a;
            fn bytes_for(capacity: usize) -> Option<usize> {
                $raw::bytes_for(capacity, size_of::<T>(), align_of::<T>())
            }
            unsafe fn init(ptr: *mut u8, capacity: usize) -> std::result::Result<(), &'static str> {
                // SAFETY: forwarded from the caller.
                unsafe { $raw::init(ptr, capacity, size_of::<T>(), align_of::<T>()) }
            }
            unsafe fn attach(ptr: *mut u8, len: usize) -> std::result::Result<Place, &'static str> {
                // SAFETY: forwarded from the caller.
                unsafe { $raw::attach::<T>(ptr, len) }
            }
            unsafe fn at<'a>(ptr: *mut u8, place: Place) -> $ring<'a, T> {
                // SAFETY: forwarded from the caller.
                unsafe { $ring::at(ptr, place) }
            }
        }
    };
}

ring_impl!(RawMpmc, MpmcRef, Kind::Queue);
ring_impl!(RawSpsc, SpscRef, Kind::SpscQueue);

/// Names the ring type and element type of a [`RingObject`].
type RingOf<R, T> = (R, fn(T) -> T);

/// A segment holding a ring, and where the ring lies in it (validated once, at attach). Each
/// use rebuilds the ring reference from the mapping, borrowing it only as long as `&self`.
struct RingObject<R, T> {
    object: Object,
    place: Place,
    _ring: PhantomData<RingOf<R, T>>,
}

impl<R, T> Clone for RingObject<R, T> {
    fn clone(&self) -> Self {
        Self {
            object: self.object.clone(),
            place: self.place,
            _ring: PhantomData,
        }
    }
}

impl<T: Pod + Send, R: Ring<T>> RingObject<R, T> {
    /// The ring.
    #[inline]
    fn ring(&self) -> R::Ref<'_> {
        // SAFETY: `place` is where `attach` found the ring in this object's payload, which is
        // mapped as long as `self` holds the object.
        unsafe { R::at(self.object.payload().as_ptr(), self.place) }
    }

    fn spec() -> Spec {
        // The payload unit is the ring's alignment (128 bytes or `T`'s, whichever is larger);
        // the element type names the object.
        let mut spec = Spec::new::<T, T>(R::KIND);
        spec.elem_align =
            RawMpmc::align_for(align_of::<T>()).max(RawSpsc::align_for(align_of::<T>()));
        spec
    }

    fn payload_len(capacity: usize) -> Result<usize> {
        crate::shm::object::check_count(size_of::<T>(), capacity, "zero capacity")?;
        R::bytes_for(capacity).ok_or(Error::InvalidSize {
            reason: "capacity too large",
        })
    }

    fn attach(object: Object) -> Result<Self> {
        // SAFETY: `payload_len` initialised bytes of a validated object, aligned for the ring
        // (payload offset a multiple of its alignment, mapping page-aligned), mapped while we
        // look; other processes may write them, which rings tolerate.
        let place = unsafe { R::attach(object.payload().as_ptr(), object.payload_len()) };
        Ok(Self {
            place: place.map_err(Error::Corrupted)?,
            object,
            _ring: PhantomData,
        })
    }

    fn make(
        name: Option<&str>,
        open_existing: bool,
        capacity: usize,
        opts: &ShmOptions,
    ) -> Result<Self> {
        let spec = Self::spec();
        let len = Self::payload_len(capacity)?;
        let mut failed = None;
        let init = |p: std::ptr::NonNull<u8>| {
            // SAFETY: `Object` hands us `len` zeroed bytes aligned for the spec (the ring's
            // alignment), not yet visible to anyone else.
            if let Err(e) = unsafe { R::init(p.as_ptr(), capacity) } {
                failed = Some(e);
            }
        };
        let object = Object::make(name, open_existing, &spec, len, opts, init)?;
        if let Some(e) = failed {
            // `init` refuses only parameters it cannot lay out.
            return Err(Error::InvalidSize { reason: e });
        }
        Self::attach(object)
    }

    fn open(name: &str, opts: &ShmOptions) -> Result<Self> {
        Self::attach(Object::open(name, &Self::spec(), opts)?)
    }

    fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let segment = crate::Segment::deserialize(d)?;
        Object::from_segment(segment, &Self::spec(), &ShmOptions::default())
            .and_then(Self::attach)
            .map_err(serde::de::Error::custom)
    }
}

/// The constructors, queries and trait impls that [`Queue`] and [`SpscQueue`] share.
macro_rules! ring_handle {
    ($handle:ident) => {
        impl<T: Pod + Send> $handle<T> {
            crate::shm::object::shared_constructors! {
                $handle(capacity: usize);
                /// A new anonymous queue holding up to `capacity` values (1 to 2^28).
                ///
                /// # Errors
                /// [`Error::InvalidSize`] for a zero or too large capacity or a zero-sized `T`.
                with:
                /// For example [`ShmOptions::populate`] to fault in a big ring up front.
                fn new, new_with;
                /// A new queue under `name`.
                ///
                /// # Errors
                /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::InvalidSize`].
                fn create;
                /// Opens the queue another process created under `name`.
                ///
                /// # Errors
                /// [`Error::NotFound`], [`Error::TypeMismatch`], [`Error::Corrupted`].
                with:
                /// For example [`ShmOptions::allow_foreign`].
                fn open(name, opts) => RingObject::open(name, opts).map(|inner| Self { inner });
                /// Opens `name`, or creates it with `capacity` (race-safe); an existing queue
                /// keeps its own capacity.
                fn open_or_create;
            }

            /// A new queue of `capacity` values: anonymous, or under `name` (opened instead if
            /// it exists and `open_existing`).
            pub(crate) fn make(
                name: Option<&str>,
                open_existing: bool,
                capacity: usize,
                opts: &ShmOptions,
            ) -> Result<Self> {
                RingObject::make(name, open_existing, capacity, opts).map(|inner| Self { inner })
            }

            /// Closes the queue for everyone and wakes every blocked caller; what is queued can
            /// still be popped.
            pub fn close(&self) {
                self.inner.ring().close()
            }

            /// Whether the queue was closed.
            pub fn is_closed(&self) -> bool {
                self.inner.ring().is_closed()
            }

            /// Number of values (approximate while others push and pop, as in Python).
            pub fn len(&self) -> usize {
                self.inner.ring().len()
            }

            /// Whether the queue looks empty.
            pub fn is_empty(&self) -> bool {
                self.inner.ring().is_empty()
            }

            /// Whether the queue looks full.
            pub fn is_full(&self) -> bool {
                self.inner.ring().is_full()
            }

            /// Maximum number of values.
            pub fn capacity(&self) -> usize {
                self.inner.ring().capacity()
            }

            /// The name, or `None` for an anonymous queue.
            pub fn name(&self) -> Option<&str> {
                self.inner.object.segment().name()
            }

            /// Keeps the name after the creator's handles drop.
            pub fn persist(&self) {
                self.inner.object.persist()
            }
        }

        impl<T: Pod + Send> Clone for $handle<T> {
            fn clone(&self) -> Self {
                Self {
                    inner: self.inner.clone(),
                }
            }
        }

        impl<T: Pod + Send> fmt::Debug for $handle<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($handle))
                    .field("type", &std::any::type_name::<T>())
                    .field("capacity", &self.capacity())
                    .field("name", &self.name())
                    .finish()
            }
        }

        impl<T: Pod + Send> Serialize for $handle<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.inner.object.segment().serialize(s)
            }
        }

        impl<'de, T: Pod + Send> Deserialize<'de> for $handle<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                RingObject::deserialize(d).map(|inner| Self { inner })
            }
        }
    };
}

/// A bounded multi-producer multi-consumer queue of `Pod` values in shared memory, Python's
/// `multiprocessing.Queue` without the pickling: values are copied into and out of a lock-free
/// ring (Vyukov's), and an uncontended push or pop makes no system call.
///
/// Clones share the queue; pass a clone to a child in [`Process::spawn`](crate::Process::spawn)
/// arguments. [`close`](Queue::close) wakes every blocked caller: pushes then fail with
/// `Closed(value)`, pops drain what is left and then fail with `Closed`.
///
/// ```
/// let q = multiproc::Queue::<u64>::new(8)?;
/// q.push(1).unwrap();
/// assert_eq!(q.try_pop().unwrap(), 1);
/// q.close();
/// assert!(q.pop().is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A producer killed in the middle of a push loses at most that value (its push never returned;
/// if it had already published it, the value is delivered once); a consumer killed in the middle
/// of a pop loses the value it was taking. The survivors go on:
/// a slot claimed by a dead process is reclaimed once the OS reports it dead (within ~10 ms).
///
/// Between processes: a child produces, the parent consumes until the queue is closed.
///
/// ```rust,standalone_crate
/// use multiproc::{Process, Queue};
///
/// fn produce(q: Queue<u64>) {
///     for i in 1..=100 {
///         q.push(i).unwrap(); // waits while the queue is full
///     }
///     q.close(); // the consumer drains what is left, then sees `Closed`
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let q = Queue::<u64>::new(16)?;
///     let producer = Process::spawn(produce, q.clone())?;
///     let mut sum = 0;
///     while let Ok(v) = q.pop() {
///         sum += v;
///     }
///     producer.join()?;
///     assert_eq!(sum, 5050);
///     Ok(())
/// }
/// ```
pub struct Queue<T: Pod + Send> {
    inner: RingObject<RawMpmc, T>,
}

ring_handle!(Queue);

impl<T: Pod + Send> Queue<T> {
    /// Appends `value`, waiting per `wait` while the queue is full.
    #[inline]
    pub(crate) fn push_wait(&self, value: T, wait: Wait) -> std::result::Result<(), PushError<T>> {
        self.inner.ring().push_in(&OsEnv, value, wait)
    }

    super::ring::wait_variants! {
        push_wait(&self, value: T) -> std::result::Result<(), PushError<T>>;
        /// Appends `value`, waiting while the queue is full.
        fn push;
        /// Appends `value` if there is room now, else `Full(value)`.
        fn try_push;
        /// Like [`push`](Queue::push), giving up with `Timeout(value)` after `timeout`.
        fn push_timeout;
        /// Like [`push`](Queue::push), giving up with `Timeout(value)` at `deadline` (a past one:
        /// no waiting).
        fn push_until;
    }

    /// Removes the oldest value, waiting per `wait` while the queue is empty.
    #[inline]
    pub(crate) fn pop_wait(&self, wait: Wait) -> std::result::Result<T, PopError> {
        self.inner.ring().pop_in(&OsEnv, wait)
    }

    super::ring::wait_variants! {
        pop_wait(&self) -> std::result::Result<T, PopError>;
        /// Removes the oldest value, waiting while the queue is empty.
        fn pop;
        /// Removes the oldest value if there is one now, else `Empty`.
        fn try_pop;
        /// Like [`pop`](Queue::pop), giving up with `Timeout` after `timeout`.
        fn pop_timeout;
        /// Like [`pop`](Queue::pop), giving up with `Timeout` at `deadline` (a past one: no
        /// waiting).
        ///
        /// ```
        /// use multiproc::queue::PopError;
        /// use std::time::{Duration, Instant};
        ///
        /// let q = multiproc::Queue::<u64>::new(4)?;
        /// let deadline = Instant::now() + Duration::from_millis(20);
        /// assert_eq!(q.pop_until(deadline), Err(PopError::Timeout));
        /// assert!(Instant::now() >= deadline);
        /// q.push(7).unwrap();
        /// assert_eq!(q.pop_until(deadline), Ok(7));
        /// # Ok::<(), multiproc::Error>(())
        /// ```
        fn pop_until;
    }
}

/// A bounded single-producer single-consumer queue of `Pod` values in shared memory: the
/// fastest way to stream values from one process to another, with batch copies.
///
/// The roles are claimed at run time: [`producer`](SpscQueue::producer) and
/// [`consumer`](SpscQueue::consumer) each succeed for one holder at a time, anywhere
/// ([`RoleError::Taken`] otherwise); a role whose holding process died can be claimed again.
///
/// ```
/// let q = multiproc::SpscQueue::<u32>::new(64)?;
/// let mut tx = q.producer().unwrap();
/// let mut rx = q.consumer().unwrap();
/// assert!(q.producer().is_err(), "one producer at a time");
/// tx.push_slice(&[1, 2, 3]).unwrap();
/// let mut out = [0; 8];
/// assert_eq!(rx.pop_into(&mut out).unwrap(), 3);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SpscQueue<T: Pod + Send> {
    inner: RingObject<RawSpsc, T>,
}

ring_handle!(SpscQueue);

impl<T: Pod + Send> SpscQueue<T> {
    /// Claims the producer role.
    pub fn producer(&self) -> std::result::Result<SpscProducer<T>, RoleError> {
        let state = self.inner.ring().producer()?.suspend();
        Ok(SpscProducer {
            state,
            queue: self.clone(),
        })
    }

    /// Claims the consumer role.
    pub fn consumer(&self) -> std::result::Result<SpscConsumer<T>, RoleError> {
        let state = self.inner.ring().consumer()?.suspend();
        Ok(SpscConsumer {
            state,
            queue: self.clone(),
        })
    }
}

/// The producing end of an [`SpscQueue`]; releases the role when dropped.
pub struct SpscProducer<T: Pod + Send> {
    queue: SpscQueue<T>,
    /// The claimed role; each call resumes it on the ring.
    state: EndState,
}

impl<T: Pod + Send> SpscProducer<T> {
    /// Runs `f` on the end, resumed on the ring.
    #[inline]
    fn with<R>(&mut self, f: impl FnOnce(&mut spsc::SpscProducer<'_, T>) -> R) -> R {
        spsc::with_end(self.queue.inner.ring(), &mut self.state, f)
    }
}

impl<T: Pod + Send> Drop for SpscProducer<T> {
    fn drop(&mut self) {
        spsc::release_end::<T, spsc::SpscProducer<'_, T>>(self.queue.inner.ring(), self.state);
    }
}

impl<T: Pod + Send> SpscProducer<T> {
    /// Appends `value`, waiting per `wait` while the queue is full.
    #[inline(always)]
    fn push_wait(&mut self, value: T, wait: Wait) -> std::result::Result<(), PushError<T>> {
        match wait {
            Wait::No => self.with(|end| end.push_in(value, Wait::No)),
            Wait::Until(_) => self.push_or_wait(value, wait),
        }
    }

    /// A push that need not wait runs as `try_push` does (the end in registers); only a full
    /// ring goes on to the wait.
    #[inline(never)]
    fn push_or_wait(&mut self, value: T, wait: Wait) -> std::result::Result<(), PushError<T>> {
        match self.with(|end| end.push_in(value, Wait::No)) {
            Err(PushError::Full(value)) => self.push_waiting(value, wait),
            tried => tried,
        }
    }

    /// Out of line, so that the end above stays in registers.
    #[cold]
    #[inline(never)]
    fn push_waiting(&mut self, value: T, wait: Wait) -> std::result::Result<(), PushError<T>> {
        self.with(|end| end.push_in(value, wait))
    }

    super::ring::wait_variants! {
        push_wait(&mut self, value: T) -> std::result::Result<(), PushError<T>>;
        /// Appends `value`, waiting while the queue is full.
        fn push;
        /// Appends `value` if there is room now, else `Full(value)`.
        #[inline]
        fn try_push;
        /// Like [`push`](SpscProducer::push), giving up with `Timeout(value)` after `timeout`.
        fn push_timeout;
        /// Like [`push`](SpscProducer::push), giving up with `Timeout(value)` at `deadline`.
        fn push_until;
    }

    /// Appends as many values from `src` as fit now (without waiting); returns how many.
    pub fn push_slice(&mut self, src: &[T]) -> std::result::Result<usize, BatchError> {
        self.with(|end| end.push_slice(src))
    }
}

/// The consuming end of an [`SpscQueue`]; releases the role when dropped.
pub struct SpscConsumer<T: Pod + Send> {
    queue: SpscQueue<T>,
    /// The claimed role; each call resumes it on the ring.
    state: EndState,
}

impl<T: Pod + Send> SpscConsumer<T> {
    /// Runs `f` on the end, resumed on the ring.
    #[inline]
    fn with<R>(&mut self, f: impl FnOnce(&mut spsc::SpscConsumer<'_, T>) -> R) -> R {
        spsc::with_end(self.queue.inner.ring(), &mut self.state, f)
    }
}

impl<T: Pod + Send> Drop for SpscConsumer<T> {
    fn drop(&mut self) {
        spsc::release_end::<T, spsc::SpscConsumer<'_, T>>(self.queue.inner.ring(), self.state);
    }
}

impl<T: Pod + Send> SpscConsumer<T> {
    /// Removes the oldest value, waiting per `wait` while the queue is empty.
    #[inline(always)]
    fn pop_wait(&mut self, wait: Wait) -> std::result::Result<T, PopError> {
        match wait {
            Wait::No => self.with(|end| end.pop_in(Wait::No)),
            Wait::Until(_) => self.pop_or_wait(wait),
        }
    }

    /// As [`push_or_wait`](SpscProducer::push_or_wait).
    #[inline(never)]
    fn pop_or_wait(&mut self, wait: Wait) -> std::result::Result<T, PopError> {
        match self.with(|end| end.pop_in(Wait::No)) {
            Err(PopError::Empty) => self.pop_waiting(wait),
            tried => tried,
        }
    }

    #[cold]
    #[inline(never)]
    fn pop_waiting(&mut self, wait: Wait) -> std::result::Result<T, PopError> {
        self.with(|end| end.pop_in(wait))
    }

    super::ring::wait_variants! {
        pop_wait(&mut self) -> std::result::Result<T, PopError>;
        /// Removes the oldest value, waiting while the queue is empty.
        fn pop;
        /// Removes the oldest value if there is one now, else `Empty`.
        #[inline]
        fn try_pop;
        /// Like [`pop`](SpscConsumer::pop), giving up with `Timeout` after `timeout`.
        fn pop_timeout;
        /// Like [`pop`](SpscConsumer::pop), giving up with `Timeout` at `deadline`.
        fn pop_until;
    }

    /// Moves as many ready values as fit into `dst` (without waiting); returns how many.
    pub fn pop_into(&mut self, dst: &mut [T]) -> std::result::Result<usize, BatchError> {
        self.with(|end| end.pop_into(dst))
    }
}

/// A bounded multi-producer multi-consumer channel of arbitrary messages between processes,
/// Python's `multiprocessing.Queue` of objects: each message is encoded with postcard straight
/// into a byte ring in shared memory and decoded straight out of it (one copy each way, no
/// pipe, no feeder thread).
///
/// The bound is in bytes ([`capacity`](Channel::capacity)); a message whose encoding exceeds
/// [`max_message_len`](Channel::max_message_len) (the capacity minus an 8-byte record word) is
/// refused with [`SendError::TooLarge`] and handed back: records are never chunked, so size
/// the channel for the largest message (a record that does not fit before the end of the ring
/// starts again at its beginning, so up to twice a message's size may be needed while others
/// are queued).
///
/// Clones share the channel; pass a clone to a child in [`Process::spawn`](crate::Process::spawn)
/// arguments. [`close`](Channel::close) wakes every blocked caller: sends then fail with
/// `Closed(message)`, receives drain what is left and then fail with `Closed`.
///
/// ```
/// let ch = multiproc::Channel::<String>::new(4096)?;
/// ch.send("hello".to_string()).unwrap();
/// assert_eq!(ch.recv().unwrap(), "hello");
/// ch.close();
/// assert_eq!(ch.recv(), Err(multiproc::queue::RecvError::Closed));
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A sender killed inside `send` loses that message only; a receiver killed inside `recv`
/// loses at most the message it was taking (none if it died before committing). Senders are
/// serialised by one robust lock and receivers by another; the next locker after a death
/// re-validates the ring and goes on. See `SAFETY.md`.
///
/// Between processes: a child sends, the parent receives until the channel is closed.
///
/// ```rust,standalone_crate
/// use multiproc::{Channel, Process};
///
/// fn greet(ch: Channel<String>) {
///     for name in ["Ada", "Grace"] {
///         ch.send(format!("hello {name}")).unwrap();
///     }
///     ch.close();
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let ch = Channel::<String>::new(4096)?;
///     let child = Process::spawn(greet, ch.clone())?;
///     let got: Vec<String> = std::iter::from_fn(|| ch.recv().ok()).collect();
///     child.join()?;
///     assert_eq!(got, ["hello Ada", "hello Grace"]);
///     Ok(())
/// }
/// ```
pub struct Channel<T> {
    object: Object,
    /// Where `attach` found the ring in the payload.
    place: Place,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Channel<T> {
    /// The ring, borrowing the mapping `self` holds.
    #[inline]
    pub(crate) fn ring(&self) -> ChannelRef<'_> {
        // SAFETY: `place` is where `attach` found the channel in this object's payload, which
        // is mapped as long as `self` holds the object.
        unsafe { ChannelRef::at(self.object.payload().as_ptr(), self.place) }
    }
}

/// Raw bytes, Python's `Connection.send_bytes`/`recv_bytes`/`recv_bytes_into`: a record
/// holds the bytes as they are, without encoding. They share the ring with typed messages: a
/// message sent with [`send`](Channel::send) is received by [`recv_bytes`](Channel::recv_bytes)
/// as its postcard encoding, and bytes that are a valid encoding are received by
/// [`recv`](Channel::recv) as the message (anything else fails with `Deserialize`).
///
/// ```
/// let ch = multiproc::Channel::<String>::new(4096)?;
/// ch.send_bytes(b"raw frame").unwrap();
/// assert_eq!(ch.recv_bytes().unwrap(), b"raw frame");
///
/// ch.send_bytes(&[3, b'a', b'b', b'c']).unwrap(); // postcard: length, then UTF-8
/// assert_eq!(ch.recv().unwrap(), "abc");
///
/// ch.send_bytes(&[1, 2, 3, 4, 5]).unwrap();
/// let mut buf = [0u8; 4];
/// assert_eq!(
///     ch.recv_bytes_into(&mut buf),
///     Err(multiproc::queue::RecvError::BufferTooShort { needed: 5 })
/// );
/// let mut buf = [0u8; 16];
/// assert_eq!(ch.recv_bytes_into(&mut buf).unwrap(), 5);
/// assert_eq!(&buf[..5], &[1, 2, 3, 4, 5]);
/// # Ok::<(), multiproc::Error>(())
/// ```
impl<T> Channel<T> {
    /// Sends `bytes` as one message, waiting per `wait` while there is no room.
    pub(crate) fn send_bytes_wait(
        &self,
        bytes: &[u8],
        wait: Wait,
    ) -> std::result::Result<(), SendError<()>> {
        self.ring()
            .send_bytes_with(bytes, wait)
            .map_err(|h| send_error(h, (), wait))
    }

    /// Receives the next message's bytes, waiting per `wait` while there is none.
    pub(crate) fn recv_bytes_wait(&self, wait: Wait) -> std::result::Result<Vec<u8>, RecvError> {
        self.ring()
            .recv_bytes_with(wait)
            .map_err(|h| recv_error(h, wait))
    }

    /// Copies the next message's bytes into `buf`, waiting per `wait` while there is none.
    pub(crate) fn recv_bytes_into_wait(
        &self,
        buf: &mut [u8],
        wait: Wait,
    ) -> std::result::Result<usize, RecvError> {
        self.ring()
            .recv_bytes_into_with(buf, wait)
            .map_err(|h| recv_error(h, wait))
    }

    bytes_methods!("", "");
}

/// The byte-message methods of [`Channel`] and, through its channels `$tx` and `$rx`, of
/// [`Connection`](super::Connection) (whose docs say where the bytes go, `$to`, and come from,
/// `$from`): each of `send_bytes`, `recv_bytes` and `recv_bytes_into` in its four
/// [`wait_variants!`](super::ring::wait_variants), over the channel's `*_wait` method.
macro_rules! bytes_methods {
    ($to:literal, $from:literal $(, $tx:ident, $rx:ident)?) => {
        super::ring::wait_variants! {
            $($tx.)?send_bytes_wait(&self, bytes: &[u8])
                -> std::result::Result<(), SendError<()>>;
            #[doc = concat!("Sends `bytes`", $to, " as one message, as they are (Python's")]
            /// `send_bytes`), waiting while there is no room.
            ///
            /// # Errors
            /// `Closed(())`, `TooLarge` (longer than
            /// [`max_message_len`](Channel::max_message_len)), `Corrupted`.
            fn send_bytes;
            /// Sends `bytes` if there is room now, else `Full(())`.
            fn try_send_bytes;
            /// Like [`send_bytes`](Self::send_bytes), giving up with `Timeout(())` after `timeout`.
            fn send_bytes_timeout;
            /// Like [`send_bytes`](Self::send_bytes), giving up with `Timeout(())` at `deadline`.
            fn send_bytes_until;
        }

        super::ring::wait_variants! {
            $($rx.)?recv_bytes_wait(&self) -> std::result::Result<Vec<u8>, RecvError>;
            #[doc = concat!("Receives the next message's bytes", $from, " as they are (Python's")]
            /// `recv_bytes`), waiting while there is none: a message sent with
            /// [`send`](Self::send) comes as its postcard encoding.
            ///
            /// # Errors
            /// `Closed` (closed and drained), `Corrupted`.
            fn recv_bytes;
            /// Receives the next message's bytes if there is one now, else `Empty`.
            fn try_recv_bytes;
            /// Like [`recv_bytes`](Self::recv_bytes), giving up with `Timeout` after `timeout`.
            fn recv_bytes_timeout;
            /// Like [`recv_bytes`](Self::recv_bytes), giving up with `Timeout` at `deadline`.
            fn recv_bytes_until;
        }

        super::ring::wait_variants! {
            $($rx.)?recv_bytes_into_wait(&self, buf: &mut [u8])
                -> std::result::Result<usize, RecvError>;
            #[doc = concat!("Copies the next message's bytes", $from, " into the front of `buf`,")]
            /// waiting while there is none; returns their length (Python's `recv_bytes_into`). No
            /// allocation.
            ///
            /// # Errors
            /// `BufferTooShort { needed }` if the message is longer than `buf` (it stays queued);
            /// `Closed`, `Corrupted`.
            fn recv_bytes_into;
            /// Like [`recv_bytes_into`](Self::recv_bytes_into) if a message is ready now, else
            /// `Empty`.
            fn try_recv_bytes_into;
            /// Like [`recv_bytes_into`](Self::recv_bytes_into), giving up with `Timeout` after
            /// `timeout`.
            fn recv_bytes_into_timeout;
            /// Like [`recv_bytes_into`](Self::recv_bytes_into), giving up with `Timeout` at
            /// `deadline`.
            fn recv_bytes_into_until;
        }
    };
}
pub(crate) use bytes_methods;

impl<T: Serialize + DeserializeOwned> Channel<T> {
    fn spec() -> Spec {
        Spec::new::<T, ChannelHeader>(Kind::Channel)
    }

    fn attach(object: Object) -> Result<Self> {
        let base = object.payload().as_ptr();
        // SAFETY: the payload is `payload_len` initialised bytes aligned to 128 (the spec's
        // alignment: the payload offset is a multiple of it and the mapping is page-aligned),
        // mapped while we look; other processes may write it, which the ring tolerates.
        let place =
            unsafe { RawChannel::attach(base, object.payload_len()) }.map_err(Error::Corrupted)?;
        Ok(Self {
            place,
            object,
            _type: PhantomData,
        })
    }

    /// A new channel of `capacity` bytes: anonymous, or under `name` (opened instead if it
    /// exists and `open_existing`).
    pub(crate) fn make(
        name: Option<&str>,
        open_existing: bool,
        capacity: usize,
        opts: &ShmOptions,
    ) -> Result<Self> {
        let cap = RawChannel::ring_capacity(capacity).ok_or(Error::InvalidSize {
            reason: "channel capacity too large",
        })?;
        let len = RawChannel::bytes_for(cap).ok_or(Error::InvalidSize {
            reason: "channel capacity too large",
        })?;
        let mut failed = None;
        let init = |p: std::ptr::NonNull<u8>| {
            // SAFETY: `Object` hands us `len` zeroed bytes aligned for the spec (128), not yet
            // visible to anyone else.
            if let Err(e) = unsafe { RawChannel::init(p.as_ptr(), cap) } {
                failed = Some(e);
            }
        };
        let spec = Self::spec();
        let object = Object::make(name, open_existing, &spec, len, opts, init)?;
        if let Some(e) = failed {
            // `init` refuses only parameters it cannot lay out.
            return Err(Error::InvalidSize { reason: e });
        }
        Self::attach(object)
    }

    crate::shm::object::shared_constructors! {
        Channel(capacity_bytes: usize);
        /// A new anonymous channel of `capacity_bytes` (rounded up to a multiple of 8, at least
        /// 16), shared with the children it is passed to.
        ///
        /// # Errors
        /// [`Error::InvalidSize`] for a capacity above 1 TiB; OS errors.
        with:
        ///
        /// ```
        /// use multiproc::{Channel, shm::ShmOptions};
        /// let ch = Channel::<String>::new_with(1 << 20, &ShmOptions::new().populate(true))?;
        /// ch.send("pre-faulted".to_string()).unwrap();
        /// assert_eq!(ch.recv().unwrap(), "pre-faulted");
        /// # Ok::<(), multiproc::Error>(())
        /// ```
        fn new, new_with;
        /// A new channel under `name`.
        ///
        /// # Errors
        /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::InvalidSize`], OS errors.
        fn create;
        /// Opens the channel another process created under `name`.
        ///
        /// # Errors
        /// [`Error::NotFound`], [`Error::TypeMismatch`] (a channel of another message type, or
        /// another object), [`Error::Corrupted`].
        fn open(name, opts) => Self::attach(Object::open(name, &Self::spec(), opts)?);
        /// Opens `name`, or creates it with `capacity_bytes` (race-safe); an existing channel
        /// keeps its own capacity.
        fn open_or_create;
    }

    /// Sends `msg`, waiting per `wait` while there is no room.
    pub(crate) fn send_wait(&self, msg: T, wait: Wait) -> std::result::Result<(), SendError<T>> {
        self.ring()
            .send_with(&msg, wait)
            .map_err(|h| send_error(h, msg, wait))
    }

    super::ring::wait_variants! {
        send_wait(&self, msg: T) -> std::result::Result<(), SendError<T>>;
        /// Sends `msg`, waiting while there is no room.
        ///
        /// # Errors
        /// `Closed(msg)`, `TooLarge`, `Serialize`, `Corrupted`.
        fn send;
        /// Sends `msg` if there is room now, else `Full(msg)`.
        fn try_send;
        /// Like [`send`](Channel::send), giving up with `Timeout(msg)` after `timeout`.
        fn send_timeout;
        /// Like [`send`](Channel::send), giving up with `Timeout(msg)` at `deadline`.
        fn send_until;
    }

    /// Receives the oldest message, waiting per `wait` while there is none.
    pub(crate) fn recv_wait(&self, wait: Wait) -> std::result::Result<T, RecvError> {
        self.ring().recv_with(wait).map_err(|h| recv_error(h, wait))
    }

    super::ring::wait_variants! {
        recv_wait(&self) -> std::result::Result<T, RecvError>;
        /// Receives the oldest message, waiting while there is none.
        ///
        /// # Errors
        /// `Closed` (closed and drained), `Deserialize` (a garbage record, skipped), `Corrupted`.
        fn recv;
        /// Receives the oldest message if there is one now, else `Empty`.
        fn try_recv;
        /// Like [`recv`](Channel::recv), giving up with `Timeout` after `timeout`.
        fn recv_timeout;
        /// Like [`recv`](Channel::recv), giving up with `Timeout` at `deadline`.
        fn recv_until;
    }

    /// Waits at most `timeout` until a receive would not block (a message is ready, or the
    /// channel is closed and drained, or corrupted); returns whether it would not.
    pub fn poll(&self, timeout: Duration) -> bool {
        let wait = if timeout.is_zero() {
            Wait::No
        } else {
            Wait::Until(Some(Deadline::after(timeout)))
        };
        self.ring().ready(wait).unwrap_or(true)
    }

    /// Waits until `deadline` at the latest until a receive would not block; returns whether
    /// it would not.
    pub fn poll_until(&self, deadline: Instant) -> bool {
        let wait = Wait::Until(Some(Deadline::at(deadline)));
        self.ring().ready(wait).unwrap_or(true)
    }

    /// Closes the channel for everyone and wakes every blocked caller.
    pub fn close(&self) {
        self.ring().close()
    }

    /// Whether the channel was closed.
    pub fn is_closed(&self) -> bool {
        self.ring().is_closed()
    }

    /// Number of messages (approximate while others send and receive, as in Python).
    pub fn len(&self) -> usize {
        self.ring().len()
    }

    /// Whether the channel looks empty.
    pub fn is_empty(&self) -> bool {
        self.ring().is_empty()
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.ring().capacity()
    }

    /// The largest encoded message the channel takes (capacity minus 8).
    pub fn max_message_len(&self) -> usize {
        self.ring().max_message()
    }

    /// The name, or `None` for an anonymous channel.
    pub fn name(&self) -> Option<&str> {
        self.object.segment().name()
    }

    /// Keeps the name after the creator's handles drop.
    pub fn persist(&self) {
        self.object.persist()
    }
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Self {
            object: self.object.clone(),
            place: self.place,
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("type", &std::any::type_name::<T>())
            .field("capacity", &self.ring().capacity())
            .field("name", &self.object.segment().name())
            .finish()
    }
}

impl<T> Serialize for Channel<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.object.segment().serialize(s)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Channel<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let segment = crate::Segment::deserialize(d)?;
        Object::from_segment(segment, &Self::spec(), &ShmOptions::default())
            .and_then(Self::attach)
            .map_err(serde::de::Error::custom)
    }
}
