//! The multi-producer multi-consumer ring, in place in a (shared) memory region.
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>), in the form
//! crossbeam's `ArrayQueue` gives it (`crossbeam-queue/src/array_queue.rs`): a position is
//! `lap | index` with `one_lap = capacity.next_power_of_two()`, so any capacity works without a
//! division, and every slot carries a *stamp* saying which position it is ready for.
//!
//! One change makes the ring survive a peer killed with `SIGKILL` in the middle of an operation.
//! In Vyukov's queue a producer claims a position with a CAS on `tail` and publishes the slot
//! later; if it dies in between, the consumer at that position waits forever and the whole ring
//! wedges. Here a slot is claimed with a CAS **on its stamp**, which records who claimed it:
//!
//! ```text
//! stamp (u64) = position (40 bits) | thread id (22 bits) | phase (2 bits)
//!
//!   EMPTY(p)          free for the producer of position p
//!   WRITING(p, tid)   claimed by producer `tid`, value being copied in
//!   FULL(p)           value of position p published
//!   READING(p, tid)   claimed by consumer `tid`, value being copied out
//!
//! push at tail p: CAS EMPTY(p) -> WRITING(p, me); copy in; store FULL(p);
//!                 CAS tail p -> next(p)
//! pop at head p:  CAS FULL(p) -> READING(p, me); CAS head p -> next(p); copy out;
//!                 store EMPTY(p + one_lap)
//! ```
//!
//! The CAS on `tail`/`head` after a claim may fail: anyone who sees a slot claimed for the
//! position the index still names moves the index on ("helping"), so a claimer that dies before
//! advancing the index stops nobody. A thread blocked behind a `WRITING`/`READING` slot for
//! longer than [`STALL`] asks the OS whether `tid` is alive; if it is definitely dead (gone or a
//! zombie), one CAS `WRITING/READING(p, tid) -> EMPTY(p + one_lap)` discards the slot for that
//! lap, and the ring goes on.
//!
//! # What a killed peer can lose
//!
//! - A producer killed inside `push` before storing `FULL` loses the value of that push, which
//!   never returned `Ok`: no consumer ever sees it, whole or torn, because a slot is read only in
//!   phase `FULL`, which the producer stores after its copy. Killed after storing `FULL` (before
//!   moving the tail or returning), its value is delivered, once. Nothing acknowledged is lost.
//! - A consumer killed inside `pop` after claiming its slot loses the value it claimed (it was
//!   never returned to anyone). Every other value is delivered exactly once.
//! - The slot of the dead peer is idle for the rest of that lap, and survivors blocked behind it
//!   wait [`STALL`] (10 ms) before checking.
//! - If the dead thread's id is reused by a new live thread before a survivor checks, the slot
//!   stays claimed while that thread lives (liveness is only declared on definite death, never
//!   guessed, because reclaiming a slot a live writer still fills would tear a value).
//!
//! Positions are 40-bit (they wrap at `2^40`, and every stamp comparison is modulo that), which
//! leaves room for the thread id in the stamp. The ABA window is therefore `2^40` operations on
//! the ring between a thread's read of a stamp and its CAS, instead of `2^64`.

use super::CachePadded;
use super::error::{PopError, PushError};
use super::peer::Env;
#[cfg(test)]
use super::peer::Step;
#[cfg(not(multiproc_loom))]
use super::ring::{self, Extent, Fill};
use super::ring::{Common, Halt, KIND_MPMC, Place, RingHeader, Wait, pop_error, push_error};
use crate::loom::UnsafeCell;
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::sync::wait::{Asymmetric, Backoff, Signal};
use bytemuck::Pod;
use std::time::Duration;

/// Largest capacity: keeps at least `2^12` laps inside the 40-bit position space.
pub(crate) const MAX_CAPACITY: usize = 1 << 28;

/// Positions (head, tail, a stamp's position field) are 40-bit.
const POS_MASK: u64 = (1 << 40) - 1;
/// Where the position sits in a stamp.
const POS_SHIFT: u32 = 24;
/// Where the thread id sits in a stamp.
const TID_SHIFT: u32 = 2;
/// Thread ids are below `2^22` on Linux.
const TID_MASK: u64 = (1 << 22) - 1;

const EMPTY: u64 = 0; // free for the producer of the stamp's position
const WRITING: u64 = 1; // claimed by producer `tid`; the value is being copied in
const FULL: u64 = 2; // published: the consumer of the stamp's position may take it
const READING: u64 = 3; // claimed by consumer `tid`; the value is being copied out

/// How long a thread blocked behind a claimed slot waits before asking whether its claimer died.
pub(crate) const STALL: Duration = Duration::from_millis(10);

#[inline(always)]
const fn stamp(pos: u64, tid: u32, phase: u64) -> u64 {
    (pos << POS_SHIFT) | ((tid as u64 & TID_MASK) << TID_SHIFT) | phase
}
#[inline(always)]
const fn pos_of(s: u64) -> u64 {
    s >> POS_SHIFT
}
#[inline(always)]
const fn tid_of(s: u64) -> u32 {
    ((s >> TID_SHIFT) & TID_MASK) as u32
}
#[inline(always)]
const fn phase_of(s: u64) -> u64 {
    s & 0b11
}

/// The ring's header; the slots follow it at the common header's data offset.
#[repr(C)]
pub(crate) struct Header {
    common: CachePadded<Common>,
    /// Next position to pop (`lap | index`).
    head: CachePadded<AtomicU64>,
    /// Next position to push (`lap | index`).
    tail: CachePadded<AtomicU64>,
    not_empty: CachePadded<Signal<Asymmetric>>,
    not_full: CachePadded<Signal<Asymmetric>>,
}

impl Header {
    fn new(
        capacity: usize,
        elem_size: usize,
        elem_align: usize,
        slots_offset: usize,
        start: u64,
    ) -> Self {
        Self {
            common: CachePadded(Common::new(
                KIND_MPMC,
                capacity,
                elem_size,
                elem_align,
                slots_offset,
            )),
            head: CachePadded(AtomicU64::new(start)),
            tail: CachePadded(AtomicU64::new(start)),
            not_empty: CachePadded(Signal::new()),
            not_full: CachePadded(Signal::new()),
        }
    }
}

// SAFETY: `#[repr(C)]`, atomics only: valid for any bit pattern.
unsafe impl RingHeader for Header {
    const KIND: u64 = KIND_MPMC;
    const NOT_ONE: &'static str = "not an initialised MPMC ring";
    fn common(&self) -> &Common {
        &self.common
    }
}

/// The number of values in the ring of `hdr`, approximately (loads only). `cap` is non-zero and
/// `one_lap` its next power of two.
fn fill(hdr: &Header, cap: u64, one_lap: u64) -> u64 {
    let count = |p: u64| {
        let lap = p >> one_lap.trailing_zeros();
        lap * cap + (p & (one_lap - 1)).min(cap)
    };
    // Positions wrap at 2^40, i.e. counts wrap at `laps * cap`.
    let modulus = ((POS_MASK + 1) >> one_lap.trailing_zeros()) * cap;
    for _ in 0..8 {
        let tail = hdr.tail.load(Ordering::SeqCst) & POS_MASK;
        let head = hdr.head.load(Ordering::SeqCst) & POS_MASK;
        if hdr.tail.load(Ordering::SeqCst) & POS_MASK == tail {
            let d = (count(tail) + modulus - count(head)) % modulus;
            return d.min(cap);
        }
    }
    0
}

/// One slot: the stamp, then the value, in one cache line for small `T`.
#[repr(C)]
pub(crate) struct Slot<T> {
    stamp: AtomicU64,
    value: UnsafeCell<T>,
}

/// What a timed sleep in [`MpmcRef::blocking`] was waiting for.
enum Expiry {
    /// The caller's deadline: give up.
    Deadline,
    /// The periodic re-check ([`Env::recheck`]): try again.
    Recheck,
    /// Time to ask whether the claimer of the slot we are stuck behind is dead.
    Stall { idx: usize, s: u64 },
}

/// Sizes and offsets of a ring region.
#[cfg(not(multiproc_loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    slots_offset: usize,
    slot_size: usize,
    total: usize,
    align: usize,
}

#[cfg(not(multiproc_loom))]
fn layout(capacity: usize, elem_size: usize, elem_align: usize) -> Option<Layout> {
    use super::round_up;
    if capacity == 0 || capacity > MAX_CAPACITY || !elem_align.is_power_of_two() {
        return None;
    }
    // `Slot<T>` is `#[repr(C)] { u64, T }`.
    let slot_align = elem_align.max(std::mem::align_of::<AtomicU64>());
    let value_offset = round_up(std::mem::size_of::<AtomicU64>(), elem_align)?;
    let slot_size = round_up(value_offset.checked_add(elem_size)?, slot_align)?;
    let align = slot_align.max(std::mem::align_of::<Header>());
    let slots_offset = round_up(std::mem::size_of::<Header>(), align)?;
    let total = slots_offset.checked_add(slot_size.checked_mul(capacity)?)?;
    if total > isize::MAX as usize {
        return None;
    }
    Some(Layout {
        slots_offset,
        slot_size,
        total,
        align,
    })
}

/// Entry points over a raw region: size it, initialise it, attach to it.
pub(crate) struct RawMpmc;

#[cfg(not(multiproc_loom))]
impl RawMpmc {
    /// Bytes a ring of `capacity` elements of this size and alignment needs, or `None` if the
    /// capacity is 0 or above [`MAX_CAPACITY`], or the size overflows.
    pub(crate) fn bytes_for(capacity: usize, elem_size: usize, elem_align: usize) -> Option<usize> {
        layout(capacity, elem_size, elem_align).map(|l| l.total)
    }

    /// The alignment the region must have (at least 128, the header's).
    pub(crate) fn align_for(elem_align: usize) -> usize {
        elem_align.max(std::mem::align_of::<Header>())
    }

    /// Initialises an empty, open ring at `ptr`.
    ///
    /// # Safety
    /// - `ptr` is valid for writes of `bytes_for(capacity, elem_size, elem_align)` bytes and
    ///   aligned to `align_for(elem_align)`;
    /// - nobody else accesses the region during the call (the segment layer publishes it after).
    ///
    /// # Errors
    /// Invalid parameters (see [`bytes_for`](Self::bytes_for)).
    pub(crate) unsafe fn init(
        ptr: *mut u8,
        capacity: usize,
        elem_size: usize,
        elem_align: usize,
    ) -> Result<(), &'static str> {
        // SAFETY: forwarded from the caller; position 0 is lap-aligned.
        unsafe { Self::init_at(ptr, capacity, elem_size, elem_align, 0) }
    }

    /// [`init`](Self::init) with head and tail starting at `start` (lap-aligned), so tests can
    /// start near the 40-bit wrap-around.
    ///
    /// # Safety
    /// As for [`init`](Self::init).
    pub(crate) unsafe fn init_at(
        ptr: *mut u8,
        capacity: usize,
        elem_size: usize,
        elem_align: usize,
        start: u64,
    ) -> Result<(), &'static str> {
        let l = layout(capacity, elem_size, elem_align).ok_or("invalid ring parameters")?;
        let one_lap = capacity.next_power_of_two() as u64;
        if start > POS_MASK || start & (one_lap - 1) != 0 {
            return Err("start position is not lap-aligned");
        }
        debug_assert!(ptr as usize % l.align == 0);
        let hdr = Header::new(capacity, elem_size, elem_align, l.slots_offset, start);
        // SAFETY: the caller gives us `l.total` writable bytes at `ptr`, aligned for `Header`
        // and for the slots (`l.align`), and exclusive access. Each stamp is then written in
        // place, within the slots.
        unsafe {
            ring::init(ptr, l.total, hdr);
            for i in 0..capacity {
                let at = ptr
                    .add(l.slots_offset + i * l.slot_size)
                    .cast::<AtomicU64>();
                at.write(AtomicU64::new(stamp(start + i as u64, 0, EMPTY)));
            }
        }
        Ok(())
    }

    /// How full the ring at `ptr` is, without knowing its element type (inspection tools).
    ///
    /// # Safety
    /// `ptr` is valid for reads of `len` bytes while the call runs; other processes may write
    /// them at any time. Only atomic loads are made, so a read-only mapping is enough.
    ///
    /// # Errors
    /// A misaligned or short region, or a header that is not an MPMC ring's.
    pub(crate) unsafe fn peek(ptr: *mut u8, len: usize) -> Result<Fill, &'static str> {
        // SAFETY: the caller's contract.
        let (hdr, cap) =
            unsafe { ring::peek_header::<Header>(ptr, len, align_of::<Header>(), MAX_CAPACITY) }?;
        let cap = cap as u64;
        Ok(Fill {
            len: fill(hdr, cap, cap.next_power_of_two()),
            capacity: cap,
            closed: hdr.common.is_closed(),
        })
    }

    /// Attaches to a ring initialised by [`init`](Self::init), checking that it was made for
    /// `T` and fits in `len` bytes; returns where its slots lie (for [`MpmcRef::at`]).
    ///
    /// # Safety
    /// - `ptr` is valid for reads and writes of `len` initialised bytes while the call runs;
    ///   other processes may write it at any time.
    ///
    /// # Errors
    /// A misaligned or short region, a header that is not a ring's, or a ring made for another
    /// element size or alignment.
    pub(crate) unsafe fn attach<T: Pod + Send>(
        ptr: *mut u8,
        len: usize,
    ) -> Result<Place, &'static str> {
        let (size, align) = (size_of::<T>(), align_of::<T>());
        let extent = |cap| {
            layout(cap, size, align).map(|l| Extent {
                data_offset: l.slots_offset,
                total: l.total,
            })
        };
        // SAFETY: the caller's contract.
        let place = unsafe {
            ring::attach::<Header>(
                ptr,
                len,
                Self::align_for(align),
                (size, align),
                MAX_CAPACITY,
                extent,
            )
        }?;
        if layout(place.cap, size, align).map(|l| l.slot_size) != Some(size_of::<Slot<T>>()) {
            return Err("slot layout mismatch");
        }
        // Never inside a notify: registering can wait for an RCU grace period (milliseconds).
        crate::sys::membarrier::prepare();
        Ok(place)
    }
}

/// A ring attached in place; `Copy`, shared by every thread that uses it.
#[derive(Clone, Copy)]
pub(crate) struct MpmcRef<'a, T> {
    hdr: &'a Header,
    slots: &'a [Slot<T>],
    /// Capacity and lap, copied at attach: a peer rewriting the header cannot change them.
    cap: u64,
    one_lap: u64,
}

// SAFETY: the ring is made for concurrent use by many threads (and processes): shared words are
// atomics, and a slot's value is read or written only by the thread whose claim its stamp holds.
// Values are `Pod + Send` copies.
unsafe impl<T: Pod + Send> Send for MpmcRef<'_, T> {}
// SAFETY: as for `Send`; every method takes `&self` and synchronises through the stamps.
unsafe impl<T: Pod + Send> Sync for MpmcRef<'_, T> {}

impl<'a, T: Pod + Send> MpmcRef<'a, T> {
    /// The ring at `place` in the region at `base`, without re-reading its header.
    ///
    /// # Safety
    /// - `place` is what [`RawMpmc::attach::<T>`](RawMpmc::attach) returned for `base`;
    /// - the region stays mapped for `'a`.
    pub(crate) unsafe fn at(base: *mut u8, place: Place) -> Self {
        // SAFETY: `attach` checked that `cap` slots of `size_of::<Slot<T>>()` bytes from the
        // offset (a multiple of their alignment) lie in the region (caller); a slot (an atomic
        // and a `Pod` in a cell) is valid for any bytes, and its value is only accessed through
        // the cell, under the stamp protocol.
        let (hdr, slots) = unsafe { place.parts(base) };
        Self::from_parts(hdr, slots, place.one_lap)
    }

    fn from_parts(hdr: &'a Header, slots: &'a [Slot<T>], one_lap: u64) -> Self {
        Self {
            hdr,
            slots,
            cap: slots.len() as u64,
            one_lap,
        }
    }

    // ----- positions -----

    /// Reads `head` or `tail` and checks it names a real slot.
    #[inline]
    fn load_pos(&self, word: &AtomicU64) -> Result<u64, Halt> {
        // Acquire: pairs with the index CAS of whoever moved it, so the claim of every position
        // before it is visible (see `pop_attempt`).
        let p = word.load(Ordering::Acquire);
        if p > POS_MASK || p & (self.one_lap - 1) >= self.cap {
            return Err(Halt::Corrupted("head or tail out of range"));
        }
        Ok(p)
    }

    /// The position after `p`.
    #[inline]
    fn next(&self, p: u64) -> u64 {
        if (p & (self.one_lap - 1)) + 1 < self.cap {
            p + 1
        } else {
            ((p & !(self.one_lap - 1)) + self.one_lap) & POS_MASK
        }
    }

    /// The same slot one lap later.
    #[inline]
    fn next_lap(&self, p: u64) -> u64 {
        (p + self.one_lap) & POS_MASK
    }

    /// The same slot one lap earlier.
    #[inline]
    fn prev_lap(&self, p: u64) -> u64 {
        p.wrapping_sub(self.one_lap) & POS_MASK
    }

    #[inline]
    fn index(&self, p: u64) -> usize {
        (p & (self.one_lap - 1)) as usize
    }

    /// Moves `word` from `from` to the next position, if nobody has yet.
    #[inline]
    fn help(&self, word: &AtomicU64, from: u64) {
        // Release: whoever reads the new index also sees the claim we saw (transitively).
        let _ = word.compare_exchange(from, self.next(from), Ordering::AcqRel, Ordering::Relaxed);
    }

    // ----- one attempt -----

    fn push_attempt<E: Env>(&self, env: &E, value: &T) -> Result<(), Halt> {
        if self.is_closed() {
            return Err(Halt::Closed);
        }
        let me = env.me();
        let mut tail = self.load_pos(&self.hdr.tail)?;
        loop {
            let idx = self.index(tail);
            let slot = &self.slots[idx]; // idx < cap: checked by load_pos
            // Acquire: pairs with the consumer's release of the slot, so our copy comes after
            // its copy out.
            let s = slot.stamp.load(Ordering::Acquire);
            if s == stamp(tail, 0, EMPTY) {
                let claim = stamp(tail, me, WRITING);
                match slot.stamp.compare_exchange_weak(
                    s,
                    claim,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return self.push_claimed(env, slot, tail, value),
                    Err(_) => {
                        tail = self.load_pos(&self.hdr.tail)?;
                        continue;
                    }
                }
            }
            let spos = pos_of(s);
            if self.index(spos) != idx {
                return Err(Halt::Corrupted("slot stamp names another slot"));
            }
            if spos == tail {
                if phase_of(s) == EMPTY {
                    return Err(Halt::Corrupted("slot stamp has an owner while empty"));
                }
                // Claimed for this lap by another producer that has not moved the tail yet.
                self.help(&self.hdr.tail, tail);
            } else if spos == self.prev_lap(tail) {
                // The slot still holds the previous lap.
                return match phase_of(s) {
                    FULL => Err(Halt::Blocked),
                    WRITING | READING => Err(Halt::Busy { idx, s }),
                    _ => Err(Halt::Corrupted("unclaimed slot behind the tail")),
                };
            } else if spos == self.next_lap(tail) {
                // Our tail is stale, or the slot was reclaimed before its producer moved the tail.
                self.help(&self.hdr.tail, tail);
            } else {
                let now = self.load_pos(&self.hdr.tail)?;
                if now == tail {
                    return Err(Halt::Corrupted("slot stamp out of step with the tail"));
                }
                tail = now;
                continue;
            }
            tail = self.load_pos(&self.hdr.tail)?;
        }
    }

    // `env` only stops test operations (see `Env::survive`).
    #[cfg_attr(not(test), allow(unused_variables))]
    fn push_claimed<E: Env>(
        &self,
        env: &E,
        slot: &Slot<T>,
        tail: u64,
        value: &T,
    ) -> Result<(), Halt> {
        #[cfg(test)]
        if !env.survive(Step::Claimed) {
            return Err(Halt::Killed);
        }
        crate::crash::point("mpmc.push.claimed");
        // SAFETY: our WRITING stamp makes us the only thread that touches this value until we
        // publish: consumers read only FULL slots, producers claim only EMPTY ones, and a
        // reclaimer takes a WRITING slot only once its writer is dead. `T: Pod`, so any bytes a
        // hostile peer left there are overwritten without a drop.
        slot.value.with_mut(|p| unsafe { p.write(*value) });
        #[cfg(test)]
        if !env.survive(Step::Copied) {
            return Err(Halt::Killed);
        }
        crate::crash::point("mpmc.push.copied");
        // Release: the value is visible to the consumer that sees FULL.
        slot.stamp.store(stamp(tail, 0, FULL), Ordering::Release);
        #[cfg(test)]
        if !env.survive(Step::Published) {
            return Err(Halt::Killed);
        }
        crate::crash::point("mpmc.push.published");
        // After publishing, not before copying: a consumer polling this slot would otherwise
        // pull its line away between our claim and our stores. Fails only if a helper already
        // moved the tail past our slot (anyone who sees it claimed or full does).
        self.help(&self.hdr.tail, tail);
        self.hdr.not_empty.notify_one();
        Ok(())
    }

    fn pop_attempt<E: Env>(&self, env: &E) -> Result<T, Halt> {
        let me = env.me();
        let mut head = self.load_pos(&self.hdr.head)?;
        loop {
            let idx = self.index(head);
            let slot = &self.slots[idx]; // idx < cap: checked by load_pos
            // Acquire: pairs with the producer's release of FULL (the value is in place). A load
            // first, unlike `push_attempt`: consumers poll here, and polling with a CAS would take
            // the line away from the producer (and the other consumers) on every poll.
            let s = slot.stamp.load(Ordering::Acquire);
            if s == stamp(head, 0, FULL) {
                let claim = stamp(head, me, READING);
                match slot.stamp.compare_exchange_weak(
                    s,
                    claim,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return self.pop_claimed(env, slot, head),
                    Err(_) => {
                        head = self.load_pos(&self.hdr.head)?;
                        continue;
                    }
                }
            }
            let spos = pos_of(s);
            if self.index(spos) != idx {
                return Err(Halt::Corrupted("slot stamp names another slot"));
            }
            if spos == head {
                match phase_of(s) {
                    // Position `head` is not claimed yet: the ring is empty. Answered from the
                    // stamp alone, without reading `tail`: a consumer polling an empty ring would
                    // otherwise pull the tail's line away from the producers on every poll. (The
                    // tail only moves past a position after it was claimed, so in a sound ring
                    // `tail == head` here. A hostile tail ahead of this unclaimed slot just reads
                    // as empty; producers report `Corrupted` when they reach the slot a lap on.)
                    // A push published before a blocked popper's fence is seen here (`sync/wait.rs`).
                    EMPTY if tid_of(s) == 0 => return Err(Halt::Blocked),
                    WRITING => return Err(Halt::Busy { idx, s }),
                    // Taken by another consumer that has not moved the head yet.
                    READING => self.help(&self.hdr.head, head),
                    _ => return Err(Halt::Corrupted("slot stamp has a bad owner")),
                }
            } else if spos == self.prev_lap(head) {
                // The previous lap's consumer is still copying out: nothing is ready here yet.
                return match phase_of(s) {
                    READING => Err(Halt::Blocked),
                    _ => Err(Halt::Corrupted("unconsumed slot behind the head")),
                };
            } else if spos == self.next_lap(head) {
                // Our head is stale, or the slot was reclaimed before its consumer moved the head.
                self.help(&self.hdr.head, head);
            } else {
                let now = self.load_pos(&self.hdr.head)?;
                if now == head {
                    return Err(Halt::Corrupted("slot stamp out of step with the head"));
                }
                head = now;
                continue;
            }
            head = self.load_pos(&self.hdr.head)?;
        }
    }

    // `env` only stops test operations (see `Env::survive`).
    #[cfg_attr(not(test), allow(unused_variables))]
    fn pop_claimed<E: Env>(&self, env: &E, slot: &Slot<T>, head: u64) -> Result<T, Halt> {
        #[cfg(test)]
        if !env.survive(Step::Claimed) {
            return Err(Halt::Killed);
        }
        crate::crash::point("mpmc.pop.claimed");
        self.help(&self.hdr.head, head);
        #[cfg(test)]
        if !env.survive(Step::Advanced) {
            return Err(Halt::Killed);
        }
        crate::crash::point("mpmc.pop.advanced");
        // SAFETY: our READING stamp makes us the only thread that touches this value until we
        // release the slot (see `push_claimed`); the producer's Release store of FULL, which
        // our claim read with Acquire, put the whole value there. `T: Pod`: any bytes are valid.
        let value = slot.value.with(|p| unsafe { p.read() });
        #[cfg(test)]
        if !env.survive(Step::Copied) {
            return Err(Halt::Killed);
        }
        crate::crash::point("mpmc.pop.copied");
        // Release: our copy out happens before the next lap's producer copies in.
        slot.stamp
            .store(stamp(self.next_lap(head), 0, EMPTY), Ordering::Release);
        self.hdr.not_full.notify_one();
        Ok(value)
    }

    fn pop_or_closed<E: Env>(&self, env: &E) -> Result<T, Halt> {
        match self.pop_attempt(env) {
            // Closed counts only once a pop that started after we saw the flag finds nothing.
            Err(Halt::Blocked) if self.is_closed() => match self.pop_attempt(env) {
                Err(Halt::Blocked) => Err(Halt::Closed),
                other => other,
            },
            other => other,
        }
    }

    /// Discards the slot claimed in stamp `s` if its claimer is definitely dead. `true` if the
    /// stamp changed (reclaimed by us or moved on by someone else): try again.
    fn reclaim<E: Env>(&self, env: &E, idx: usize, s: u64) -> bool {
        let tid = tid_of(s);
        if tid == 0 || !matches!(phase_of(s), WRITING | READING) || !env.is_dead(tid) {
            return false;
        }
        let Some(slot) = self.slots.get(idx) else {
            return false;
        };
        let pos = pos_of(s);
        let freed = stamp(self.next_lap(pos), 0, EMPTY);
        if slot
            .stamp
            .compare_exchange(s, freed, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // The dead peer may have died before moving its index past the slot.
            self.help(&self.hdr.head, pos);
            self.help(&self.hdr.tail, pos);
            self.hdr.not_full.notify_all();
            self.hdr.not_empty.notify_all();
        }
        true
    }

    // ----- drivers -----

    /// Re-tries `attempt` while a peer is mid-copy, reclaiming the slot of a dead peer; never
    /// sleeps. `Blocked` means full/empty (or a live peer still holds the slot).
    fn nonblocking<R, E: Env>(
        &self,
        env: &E,
        mut attempt: impl FnMut() -> Result<R, Halt>,
    ) -> Result<R, Halt> {
        // Re-tries against a slot that a peer is copying (the copy takes nanoseconds).
        let mut backoff = Backoff::new();
        loop {
            match attempt() {
                Err(Halt::Busy { idx, s }) => {
                    if !backoff.spin() {
                        if !self.reclaim(env, idx, s) {
                            return Err(Halt::Blocked);
                        }
                        backoff = Backoff::new();
                    }
                }
                other => return other,
            }
        }
    }

    /// Re-tries `attempt`, sleeping on `signal` while it is blocked, until it succeeds, fails
    /// for good, or `deadline` passes (`Blocked`). Behind a slot claimed by a peer, checks every
    /// [`STALL`] whether the peer died and reclaims its slot.
    fn blocking<R, E: Env>(
        &self,
        env: &E,
        signal: &Signal<Asymmetric>,
        deadline: Option<Deadline>,
        mut attempt: impl FnMut() -> Result<R, Halt>,
    ) -> Result<R, Halt> {
        let mut backoff = Backoff::new();
        // The stamp we are stuck behind, and when to next check its claimer.
        let mut stall: Option<(u64, Deadline)> = None;
        loop {
            match attempt() {
                // Re-try for a while before sleeping, also on a full or empty ring: announcing
                // a sleeper costs a `membarrier` (see `sync/wait.rs`), more than a short wait.
                Err(Halt::Busy { .. } | Halt::Blocked) if backoff.spin() => continue,
                Err(Halt::Busy { .. } | Halt::Blocked) => {}
                other => return other,
            }
            let seq = signal.register();
            // Re-try after announcing ourselves: a publication from now on wakes us.
            let (until, on_timeout) = match attempt() {
                // No re-checks (a model whose peers never die): the claimer will publish and
                // wake us, so sleep like on an empty ring; a lost wake-up then deadlocks.
                Err(Halt::Busy { .. }) if env.recheck().is_none() => (deadline, Expiry::Deadline),
                Err(Halt::Busy { idx, s }) => {
                    let check = match stall {
                        Some((prev, at)) if prev == s => at,
                        _ => Deadline::after(STALL),
                    };
                    stall = Some((s, check));
                    match deadline {
                        Some(d) if d <= check => (Some(d), Expiry::Deadline),
                        _ => (Some(check), Expiry::Stall { idx, s }),
                    }
                }
                Err(Halt::Blocked) => {
                    stall = None;
                    match (deadline, env.recheck().map(Deadline::after)) {
                        (Some(d), Some(r)) if d <= r => (Some(d), Expiry::Deadline),
                        (d, None) => (d, Expiry::Deadline),
                        (_, Some(r)) => (Some(r), Expiry::Recheck),
                    }
                }
                other => {
                    signal.unregister();
                    return other;
                }
            };
            let woken = signal.sleep(seq, until);
            signal.unregister();
            if !woken {
                match on_timeout {
                    // One last look: a peer killed between publishing and waking us left its
                    // value (or room) there without a wake-up.
                    Expiry::Deadline => {
                        return match attempt() {
                            Err(Halt::Busy { .. }) => Err(Halt::Blocked),
                            other => other,
                        };
                    }
                    Expiry::Recheck => {}
                    Expiry::Stall { idx, s } => {
                        if !self.reclaim(env, idx, s) {
                            stall = Some((s, Deadline::after(STALL)));
                        }
                    }
                }
                // The model's timed wait returns at once: let the peer run.
                #[cfg(multiproc_loom)]
                crate::loom::thread::yield_now();
            }
        }
    }

    // ----- operations (generic over the environment for models) -----

    /// Pushes `value`, waiting per `wait` while the ring is full.
    ///
    /// # Errors
    /// `Full(value)` (not waiting), `Timeout(value)`, `Closed(value)` or `Corrupted`.
    #[inline]
    pub(crate) fn push_in<E: Env>(
        &self,
        env: &E,
        value: T,
        wait: Wait,
    ) -> Result<(), PushError<T>> {
        // Two functions, not one: a caller's constant `wait` then inlines just its own path,
        // and the non-blocking one stays as small as it was.
        match wait {
            Wait::No => self.try_push_in(env, value),
            Wait::Until(deadline) => self.push_until_in(env, value, deadline),
        }
    }

    fn try_push_in<E: Env>(&self, env: &E, value: T) -> Result<(), PushError<T>> {
        self.nonblocking(env, || self.push_attempt(env, &value))
            .map_err(|h| push_error(h, value, PushError::Full))
    }

    fn push_until_in<E: Env>(
        &self,
        env: &E,
        value: T,
        deadline: Option<Deadline>,
    ) -> Result<(), PushError<T>> {
        self.blocking(env, &self.hdr.not_full, deadline, || {
            self.push_attempt(env, &value)
        })
        .map_err(|h| push_error(h, value, PushError::Timeout))
    }

    /// Pops, waiting per `wait` while the ring is empty.
    ///
    /// # Errors
    /// `Empty` (not waiting), `Timeout`, `Closed` (closed and drained) or `Corrupted`.
    #[inline]
    pub(crate) fn pop_in<E: Env>(&self, env: &E, wait: Wait) -> Result<T, PopError> {
        match wait {
            Wait::No => self.try_pop_in(env),
            Wait::Until(deadline) => self.pop_until_in(env, deadline),
        }
    }

    fn try_pop_in<E: Env>(&self, env: &E) -> Result<T, PopError> {
        self.nonblocking(env, || self.pop_or_closed(env))
            .map_err(|h| pop_error(h, PopError::Empty))
    }

    fn pop_until_in<E: Env>(&self, env: &E, deadline: Option<Deadline>) -> Result<T, PopError> {
        self.blocking(env, &self.hdr.not_empty, deadline, || {
            self.pop_or_closed(env)
        })
        .map_err(|h| pop_error(h, PopError::Timeout))
    }

    /// One push attempt for models and fault-injection tests: `Err(None)` if the test
    /// environment stopped it, `Err(Some(e))` for any other failure.
    #[cfg(test)]
    pub(crate) fn try_push_step<E: Env>(
        &self,
        env: &E,
        value: T,
    ) -> Result<(), Option<PushError<T>>> {
        match self.nonblocking(env, || self.push_attempt(env, &value)) {
            Ok(()) => Ok(()),
            Err(Halt::Killed) => Err(None),
            Err(h) => Err(Some(push_error(h, value, PushError::Full))),
        }
    }

    /// One pop attempt for models and fault-injection tests: `Err(None)` if stopped.
    #[cfg(test)]
    pub(crate) fn try_pop_step<E: Env>(&self, env: &E) -> Result<T, Option<PopError>> {
        match self.nonblocking(env, || self.pop_or_closed(env)) {
            Ok(v) => Ok(v),
            Err(Halt::Killed) => Err(None),
            Err(h) => Err(Some(pop_error(h, PopError::Empty))),
        }
    }

    // ----- state -----

    super::ring::ring_state!(slots);

    /// The number of values in the ring, approximately (it changes as you look).
    pub(crate) fn len(&self) -> usize {
        fill(self.hdr, self.cap, self.one_lap) as usize
    }
}

/// A ring on the heap, for tests, models and fuzzing.
#[cfg(any(test, fuzzing))]
pub(crate) struct HeapMpmc<T> {
    #[cfg(not(multiproc_loom))]
    region: super::HeapRegion,
    /// Where the slots start and how many, checked by one attach at creation: later accesses
    /// do not re-read the (possibly scribbled-on) header.
    #[cfg(not(multiproc_loom))]
    slots_at: Place,
    #[cfg(multiproc_loom)]
    hdr: Box<Header>,
    #[cfg(multiproc_loom)]
    slots: Box<[Slot<T>]>,
    _t: std::marker::PhantomData<T>,
}

#[cfg(any(test, fuzzing))]
impl<T: Pod + Send> HeapMpmc<T> {
    /// An empty ring of `capacity`.
    pub(crate) fn new(capacity: usize) -> Self {
        Self::near_wrap(capacity, 0)
    }

    /// An empty ring whose positions start `laps` laps before the 40-bit wrap-around
    /// (`0`: at position 0).
    #[cfg(not(multiproc_loom))]
    pub(crate) fn near_wrap(capacity: usize, laps: u64) -> Self {
        let size = std::mem::size_of::<T>();
        let align = std::mem::align_of::<T>();
        let len = RawMpmc::bytes_for(capacity, size, align).expect("bad capacity");
        let region = super::HeapRegion::new(len, RawMpmc::align_for(align));
        let one_lap = capacity.next_power_of_two() as u64;
        let start = (POS_MASK + 1).wrapping_sub(laps * one_lap) & POS_MASK;
        // SAFETY: the region is fresh, exclusively ours, sized and aligned for this ring.
        unsafe { RawMpmc::init_at(region.as_ptr(), capacity, size, align, start) }
            .expect("init failed");
        // SAFETY: as above; attach validates what init wrote.
        let place = unsafe { RawMpmc::attach::<T>(region.as_ptr(), region.len()) };
        Self {
            slots_at: place.expect("attach"),
            region,
            _t: std::marker::PhantomData,
        }
    }

    #[cfg(multiproc_loom)]
    pub(crate) fn near_wrap(capacity: usize, laps: u64) -> Self {
        let one_lap = capacity.next_power_of_two() as u64;
        let start = (POS_MASK + 1).wrapping_sub(laps * one_lap) & POS_MASK;
        let hdr = Box::new(Header::new(capacity, 0, 1, 0, start));
        let slots = (0..capacity as u64)
            .map(|i| Slot {
                stamp: AtomicU64::new(stamp(start + i, 0, EMPTY)),
                value: UnsafeCell::new(T::zeroed()),
            })
            .collect();
        Self {
            hdr,
            slots,
            _t: std::marker::PhantomData,
        }
    }

    /// The ring, as attached at creation.
    #[cfg(not(multiproc_loom))]
    pub(crate) fn ring(&self) -> MpmcRef<'_, T> {
        // SAFETY: `slots_at` is the place of the ring `new` attached to this region, which
        // lives as long as `self`.
        unsafe { MpmcRef::at(self.region.as_ptr(), self.slots_at) }
    }

    #[cfg(multiproc_loom)]
    pub(crate) fn ring(&self) -> MpmcRef<'_, T> {
        let one_lap = (self.slots.len() as u64).next_power_of_two();
        MpmcRef::from_parts(&self.hdr, &self.slots, one_lap)
    }

    /// The region, to scribble on.
    #[cfg(not(multiproc_loom))]
    pub(crate) fn region(&self) -> &super::HeapRegion {
        &self.region
    }

    /// Bytes of shared state a corruption test may overwrite: header words and stamps (not the
    /// values, which are the user's data and may hold anything).
    #[cfg(not(multiproc_loom))]
    pub(crate) fn state_offsets(&self) -> Vec<usize> {
        let l = layout(
            self.ring().capacity(),
            std::mem::size_of::<T>(),
            std::mem::align_of::<T>(),
        )
        .expect("layout");
        let mut v: Vec<usize> = (0..std::mem::size_of::<Header>()).collect();
        for i in 0..self.ring().capacity() {
            let at = l.slots_offset + i * l.slot_size;
            v.extend(at..at + 8);
        }
        v
    }
}

#[cfg(all(test, not(multiproc_loom)))]
#[path = "mpmc_tests.rs"]
mod tests;
