//! What the rings share, written once: the header fields every ring starts with ([`Common`]:
//! tag, kind, capacity, element type, data offset, close flag), their initialisation
//! ([`init`]) and the hostile-input checks of attaching ([`attach`], [`peek_header`]), where a
//! ring lies in its region ([`Place`]), and the outcome of one attempt ([`Halt`]) with its
//! mapping to the public errors (MPMC and SPSC; the channel's outcomes carry more).

use super::{PopError, PushError};
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Identifies an initialised ring of any kind ("mpRING02", layout 2: one common header); the
/// kind word says which ring.
const TAG: u64 = u64::from_le_bytes(*b"mpRING02");

/// The kind word of an MPMC ring.
pub(crate) const KIND_MPMC: u64 = 1;
/// The kind word of an SPSC ring.
pub(crate) const KIND_SPSC: u64 = 2;
/// The kind word of a byte channel.
pub(crate) const KIND_CHANNEL: u64 = 3;

/// The header fields every ring starts with. Written once at init and read once at attach,
/// except the close flag. A peer may rewrite any of them: attach checks them all, and a handle
/// keeps what it checked ([`Place`]) rather than re-reading them.
#[repr(C)]
pub(crate) struct Common {
    /// [`TAG`].
    tag: AtomicU64,
    /// `KIND_*`.
    kind: AtomicU64,
    /// Slots (data bytes, for the channel).
    capacity: AtomicU64,
    /// The element type's size and alignment (1 and 1 for the channel's bytes).
    elem_size: AtomicU64,
    elem_align: AtomicU64,
    /// Where the slots (data bytes) start, from the region's start.
    data_offset: AtomicU64,
    /// 0 open, 1 closed.
    closed: AtomicU32,
}

impl Common {
    /// The common header of an open ring of `kind`.
    pub(crate) fn new(
        kind: u64,
        capacity: usize,
        elem_size: usize,
        elem_align: usize,
        data_offset: usize,
    ) -> Self {
        Self {
            tag: AtomicU64::new(TAG),
            kind: AtomicU64::new(kind),
            capacity: AtomicU64::new(capacity as u64),
            elem_size: AtomicU64::new(elem_size as u64),
            elem_align: AtomicU64::new(elem_align as u64),
            data_offset: AtomicU64::new(data_offset as u64),
            closed: AtomicU32::new(0),
        }
    }

    /// Sets the close flag. `SeqCst`: at least the `Release` a waiter's `Acquire` load pairs
    /// with; each ring then wakes its waiters (the wake orders after the flag).
    #[inline]
    pub(crate) fn close(&self) {
        self.closed.store(1, Ordering::SeqCst);
    }

    /// Whether the ring was closed.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) != 0
    }
}

/// A ring's header: it starts with a [`Common`] (in its first cache line).
///
/// # Safety
/// Implementors are `#[repr(C)]` and valid for any bit pattern (atomics, and locks made of
/// atomics), as they are read from shared memory that peers may scribble on.
pub(crate) unsafe trait RingHeader {
    /// The kind word (`KIND_*`).
    const KIND: u64;
    /// What attach says of a region that does not hold this ring.
    const NOT_ONE: &'static str;
    fn common(&self) -> &Common;
}

/// Writes the header `hdr` at the start of a zeroed region of `total` bytes at `ptr`.
///
/// # Safety
/// `ptr` is valid for writes of `total >= size_of::<H>()` bytes, aligned for `H`, and nobody
/// else accesses the region during the call (the segment layer publishes it after).
#[cfg(not(multiproc_loom))]
pub(crate) unsafe fn init<H: RingHeader>(ptr: *mut u8, total: usize, hdr: H) {
    debug_assert!(total >= size_of::<H>() && ptr as usize % align_of::<H>() == 0);
    // SAFETY: the caller's contract. Zeroing first leaves every data byte initialised.
    unsafe {
        ptr.write_bytes(0, total);
        ptr.cast::<H>().write(hdr);
    }
}

/// The header `H` of the ring at `ptr` (a region of `len` bytes, aligned to `align`) and its
/// capacity, once the tag and kind match and the capacity is in `1..=max_cap` (inspection: no
/// element type is known).
///
/// # Safety
/// As [`header_at`].
///
/// # Errors
/// A misaligned or short region, a header that is not an `H` ring's, or a bad capacity.
#[cfg(not(multiproc_loom))]
pub(crate) unsafe fn peek_header<'a, H: RingHeader>(
    ptr: *mut u8,
    len: usize,
    align: usize,
    max_cap: usize,
) -> Result<(&'a H, usize), &'static str> {
    // SAFETY: the caller's contract; `H` is valid for any bit pattern (`RingHeader`).
    let hdr: &'a H = unsafe { header_at(ptr, len, align) }?;
    let c = hdr.common();
    if c.tag.load(Ordering::Acquire) != TAG || c.kind.load(Ordering::Relaxed) != H::KIND {
        return Err(H::NOT_ONE);
    }
    let cap = usize::try_from(c.capacity.load(Ordering::Relaxed)).map_err(|_| "bad capacity")?;
    if cap == 0 || cap > max_cap {
        return Err("bad capacity");
    }
    Ok((hdr, cap))
}

/// What a ring region must look like, by its capacity: where its data starts and how long it is.
#[cfg(not(multiproc_loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub(crate) data_offset: usize,
    pub(crate) total: usize,
}

/// Attaches to the ring `H` at `ptr` (a region of `len` bytes, aligned to `align`) made for
/// elements of `elem = (size, align)`: every check on the common header, once. `extent` says
/// what a ring of a given capacity needs (`None`: no such ring). Returns where the ring's slots
/// (data bytes) lie: at `extent`'s data offset, `cap` of them, all within `len`.
///
/// # Safety
/// As [`header_at`].
///
/// # Errors
/// A misaligned or short region, a header that is not an `H` ring's, a ring made for another
/// element type, or a header whose capacity or data offset does not hold.
#[cfg(not(multiproc_loom))]
pub(crate) unsafe fn attach<H: RingHeader>(
    ptr: *mut u8,
    len: usize,
    align: usize,
    elem: (usize, usize),
    max_cap: usize,
    extent: impl FnOnce(usize) -> Option<Extent>,
) -> Result<Place, &'static str> {
    // SAFETY: the caller's contract.
    let (hdr, cap) = unsafe { peek_header::<H>(ptr, len, align, max_cap) }?;
    let c = hdr.common();
    if c.elem_size.load(Ordering::Relaxed) != elem.0 as u64
        || c.elem_align.load(Ordering::Relaxed) != elem.1 as u64
    {
        return Err("ring made for another element type");
    }
    let e = extent(cap).ok_or("bad capacity")?;
    if c.data_offset.load(Ordering::Relaxed) != e.data_offset as u64 {
        return Err("ring header is corrupted");
    }
    if e.total > len {
        return Err("region shorter than the ring");
    }
    Ok(Place {
        offset: e.data_offset,
        cap,
        one_lap: (cap as u64).next_power_of_two(),
    })
}

/// Where an attached ring lies in its region: the offset of its slots (or data bytes) from the
/// region's start and its capacity, both validated once by [`attach`]. Enough to rebuild the
/// reference for each use, borrowing the mapping only as long as the caller holds it, without
/// re-reading a header that a peer may have rewritten since.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    pub(crate) offset: usize,
    pub(crate) cap: usize,
    /// `cap`'s next power of two, the lap of an MPMC position: computed once, at attach, rather
    /// than each time a handle rebuilds its ring reference.
    pub(crate) one_lap: u64,
}

impl Place {
    /// The header `H` and the slots `S` at this place in the region at `base`.
    ///
    /// # Safety
    /// - this place is what [`attach`] returned for a ring of header `H` at `base`, whose
    ///   `extent` laid out slots of `S` (size and alignment);
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

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not for room or values (the channel still waits for its lock, briefly held).
    No,
    /// Until the deadline, or forever.
    Until(Option<Deadline>),
}

impl Wait {
    /// At most `timeout` from now.
    pub(crate) fn after(timeout: std::time::Duration) -> Wait {
        Wait::Until(Some(Deadline::after(timeout)))
    }

    /// The deadline, if any (`No`: none).
    pub(crate) fn deadline(self) -> Option<Deadline> {
        match self {
            Wait::No => None,
            Wait::Until(d) => d,
        }
    }
}

/// The four public ways to call an operation that may wait, each with its own docs, from the
/// `$core` method that takes the [`Wait`] as its last argument (reached through a field of
/// `self` if written `field.core`): `$op` waits as long as it takes (`Wait::Until(None)`),
/// `$try_op` does not wait (`Wait::No`), `$op_timeout` gives up after `timeout` and `$op_until`
/// at `deadline`. The receiver may be `&self` or `&mut self`.
#[cfg(not(multiproc_loom))]
macro_rules! wait_variants {
    (
        $core:ident $(.$core2:ident)? (&mut $slf:ident $(, $arg:ident: $ty:ty)*) -> $ret:ty;
        $($variants:tt)*
    ) => {
        super::ring::wait_variants!(
            @[&mut $slf] $slf.$core$(.$core2)? ($($arg: $ty),*) -> $ret; $($variants)*
        );
    };
    (
        $core:ident $(.$core2:ident)? (&$slf:ident $(, $arg:ident: $ty:ty)*) -> $ret:ty;
        $($variants:tt)*
    ) => {
        super::ring::wait_variants!(
            @[&$slf] $slf.$core$(.$core2)? ($($arg: $ty),*) -> $ret; $($variants)*
        );
    };
    (
        @[$($recv:tt)+] $slf:ident.$($core:ident).+ ($($arg:ident: $ty:ty),*) -> $ret:ty;
        $(#[$forever:meta])* fn $op:ident;
        $(#[$no:meta])* fn $try_op:ident;
        $(#[$after:meta])* fn $op_timeout:ident;
        $(#[$at:meta])* fn $op_until:ident;
    ) => {
        $(#[$forever])*
        pub fn $op($($recv)+ $(, $arg: $ty)*) -> $ret {
            $slf.$($core).+($($arg,)* super::ring::Wait::Until(None))
        }

        $(#[$no])*
        pub fn $try_op($($recv)+ $(, $arg: $ty)*) -> $ret {
            $slf.$($core).+($($arg,)* super::ring::Wait::No)
        }

        $(#[$after])*
        pub fn $op_timeout($($recv)+ $(, $arg: $ty)*, timeout: std::time::Duration) -> $ret {
            $slf.$($core).+($($arg,)* super::ring::Wait::after(timeout))
        }

        $(#[$at])*
        pub fn $op_until($($recv)+ $(, $arg: $ty)*, deadline: std::time::Instant) -> $ret {
            let deadline = $crate::loom::futex::Deadline::at(deadline);
            $slf.$($core).+($($arg,)* super::ring::Wait::Until(Some(deadline)))
        }
    };
}
#[cfg(not(multiproc_loom))]
pub(crate) use wait_variants;

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
#[inline]
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
#[inline]
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
unsafe fn header_at<'a, H>(ptr: *mut u8, len: usize, align: usize) -> Result<&'a H, &'static str> {
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

/// The close flag's methods of a ring reference, over its `hdr` (a header with `common`,
/// `not_empty` and `not_full`): `close` and `is_closed`. With `slots`, also the slot rings'
/// `capacity` (their `cap` field), `is_empty` and `is_full`, over their own `len`.
macro_rules! ring_state {
    () => {
        /// Closes the ring: later pushes fail with `Closed`, pops drain what is left and then fail
        /// with `Closed`, and every blocked caller wakes.
        pub(crate) fn close(&self) {
            self.hdr.common.close();
            // Unconditional: the bump orders after the flag (Release), so a waiter that sees the
            // new `seq` sees the flag, and one that saw the old `seq` is woken.
            self.hdr.not_empty.wake_everyone();
            self.hdr.not_full.wake_everyone();
        }

        /// Whether [`close`](Self::close) was called.
        pub(crate) fn is_closed(&self) -> bool {
            self.hdr.common.is_closed()
        }
    };
    (slots) => {
        super::ring::ring_state!();

        /// The number of slots.
        pub(crate) fn capacity(&self) -> usize {
            self.cap as usize
        }

        /// Whether the ring looks empty.
        pub(crate) fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the ring looks full.
        pub(crate) fn is_full(&self) -> bool {
            self.len() == self.capacity()
        }
    };
}
pub(crate) use ring_state;
