//! A process-shared counting semaphore, optionally bounded, with optional robust permits.
//!
//! ```text
//! state (u64):  bits  0..32  free permits; the futex word (low half) acquirers sleep on at 0
//!               bits 32..48  HELD: bit 32+i set = owner slot i holds a robust permit
//! waiters:      acquirers between their registration and their wake-up; release wakes only
//!               if non-zero
//! max:          the bound for `release` (u32::MAX = unbounded)
//! owners[16]:   0 = free; else the `owner_word(tid, start tag)` of the thread that claimed it
//!               (to acquire, or while holding a robust permit); bit 31 (RECLAIMING) set = a
//!               waiter is returning a dead owner's permit (the rest of the word names it)
//! ```
//!
//! A robust permit is taken in one CAS that decrements the count and sets its slot's HELD bit,
//! so a permit is always either free (counted) or held by exactly one slot, whatever step its
//! holder dies at:
//!
//! ```text
//! acquire_robust: claim a free slot (CAS 0 -> me); CAS state (count - 1, HELD |= bit)
//!                 (no permit: give the slot back, store 0, and wait)
//! release:        CAS state (count + 1, HELD &= !bit); store 0 in the slot; wake one
//! reclaim:        slot w whose owner is dead: CAS w -> me|RECLAIMING (now no one else can claim
//!                 or settle the slot); if its HELD bit is set, CAS state (count + 1, clear it);
//!                 store 0 in the slot; wake the waiters
//! ```
//! The RECLAIMING mark is what makes a reclaim safe against ABA: a waiter that judged the owner
//! dead a while ago clears the bit only while it holds the mark, so never a bit set by a later
//! holder of the same slot. A reclaimer that dies holding the mark is itself a dead owner of the
//! slot: the next one takes the mark over and finishes.
//!
//! No lost wake-up: acquirers register with `waiters`, re-check and sleep on the low half of
//! `state` (the protocol of `sync/wait.rs`; a release changes the count, then notifies). Sleeps
//! last at most [`SLICE`]: a releaser killed between its increment and its wake delays a
//! sleeper by at most that, and on each slice's end a sleeper looks for dead owners.

use super::SemaphoreError;
use super::owner::{DefaultProbe, OwnerProbe};
use super::raw_mutex::{owner_word, start_tag, tag_of, tid_of};
use super::wait::{Backoff, SLICE, Waiters};
use crate::crash;
use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// The free-permit bits of the state (its futex half).
const COUNT_MASK: u64 = 0xFFFF_FFFF;
/// Where the HELD bits of the owner slots begin.
const HELD_SHIFT: u32 = 32;
/// Bit 31 of an owner slot: a waiter is returning the permit of the slot's dead owner.
const RECLAIMING: u64 = 1 << 31;

#[inline]
fn count(s: u64) -> u32 {
    (s & COUNT_MASK) as u32
}

/// The HELD bit of owner slot `i`.
#[inline]
pub(crate) fn held_bit(i: usize) -> u64 {
    1 << (HELD_SHIFT + i as u32)
}

/// How many robust permits are held.
#[inline]
fn held_count(s: u64) -> u32 {
    ((s >> HELD_SHIFT) & 0xFFFF).count_ones()
}

/// `s` with one more free permit (unchanged if the count is at its maximum, so a garbage word
/// never carries into the HELD bits).
#[inline]
fn plus_one(s: u64) -> u64 {
    if count(s) >= u32::MAX - 1 { s } else { s + 1 }
}

/// A counting semaphore that works across processes.
///
/// `#[repr(C)]`, 144 bytes. Acquiring and releasing a plain permit without contention is one
/// atomic operation each and no syscall. [`Semaphore::bounded`] makes a semaphore whose
/// `release` fails with [`SemaphoreError::Overflow`] instead of exceeding its initial value
/// (Python's `BoundedSemaphore`).
///
/// Plain permits ([`acquire`](Self::acquire), [`acquire_guard`](Self::acquire_guard)) have no
/// owner: a holder that dies does not give its permit back. A robust permit
/// ([`acquire_robust`](Self::acquire_robust)) records its holding thread in one of
/// [`OWNER_SLOTS`](Self::OWNER_SLOTS) owner slots, like System V's `SEM_UNDO`: when that thread
/// dies (its process killed, or the thread ended without releasing), the permit returns to the
/// semaphore, taken back by blocked acquirers within a few milliseconds (they sleep in bounded
/// slices and check the owners).
///
/// # Examples
///
/// ```
/// use multiproc::sync::Semaphore;
///
/// let seats = Semaphore::bounded(2);
/// seats.acquire();
/// assert!(seats.try_acquire().is_ok());
/// assert!(seats.try_acquire().is_err());
/// seats.release().unwrap();
/// seats.release().unwrap();
/// assert!(seats.release().is_err()); // over-release of a bounded semaphore
/// assert_eq!(seats.value(), 2);
///
/// {
///     let _permit = seats.acquire_guard(); // released when dropped
///     let _robust = seats.acquire_robust().unwrap(); // returned even if this process dies
///     assert_eq!(seats.value(), 0);
/// }
/// assert_eq!(seats.value(), 2);
/// ```
///
/// Between processes: put it in shared memory ([`Shared`](crate::Shared)) and pass a clone of the
/// handle to each child.
///
/// ```rust,standalone_crate
/// use multiproc::sync::Semaphore;
/// use multiproc::{Process, Shared};
///
/// fn diner(seats: Shared<Semaphore>) -> u32 {
///     let _seat = seats.acquire_robust().unwrap(); // at most two children hold a seat at once
///     seats.value()
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let seats = Shared::new(Semaphore::bounded(2))?;
///     let children = (0..3)
///         .map(|_| Process::spawn(diner, seats.clone()))
///         .collect::<Result<Vec<_>, _>>()?;
///     for child in children {
///         assert!(child.join()? <= 1);
///     }
///     assert_eq!(seats.value(), 2);
///     Ok(())
/// }
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Semaphore {
    /// Free permits (low half, the futex word) and the HELD bits of the owner slots.
    state: AtomicU64,
    waiters: Waiters,
    max: AtomicU32,
    /// Who holds (or is acquiring) each robust permit.
    owners: [AtomicU64; Semaphore::OWNER_SLOTS],
}

// SAFETY: atomics only, every value valid (garbage gives wrong counts, a spurious Overflow or
// OwnersFull, a permit returned for a live holder or never returned: never UB); `#[repr(C)]`, no
// pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl crate::safe::ShmSafe for Semaphore {}

const UNBOUNDED: u32 = u32::MAX;

impl Semaphore {
    /// How many robust permits can be held (or being acquired) at once.
    pub const OWNER_SLOTS: usize = 16;

    /// A semaphore with `permits` permits and no bound on releases (up to `u32::MAX - 1`).
    pub fn new(permits: u32) -> Self {
        Self::with_max(permits, UNBOUNDED)
    }

    /// A semaphore with `permits` permits that may never hold more than that.
    pub fn bounded(permits: u32) -> Self {
        Self::with_max(permits, permits)
    }

    fn with_max(permits: u32, max: u32) -> Self {
        Semaphore {
            state: AtomicU64::new(u64::from(permits.min(max).min(UNBOUNDED - 1))),
            waiters: Waiters::new(),
            max: AtomicU32::new(max),
            owners: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) {
        // Without a deadline the only failure is a timeout, which cannot happen.
        let _ = self.acquire_deadline(None);
    }

    /// Takes a permit if one is available now.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::WouldBlock`] if none is.
    pub fn try_acquire(&self) -> Result<(), SemaphoreError> {
        if self.try_take(0) {
            crash::point("semaphore.acquire.after_cas");
            Ok(())
        } else {
            Err(SemaphoreError::WouldBlock)
        }
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Timeout`] if none became available in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), SemaphoreError> {
        self.acquire_deadline(Some(Deadline::after(timeout)))
    }

    /// Takes a permit, waiting until `deadline` at the latest (a past one: no waiting).
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Timeout`] if none became available in time.
    pub fn acquire_until(&self, deadline: Instant) -> Result<(), SemaphoreError> {
        self.acquire_deadline(Some(Deadline::at(deadline)))
    }

    fn acquire_deadline(&self, deadline: Option<Deadline>) -> Result<(), SemaphoreError> {
        self.block(deadline, || Ok(self.try_acquire().ok()))
    }

    /// Takes a permit, waiting as long as it takes; the permit is released when the guard is
    /// dropped (or kept for good with [`SemaphorePermit::forget`]).
    pub fn acquire_guard(&self) -> SemaphorePermit<'_> {
        self.acquire();
        SemaphorePermit { sem: self }
    }

    /// [`try_acquire`](Self::try_acquire) with a guard.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::WouldBlock`] if no permit is available.
    pub fn try_acquire_guard(&self) -> Result<SemaphorePermit<'_>, SemaphoreError> {
        self.try_acquire()?;
        Ok(SemaphorePermit { sem: self })
    }

    /// [`acquire_timeout`](Self::acquire_timeout) with a guard.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Timeout`] if no permit became available in time.
    pub fn acquire_guard_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SemaphorePermit<'_>, SemaphoreError> {
        self.acquire_timeout(timeout)?;
        Ok(SemaphorePermit { sem: self })
    }

    /// Takes a robust permit, waiting as long as it takes: one that returns to the semaphore if
    /// the calling thread dies (or ends) before releasing it. Released when the guard drops.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::OwnersFull`] if all [`OWNER_SLOTS`](Self::OWNER_SLOTS) are taken by
    /// live holders (or acquirers) of robust permits.
    pub fn acquire_robust(&self) -> Result<RobustPermit<'_>, SemaphoreError> {
        self.acquire_robust_deadline(None)
    }

    /// [`acquire_robust`](Self::acquire_robust) if a permit is available now.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::WouldBlock`] if none is (a permit of a dead holder is not looked for:
    /// blocking acquires and [`reclaim`](Self::reclaim) do that);
    /// [`SemaphoreError::OwnersFull`] as for `acquire_robust`.
    pub fn try_acquire_robust(&self) -> Result<RobustPermit<'_>, SemaphoreError> {
        let probe = DefaultProbe::default();
        let (tid, start) = probe.identity();
        let me = owner_word(tid, start);
        match self.try_take_robust(me, &probe)? {
            Some(slot) => Ok(self.robust_permit(slot, me)),
            None => Err(SemaphoreError::WouldBlock),
        }
    }

    /// [`acquire_robust`](Self::acquire_robust), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Timeout`] if no permit became available in time;
    /// [`SemaphoreError::OwnersFull`] as for `acquire_robust`.
    pub fn acquire_robust_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RobustPermit<'_>, SemaphoreError> {
        self.acquire_robust_deadline(Some(Deadline::after(timeout)))
    }

    fn acquire_robust_deadline(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<RobustPermit<'_>, SemaphoreError> {
        let probe = DefaultProbe::default();
        let (tid, start) = probe.identity();
        let me = owner_word(tid, start);
        let slot = self.block(deadline, || self.try_take_robust(me, &probe))?;
        Ok(self.robust_permit(slot, me))
    }

    fn robust_permit(&self, slot: usize, me: u64) -> RobustPermit<'_> {
        RobustPermit {
            sem: self,
            slot,
            me,
            _not_send: PhantomData,
        }
    }

    /// Gives a permit back, waking one waiter if any (no syscall otherwise).
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if the semaphore is bounded and already full (counting the
    /// robust permits held), or an unbounded one holds `u32::MAX - 1` permits; nothing changes
    /// then.
    pub fn release(&self) -> Result<(), SemaphoreError> {
        let max = self.max.load(Ordering::Relaxed).min(UNBOUNDED - 1);
        crash::point("semaphore.release.before_cas");
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if count(s).saturating_add(held_count(s)) >= max {
                return Err(SemaphoreError::Overflow);
            }
            // Release: an acquirer that takes this permit sees what the releaser wrote before.
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        crash::point("semaphore.release.after_cas");
        self.wake_one();
        Ok(())
    }

    pub(crate) fn wake_one(&self) {
        if self.waiters.notify_low(&self.state, false) {
            crash::point("semaphore.release.after_wake");
        }
    }

    /// The number of permits available now (a snapshot).
    pub fn value(&self) -> u32 {
        count(self.state.load(Ordering::Relaxed))
    }

    /// Returns the permits of robust holders that died (blocked acquirers do this on their
    /// own); how many came back. Costs a `/proc` read per occupied owner slot.
    pub fn reclaim(&self) -> u32 {
        self.reclaim_with(&DefaultProbe::default())
    }

    /// Takes a free permit, setting the HELD bits `held` in the same CAS.
    #[inline]
    pub(crate) fn try_take(&self, held: u64) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        while count(s) > 0 {
            // Acquire: pairs with the releaser's increment, so we see what it published.
            match self.state.compare_exchange_weak(
                s,
                (s - 1) | held,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// One attempt at a robust permit for the owner word `me`: `Ok(Some(slot))` if taken,
    /// `Ok(None)` if no permit is free now.
    fn try_take_robust<P: OwnerProbe>(
        &self,
        me: u64,
        probe: &P,
    ) -> Result<Option<usize>, SemaphoreError> {
        if count(self.state.load(Ordering::Relaxed)) == 0 {
            return Ok(None);
        }
        let slot = match self.claim_slot(me) {
            Some(slot) => slot,
            // Full: maybe of dead owners.
            None if self.reclaim_with(probe) > 0 => match self.claim_slot(me) {
                Some(slot) => slot,
                None => return Err(SemaphoreError::OwnersFull),
            },
            None => return Err(SemaphoreError::OwnersFull),
        };
        crash::point("semaphore.robust.after_claim");
        if self.try_take(held_bit(slot)) {
            crash::point("semaphore.robust.after_take");
            return Ok(Some(slot));
        }
        // Another acquirer took the permit: give the slot back (Release: a reclaimer or the
        // next claimer sees the state as we left it).
        self.owners[slot].store(0, Ordering::Release);
        Ok(None)
    }

    /// Claims a free owner slot for `me`.
    pub(crate) fn claim_slot(&self, me: u64) -> Option<usize> {
        self.owners.iter().position(|slot| {
            // Acquire: pairs with the Release store of 0 by the slot's last holder (after it
            // cleared its HELD bit) or reclaimer.
            slot.load(Ordering::Relaxed) == 0
                && slot
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Releases the robust permit held in `slot` by `me` (the guard's drop).
    fn release_robust(&self, slot: usize, me: u64) {
        crash::point("semaphore.robust_release.before_cas");
        self.return_held(slot);
        crash::point("semaphore.robust_release.after_cas");
        self.free_slot(slot, me);
        crash::point("semaphore.robust_release.after_free");
        self.wake_one();
    }

    /// Release step 1: adds the permit held in `slot` and clears its HELD bit, in one CAS.
    pub(crate) fn return_held(&self, slot: usize) {
        // If the bit is clear, a waiter judged us dead (it cannot happen to a live thread
        // unless a peer scribbled): the permit is back already, so do not count it twice.
        // Release: an acquirer that takes this permit sees what the holder wrote.
        self.clear_held(slot, Ordering::Release);
    }

    /// While `slot`'s HELD bit is set, tries to add its permit and clear the bit in one CAS
    /// (`success` ordering); whether this call did (a clear bit: the permit is back already).
    #[inline]
    fn clear_held(&self, slot: usize, success: Ordering) -> bool {
        let bit = held_bit(slot);
        let mut s = self.state.load(Ordering::Relaxed);
        while s & bit != 0 {
            match self.state.compare_exchange_weak(
                s,
                plus_one(s & !bit),
                success,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// Release step 2: frees `slot` if it still names `me` (as above). Release: the next
    /// claimer's Acquire sees the cleared bit.
    pub(crate) fn free_slot(&self, slot: usize, me: u64) {
        let _ = self.owners[slot].compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
    }

    /// How many owner slots are claimed (for models and tests).
    #[cfg(test)]
    pub(crate) fn occupied_slots(&self) -> usize {
        self.owners
            .iter()
            .filter(|slot| slot.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Returns the permits of dead owners and frees their slots; how many permits came back.
    fn reclaim_with<P: OwnerProbe>(&self, probe: &P) -> u32 {
        let mut returned = 0;
        let mut mine = None;
        for (i, slot) in self.owners.iter().enumerate() {
            let w = slot.load(Ordering::Relaxed);
            if w == 0 {
                continue;
            }
            let owner = w & !RECLAIMING;
            if !probe
                .liveness(tid_of(owner))
                .proves_gone(tag_of(owner), start_tag)
            {
                continue;
            }
            let mark = *mine.get_or_insert_with(|| {
                let (tid, start) = probe.identity();
                owner_word(tid, start) | RECLAIMING
            });
            // One CAS from the word judged dead: of all waiters that judged it, one settles the
            // slot. AcqRel: we see the dead owner's state CAS (and publish our mark).
            if slot
                .compare_exchange(w, mark, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            crash::point("semaphore.reclaim.after_mark");
            // While we hold the mark nobody else claims or settles the slot, so a set bit is
            // the dead owner's permit.
            if self.clear_held(i, Ordering::AcqRel) {
                returned += 1;
            }
            crash::point("semaphore.reclaim.after_return");
            // Release: the next claimer sees the bit cleared.
            slot.store(0, Ordering::Release);
        }
        if returned > 0 {
            self.waiters.notify_low(&self.state, true);
        }
        returned
    }

    /// The blocking loop: `attempt` until it gives a value (`Ok(Some)`) or fails for good
    /// (`Err`), sleeping while no permit is free, in slices of at most [`SLICE`] after each of
    /// which dead owners' permits are reclaimed; `Timeout` once `deadline` passed (after a last
    /// attempt).
    fn block<R>(
        &self,
        deadline: Option<Deadline>,
        mut attempt: impl FnMut() -> Result<Option<R>, SemaphoreError>,
    ) -> Result<R, SemaphoreError> {
        let mut backoff = Backoff::new();
        loop {
            if let Some(r) = attempt()? {
                return Ok(r);
            }
            if !backoff.spin() {
                break;
            }
        }
        let probe = DefaultProbe::default();
        // The permits of dead owners may be what is missing.
        if self.reclaim_with(&probe) > 0 {
            if let Some(r) = attempt()? {
                return Ok(r);
            }
        }
        // The Symmetric fence always covers; our sleeps are bounded slices anyway.
        let _ = self.waiters.register();
        crash::point("semaphore.acquire.after_count");
        let out = loop {
            match attempt() {
                Ok(Some(r)) => break Ok(r),
                Err(e) => break Err(e),
                Ok(None) => {}
            }
            if deadline.is_some_and(Deadline::has_passed) {
                break Err(SemaphoreError::Timeout);
            }
            let slice_end = Deadline::after(SLICE);
            let wake_by = deadline.map_or(slice_end, |d| d.min(slice_end));
            // Sleep while no permit is free (the count, the low half, is 0).
            let woken = futex::poll_wait_low(&self.state, 0, wake_by);
            crash::point("semaphore.acquire.after_wait");
            if !woken {
                self.reclaim_with(&probe);
            }
        };
        self.waiters.unregister();
        if out.is_err() && self.value() > 0 {
            // We may have been woken for a permit we did not take: pass the wake on.
            self.wake_one();
        }
        out
    }
}

/// A plain permit of a [`Semaphore`], released when dropped
/// ([`Semaphore::acquire_guard`]). A process that dies holding it does not give it back.
#[derive(Debug)]
#[must_use = "the permit is released at once if the guard is not kept"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken for good (the count stays one lower), as a bare
    /// [`Semaphore::acquire`] does.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        // Only a peer's over-release of a bounded semaphore can make this fail; the semaphore
        // is full then, which is where our permit would have brought it.
        let _ = self.sem.release();
    }
}

/// A robust permit of a [`Semaphore`] ([`Semaphore::acquire_robust`]), held by the thread that
/// acquired it (so not `Send`): released when dropped, and returned to the semaphore if that
/// thread dies or ends first (blocked acquirers reclaim it within a few milliseconds).
#[derive(Debug)]
#[must_use = "the permit is released at once if the guard is not kept"]
pub struct RobustPermit<'a> {
    sem: &'a Semaphore,
    slot: usize,
    me: u64,
    /// The holder is this thread: the guard must stay on it.
    _not_send: PhantomData<*const ()>,
}

impl RobustPermit<'_> {
    /// The owner slot recording this permit's holder.
    pub fn slot(&self) -> usize {
        self.slot
    }
}

impl Drop for RobustPermit<'_> {
    fn drop(&mut self) {
        self.sem.release_robust(self.slot, self.me);
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::sync::{on_dead_thread, waits_for};
    use crate::testing::watchdog;
    use std::time::Instant;

    #[test]
    fn max_concurrency_is_the_permit_count() {
        watchdog(20, || {
            let (sem, inside, most) = (Semaphore::new(3), AtomicU32::new(0), AtomicU32::new(0));
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        for _ in 0..200 {
                            sem.acquire();
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                            sem.release().unwrap();
                        }
                    });
                }
            });
            assert_eq!(most.load(Ordering::SeqCst), 3);
            assert_eq!(sem.value(), 3);
        });
    }

    #[test]
    fn timeout_try_and_bounded_over_release() {
        watchdog(10, || {
            let s = Semaphore::bounded(1);
            assert_eq!(s.release(), Err(SemaphoreError::Overflow));
            s.acquire();
            assert_eq!(s.try_acquire(), Err(SemaphoreError::WouldBlock));
            assert_eq!(
                waits_for(30, |d| s.acquire_timeout(d)),
                Err(SemaphoreError::Timeout)
            );
            s.release().unwrap();
            assert_eq!(s.value(), 1);
            let u = Semaphore::new(0);
            for _ in 0..5 {
                u.release().unwrap();
            }
            assert_eq!(u.value(), 5);
        });
    }

    #[test]
    fn release_wakes_blocked_acquirer() {
        watchdog(10, || {
            let s = Semaphore::new(0);
            std::thread::scope(|scope| {
                scope.spawn(|| s.acquire());
                std::thread::sleep(Duration::from_millis(20));
                s.release().unwrap();
            });
            assert_eq!(s.value(), 0);
        });
    }

    #[test]
    fn layout_is_documented() {
        assert_eq!(std::mem::size_of::<Semaphore>(), 144);
        assert_eq!(std::mem::align_of::<Semaphore>(), 8);
    }

    #[test]
    fn plain_guards_release_on_drop_and_forget_keeps_the_permit() {
        let s = Semaphore::bounded(2);
        {
            let _a = s.acquire_guard();
            let _b = s.try_acquire_guard().unwrap();
            assert_eq!(s.value(), 0);
            assert_eq!(
                s.acquire_guard_timeout(Duration::from_millis(1)).err(),
                Some(SemaphoreError::Timeout)
            );
        }
        assert_eq!(s.value(), 2);
        // A timeout past what a deadline can hold saturates: it waits, it does not panic.
        drop(s.acquire_guard_timeout(Duration::MAX).unwrap());
        drop(s.acquire_robust_timeout(Duration::MAX).unwrap());
        s.acquire_guard().forget();
        assert_eq!(s.value(), 1);
        s.release().unwrap();
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    }

    #[test]
    fn robust_permits_count_against_the_bound_and_fill_the_owner_slots() {
        let s = Semaphore::bounded(20);
        let permits: Vec<_> = (0..Semaphore::OWNER_SLOTS)
            .map(|_| s.acquire_robust().unwrap())
            .collect();
        let mut slots: Vec<_> = permits.iter().map(RobustPermit::slot).collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), Semaphore::OWNER_SLOTS);
        assert_eq!(s.value(), 4);
        // Every slot is held by a live thread: no robust permit is left, plain ones are.
        assert_eq!(
            s.try_acquire_robust().err(),
            Some(SemaphoreError::OwnersFull)
        );
        assert_eq!(s.acquire_robust().err(), Some(SemaphoreError::OwnersFull));
        assert_eq!(
            crate::Error::from(SemaphoreError::OwnersFull).to_string(),
            crate::Error::Full.to_string()
        );
        s.try_acquire().unwrap();
        // The bound counts robust holders: 3 free + 1 plain taken + 16 held = 20, so one
        // release fits and a second is an over-release.
        s.release().unwrap();
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
        assert_eq!(s.reclaim(), 0, "no holder is dead");
        drop(permits);
        assert_eq!(s.value(), 20);
        let p = s.try_acquire_robust().unwrap();
        assert_eq!(s.value(), 19);
        drop(p);
        assert_eq!(s.value(), 20);
    }

    #[test]
    fn a_robust_permit_of_an_ended_thread_returns_to_a_blocked_acquirer() {
        watchdog(20, || {
            let s = Semaphore::bounded(1);
            on_dead_thread(|| std::mem::forget(s.acquire_robust().unwrap()));
            assert_eq!(s.value(), 0);
            // try_ forms do not look for dead holders; a blocking acquire does.
            assert_eq!(s.try_acquire(), Err(SemaphoreError::WouldBlock));
            let t = Instant::now();
            s.acquire_timeout(Duration::from_secs(5)).unwrap();
            assert!(t.elapsed() < Duration::from_secs(5));
            assert_eq!(s.value(), 0);
            s.release().unwrap();
            assert_eq!(s.value(), 1);
            // The dead holder's slot is free again (all 16 can be claimed), and `reclaim` finds
            // nothing more.
            assert_eq!(s.reclaim(), 0);
            on_dead_thread(|| std::mem::forget(s.acquire_robust().unwrap()));
            assert_eq!(s.occupied_slots(), 1);
            assert_eq!(s.reclaim(), 1);
            assert_eq!(s.value(), 1);
            assert_eq!(s.occupied_slots(), 0);
        });
    }

    #[test]
    fn robust_release_wakes_a_blocked_acquirer() {
        watchdog(10, || {
            let s = Semaphore::new(1);
            let p = s.acquire_robust().unwrap();
            let mine = p.slot();
            let theirs = std::thread::scope(|scope| {
                let h = scope.spawn(|| s.acquire_robust().unwrap().slot());
                std::thread::sleep(Duration::from_millis(20));
                drop(p);
                h.join().unwrap()
            });
            // The slot freed by the release may be reused; both were valid slots.
            assert!(mine < Semaphore::OWNER_SLOTS && theirs < Semaphore::OWNER_SLOTS);
            assert_eq!(s.value(), 1);
        });
    }
}
