//! A process-shared counting semaphore, optionally bounded.
//!
//! ```text
//! count:   permits available; the futex word acquirers sleep on while it is 0
//! waiters: acquirers between their increment and their wake-up; release wakes only if non-zero
//! max:     the bound for `release` (u32::MAX = unbounded)
//! ```
//! No lost wake-up: acquirers sleep on `count` through the protocol of `sync/wait.rs` (a
//! release changes the word, then notifies).

use super::SemaphoreError;
use super::wait::{Points, Poll, Waiters, block_on};
use crate::crash;
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A counting semaphore that works across processes.
///
/// `#[repr(C)]`, 12 bytes. Acquiring and releasing without contention is one atomic operation
/// each and no syscall. [`Semaphore::bounded`] makes a semaphore whose `release` fails with
/// [`SemaphoreError::Overflow`] instead of exceeding its initial value (Python's
/// `BoundedSemaphore`). A permit holder that dies does not give its permit back: the semaphore
/// has no notion of owners.
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
///     seats.acquire(); // at most two children hold a seat at once
///     let free_while_seated = seats.value();
///     seats.release().unwrap();
///     free_while_seated
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
    count: AtomicU32,
    waiters: Waiters,
    max: AtomicU32,
}

// SAFETY: three atomic counters, all values valid (garbage gives wrong counts or a spurious
// Overflow, never UB); `#[repr(C)]`, no pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl crate::safe::ShmSafe for Semaphore {}

const UNBOUNDED: u32 = u32::MAX;

impl Semaphore {
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
            count: AtomicU32::new(permits.min(max)),
            waiters: Waiters::new(),
            max: AtomicU32::new(max),
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
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            // Acquire: pairs with the releaser's increment, so we see what it published.
            match self
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    crash::point("semaphore.acquire.after_cas");
                    return Ok(());
                }
                Err(now) => c = now,
            }
        }
        Err(SemaphoreError::WouldBlock)
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
        const POINTS: Points = Points {
            registered: "semaphore.acquire.after_count",
            woke: "semaphore.acquire.after_wait",
        };
        // The count is the futex word: sleep while no permit is left.
        block_on(
            &self.waiters,
            &self.count,
            deadline,
            true,
            POINTS,
            || match self.try_acquire() {
                Ok(()) => Poll::Ready(()),
                Err(_) => Poll::Sleep(0),
            },
        )
        .ok_or(SemaphoreError::Timeout)
    }

    /// Gives a permit back, waking one waiter if any (no syscall otherwise).
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if the semaphore is bounded and already full (or an
    /// unbounded one holds `u32::MAX - 1` permits); nothing changes then.
    pub fn release(&self) -> Result<(), SemaphoreError> {
        let max = self.max.load(Ordering::Relaxed).min(UNBOUNDED - 1);
        crash::point("semaphore.release.before_cas");
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            if c >= max {
                return Err(SemaphoreError::Overflow);
            }
            // Release: an acquirer that takes this permit sees what the releaser wrote before.
            match self
                .count
                .compare_exchange_weak(c, c + 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        crash::point("semaphore.release.after_cas");
        if self.waiters.notify(&self.count, false) {
            crash::point("semaphore.release.after_wake");
        }
        Ok(())
    }

    /// The number of permits available now (a snapshot).
    pub fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::testing::watchdog;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn max_concurrency_is_the_permit_count() {
        watchdog(20, || {
            let s = Arc::new((Semaphore::new(3), AtomicU32::new(0), AtomicU32::new(0)));
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let s = Arc::clone(&s);
                    std::thread::spawn(move || {
                        for _ in 0..200 {
                            s.0.acquire();
                            let now = s.1.fetch_add(1, Ordering::SeqCst) + 1;
                            s.2.fetch_max(now, Ordering::SeqCst);
                            std::thread::yield_now();
                            s.1.fetch_sub(1, Ordering::SeqCst);
                            s.0.release().unwrap();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(s.2.load(Ordering::SeqCst), 3);
            assert_eq!(s.0.value(), 3);
        });
    }

    #[test]
    fn timeout_try_and_bounded_over_release() {
        watchdog(10, || {
            let s = Semaphore::bounded(1);
            assert_eq!(s.release(), Err(SemaphoreError::Overflow));
            s.acquire();
            assert_eq!(s.try_acquire(), Err(SemaphoreError::WouldBlock));
            let t = Instant::now();
            assert_eq!(
                s.acquire_timeout(Duration::from_millis(30)),
                Err(SemaphoreError::Timeout)
            );
            let e = t.elapsed();
            assert!(
                e >= Duration::from_millis(30) && e < Duration::from_millis(40),
                "{e:?}"
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
            let s = Arc::new(Semaphore::new(0));
            let s2 = Arc::clone(&s);
            let h = std::thread::spawn(move || s2.acquire());
            std::thread::sleep(Duration::from_millis(20));
            s.release().unwrap();
            h.join().unwrap();
            assert_eq!(s.value(), 0);
        });
    }
}
