//! `Shared<T>`: any [`ShmSafe`] value in its own segment: an in-place primitive (a semaphore, a
//! barrier, ...) or a user's own `#[repr(C)]` struct of atomics and primitives.

use super::ShmSafe;
use super::header::{Kind, Spec};
use super::object::Object;
use super::segment::ShmOptions;
use crate::error::{Error, Result};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

/// A `T` in shared memory; derefs to `&T`. Clones share it; children receive it as a spawn
/// argument.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// let hits = multiproc::Shared::new(AtomicU64::new(0))?;
/// hits.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(hits.load(Ordering::Relaxed), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Shared<T: ShmSafe> {
    object: Object,
    _type: PhantomData<fn() -> T>,
}

impl<T: ShmSafe> Shared<T> {
    pub(crate) fn spec() -> Spec {
        Spec::new::<T, T>(Kind::Shared)
    }

    fn init(value: T) -> impl FnOnce(NonNull<u8>) {
        // SAFETY: `Object::create` hands us zeroed, writable bytes aligned for `T` and
        // `size_of::<T>()` long. `T: ShmSafe` has no meaningful Drop, so never dropping it is fine.
        move |p| unsafe { p.cast::<T>().write(value) }
    }

    fn payload_len() -> Result<usize> {
        match size_of::<T>() {
            0 => Err(Error::InvalidSize {
                reason: "zero-sized type",
            }),
            n => Ok(n),
        }
    }

    pub(crate) fn from_object(object: Object) -> Result<Self> {
        if object.payload_len() != size_of::<T>() {
            return Err(Error::Corrupted("Shared payload has the wrong length"));
        }
        Ok(Self {
            object,
            _type: PhantomData,
        })
    }

    /// Moves `value` into a new segment: anonymous, or under `name` (opened instead if it exists
    /// and `open_existing`).
    fn make(name: Option<&str>, open_existing: bool, value: T, opts: &ShmOptions) -> Result<Self> {
        let (spec, len) = (Self::spec(), Self::payload_len()?);
        let object = Object::make(name, open_existing, &spec, len, opts, Self::init(value))?;
        Self::from_object(object)
    }

    super::object::shared_constructors! {
        Shared(value: T);
        /// Moves `value` into a new anonymous segment.
        with:
        ///
        /// ```
        /// use multiproc::{Shared, shm::ShmOptions, sync::Semaphore};
        /// let permits = Shared::new_with(Semaphore::new(2), &ShmOptions::new().populate(true))?;
        /// assert!(permits.try_acquire().is_ok());
        /// # Ok::<(), multiproc::Error>(())
        /// ```
        fn new, new_with;
        /// Moves `value` into a new segment named `name`.
        ///
        /// # Errors
        /// [`Error::AlreadyExists`], [`Error::InvalidName`], or an OS error.
        fn create;
        /// Opens the `T` another process created under `name`.
        ///
        /// # Errors
        /// [`Error::NotFound`], [`Error::TypeMismatch`], [`Error::Corrupted`],
        /// [`Error::PermissionDenied`].
        fn open(name, opts) => Self::from_object(Object::open(name, &Self::spec(), opts)?);
        /// Opens `name`, or creates it holding `value` (race-safe). When it already existed,
        /// `value` is dropped.
        fn open_or_create;
    }

    super::object::name_and_persist!(object, "object");
}

impl<T: ShmSafe> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the payload is aligned for `T` and exactly `size_of::<T>()` long (checked in
        // `from_object`), stays mapped while `self` lives, and `T: ShmSafe` is valid for every bit
        // pattern and only shared through atomics or its own locks.
        unsafe { self.object.payload().cast::<T>().as_ref() }
    }
}

impl<T: ShmSafe> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            object: self.object.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: ShmSafe> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("type", &std::any::type_name::<T>())
            .field("name", &self.name())
            .finish()
    }
}

super::object::object_serde!(Shared, ShmSafe);
