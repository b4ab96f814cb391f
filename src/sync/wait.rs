//! Waiting and waking, once for the whole crate: a waiter count beside a futex word, so that the
//! side making progress pays no syscall unless someone sleeps; the one blocking loop built on
//! it; and the one [`Backoff`] that bounds spinning before a sleep. Every primitive in `sync/`
//! and every ring in `queue/` waits through this module (the MPMC ring's stall-aware driver
//! uses [`Signal`]'s steps directly).
//!
//! Protocol (a store-buffering handshake, closed by a fence on each side):
//!
//! ```text
//! waiter                                   notifier
//! waiters += 1                             publish (change the word, or a stamp / index)
//! sleep fence                              notify fence
//! expected = word (or seq)                 if waiters != 0 { futex_wake(word) }
//! re-check; if still blocked:
//!   futex_wait(word, expected, deadline)
//! waiters -= 1
//! ```
//!
//! Either the notifier's fence comes first, and then the waiter's re-check sees the
//! publication, or the waiter's comes first, and then the notifier sees `waiters != 0` and wakes
//! it; its publication changed the word (a [`Signal`] bumps its own `seq` word for that), so
//! the `futex_wait` returns at once if it had not started sleeping (the kernel compares the
//! word under its own lock). No wake-up is lost; the loom model `wait_protocol` checks it.
//!
//! The fences are a [`Fences`] type parameter, so every user of one word uses the same pair:
//! [`Asymmetric`] (`sys::membarrier`: a compiler fence to notify, a `membarrier` to go to sleep)
//! for the rings, whose operations are a few atomic instructions each, so that a full fence per
//! operation would be a large part of their cost (the SPSC ring publishes with a plain store,
//! which the fence would wait for every time); [`Symmetric`] (`SeqCst` on both sides) for the
//! primitives and the channel.

use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use crate::sys::membarrier as handshake;
use std::marker::PhantomData;
use std::time::Duration;

/// The pair of fences that closes the handshake on one futex word.
pub(crate) trait Fences {
    /// The notifier's, between its publication and its load of `waiters`.
    fn notify_fence();
    /// The waiter's, between `waiters += 1` and its re-check. `false` if notifiers in other
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

/// `membarrier`: a compiler fence for the notifier, a barrier on every CPU for the waiter.
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

/// The longest sleep of any waiter before it re-checks the word: a notifier killed between
/// changing the word and its wake call delays its sleepers by at most this (SAFETY.md, "No
/// sleeper depends on a dead waker"). Idle cost: one wake-up per slice per sleeping thread.
pub(crate) const SLICE: Duration = Duration::from_millis(5);
/// Bounded spinning before a sleep (crossbeam's `Backoff`, spin phase only): announcing a
/// sleeper costs more than a short wait. Loom models do not spin (a spin is only more
/// interleavings to explore).
#[derive(Debug)]
pub(crate) struct Backoff {
    left: u32,
}

impl Backoff {
    /// Spin-loop hints before a caller commits to sleeping: a few microseconds, about what
    /// announcing an [`Asymmetric`] sleeper costs.
    const SPINS: u32 = if cfg!(multiproc_loom) { 0 } else { 100 };

    #[inline]
    pub(crate) fn new() -> Self {
        Self { left: Self::SPINS }
    }

    /// One spin-loop hint; `false` (without spinning) once the budget is spent.
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        crate::loom::hint::spin_loop();
        true
    }

    /// Spins until `f` holds or the budget is spent; returns `f`'s last answer.
    #[inline]
    pub(crate) fn spin_until(mut f: impl FnMut() -> bool) -> bool {
        let mut backoff = Self::new();
        loop {
            if f() {
                return true;
            }
            if !backoff.spin() {
                return false;
            }
        }
    }
}

/// The waiter count of a futex word that belongs to a primitive (its state word, or a
/// [`Signal`]'s sequence). `#[repr(transparent)]`: one `u32` in the primitive's layout.
#[repr(transparent)]
#[derive(Debug)]
pub(crate) struct Waiters<F: Fences = Symmetric> {
    /// Threads between [`register`](Self::register) and [`unregister`](Self::unregister).
    count: AtomicU32,
    _fences: PhantomData<F>,
}

impl<F: Fences> Waiters<F> {
    pub(crate) fn new() -> Self {
        Self {
            count: AtomicU32::new(0),
            _fences: PhantomData,
        }
    }

    /// Called after publishing a change of `word`: wakes one sleeper on it (every sleeper if
    /// `all`) if there may be one; returns whether it made the wake call. Costs a fence and a
    /// load when nobody waits.
    #[inline]
    pub(crate) fn notify(&self, word: &AtomicU32, all: bool) -> bool {
        F::notify_fence();
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        wake(word, all);
        true
    }

    /// [`notify`](Self::notify) for a futex word that is the low half of a 64-bit word (the
    /// semaphore's state).
    #[inline]
    pub(crate) fn notify_low(&self, word: &AtomicU64, all: bool) -> bool {
        F::notify_fence();
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        futex::wake_low(word, if all { u32::MAX } else { 1 });
        true
    }

    /// Announces a waiter. The caller must re-check its condition after this and before it
    /// sleeps, then call [`unregister`](Self::unregister). `false` if the fence could not cover
    /// notifiers in other processes (see [`sleep`]).
    pub(crate) fn register(&self) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed);
        F::sleep_fence()
    }

    /// Withdraws a waiter announced by [`register`](Self::register).
    pub(crate) fn unregister(&self) {
        // A peer may have scribbled over the count; wrapping is harmless (extra or missed
        // wake-ups caused by the peer, never memory unsafety).
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Threads counted as waiting (for models).
    #[cfg(all(test, multiproc_loom))]
    pub(crate) fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cold]
fn wake(word: &AtomicU32, all: bool) {
    if all {
        futex::wake_all(word);
    } else {
        futex::wake_one(word);
    }
}

/// Sleeps while `word` holds `expected`, until woken, `deadline`, or the end of one slice
/// ([`SLICE`], or 2 ms if `covered` is `false`: the waiter's fence did not cover every
/// notifier). `false` if the deadline passed; `true` when woken, spuriously, or at the slice's
/// end, so the caller re-checks its condition: a notifier killed after it changed the word and
/// before its wake call delays the caller by at most a slice, never until its deadline (or
/// forever without one).
///
/// In loom models there is no time: an untimed sleep's slice ends when woken or when a modelled
/// thread died (or `time_passes`) since the caller last looked, so a lost wake-up is still a
/// deadlock; a timed sleep times out at once.
pub(crate) fn sleep(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Deadline>,
    covered: bool,
) -> bool {
    let slice = Deadline::after(if covered { SLICE } else { UNCOVERED_SLICE });
    match deadline {
        // In loom models a timed wait fires at once (there is no time), as it did before the
        // slices: callers with their own deadlines (the MPMC driver's stall checks) rely on it.
        Some(d) if cfg!(multiproc_loom) || d <= slice => futex::wait(word, expected, Some(d)),
        _ => {
            futex::poll_wait(word, expected, slice);
            true
        }
    }
}

/// Sleeps in slices (see [`sleep`]) until `word` no longer holds `expected` or `deadline`
/// passes; `false` on the deadline. For waiters whose wake-up is exactly "the word changed"
/// (a condvar's sequence), so that a slice's end is not reported as a spurious wake-up.
pub(crate) fn sleep_while_eq(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Deadline>,
    covered: bool,
) -> bool {
    loop {
        if !sleep(word, expected, deadline, covered) {
            return false;
        }
        if word.load(Ordering::Acquire) != expected {
            return true;
        }
        if deadline.is_some_and(Deadline::has_passed) {
            return false;
        }
    }
}

/// What a blocking loop's check found.
#[derive(Debug)]
pub(crate) enum Poll<R> {
    /// Done (well or for good): leave the loop with this.
    Ready(R),
    /// Not yet: sleep while the futex word still holds this value.
    Sleep(u32),
}

/// Crash points around a blocking loop's sleep, named by the primitive (see `crate::crash`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Points {
    /// Right after the waiter registered.
    pub(crate) registered: &'static str,
    /// Right after a sleep ended.
    pub(crate) woke: &'static str,
}

impl Points {
    /// No crash points.
    pub(crate) const NONE: Points = Points {
        registered: "",
        woke: "",
    };
}

/// The one blocking loop: polls `check`, spins a [`Backoff`] if `spin`, then registers with
/// `waiters` and sleeps on `word` until `check` is ready or `deadline` passes (`None`; a last
/// check is made after the deadline: a peer killed between publishing and waking us left its
/// progress there without a wake-up).
pub(crate) fn block_on<R, F: Fences>(
    waiters: &Waiters<F>,
    word: &AtomicU32,
    deadline: Option<Deadline>,
    spin: bool,
    points: Points,
    mut check: impl FnMut() -> Poll<R>,
) -> Option<R> {
    let mut backoff = Backoff::new();
    loop {
        if let Poll::Ready(r) = check() {
            return Some(r);
        }
        if !(spin && backoff.spin()) {
            break;
        }
    }
    let covered = waiters.register();
    crate::crash::point(points.registered);
    let out = loop {
        match check() {
            Poll::Ready(r) => break Some(r),
            Poll::Sleep(expected) => {
                let woken = sleep(word, expected, deadline, covered);
                crate::crash::point(points.woke);
                if !woken || deadline.is_some_and(Deadline::has_passed) {
                    break match check() {
                        Poll::Ready(r) => Some(r),
                        Poll::Sleep(_) => None,
                    };
                }
            }
        }
    };
    waiters.unregister();
    out
}

/// A condition ("not empty", "not full") that threads of any process can sleep on: a sequence
/// word that every wake bumps, and its [`Waiters`].
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Signal<F: Fences = Symmetric> {
    /// Bumped once per wake; the futex word.
    seq: AtomicU32,
    waiters: Waiters<F>,
}

impl<F: Fences> Signal<F> {
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            waiters: Waiters::new(),
        }
    }

    /// Called after publishing progress: wakes one sleeper if there may be one. Costs a fence
    /// and a load when nobody waits.
    #[inline]
    pub(crate) fn notify_one(&self) {
        F::notify_fence();
        if self.waiters.count.load(Ordering::Relaxed) != 0 {
            self.wake(false);
        }
    }

    /// Like [`notify_one`](Self::notify_one), waking every sleeper.
    #[inline]
    pub(crate) fn notify_all(&self) {
        F::notify_fence();
        if self.waiters.count.load(Ordering::Relaxed) != 0 {
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
        wake(&self.seq, all);
    }

    /// Announces a waiter; returns the ticket to sleep on. The caller must retry its operation
    /// after this and before [`sleep`](Self::sleep), then call [`unregister`](Self::unregister).
    pub(crate) fn register(&self) -> Ticket {
        let covered = self.waiters.register();
        Ticket {
            seq: self.seq.load(Ordering::Acquire),
            covered,
        }
    }

    /// Sleeps while `seq` is unchanged since `ticket`, until woken or `deadline`; as [`sleep`].
    pub(crate) fn sleep(&self, ticket: Ticket, deadline: Option<Deadline>) -> bool {
        sleep(&self.seq, ticket.seq, deadline, ticket.covered)
    }

    /// Withdraws a waiter announced by [`register`](Self::register).
    pub(crate) fn unregister(&self) {
        self.waiters.unregister();
    }

    /// Re-tries `attempt` (spinning first if `spin`), sleeping while `blocked` says it must
    /// wait, until it succeeds, fails for good (`Err(Some(e))`), or `deadline` passes
    /// (`Err(None)`). [`block_on`] with the sequence word.
    pub(crate) fn block_on<R, E>(
        &self,
        deadline: Option<Deadline>,
        spin: bool,
        mut attempt: impl FnMut() -> Result<R, E>,
        blocked: impl Fn(&E) -> bool,
    ) -> Result<R, Option<E>> {
        // `seq` before the attempt: a wake after this read changes it, so the sleep returns.
        match block_on(
            &self.waiters,
            &self.seq,
            deadline,
            spin,
            Points::NONE,
            || {
                let seq = self.seq.load(Ordering::Acquire);
                match attempt() {
                    Err(e) if blocked(&e) => Poll::Sleep(seq),
                    other => Poll::Ready(other),
                }
            },
        ) {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(Some(e)),
            None => Err(None),
        }
    }
}

/// What [`Signal::register`] hands the waiter for its [`sleep`](Signal::sleep).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    /// `seq` as read after the fence.
    seq: u32,
    /// Whether the fence covered every notifier (else sleep in bounded slices).
    covered: bool,
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
