//! A reusable process-shared barrier with Python's semantics (`threading.Barrier`): arrival
//! indices, a leader per generation, timeouts that break it, `abort` and `reset`.
//!
//! Everything lives in one futex word, so every waiter sleeps on, and every transition changes,
//! the same 32 bits:
//!
//! ```text
//! bits 18..=31  generation (wrapping): bumped only when a generation completes
//! bit  17       RESETTING: reset() was called with waiters inside; they leave with Broken, and
//!               the last to leave clears RESETTING and BROKEN. Arrivals wait meanwhile.
//! bit  16       BROKEN: a waiter timed out or abort() was called; waiters leave with Broken,
//!               arrivals fail at once, until reset()
//! bits 0..=15   count: parties that arrived in this generation and have not left
//! ```
//!
//! **No ABA between generations.** The generation changes only when a generation completes; a
//! generation that breaks or is reset keeps its number until every waiter counted in it has left.
//! So a waiter that wakes (however late) and sees another generation number knows its own
//! generation completed; if it sees its own number with BROKEN or RESETTING, it was broken.
//! (Only 2^14 completed generations while one waiter sleeps, which needs more threads than
//! parties, could fool it.)

use super::BarrierError;
use crate::crash;
use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const COUNT_MASK: u32 = 0xFFFF;
const BROKEN: u32 = 1 << 16;
const RESETTING: u32 = 1 << 17;
const GEN_SHIFT: u32 = 18;
const GEN_ONE: u32 = 1 << GEN_SHIFT;
const GEN_MASK: u32 = !(GEN_ONE - 1);

/// The largest number of parties (the count has 16 bits).
const MAX_PARTIES: u32 = COUNT_MASK;

#[inline]
fn count(w: u32) -> u32 {
    w & COUNT_MASK
}

#[inline]
fn generation(w: u32) -> u32 {
    w & GEN_MASK
}

/// A barrier for a fixed number of parties, reusable across generations, shared across
/// processes.
///
/// `#[repr(C)]`, 8 bytes. [`Barrier::wait`] blocks until `parties` callers have arrived, then
/// releases them all; each gets its arrival index, `0` for the first (the generation's single
/// leader) up to `parties - 1`. A waiter whose timeout passes **breaks** the barrier: it gets
/// [`BarrierError::Timeout`], every other current waiter [`BarrierError::Broken`], and later
/// callers `Broken` until [`Barrier::reset`]. [`Barrier::abort`] breaks it on purpose.
/// [`Barrier::reset`] makes current waiters fail with `Broken` and returns the barrier to empty
/// and usable once they have left.
///
/// A party that dies while waiting stays counted: the generation cannot complete, so the others
/// time out (and break it); a reset cannot complete until the count drains, so give every wait a
/// timeout when parties may die.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Barrier;
/// use std::sync::Arc;
///
/// let b = Arc::new(Barrier::new(3));
/// let hs: Vec<_> = (0..3)
///     .map(|_| {
///         let b = Arc::clone(&b);
///         std::thread::spawn(move || b.wait().unwrap())
///     })
///     .collect();
/// let mut idx: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
/// idx.sort();
/// assert_eq!(idx, [0, 1, 2]); // exactly one leader (index 0)
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
///     let b = Shared::new(Barrier::new(3))?;
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
}

// SAFETY: two atomics; every word value is some generation, flags and count (counts above the
// parties complete a generation), parties is clamped on use; `#[repr(C)]`, no pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl crate::safe::ShmSafe for Barrier {}

impl Barrier {
    /// The largest number of parties (the count has 16 bits).
    pub const MAX_PARTIES: u32 = MAX_PARTIES;

    /// A barrier for `parties` callers (0 behaves as 1).
    ///
    /// # Panics
    ///
    /// If `parties` exceeds [`Barrier::MAX_PARTIES`].
    pub fn new(parties: u32) -> Self {
        assert!(
            parties <= MAX_PARTIES,
            "Barrier: at most {MAX_PARTIES} parties"
        );
        Barrier {
            word: AtomicU32::new(0),
            parties: AtomicU32::new(parties.max(1)),
        }
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
    /// [`BarrierError::Broken`] if the barrier is or becomes broken or reset while waiting.
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

    fn wait_deadline(&self, deadline: Option<Deadline>) -> Result<usize, BarrierError> {
        let n = self.parties();
        // Arrive. Acquire/Release on every transition: the last arrival publishes the
        // generation's writes to everyone it releases and sees theirs.
        let mut w = self.word.load(Ordering::Acquire);
        let index = loop {
            if w & RESETTING != 0 {
                if !futex::wait(&self.word, w, deadline) {
                    return Err(BarrierError::Timeout);
                }
                w = self.word.load(Ordering::Acquire);
                continue;
            }
            if w & BROKEN != 0 {
                return Err(BarrierError::Broken);
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
                        return Ok(c.min(n - 1) as usize);
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
                        break c as usize;
                    }
                    Err(now) => w = now,
                }
            }
        };
        // Wait for the generation to complete or break.
        let my_gen = generation(w);
        let mut cur = w + 1;
        loop {
            let woken = futex::wait(&self.word, cur, deadline);
            crash::point("barrier.wait.after_wait");
            cur = self.word.load(Ordering::Acquire);
            loop {
                if generation(cur) != my_gen {
                    return Ok(index);
                }
                if cur & (BROKEN | RESETTING) != 0 {
                    self.leave(cur);
                    return Err(BarrierError::Broken);
                }
                if woken && !deadline.is_some_and(Deadline::has_passed) {
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

    /// Leaves a broken or resetting generation; the last to leave a reset completes it.
    fn leave(&self, mut cur: u32) {
        loop {
            let mut new = cur - u32::from(count(cur) > 0);
            let finishes_reset = count(new) == 0 && new & RESETTING != 0;
            if finishes_reset {
                new &= !(RESETTING | BROKEN);
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
    /// [`BarrierError::Broken`]; until they have all left, new callers wait.
    pub fn reset(&self) {
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            let new = if count(w) == 0 {
                w & !(BROKEN | RESETTING)
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

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::testing::watchdog;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn phases_one_leader_each() {
        watchdog(20, || {
            let b = Arc::new(Barrier::new(4));
            let phase = Arc::new(AtomicU32::new(0));
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let (b, phase) = (Arc::clone(&b), Arc::clone(&phase));
                    std::thread::spawn(move || {
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
            let leads: u32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(leads, 50);
        });
    }

    #[test]
    fn timeout_breaks_for_all_and_reset_repairs() {
        watchdog(10, || {
            let b = Arc::new(Barrier::new(3));
            let b2 = Arc::clone(&b);
            let other = std::thread::spawn(move || b2.wait());
            std::thread::sleep(Duration::from_millis(10));
            let t = Instant::now();
            assert_eq!(
                b.wait_timeout(Duration::from_millis(30)),
                Err(BarrierError::Timeout)
            );
            let e = t.elapsed();
            assert!(
                // Tight below; generous above (tests run in parallel on 2 cores).
                e >= Duration::from_millis(30) && e < Duration::from_secs(5),
                "{e:?}"
            );
            assert_eq!(other.join().unwrap(), Err(BarrierError::Broken));
            assert!(b.is_broken());
            assert_eq!(b.wait(), Err(BarrierError::Broken));
            b.reset();
            assert!(!b.is_broken());
            let b1 = Barrier::new(1);
            assert_eq!(b1.wait(), Ok(0));
            assert_eq!(b1.wait(), Ok(0));
        });
    }

    #[test]
    fn abort_and_reset_release_waiters_with_broken() {
        watchdog(10, || {
            let b = Arc::new(Barrier::new(3));
            for action in [Barrier::abort as fn(&Barrier), Barrier::reset] {
                let hs: Vec<_> = (0..2)
                    .map(|_| {
                        let b = Arc::clone(&b);
                        std::thread::spawn(move || b.wait())
                    })
                    .collect();
                while b.n_waiting() < 2 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                action(&b);
                for h in hs {
                    assert_eq!(h.join().unwrap(), Err(BarrierError::Broken));
                }
                b.reset();
                assert_eq!(b.n_waiting(), 0);
                assert!(!b.is_broken());
            }
            // Usable again.
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let b = Arc::clone(&b);
                    std::thread::spawn(move || b.wait().unwrap())
                })
                .collect();
            let mut idx: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            idx.sort();
            assert_eq!(idx, [0, 1, 2]);
        });
    }
}
