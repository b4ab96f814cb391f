//! The blocking side of the rings: a futex word with a waiter count, so that the side making
//! progress pays no syscall unless someone sleeps.
//!
//! Protocol (a store-buffering handshake, closed by two `SeqCst` fences):
//!
//! ```text
//! waiter                                   notifier
//! waiters += 1                             publish (stamp / index store)
//! fence(SeqCst)                            fence(SeqCst)
//! seq0 = seq                               if waiters != 0 { seq += 1; futex_wake(seq) }
//! re-try the operation; if still blocked:
//!   futex_wait(seq, seq0, deadline)
//! waiters -= 1
//! ```
//!
//! Either the notifier's fence comes first in the total order of `SeqCst` fences, and then the
//! waiter's retry sees the publication, or the waiter's comes first, and then the notifier sees
//! `waiters != 0` and bumps `seq`, which makes the `futex_wait` return (the kernel compares the
//! word under its own lock). No wake-up is lost; the loom models check it.

use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, Ordering, fence};

/// A condition ("not empty", "not full") that threads of any process can sleep on.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Signal {
    /// Bumped once per wake; the futex word.
    seq: AtomicU32,
    /// How many threads are between `register` and `unregister`.
    waiters: AtomicU32,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Called after publishing progress: wakes one sleeper if there may be one. Costs a fence
    /// and a load when nobody waits.
    #[inline]
    pub(crate) fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.wake(false);
        }
    }

    /// Like [`notify_one`](Self::notify_one), waking every sleeper.
    #[inline]
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
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

    /// Announces a waiter; returns the `seq` to sleep on. The caller must retry its operation
    /// after this and before [`sleep`](Self::sleep), then call [`unregister`](Self::unregister).
    pub(crate) fn register(&self) -> u32 {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.seq.load(Ordering::Acquire)
    }

    /// Sleeps while `seq` is unchanged, until woken or `deadline`. `false` if the deadline passed.
    pub(crate) fn sleep(&self, seq: u32, deadline: Option<Deadline>) -> bool {
        futex::wait(&self.seq, seq, deadline)
    }

    /// Withdraws a waiter announced by [`register`](Self::register).
    pub(crate) fn unregister(&self) {
        // A peer may have scribbled over the count; wrapping is harmless (extra or missed
        // wake-ups caused by the peer, never memory unsafety).
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Re-tries `attempt`, sleeping on `signal` while `blocked` says it must wait, until it succeeds,
/// fails for good (`Err(Some(e))`), or `deadline` passes (`Err(None)`).
pub(crate) fn block_on<R, E>(
    signal: &Signal,
    deadline: Option<Deadline>,
    mut attempt: impl FnMut() -> Result<R, E>,
    blocked: impl Fn(&E) -> bool,
) -> Result<R, Option<E>> {
    loop {
        match attempt() {
            Err(e) if blocked(&e) => {}
            other => return other.map_err(Some),
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
            return Err(None);
        }
    }
}
