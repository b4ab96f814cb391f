//! `List<T>`: a growable list of serde values in a heap, Python's `Manager().list()`.
//!
//! The root holds the offset of an *array block* `[len, cap, entry offsets...]`; each element is
//! an immutable entry. Every change has one commit point: `push` fills the slot past the end and
//! then stores the new `len`; `pop` stores the shorter `len`; `set` stores the new entry's offset;
//! `insert`, `remove` and growth build a new array and store its offset in the root. A holder
//! killed anywhere leaves the list as before or after the operation, never between; at most the
//! entry or array it was about to publish or free leaks.

use super::alloc::{self, BLOCK_HEADER, State};
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
pub struct ListRoot<T> {
    lock: Mutex<()>,
    array: AtomicU64,
    _type: PhantomData<fn() -> T>,
}

// SAFETY: `#[repr(C)]` of a robust mutex and an atomic (valid for every bit pattern; the array
// offset and everything in the array is bounds-checked before use), no pointers, no Drop.
unsafe impl<T> ShmSafe for ListRoot<T> {}

/// A shared list of serde values in a [`Heap`]: Python's `Manager().list()`.
///
/// ```
/// let l = multiproc::heap::List::new()?;
/// l.extend(0..5)?;
/// l.push(5)?;
/// assert_eq!(l.pop()?, Some(5));
/// l.set(0, 10)?;
/// assert_eq!(l.to_vec()?, vec![10, 1, 2, 3, 4]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct List<T> {
    root: Named<ListRoot<T>>,
    name: String,
}

/// A locked view of the array.
struct Array<'a> {
    heap: &'a Heap,
    block: u64,
    len: u64,
    cap: u64,
}

impl Array<'_> {
    fn slot(&self, i: u64) -> u64 {
        self.block + BLOCK_HEADER + 16 + 8 * i
    }

    fn get(&self, i: u64) -> Result<u64> {
        self.heap.arena().load(self.slot(i))
    }
}

impl<T: Serialize + DeserializeOwned> List<T> {
    container_constructors!(
        List,
        "list",
        "empty ",
        "empty",
        "it holds another element type"
    );

    /// The list named `name` in `heap`, created empty if it does not exist.
    pub fn in_heap(heap: &Heap, name: &str) -> Result<Self> {
        let root = heap.find_or_construct(name, || ListRoot {
            lock: Mutex::new(()),
            array: AtomicU64::new(0),
            _type: PhantomData,
        })?;
        Ok(List {
            root,
            name: name.to_owned(),
        })
    }

    /// The heap it lives in.
    pub fn heap(&self) -> &Heap {
        self.root.heap()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Array<'_>) -> Result<R>) -> Result<R> {
        let _g = entry::lock(&self.root.lock, || Ok(()))?;
        let heap = self.heap();
        let a = heap.arena();
        let block = self.root.array.load(Ordering::Relaxed);
        let mut arr = if block == 0 {
            Array {
                heap,
                block: 0,
                len: 0,
                cap: 0,
            }
        } else {
            let info = alloc::block(a, block)?;
            let (len, cap) = (
                a.load(block + BLOCK_HEADER)?,
                a.load(block + BLOCK_HEADER + 8)?,
            );
            if info.state != State::Alloc
                || len > cap
                || cap.saturating_mul(8).saturating_add(16) > info.capacity()
            {
                return Err(Error::Corrupted("list array is not a valid block"));
            }
            Array {
                heap,
                block,
                len,
                cap,
            }
        };
        f(&mut arr)
    }

    /// Builds a new array holding `slots` (with room to grow), publishes it in the root, and
    /// frees the old array.
    fn replace(&self, arr: &mut Array<'_>, slots: &[u64]) -> Result<()> {
        let heap = self.heap();
        let a = heap.arena();
        let cap = (slots.len() as u64).max(4).next_power_of_two();
        let block = heap.alloc_block(16 + 8 * cap, State::Alloc)?;
        let p = block + BLOCK_HEADER;
        a.store(p, slots.len() as u64)?;
        a.store(p + 8, cap)?;
        for (i, &s) in slots.iter().enumerate() {
            a.store(p + 16 + 8 * i as u64, s)?;
        }
        compiler_fence(Ordering::SeqCst);
        crate::crash::point("heap.list.before_commit");
        self.root.array.store(block, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let old = arr.block;
        *arr = Array {
            heap: arr.heap,
            block,
            len: slots.len() as u64,
            cap,
        };
        if old != 0 {
            heap.free_block(old, &[State::Alloc])?;
        }
        Ok(())
    }

    fn slots(arr: &Array<'_>) -> Result<Vec<u64>> {
        (0..arr.len).map(|i| arr.get(i)).collect()
    }

    fn push_entry(&self, arr: &mut Array<'_>, e: u64) -> Result<()> {
        if arr.len == arr.cap {
            let mut slots = Self::slots(arr)?;
            slots.push(e);
            return self.replace(arr, &slots);
        }
        let a = self.heap().arena();
        a.store(arr.slot(arr.len), e)?;
        compiler_fence(Ordering::SeqCst);
        crate::crash::point("heap.list.before_commit");
        a.store(arr.block + BLOCK_HEADER, arr.len + 1)?; // the commit point
        arr.len += 1;
        Ok(())
    }

    /// Appends `value`.
    pub fn push(&self, value: T) -> Result<()> {
        let e = entry::write(self.heap(), &[&entry::encode(&value)?])?;
        self.with(|arr| self.push_entry(arr, e))
            .inspect_err(|_| drop(entry::free(self.heap(), e)))
    }

    /// Appends every item (each is published as soon as it is written).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let entries = items
            .into_iter()
            .map(|v| entry::write(self.heap(), &[&entry::encode(&v)?]))
            .collect::<Result<Vec<u64>>>()?;
        self.with(|arr| {
            for &e in &entries {
                self.push_entry(arr, e)?;
            }
            Ok(())
        })
    }

    /// Removes and returns the last element.
    pub fn pop(&self) -> Result<Option<T>> {
        self.with(|arr| {
            if arr.len == 0 {
                return Ok(None);
            }
            let e = arr.get(arr.len - 1)?;
            let v = entry::decode(&entry::read(self.heap(), e)?)?;
            self.heap()
                .arena()
                .store(arr.block + BLOCK_HEADER, arr.len - 1)?;
            arr.len -= 1;
            entry::free(self.heap(), e)?;
            Ok(Some(v))
        })
    }

    /// A copy of element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Result<Option<T>> {
        self.with(|arr| {
            if i as u64 >= arr.len {
                return Ok(None);
            }
            entry::decode(&entry::read(self.heap(), arr.get(i as u64)?)?).map(Some)
        })
    }

    /// Replaces element `i`.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if `i` is past the end.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        let e = entry::write(self.heap(), &[&entry::encode(&value)?])?;
        self.with(|arr| {
            if i as u64 >= arr.len {
                return Err(out_of_range());
            }
            let old = arr.get(i as u64)?;
            self.heap().arena().store(arr.slot(i as u64), e)?; // the commit point
            entry::free(self.heap(), old)
        })
        .inspect_err(|_| drop(entry::free(self.heap(), e)))
    }

    /// Inserts `value` at `i` (at most `len`), shifting the rest.
    pub fn insert(&self, i: usize, value: T) -> Result<()> {
        let e = entry::write(self.heap(), &[&entry::encode(&value)?])?;
        self.with(|arr| {
            if i as u64 > arr.len {
                return Err(out_of_range());
            }
            let mut slots = Self::slots(arr)?;
            slots.insert(i, e);
            self.replace(arr, &slots)
        })
        .inspect_err(|_| drop(entry::free(self.heap(), e)))
    }

    /// Removes and returns element `i`, shifting the rest.
    pub fn remove(&self, i: usize) -> Result<T> {
        self.with(|arr| {
            if i as u64 >= arr.len {
                return Err(out_of_range());
            }
            let mut slots = Self::slots(arr)?;
            let e = slots.remove(i);
            let v = entry::decode(&entry::read(self.heap(), e)?)?;
            self.replace(arr, &slots)?;
            entry::free(self.heap(), e)?;
            Ok(v)
        })
    }

    /// Number of elements.
    pub fn len(&self) -> Result<usize> {
        self.with(|arr| Ok(arr.len as usize))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of every element, taken under the lock (a consistent snapshot).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.with(|arr| {
            (0..arr.len)
                .map(|i| entry::decode(&entry::read(self.heap(), arr.get(i)?)?))
                .collect()
        })
    }

    /// Iterates over a snapshot (see [`to_vec`](List::to_vec)).
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        Ok(self.to_vec()?.into_iter())
    }
}

fn out_of_range() -> Error {
    Error::InvalidSize {
        reason: "list index out of range",
    }
}

container_handle!(List<T>);
