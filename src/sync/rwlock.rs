//! A process-shared reader-writer lock, writer-preferring: std's futex `RwLock` algorithm
//! (`library/std/src/sys/sync/rwlock/futex.rs`) on shared futexes, with deadlines.
//!
//! ```text
//! state: bits 0..=29  READ_LOCKED * readers, or MASK when write-locked
//!        bit 30       READERS_WAITING
//!        bit 31       WRITERS_WAITING
//! writer_notify: bumped to wake one writer; writers sleep on it
//! ```
//! Readers do not take the lock while writers wait, so a stream of readers cannot starve a
//! writer; an unlocking writer wakes the next writer before any reader.
//!
//! A writer that times out leaves WRITERS_WAITING behind; if it finds the lock free it passes the
//! wake-up on itself (`wake_writer_or_readers`), otherwise the holder's unlock does.

use super::{LockError, LockResult};
use crate::crash;
use crate::loom::UnsafeCell;
use crate::loom::futex::{self, Deadline};
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

const READ_LOCKED: u32 = 1;
const MASK: u32 = (1 << 30) - 1;
const WRITE_LOCKED: u32 = MASK;
const MAX_READERS: u32 = MASK - 1;
const READERS_WAITING: u32 = 1 << 30;
const WRITERS_WAITING: u32 = 1 << 31;

#[inline]
fn is_unlocked(state: u32) -> bool {
    state & MASK == 0
}

#[inline]
fn is_write_locked(state: u32) -> bool {
    state & MASK == WRITE_LOCKED
}

#[inline]
fn has_readers_waiting(state: u32) -> bool {
    state & READERS_WAITING != 0
}

#[inline]
fn has_writers_waiting(state: u32) -> bool {
    state & WRITERS_WAITING != 0
}

#[inline]
fn is_read_lockable(state: u32) -> bool {
    // Not when writers or readers wait: this makes the lock writer-preferring, and readers that
    // were woken take their turn together.
    state & MASK < MAX_READERS && !has_readers_waiting(state) && !has_writers_waiting(state)
}

/// A reader-writer lock that works across processes.
///
/// `#[repr(C)]`: two atomic words, then the value. Any number of readers or one writer. Writers
/// are preferred: once a writer waits, new readers queue behind it.
///
/// **Not robust**: if a holder dies, the lock stays held. Every blocking call has a `_timeout`
/// form; use it where holders may die, and expect [`LockError::Timeout`]. The `lock` forms
/// without a timeout never return then.
///
/// # Examples
///
/// ```
/// use multiproc::sync::RwLock;
///
/// let lock = RwLock::new(5u32);
/// {
///     let r1 = lock.read().unwrap();
///     let r2 = lock.read().unwrap();
///     assert_eq!(*r1 + *r2, 10);
///     assert!(lock.try_write().is_err());
/// }
/// *lock.write().unwrap() += 1;
/// assert_eq!(*lock.read().unwrap(), 6);
/// ```
///
/// Between processes: put it in shared memory ([`Shared`](crate::Shared)) and pass a clone of the
/// handle to each child.
///
/// ```rust,standalone_crate
/// use multiproc::sync::RwLock;
/// use multiproc::{Process, Shared};
///
/// fn reader(config: Shared<RwLock<[u32; 4]>>) -> u32 {
///     config.read().unwrap().iter().sum() // many readers at once
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let config = Shared::new(RwLock::new([0u32; 4]))?;
///     *config.write().unwrap() = [1, 2, 3, 4];
///     let readers = (0..3)
///         .map(|_| Process::spawn(reader, config.clone()))
///         .collect::<Result<Vec<_>, _>>()?;
///     for r in readers {
///         assert_eq!(r.join()?, 10);
///     }
///     Ok(())
/// }
/// ```
#[repr(C)]
pub struct RwLock<T: ?Sized> {
    state: AtomicU32,
    writer_notify: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: as std's RwLock: readers share `&T` across threads (needs Sync), a writer gets `&mut T`
// (needs Send).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}
// SAFETY: owning the lock is owning a `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}

// SAFETY: two atomics (any value is a state; garbage can only make callers wait or time out, or
// admit a reader/writer wrongly, which hands out a wrong but valid `ShmSafe` value) and a
// `ShmSafe` value; `#[repr(C)]`, no pointers, no Drop.
#[cfg(not(multiproc_loom))]
unsafe impl<T: crate::safe::ShmSafe + Send> crate::safe::ShmSafe for RwLock<T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock around `value`.
    pub fn new(value: T) -> Self {
        RwLock {
            state: AtomicU32::new(0),
            writer_notify: AtomicU32::new(0),
            data: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> RwLock<T> {
    /// The state word decoded, for inspection tools: one load, so it works on a read-only
    /// mapping. Returns (readers, write-locked, readers waiting, writers waiting).
    #[cfg(not(multiproc_loom))]
    pub(crate) fn peek(&self) -> (u32, bool, bool, bool) {
        let s = self.state.load(Ordering::Relaxed);
        let readers = if is_write_locked(s) { 0 } else { s & MASK };
        (
            readers,
            is_write_locked(s),
            has_readers_waiting(s),
            has_writers_waiting(s),
        )
    }

    /// Locks for reading, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// None today (the `Result` leaves room for robustness later).
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_deadline(None)
    }

    /// Locks for reading if possible now.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if a writer holds or waits for the lock.
    pub fn try_read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                is_read_lockable(s).then_some(s + READ_LOCKED)
            })
            .map(|_| RwLockReadGuard::new(self))
            .map_err(|_| LockError::WouldBlock)
    }

    /// Locks for reading, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`].
    pub fn read_timeout(&self, timeout: Duration) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_deadline(Some(Deadline::after(timeout)))
    }

    /// Locks for reading, waiting until `deadline` at the latest (a past one: no waiting).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`].
    pub fn read_until(&self, deadline: Instant) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_deadline(Some(Deadline::at(deadline)))
    }

    /// Locks for writing, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// None today.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_deadline(None)
    }

    /// Locks for writing if the lock is free now.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if held.
    pub fn try_write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                is_unlocked(s).then_some(s + WRITE_LOCKED)
            })
            .map(|_| RwLockWriteGuard::new(self))
            .map_err(|_| LockError::WouldBlock)
    }

    /// Locks for writing, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`].
    pub fn write_timeout(&self, timeout: Duration) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_deadline(Some(Deadline::after(timeout)))
    }

    /// Locks for writing, waiting until `deadline` at the latest (a past one: no waiting).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`].
    pub fn write_until(&self, deadline: Instant) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_deadline(Some(Deadline::at(deadline)))
    }

    fn read_deadline(&self, deadline: Option<Deadline>) -> LockResult<RwLockReadGuard<'_, T>> {
        let s = self.state.load(Ordering::Relaxed);
        if is_read_lockable(s)
            && self
                .state
                .compare_exchange_weak(s, s + READ_LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            crash::point("rwlock.read.acquired");
            return Ok(RwLockReadGuard::new(self));
        }
        if self.read_contended(deadline) {
            crash::point("rwlock.read.acquired");
            Ok(RwLockReadGuard::new(self))
        } else {
            Err(LockError::Timeout)
        }
    }

    #[cold]
    fn read_contended(&self, deadline: Option<Deadline>) -> bool {
        let mut state = self.spin_read();
        loop {
            if is_read_lockable(state) {
                match self.state.compare_exchange_weak(
                    state,
                    state + READ_LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        crash::point("rwlock.read.after_contended_cas");
                        return true;
                    }
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if deadline.is_some_and(Deadline::has_passed) {
                // Our READERS_WAITING bit (if set) is cleared by the next unlock.
                return false;
            }
            // Make sure the readers-waiting bit is set before we sleep.
            if !has_readers_waiting(state) {
                if let Err(s) = self.state.compare_exchange(
                    state,
                    state | READERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    state = s;
                    continue;
                }
            }
            crash::point("rwlock.read.before_wait");
            futex::wait(&self.state, state | READERS_WAITING, deadline);
            crash::point("rwlock.read.after_wait");
            state = self.spin_read();
        }
    }

    fn write_deadline(&self, deadline: Option<Deadline>) -> LockResult<RwLockWriteGuard<'_, T>> {
        if self
            .state
            .compare_exchange_weak(0, WRITE_LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            || self.write_contended(deadline)
        {
            crash::point("rwlock.write.acquired");
            Ok(RwLockWriteGuard::new(self))
        } else {
            Err(LockError::Timeout)
        }
    }

    #[cold]
    fn write_contended(&self, deadline: Option<Deadline>) -> bool {
        let mut state = self.spin_write();
        let mut other_writers_waiting = 0;
        loop {
            // Free: take it, and keep the writers-waiting bit if we ever set or saw it.
            if is_unlocked(state) {
                match self.state.compare_exchange_weak(
                    state,
                    state | WRITE_LOCKED | other_writers_waiting,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        crash::point("rwlock.write.after_contended_cas");
                        return true;
                    }
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if deadline.is_some_and(Deadline::has_passed) {
                // We may have been the only writer behind WRITERS_WAITING: if the lock is free,
                // pass the wake-up on ourselves; if held, the holder's unlock sees the bit.
                let s = self.state.load(Ordering::Relaxed);
                if is_unlocked(s) && (has_writers_waiting(s) || has_readers_waiting(s)) {
                    self.wake_writer_or_readers(s);
                }
                return false;
            }
            if !has_writers_waiting(state) {
                if let Err(s) = self.state.compare_exchange(
                    state,
                    state | WRITERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    state = s;
                    continue;
                }
            }
            // Other writers might be waiting now too, so keep the bit when we take the lock.
            other_writers_waiting = WRITERS_WAITING;
            // Read the notify counter before checking the state again, so a wake between the
            // check and the sleep is not lost (Acquire pairs with the Release in wake_writer).
            let seq = self.writer_notify.load(Ordering::Acquire);
            state = self.state.load(Ordering::Relaxed);
            if is_unlocked(state) || !has_writers_waiting(state) {
                continue;
            }
            crash::point("rwlock.write.before_wait");
            futex::wait(&self.writer_notify, seq, deadline);
            crash::point("rwlock.write.after_wait");
            state = self.spin_write();
        }
    }

    fn read_unlock(&self) {
        crash::point("rwlock.read_unlock.before_sub");
        let state = self.state.fetch_sub(READ_LOCKED, Ordering::Release) - READ_LOCKED;
        crash::point("rwlock.read_unlock.after_sub");
        // Readers never wait for readers; so only writers can be woken here (readers waiting
        // without writers would only happen with garbage, and is handled the same way).
        if is_unlocked(state) && (has_writers_waiting(state) || has_readers_waiting(state)) {
            self.wake_writer_or_readers(state);
        }
    }

    fn write_unlock(&self) {
        crash::point("rwlock.write_unlock.before_sub");
        let state = self
            .state
            .fetch_sub(WRITE_LOCKED, Ordering::Release)
            .wrapping_sub(WRITE_LOCKED);
        crash::point("rwlock.write_unlock.after_sub");
        if has_writers_waiting(state) || has_readers_waiting(state) {
            self.wake_writer_or_readers(state);
        }
    }

    /// The lock is unlocked with waiters: wake one writer, or else all readers.
    #[cold]
    fn wake_writer_or_readers(&self, mut state: u32) {
        if !is_unlocked(state) {
            return;
        }
        // Only writers wait: clear the bit and wake one; it sets the bit again if others wait.
        if state == WRITERS_WAITING {
            match self
                .state
                .compare_exchange(state, 0, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.wake_writer();
                    return;
                }
                Err(s) => state = s,
            }
        }
        // Both wait: leave the readers waiting and wake one writer.
        if state == READERS_WAITING + WRITERS_WAITING {
            if self
                .state
                .compare_exchange(state, READERS_WAITING, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                // Locked meanwhile: its unlock handles the waiters.
                return;
            }
            if self.wake_writer() {
                return;
            }
            // No writer was asleep (it timed out or had not slept yet): wake the readers instead,
            // since we cannot tell whether a writer will take the lock.
            state = READERS_WAITING;
        }
        if state == READERS_WAITING
            && self
                .state
                .compare_exchange(state, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            futex::wake_all(&self.state);
        }
    }

    fn wake_writer(&self) -> bool {
        self.writer_notify.fetch_add(1, Ordering::Release);
        futex::wake_one(&self.writer_notify)
    }

    #[inline]
    fn spin_until(&self, f: impl Fn(u32) -> bool) -> u32 {
        let mut state = self.state.load(Ordering::Relaxed);
        super::wait::Backoff::spin_until(|| {
            state = self.state.load(Ordering::Relaxed);
            f(state)
        });
        state
    }

    #[inline]
    fn spin_write(&self) -> u32 {
        // Stop when unlocked or when someone waits (then we should wait too).
        self.spin_until(|s| is_unlocked(s) || has_writers_waiting(s))
    }

    #[inline]
    fn spin_read(&self) -> u32 {
        self.spin_until(|s| !is_write_locked(s) || has_readers_waiting(s) || has_writers_waiting(s))
    }
}

impl<T: ?Sized> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock").finish_non_exhaustive()
    }
}

/// Shared access to an [`RwLock`]'s value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a read guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    fn new(lock: &'a RwLock<T>) -> Self {
        RwLockReadGuard {
            lock,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read lock is held: no writer has `&mut T` until it is released.
        self.lock.data.with(|p| unsafe { &*p })
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

/// Exclusive access to an [`RwLock`]'s value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a write guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    fn new(lock: &'a RwLock<T>) -> Self {
        RwLockWriteGuard {
            lock,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write lock is held: nobody else accesses the data.
        self.lock.data.with(|p| unsafe { &*p })
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write lock is held, and `&mut self` excludes other borrows of the guard.
        self.lock.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.write_unlock();
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::testing::watchdog;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    #[test]
    fn exclusion_under_contention() {
        watchdog(30, || {
            let l = Arc::new(RwLock::new((0u64, 0u64)));
            let hs: Vec<_> = (0..4)
                .map(|i| {
                    let l = Arc::clone(&l);
                    std::thread::spawn(move || {
                        for _ in 0..5000 {
                            if i % 2 == 0 {
                                let mut g = l.write().unwrap();
                                g.0 += 1;
                                g.1 += 1;
                            } else {
                                let g = l.read().unwrap();
                                assert_eq!(g.0, g.1);
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(*l.read().unwrap(), (10_000, 10_000));
        });
    }

    #[test]
    fn writer_preferred_over_new_readers() {
        watchdog(10, || {
            let l = Arc::new(RwLock::new(0u32));
            let r = l.read().unwrap();
            let l2 = Arc::clone(&l);
            let wrote = Arc::new(AtomicBool::new(false));
            let w2 = Arc::clone(&wrote);
            let writer = std::thread::spawn(move || {
                *l2.write().unwrap() = 1;
                w2.store(true, Ordering::SeqCst);
            });
            // Wait until the writer is queued.
            while l.state.load(Ordering::SeqCst) & WRITERS_WAITING == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            // A new reader must not jump the queue.
            assert!(matches!(l.try_read(), Err(LockError::WouldBlock)));
            assert!(matches!(
                l.read_timeout(Duration::from_millis(10)),
                Err(LockError::Timeout)
            ));
            drop(r);
            writer.join().unwrap();
            assert!(wrote.load(Ordering::SeqCst));
            assert_eq!(*l.read().unwrap(), 1);
        });
    }

    #[test]
    fn timeouts_and_try_forms() {
        watchdog(10, || {
            let l = RwLock::new(0u32);
            let w = l.write().unwrap();
            assert!(matches!(l.try_read(), Err(LockError::WouldBlock)));
            assert!(matches!(l.try_write(), Err(LockError::WouldBlock)));
            let t = Instant::now();
            assert!(matches!(
                l.write_timeout(Duration::from_millis(30)),
                Err(LockError::Timeout)
            ));
            let e = t.elapsed();
            assert!(
                // Tight below; generous above (tests run in parallel on 2 cores).
                e >= Duration::from_millis(30) && e < Duration::from_secs(5),
                "{e:?}"
            );
            drop(w);
            // The timed-out writer left no stale bit that blocks readers.
            assert!(l.try_read().is_ok());
            assert!(l.read_timeout(Duration::from_millis(10)).is_ok());
            assert!(l.write_timeout(Duration::from_millis(10)).is_ok());
        });
    }
}
