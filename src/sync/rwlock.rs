//! A robust, process-shared reader-writer lock: a writer lock with the [`Mutex`](super::Mutex)'s
//! owner-death semantics, a gate that writers close, and a table of reader owner slots that a
//! writer drains, reclaiming the slots of readers that died.
//!
//! ```text
//! writer: RawMutex (16 bytes)  the writer lock: owner TID + start tag, consistency state
//! gate:   AtomicU32 (futex)    bit 0 GATE: closed by the writer-lock holder, new readers wait
//!                              bit 1 READERS_WAITING: a reader may sleep on `gate`
//!                              bit 2 POISONED: the writer lock is not recoverable (for good)
//! slots:  [AtomicU64; 32]      one per read hold: the reader's owner word (TID + start tag), 0 = free
//! ```
//!
//! **Reader**: claims a free slot (CAS 0 -> its owner word), then looks at the gate. Open: it
//! holds a read lock. Closed: it frees the slot again (waking a draining writer) and sleeps on
//! the gate in 5 ms slices; when a slice runs out and the writer lock's holder is gone (dead, or
//! none), the reader contends for the writer lock itself: a clean acquisition lets it reopen the
//! gate and read; `OwnerDied` hands it the lock exclusively, as a writer would get it.
//!
//! **Writer**: takes the writer lock (waiting, and taking over from a dead holder, as the mutex
//! does), closes the gate, then drains: waits until every slot is free, sleeping on the busy
//! slot's futex in 5 ms slices and freeing a slot whose reader is proven dead. Unlock reopens the
//! gate, then releases the writer lock. A writer that times out while draining reopens the gate
//! (unless the data is suspect: then it leaves it closed and the writer lock `OwnerDied`).
//!
//! The reader's slot CAS and gate load, and the writer's gate close and slot loads, are `SeqCst`
//! (with a `SeqCst` fence between them under loom, which does not model `SeqCst` accesses): a
//! reader and a writer cannot both miss each other (Dekker). A reader that frees its slot and
//! then sees the gate closed wakes the slot's futex.
//!
//! Once the writer lock is not recoverable the gate stays closed for good, so readers see it too
//! (the read fast path looks only at the gate).

use super::owner::{DefaultProbe, OwnerProbe};
use super::raw_mutex::{Failed, Locked, RawMutex, owner_futex, owner_word, word_owner_gone};
use super::wait::SLICE; // how long a sleeper waits before checking on a holder that may have died
use super::{LockError, LockResult};
use crate::crash;
use crate::loom::UnsafeCell;
use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// Reader owner slots: at most this many read locks are held at once; one more reader waits for
/// a free slot. (Two in loom models, which keeps their state space small.)
pub(crate) const SLOTS: usize = if cfg!(multiproc_loom) { 2 } else { 32 };
/// Closed by the writer-lock holder: new readers wait.
const GATE: u32 = 1;
/// A reader may sleep on the gate: opening it wakes them all.
const READERS_WAITING: u32 = 2;
/// Set (with `GATE`, for good) when the writer lock becomes not recoverable: the gate word
/// changes, so a reader about to sleep on it cannot miss the wake-up that announces it.
const POISONED: u32 = 4;
/// A read guard that holds the writer lock instead of a slot (after `OwnerDied`).
const EXCLUSIVE: usize = usize::MAX;

/// The ordering of every access in the Dekker pairs between readers and writers (a reader's slot
/// claim or release then gate load; a writer's gate close then slot loads). `SeqCst` accesses
/// are enough in the C++ model (all of them are in one total order) and on x86 cost a locked
/// RMW or `xchg` and plain loads.
const DEKKER: Ordering = Ordering::SeqCst;

/// Between the two accesses of a Dekker pair. Loom does not model `SeqCst` accesses (it treats
/// them as acquire/release), only `SeqCst` fences, so under loom a fence stands in; production
/// needs none (see [`DEKKER`]).
#[inline(always)]
fn dekker_fence() {
    #[cfg(multiproc_loom)]
    crate::loom::sync::atomic::fence(Ordering::SeqCst);
}

/// A reader-writer lock that works across processes and survives holders that die.
///
/// `#[repr(C)]`: a 16-byte writer lock, a gate word, 32 reader slots of 8 bytes (280 bytes in
/// all), then the value; all zeroes is an unlocked, consistent lock. Any number of readers or one
/// writer. Once a writer holds the writer lock, new readers wait behind it, so readers cannot
/// starve writers.
///
/// **Robust.** If a writer dies holding the lock, the next writer *or reader* gets
/// [`LockError::OwnerDied`] with its guard, as with [`Mutex`](super::Mutex): a reader told so
/// holds the lock exclusively until its guard drops. Call `make_consistent` on that guard once
/// the data is checked; dropping it without makes the lock [`LockError::NotRecoverable`] for
/// everyone. If a reader dies holding a read lock, a writer waiting for readers frees its slot
/// within about 5 ms. A blocked caller notices a dead holder within a few milliseconds without
/// being woken.
///
/// **At most 32 read locks at once**: each read hold takes one of 32 owner slots (a thread that
/// reads recursively takes one per guard). A 33rd reader waits (checking every 5 ms) until a slot
/// is free, or its timeout.
///
/// # Examples
///
/// ```
/// use multiproc::sync::RwLock;
///
/// let lock = RwLock::new(5u32);
/// {
///     let r1 = lock.read().unwrap();
///     let r2 = lock.read().unwrap();
///     assert_eq!(*r1 + *r2, 10);
///     assert!(lock.try_write().is_err());
/// }
/// *lock.write().unwrap() += 1;
/// assert_eq!(*lock.read().unwrap(), 6);
/// ```
///
/// Between processes: put it in shared memory ([`Shared`](crate::Shared)) and pass a clone of the
/// handle to each child.
///
/// ```rust,standalone_crate
/// use multiproc::sync::RwLock;
/// use multiproc::{Process, Shared};
///
/// fn reader(config: Shared<RwLock<[u32; 4]>>) -> u32 {
///     config.read().unwrap().iter().sum() // many readers at once
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let config = Shared::new(RwLock::new([0u32; 4]))?;
///     *config.write().unwrap() = [1, 2, 3, 4];
///     let readers = (0..3)
///         .map(|_| Process::spawn(reader, config.clone()))
///         .collect::<Result<Vec<_>, _>>()?;
///     for r in readers {
///         assert_eq!(r.join()?, 10);
///     }
///     Ok(())
/// }
/// ```
#[repr(C)]
pub struct RwLock<T: ?Sized> {
    writer: RawMutex,
    gate: AtomicU32,
    slots: [AtomicU64; SLOTS],
    data: UnsafeCell<T>,
}

// SAFETY: as std's RwLock: readers share `&T` across threads (needs Sync), a writer gets `&mut T`
// (needs Send).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}
// SAFETY: owning the lock is owning a `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}

// SAFETY: a `RawMutex` and atomics (any value is a state: garbage can only make callers wait,
// time out, see `OwnerDied`/`NotRecoverable`, or admit a reader/writer wrongly, which hands out a
// wrong but valid `ShmSafe` value) and a `ShmSafe` value; `#[repr(C)]`, no pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl<T: crate::safe::ShmSafe + Send> crate::safe::ShmSafe for RwLock<T> {}

/// A snapshot of an [`RwLock`] for inspection tools (see [`RwLock::peek`]).
#[cfg(not(multiproc_loom))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RwPeek {
    /// Reader slots in use.
    pub(crate) readers: u32,
    /// Of those, slots whose holder is proven gone (the next writer frees them).
    pub(crate) dead_readers: u32,
    /// The gate is closed: a writer holds the lock or waits for readers to leave.
    pub(crate) gate_closed: bool,
    /// A reader may sleep on the gate.
    pub(crate) readers_waiting: bool,
    /// The writer lock.
    pub(crate) writer: super::raw_mutex::LockPeek,
}

impl<T> RwLock<T> {
    /// A new unlocked lock around `value`.
    pub fn new(value: T) -> Self {
        RwLock {
            writer: RawMutex::new(),
            gate: AtomicU32::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            data: UnsafeCell::new(value),
        }
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T
    where
        T: Sized,
    {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// The lock decoded, for inspection tools: loads only, so it works on a read-only mapping
    /// and never disturbs the lock's users.
    #[cfg(not(multiproc_loom))]
    pub(crate) fn peek<P: OwnerProbe>(&self, probe: &P) -> RwPeek {
        let (mut readers, mut dead_readers) = (0, 0);
        for slot in &self.slots {
            let w = slot.load(Ordering::Relaxed);
            if w != 0 {
                readers += 1;
                dead_readers += u32::from(word_owner_gone(w, probe));
            }
        }
        let g = self.gate.load(Ordering::Relaxed);
        RwPeek {
            readers,
            dead_readers,
            gate_closed: g & GATE != 0,
            readers_waiting: g & READERS_WAITING != 0,
            writer: self.writer.peek(probe),
        }
    }

    /// Locks for reading, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with a guard that holds the lock exclusively) if a writer died
    /// holding it; [`LockError::NotRecoverable`] if it was released without repair after that.
    #[inline]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_deadline(None)
    }

    /// Locks for reading if possible now (a writer neither holds nor waits for it, and a reader
    /// slot is free). Does not check on holders.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`]; [`LockError::NotRecoverable`].
    pub fn try_read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let probe = DefaultProbe::default();
        let (tid, start) = probe.identity();
        let me = owner_word(tid, start);
        let Some(slot) = self.find_slot(me, tid as usize % SLOTS) else {
            return Err(LockError::WouldBlock);
        };
        // See `read_deadline`.
        dekker_fence();
        if self.gate.load(DEKKER) & GATE == 0 {
            return Ok(RwLockReadGuard::new(self, slot));
        }
        self.free_slot(slot);
        if self.writer.is_not_recoverable() {
            Err(LockError::NotRecoverable)
        } else {
            Err(LockError::WouldBlock)
        }
    }

    /// Locks for reading, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; otherwise as [`RwLock::read`].
    pub fn read_timeout(&self, timeout: Duration) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_deadline(Some(Deadline::after(timeout)))
    }

    /// Locks for reading, waiting until `deadline` at the latest (a past one: no waiting).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; otherwise as [`RwLock::read`].
    pub fn read_until(&self, deadline: Instant) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_deadline(Some(Deadline::at(deadline)))
    }

    /// Locks for writing, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) if the previous writer died holding it (or a
    /// reader told `OwnerDied` died before repairing); [`LockError::NotRecoverable`] if it was
    /// released without repair after that.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_deadline(None)
    }

    /// Locks for writing if nobody holds it now. Does not check on holders.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if held; otherwise as [`RwLock::write`].
    pub fn try_write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let probe = DefaultProbe::default();
        match self.writer.try_lock(&probe) {
            Ok(locked) => self.drain_and_finish(locked, &probe, None, false),
            Err(Failed::NotRecoverable) => Err(LockError::NotRecoverable),
            Err(_) => Err(LockError::WouldBlock),
        }
    }

    /// Locks for writing, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; otherwise as [`RwLock::write`].
    pub fn write_timeout(&self, timeout: Duration) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_deadline(Some(Deadline::after(timeout)))
    }

    /// Locks for writing, waiting until `deadline` at the latest (a past one: no waiting).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; otherwise as [`RwLock::write`].
    pub fn write_until(&self, deadline: Instant) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_deadline(Some(Deadline::at(deadline)))
    }

    /// Whether a holder died and the lock was released without repair: it can never be locked
    /// again.
    pub fn is_not_recoverable(&self) -> bool {
        self.writer.is_not_recoverable()
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` proves no guard and no other reference exists in this process;
        // sharing the lock with other processes is the caller's (ShmSafe) contract.
        self.data.with_mut(|p| unsafe { &mut *p })
    }

    #[inline]
    fn read_deadline(&self, deadline: Option<Deadline>) -> LockResult<RwLockReadGuard<'_, T>> {
        let probe = DefaultProbe::default();
        let (tid, start) = probe.identity();
        let me = owner_word(tid, start);
        let first = tid as usize % SLOTS;
        loop {
            let slot = self.claim_slot(me, first, &probe, deadline)?;
            crash::point("rwlock.read.slot_claimed");
            // Dekker with the writer's gate close then slot loads: one of us sees the other.
            // (Acquire, in SeqCst: seeing the gate open acquires the data of the writer that
            // opened it.)
            dekker_fence();
            if self.gate.load(DEKKER) & GATE == 0 {
                crash::point("rwlock.read.acquired");
                return Ok(RwLockReadGuard::new(self, slot));
            }
            // A writer holds or is draining: get out of its way.
            self.free_slot(slot);
            crash::point("rwlock.read.slot_returned");
            if let Some(r) = self.wait_gate(me, first, &probe, deadline)? {
                return r;
            }
        }
    }

    /// Claims a free slot for `me`, trying `first` first.
    #[inline]
    fn find_slot(&self, me: u64, first: usize) -> Option<usize> {
        if self.slots[first]
            .compare_exchange(0, me, DEKKER, Ordering::Relaxed)
            .is_ok()
        {
            return Some(first);
        }
        (1..SLOTS).map(|k| (first + k) % SLOTS).find(|&i| {
            // DEKKER: before the caller's gate load. (Its Acquire orders the reads of the slot's
            // previous reader before our release of it, which a writer acquires.)
            self.slots[i].load(Ordering::Relaxed) == 0
                && self.slots[i]
                    .compare_exchange(0, me, DEKKER, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Claims a slot, waiting (and freeing the slots of dead readers) while all are taken.
    #[inline]
    fn claim_slot<P: OwnerProbe>(
        &self,
        me: u64,
        first: usize,
        probe: &P,
        deadline: Option<Deadline>,
    ) -> Result<usize, LockError<RwLockReadGuard<'_, T>>> {
        match self.find_slot(me, first) {
            Some(i) => Ok(i),
            None => self.claim_slot_waiting(me, first, probe, deadline),
        }
    }

    #[cold]
    fn claim_slot_waiting<P: OwnerProbe>(
        &self,
        me: u64,
        first: usize,
        probe: &P,
        deadline: Option<Deadline>,
    ) -> Result<usize, LockError<RwLockReadGuard<'_, T>>> {
        loop {
            if let Some(i) = self.find_slot(me, first) {
                return Ok(i);
            }
            let mut freed = false;
            for slot in &self.slots {
                let w = slot.load(Ordering::Relaxed);
                freed |= w != 0 && word_owner_gone(w, probe) && Self::reclaim(slot, w);
            }
            if freed {
                continue;
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(LockError::Timeout);
            }
            // Nobody wakes us when a slot frees: check again after a slice.
            let g = self.gate.load(Ordering::Relaxed);
            futex::poll_wait(&self.gate, g, Self::slice_end(deadline));
        }
    }

    /// Frees the slot `w` names, whose reader is proven gone; false if it changed meanwhile.
    fn reclaim(slot: &AtomicU64, w: u64) -> bool {
        // Only this exact word: a live reader that claimed the slot since has another word.
        slot.compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives a slot back; wakes a writer that may be draining.
    #[inline]
    fn free_slot(&self, i: usize) {
        // Release (in SeqCst): our reads happen before the writes of the writer that sees the
        // slot free. Dekker with the writer (gate close, slot loads): if it saw our slot busy,
        // we see the gate closed and wake it.
        self.slots[i].store(0, DEKKER);
        dekker_fence();
        if self.gate.load(DEKKER) & GATE != 0 {
            futex::wake_low(&self.slots[i], u32::MAX);
        }
    }

    /// The end of one sleep slice, or `deadline` if sooner.
    fn slice_end(deadline: Option<Deadline>) -> Deadline {
        let end = Deadline::after(SLICE);
        deadline.map_or(end, |d| d.min(end))
    }

    /// A reader waits for the gate to open. `Ok(None)`: open, try again. `Ok(Some(r))`: the
    /// reader contended for the writer lock of a holder that is gone, with result `r`.
    #[allow(clippy::type_complexity)]
    #[cold]
    fn wait_gate<P: OwnerProbe>(
        &self,
        me: u64,
        first: usize,
        probe: &P,
        deadline: Option<Deadline>,
    ) -> Result<Option<LockResult<RwLockReadGuard<'_, T>>>, LockError<RwLockReadGuard<'_, T>>> {
        let mut g = self.gate.load(Ordering::Relaxed);
        loop {
            if g & GATE == 0 {
                return Ok(None);
            }
            if g & POISONED != 0 || self.writer.is_not_recoverable() {
                return Err(LockError::NotRecoverable);
            }
            if g & READERS_WAITING == 0 {
                if let Err(now) = self.gate.compare_exchange(
                    g,
                    g | READERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    g = now;
                    continue;
                }
                g |= READERS_WAITING;
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(LockError::Timeout);
            }
            crash::point("rwlock.read.before_wait");
            let woken = futex::poll_wait(&self.gate, g, Self::slice_end(deadline));
            crash::point("rwlock.read.after_wait");
            if !woken && self.writer.owner_gone(probe) {
                return Ok(Some(self.read_takeover(me, first, probe, deadline)));
            }
            g = self.gate.load(Ordering::Relaxed);
        }
    }

    /// The gate is closed and the writer lock's holder gone: contend for the writer lock as a
    /// writer would, to learn `OwnerDied` (then read holding it exclusively) or to reopen a gate
    /// whose writer is gone.
    #[cold]
    fn read_takeover<P: OwnerProbe>(
        &self,
        me: u64,
        first: usize,
        probe: &P,
        deadline: Option<Deadline>,
    ) -> LockResult<RwLockReadGuard<'_, T>> {
        // We slept a slice already: take over from a dead holder at once, else contend.
        let locked = match self.writer.take_over_if_gone(probe) {
            Some(r) => r,
            None => self.writer.lock(probe, deadline),
        };
        match locked {
            Ok(Locked::OwnerDied) => {
                // Keep new readers out until this reader has judged the data.
                self.gate.fetch_or(GATE, Ordering::Relaxed);
                crash::point("rwlock.read.took_over");
                log::warn!(target: "multiproc", "an rwlock's writer died holding it: taken over by a reader");
                Err(LockError::OwnerDied(RwLockReadGuard::new(self, EXCLUSIVE)))
            }
            Ok(Locked::Clean) => {
                // No writer is in (we hold the writer lock): take a slot, open the gate.
                let slot = match self.claim_slot(me, first, probe, deadline) {
                    Ok(slot) => slot,
                    Err(e) => {
                        self.writer.unlock();
                        return Err(e);
                    }
                };
                self.open_gate();
                self.writer.unlock();
                Ok(RwLockReadGuard::new(self, slot))
            }
            Err(Failed::NotRecoverable) => Err(LockError::NotRecoverable),
            Err(_) => Err(LockError::Timeout),
        }
    }

    fn write_deadline(&self, deadline: Option<Deadline>) -> LockResult<RwLockWriteGuard<'_, T>> {
        let probe = DefaultProbe::default();
        match self.writer.lock(&probe, deadline) {
            Ok(locked) => self.drain_and_finish(locked, &probe, deadline, true),
            Err(Failed::NotRecoverable) => Err(LockError::NotRecoverable),
            Err(_) => Err(LockError::Timeout),
        }
    }

    /// Holding the writer lock: close the gate and wait for the readers to leave (or, without
    /// `wait`, require that none is in).
    fn drain_and_finish<P: OwnerProbe>(
        &self,
        locked: Locked,
        probe: &P,
        deadline: Option<Deadline>,
        wait: bool,
    ) -> LockResult<RwLockWriteGuard<'_, T>> {
        crash::point("rwlock.write.writer_locked");
        // Dekker with readers (see `read_deadline` and `free_slot`): a reader that claimed a
        // slot concurrently sees the gate closed, or we see its slot busy.
        self.gate.fetch_or(GATE, DEKKER);
        dekker_fence();
        crash::point("rwlock.write.gate_closed");
        if !self.drain(probe, deadline, wait) {
            if locked == Locked::Clean {
                // Readers may come back in; the data is as the last writer left it.
                self.open_gate();
                crash::point("rwlock.write.gave_up");
                self.writer.unlock();
            } else {
                // Taken over from a dead holder: the data is suspect, so the gate stays closed
                // and the next locker (reader or writer) is told `OwnerDied` in turn.
                crash::point("rwlock.write.gave_up");
                self.writer.abandon();
            }
            return Err(if wait {
                LockError::Timeout
            } else {
                LockError::WouldBlock
            });
        }
        crash::point("rwlock.write.acquired");
        let guard = RwLockWriteGuard::new(self);
        match locked {
            Locked::Clean => Ok(guard),
            Locked::OwnerDied => {
                log::warn!(target: "multiproc", "an rwlock's writer died holding it: taken over");
                Err(LockError::OwnerDied(guard))
            }
        }
    }

    /// Waits until every slot is free, freeing those of dead readers. False if the deadline
    /// passed (or, without `wait`, if a slot is busy).
    fn drain<P: OwnerProbe>(&self, probe: &P, deadline: Option<Deadline>, wait: bool) -> bool {
        for slot in &self.slots {
            loop {
                // DEKKER (see above); its Acquire orders the reads of the reader that freed the
                // slot before our writes.
                let w = slot.load(DEKKER);
                if w == 0 {
                    break;
                }
                if !wait || deadline.is_some_and(Deadline::has_passed) {
                    return false;
                }
                crash::point("rwlock.write.before_wait");
                let woken = futex::poll_wait_low(slot, owner_futex(w), Self::slice_end(deadline));
                crash::point("rwlock.write.after_wait");
                if !woken && word_owner_gone(w, probe) && Self::reclaim(slot, w) {
                    crash::point("rwlock.write.reclaimed");
                }
            }
        }
        true
    }

    /// Reopens the gate (caller holds the writer lock) and wakes the readers waiting at it.
    fn open_gate(&self) {
        // Release: the data written under the writer lock is seen by readers that see it open.
        let prev = self.gate.swap(0, Ordering::Release);
        if prev & READERS_WAITING != 0 {
            futex::wake_all(&self.gate);
        }
    }

    /// Releases an exclusive hold (a writer's, or a reader's after `OwnerDied`).
    fn release_exclusive(&self) {
        if self.writer.is_consistent() {
            crash::point("rwlock.write_unlock.before_open");
            self.open_gate();
            crash::point("rwlock.write_unlock.after_open");
            self.writer.unlock();
        } else {
            // Not repaired: the writer lock becomes not recoverable and the gate stays closed
            // for good; wake the readers at the gate to learn it (changing the gate word, so
            // that none is just about to sleep on the old value).
            self.writer.unlock();
            crash::point("rwlock.write_unlock.not_recoverable");
            self.gate.fetch_or(GATE | POISONED, Ordering::Relaxed);
            futex::wake_all(&self.gate);
        }
    }

    #[inline]
    fn read_unlock(&self, slot: usize) {
        if slot == EXCLUSIVE {
            self.release_exclusive();
        } else {
            crash::point("rwlock.read_unlock.before_free");
            self.free_slot(slot);
            crash::point("rwlock.read_unlock.after_free");
        }
    }
}

impl_lock_debug!(RwLock, RwLockReadGuard, RwLockWriteGuard);

/// Shared access to an [`RwLock`]'s value; unlocks when dropped. Not `Send`: the read hold
/// belongs to the thread that took it (its slot names that thread).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    /// The reader slot held, or `EXCLUSIVE` (the writer lock, after `OwnerDied`).
    slot: usize,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a read guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    fn new(lock: &'a RwLock<T>, slot: usize) -> Self {
        RwLockReadGuard {
            lock,
            slot,
            _not_send: PhantomData,
        }
    }

    /// After [`LockError::OwnerDied`] (this guard then holds the lock exclusively): declares the
    /// data checked, so that dropping the guard leaves the lock usable. Without it, dropping this
    /// guard makes the lock not recoverable. A no-op on a guard acquired cleanly.
    pub fn make_consistent(&mut self) {
        if self.slot == EXCLUSIVE {
            self.lock.writer.make_consistent();
        }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read hold (a slot seen with the gate open, or the writer lock) is held: no
        // writer has `&mut T` until it is released.
        self.lock.data.with(|p| unsafe { &*p })
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.read_unlock(self.slot);
    }
}

/// Exclusive access to an [`RwLock`]'s value; unlocks when dropped. Not `Send`: the writer lock
/// belongs to the thread that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a write guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    fn new(lock: &'a RwLock<T>) -> Self {
        RwLockWriteGuard {
            lock,
            _not_send: PhantomData,
        }
    }

    /// After [`LockError::OwnerDied`]: declares the data repaired, so that unlocking leaves the
    /// lock usable. Without it, dropping this guard makes the lock not recoverable. A no-op on a
    /// guard acquired cleanly.
    pub fn make_consistent(&mut self) {
        self.lock.writer.make_consistent();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write lock is held (writer lock, gate closed, no slot busy): nobody else
        // accesses the data.
        self.lock.data.with(|p| unsafe { &*p })
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write lock is held, and `&mut self` excludes other borrows of the guard.
        self.lock.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release_exclusive();
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::sync::{on_dead_thread, waits_for};
    use crate::testing::watchdog;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn exclusion_under_contention() {
        watchdog(30, || {
            let l = RwLock::new((0u64, 0u64));
            std::thread::scope(|s| {
                for i in 0..4 {
                    let l = &l;
                    s.spawn(move || {
                        for _ in 0..5000 {
                            if i % 2 == 0 {
                                let mut g = l.write().unwrap();
                                g.0 += 1;
                                g.1 += 1;
                            } else {
                                let g = l.read().unwrap();
                                assert_eq!(g.0, g.1);
                            }
                        }
                    });
                }
            });
            assert_eq!(*l.read().unwrap(), (10_000, 10_000));
        });
    }

    #[test]
    fn writer_preferred_over_new_readers() {
        watchdog(10, || {
            let l = RwLock::new(0u32);
            let r = l.read().unwrap();
            let wrote = AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    *l.write().unwrap() = 1;
                    wrote.store(true, Ordering::SeqCst);
                });
                // Wait until the writer is queued.
                while l.gate.load(Ordering::SeqCst) & GATE == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // A new reader must not jump the queue.
                assert!(matches!(l.try_read(), Err(LockError::WouldBlock)));
                assert!(matches!(
                    l.read_timeout(Duration::from_millis(10)),
                    Err(LockError::Timeout)
                ));
                drop(r);
            });
            assert!(wrote.load(Ordering::SeqCst));
            assert_eq!(*l.read().unwrap(), 1);
        });
    }

    #[test]
    fn timeouts_and_try_forms() {
        watchdog(10, || {
            let l = RwLock::new(0u32);
            let w = l.write().unwrap();
            assert!(matches!(l.try_read(), Err(LockError::WouldBlock)));
            assert!(matches!(l.try_write(), Err(LockError::WouldBlock)));
            assert!(matches!(
                waits_for(30, |d| l.write_timeout(d)),
                Err(LockError::Timeout)
            ));
            drop(w);
            // The timed-out writer left no stale bit that blocks readers.
            assert!(l.try_read().is_ok());
            assert!(l.read_timeout(Duration::from_millis(10)).is_ok());
            assert!(l.write_timeout(Duration::from_millis(10)).is_ok());
        });
    }

    #[test]
    fn layout_is_the_documented_one() {
        // Shared memory layout (SAFETY.md): 16-byte writer lock, gate word, 32 slots of 8 bytes.
        assert_eq!(std::mem::size_of::<RwLock<()>>(), 280);
        assert_eq!(std::mem::size_of::<RwLock<u64>>(), 288);
        assert_eq!(std::mem::align_of::<RwLock<()>>(), 8);
    }

    #[test]
    fn dead_reader_is_reclaimed_by_a_writer() {
        watchdog(10, || {
            let l = RwLock::new(1u32);
            on_dead_thread(|| std::mem::forget(l.read().unwrap()));
            assert_eq!(l.peek(&crate::sync::owner::SysProbe).readers, 1);
            // Readers still pass; a writer frees the dead reader's slot and gets in cleanly.
            assert_eq!(*l.read_timeout(Duration::from_secs(1)).unwrap(), 1);
            *l.write_timeout(Duration::from_secs(2)).unwrap() = 2;
            assert_eq!(l.peek(&crate::sync::owner::SysProbe).readers, 0);
            assert_eq!(*l.read().unwrap(), 2);
        });
    }

    #[test]
    fn dead_reader_and_a_timed_out_writer_leave_the_lock_usable() {
        // The old lock's known gap: a writer that timed out behind a dead reader wedged it.
        watchdog(10, || {
            let l = RwLock::new(1u32);
            let live = l.read().unwrap();
            on_dead_thread(|| std::mem::forget(l.read().unwrap()));
            assert!(matches!(
                waits_for(30, |d| l.write_timeout(d)),
                Err(LockError::Timeout)
            ));
            // Readers get in at once: the timed-out writer reopened the gate.
            assert!(l.try_read().is_ok());
            drop(live);
            assert!(l.write_timeout(Duration::from_secs(2)).is_ok());
        });
    }

    #[test]
    fn dead_writer_gives_owner_died_to_a_reader_then_not_recoverable() {
        watchdog(10, || {
            let l = RwLock::new(1u32);
            on_dead_thread(|| std::mem::forget(l.write().unwrap()));
            assert!(matches!(l.try_read(), Err(LockError::WouldBlock)));
            let g = match l.read_timeout(Duration::from_secs(2)) {
                Err(LockError::OwnerDied(g)) => g,
                other => panic!("{other:?}"),
            };
            assert_eq!(*g, 1);
            // The reader holds it exclusively: no writer, no other reader.
            assert!(matches!(l.try_write(), Err(LockError::WouldBlock)));
            assert!(matches!(l.try_read(), Err(LockError::WouldBlock)));
            drop(g);
            assert!(l.is_not_recoverable());
            assert!(matches!(l.read(), Err(LockError::NotRecoverable)));
            assert!(matches!(l.write(), Err(LockError::NotRecoverable)));
            assert!(matches!(l.try_read(), Err(LockError::NotRecoverable)));
        });
    }

    #[test]
    fn dead_writer_gives_owner_died_to_a_writer_and_make_consistent_repairs() {
        watchdog(10, || {
            let l = RwLock::new(1u32);
            on_dead_thread(|| {
                let mut g = l.write().unwrap();
                *g = 99;
                std::mem::forget(g);
            });
            let mut g = match l.write_timeout(Duration::from_secs(2)) {
                Err(LockError::OwnerDied(g)) => g,
                other => panic!("{other:?}"),
            };
            *g = 2;
            g.make_consistent();
            drop(g);
            assert!(!l.is_not_recoverable());
            assert_eq!(*l.read().unwrap(), 2);
            assert!(l.try_write().is_ok());
        });
    }

    #[test]
    fn reader_told_owner_died_can_make_it_consistent() {
        watchdog(10, || {
            let l = RwLock::new(1u32);
            on_dead_thread(|| std::mem::forget(l.write().unwrap()));
            let mut g = l.read().unwrap_err().into_guard().unwrap();
            g.make_consistent();
            drop(g);
            assert_eq!(*l.try_read().unwrap(), 1);
            assert!(l.try_write().is_ok());
        });
    }

    #[test]
    fn the_33rd_reader_waits_for_a_slot() {
        watchdog(10, || {
            let l = RwLock::new(0u32);
            let held: Vec<_> = (0..SLOTS).map(|_| l.read().unwrap()).collect();
            assert!(matches!(l.try_read(), Err(LockError::WouldBlock)));
            assert!(matches!(
                waits_for(20, |d| l.read_timeout(d)),
                Err(LockError::Timeout)
            ));
            std::thread::scope(|s| {
                let waiter = s.spawn(|| l.read().is_ok());
                std::thread::sleep(Duration::from_millis(10));
                drop(held);
                assert!(waiter.join().unwrap());
            });
        });
    }
}
