//! The heap's bytes as seen through offsets: every shared word is read and written through an
//! atomic, and every offset is bounds-checked before use, so garbage written by a peer turns into
//! [`Error::Corrupted`], never an access outside the mapping.

use crate::error::{Error, Result};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// A view of `len` bytes at `base` (the heap's payload), addressed by offsets from `base`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arena {
    base: NonNull<u8>,
    len: u64,
}

// SAFETY: an `Arena` is an address and a length; all access through it goes through atomics or
// through copies whose exclusivity the heap's protocols establish (see SAFETY.md, "Heap").
unsafe impl Send for Arena {}
// SAFETY: as for `Send`.
unsafe impl Sync for Arena {}

impl Arena {
    /// # Safety
    /// - `base` must be valid for reads and writes of `len` bytes for as long as the arena (or a
    ///   copy of it) is used, aligned to 64 bytes, and shared memory that may be changed by other
    ///   processes at any time (so only ever accessed through atomics or raw copies).
    /// - Valid for reads only is enough if only the reading methods (`word`, `load`, `ptr`,
    ///   `read_*`) are called, as inspection does on a read-only mapping.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: u64) -> Arena {
        debug_assert_eq!(base.as_ptr() as usize % 64, 0);
        Arena { base, len }
    }

    /// Bytes addressable.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether `[off, off + len)` lies inside the arena.
    pub(crate) fn contains(&self, off: u64, len: u64) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// The 8-byte word at `off`, which must be 8-aligned and inside the arena.
    pub(crate) fn word(&self, off: u64) -> Result<&AtomicU64> {
        if off % 8 != 0 || !self.contains(off, 8) {
            return Err(Error::Corrupted("heap offset out of bounds or misaligned"));
        }
        // SAFETY: `off + 8 <= len` and `off` is 8-aligned (as is `base`), so the word lies inside
        // the mapping and is aligned for `AtomicU64`, which is valid for every bit pattern and may
        // be accessed concurrently by other processes.
        Ok(unsafe { &*self.base.as_ptr().add(off as usize).cast::<AtomicU64>() })
    }

    /// Loads the word at `off` (relaxed: the callers order through the heap lock or fences).
    pub(crate) fn load(&self, off: u64) -> Result<u64> {
        Ok(self.word(off)?.load(Ordering::Relaxed))
    }

    /// Stores the word at `off`.
    pub(crate) fn store(&self, off: u64, v: u64) -> Result<()> {
        self.word(off)?.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// A pointer to `len` bytes at `off`, checked to lie inside the arena.
    pub(crate) fn ptr(&self, off: u64, len: u64) -> Result<NonNull<u8>> {
        if !self.contains(off, len) {
            return Err(Error::Corrupted("heap range out of bounds"));
        }
        // SAFETY: `off + len <= self.len`, so the result points inside the mapping (or one past
        // its end when `len == 0`), and is non-null because `base` is.
        Ok(unsafe { NonNull::new_unchecked(self.base.as_ptr().add(off as usize)) })
    }

    /// Copies `len` bytes at `off` out of the arena.
    pub(crate) fn read_bytes(&self, off: u64, len: u64) -> Result<Vec<u8>> {
        let len_usize =
            usize::try_from(len).map_err(|_| Error::Corrupted("heap length too large"))?;
        let mut out = vec![0u8; len_usize];
        self.read_into(off, &mut out)?;
        Ok(out)
    }

    /// Copies `out.len()` bytes at `off` out of the arena into `out`.
    pub(crate) fn read_into(&self, off: u64, out: &mut [u8]) -> Result<()> {
        let src = self.ptr(off, out.len() as u64)?;
        // SAFETY: `src` is valid for `out.len()` bytes (checked by `ptr`), and they cannot overlap
        // `out` (one is ours, one is the shared mapping). A peer writing the bytes meanwhile gives
        // us wrong bytes, which every caller validates before use.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `bytes` into the arena at `off`.
    pub(crate) fn write_bytes(&self, off: u64, bytes: &[u8]) -> Result<()> {
        let dst = self.ptr(off, bytes.len() as u64)?;
        // SAFETY: `dst` is valid for `bytes.len()` bytes (checked by `ptr`) and cannot overlap
        // our own `bytes`. Callers write only blocks they own under the heap's protocol.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_ptr(), bytes.len()) };
        Ok(())
    }
}
