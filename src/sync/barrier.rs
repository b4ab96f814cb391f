//! A reusable process-shared barrier with Python's semantics (`threading.Barrier`): arrival
//! indices, a leader per generation, timeouts that break it, `abort` and `reset`; and a party
//! killed while it waits breaks it for the others within a few milliseconds, saying who.
//!
//! Everything the waiters sleep on lives in one futex word, so every waiter sleeps on, and every
//! transition changes, the same 32 bits:
//!
//! ```text
//! bits 19..=31  generation (wrapping): bumped when a generation completes or a reset finishes
//! bit  18       DIED: set with BROKEN when a waiter found a waiting party dead; `died` says who
//! bit  17       RESETTING: reset() was called with waiters inside; they leave with Broken, and
//!               the last to leave clears RESETTING, BROKEN and DIED. Arrivals wait meanwhile.
//! bit  16       BROKEN: a waiter timed out, abort() was called or a party died; waiters leave
//!               with Broken (PartyDied if DIED), arrivals fail at once, until reset()
//! bits 0..=15   count: parties that arrived in this generation and have not left
//! ```
//!
//! **No ABA between generations.** The generation changes only when a generation completes or a
//! reset finishes (with nobody counted); a generation that breaks keeps its number until every
//! waiter counted in it has left. So a waiter that wakes (however late) and sees another
//! generation number knows its own generation completed; if it sees its own number with BROKEN
//! or RESETTING, it was broken. (Only 2^13 generations while one waiter sleeps, which needs more
//! threads than parties, could fool it.)
//!
//! **Dead parties.** The first [`Barrier::TRACKED_PARTIES`] arrivals of a generation record
//! `generation << 32 | pid` in the slot of their arrival index. Every sleep is at most one slice
//! (`wait::SLICE`); after each, the waiter with index `i` checks the process recorded in slot
//! `(i + 1) % tracked`, or the next recorded one after it (a ring: every tracked waiter is
//! watched by one other, one `/proc` read per waiter per slice). A watcher that finds its party
//! dead breaks the barrier with DIED (recording the pid in `died`), then claims the slot (CAS to
//! 0, so one waiter acts for it) and leaves the generation on its behalf (count - 1). A waiter
//! waiting for a reset to finish reaps dead parties the same way (the reset completes when the
//! last one is reaped), so a recorded dead party no longer wedges a reset.
//!
//! **Registered parties.** [`Barrier::register`] puts the caller's pid in a free registration
//! slot until its guard drops. After each slice, waiter `i` also checks the registration slots
//! `i, i + tracked, ...`; a dead registered party breaks the barrier with DIED, and its slot is
//! freed. It may not have arrived: nothing is left for on its behalf (if it had arrived, its
//! arrival slot is reaped by whoever waits for the reset).

use super::BarrierError;
use super::wait::sleep;
use crate::crash;
use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const COUNT_MASK: u32 = 0xFFFF;
const BROKEN: u32 = 1 << 16;
const RESETTING: u32 = 1 << 17;
const DIED: u32 = 1 << 18;
const GEN_SHIFT: u32 = 19;
const GEN_ONE: u32 = 1 << GEN_SHIFT;
const GEN_MASK: u32 = !(GEN_ONE - 1);

/// The largest number of parties (the count has 16 bits).
const MAX_PARTIES: u32 = COUNT_MASK;

/// Arrival slots (fewer in loom models: every atomic is explored).
const TRACKED: usize = if cfg!(multiproc_loom) { 3 } else { 64 };

#[inline]
fn count(w: u32) -> u32 {
    w & COUNT_MASK
}

#[inline]
fn generation(w: u32) -> u32 {
    w & GEN_MASK
}

/// A slot's value: the generation (the word's top bits) and the party's process id.
#[inline]
fn slot_value(w: u32, pid: u32) -> u64 {
    (u64::from(generation(w)) << 32) | u64::from(pid)
}

/// The calling party's id: its process id (its modelled thread id in loom).
fn my_pid() -> u32 {
    #[cfg(not(multiproc_loom))]
    return crate::sys::proc::getpid();
    #[cfg(multiproc_loom)]
    return super::owner::model::current_tid();
}

/// Whether the party `pid` is proven dead (gone or a zombie; unknown counts as alive).
fn is_dead(pid: u32) -> bool {
    use super::owner::{DefaultProbe, Liveness, OwnerProbe};
    DefaultProbe::default().liveness(pid) == Liveness::Dead
}

/// A barrier for a fixed number of parties, reusable across generations, shared across
/// processes.
///
/// `#[repr(C)]`, 784 bytes (the futex word, the parties, who died,
/// [`Barrier::TRACKED_PARTIES`] arrival slots and as many registration slots). [`Barrier::wait`] blocks until `parties` callers
/// have arrived, then releases them all; each gets its arrival index, `0` for the first (the
/// generation's single leader) up to `parties - 1`. A waiter whose timeout passes **breaks** the
/// barrier: it gets [`BarrierError::Timeout`], every other current waiter
/// [`BarrierError::Broken`], and later callers `Broken` until [`Barrier::reset`].
/// [`Barrier::abort`] breaks it on purpose. [`Barrier::reset`] makes current waiters fail with
/// `Broken` and returns the barrier to empty and usable once they have left.
///
/// **A party killed while it waits** (one of the first [`Barrier::TRACKED_PARTIES`] arrivals of
/// its generation) breaks the barrier for the others within a few milliseconds, without any
/// timeout: they and later callers get [`BarrierError::PartyDied`] with its process id, until
/// [`Barrier::reset`]. A party that may die *before* it arrives can [`Barrier::register`]: while
/// registered, its death breaks the barrier the same way. Not detected: an unregistered party
/// that dies before it arrives (the others wait for it until their timeout), an arrival beyond
/// the tracked ones, and a party killed in the few
/// instructions between its arrival and recording its id (it then still counts: the generation
/// completes when the others arrive). Threads of one process are one party id: a thread that
/// exits while waiting is not a death.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Barrier;
/// use std::sync::Arc;
///
/// let b = Arc::new(Barrier::new(3)?);
/// let hs: Vec<_> = (0..3)
///     .map(|_| {
///         let b = Arc::clone(&b);
///         std::thread::spawn(move || b.wait().unwrap())
///     })
///     .collect();
/// let mut idx: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
/// idx.sort();
/// assert_eq!(idx, [0, 1, 2]); // exactly one leader (index 0)
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Between processes: put it in shared memory ([`Shared`](crate::Shared)) and pass a clone of the
/// handle to each child.
///
/// ```rust,standalone_crate
/// use multiproc::sync::Barrier;
/// use multiproc::{Process, Shared};
/// use std::time::Duration;
///
/// fn party(b: Shared<Barrier>) -> usize {
///     b.wait_timeout(Duration::from_secs(10)).unwrap()
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let b = Shared::new(Barrier::new(3)?)?;
///     let children = (0..2)
///         .map(|_| Process::spawn(party, b.clone()))
///         .collect::<Result<Vec<_>, _>>()?;
///     let mut idx = vec![party(b.clone())]; // the parent is the third party
///     for child in children {
///         idx.push(child.join()?);
///     }
///     idx.sort();
///     assert_eq!(idx, [0, 1, 2]); // exactly one leader (index 0)
///     Ok(())
/// }
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Barrier {
    word: AtomicU32,
    parties: AtomicU32,
    /// The process id of a party found dead (meaningful while DIED is set).
    died: AtomicU32,
    _reserved: AtomicU32,
    /// `generation << 32 | pid` of the arrival with this index; 0 once claimed by a watcher.
    slots: [AtomicU64; TRACKED],
    /// Pids of registered parties ([`Barrier::register`]); 0 = free.
    registered: [AtomicU32; TRACKED],
}

// SAFETY: atomics only; every word value is some generation, flags and count (counts above the
// parties complete a generation), parties is clamped on use, a slot or `died` with any value
// names some process id to probe (a wrong one only breaks the barrier or misses a death);
// `#[repr(C)]`, no pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl crate::safe::ShmSafe for Barrier {}

impl Barrier {
    /// The largest number of parties (the count has 16 bits).
    pub const MAX_PARTIES: u32 = MAX_PARTIES;

    /// How many arrivals per generation record their process id, so that their death while
    /// waiting breaks the barrier at once (the first 64 arrival indices).
    pub const TRACKED_PARTIES: u32 = TRACKED as u32;

    /// A barrier for `parties` callers (0 behaves as 1).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`](crate::Error::InvalidSize) if `parties` exceeds
    /// [`Barrier::MAX_PARTIES`].
    pub fn new(parties: u32) -> crate::Result<Self> {
        if parties > MAX_PARTIES {
            return Err(crate::Error::InvalidSize {
                reason: "a barrier has at most 65535 parties",
            });
        }
        Ok(Barrier {
            word: AtomicU32::new(0),
            parties: AtomicU32::new(parties.max(1)),
            died: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            registered: std::array::from_fn(|_| AtomicU32::new(0)),
        })
    }

    /// Registers the calling process as a party that will keep coming: until the returned guard
    /// is dropped, if this process dies (arrived or not), waiters find it within a slice and
    /// break the barrier with [`BarrierError::PartyDied`] naming it, instead of waiting for their
    /// timeout. Drop the guard before exiting on purpose: an exit while registered is a death.
    /// Several threads of a process may register (each takes a slot; the pid is the same).
    ///
    /// # Errors
    ///
    /// [`Error::Full`](crate::Error::Full) if all [`Barrier::TRACKED_PARTIES`] registration
    /// slots are taken.
    pub fn register(&self) -> crate::Result<Registration<'_>> {
        let pid = my_pid();
        for (slot, r) in self.registered.iter().enumerate() {
            if r.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Registration {
                    barrier: self,
                    slot,
                    pid,
                });
            }
        }
        Err(crate::Error::Full)
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed).clamp(1, MAX_PARTIES)
    }

    /// Whether the barrier is broken (and not being reset).
    pub fn is_broken(&self) -> bool {
        self.word.load(Ordering::Relaxed) & (BROKEN | RESETTING) == BROKEN
    }

    /// The number of parties waiting now (a snapshot).
    pub fn n_waiting(&self) -> u32 {
        count(self.word.load(Ordering::Relaxed))
    }

    /// Waits for all parties; returns this caller's arrival index (0 = leader).
    ///
    /// # Errors
    ///
    /// [`BarrierError::Broken`] if the barrier is or becomes broken or reset while waiting;
    /// [`BarrierError::PartyDied`] if it is or becomes broken by a party's death.
    pub fn wait(&self) -> Result<usize, BarrierError> {
        self.wait_deadline(None)
    }

    /// Like [`Barrier::wait`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Timeout`] if the time ran out while this caller waited for the others
    /// (the barrier is then broken for them), or while it waited for a reset to finish (nothing
    /// is broken then); otherwise as [`Barrier::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierError> {
        self.wait_deadline(Some(Deadline::after(timeout)))
    }

    /// Like [`Barrier::wait`], waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`Barrier::wait_timeout`].
    pub fn wait_until(&self, deadline: Instant) -> Result<usize, BarrierError> {
        self.wait_deadline(Some(Deadline::at(deadline)))
    }

    /// The error of a broken word.
    fn broken(&self, w: u32) -> BarrierError {
        if w & DIED != 0 {
            BarrierError::PartyDied {
                pid: self.died.load(Ordering::Relaxed),
            }
        } else {
            BarrierError::Broken
        }
    }

    fn wait_deadline(&self, deadline: Option<Deadline>) -> Result<usize, BarrierError> {
        match self.arrive(deadline) {
            Ok((index, w)) => self.await_generation(index, w, deadline),
            Err(done) => done,
        }
    }

    /// Models a party that arrives and dies while it waits (a loom thread cannot be stopped
    /// inside `wait`).
    #[cfg(all(test, multiproc_loom))]
    pub(crate) fn arrive_and_die(&self) {
        let _ = self.arrive(None);
        super::owner::model::die();
    }

    /// Arrives: `Ok((index, word))` to wait for the generation the word (as the arrival found
    /// it) names, or `Err` with the caller's result (the last arrival, a broken barrier, a
    /// timeout while a reset finished).
    #[allow(clippy::type_complexity)]
    fn arrive(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<(usize, u32), Result<usize, BarrierError>> {
        let n = self.parties();
        // Arrive. Acquire/Release on every transition: the last arrival publishes the
        // generation's writes to everyone it releases and sees theirs.
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if w & RESETTING != 0 {
                // Wait for the reset to finish, in slices: reap the dead parties it waits for.
                let woken = sleep(&self.word, w, deadline, true);
                let now = self.word.load(Ordering::Acquire);
                if now == w {
                    if !woken || deadline.is_some_and(Deadline::has_passed) {
                        return Err(Err(BarrierError::Timeout));
                    }
                    self.reap_any(w);
                }
                w = self.word.load(Ordering::Acquire);
                continue;
            }
            if w & BROKEN != 0 {
                return Err(Err(self.broken(w)));
            }
            let c = count(w);
            if c + 1 >= n {
                // Last arrival: complete the generation.
                let next = generation(w).wrapping_add(GEN_ONE);
                match self
                    .word
                    .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        crash::point("barrier.complete.before_wake");
                        if c > 0 {
                            futex::wake_all(&self.word);
                        }
                        return Err(Ok(c.min(n - 1) as usize));
                    }
                    Err(now) => w = now,
                }
            } else {
                match self
                    .word
                    .compare_exchange(w, w + 1, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        crash::point("barrier.wait.after_arrive");
                        if let Some(slot) = self.slots.get(c as usize) {
                            // Release: a watcher that reads it sees the arrival.
                            slot.store(slot_value(w, my_pid()), Ordering::Release);
                            crash::point("barrier.wait.after_record");
                        }
                        return Ok((c as usize, w));
                    }
                    Err(now) => w = now,
                }
            }
        }
    }

    /// Waits for the generation of `w` (the word as arrival `index` found it) to complete or
    /// break, in slices (a waker killed before its wake delays us by one slice; a party killed
    /// while waiting is found by its watcher).
    fn await_generation(
        &self,
        index: usize,
        w: u32,
        deadline: Option<Deadline>,
    ) -> Result<usize, BarrierError> {
        let my_gen = generation(w);
        let mut cur = w + 1;
        loop {
            let woken = sleep(&self.word, cur, deadline, true);
            crash::point("barrier.wait.after_wait");
            cur = self.word.load(Ordering::Acquire);
            loop {
                if generation(cur) != my_gen {
                    return Ok(index);
                }
                if cur & (BROKEN | RESETTING) != 0 {
                    self.leave(cur);
                    return Err(self.broken(cur));
                }
                if woken && !deadline.is_some_and(Deadline::has_passed) {
                    if self.watch(index, cur) || self.watch_registered(index, cur) {
                        // We broke it for a dead party: leave with the others.
                        cur = self.word.load(Ordering::Acquire);
                        continue;
                    }
                    break;
                }
                // Timed out: leave and break the barrier in one step.
                let new = (cur - u32::from(count(cur) > 0)) | BROKEN;
                match self
                    .word
                    .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        crash::point("barrier.timeout.before_wake");
                        futex::wake_all(&self.word);
                        return Err(BarrierError::Timeout);
                    }
                    Err(now) => cur = now,
                }
            }
        }
    }

    /// The waiter with arrival `index` checks the party it watches (module docs): the next
    /// recorded slot of this generation after its own, in ring order (past slots emptied by a
    /// watcher that died reaping, or not yet recorded). If that party is dead, reaps it.
    /// Returns whether it reaped one.
    fn watch(&self, index: usize, cur: u32) -> bool {
        let tracked = (count(cur) as usize).min(TRACKED);
        if index >= tracked {
            return false;
        }
        for k in 1..tracked {
            let j = (index + k) % tracked;
            let v = self.slots[j].load(Ordering::Acquire);
            if v as u32 != 0 && (v >> 32) as u32 == generation(cur) {
                return self.reap_slot(j, cur);
            }
        }
        false
    }

    /// The waiter with arrival `index` checks the registered parties whose slot is `index`
    /// modulo the waiters tracked (so together the waiters check each registration once per
    /// slice); a dead one breaks the barrier with DIED and frees its registration. Returns
    /// whether it broke it.
    fn watch_registered(&self, index: usize, cur: u32) -> bool {
        let tracked = (count(cur) as usize).clamp(1, TRACKED);
        if index >= tracked {
            return false;
        }
        let me = my_pid();
        for r in self.registered.iter().skip(index).step_by(tracked) {
            let pid = r.load(Ordering::Acquire);
            if pid == 0 || pid == me || !is_dead(pid) {
                continue;
            }
            if self.break_for(pid, generation(cur)) {
                crash::point("barrier.registered.after_break");
                // Free the slot (unless it was freed and taken again meanwhile).
                let _ = r.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
                return true;
            }
            return false;
        }
        false
    }

    /// Sets BROKEN|DIED with `died = pid` while the word is generation `gen_` and neither broken
    /// nor resetting, and wakes the waiters. Returns whether the barrier is broken (or
    /// resetting) in that generation afterwards.
    fn break_for(&self, pid: u32, gen_: u32) -> bool {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if generation(w) != gen_ {
                // The generation completed: nothing to break.
                return false;
            }
            if w & (BROKEN | RESETTING) != 0 {
                return true;
            }
            self.died.store(pid, Ordering::Relaxed);
            // Release: `died` is visible to whoever sees DIED.
            match self.word.compare_exchange(
                w,
                w | BROKEN | DIED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    futex::wake_all(&self.word);
                    return true;
                }
                Err(now) => w = now,
            }
        }
    }

    /// Reaps every dead party recorded in this generation's slots (while a reset waits for them).
    fn reap_any(&self, cur: u32) {
        let tracked = (count(cur) as usize).min(TRACKED);
        for i in 0..tracked {
            self.reap_slot(i, cur);
        }
    }

    /// If slot `i` records a dead party of `cur`'s generation: breaks the barrier with DIED
    /// (unless it is already broken or resetting), then claims the slot and leaves the
    /// generation on the dead party's behalf (which may finish a reset). Returns whether it
    /// found a dead party.
    ///
    /// Breaking first: a watcher killed after that leaves the slot recorded, and whoever waits
    /// for a reset reaps it. Killed between claiming and leaving, the dead party stays counted
    /// (SAFETY.md: a reset then cannot finish).
    fn reap_slot(&self, i: usize, cur: u32) -> bool {
        let Some(slot) = self.slots.get(i) else {
            return false;
        };
        let v = slot.load(Ordering::Acquire);
        let pid = v as u32;
        let gen_ = generation(cur);
        if pid == 0 || (v >> 32) as u32 != gen_ || pid == my_pid() || !is_dead(pid) {
            return false;
        }
        if !self.break_for(pid, gen_) {
            // The generation completed with it counted: nothing to break.
            return false;
        }
        crash::point("barrier.died.after_break");
        // One waiter leaves for the dead party: whoever empties its slot.
        if slot
            .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            crash::point("barrier.died.after_claim");
            self.leave_generation(gen_);
        }
        true
    }

    /// [`leave`](Self::leave) the current word if it is still generation `gen_`.
    fn leave_generation(&self, gen_: u32) {
        let w = self.word.load(Ordering::Acquire);
        if generation(w) == gen_ {
            self.leave(w);
        }
    }

    /// Leaves a broken or resetting generation; the last to leave a reset completes it.
    fn leave(&self, mut cur: u32) {
        let gen_ = generation(cur);
        loop {
            if generation(cur) != gen_ {
                return;
            }
            let mut new = cur - u32::from(count(cur) > 0);
            let finishes_reset = count(new) == 0 && new & RESETTING != 0;
            if finishes_reset {
                new = (new & !(RESETTING | BROKEN | DIED)).wrapping_add(GEN_ONE);
            }
            match self
                .word
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if finishes_reset {
                        futex::wake_all(&self.word);
                    }
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Breaks the barrier: current waiters and later callers get [`BarrierError::Broken`] until
    /// [`Barrier::reset`].
    pub fn abort(&self) {
        let prev = self.word.fetch_or(BROKEN, Ordering::AcqRel);
        if count(prev) > 0 {
            futex::wake_all(&self.word);
        }
    }

    /// Returns the barrier to its empty, unbroken state. Current waiters get
    /// [`BarrierError::Broken`] (or `PartyDied`); until they have all left, new callers wait
    /// (and reap recorded parties that died inside, so a dead party does not hold the reset).
    pub fn reset(&self) {
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            let new = if count(w) == 0 {
                // A new generation number: the slots of the old one are stale.
                (w & !(BROKEN | RESETTING | DIED)).wrapping_add(GEN_ONE)
            } else {
                w | RESETTING
            };
            match self
                .word
                .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        if count(w) > 0 {
            futex::wake_all(&self.word);
        }
    }
}

/// A registered party of a [`Barrier`] (from [`Barrier::register`]): while it lives, this
/// process's death breaks the barrier for the others. Dropping it unregisters.
#[derive(Debug)]
#[must_use = "dropping the registration unregisters at once"]
pub struct Registration<'a> {
    barrier: &'a Barrier,
    slot: usize,
    pid: u32,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // Only our own entry (a watcher may have freed it already if it thought us dead).
        let _ = self.barrier.registered[self.slot].compare_exchange(
            self.pid,
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::sync::waits_for;
    use crate::testing::watchdog;

    #[test]
    fn layout_and_bad_sizes() {
        assert_eq!(std::mem::size_of::<Barrier>(), 784);
        assert!(matches!(
            Barrier::new(Barrier::MAX_PARTIES + 1),
            Err(crate::Error::InvalidSize { .. })
        ));
        let b = Barrier::new(Barrier::MAX_PARTIES).unwrap();
        assert_eq!(b.parties(), Barrier::MAX_PARTIES);
        // Registration slots run out into an error, and free again on drop.
        let regs: Vec<_> = (0..Barrier::TRACKED_PARTIES)
            .map(|_| b.register().unwrap())
            .collect();
        assert!(matches!(b.register(), Err(crate::Error::Full)));
        drop(regs);
        drop(b.register().unwrap());
    }

    #[test]
    fn phases_one_leader_each() {
        watchdog(20, || {
            let (b, phase) = (Barrier::new(4).unwrap(), AtomicU32::new(0));
            let leads: u32 = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            let mut leads = 0;
                            for p in 0..50 {
                                assert_eq!(phase.load(Ordering::SeqCst) / 4, p);
                                phase.fetch_add(1, Ordering::SeqCst);
                                let i = b.wait().unwrap();
                                assert!(i < 4);
                                leads += u32::from(i == 0);
                                // Everyone arrived before anyone left this phase.
                                assert!(phase.load(Ordering::SeqCst) >= 4 * (p + 1));
                                b.wait().unwrap();
                            }
                            leads
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(leads, 50);
        });
    }

    #[test]
    fn timeout_breaks_for_all_and_reset_repairs() {
        watchdog(10, || {
            let b = Barrier::new(3).unwrap();
            std::thread::scope(|s| {
                let other = s.spawn(|| b.wait());
                std::thread::sleep(Duration::from_millis(10));
                assert_eq!(
                    waits_for(30, |d| b.wait_timeout(d)),
                    Err(BarrierError::Timeout)
                );
                assert_eq!(other.join().unwrap(), Err(BarrierError::Broken));
            });
            assert!(b.is_broken());
            assert_eq!(b.wait(), Err(BarrierError::Broken));
            b.reset();
            assert!(!b.is_broken());
            let b1 = Barrier::new(1).unwrap();
            assert_eq!(b1.wait(), Ok(0));
            assert_eq!(b1.wait(), Ok(0));
        });
    }

    #[test]
    fn abort_and_reset_release_waiters_with_broken() {
        watchdog(10, || {
            let b = Barrier::new(3).unwrap();
            for action in [Barrier::abort as fn(&Barrier), Barrier::reset] {
                std::thread::scope(|s| {
                    let hs: Vec<_> = (0..2).map(|_| s.spawn(|| b.wait())).collect();
                    while b.n_waiting() < 2 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    action(&b);
                    for h in hs {
                        assert_eq!(h.join().unwrap(), Err(BarrierError::Broken));
                    }
                });
                b.reset();
                assert_eq!(b.n_waiting(), 0);
                assert!(!b.is_broken());
            }
            // Usable again.
            let mut idx: Vec<_> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..3).map(|_| s.spawn(|| b.wait().unwrap())).collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            idx.sort();
            assert_eq!(idx, [0, 1, 2]);
        });
    }
}
