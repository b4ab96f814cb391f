//! Bounded rings between processes.
//!
//! Two rings live here, each in place in a caller-provided region (a shared-memory segment):
//!
//! - `mpmc`: Vyukov's bounded multi-producer multi-consumer queue, extended so that a producer
//!   or consumer killed in the middle of an operation never wedges the others (its slot is
//!   reclaimed once the OS reports its thread dead);
//! - `spsc`: one producer, one consumer, cached indices and batch copies; the two roles are
//!   claimed at run time.
//!
//! Both are `#[repr(C)]` and position independent, hold `bytemuck::Pod` values copied in and
//! out (never a reference into a slot), and treat every word of shared state as hostile: an
//! impossible state is a `Corrupted` error, never undefined behaviour, a panic or an
//! out-of-bounds access. Capacity and element type are stored at init in the header every ring
//! starts with (`ring::Common`, the byte channel's too) and checked on attach, once, by
//! `ring::attach`.
//!
//! On top of them: [`Queue`] and [`SpscQueue`] (the owning handles of the two rings),
//! [`JoinableQueue`] (a `Queue` with Python's `task_done`/`join`), [`Channel`] (arbitrary
//! serialisable messages as length-prefixed records in a byte ring), [`JoinableChannel`] (a
//! `Channel` with `task_done`/`join`) and [`Pipe`] (two channels as a duplex pair of
//! [`Connection`]s).
//!
//! The owning handles call, for either ring: `bytes_for(capacity, size, align)` and
//! `align_for(align)` to size the segment, `init(ptr, capacity, size, align)` once, then
//! `attach::<T>(ptr, len)` in every process, which validates the ring and returns where it lies
//! (`ring::Place`). A handle keeps that place and rebuilds the ref from its mapping per use
//! (`MpmcRef::at` and the like), then calls the operations on it (for the MPMC ring,
//! `push_in`/`pop_in` with a `ring::Wait`).

// Loom models drive the rings on the heap; the handles, regions and OS env are idle there.
#![cfg_attr(multiproc_loom, allow(dead_code))]

#[cfg(not(multiproc_loom))]
pub(crate) mod channel;
mod error;
#[cfg(not(multiproc_loom))]
mod handle;
#[cfg(not(multiproc_loom))]
mod iter;
#[cfg(not(multiproc_loom))]
pub(crate) mod joinable;
#[cfg(not(multiproc_loom))]
mod joinable_channel;
pub(crate) mod mpmc;
pub(crate) mod peer;
#[cfg(not(multiproc_loom))]
mod pipe;
pub(crate) mod ring;
pub(crate) mod spsc;

#[cfg(all(test, multiproc_loom))]
mod loom_tests;
#[cfg(all(test, not(multiproc_loom)))]
mod test_util;

pub use error::{BatchError, PopError, PushError, RecvError, RoleError, SendError, TaskDoneError};
#[cfg(not(multiproc_loom))]
pub use handle::Channel;
#[cfg(not(multiproc_loom))]
pub use handle::{Queue, SpscConsumer, SpscProducer, SpscQueue};
#[cfg(not(multiproc_loom))]
pub use iter::{QueueIter, RecvIter};
#[cfg(not(multiproc_loom))]
pub use joinable::JoinableQueue;
#[cfg(not(multiproc_loom))]
pub use joinable_channel::JoinableChannel;
#[cfg(not(multiproc_loom))]
pub use pipe::{Connection, Pipe};

/// Cache-line padding for the words one side writes and the other reads. 128 bytes: x86-64
/// prefetches lines in adjacent pairs, and aarch64 server parts use 128-byte lines.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
pub(crate) fn round_up(n: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// A zeroed, aligned heap allocation standing in for a shared-memory segment in tests and fuzzing.
#[cfg(all(any(test, fuzzing), not(multiproc_loom)))]
pub(crate) struct HeapRegion {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

#[cfg(all(any(test, fuzzing), not(multiproc_loom)))]
impl HeapRegion {
    /// A zeroed region of `len` bytes aligned to `align`.
    pub(crate) fn new(len: usize, align: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len.max(1), align).expect("bad layout");
        // SAFETY: the layout has a nonzero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw).expect("allocation failed");
        Self { ptr, layout }
    }

    /// The start of the region.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The region's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    /// Overwrites byte `at` (modulo the length) the way a hostile peer would.
    pub(crate) fn scribble(&self, at: usize, byte: u8) {
        let at = at % self.len();
        // SAFETY: `at` is in bounds; the write is volatile and byte-sized, standing in for a
        // peer process writing the shared mapping. Tests only call it while no operation runs.
        unsafe { self.as_ptr().add(at).write_volatile(byte) };
    }
}

// SAFETY: the region is plain memory owned by this value; the rings in it synchronise every
// shared access through atomics, like a shared mapping does.
#[cfg(all(any(test, fuzzing), not(multiproc_loom)))]
unsafe impl Send for HeapRegion {}
// SAFETY: as for `Send`: `&HeapRegion` only hands out the pointer and volatile byte writes.
#[cfg(all(any(test, fuzzing), not(multiproc_loom)))]
unsafe impl Sync for HeapRegion {}

#[cfg(all(any(test, fuzzing), not(multiproc_loom)))]
impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[cfg(all(fuzzing, not(multiproc_loom)))]
#[doc(hidden)]
pub mod __fuzz;
