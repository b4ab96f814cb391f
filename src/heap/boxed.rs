//! Handles to blocks: [`HeapBox`] (one owner, read-write) and [`HeapRc`] (shared, read-only,
//! reference-counted across processes).
//!
//! # How shared references are counted
//!
//! A shared block's word 1 is its *holders word*: bits 0..48 say which process slots hold a
//! reference (a process holds at most one: its handles share it through an `Arc`), bits 48..64
//! count references in flight (serialised, not yet decoded). Serialising adds one in flight;
//! decoding sets the decoder's bit and then removes one in flight (in that order, so the word
//! never reads zero while someone still holds or carries a reference). The read-modify-write that
//! makes the word zero frees the block, so exactly one process frees it.
//!
//! A process that dies keeps its bit set. [`Heap::reclaim_dead`] (also run whenever a process
//! finds every slot taken) finds slots whose process is gone (pid and start time, so a reused pid
//! is not mistaken for the holder), clears their bit in every shared block, frees the blocks that
//! reach zero, and releases the slots. References in flight that are never decoded (a message
//! dropped unread) are not reclaimed: the block leaks until the heap goes.

use super::alloc::{self, BLOCK_HEADER, SLOT_COUNT, SLOTS, State};
use super::{Heap, HeapGuard, holders};
use crate::error::{Error, Result};
use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{Arc, Weak};

/// What a heap block can hold: a `Pod` value or a slice of them.
///
/// # Safety
/// `from_raw` must only build a value whose bytes lie within the given range, and every bit
/// pattern of those bytes must be a valid value (true of `Pod` types and slices of them).
pub unsafe trait HeapData {
    /// Identifies the type in a block, so a handle decoded elsewhere is checked.
    fn fingerprint() -> u64;
    /// Alignment the payload needs.
    fn align() -> usize;
    /// Byte length of the value.
    fn byte_len(&self) -> usize;
    /// A pointer to the value at `p` spanning `len` bytes, or `None` if `len` does not fit.
    fn from_raw(p: NonNull<u8>, len: usize) -> Option<NonNull<Self>>;
}

fn fingerprint_of<T>(kind: &str) -> u64 {
    crate::shm::header::fnv1a(&[
        kind.as_bytes(),
        std::any::type_name::<T>().as_bytes(),
        &(size_of::<T>() as u64).to_le_bytes(),
        &(align_of::<T>() as u64).to_le_bytes(),
    ])
}

// SAFETY: a `T: Pod` is valid for every bit pattern; `from_raw` only accepts exactly
// `size_of::<T>()` bytes.
unsafe impl<T: Pod> HeapData for T {
    fn fingerprint() -> u64 {
        fingerprint_of::<T>("value")
    }
    fn align() -> usize {
        align_of::<T>()
    }
    fn byte_len(&self) -> usize {
        size_of::<T>()
    }
    fn from_raw(p: NonNull<u8>, len: usize) -> Option<NonNull<T>> {
        (len == size_of::<T>()).then(|| p.cast())
    }
}

// SAFETY: slices of `Pod` are valid for every bit pattern; `from_raw` only builds a slice whose
// `len / size_of::<T>()` elements span at most `len` bytes.
unsafe impl<T: Pod> HeapData for [T] {
    fn fingerprint() -> u64 {
        fingerprint_of::<T>("slice")
    }
    fn align() -> usize {
        align_of::<T>()
    }
    fn byte_len(&self) -> usize {
        size_of_val(self)
    }
    fn from_raw(p: NonNull<u8>, len: usize) -> Option<NonNull<[T]>> {
        let size = size_of::<T>();
        if size == 0 || len % size != 0 {
            return None;
        }
        Some(NonNull::slice_from_raw_parts(p.cast::<T>(), len / size))
    }
}

/// Largest alignment a heap payload guarantees.
const MAX_ALIGN: usize = 32;

/// A `Pod` value or slice in a [`Heap`], owned by this handle (freed when it drops).
///
/// Derefs to `&T` and `&mut T`. Not `Clone`: to share it, freeze it with
/// [`into_shared`](HeapBox::into_shared).
pub struct HeapBox<T: ?Sized + HeapData> {
    heap: Heap,
    block: u64,
    ptr: NonNull<T>,
}

// SAFETY: the box owns its block exclusively (by the heap's protocol) like a `Box<T>`.
unsafe impl<T: ?Sized + HeapData + Send> Send for HeapBox<T> {}
// SAFETY: shared access hands out only `&T`.
unsafe impl<T: ?Sized + HeapData + Sync> Sync for HeapBox<T> {}

impl<T: Pod> HeapBox<T> {
    /// Allocates `value` in `heap`.
    pub fn new_in(heap: &Heap, value: T) -> Result<Self> {
        Self::with_bytes(heap, bytemuck::bytes_of(&value), size_of::<T>())
    }
}

impl<T: Pod> HeapBox<[T]> {
    /// Allocates a copy of `items` in `heap`.
    pub fn from_slice_in(heap: &Heap, items: &[T]) -> Result<Self> {
        Self::with_bytes(heap, bytemuck::cast_slice(items), size_of_val(items))
    }

    /// Allocates `len` zeroed elements in `heap`.
    pub fn zeroed_slice_in(heap: &Heap, len: usize) -> Result<Self> {
        let bytes = len.checked_mul(size_of::<T>()).ok_or(Error::HeapFull {
            requested: usize::MAX,
        })?;
        let b = Self::with_bytes(heap, &[], bytes)?;
        // SAFETY: the block is ours and holds `bytes` bytes at `ptr`; zero is a valid `T`.
        unsafe { std::ptr::write_bytes(b.ptr.cast::<u8>().as_ptr(), 0, bytes) };
        Ok(b)
    }
}

impl<T: ?Sized + HeapData> HeapBox<T> {
    /// Allocates a block of `len` bytes and copies `init` (at most `len` bytes) into it.
    pub(crate) fn with_bytes(heap: &Heap, init: &[u8], len: usize) -> Result<Self> {
        if T::align() > MAX_ALIGN {
            return Err(Error::InvalidSize {
                reason: "heap objects are aligned to 32 bytes at most",
            });
        }
        let block = heap.alloc_block(len as u64, State::Alloc)?;
        let a = heap.arena();
        let made = (|| {
            a.store(block + 16, len as u64)?;
            a.store(block + 24, T::fingerprint())?;
            let p = a.ptr(block + BLOCK_HEADER, len as u64)?;
            a.write_bytes(block + BLOCK_HEADER, init)?;
            T::from_raw(p, len).ok_or(Error::Corrupted("payload length does not fit the type"))
        })();
        match made {
            Ok(ptr) => Ok(HeapBox {
                heap: heap.clone(),
                block,
                ptr,
            }),
            Err(e) => {
                let _ = heap.free_block(block, &[State::Alloc]);
                Err(e)
            }
        }
    }

    /// The heap it lives in.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// The block's offset in the heap.
    pub fn offset(&self) -> u64 {
        self.block
    }

    /// Freezes the value into a read-only, reference-counted handle that other processes can
    /// receive without a copy of the payload.
    ///
    /// # Errors
    /// [`Error::HeapFull`] if all 48 process slots hold live processes; [`Error::Corrupted`].
    pub fn into_shared(self) -> Result<HeapRc<T>> {
        let slot = self.heap.slot()?;
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; its heap handle moves out exactly once.
        let heap = unsafe { std::ptr::read(&this.heap) };
        let (block, ptr) = (this.block, this.ptr);
        {
            let g = heap.lock()?;
            let a = g.arena();
            a.store(block + 8, 1 << slot)?;
            // The commit point: from here the block is shared and freed by its holders word.
            alloc::set_state(a, block, State::Rc)?;
        }
        Ok(HeapRc::adopt(heap, block, ptr, slot))
    }
}

impl<T: ?Sized + HeapData> Deref for HeapBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` spans the payload of a block this box owns, inside the mapping that
        // `self.heap` keeps alive; every bit pattern is a valid `T` (HeapData).
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized + HeapData> DerefMut for HeapBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this the only reference in this process,
        // and the box owns the block, so no other process has it by the heap's protocol.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: ?Sized + HeapData> Drop for HeapBox<T> {
    fn drop(&mut self) {
        // Errors cannot be reported from Drop; a block that cannot be freed stays allocated.
        let _ = self.heap.free_block(self.block, &[State::Alloc]);
    }
}

impl<T: ?Sized + HeapData + fmt::Debug> fmt::Debug for HeapBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// A read-only value or slice in a [`Heap`], shared by reference counting across processes.
///
/// Clones in one process share one reference. It implements `Serialize`: send it through a
/// [`Channel`](crate::Channel) or pass it in [`Process::spawn`](crate::Process::spawn) arguments (or
/// turn it into a `Pod` [`RcHandle`] for a [`Queue`](crate::Queue)) and
/// the receiver gets the same block, not a copy (the message carries the heap's id and the
/// block's offset; the receiving process must have the heap mapped, or it must be named, or the
/// handle must travel in spawn arguments, which carry the heap's fd). See the module docs of
/// `boxed.rs` for how references of dead processes are reclaimed.
pub struct HeapRc<T: ?Sized + HeapData> {
    inner: Arc<RcInner>,
    ptr: NonNull<T>,
    _type: PhantomData<fn() -> T>,
}

// SAFETY: the handle only gives `&T`, like an `Arc<T>`.
unsafe impl<T: ?Sized + HeapData + Sync> Send for HeapRc<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: ?Sized + HeapData + Sync> Sync for HeapRc<T> {}

struct RcInner {
    heap: Heap,
    block: u64,
    slot: u32,
    /// The process whose slot holds the reference: a child created by `fork` inherits this value
    /// but not the reference, so its copy must not release the parent's bit.
    pid: u32,
}

/// This process's shared references, so that decoding a block it already holds reuses the
/// reference instead of setting its bit twice. Keyed by pid too: a forked child inherits the
/// parent's entries, which are not references of its own.
static HELD: std::sync::Mutex<Option<HashMap<RcKey, Weak<RcInner>>>> = std::sync::Mutex::new(None);

/// A shared block: (heap id, block offset).
type RcKey = (u32, [u64; 2], u64);

impl<T: ?Sized + HeapData> HeapRc<T> {
    /// Wraps a block whose holders word already has our bit.
    fn adopt(heap: Heap, block: u64, ptr: NonNull<T>, slot: u32) -> Self {
        let key = (crate::sys::proc::getpid(), heap.id(), block);
        let inner = Arc::new(RcInner {
            heap,
            block,
            slot,
            pid: crate::sys::proc::getpid(),
        });
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(key, Arc::downgrade(&inner));
        HeapRc {
            inner,
            ptr,
            _type: PhantomData,
        }
    }

    /// The heap it lives in.
    pub fn heap(&self) -> &Heap {
        &self.inner.heap
    }

    /// The block's offset in the heap (what a message carries).
    pub fn offset(&self) -> u64 {
        self.inner.block
    }
}

impl<T: ?Sized + HeapData> Clone for HeapRc<T> {
    fn clone(&self) -> Self {
        HeapRc {
            inner: Arc::clone(&self.inner),
            ptr: self.ptr,
            _type: PhantomData,
        }
    }
}

impl<T: ?Sized + HeapData> Deref for HeapRc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` spans the payload of a shared block this process holds a reference to,
        // inside the mapping kept alive by `inner.heap`; the block is read-only by protocol and
        // every bit pattern is a valid `T`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized + HeapData + fmt::Debug> fmt::Debug for HeapRc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl Drop for RcInner {
    fn drop(&mut self) {
        if self.pid != crate::sys::proc::getpid() {
            return;
        }
        let key = (self.pid, self.heap.id(), self.block);
        {
            let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
            let map = held.get_or_insert_with(HashMap::new);
            if map.get(&key).is_some_and(|w| w.strong_count() > 0) {
                // A decode took a new reference after ours ended: it owns the bit now.
                return;
            }
            map.remove(&key);
            // Under HELD, so no decode in this process sets our bit between here and the release.
            let Ok(word) = self.heap.arena().word(self.block + 8) else {
                return;
            };
            if !holders::release(word, self.slot) {
                return;
            }
        }
        crate::crash::point("heap.rc.last_release");
        let _ = self.heap.free_block(self.block, &[State::Rc]);
    }
}

/// A [`HeapRc`] as plain data, for [`Queue`](crate::Queue) and other `Pod`-only transports: the
/// heap's id, the block's offset and the payload type's fingerprint (32 bytes, no payload).
///
/// [`HeapRc::into_handle`] turns a reference into one handle (one reference in flight, like a
/// serialised `HeapRc`); [`HeapRc::from_handle`] in the receiving process (which must already
/// have the heap mapped, e.g. passed in its spawn arguments) turns it back, checking the block and
/// the type. Decode every handle exactly once: an extra copy decoded is a reference the block
/// never had (it would be freed early), and a handle never decoded keeps the block until the heap
/// goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RcHandle {
    heap: [u64; 2],
    block: u64,
    fingerprint: u64,
}

impl<T: ?Sized + HeapData> HeapRc<T> {
    /// Turns this reference into a `Pod` handle carrying one reference in flight (see
    /// [`RcHandle`]).
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the block's holders word is out of reach, [`Error::HeapFull`] if
    /// 65535 references to it are already in flight.
    pub fn into_handle(self) -> Result<RcHandle> {
        let word = self.inner.heap.arena().word(self.inner.block + 8)?;
        if !holders::send(word) {
            return Err(Error::HeapFull { requested: 0 });
        }
        Ok(RcHandle {
            heap: self.inner.heap.id(),
            block: self.inner.block,
            fingerprint: T::fingerprint(),
        })
    }

    /// Takes over the reference a handle carries, in a process that has its heap mapped.
    ///
    /// # Errors
    /// [`Error::NotFound`] if its heap is not mapped in this process, [`Error::TypeMismatch`] for
    /// another payload type, [`Error::Corrupted`] if the block is not a shared object.
    pub fn from_handle(handle: RcHandle) -> Result<Self> {
        let heap = Heap::from_wire(super::Wire {
            id: handle.heap,
            segment: None,
            name: None,
        })?;
        decode(RcWire {
            heap,
            block: handle.block,
            fingerprint: handle.fingerprint,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct RcWire {
    heap: Heap,
    block: u64,
    fingerprint: u64,
}

impl<T: ?Sized + HeapData> Serialize for HeapRc<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let word = self
            .inner
            .heap
            .arena()
            .word(self.inner.block + 8)
            .map_err(serde::ser::Error::custom)?;
        // One reference in flight, owned by the message until it is decoded.
        if !holders::send(word) {
            return Err(serde::ser::Error::custom(
                "65535 references to this block are already in flight",
            ));
        }
        RcWire {
            heap: self.inner.heap.clone(),
            block: self.inner.block,
            fingerprint: T::fingerprint(),
        }
        .serialize(s)
    }
}

impl<'de, T: ?Sized + HeapData> Deserialize<'de> for HeapRc<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = RcWire::deserialize(d)?;
        decode(wire).map_err(serde::de::Error::custom)
    }
}

fn decode<T: ?Sized + HeapData>(wire: RcWire) -> Result<HeapRc<T>> {
    let RcWire {
        heap,
        block,
        fingerprint,
    } = wire;
    if fingerprint != T::fingerprint() {
        return Err(Error::TypeMismatch {
            expected: std::any::type_name::<T>().to_owned(),
            found: "a shared heap object of another type".to_owned(),
        });
    }
    let arena = *heap.arena();
    let a = &arena;
    let info = alloc::block(a, block)?;
    let len = a.load(block + 16)?;
    if info.state != State::Rc || a.load(block + 24)? != fingerprint || len > info.capacity() {
        return Err(Error::Corrupted(
            "shared handle names a block that is not its object",
        ));
    }
    let p = a.ptr(block + BLOCK_HEADER, len)?;
    let ptr = T::from_raw(p, len as usize).ok_or(Error::Corrupted("payload length"))?;
    let slot = heap.slot()?;
    let word = a.word(block + 8)?;
    let key = (crate::sys::proc::getpid(), heap.id(), block);
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    let map = held.get_or_insert_with(HashMap::new);
    // Under HELD: a live handle of this process keeps our bit set until we are done.
    let inner = match map.get(&key).and_then(Weak::upgrade) {
        Some(inner) => {
            holders::adopt(word, slot, false);
            inner
        }
        None => {
            holders::adopt(word, slot, true);
            let inner = Arc::new(RcInner {
                heap,
                block,
                slot,
                pid: crate::sys::proc::getpid(),
            });
            map.insert(key, Arc::downgrade(&inner));
            inner
        }
    };
    Ok(HeapRc {
        inner,
        ptr,
        _type: PhantomData,
    })
}

fn slot_word(s: u64) -> u64 {
    SLOTS + 16 * s
}

/// Claims a free process slot (reclaiming dead processes' slots if none is free).
pub(crate) fn claim_slot(heap: &Heap, g: &HeapGuard<'_>) -> Result<u32> {
    let a = g.arena();
    let (pid, start) = crate::sys::proc::current_process_identity();
    for pass in 0..2 {
        for s in 0..SLOT_COUNT {
            if a.load(slot_word(s))? == 0 {
                a.store(slot_word(s) + 8, start)?;
                a.store(slot_word(s), u64::from(pid))?;
                return Ok(s as u32);
            }
        }
        if pass == 0 {
            reclaim_dead(heap, g)?;
        }
    }
    Err(Error::HeapFull { requested: 0 })
}

/// Releases slot `s` (its process holds no more references).
pub(crate) fn release_slot(a: &super::Arena, s: u32) {
    let _ = a.store(slot_word(u64::from(s)), 0);
}

/// See [`Heap::reclaim_dead`].
pub(crate) fn reclaim_dead(heap: &Heap, g: &HeapGuard<'_>) -> Result<usize> {
    let a = g.arena();
    let mut dead_mask = 0u64;
    let mut dead = Vec::new();
    for s in 0..SLOT_COUNT {
        let pid = a.load(slot_word(s))?;
        if pid == 0 {
            continue;
        }
        let start = a.load(slot_word(s) + 8)?;
        let alive = u32::try_from(pid)
            .ok()
            .and_then(crate::sys::proc::process_start_time)
            .is_some_and(|t| t == start || start == 0);
        if !alive {
            dead_mask |= 1 << s;
            dead.push(s);
        }
    }
    if dead_mask == 0 {
        return Ok(0);
    }
    let mut to_free = Vec::new();
    alloc::for_each_block(a, |b, info| {
        if info.state == State::Rc && holders::clear_dead(a.word(b + 8)?, dead_mask) {
            to_free.push(b);
        }
        Ok(())
    })?;
    for &b in &to_free {
        heap.free_locked(g, b, &[State::Rc])?;
    }
    for s in dead {
        a.store(slot_word(s), 0)?;
    }
    Ok(to_free.len())
}

const _: () = assert!(1 << SLOT_COUNT <= holders::IN_FLIGHT_ONE);
