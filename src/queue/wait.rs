//! The blocking side of the rings: a futex word with a waiter count, so that the side making
//! progress pays no syscall unless someone sleeps.
//!
//! Protocol (a store-buffering handshake, closed by a fence on each side):
//!
//! ```text
//! waiter                                   notifier
//! waiters += 1                             publish (stamp / index store)
//! sleep fence                              notify fence
//! seq0 = seq                               if waiters != 0 { seq += 1; futex_wake(seq) }
//! re-try the operation; if still blocked:
//!   futex_wait(seq, seq0, deadline)
//! waiters -= 1
//! ```
//!
//! Either the notifier's fence comes first, and then the waiter's retry sees the publication, or
//! the waiter's comes first, and then the notifier sees `waiters != 0` and bumps `seq`, which
//! makes the `futex_wait` return (the kernel compares the word under its own lock). No wake-up
//! is lost; the loom models check it.
//!
//! The fences are the signal's [`Fences`] type, so every user of one signal uses the same pair:
//! [`Asymmetric`] (`loom::handshake`: a compiler fence to notify, a `membarrier` to go to sleep)
//! for the rings, whose operations are a few atomic instructions each, so that a full fence per
//! operation would be a large part of their cost (the SPSC ring publishes with a plain store,
//! which the fence would wait for every time); [`Symmetric`] (`SeqCst` on both sides) for the
//! channel, whose operations take a lock anyway.

use crate::loom::futex::{self, Deadline};
use crate::loom::handshake;
use crate::loom::sync::atomic::{AtomicU32, Ordering, fence};
use std::marker::PhantomData;
use std::time::Duration;

/// The pair of fences that closes a [`Signal`]'s handshake.
pub(crate) trait Fences {
    /// The notifier's, between its publication and its load of `waiters`.
    fn notify_fence();
    /// The waiter's, between `waiters += 1` and its re-try. `false` if notifiers in other
    /// processes may not be covered: the waiter then sleeps in bounded slices.
    fn sleep_fence() -> bool;
}

/// `SeqCst` fences on both sides.
#[derive(Debug)]
pub(crate) struct Symmetric;

impl Fences for Symmetric {
    #[inline]
    fn notify_fence() {
        fence(Ordering::SeqCst);
    }
    fn sleep_fence() -> bool {
        fence(Ordering::SeqCst);
        true
    }
}

/// [`handshake`]: a compiler fence for the notifier, a `membarrier` for the waiter.
#[derive(Debug)]
pub(crate) struct Asymmetric;

impl Fences for Asymmetric {
    #[inline]
    fn notify_fence() {
        handshake::hot_fence();
    }
    fn sleep_fence() -> bool {
        handshake::cold_fence()
    }
}

/// The longest sleep of a waiter whose fence could not cover other processes' notifiers.
const UNCOVERED_SLICE: Duration = Duration::from_millis(2);

/// A condition ("not empty", "not full") that threads of any process can sleep on.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Signal<F: Fences = Symmetric> {
    /// Bumped once per wake; the futex word.
    seq: AtomicU32,
    /// How many threads are between `register` and `unregister`.
    waiters: AtomicU32,
    _fences: PhantomData<F>,
}

/// What [`Signal::register`] hands the waiter for its [`sleep`](Signal::sleep).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    /// `seq` as read after the fence.
    seq: u32,
    /// Whether the fence covered every notifier (else sleep in bounded slices).
    covered: bool,
}

impl<F: Fences> Signal<F> {
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            _fences: PhantomData,
        }
    }

    /// Called after publishing progress: wakes one sleeper if there may be one. Costs a fence
    /// and a load when nobody waits.
    #[inline]
    pub(crate) fn notify_one(&self) {
        F::notify_fence();
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.wake(false);
        }
    }

    /// Like [`notify_one`](Self::notify_one), waking every sleeper.
    #[inline]
    pub(crate) fn notify_all(&self) {
        F::notify_fence();
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.wake(true);
        }
    }

    /// Wakes every sleeper unconditionally (close).
    pub(crate) fn wake_everyone(&self) {
        self.wake(true);
    }

    #[cold]
    fn wake(&self, all: bool) {
        // Release: a waiter that reads the new `seq` also sees what was published before.
        self.seq.fetch_add(1, Ordering::Release);
        if all {
            futex::wake_all(&self.seq);
        } else {
            futex::wake_one(&self.seq);
        }
    }

    /// Announces a waiter; returns the ticket to sleep on. The caller must retry its operation
    /// after this and before [`sleep`](Self::sleep), then call [`unregister`](Self::unregister).
    pub(crate) fn register(&self) -> Ticket {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let covered = F::sleep_fence();
        Ticket {
            seq: self.seq.load(Ordering::Acquire),
            covered,
        }
    }

    /// Sleeps while `seq` is unchanged, until woken or `deadline`. `false` if the deadline
    /// passed; `true` when woken (or spuriously, or at the end of an uncovered ticket's slice).
    pub(crate) fn sleep(&self, ticket: Ticket, deadline: Option<Deadline>) -> bool {
        if ticket.covered {
            return futex::wait(&self.seq, ticket.seq, deadline);
        }
        let slice = Deadline::after(UNCOVERED_SLICE);
        match deadline {
            Some(d) if d <= slice => futex::wait(&self.seq, ticket.seq, Some(d)),
            _ => {
                futex::wait(&self.seq, ticket.seq, Some(slice));
                true
            }
        }
    }

    /// Withdraws a waiter announced by [`register`](Self::register).
    pub(crate) fn unregister(&self) {
        // A peer may have scribbled over the count; wrapping is harmless (extra or missed
        // wake-ups caused by the peer, never memory unsafety).
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often the blocking loops re-try (with a spin-loop hint) before their first sleep: a few
/// microseconds, about what announcing an [`Asymmetric`] sleeper costs.
pub(crate) const SPINS_BEFORE_SLEEP: u32 = if cfg!(multiproc_loom) { 0 } else { 100 };

/// Re-tries `attempt`, sleeping on `signal` while `blocked` says it must wait, until it succeeds,
/// fails for good (`Err(Some(e))`), or `deadline` passes (`Err(None)`).
pub(crate) fn block_on<R, E, F: Fences>(
    signal: &Signal<F>,
    deadline: Option<Deadline>,
    mut attempt: impl FnMut() -> Result<R, E>,
    blocked: impl Fn(&E) -> bool,
) -> Result<R, Option<E>> {
    // Re-tries before the first sleep: announcing a sleeper costs more than a short wait.
    let mut spins = SPINS_BEFORE_SLEEP;
    loop {
        match attempt() {
            Err(e) if blocked(&e) => {}
            other => return other.map_err(Some),
        }
        if spins > 0 {
            spins -= 1;
            crate::loom::hint::spin_loop();
            continue;
        }
        let seq = signal.register();
        // Re-try after announcing ourselves: a publication from now on wakes us.
        match attempt() {
            Err(e) if blocked(&e) => {}
            other => {
                signal.unregister();
                return other.map_err(Some);
            }
        }
        let woken = signal.sleep(seq, deadline);
        signal.unregister();
        if !woken {
            // One last look: a peer killed between publishing and waking us left its progress
            // there without a wake-up.
            return match attempt() {
                Err(e) if blocked(&e) => Err(None),
                other => other.map_err(Some),
            };
        }
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A ticket whose fence did not cover other processes never sleeps past one slice, so a
    /// notifier that skipped its fence delays the waiter by at most that.
    #[test]
    fn an_uncovered_ticket_sleeps_in_slices() {
        let signal = Signal::<Asymmetric>::new();
        let mut ticket = signal.register();
        ticket.covered = false;
        let t = Instant::now();
        assert!(
            signal.sleep(ticket, None),
            "a slice's end reads as a wake-up"
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // A deadline before the slice ends is still reported as a timeout.
        let deadline = Deadline::after(Duration::from_micros(100));
        assert!(!signal.sleep(ticket, Some(deadline)));
        signal.unregister();
    }

    /// This kernel offers membarrier, so sleepers here are covered (the fast path is taken).
    #[test]
    fn asymmetric_tickets_are_covered_where_membarrier_works() {
        let signal = Signal::<Asymmetric>::new();
        let ticket = signal.register();
        signal.unregister();
        assert_eq!(ticket.covered, crate::sys::membarrier::barrier_everywhere());
    }
}
