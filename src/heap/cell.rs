//! `Cell<T>`: one serde value in a heap, Python's `Manager().Namespace()` or a shared struct.
//!
//! The value is an immutable entry; `set` writes a new entry and publishes it with one store of
//! the root's entry word (the commit point), then frees the old one. A holder killed anywhere
//! leaves the old or the new value in place (and leaks at most one entry).

use super::entry::{self, ROOT};
use super::{Heap, Named};
use crate::error::{Error, Result};
use crate::shm::{ShmOptions, ShmSafe};
use crate::sync::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering, compiler_fence};

#[repr(C)]
#[doc(hidden)]
pub struct CellRoot<T> {
    lock: Mutex<()>,
    entry: AtomicU64,
    _type: PhantomData<fn() -> T>,
}

// SAFETY: `#[repr(C)]` of a robust mutex and an atomic (valid for every bit pattern; the entry
// offset is bounds-checked before use), no pointers, no Drop; `T` only names the type.
unsafe impl<T> ShmSafe for CellRoot<T> {}

/// A shared serde value in a [`Heap`]: Python's `Manager().Namespace()` for one struct.
///
/// ```
/// let c = multiproc::heap::Cell::new(vec![1u32, 2])?;
/// c.update(|v| v.push(3))?;
/// assert_eq!(c.get()?, vec![1, 2, 3]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Cell<T> {
    root: Named<CellRoot<T>>,
    name: String,
}

impl<T: Serialize + DeserializeOwned> Cell<T> {
    /// A new anonymous cell (in a heap of its own), shared with the children it is passed to.
    pub fn new(value: T) -> Result<Self> {
        Self::new_with(value, &ShmOptions::default())
    }

    /// [`Cell::new`] with options, applied to its heap's segment.
    pub fn new_with(value: T, opts: &ShmOptions) -> Result<Self> {
        Self::in_heap(&entry::own_heap(None, opts)?, ROOT, value)
    }

    /// A new cell under `name` (a heap of its own in `/dev/shm`).
    pub fn create(name: &str, value: T) -> Result<Self> {
        Self::create_with(name, value, &ShmOptions::default())
    }

    /// [`Cell::create`] with options, applied to its heap's segment.
    pub fn create_with(name: &str, value: T, opts: &ShmOptions) -> Result<Self> {
        Self::in_heap(&entry::own_heap(Some(name), opts)?, ROOT, value)
    }

    /// Opens the cell another process created under `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::TypeMismatch`] if it holds another type, as [`Heap::open`].
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &ShmOptions::default())
    }

    /// [`Cell::open`] with options, applied to its heap's segment.
    ///
    /// # Errors
    /// As [`Cell::open`].
    pub fn open_with(name: &str, opts: &ShmOptions) -> Result<Self> {
        let heap = Heap::open_with(name, opts)?;
        Ok(Cell {
            root: heap.find(ROOT)?,
            name: ROOT.to_owned(),
        })
    }

    /// Opens `name`, or creates it holding `value` (race-safe).
    pub fn open_or_create(name: &str, value: T) -> Result<Self> {
        Self::open_or_create_with(name, value, &ShmOptions::default())
    }

    /// [`Cell::open_or_create`] with options (used for both the open and the create).
    pub fn open_or_create_with(name: &str, value: T, opts: &ShmOptions) -> Result<Self> {
        Self::in_heap(
            &Heap::open_or_create_with(name, super::DEFAULT_MAX, opts)?,
            ROOT,
            value,
        )
    }

    /// The cell named `name` in `heap`, created holding `value` if it does not exist.
    pub fn in_heap(heap: &Heap, name: &str, value: T) -> Result<Self> {
        let first = entry::write(heap, &[&entry::encode(&value)?])?;
        let mut used = false;
        let root = heap.find_or_construct(name, || {
            used = true;
            CellRoot {
                lock: Mutex::new(()),
                entry: AtomicU64::new(first),
                _type: PhantomData,
            }
        });
        if !used {
            entry::free(heap, first)?;
        }
        Ok(Cell {
            root: root?,
            name: name.to_owned(),
        })
    }

    /// The heap it lives in.
    pub fn heap(&self) -> &Heap {
        self.root.heap()
    }

    /// A copy of the value.
    pub fn get(&self) -> Result<T> {
        let _g = entry::lock(&self.root.lock, || Ok(()))?;
        self.read()
    }

    fn read(&self) -> Result<T> {
        let e = self.root.entry.load(Ordering::Relaxed);
        if e == 0 {
            return Err(Error::Corrupted("cell holds no value"));
        }
        entry::decode(&entry::read(self.heap(), e)?)
    }

    fn write(&self, value: &T) -> Result<()> {
        let new = entry::write(self.heap(), &[&entry::encode(value)?])?;
        let old = self.root.entry.load(Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        crate::crash::point("heap.cell.before_commit");
        self.root.entry.store(new, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        crate::crash::point("heap.cell.after_commit");
        entry::free(self.heap(), old)
    }

    /// Replaces the value.
    pub fn set(&self, value: T) -> Result<()> {
        let _g = entry::lock(&self.root.lock, || Ok(()))?;
        self.write(&value)
    }

    /// Changes the value in place, atomically with respect to every other process's `get`,
    /// `set` and `update`; returns what `f` returns. `f` runs under the cell's lock: it must not
    /// use this cell.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let _g = entry::lock(&self.root.lock, || Ok(()))?;
        let mut v = self.read()?;
        let r = f(&mut v);
        self.write(&v)?;
        Ok(r)
    }
}

container_handle!(Cell<T>);
