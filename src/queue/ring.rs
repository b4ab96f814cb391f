//! What the rings share: the outcome of one attempt ([`Halt`]) and its mapping to the public
//! errors (MPMC and SPSC), and the checks on a region before its header is read (every ring,
//! the byte channel too), so that these hostile-input checks exist once.

use super::{PopError, PushError};

/// Where an attached ring lies in its region: the offset of its slots (or data bytes) from the
/// region's start and its capacity, both validated once by `attach`. Enough to rebuild the
/// reference for each use, borrowing the mapping only as long as the caller holds it, without
/// re-reading a header that a peer may have rewritten since.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    pub(crate) offset: usize,
    pub(crate) cap: usize,
}

impl Place {
    /// Where `slots` lie in the region that starts at `base`.
    pub(crate) fn of<S>(base: *const u8, slots: &[S]) -> Place {
        Place {
            offset: slots.as_ptr() as usize - base as usize,
            cap: slots.len(),
        }
    }

    /// The header `H` and the slots `S` at this place in the region at `base`.
    ///
    /// # Safety
    /// - this place is what [`of`](Self::of) returned for the slots of a ring of header `H`
    ///   that `attach` validated at `base`;
    /// - the region stays mapped for `'a`.
    pub(crate) unsafe fn parts<'a, H, S>(self, base: *mut u8) -> (&'a H, &'a [S]) {
        // SAFETY: `attach` checked that a header and `cap` slots from `offset` fit in the region
        // with the right alignment (caller); headers and slots are atomics and `Pod` cells,
        // valid for any bytes; the region lives for `'a` (caller).
        unsafe {
            let slots = std::slice::from_raw_parts(base.add(self.offset).cast::<S>(), self.cap);
            (&*base.cast::<H>(), slots)
        }
    }
}

/// How full a ring is, read from outside (inspection tools): approximate, as its `len` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fill {
    /// Values (or messages) in it.
    pub(crate) len: u64,
    /// Slots (or data bytes, for the channel).
    pub(crate) capacity: u64,
    pub(crate) closed: bool,
}

/// Why one attempt at a ring operation stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Halt {
    /// No room (push) or nothing ready (pop); also "timed out" out of a blocking loop.
    Blocked,
    /// MPMC: the slot at `idx` is claimed mid-operation by the peer named in stamp `s`.
    Busy {
        idx: usize,
        s: u64,
    },
    /// Closed (pushes), or closed and drained (pops).
    Closed,
    Corrupted(&'static str),
    /// A test peer stopped at a `peer::Step` (test builds only: `OsEnv` never stops).
    #[cfg(test)]
    Killed,
}

/// The public error of a push that stopped with `h`; `blocked` names a full ring (`Full` or
/// `Timeout`, by the caller's kind of wait).
pub(crate) fn push_error<T>(h: Halt, value: T, blocked: fn(T) -> PushError<T>) -> PushError<T> {
    match h {
        Halt::Blocked | Halt::Busy { .. } => blocked(value),
        Halt::Closed => PushError::Closed(value),
        Halt::Corrupted(what) => PushError::Corrupted(what),
        // Reported by the `_step` entry points; other callers do not stop.
        #[cfg(test)]
        Halt::Killed => PushError::Corrupted("operation stopped by a test hook"),
    }
}

/// The public error of a pop that stopped with `h`; `blocked` names an empty ring.
pub(crate) fn pop_error(h: Halt, blocked: PopError) -> PopError {
    match h {
        Halt::Blocked | Halt::Busy { .. } => blocked,
        Halt::Closed => PopError::Closed,
        Halt::Corrupted(what) => PopError::Corrupted(what),
        // Reported by the `_step` entry points; other callers do not stop.
        #[cfg(test)]
        Halt::Killed => PopError::Corrupted("operation stopped by a test hook"),
    }
}

/// The header `H` at the start of a ring region of `len` bytes at `ptr`, once the region is
/// known to be non-null, aligned to `align` (at least `H`'s) and large enough for `H`.
///
/// # Safety
/// - `ptr` is valid for reads and writes of `len` initialised bytes for `'a`; other processes
///   may write them at any time;
/// - `H` is valid for any bit pattern (atomics, and locks made of atomics).
///
/// # Errors
/// A misaligned or short region.
pub(crate) unsafe fn header_at<'a, H>(
    ptr: *mut u8,
    len: usize,
    align: usize,
) -> Result<&'a H, &'static str> {
    debug_assert!(align >= align_of::<H>());
    if ptr.is_null() || ptr as usize % align != 0 {
        return Err("misaligned ring region");
    }
    if len < size_of::<H>() {
        return Err("region too small for a ring header");
    }
    // SAFETY: `ptr` is aligned for `H` and valid for `len >= size_of::<H>()` bytes for `'a`
    // (checked above, and the caller's contract); `H` is valid for any bit pattern (caller).
    Ok(unsafe { &*ptr.cast::<H>() })
}
