//! A recursive robust mutex (Python's `RLock`), built on the same lock word as [`Mutex`](super::Mutex).

use super::owner::DefaultProbe;
use super::raw_mutex::{Failed, Locked, RawMutex};
use super::{LockError, LockResult};
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

/// A lock the holding thread may take again; each guard releases one level, and the lock is free
/// when the last guard of its owner is dropped. Only the owner can release it (guards are not
/// `Send`). Guards give `&T` only: use atomics or cells inside `T` for mutation.
///
/// Owner death is handled exactly as for [`Mutex`](super::Mutex): the next locker gets
/// [`LockError::OwnerDied`]; call [`ReentrantMutexGuard::make_consistent`] before the last guard
/// is dropped, or the lock becomes not recoverable.
///
/// # Examples
///
/// ```
/// use multiproc::sync::ReentrantMutex;
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// let m = ReentrantMutex::new(AtomicU32::new(0));
/// let outer = m.lock().unwrap();
/// let inner = m.lock().unwrap(); // same thread: no deadlock
/// inner.fetch_add(1, Ordering::Relaxed);
/// drop(inner);
/// drop(outer);
/// assert_eq!(m.lock().unwrap().load(Ordering::Relaxed), 1);
/// ```
///
/// Between processes: put it in shared memory ([`Shared`](crate::Shared)) and pass a clone of the
/// handle to each child.
///
/// ```rust,standalone_crate
/// use multiproc::sync::ReentrantMutex;
/// use multiproc::{Process, Shared};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// fn add_twice(m: Shared<ReentrantMutex<AtomicU32>>) {
///     let outer = m.lock().unwrap();
///     let inner = m.lock().unwrap(); // the same thread again: no deadlock
///     // Nobody else holds the lock, so the two steps cannot interleave with another child's.
///     let n = inner.load(Ordering::Relaxed);
///     outer.store(n + 2, Ordering::Relaxed);
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let m = Shared::new(ReentrantMutex::new(AtomicU32::new(0)))?;
///     let children = (0..3)
///         .map(|_| Process::spawn(add_twice, m.clone()))
///         .collect::<Result<Vec<_>, _>>()?;
///     for child in children {
///         child.join()?;
///     }
///     assert_eq!(m.lock().unwrap().load(Ordering::Relaxed), 6);
///     Ok(())
/// }
/// ```
#[repr(C)]
pub struct ReentrantMutex<T: ?Sized> {
    raw: RawMutex,
    /// Recursion depth; read and written only by the owner.
    count: AtomicU32,
    data: T,
}

// SAFETY: one thread at a time holds `&T` in the protocol; `Sync` is also required because a peer
// writing garbage into the word could make two threads believe they own it.
unsafe impl<T: ?Sized + Send + Sync> Sync for ReentrantMutex<T> {}

// SAFETY: atomics (any bit pattern is a state; garbage is a dead or foreign owner) and a `ShmSafe`
// value; `#[repr(C)]`, no pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl<T: crate::safe::ShmSafe + Send> crate::safe::ShmSafe for ReentrantMutex<T> {}

impl<T> ReentrantMutex<T> {
    /// A new unlocked recursive mutex around `value`.
    pub fn new(value: T) -> Self {
        ReentrantMutex {
            raw: RawMutex::new(),
            count: AtomicU32::new(0),
            data: value,
        }
    }
}

impl<T: ?Sized> ReentrantMutex<T> {
    /// Acquires the lock (at once if this thread holds it already).
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](super::Mutex::lock); a recursion deeper than `u32::MAX` levels gives
    /// [`LockError::RecursionLimit`].
    pub fn lock(&self) -> LockResult<ReentrantMutexGuard<'_, T>> {
        self.acquire(|raw, p| raw.lock(p, None))
    }

    /// Acquires the lock if it is free or held by this thread.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if another thread holds it; otherwise as [`ReentrantMutex::lock`].
    pub fn try_lock(&self) -> LockResult<ReentrantMutexGuard<'_, T>> {
        self.acquire(|raw, p| raw.try_lock(p))
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; otherwise as [`ReentrantMutex::lock`].
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ReentrantMutexGuard<'_, T>> {
        let deadline = Deadline::after(timeout);
        self.acquire(|raw, p| raw.lock(p, Some(deadline)))
    }

    /// Acquires the lock, waiting until `deadline` at the latest (a past one: no waiting; a
    /// thread that already holds it gets it again at once).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; otherwise as [`ReentrantMutex::lock`].
    pub fn lock_until(&self, deadline: Instant) -> LockResult<ReentrantMutexGuard<'_, T>> {
        let deadline = Deadline::at(deadline);
        self.acquire(|raw, p| raw.lock(p, Some(deadline)))
    }

    fn acquire(
        &self,
        f: impl FnOnce(&RawMutex, &DefaultProbe) -> Result<Locked, Failed>,
    ) -> LockResult<ReentrantMutexGuard<'_, T>> {
        let probe = DefaultProbe::default();
        if self.raw.is_held_by(&probe) {
            // Only the owner writes the count, so Relaxed is enough.
            let c = self.count.load(Ordering::Relaxed);
            return match c.checked_add(1) {
                Some(n) => {
                    self.count.store(n, Ordering::Relaxed);
                    Ok(ReentrantMutexGuard::new(self))
                }
                None => Err(LockError::RecursionLimit),
            };
        }
        let r = f(&self.raw, &probe);
        if r.is_ok() {
            crate::crash::point("reentrant.lock.before_count");
            self.count.store(1, Ordering::Relaxed);
        }
        match r {
            Ok(Locked::Clean) => Ok(ReentrantMutexGuard::new(self)),
            Ok(Locked::OwnerDied) => {
                log::warn!(target: "multiproc", "a reentrant mutex's owner died holding it: taken over");
                Err(LockError::OwnerDied(ReentrantMutexGuard::new(self)))
            }
            Err(Failed::NotRecoverable) => Err(LockError::NotRecoverable),
            Err(Failed::Timeout) => Err(LockError::Timeout),
            Err(Failed::WouldBlock) => Err(LockError::WouldBlock),
        }
    }

    /// Whether the lock can never be acquired again.
    pub fn is_not_recoverable(&self) -> bool {
        self.raw.is_not_recoverable()
    }
}

impl_lock_debug!(ReentrantMutex);

/// One level of ownership of a [`ReentrantMutex`]; gives `&T`.
#[must_use = "the lock level is released as soon as the guard is dropped"]
pub struct ReentrantMutexGuard<'a, T: ?Sized> {
    lock: &'a ReentrantMutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: ?Sized> ReentrantMutexGuard<'a, T> {
    fn new(lock: &'a ReentrantMutex<T>) -> Self {
        ReentrantMutexGuard {
            lock,
            _not_send: PhantomData,
        }
    }

    /// After [`LockError::OwnerDied`]: declares the data repaired. Without it, releasing the last
    /// level makes the lock not recoverable.
    pub fn make_consistent(&mut self) {
        self.lock.raw.make_consistent();
    }
}

impl<T: ?Sized> Deref for ReentrantMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.lock.data
    }
}

impl<T: ?Sized> Drop for ReentrantMutexGuard<'_, T> {
    fn drop(&mut self) {
        let c = self.lock.count.load(Ordering::Relaxed);
        if c <= 1 {
            // Last level (or a garbage count): release.
            self.lock.count.store(0, Ordering::Relaxed);
            crate::crash::point("reentrant.unlock.after_count");
            self.lock.raw.unlock();
        } else {
            self.lock.count.store(c - 1, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::sync::on_dead_thread;
    use crate::testing::watchdog;

    #[test]
    fn recursion_and_exclusion() {
        watchdog(10, || {
            let m = ReentrantMutex::new(AtomicU32::new(0));
            let a = m.lock().unwrap();
            let b = m.try_lock().unwrap();
            std::thread::scope(|s| {
                let other = s.spawn(|| {
                    assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));
                    assert!(matches!(
                        m.lock_timeout(Duration::from_millis(20)),
                        Err(LockError::Timeout)
                    ));
                    m.lock().unwrap().load(Ordering::SeqCst)
                });
                std::thread::sleep(Duration::from_millis(50));
                b.fetch_add(1, Ordering::SeqCst);
                drop(b);
                a.fetch_add(1, Ordering::SeqCst);
                drop(a);
                assert_eq!(other.join().unwrap(), 2);
            });
        });
    }

    #[test]
    fn depth_overflow_is_recursion_limit() {
        let m = ReentrantMutex::new(0u8);
        let g = m.lock().unwrap();
        // Only the owner writes the count: stand in for u32::MAX - 1 more nested levels.
        m.count.store(u32::MAX, Ordering::Relaxed);
        assert!(matches!(m.lock(), Err(LockError::RecursionLimit)));
        assert!(matches!(m.try_lock(), Err(LockError::RecursionLimit)));
        assert_eq!(m.count.load(Ordering::Relaxed), u32::MAX);
        m.count.store(1, Ordering::Relaxed);
        drop(g);
        assert!(m.try_lock().is_ok());
    }

    #[test]
    fn owner_death_at_depth_two() {
        watchdog(10, || {
            let m = ReentrantMutex::new(0u8);
            on_dead_thread(|| {
                let a = m.lock().unwrap();
                let b = m.lock().unwrap();
                std::mem::forget(a);
                std::mem::forget(b);
            });
            let mut g = m.lock().err().and_then(LockError::into_guard).unwrap();
            let inner = m.lock().unwrap();
            drop(inner);
            g.make_consistent();
            drop(g);
            assert!(m.lock().is_ok());
        });
    }
}
