//! The single-producer single-consumer ring, in place in a (shared) memory region.
//!
//! Lamport's ring with cached indices (as in Rigtorp's `SPSCQueue` and the Linux kernel's
//! `kfifo`): the producer owns `tail`, the consumer owns `head`, and each side keeps a private
//! copy of the other's index, re-reading the shared one only when its copy says full or empty,
//! so in steady state a side touches the other's cache line once per batch, not once per value.
//! Indices run over `[0, 2 * capacity)`, so full (`tail - head == capacity`) and empty
//! (`tail == head`) differ without a spare slot, and any capacity works.
//!
//! # Roles
//!
//! Each end is claimed with a CAS on a role word holding the claimer's process identity (pid and
//! start time). A second claim, from any process, fails with [`RoleError::Taken`]; a role whose
//! holder is definitely dead (gone, a zombie, or its pid reused by a newer process) can be
//! claimed again, and the new holder resumes from the shared index. An endpoint may move between
//! the threads of its process; a child made by `fork` must not use an endpoint copied from its
//! parent (it would be a second producer the role word cannot see).
//!
//! # What a killed peer can lose
//!
//! Values become visible to the other side only when an index is stored, after the copy. A
//! producer killed inside `push`/`push_slice` loses exactly the values of that call that it had
//! not yet published (none are seen torn or twice). A consumer killed inside `pop`/`pop_into`
//! before it stored `head` loses nothing: the next consumer gets those values again (the dead one
//! never returned them); killed after storing `head`, it loses the values of that call.

use super::CachePadded;
use super::error::{BatchError, PopError, PushError, RoleError};
#[cfg(test)]
use super::peer::Step;
use super::peer::{Env, OsEnv};
#[cfg(not(multiproc_loom))]
use super::ring::{self, Extent, Fill};
use super::ring::{Common, Halt, KIND_SPSC, Place, RingHeader, Wait, pop_error, push_error};
use crate::loom::UnsafeCell;
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::sync::wait::{Asymmetric, Signal};
use bytemuck::Pod;

/// Largest capacity (indices run to twice this).
pub(crate) const MAX_CAPACITY: usize = 1 << 40;

/// A free role word.
const NO_HOLDER: u64 = 0;

/// Who holds each end: [`NO_HOLDER`] or a process identity (see `Env::process_identity`).
#[repr(C)]
struct Roles {
    producer: AtomicU64,
    consumer: AtomicU64,
}

/// The ring's header; the slots follow it at the common header's data offset.
#[repr(C)]
pub(crate) struct Header {
    common: CachePadded<Common>,
    roles: CachePadded<Roles>,
    /// Next index to write, in `[0, 2 * capacity)`; written by the producer only.
    tail: CachePadded<AtomicU64>,
    /// Next index to read, in `[0, 2 * capacity)`; written by the consumer only.
    head: CachePadded<AtomicU64>,
    /// Both signals use [`Asymmetric`] fences: a push or pop publishes with a plain store, and
    /// a full fence after it would wait for that store on every operation.
    not_empty: CachePadded<Signal<Asymmetric>>,
    not_full: CachePadded<Signal<Asymmetric>>,
}

impl Header {
    fn new(capacity: usize, elem_size: usize, elem_align: usize, slots_offset: usize) -> Self {
        Self {
            common: CachePadded(Common::new(
                KIND_SPSC,
                capacity,
                elem_size,
                elem_align,
                slots_offset,
            )),
            roles: CachePadded(Roles {
                producer: AtomicU64::new(NO_HOLDER),
                consumer: AtomicU64::new(NO_HOLDER),
            }),
            tail: CachePadded(AtomicU64::new(0)),
            head: CachePadded(AtomicU64::new(0)),
            not_empty: CachePadded(Signal::new()),
            not_full: CachePadded(Signal::new()),
        }
    }
}

// SAFETY: `#[repr(C)]`, atomics only: valid for any bit pattern.
unsafe impl RingHeader for Header {
    const KIND: u64 = KIND_SPSC;
    const NOT_ONE: &'static str = "not an initialised SPSC ring";
    fn common(&self) -> &Common {
        &self.common
    }
}

#[cfg(not(multiproc_loom))]
#[derive(Clone, Copy, Debug)]
struct Layout {
    slots_offset: usize,
    total: usize,
    align: usize,
}

#[cfg(not(multiproc_loom))]
fn layout(capacity: usize, elem_size: usize, elem_align: usize) -> Option<Layout> {
    use super::round_up;
    if capacity == 0 || capacity > MAX_CAPACITY || !elem_align.is_power_of_two() {
        return None;
    }
    if elem_size % elem_align != 0 {
        return None;
    }
    let align = elem_align.max(std::mem::align_of::<Header>());
    let slots_offset = round_up(std::mem::size_of::<Header>(), align)?;
    let total = slots_offset.checked_add(elem_size.checked_mul(capacity)?)?;
    if total > isize::MAX as usize {
        return None;
    }
    Some(Layout {
        slots_offset,
        total,
        align,
    })
}

/// Entry points over a raw region: size it, initialise it, attach to it.
pub(crate) struct RawSpsc;

#[cfg(not(multiproc_loom))]
impl RawSpsc {
    /// Bytes a ring of `capacity` elements needs, or `None` for a capacity of 0 or above
    /// [`MAX_CAPACITY`], or an overflow.
    pub(crate) fn bytes_for(capacity: usize, elem_size: usize, elem_align: usize) -> Option<usize> {
        layout(capacity, elem_size, elem_align).map(|l| l.total)
    }

    /// The alignment the region must have (at least 128, the header's).
    pub(crate) fn align_for(elem_align: usize) -> usize {
        elem_align.max(std::mem::align_of::<Header>())
    }

    /// Initialises an empty, open ring with both roles free at `ptr`.
    ///
    /// # Safety
    /// - `ptr` is valid for writes of `bytes_for(capacity, elem_size, elem_align)` bytes and
    ///   aligned to `align_for(elem_align)`;
    /// - nobody else accesses the region during the call.
    ///
    /// # Errors
    /// Invalid parameters (see [`bytes_for`](Self::bytes_for)).
    pub(crate) unsafe fn init(
        ptr: *mut u8,
        capacity: usize,
        elem_size: usize,
        elem_align: usize,
    ) -> Result<(), &'static str> {
        let l = layout(capacity, elem_size, elem_align).ok_or("invalid ring parameters")?;
        debug_assert!(ptr as usize % l.align == 0);
        let hdr = Header::new(capacity, elem_size, elem_align, l.slots_offset);
        // SAFETY: the caller gives us `l.total` writable, suitably aligned bytes at `ptr` and
        // exclusive access.
        unsafe { ring::init(ptr, l.total, hdr) };
        Ok(())
    }

    /// How full the ring at `ptr` is, without knowing its element type (inspection tools).
    ///
    /// # Safety
    /// `ptr` is valid for reads of `len` bytes while the call runs; other processes may write
    /// them at any time. Only atomic loads are made, so a read-only mapping is enough.
    ///
    /// # Errors
    /// A misaligned or short region, or a header that is not an SPSC ring's.
    pub(crate) unsafe fn peek(ptr: *mut u8, len: usize) -> Result<Fill, &'static str> {
        // SAFETY: the caller's contract.
        let (hdr, cap) =
            unsafe { ring::peek_header::<Header>(ptr, len, align_of::<Header>(), MAX_CAPACITY) }?;
        Ok(Fill {
            len: fill(hdr, cap as u64),
            capacity: cap as u64,
            closed: hdr.common.is_closed(),
        })
    }

    /// Attaches to a ring initialised by [`init`](Self::init) for `T` in `len` bytes; returns
    /// where its slots lie (for [`SpscRef::at`]).
    ///
    /// # Safety
    /// - `ptr` is valid for reads and writes of `len` initialised bytes while the call runs;
    ///   other processes may write it at any time.
    ///
    /// # Errors
    /// A misaligned or short region, a header that is not an SPSC ring's, or a ring made for
    /// another element size or alignment.
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
        // Never inside a notify: registering can wait for an RCU grace period (milliseconds).
        crate::sys::membarrier::prepare();
        Ok(place)
    }
}

/// The number of values in the ring of `hdr` with capacity `cap`, approximately (loads only).
fn fill(hdr: &Header, cap: u64) -> u64 {
    let span = 2 * cap;
    let head = hdr.head.load(Ordering::Acquire);
    let tail = hdr.tail.load(Ordering::Acquire);
    if head >= span || tail >= span {
        return 0;
    }
    let dist = if tail >= head {
        tail - head
    } else {
        tail + span - head
    };
    dist.min(cap)
}

/// A ring attached in place; `Copy`. Pushing and popping go through the [`SpscProducer`] and
/// [`SpscConsumer`] endpoints it hands out, one of each at a time.
#[derive(Clone, Copy)]
pub(crate) struct SpscRef<'a, T> {
    hdr: &'a Header,
    slots: &'a [UnsafeCell<T>],
    /// Capacity, copied at attach.
    cap: u64,
    /// `2 * cap`, computed at attach: indices run over `[0, span)`, and the hot paths compare
    /// against it on every call.
    span: u64,
}

// SAFETY: shared words are atomics; slot values are written only by the producer-role holder
// and read only by the consumer-role holder, each only on its side of the published indices.
unsafe impl<T: Pod + Send> Send for SpscRef<'_, T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Pod + Send> Sync for SpscRef<'_, T> {}

impl<'a, T: Pod + Send> SpscRef<'a, T> {
    /// The ring at `place` in the region at `base`, without re-reading its header.
    ///
    /// # Safety
    /// - `place` is what [`RawSpsc::attach::<T>`](RawSpsc::attach) returned for `base`;
    /// - the region stays mapped for `'a`.
    pub(crate) unsafe fn at(base: *mut u8, place: Place) -> Self {
        // SAFETY: `attach` checked that `cap` values of `T` from the offset (aligned for `T`)
        // lie in the region (caller); a `Pod` in a cell is valid for any bytes, and values are
        // only accessed through the cells, by the holder of the matching role.
        let (hdr, slots) = unsafe { place.parts(base) };
        Self::from_parts(hdr, slots)
    }

    fn from_parts(hdr: &'a Header, slots: &'a [UnsafeCell<T>]) -> Self {
        Self {
            hdr,
            slots,
            cap: slots.len() as u64,
            span: 2 * slots.len() as u64,
        }
    }

    /// Distance from `from` to `to` going forward, for indices in `[0, 2 * cap)`.
    #[inline]
    fn dist(&self, to: u64, from: u64) -> u64 {
        if to >= from {
            to - from
        } else {
            to + self.span - from
        }
    }

    /// `i` moved forward by `n <= cap`.
    #[inline]
    fn advance(&self, i: u64, n: u64) -> u64 {
        let j = i + n;
        if j >= self.span { j - self.span } else { j }
    }

    /// The slot of index `i < 2 * cap`.
    #[inline]
    fn slot(&self, i: u64) -> &UnsafeCell<T> {
        let k = if i >= self.cap { i - self.cap } else { i };
        &self.slots[k as usize]
    }

    /// Reads the other side's index and checks it against ours (`tail - head` in `0..=cap`).
    #[inline]
    fn read_index(&self, word: &AtomicU64, ours: u64, ours_is_tail: bool) -> Result<u64, Halt> {
        // Acquire: pairs with the other side's Release store, so the values it published (or
        // the slots it freed) are ours to read (or overwrite).
        let i = word.load(Ordering::Acquire);
        let used = if ours_is_tail {
            i < self.span && self.dist(ours, i) <= self.cap
        } else {
            i < self.span && self.dist(i, ours) <= self.cap
        };
        if !used {
            return Err(Halt::Corrupted("index out of range"));
        }
        Ok(i)
    }

    fn claim<E: Env>(&self, word: &AtomicU64, env: &E) -> Result<u64, RoleError> {
        let me = env.process_identity();
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if cur != NO_HOLDER && !env.process_dead(cur) {
                return Err(RoleError::Taken);
            }
            // Acquire: the previous holder's last index store is visible to us.
            match word.compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(me),
                Err(now) => cur = now,
            }
        }
    }

    /// Claims the end whose role word is `role` and whose own index is `ours` (`tail` for the
    /// producer), and reads both indices; lets the role go again if either is out of range.
    fn claim_end<E: Env>(
        &self,
        env: &E,
        role: &AtomicU64,
        [ours, theirs]: [&AtomicU64; 2],
        ours_is_tail: bool,
    ) -> Result<EndState, RoleError> {
        let id = self.claim(role, env)?;
        let (ours_bad, theirs_bad) = match ours_is_tail {
            true => ("tail out of range", "head out of range"),
            false => ("head out of range", "tail out of range"),
        };
        let ours = ours.load(Ordering::Acquire);
        if ours >= self.span {
            release_role(role, id);
            return Err(RoleError::Corrupted(ours_bad));
        }
        match self.read_index(theirs, ours, ours_is_tail) {
            Ok(theirs) => Ok(EndState { id, ours, theirs }),
            Err(_) => {
                release_role(role, id);
                Err(RoleError::Corrupted(theirs_bad))
            }
        }
    }

    /// Claims the producer end.
    ///
    /// # Errors
    /// [`RoleError::Taken`] if a live process holds it; `Corrupted` if the indices are garbage.
    pub(crate) fn producer(&self) -> Result<SpscProducer<'a, T>, RoleError> {
        self.producer_in(&OsEnv)
    }

    pub(crate) fn producer_in<E: Env>(&self, env: &E) -> Result<SpscProducer<'a, T>, RoleError> {
        let (role, indices) = (&self.hdr.roles.producer, [&*self.hdr.tail, &*self.hdr.head]);
        let state = self.claim_end(env, role, indices, true)?;
        Ok(SpscProducer::resume(*self, state))
    }

    /// Claims the consumer end.
    ///
    /// # Errors
    /// [`RoleError::Taken`] if a live process holds it; `Corrupted` if the indices are garbage.
    pub(crate) fn consumer(&self) -> Result<SpscConsumer<'a, T>, RoleError> {
        self.consumer_in(&OsEnv)
    }

    pub(crate) fn consumer_in<E: Env>(&self, env: &E) -> Result<SpscConsumer<'a, T>, RoleError> {
        let (role, indices) = (&self.hdr.roles.consumer, [&*self.hdr.head, &*self.hdr.tail]);
        let state = self.claim_end(env, role, indices, false)?;
        Ok(SpscConsumer::resume(*self, state))
    }

    super::ring::ring_state!(slots);

    /// The number of values in the ring, approximately.
    pub(crate) fn len(&self) -> usize {
        fill(self.hdr, self.cap) as usize
    }
}

/// The producer end: the only writer of `tail` and of the free slots.
pub(crate) struct SpscProducer<'a, T: Pod + Send> {
    ring: SpscRef<'a, T>,
    /// Our role word value, to release it.
    id: u64,
    /// Our index (the shared one is only ever written from here).
    tail: u64,
    /// The consumer's index as last read.
    head: u64,
}

/// An end's state while no reference to the ring is held: its role word value, its own index
/// and the other side's index as last read. The role stays claimed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EndState {
    id: u64,
    ours: u64,
    theirs: u64,
}

/// A claimed end that can let go of its ring reference (keeping the role) and resume later.
pub(crate) trait End<'a, T: Pod + Send>: Sized {
    /// The end `state` (from [`suspend`](Self::suspend)) on `ring`.
    fn resume(ring: SpscRef<'a, T>, state: EndState) -> Self;
    /// Lets go of the ring reference but keeps the role (dropping the end releases it).
    fn suspend(self) -> EndState;
}

/// Runs `f` on the end that `state` resumes on `ring`, keeping in `state` what it learnt of the
/// indices.
#[inline]
pub(crate) fn with_end<'a, T: Pod + Send, E: End<'a, T>, R>(
    ring: SpscRef<'a, T>,
    state: &mut EndState,
    f: impl FnOnce(&mut E) -> R,
) -> R {
    let mut end = E::resume(ring, *state);
    let r = f(&mut end);
    *state = end.suspend();
    r
}

/// Releases the role `state` holds on `ring`.
pub(crate) fn release_end<'a, T: Pod + Send, E: End<'a, T>>(ring: SpscRef<'a, T>, state: EndState) {
    drop(E::resume(ring, state));
}

/// [`End`] for the end `$end`, whose own index is its field `$ours` and the other side's, as
/// last read, `$theirs`.
macro_rules! end_impl {
    ($end:ident, $ours:ident, $theirs:ident) => {
        impl<'a, T: Pod + Send> End<'a, T> for $end<'a, T> {
            fn resume(ring: SpscRef<'a, T>, state: EndState) -> Self {
                Self {
                    ring,
                    id: state.id,
                    $ours: state.ours,
                    $theirs: state.theirs,
                }
            }

            fn suspend(self) -> EndState {
                let state = EndState {
                    id: self.id,
                    ours: self.$ours,
                    theirs: self.$theirs,
                };
                // The role stays claimed: no release.
                std::mem::forget(self);
                state
            }
        }
    };
}

end_impl!(SpscProducer, tail, head);
end_impl!(SpscConsumer, head, tail);

impl<T: Pod + Send> SpscProducer<'_, T> {
    /// Free slots, re-reading the consumer's index if the cached one shows fewer than `want`.
    #[inline]
    fn room(&mut self, want: u64) -> Result<u64, Halt> {
        let free = self.ring.cap - self.ring.dist(self.tail, self.head);
        if free >= want {
            return Ok(free);
        }
        self.head = self.ring.read_index(&self.ring.hdr.head, self.tail, true)?;
        Ok(self.ring.cap - self.ring.dist(self.tail, self.head))
    }

    #[inline]
    fn publish(&mut self, n: u64) {
        self.tail = self.ring.advance(self.tail, n);
        // Release: the values copied in are visible to the consumer that reads the new tail.
        self.ring.hdr.tail.store(self.tail, Ordering::Release);
        crate::crash::point("spsc.publish.before_wake");
        self.ring.hdr.not_empty.notify_one();
    }

    #[inline(always)]
    fn push_attempt(&mut self, value: &T) -> Result<(), Halt> {
        if self.ring.is_closed() {
            return Err(Halt::Closed);
        }
        if self.room(1)? == 0 {
            return Err(Halt::Blocked);
        }
        let slot = self.ring.slot(self.tail);
        // SAFETY: the slot at `tail` is free (the consumer has moved past it, per the index we
        // read with Acquire) and we are the only producer (role word), so nobody else touches it
        // until we publish.
        slot.with_mut(|p| unsafe { p.write(*value) });
        crate::crash::point("spsc.push.copied");
        self.publish(1);
        Ok(())
    }

    /// Pushes without blocking.
    ///
    /// # Errors
    /// `Full(value)`, `Closed(value)` or `Corrupted`.
    #[inline]
    fn try_push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.push_attempt(&value)
            .map_err(|h| push_error(h, value, PushError::Full))
    }

    /// Pushes, sleeping while the ring is full, until `deadline` (`None`: no limit).
    ///
    /// # Errors
    /// `Timeout(value)`, `Closed(value)` or `Corrupted`.
    #[inline(never)]
    fn push_deadline(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), PushError<T>> {
        let signal = &self.ring.hdr.not_full;
        signal
            .block_on(
                deadline,
                true,
                || self.push_attempt(&value),
                |h| *h == Halt::Blocked,
            )
            .map_err(|h| push_error(h.unwrap_or(Halt::Blocked), value, PushError::Timeout))
    }

    /// Pushes `value`, waiting per `wait` while the ring is full.
    ///
    /// # Errors
    /// `Full(value)` (not waiting), `Timeout(value)`, `Closed(value)` or `Corrupted`.
    #[inline(always)]
    pub(crate) fn push_in(&mut self, value: T, wait: Wait) -> Result<(), PushError<T>> {
        match wait {
            Wait::No => self.try_push(value),
            Wait::Until(deadline) => self.push_deadline(value, deadline),
        }
    }

    /// Copies as many values from the front of `src` as fit, publishing them together; returns
    /// how many (0 if the ring is full).
    ///
    /// # Errors
    /// `Closed` or `Corrupted`.
    pub(crate) fn push_slice(&mut self, src: &[T]) -> Result<usize, BatchError> {
        self.push_slice_in(&OsEnv, src)
    }

    // `env` only stops test operations (see `Env::survive`).
    #[cfg_attr(not(test), allow(unused_variables))]
    pub(crate) fn push_slice_in<E: Env>(
        &mut self,
        env: &E,
        src: &[T],
    ) -> Result<usize, BatchError> {
        if self.ring.is_closed() {
            return Err(BatchError::Closed);
        }
        let want = src.len().min(self.ring.cap as usize) as u64;
        let n = self.room(want).map_err(batch_error)?.min(want);
        let mut i = self.tail;
        for v in &src[..n as usize] {
            // SAFETY: as in `push_attempt`: the `n` slots from `tail` are free and ours.
            self.ring.slot(i).with_mut(|p| unsafe { p.write(*v) });
            i = self.ring.advance(i, 1);
        }
        #[cfg(test)]
        if !env.survive(Step::Copied) {
            return Err(BatchError::Corrupted("operation stopped by a test hook"));
        }
        crate::crash::point("spsc.push_slice.copied");
        if n > 0 {
            self.publish(n);
        }
        Ok(n as usize)
    }
}

impl<T: Pod + Send> Drop for SpscProducer<'_, T> {
    fn drop(&mut self) {
        // Our last tail store is visible to the next producer that claims the role.
        release_role(&self.ring.hdr.roles.producer, self.id);
    }
}

/// The consumer end: the only writer of `head` and reader of the full slots.
pub(crate) struct SpscConsumer<'a, T: Pod + Send> {
    ring: SpscRef<'a, T>,
    /// Our role word value, to release it.
    id: u64,
    /// Our index.
    head: u64,
    /// The producer's index as last read.
    tail: u64,
}

impl<T: Pod + Send> SpscConsumer<'_, T> {
    /// Values ready, re-reading the producer's index if the cached one shows fewer than `want`.
    #[inline]
    fn ready(&mut self, want: u64) -> Result<u64, Halt> {
        let have = self.ring.dist(self.tail, self.head);
        if have >= want {
            return Ok(have);
        }
        self.tail = self
            .ring
            .read_index(&self.ring.hdr.tail, self.head, false)?;
        let have = self.ring.dist(self.tail, self.head);
        if have == 0 && self.ring.is_closed() {
            // Closed counts only if nothing was published before the flag we saw.
            self.tail = self
                .ring
                .read_index(&self.ring.hdr.tail, self.head, false)?;
            if self.tail == self.head {
                return Err(Halt::Closed);
            }
            return Ok(self.ring.dist(self.tail, self.head));
        }
        Ok(have)
    }

    #[inline]
    fn release(&mut self, n: u64) {
        self.head = self.ring.advance(self.head, n);
        // Release: our copies out happen before the producer overwrites these slots.
        self.ring.hdr.head.store(self.head, Ordering::Release);
        self.ring.hdr.not_full.notify_one();
    }

    #[inline(always)]
    fn pop_attempt(&mut self) -> Result<T, Halt> {
        if self.ready(1)? == 0 {
            return Err(Halt::Blocked);
        }
        // SAFETY: the slot at `head` holds a value the producer published (tail read with
        // Acquire), and we are the only consumer (role word), so nobody writes it until we
        // release it. `T: Pod`: any bytes are a valid value.
        let v = self.ring.slot(self.head).with(|p| unsafe { p.read() });
        crate::crash::point("spsc.pop.copied");
        self.release(1);
        Ok(v)
    }

    /// Pops without blocking.
    ///
    /// # Errors
    /// `Empty`, `Closed` (closed and drained) or `Corrupted`.
    #[inline]
    fn try_pop(&mut self) -> Result<T, PopError> {
        self.pop_attempt()
            .map_err(|h| pop_error(h, PopError::Empty))
    }

    /// Pops, sleeping while the ring is empty, until `deadline` (`None`: no limit).
    ///
    /// # Errors
    /// `Timeout`, `Closed` (closed and drained) or `Corrupted`.
    #[inline(never)]
    fn pop_deadline(&mut self, deadline: Option<Deadline>) -> Result<T, PopError> {
        let signal = &self.ring.hdr.not_empty;
        signal
            .block_on(
                deadline,
                true,
                || self.pop_attempt(),
                |h| *h == Halt::Blocked,
            )
            .map_err(|h| pop_error(h.unwrap_or(Halt::Blocked), PopError::Timeout))
    }

    /// Pops, waiting per `wait` while the ring is empty.
    ///
    /// # Errors
    /// `Empty` (not waiting), `Timeout`, `Closed` (closed and drained) or `Corrupted`.
    #[inline(always)]
    pub(crate) fn pop_in(&mut self, wait: Wait) -> Result<T, PopError> {
        match wait {
            Wait::No => self.try_pop(),
            Wait::Until(deadline) => self.pop_deadline(deadline),
        }
    }

    /// Moves as many values as are ready (up to `dst.len()`) into the front of `dst`, releasing
    /// their slots together; returns how many (0 if the ring is empty).
    ///
    /// # Errors
    /// `Closed` (closed and drained, with `dst` non-empty) or `Corrupted`.
    pub(crate) fn pop_into(&mut self, dst: &mut [T]) -> Result<usize, BatchError> {
        self.pop_into_in(&OsEnv, dst)
    }

    // `env` only stops test operations (see `Env::survive`).
    #[cfg_attr(not(test), allow(unused_variables))]
    pub(crate) fn pop_into_in<E: Env>(
        &mut self,
        env: &E,
        dst: &mut [T],
    ) -> Result<usize, BatchError> {
        if dst.is_empty() {
            return Ok(0);
        }
        let want = dst.len().min(self.ring.cap as usize) as u64;
        let n = self.ready(want).map_err(batch_error)?.min(want);
        let mut i = self.head;
        for d in &mut dst[..n as usize] {
            // SAFETY: as in `pop_attempt`: the `n` slots from `head` are published and ours.
            *d = self.ring.slot(i).with(|p| unsafe { p.read() });
            i = self.ring.advance(i, 1);
        }
        #[cfg(test)]
        if !env.survive(Step::Copied) {
            return Err(BatchError::Corrupted("operation stopped by a test hook"));
        }
        crate::crash::point("spsc.pop_into.copied");
        if n > 0 {
            self.release(n);
        }
        Ok(n as usize)
    }
}

impl<T: Pod + Send> Drop for SpscConsumer<'_, T> {
    fn drop(&mut self) {
        release_role(&self.ring.hdr.roles.consumer, self.id);
    }
}

/// Frees the role word `role` if it still holds `id`. Release: the holder's last index store is
/// visible to the next one that claims the role.
fn release_role(role: &AtomicU64, id: u64) {
    let _ = role.compare_exchange(id, NO_HOLDER, Ordering::Release, Ordering::Relaxed);
}

fn batch_error(h: Halt) -> BatchError {
    match h {
        Halt::Closed => BatchError::Closed,
        Halt::Corrupted(what) => BatchError::Corrupted(what),
        Halt::Blocked | Halt::Busy { .. } => BatchError::Corrupted("unexpected ring state"),
        #[cfg(test)]
        Halt::Killed => BatchError::Corrupted("operation stopped by a test hook"),
    }
}

/// A ring on the heap, for tests, models and fuzzing.
#[cfg(any(test, fuzzing))]
pub(crate) struct HeapSpsc<T> {
    #[cfg(not(multiproc_loom))]
    region: super::HeapRegion,
    /// Where the slots start and how many, checked by one attach at creation: later accesses
    /// do not re-read the (possibly scribbled-on) header.
    #[cfg(not(multiproc_loom))]
    slots_at: Place,
    #[cfg(multiproc_loom)]
    hdr: Box<Header>,
    #[cfg(multiproc_loom)]
    slots: Box<[UnsafeCell<T>]>,
    _t: std::marker::PhantomData<T>,
}

#[cfg(any(test, fuzzing))]
impl<T: Pod + Send> HeapSpsc<T> {
    /// An empty ring of `capacity`.
    #[cfg(not(multiproc_loom))]
    pub(crate) fn new(capacity: usize) -> Self {
        let size = std::mem::size_of::<T>();
        let align = std::mem::align_of::<T>();
        let len = RawSpsc::bytes_for(capacity, size, align).expect("bad capacity");
        let region = super::HeapRegion::new(len, RawSpsc::align_for(align));
        // SAFETY: the region is fresh, exclusively ours, sized and aligned for this ring.
        unsafe { RawSpsc::init(region.as_ptr(), capacity, size, align) }.expect("init failed");
        // SAFETY: as above; attach validates what init wrote.
        let place = unsafe { RawSpsc::attach::<T>(region.as_ptr(), region.len()) };
        Self {
            slots_at: place.expect("attach"),
            region,
            _t: std::marker::PhantomData,
        }
    }

    #[cfg(multiproc_loom)]
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            hdr: Box::new(Header::new(capacity, 0, 1, 0)),
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(T::zeroed()))
                .collect(),
            _t: std::marker::PhantomData,
        }
    }

    /// The ring, as attached at creation.
    #[cfg(not(multiproc_loom))]
    pub(crate) fn ring(&self) -> SpscRef<'_, T> {
        // SAFETY: `slots_at` is the place of the ring `new` attached to this region, which
        // lives as long as `self`.
        unsafe { SpscRef::at(self.region.as_ptr(), self.slots_at) }
    }

    #[cfg(multiproc_loom)]
    pub(crate) fn ring(&self) -> SpscRef<'_, T> {
        SpscRef::from_parts(&self.hdr, &self.slots)
    }

    /// The region, to scribble on.
    #[cfg(not(multiproc_loom))]
    pub(crate) fn region(&self) -> &super::HeapRegion {
        &self.region
    }

    /// Bytes of shared state a corruption test may overwrite (the header).
    #[cfg(not(multiproc_loom))]
    pub(crate) fn state_len(&self) -> usize {
        std::mem::size_of::<Header>()
    }
}

#[cfg(all(test, not(multiproc_loom)))]
#[path = "spsc_tests.rs"]
mod tests;
