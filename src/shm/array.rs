//! `Array<T>`: a fixed-length `[T]` of `Pod` elements behind one process-shared lock, Python's
//! `multiprocessing.Array`.

use super::header::{Kind, Spec};
use super::object::Object;
use super::segment::ShmOptions;
use crate::error::{Error, Result};
use crate::sync::{LockError, LockResult, Mutex, MutexGuard};
use bytemuck::Pod;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// A fixed-length array of `T` in shared memory, guarded by one robust process-shared lock.
///
/// ```
/// let a = multiproc::Array::<i32>::from_slice(&[1, 2, 3])?;
/// for x in a.lock().unwrap().iter_mut() {
///     *x = -*x;
/// }
/// assert_eq!(a.to_vec().unwrap(), [-1, -2, -3]);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Between processes: pass a clone to the child.
///
/// ```rust,standalone_crate
/// use multiproc::{Array, Process};
///
/// fn negate(a: Array<i32>) {
///     for x in a.lock().unwrap().iter_mut() {
///         *x = -*x;
///     }
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let a = Array::<i32>::from_slice(&[1, 2, 3])?;
///     Process::spawn(negate, a.clone())?.join()?;
///     assert_eq!(a.to_vec().unwrap(), [-1, -2, -3]);
///     Ok(())
/// }
/// ```
pub struct Array<T: Pod + Send> {
    object: Object,
    len: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod + Send> Array<T> {
    pub(crate) fn spec() -> Spec {
        Spec::new::<T, T>(Kind::Array)
    }

    /// Where the elements start within the payload: after the lock, aligned for `T`.
    fn data_offset() -> usize {
        size_of::<Mutex<()>>().next_multiple_of(align_of::<T>())
    }

    fn payload_len(len: usize) -> Result<usize> {
        super::object::check_count(size_of::<T>(), len, "zero elements")?;
        len.checked_mul(size_of::<T>())
            .and_then(|bytes| bytes.checked_add(Self::data_offset()))
            .ok_or(Error::InvalidSize {
                reason: "length overflows",
            })
    }

    fn init(src: Option<&[T]>) -> impl FnOnce(NonNull<u8>) + '_ {
        move |p| {
            // SAFETY: `Object::create` hands us zeroed, writable bytes aligned for the payload
            // (at least `align_of::<T>()` and the 256-byte header alignment) and
            // `payload_len(len)` long: the lock, then room for `len` elements.
            unsafe {
                p.cast::<Mutex<()>>().write(Mutex::new(()));
                if let Some(src) = src {
                    let data = p.add(Self::data_offset()).cast::<T>();
                    std::ptr::copy_nonoverlapping(src.as_ptr(), data.as_ptr(), src.len());
                }
            }
        }
    }

    pub(crate) fn from_object(object: Object) -> Result<Self> {
        let data_bytes = object
            .payload_len()
            .checked_sub(Self::data_offset())
            .ok_or(Error::Corrupted("Array payload is shorter than its lock"))?;
        if data_bytes == 0 || data_bytes % size_of::<T>().max(1) != 0 {
            return Err(Error::Corrupted(
                "Array payload is not a whole number of elements",
            ));
        }
        Ok(Self {
            object,
            len: data_bytes / size_of::<T>(),
            _type: PhantomData,
        })
    }

    /// A new array of `len` elements, a copy of `src` or zeroed: anonymous, or under `name`
    /// (opened instead if it exists and `open_existing`).
    fn make_sized(
        name: Option<&str>,
        open_existing: bool,
        len: usize,
        src: Option<&[T]>,
        opts: &ShmOptions,
    ) -> Result<Self> {
        let (spec, payload_len) = (Self::spec(), Self::payload_len(len)?);
        let object = Object::make(
            name,
            open_existing,
            &spec,
            payload_len,
            opts,
            Self::init(src),
        )?;
        Self::from_object(object)
    }

    /// [`make_sized`](Self::make_sized) for a copy of `values`.
    fn make(
        name: Option<&str>,
        open_existing: bool,
        values: &[T],
        opts: &ShmOptions,
    ) -> Result<Self> {
        Self::make_sized(name, open_existing, values.len(), Some(values), opts)
    }

    /// A new anonymous array of `len` zeroed elements.
    pub fn zeroed(len: usize) -> Result<Self> {
        Self::make_sized(None, false, len, None, &ShmOptions::default())
    }

    /// [`Array::zeroed`] with options, e.g. pre-faulting a big array.
    pub fn zeroed_with(len: usize, opts: &ShmOptions) -> Result<Self> {
        Self::make_sized(None, false, len, None, opts)
    }

    /// A new named array of `len` zeroed elements, with options.
    pub fn create_zeroed_with(name: &str, len: usize, opts: &ShmOptions) -> Result<Self> {
        Self::make_sized(Some(name), false, len, None, opts)
    }

    super::object::shared_constructors! {
        Array(values: &[T]);
        /// A new anonymous array holding a copy of `values`.
        fn from_slice, from_slice_with;
        /// A new named array holding a copy of `values`.
        ///
        /// # Errors
        /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::InvalidSize`] for an empty
        /// slice.
        fn create;
        /// Opens the array another process created under `name`; its length is the creator's.
        ///
        /// # Errors
        /// [`Error::NotFound`], [`Error::TypeMismatch`], [`Error::Corrupted`],
        /// [`Error::PermissionDenied`].
        fn open(name, opts) => Self::from_object(Object::open(name, &Self::spec(), opts)?);
        /// Opens `name`, or creates it holding a copy of `values` (race-safe). An existing array
        /// keeps its own length and contents.
        fn open_or_create;
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: arrays have at least one element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mutex(&self) -> &Mutex<()> {
        // SAFETY: the payload starts with a `Mutex<()>` (aligned: the payload is aligned to at least
        // 256 bytes or `align_of::<T>()`, both multiples of its alignment) and is longer than it
        // (checked in `from_object`); the mutex is atomics, valid for any bit pattern.
        unsafe { self.object.payload().cast::<Mutex<()>>().as_ref() }
    }

    fn guard<'a>(&'a self, lock: MutexGuard<'a, ()>) -> ArrayGuard<'a, T> {
        // SAFETY: `data_offset + len * size_of::<T>()` equals the validated payload length, so the
        // offset stays inside the mapping.
        let data = unsafe { self.object.payload().add(Self::data_offset()).cast::<T>() };
        ArrayGuard {
            lock,
            data,
            len: self.len,
            _type: PhantomData,
        }
    }

    /// Locks the array and gives access to its elements as a slice. See [`Mutex::lock`] for what
    /// happens when a holder died.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.wrap(self.mutex().lock())
    }

    /// Like [`lock`](Array::lock), but fails with [`LockError::WouldBlock`] instead of waiting.
    pub fn try_lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.wrap(self.mutex().try_lock())
    }

    /// Like [`lock`](Array::lock), but gives up with [`LockError::Timeout`] after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ArrayGuard<'_, T>> {
        self.wrap(self.mutex().lock_timeout(timeout))
    }

    /// Like [`lock`](Array::lock), but gives up with [`LockError::Timeout`] at `deadline`.
    pub fn lock_until(&self, deadline: Instant) -> LockResult<ArrayGuard<'_, T>> {
        self.wrap(self.mutex().lock_until(deadline))
    }

    fn wrap<'a>(&'a self, res: LockResult<MutexGuard<'a, ()>>) -> LockResult<ArrayGuard<'a, T>> {
        match res {
            Ok(g) => Ok(self.guard(g)),
            Err(e) => Err(e.map(|g| self.guard(g))),
        }
    }

    /// A copy of the elements, read under the lock (not on [`LockError::OwnerDied`], whose guard
    /// is handed over for repair).
    pub fn to_vec(&self) -> Result<Vec<T>, LockError<ArrayGuard<'_, T>>> {
        self.lock().map(|g| g.to_vec())
    }

    /// Overwrites every element with `src` under the lock (Python's `arr[:] = src`).
    ///
    /// If the lock's previous holder died holding it, this still succeeds: every element is
    /// written, so nothing half-updated remains, and the lock is made consistent.
    ///
    /// # Errors
    /// [`Error::InvalidSize`](crate::Error::InvalidSize) if `src.len() != self.len()` (nothing
    /// is written); [`Error::NotRecoverable`](crate::Error::NotRecoverable),
    /// [`Error::Timeout`](crate::Error::Timeout) as for [`lock`](Array::lock).
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        if src.len() != self.len {
            return Err(Error::InvalidSize {
                reason: "Array::copy_from_slice: the source length differs from the array's",
            });
        }
        match self.lock() {
            Ok(mut guard) => guard.copy_from_slice(src),
            Err(LockError::OwnerDied(mut guard)) => {
                guard.copy_from_slice(src);
                guard.make_consistent();
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// The segment underneath (read by the fuzz entry points).
    pub(crate) fn segment(&self) -> &super::Segment {
        self.object.segment()
    }

    super::object::name_and_persist!(object, "array");
}

/// The locked elements of an [`Array`]; derefs to `[T]`. Unlocks when dropped.
pub struct ArrayGuard<'a, T: Pod + Send> {
    lock: MutexGuard<'a, ()>,
    data: NonNull<T>,
    len: usize,
    _type: PhantomData<&'a mut [T]>,
}

impl<T: Pod + Send> ArrayGuard<'_, T> {
    /// After [`LockError::OwnerDied`]: declares the elements repaired, so the lock works
    /// normally again (see [`MutexGuard::make_consistent`]).
    pub fn make_consistent(&mut self) {
        self.lock.make_consistent();
    }
}

impl<T: Pod + Send> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lock is held for the guard's lifetime, so by the lock protocol no other
        // process or thread accesses the elements; `data` is aligned and valid for `len` elements
        // of a `Pod` type, for which any bit pattern a peer left is a valid value.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }
}

impl<T: Pod + Send> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through this guard.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
    }
}

impl<T: Pod + Send> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            object: self.object.clone(),
            len: self.len,
            _type: PhantomData,
        }
    }
}

impl<T: Pod + Send> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .field("name", &self.name())
            .finish()
    }
}

super::object::object_serde!(Array, Pod + Send);
