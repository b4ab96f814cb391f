//! Named objects: a list of directory entries, each naming one block that lives as long as the
//! heap. Constructing one is crash-consistent: the object and its entry are written in full, then
//! published by one store of the list head (the commit point); a process killed before that
//! store leaks the two blocks and publishes nothing.

use super::alloc::{self, BLOCK_HEADER, NAMES, State};
use super::{Heap, HeapGuard};
use crate::error::{Error, Result};
use crate::shm::ShmSafe;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

/// Longest name of a named object, in bytes.
const MAX_NAME: usize = 200;

// Entry payload words.
const E_OBJECT: u64 = 0; // the object's block
const E_FINGERPRINT: u64 = 8;
const E_NEXT: u64 = 16; // next entry, 0 at the end
const E_NAME_LEN: u64 = 24;
const E_NAME: u64 = 32;

/// A named object in a [`Heap`]: derefs to `&T` (a [`ShmSafe`] type: atomics, `Pod` data, the
/// [`sync`](crate::sync) primitives, or your own `#[repr(C)]` struct of those).
pub struct Named<T: ShmSafe> {
    heap: Heap,
    ptr: NonNull<T>,
    _type: PhantomData<fn() -> T>,
}

// SAFETY: only `&T` is handed out and `T: ShmSafe` is `Sync` by definition.
unsafe impl<T: ShmSafe> Send for Named<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: ShmSafe> Sync for Named<T> {}

impl<T: ShmSafe> Named<T> {
    /// The heap it lives in.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }
}

impl<T: ShmSafe> Clone for Named<T> {
    fn clone(&self) -> Self {
        Named {
            heap: self.heap.clone(),
            ptr: self.ptr,
            _type: PhantomData,
        }
    }
}

impl<T: ShmSafe> Deref for Named<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` is the payload of a named block (never freed while the heap lives, and
        // `self.heap` keeps the mapping), checked to be `size_of::<T>()` bytes and 32-aligned
        // (`T`'s alignment is at most 32, checked at lookup); `T: ShmSafe` is valid for every bit
        // pattern and safe to share between processes.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe> fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Named")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

pub(crate) fn fingerprint<T>() -> u64 {
    crate::shm::header::fnv1a(&[
        b"named",
        std::any::type_name::<T>().as_bytes(),
        &(size_of::<T>() as u64).to_le_bytes(),
        &(align_of::<T>() as u64).to_le_bytes(),
    ])
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: "a heap object name must be 1 to 200 bytes",
        });
    }
    Ok(())
}

/// Looks `name` up under the lock: `Ok(Some((object block, fingerprint)))` if present.
fn lookup(g: &HeapGuard<'_>, name: &str) -> Result<Option<(u64, u64)>> {
    let a = g.arena();
    let mut at = a.load(NAMES)?;
    let limit = a.len() / 64;
    let mut seen = 0u64;
    while at != 0 {
        seen += 1;
        if seen > limit {
            return Err(Error::Corrupted(
                "named-object list is longer than the heap (cycle?)",
            ));
        }
        let info = alloc::block(a, at)?;
        if info.state != State::Named {
            return Err(Error::Corrupted(
                "named-object list holds a block that is not an entry",
            ));
        }
        let p = at + BLOCK_HEADER;
        let len = a.load(p + E_NAME_LEN)?;
        if len > MAX_NAME as u64 || E_NAME + len > info.capacity() {
            return Err(Error::Corrupted("named-object entry has a bad name length"));
        }
        if len == name.len() as u64 && a.read_bytes(p + E_NAME, len)? == name.as_bytes() {
            return Ok(Some((a.load(p + E_OBJECT)?, a.load(p + E_FINGERPRINT)?)));
        }
        at = a.load(p + E_NEXT)?;
    }
    Ok(None)
}

fn handle<T: ShmSafe>(heap: &Heap, g: &HeapGuard<'_>, obj: u64, fp: u64) -> Result<Named<T>> {
    if fp != fingerprint::<T>() {
        return Err(Error::TypeMismatch {
            expected: std::any::type_name::<T>().to_owned(),
            found: "a named heap object of another type".to_owned(),
        });
    }
    let a = g.arena();
    let info = alloc::block(a, obj)?;
    let size = size_of::<T>() as u64;
    if info.state != State::Named || a.load(obj + 16)? != size || size > info.capacity() {
        return Err(Error::Corrupted(
            "named object's block does not fit its type",
        ));
    }
    Ok(Named {
        heap: heap.clone(),
        ptr: a.ptr(obj + BLOCK_HEADER, size)?.cast(),
        _type: PhantomData,
    })
}

fn check_align<T>() -> Result<()> {
    if align_of::<T>() > 32 {
        return Err(Error::InvalidSize {
            reason: "heap objects are aligned to 32 bytes at most",
        });
    }
    Ok(())
}

pub(crate) fn find<T: ShmSafe>(heap: &Heap, name: &str) -> Result<Named<T>> {
    check_name(name)?;
    check_align::<T>()?;
    let g = heap.lock()?;
    match lookup(&g, name)? {
        Some((obj, fp)) => handle(heap, &g, obj, fp),
        None => Err(Error::NotFound {
            name: name.to_owned(),
        }),
    }
}

pub(crate) fn find_or_construct<T: ShmSafe>(
    heap: &Heap,
    name: &str,
    init: impl FnOnce() -> T,
) -> Result<Named<T>> {
    check_name(name)?;
    check_align::<T>()?;
    let g = heap.lock()?;
    if let Some((obj, fp)) = lookup(&g, name)? {
        return handle(heap, &g, obj, fp);
    }
    let a = g.arena();
    let size = size_of::<T>() as u64;
    let obj = alloc::alloc(a, size, State::Named)?;
    let entry = match alloc::alloc(a, E_NAME + name.len() as u64, State::Named) {
        Ok(e) => e,
        Err(e) => {
            heap.free_locked(&g, obj, &[State::Named])?;
            return Err(e);
        }
    };
    a.store(obj + 16, size)?;
    a.store(obj + 24, fingerprint::<T>())?;
    let value = init();
    let p = a.ptr(obj + BLOCK_HEADER, size)?;
    // SAFETY: the block is ours (allocated under the lock we hold and not yet published), holds
    // `size_of::<T>()` bytes at `p`, 32-aligned, and `align_of::<T>() <= 32` (checked above).
    unsafe { p.cast::<T>().as_ptr().write(value) };
    let e = entry + BLOCK_HEADER;
    a.store(e + E_OBJECT, obj)?;
    a.store(e + E_FINGERPRINT, fingerprint::<T>())?;
    a.store(e + E_NEXT, a.load(NAMES)?)?;
    a.store(e + E_NAME_LEN, name.len() as u64)?;
    a.write_bytes(e + E_NAME, name.as_bytes())?;
    crate::crash::point("heap.named.before_publish");
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    a.store(NAMES, entry)?;
    handle(heap, &g, obj, fingerprint::<T>())
}
