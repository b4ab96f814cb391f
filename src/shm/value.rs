//! `Value<T>`: one `Pod` value behind a process-shared lock, Python's `multiprocessing.Value`.

use super::header::{Kind, Spec};
use super::object::Object;
use super::segment::ShmOptions;
use crate::error::{Error, Result};
use crate::sync::{LockError, LockResult, Mutex, MutexGuard};
use bytemuck::Pod;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// A value of type `T` in shared memory, guarded by a robust process-shared [`Mutex`].
///
/// Clones share the value; pass a clone to a child in [`Process::spawn`](crate::Process::spawn)
/// arguments and the child sees the same memory. `T: Pod` means every bit pattern is a valid `T`,
/// so no peer can make this process hold an invalid value.
///
/// ```
/// let num = multiproc::Value::new(0.0f64)?;
/// num.set(3.1415927).unwrap();
/// assert_eq!(num.get().unwrap(), 3.1415927);
/// *num.lock().unwrap() += 1.0;
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Between processes: pass a clone to each child.
///
/// ```rust,standalone_crate
/// use multiproc::{Process, Value};
///
/// fn add_one(counter: Value<u64>) {
///     *counter.lock().unwrap() += 1;
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let counter = Value::new(0u64)?;
///     let children = (0..3)
///         .map(|_| Process::spawn(add_one, counter.clone()))
///         .collect::<Result<Vec<_>, _>>()?;
///     for child in children {
///         child.join()?;
///     }
///     assert_eq!(counter.get().unwrap(), 3);
///     Ok(())
/// }
/// ```
pub struct Value<T: Pod + Send> {
    object: Object,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod + Send> Value<T> {
    pub(crate) fn spec() -> Spec {
        Spec::new::<T, Mutex<T>>(Kind::Value)
    }

    fn init(value: T) -> impl FnOnce(NonNull<u8>) {
        // SAFETY: `Object::create` hands us zeroed, writable bytes aligned for the spec's unit,
        // `Mutex<T>`, and at least `size_of::<Mutex<T>>()` long.
        move |p| unsafe { p.cast::<Mutex<T>>().write(Mutex::new(value)) }
    }

    pub(crate) fn from_object(object: Object) -> Result<Self> {
        if object.payload_len() != std::mem::size_of::<Mutex<T>>() {
            return Err(Error::Corrupted("Value payload has the wrong length"));
        }
        Ok(Self {
            object,
            _type: PhantomData,
        })
    }

    /// A new value holding `value`: anonymous, or under `name` (opened instead if it exists and
    /// `open_existing`).
    fn make(name: Option<&str>, open_existing: bool, value: T, opts: &ShmOptions) -> Result<Self> {
        let (spec, len) = (Self::spec(), size_of::<Mutex<T>>());
        let object = Object::make(name, open_existing, &spec, len, opts, Self::init(value))?;
        Self::from_object(object)
    }

    super::object::shared_constructors! {
        Value(value: T);
        /// A new anonymous value, shared with the children it is passed to.
        fn new, new_with;
        /// A new value under `name`, visible to every process of this user until this handle (and
        /// its clones) drop, unless [`persist`](Value::persist)ed.
        ///
        /// # Errors
        /// [`Error::AlreadyExists`], [`Error::InvalidName`], or an OS error.
        fn create;
        /// Opens the value another process created under `name`.
        ///
        /// # Errors
        /// [`Error::NotFound`], [`Error::TypeMismatch`] if it holds another type,
        /// [`Error::Corrupted`] if the segment is truncated or garbage, [`Error::PermissionDenied`].
        with:
        /// For example [`ShmOptions::allow_foreign`] for a value another user created.
        ///
        /// ```
        /// use multiproc::{Value, shm::ShmOptions};
        /// # let name = format!("mp-doc-value-open-with-{}", std::process::id());
        /// let created = Value::create(&name, 7u64)?;
        /// let opts = ShmOptions::new().init_timeout(std::time::Duration::from_secs(5));
        /// let opened = Value::<u64>::open_with(&name, &opts)?;
        /// assert_eq!(opened.get().unwrap(), 7);
        /// # Ok::<(), multiproc::Error>(())
        /// ```
        fn open(name, opts) => Self::from_object(Object::open(name, &Self::spec(), opts)?);
        /// Opens `name`, or creates it holding `value` if it does not exist (race-safe).
        fn open_or_create;
    }

    /// The lock around the value.
    pub fn mutex(&self) -> &Mutex<T> {
        // SAFETY: the payload is aligned for `Mutex<T>` and exactly its size (checked in
        // `from_object`); `Mutex<T>` over `T: Pod` is valid for every bit pattern and designed for
        // concurrent access from several processes; the mapping lives as long as `self`.
        unsafe { self.object.payload().cast::<Mutex<T>>().as_ref() }
    }

    /// Locks the value. See [`Mutex::lock`] for what happens when a holder died.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.mutex().lock()
    }

    /// Like [`lock`](Value::lock), but fails with [`LockError::WouldBlock`] instead of waiting.
    pub fn try_lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.mutex().try_lock()
    }

    /// Like [`lock`](Value::lock), but gives up with [`LockError::Timeout`] after `timeout`.
    pub fn lock_timeout(&self, timeout: std::time::Duration) -> LockResult<MutexGuard<'_, T>> {
        self.mutex().lock_timeout(timeout)
    }

    /// Like [`lock`](Value::lock), but gives up with [`LockError::Timeout`] at `deadline`.
    pub fn lock_until(&self, deadline: std::time::Instant) -> LockResult<MutexGuard<'_, T>> {
        self.mutex().lock_until(deadline)
    }

    /// A copy of the value, read under the lock.
    ///
    /// # Errors
    /// The lock's errors; on [`LockError::OwnerDied`] the value is not read and the guard is
    /// handed over so the caller can repair it and call `make_consistent`.
    pub fn get(&self) -> Result<T, LockError<MutexGuard<'_, T>>> {
        self.lock().map(|guard| *guard)
    }

    /// Replaces the value under the lock (not on [`LockError::OwnerDied`]; see [`Value::get`]).
    pub fn set(&self, value: T) -> Result<(), LockError<MutexGuard<'_, T>>> {
        self.lock().map(|mut guard| *guard = value)
    }

    /// The segment underneath (read by the fuzz entry points).
    pub(crate) fn segment(&self) -> &super::Segment {
        self.object.segment()
    }

    super::object::name_and_persist!(object, "value");
}

impl<T: Pod + Send> Clone for Value<T> {
    fn clone(&self) -> Self {
        Self {
            object: self.object.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Pod + Send> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .field("name", &self.name())
            .finish()
    }
}

super::object::object_serde!(Value, Pod + Send);
