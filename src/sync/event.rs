//! A process-shared event flag (Python's `multiprocessing.Event`).
//!
//! ```text
//! word:    bit 0 = SET; bits 1..=31 = generation, bumped by every clear -> set transition
//! waiters: threads between their increment and their wake-up; `set` wakes only if non-zero
//! ```
//! A waiter sleeps on the unset word it read. Any change of that word means a `set` happened
//! (a `clear` only changes a set word), so a woken waiter returns `true` even if the flag was
//! cleared again before it ran, as in Python. No lost wake-up: waiters sleep on the word through
//! the protocol of `sync/wait.rs` (`set` changes the word, then notifies).

use super::wait::{Points, Poll, Waiters, block_on};
use crate::crash;
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The flag bit of the word.
const SET: u32 = 1;
/// One generation step (the bits above the flag).
const GENERATION: u32 = 2;

/// A flag that threads and processes can wait for.
///
/// `#[repr(C)]`, 8 bytes, all zeroes is a clear event. [`Event::set`] wakes every waiter (and
/// makes no syscall when nobody waits); [`Event::wait`] returns at once while the flag is set.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Event;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let ev = Arc::new(Event::new());
/// let ev2 = Arc::clone(&ev);
/// let child = std::thread::spawn(move || ev2.wait_timeout(Duration::from_secs(5)));
/// ev.set();
/// assert!(child.join().unwrap());
/// assert!(ev.is_set());
/// ```
///
/// Between processes: put it in shared memory ([`Shared`](crate::Shared)) and pass a clone of the
/// handle to each child.
///
/// ```rust,standalone_crate
/// use multiproc::sync::Event;
/// use multiproc::{Process, Shared};
/// use std::time::Duration;
///
/// fn wait_for_go(go: Shared<Event>) -> bool {
///     go.wait_timeout(Duration::from_secs(10))
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let go = Shared::new(Event::new())?;
///     let child = Process::spawn(wait_for_go, go.clone())?;
///     go.set(); // the child returns from its wait (or never starts waiting)
///     assert!(child.join()?);
///     Ok(())
/// }
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Event {
    word: AtomicU32,
    waiters: Waiters,
}

// SAFETY: two atomics; every value is a flag and a generation or a count; `#[repr(C)]`, no
// pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl crate::safe::ShmSafe for Event {}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    /// A new, clear event.
    pub fn new() -> Self {
        Event {
            word: AtomicU32::new(0),
            waiters: Waiters::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            if w & SET != 0 {
                return;
            }
            // Release: a waiter that sees the flag sees what the setter wrote before.
            match self.word.compare_exchange_weak(
                w,
                w.wrapping_add(GENERATION) | SET,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        crash::point("event.set.after_cas");
        if self.waiters.notify(&self.word, true) {
            crash::point("event.set.after_wake");
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Waits at most `timeout` for the flag; returns whether it was set (Python's semantics:
    /// `true` also when it was set and cleared again while this thread waited).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Some(Deadline::after(timeout)))
    }

    /// Waits until `deadline` at the latest for the flag; returns whether it was set (as
    /// [`wait_timeout`](Event::wait_timeout)).
    pub fn wait_until(&self, deadline: Instant) -> bool {
        self.wait_deadline(Some(Deadline::at(deadline)))
    }

    /// Threads counted as waiting (for models).
    #[cfg(all(test, multiproc_loom))]
    pub(crate) fn waiters(&self) -> u32 {
        self.waiters.count()
    }

    fn wait_deadline(&self, deadline: Option<Deadline>) -> bool {
        // Acquire: pairs with `set`, so a caller that sees the flag sees what the setter wrote.
        let w = self.word.load(Ordering::Acquire);
        if w & SET != 0 {
            return true;
        }
        const POINTS: Points = Points {
            registered: "event.wait.after_count",
            woke: "event.wait.after_wait",
        };
        // Any change of the unset word `w` is a set (module docs). Spinning first, a `set` that
        // comes within the spin costs no syscall on either side (the setter sees no waiter).
        block_on(&self.waiters, &self.word, deadline, true, POINTS, || {
            if self.word.load(Ordering::Acquire) != w {
                Poll::Ready(())
            } else {
                Poll::Sleep(w)
            }
        })
        .is_some()
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::sync::waits_for;
    use crate::testing::watchdog;

    #[test]
    fn gating_and_timeout() {
        watchdog(10, || {
            let ev = Event::new();
            assert!(!ev.is_set());
            assert!(!waits_for(30, |d| ev.wait_timeout(d)));
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..3)
                    .map(|_| {
                        s.spawn(|| {
                            ev.wait();
                            ev.is_set()
                        })
                    })
                    .collect();
                std::thread::sleep(Duration::from_millis(20));
                ev.set();
                for h in hs {
                    assert!(h.join().unwrap());
                }
            });
            assert!(ev.wait_timeout(Duration::ZERO));
            ev.clear();
            assert!(!ev.is_set());
            assert!(!ev.wait_timeout(Duration::from_millis(1)));
        });
    }

    #[test]
    fn set_then_clear_still_releases_waiter() {
        watchdog(10, || {
            let ev = Event::new();
            std::thread::scope(|s| {
                let h = s.spawn(|| ev.wait_timeout(Duration::from_secs(5)));
                std::thread::sleep(Duration::from_millis(20));
                ev.set();
                ev.clear();
                assert!(h.join().unwrap());
            });
        });
    }
}
