//! A shared heap: an allocator in one segment, the objects allocated in it, and Manager-style
//! containers built on it ([`Dict`], [`List`], [`Cell`]), with no server process.
//!
//! - [`Heap`]: `Heap::new(max_bytes)` (anonymous, passed to children like any handle) or
//!   `create`/`open`/`open_or_create` by name. The file is sized to the maximum but sparse: pages
//!   take memory only once touched, and large freed blocks give theirs back
//!   (`fallocate(PUNCH_HOLE)`), so growing never remaps and nobody has to guess a small capacity.
//! - [`HeapBox`]: one owner's `Pod` value or slice in the heap; [`HeapBox::into_shared`] freezes
//!   it into a read-only, reference-counted [`HeapRc`] that travels through a
//!   [`Channel`](crate::Channel) or [`Process`](crate::Process) arguments as an offset, without
//!   copying its payload, or through a [`Queue`](crate::Queue) as a `Pod` [`RcHandle`].
//! - Named objects: [`Heap::find_or_construct`] and [`Heap::find`] (any [`ShmSafe`] type, such as
//!   a [`sync::Mutex`](crate::sync::Mutex) or atomics).
//!
//! Every change to the allocator's state is crash-consistent: a process killed at any step
//! leaves the heap usable by the others (at most its in-flight allocation leaks); see `alloc.rs`
//! and SAFETY.md, "Heap".
//!
//! ```
//! let heap = multiproc::heap::Heap::new(64 << 20)?; // 64 MiB at most; costs nothing until used
//! let b = heap.alloc_slice(&[1u32, 2, 3])?;
//! assert_eq!(&*b, &[1, 2, 3]);
//! let shared = b.into_shared()?; // read-only now, and cheap to send to other processes
//! assert_eq!(shared[2], 3);
//! assert_eq!(heap.stats()?.objects, 1);
//! # Ok::<(), multiproc::Error>(())
//! ```

#[macro_use]
mod entry;
mod alloc;
mod arena;
mod boxed;
mod cell;
mod dict;
mod holders;
mod list;
mod named;
mod seqlock;

pub use alloc::HeapStats;
pub use boxed::{HeapBox, HeapData, HeapRc, RcHandle};
pub use cell::Cell;
pub use dict::{Dict, DictGuard};
pub use list::List;
pub use named::Named;

use crate::error::{Error, Result};
use crate::shm::ShmSafe;
use crate::shm::header::{Kind, Spec};
use crate::shm::object::Object;
use crate::shm::{Segment, ShmOptions};
use crate::sync::{LockError, Mutex, MutexGuard};
use alloc::State;
use arena::Arena;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

/// A shared heap: an allocator in a shared-memory segment.
///
/// Cheap to clone (clones share the mapping). Pass it to a child in
/// [`Process::spawn`](crate::Process::spawn) arguments and the child maps the same heap; a named
/// heap can also be opened by name. Objects in it are addressed by offsets, never by pointers, so
/// every process may map it at another address.
#[derive(Clone)]
pub struct Heap {
    inner: Arc<Inner>,
}

struct Inner {
    object: Object,
    arena: Arena,
    id: [u64; 2],
    /// This process's holder slot (pid it was claimed for, slot), claimed on first need.
    slot: std::sync::Mutex<Option<(u32, u32)>>,
}

/// Heaps mapped in this process, by id: a handle decoded from a message finds its heap here.
static MAPPED: std::sync::Mutex<Option<HashMap<[u64; 2], Weak<Inner>>>> =
    std::sync::Mutex::new(None);

/// The heap lock, held. Dropping it unlocks.
pub(crate) struct HeapGuard<'a> {
    _guard: MutexGuard<'a, ()>,
    arena: &'a Arena,
}

impl HeapGuard<'_> {
    pub(crate) fn arena(&self) -> &Arena {
        self.arena
    }
}

/// The heap lock and, if the lock was seen free within `patience`, the statistics of the heap
/// whose payload is the `len` bytes at `payload`: for inspection tools, which must neither wait
/// forever on a held lock nor change anything. The lock is never taken: the statistics are read
/// (atomic loads) between two observations of a free lock, so they can mix two moments of a
/// heap in use (each figure is still one the heap held).
///
/// # Safety
/// `payload` is valid for reads of `len` bytes while the call runs and 64-aligned; other
/// processes may write them at any time. Only loads are made, so a read-only mapping is enough.
///
/// # Errors
/// [`Error::Corrupted`] if the payload is not a formatted heap.
pub(crate) unsafe fn peek(
    payload: std::ptr::NonNull<u8>,
    len: u64,
    patience: std::time::Duration,
) -> Result<(crate::sync::raw_mutex::LockPeek, Option<HeapStats>)> {
    use crate::sync::owner::SysProbe;
    use crate::sync::raw_mutex::RawMutex;
    // SAFETY: the caller's contract (readable, 64-aligned, shared); only reading methods of the
    // arena are called below, as `Arena::new` allows for a read-only region.
    let arena = unsafe { Arena::new(payload, len) };
    alloc::check_format(&arena)?;
    let lock_at = arena.ptr(alloc::LOCK_OFF, size_of::<Mutex<()>>() as u64)?;
    // SAFETY: inside the payload (checked by `ptr`) at offset 0, so aligned; the heap lock is a
    // `#[repr(C)]` `Mutex<()>`, which starts with its `RawMutex`: atomics, valid for every bit
    // pattern, of which `peek` only loads.
    let lock = unsafe { lock_at.cast::<RawMutex>().as_ref() };
    let deadline = std::time::Instant::now() + patience;
    loop {
        let before = lock.peek(&SysProbe);
        if before.owner.is_none() {
            let stats = alloc::stats(&arena)?;
            if lock.peek(&SysProbe).owner.is_none() {
                return Ok((before, Some(stats)));
            }
        }
        if std::time::Instant::now() >= deadline {
            return Ok((before, None));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Heap size used by containers created without a heap: 1 GiB of address space, sparse.
pub(crate) const DEFAULT_MAX: usize = 1 << 30;

fn spec() -> Spec {
    Spec::new::<u8, [u64; 8]>(Kind::Heap)
}

impl Heap {
    crate::shm::object::shared_constructors! {
        Heap(max_bytes: usize);
        /// A new anonymous heap of at most `max_bytes` (at least 8 KiB), shared with the children
        /// it is passed to. The file is sparse: memory is taken only by pages in use.
        ///
        /// # Errors
        /// [`Error::InvalidSize`] for a size under 8 KiB or too large to map, [`Error::Os`].
        with:
        /// [`ShmOptions::populate`] faults in all of `max_bytes`: the heap is no longer sparse.
        fn new, new_with;
        /// A new heap under `name` (in `/dev/shm`), removed when this handle and its clones drop
        /// unless [`persist`](Heap::persist)ed.
        ///
        /// # Errors
        /// [`Error::AlreadyExists`], [`Error::InvalidName`], and as [`Heap::new`].
        fn create;
        /// Opens the heap another process created under `name`.
        ///
        /// # Errors
        /// [`Error::NotFound`], [`Error::TypeMismatch`] if the segment is not a heap,
        /// [`Error::Corrupted`], [`Error::PermissionDenied`].
        fn open(name, opts) => Self::from_object(Object::open(name, &spec(), opts)?);
        /// Opens `name`, or creates it with `max_bytes` if it does not exist (race-safe).
        fn open_or_create;
    }

    /// A new heap of `max_bytes`, formatted by the object's initialiser: anonymous, or under
    /// `name` (opened instead if it exists and `open_existing`).
    fn make(
        name: Option<&str>,
        open_existing: bool,
        max_bytes: usize,
        opts: &ShmOptions,
    ) -> Result<Heap> {
        let (id, len) = (new_id()?, payload_len(max_bytes)?);
        let mut formatted = Ok(());
        let init = |p| formatted = format_payload(p, max_bytes, id);
        let object = Object::make(name, open_existing, &spec(), len, opts, init)?;
        formatted?;
        Self::from_object(object)
    }

    fn from_object(object: Object) -> Result<Heap> {
        // SAFETY: the payload is `payload_len` bytes of the mapping owned by `object` (which the
        // arena's users keep alive through `Inner`), 256-aligned in a page-aligned mapping, and
        // shared memory that we only access through atomics and checked copies.
        let arena = unsafe { Arena::new(object.payload(), object.payload_len() as u64) };
        alloc::check_format(&arena)?;
        let id = [arena.load(alloc::ID)?, arena.load(alloc::ID + 8)?];
        let mut mapped = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
        let map = mapped.get_or_insert_with(HashMap::new);
        if let Some(inner) = map.get(&id).and_then(Weak::upgrade) {
            return Ok(Heap { inner });
        }
        let inner = Arc::new(Inner {
            object,
            arena,
            id,
            slot: std::sync::Mutex::new(None),
        });
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(id, Arc::downgrade(&inner));
        Ok(Heap { inner })
    }

    pub(crate) fn arena(&self) -> &Arena {
        &self.inner.arena
    }

    fn mutex(&self) -> Result<&Mutex<()>> {
        let p = self
            .inner
            .arena
            .ptr(alloc::LOCK_OFF, size_of::<Mutex<()>>() as u64)?;
        // SAFETY: `p` is inside the mapping (checked by `ptr`) and aligned (the payload is
        // 256-aligned and the lock sits at offset 0); `Mutex<()>` is ShmSafe: valid for every bit
        // pattern and built for concurrent access from several processes. The mapping lives as
        // long as `self`.
        Ok(unsafe { p.cast::<Mutex<()>>().as_ref() })
    }

    /// Takes the heap lock; if its last holder died, completes that holder's intent first.
    pub(crate) fn lock(&self) -> Result<HeapGuard<'_>> {
        let guard = match self.mutex()?.lock() {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) => {
                let repaired = alloc::repair(&self.inner.arena);
                // Repaired or not, the lock must stay usable: every later step re-checks what it
                // reads, so a heap that could not be repaired reports `Corrupted` from there.
                g.make_consistent();
                repaired?;
                g
            }
            Err(LockError::NotRecoverable) => {
                return Err(Error::Corrupted("the heap lock is not recoverable"));
            }
            Err(other) => return Err(other.into()),
        };
        Ok(HeapGuard {
            _guard: guard,
            arena: &self.inner.arena,
        })
    }

    /// Allocates a block for `payload` bytes under the lock. Returns the block offset.
    pub(crate) fn alloc_block(&self, payload: u64, state: State) -> Result<u64> {
        let g = self.lock()?;
        alloc::alloc(g.arena(), payload, state)
    }

    /// Frees block `b` (which must be in one of `allowed` states) under the lock.
    pub(crate) fn free_block(&self, b: u64, allowed: &[State]) -> Result<()> {
        let g = self.lock()?;
        self.free_locked(&g, b, allowed)
    }

    pub(crate) fn free_locked(&self, g: &HeapGuard<'_>, b: u64, allowed: &[State]) -> Result<()> {
        let base = self.payload_file_offset();
        let fd = self.inner.object.segment().fd();
        alloc::free(g.arena(), b, allowed, |off, len| {
            // Best effort: if the OS refuses, the pages just stay resident.
            let _ = crate::sys::shm::punch_hole(fd, base + off, len);
        })
    }

    fn payload_file_offset(&self) -> u64 {
        // The payload follows the object header; the element type ([u64; 8]) needs no more
        // alignment than the header length already gives (`Spec::payload_offset`).
        crate::shm::header::HEADER_LEN as u64
    }

    /// Bytes used and free, the largest block one allocation can get, and the object count.
    pub fn stats(&self) -> Result<HeapStats> {
        let g = self.lock()?;
        alloc::stats(g.arena())
    }

    /// Walks every block and checks the allocator's invariants (counters, free lists).
    ///
    /// # Errors
    /// [`Error::Corrupted`] naming the first broken invariant.
    pub fn verify(&self) -> Result<()> {
        let g = self.lock()?;
        alloc::verify(g.arena())
    }

    /// Allocates `value` in the heap, owned by the returned box.
    ///
    /// # Errors
    /// [`Error::HeapFull`] when no free block is large enough.
    pub fn alloc<T: bytemuck::Pod>(&self, value: T) -> Result<HeapBox<T>> {
        HeapBox::new_in(self, value)
    }

    /// Allocates a copy of `items` in the heap.
    pub fn alloc_slice<T: bytemuck::Pod>(&self, items: &[T]) -> Result<HeapBox<[T]>> {
        HeapBox::from_slice_in(self, items)
    }

    /// Allocates `len` zeroed elements in the heap.
    pub fn alloc_zeroed_slice<T: bytemuck::Pod>(&self, len: usize) -> Result<HeapBox<[T]>> {
        HeapBox::zeroed_slice_in(self, len)
    }

    /// The object named `name`, constructing it with `init` if it does not exist yet (atomically:
    /// of several processes racing, one constructs and all get the same object). Named objects
    /// live as long as the heap. `init` runs under the heap's lock: it must not use this heap.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if `name` holds another type, [`Error::InvalidName`] for an empty
    /// name or one over 200 bytes, [`Error::HeapFull`], [`Error::Corrupted`].
    pub fn find_or_construct<T: ShmSafe>(
        &self,
        name: &str,
        init: impl FnOnce() -> T,
    ) -> Result<Named<T>> {
        named::find_or_construct(self, name, init)
    }

    /// The object named `name`, if it exists.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::TypeMismatch`], [`Error::Corrupted`].
    pub fn find<T: ShmSafe>(&self, name: &str) -> Result<Named<T>> {
        named::find(self, name)
    }

    /// Frees the references to shared objects ([`HeapRc`]) held by processes that died, and
    /// their process slots. Returns how many objects it freed. Runs by itself when a process
    /// needs a slot and all are taken; call it to get memory back sooner.
    pub fn reclaim_dead(&self) -> Result<usize> {
        let g = self.lock()?;
        boxed::reclaim_dead(self, &g)
    }

    /// This process's holder slot, claimed on first use.
    pub(crate) fn slot(&self) -> Result<u32> {
        let pid = crate::sys::proc::getpid();
        let mut cached = self.inner.slot.lock().unwrap_or_else(|e| e.into_inner());
        match *cached {
            Some((p, s)) if p == pid => Ok(s),
            _ => {
                let g = self.lock()?;
                let s = boxed::claim_slot(self, &g)?;
                *cached = Some((pid, s));
                Ok(s)
            }
        }
    }

    crate::shm::object::name_and_persist!(inner.object, "heap");

    /// The segment underneath.
    pub fn segment(&self) -> &Segment {
        self.inner.object.segment()
    }

    pub(crate) fn id(&self) -> [u64; 2] {
        self.inner.id
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let slot = *self.slot.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some((pid, s)) = slot {
            if pid == crate::sys::proc::getpid() {
                boxed::release_slot(&self.arena, s);
            }
        }
    }
}

fn payload_len(max_bytes: usize) -> Result<usize> {
    let len = max_bytes.saturating_sub(spec().payload_offset()) & !4095;
    if len < 2 * alloc::ARENA_START as usize {
        return Err(Error::InvalidSize {
            reason: "heap too small (at least 12 KiB)",
        });
    }
    Ok(len)
}

fn format_payload(p: std::ptr::NonNull<u8>, max_bytes: usize, id: [u64; 2]) -> Result<()> {
    let len = payload_len(max_bytes)?;
    // SAFETY: `Object::create` hands the initialiser `len` zeroed, writable bytes at `p`, aligned
    // to 256 in a page-aligned mapping, which nobody else knows yet.
    let arena = unsafe { Arena::new(p, len as u64) };
    alloc::format(&arena, id)
}

fn new_id() -> Result<[u64; 2]> {
    let r = crate::sys::process::random_u64;
    Ok([r()?, r()?])
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("name", &self.name())
            .field("capacity", &self.inner.arena.len())
            .finish()
    }
}

/// How a heap travels: its id (found in this process's mapped heaps if already there), its fd
/// during a spawn, and its name if it has one.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: [u64; 2],
    segment: Option<Segment>,
    name: Option<String>,
}

impl Serialize for Heap {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let segment = crate::shm::handoff::exporting().then(|| self.segment().clone());
        Wire {
            id: self.inner.id,
            segment,
            name: self.name().map(str::to_owned),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Heap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        Heap::from_wire(wire).map_err(serde::de::Error::custom)
    }
}

impl Heap {
    fn from_wire(wire: Wire) -> Result<Heap> {
        let known = {
            let mapped = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
            mapped
                .as_ref()
                .and_then(|m| m.get(&wire.id))
                .and_then(Weak::upgrade)
        };
        let heap = match (known, wire.segment, wire.name) {
            (Some(inner), _, _) => return Ok(Heap { inner }),
            (None, Some(segment), _) => Self::from_object(Object::from_segment(
                segment,
                &spec(),
                &ShmOptions::default(),
            )?)?,
            (None, None, Some(name)) => Heap::open(&name)?,
            (None, None, None) => {
                return Err(Error::NotFound {
                    name: "an anonymous heap not mapped in this process (pass the Heap itself \
                           as a Process::spawn argument first)"
                        .to_owned(),
                });
            }
        };
        if heap.inner.id != wire.id {
            return Err(Error::NotFound {
                name: "the heap under this name was replaced by another one".to_owned(),
            });
        }
        Ok(heap)
    }
}

const _: () = assert!(crate::shm::header::HEADER_LEN % align_of::<[u64; 8]>() == 0);

#[cfg(test)]
mod tests;

/// Entry points for the fuzz targets in `fuzz/` (not part of the public API).
#[doc(hidden)]
pub mod __fuzz {
    use super::{Heap, HeapRc, alloc};
    use crate::error::Result;

    /// Builds a small heap with some live, freed, shared and named blocks, then lets `bytes`
    /// overwrite words of its metadata and blocks: each 9-byte chunk is (word index, value),
    /// restricted to offsets past the heap lock (whose hostile states `sync_hostile` covers).
    /// Then runs every heap operation on it. Returns their outcomes; must never panic, hang or
    /// fault whatever the bytes.
    pub fn hostile(bytes: &[u8]) -> Vec<Result<()>> {
        let Ok(heap) = Heap::new(256 << 10) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let setup = (|| {
            let boxes: Vec<_> = (0..12u64)
                .map(|i| heap.alloc_slice(&vec![i; 1 + (i as usize * 37) % 200]))
                .collect::<Result<_>>()?;
            let shared = heap.alloc(7u64)?.into_shared()?;
            let wire = postcard::to_allocvec(&shared)
                .map_err(|e| crate::Error::Serialization(e.to_string()))?;
            heap.find_or_construct("n", || 5u64)?;
            Ok::<_, crate::Error>((boxes, shared, wire))
        })();
        let Ok((mut boxes, shared, wire)) = setup else {
            return vec![setup.map(drop)];
        };
        for i in (0..boxes.len()).step_by(3).rev() {
            boxes.swap_remove(i);
        }
        let a = *heap.arena();
        let words = alloc::ARENA_START / 8 + a.len().min(64 << 10) / 8;
        for chunk in bytes.chunks_exact(9) {
            let idx = u64::from(u16::from_le_bytes([chunk[0], chunk[1]])) % words;
            let off = (idx * 8).max(64);
            let raw = u64::from_le_bytes(chunk[1..9].try_into().unwrap_or_default());
            let old = a.load(off).unwrap_or(0);
            // Mostly near-miss values: bit flips of what is there, plausible offsets, small counts.
            let v = match chunk[8] % 4 {
                0 => raw,
                1 => alloc::ARENA_START + 64 * (raw % 4096),
                2 => raw % 64,
                _ => old ^ (1 << (raw % 64)),
            };
            let _ = a.store(off, v);
        }
        out.push(heap.verify());
        out.push(heap.stats().map(drop));
        out.push(heap.find::<u64>("n").map(|n| {
            std::hint::black_box(*n);
        }));
        out.push(heap.alloc_slice(&[1u8; 100]).map(drop));
        out.push(heap.alloc_zeroed_slice::<u64>(5000).map(drop));
        out.push(
            postcard::from_bytes::<HeapRc<u64>>(&wire)
                .map(|rc| {
                    std::hint::black_box(*rc);
                })
                .map_err(|e| crate::Error::Serialization(e.to_string())),
        );
        out.push(heap.reclaim_dead().map(drop));
        drop(boxes);
        drop(shared);
        out.push(heap.verify());
        out
    }
}
