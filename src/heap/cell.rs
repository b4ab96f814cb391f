//! `Cell<T>`: one serde value in a heap, Python's `Manager().Namespace()` or a shared struct.
//!
//! The value is an immutable entry; `set` writes a new entry and publishes it with one store of
//! the root's entry word (the commit point), then frees the old one. A holder killed anywhere
//! leaves the old or the new value in place (and leaks at most one entry).

use super::entry;
use super::{Heap, Named};
use crate::error::{Error, Result};
use crate::shm::ShmSafe;
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
    container_constructors!(
        Cell,
        "cell",
        "",
        "holding `value`",
        "it holds another type, as [`Heap::open`](crate::heap::Heap::open)",
        value: T
    );

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
