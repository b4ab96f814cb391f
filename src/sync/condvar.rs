//! A process-shared condition variable for [`Mutex`](super::Mutex).
//!
//! The algorithm of std's futex condvar (a sequence counter that notifiers bump and waiters sleep
//! on), plus a waiter count so that a notify with nobody waiting makes no syscall.
//!
//! ```text
//! seq:     bumped (wrapping) by every notify; waiters sleep while it equals what they read
//! waiters: threads between their increment (before unlocking the mutex) and their wake-up
//! ```
//! No lost wake-up: the protocol of `sync/wait.rs`, with the waiter registering and reading `seq`
//! before it unlocks. (With the predicate changed under the mutex, the mutex alone already orders
//! the two; the fences cover notifiers that skip the mutex.)

use super::LockResult;
use super::mutex::MutexGuard;
use super::wait::{Waiters, sleep_while_eq};
use crate::crash;
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A condition variable that works across processes with [`Mutex`](super::Mutex).
///
/// `#[repr(C)]`, 8 bytes, all zeroes is a fresh condvar. Waiting releases the mutex and
/// reacquires it before returning; as with any condvar, wake-ups may be spurious, so wait in a
/// loop on a condition (or use [`Condvar::wait_while`]). If the mutex's holder died while this
/// thread waited, the reacquisition reports [`LockError::OwnerDied`](super::LockError::OwnerDied) with the guard. Make an
/// `OwnerDied` guard consistent before waiting with it: waiting releases the lock, and releasing
/// it unrepaired makes it not recoverable.
///
/// # Examples
///
/// ```
/// use multiproc::sync::{Condvar, Mutex};
/// use std::sync::Arc;
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let pair2 = Arc::clone(&pair);
/// std::thread::spawn(move || {
///     *pair2.0.lock().unwrap() = true;
///     pair2.1.notify_one();
/// });
/// let (lock, cv) = &*pair;
/// let ready = cv.wait_while(lock.lock().unwrap(), |ready| !*ready).unwrap();
/// assert!(*ready);
/// ```
///
/// Between processes: the mutex and the condvar each live in shared memory
/// ([`Shared`](crate::Shared)); the child sets the flag (a `u32`:
/// shared data is plain bytes) and notifies.
///
/// ```rust,standalone_crate
/// use multiproc::sync::{Condvar, Mutex};
/// use multiproc::{Process, Shared};
///
/// fn announce((ready, cv): (Shared<Mutex<u32>>, Shared<Condvar>)) {
///     *ready.lock().unwrap() = 1;
///     cv.notify_all();
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let ready = Shared::new(Mutex::new(0u32))?;
///     let cv = Shared::new(Condvar::new())?;
///     let child = Process::spawn(announce, (ready.clone(), cv.clone()))?;
///     let guard = cv.wait_while(ready.lock().unwrap(), |ready| *ready == 0).unwrap();
///     assert_eq!(*guard, 1);
///     drop(guard);
///     child.join()?;
///     Ok(())
/// }
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Condvar {
    seq: AtomicU32,
    waiters: Waiters,
}

// SAFETY: two atomic counters; any values are valid (garbage only causes extra or missed-then-
// retried wake-ups); `#[repr(C)]`, no pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl crate::safe::ShmSafe for Condvar {}

/// Whether a timed condvar wait returned because its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout passed (the condition may still have changed).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Self::new()
    }
}

impl Condvar {
    /// A new condition variable.
    pub fn new() -> Self {
        Condvar {
            seq: AtomicU32::new(0),
            waiters: Waiters::new(),
        }
    }

    /// Releases the guard's mutex, sleeps until notified, and locks it again.
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::lock`](super::Mutex::lock) on the reacquisition.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_deadline(guard, None).0
    }

    /// Like [`Condvar::wait`], but sleeps at most `timeout` (the reacquisition is not timed).
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::lock`](super::Mutex::lock) on the reacquisition; an `OwnerDied` error
    /// carries the timeout result with the guard.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.timed_wait(guard, Deadline::after(timeout))
    }

    /// Like [`Condvar::wait`], but sleeps until `deadline` at the latest (the reacquisition
    /// is not timed).
    ///
    /// # Errors
    ///
    /// As [`Condvar::wait_timeout`].
    pub fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Instant,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.timed_wait(guard, Deadline::at(deadline))
    }

    /// `wait_deadline` with the timed-out flag as a [`WaitTimeoutResult`] beside the guard.
    fn timed_wait<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Deadline,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let (r, timed_out) = self.wait_deadline(guard, Some(deadline));
        let res = WaitTimeoutResult(timed_out);
        match r {
            Ok(g) => Ok((g, res)),
            Err(e) => Err(e.map(|g| (g, res))),
        }
    }

    /// Waits while `condition` holds (checked under the lock), then returns the guard.
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::lock`](super::Mutex::lock) on a reacquisition.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits while `condition` holds, at most `timeout` in total.
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::lock`](super::Mutex::lock) on a reacquisition.
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
        condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_while_deadline(guard, Deadline::after(timeout), condition)
    }

    /// Waits while `condition` holds, until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// Those of [`Mutex::lock`](super::Mutex::lock) on a reacquisition.
    pub fn wait_until_while<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Instant,
        condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_while_deadline(guard, Deadline::at(deadline), condition)
    }

    /// Waits while `condition` holds, until `deadline` at the latest: the timed `_while` waits.
    fn wait_while_deadline<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        deadline: Deadline,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            if deadline.has_passed() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            let (r, _) = self.wait_deadline(guard, Some(deadline));
            guard = r.map_err(|e| e.map(|g| (g, WaitTimeoutResult(false))))?;
        }
    }

    fn wait_deadline<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Deadline>,
    ) -> (LockResult<MutexGuard<'a, T>>, bool) {
        let mutex = guard.mutex();
        // Counted before reading `seq`, before unlocking (module docs).
        let covered = self.waiters.register();
        crash::point("condvar.wait.after_count");
        let seq = self.seq.load(Ordering::Relaxed);
        drop(guard);
        crash::point("condvar.wait.after_unlock");
        // In slices: a notifier killed between its bump and its wake delays us by one slice.
        let woken = sleep_while_eq(&self.seq, seq, deadline, covered);
        crash::point("condvar.wait.after_wait");
        self.waiters.unregister();
        crash::point("condvar.wait.before_relock");
        (mutex.lock(), !woken)
    }

    /// Wakes one waiter, if any. No syscall when nobody waits.
    pub fn notify_one(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        crash::point("condvar.notify.after_bump");
        self.waiters.notify(&self.seq, false);
    }

    /// Wakes every waiter. No syscall when nobody waits.
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        crash::point("condvar.notify.after_bump");
        if self.waiters.notify(&self.seq, true) {
            crash::point("condvar.notify.after_wake");
        }
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::sync::{Mutex, waits_for};
    use crate::testing::watchdog;

    #[test]
    fn producer_consumer() {
        watchdog(20, || {
            let (m, not_empty, not_full) =
                (Mutex::new((0u32, 0u64)), Condvar::new(), Condvar::new());
            let mut sum = 0;
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    for i in 1..=2000u64 {
                        let mut g = not_full
                            .wait_while(m.lock().unwrap(), |s| s.0 == 1)
                            .unwrap();
                        *g = (1, i);
                        drop(g);
                        not_empty.notify_one();
                    }
                });
                for _ in 0..2000 {
                    let mut g = not_empty
                        .wait_while(m.lock().unwrap(), |s| s.0 == 0)
                        .unwrap();
                    sum += g.1;
                    g.0 = 0;
                    drop(g);
                    not_full.notify_all();
                }
            });
            assert_eq!(sum, 2000 * 2001 / 2);
        });
    }

    #[test]
    fn wait_timeout_honoured() {
        watchdog(10, || {
            let m = Mutex::new(());
            let cv = Condvar::new();
            let (g, r) = waits_for(30, |d| cv.wait_timeout(m.lock().unwrap(), d).unwrap());
            drop(g);
            assert!(r.timed_out());
            let (_g, r) = cv
                .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(10), |_| true)
                .unwrap();
            assert!(r.timed_out());
        });
    }
}
