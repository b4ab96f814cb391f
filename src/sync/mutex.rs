//! A robust, process-shared mutex around a value.

use super::owner::DefaultProbe;
use super::raw_mutex::{Failed, Locked, RawMutex};
use super::{LockError, LockResult};
use crate::loom::UnsafeCell;
use crate::loom::futex::Deadline;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// A mutual-exclusion lock that works across processes and survives a holder that dies.
///
/// `#[repr(C)]`, made of a 16-byte lock word block followed by the value; all zeroes is an
/// unlocked, consistent mutex around a zeroed value. Put it in shared memory (for instance with
/// `Shared<Mutex<T>>`, or inside your own `#[repr(C)]` struct) and lock it from any process.
///
/// If the holder dies (its process is killed, or its thread exits while holding a forgotten
/// guard), the next locker gets [`LockError::OwnerDied`] with the guard: repair the data, call
/// [`MutexGuard::make_consistent`], and go on. Dropping that guard without the repair makes the
/// mutex [`LockError::NotRecoverable`] for everyone. A waiter already blocked notices the death
/// within a few milliseconds without being woken by anyone.
///
/// Locking a mutex the calling thread already holds waits forever (or until the timeout): use
/// [`ReentrantMutex`](super::ReentrantMutex) for recursion. A guard cannot be sent to another
/// thread: the lock belongs to the thread that took it.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Mutex;
/// use std::sync::Arc;
///
/// let m = Arc::new(Mutex::new(0u64));
/// let handles: Vec<_> = (0..4)
///     .map(|_| {
///         let m = Arc::clone(&m);
///         std::thread::spawn(move || {
///             for _ in 0..1000 {
///                 *m.lock().unwrap() += 1;
///             }
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*m.lock().unwrap(), 4000);
/// ```
///
/// Between processes: put it in shared memory ([`Shared`](crate::Shared)) and pass a clone of the
/// handle to each child.
///
/// ```rust,standalone_crate
/// use multiproc::sync::Mutex;
/// use multiproc::{Process, Shared};
///
/// fn add(counter: Shared<Mutex<u64>>) {
///     for _ in 0..1000 {
///         *counter.lock().unwrap() += 1;
///     }
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let counter = Shared::new(Mutex::new(0u64))?;
///     let children = (0..4)
///         .map(|_| Process::spawn(add, counter.clone()))
///         .collect::<Result<Vec<_>, _>>()?;
///     for child in children {
///         child.join()?;
///     }
///     assert_eq!(*counter.lock().unwrap(), 4000);
///     Ok(())
/// }
/// ```
#[repr(C)]
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one thread at a time, so sharing the mutex only requires
// that `T` may be sent between threads, as for `std::sync::Mutex`.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: owning the mutex is owning a `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

// SAFETY: the lock block is three atomics (valid for every bit pattern; garbage is treated as a
// dead or foreign owner, or as not recoverable), followed by a `T` that is itself `ShmSafe`;
// `#[repr(C)]`, no pointers, no Drop beyond `T`'s (none).
#[cfg(not(multiproc_loom))]
unsafe impl<T: crate::safe::ShmSafe + Send> crate::safe::ShmSafe for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex around `value`.
    pub fn new(value: T) -> Self {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard: the lock *is* held) if the previous holder died
    /// holding it; [`LockError::NotRecoverable`] if it was released without repair after that.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.finish(self.raw.lock(&DefaultProbe::default(), None))
    }

    /// Acquires the lock if no one holds it, without waiting or checking on the holder.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if held; otherwise as [`Mutex::lock`].
    pub fn try_lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.finish(self.raw.try_lock(&DefaultProbe::default()))
    }

    /// Acquires the lock, waiting at most `timeout` (honoured within a few milliseconds).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if the time ran out; otherwise as [`Mutex::lock`].
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        self.lock_deadline(Deadline::after(timeout))
    }

    /// Acquires the lock, waiting until `deadline` at the latest (a past one: no waiting).
    ///
    /// ```
    /// use multiproc::sync::{LockError, Mutex};
    /// use std::time::{Duration, Instant};
    ///
    /// let m = Mutex::new(0u32);
    /// let held = m.lock().unwrap();
    /// let deadline = Instant::now() + Duration::from_millis(20);
    /// assert!(matches!(m.lock_until(deadline), Err(LockError::Timeout)));
    /// assert!(Instant::now() >= deadline);
    /// drop(held);
    /// assert!(m.lock_until(deadline).is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if the deadline passed; otherwise as [`Mutex::lock`].
    pub fn lock_until(&self, deadline: Instant) -> LockResult<MutexGuard<'_, T>> {
        self.lock_deadline(Deadline::at(deadline))
    }

    /// Acquires the lock, waiting until the absolute `deadline`.
    pub(crate) fn lock_deadline(&self, deadline: Deadline) -> LockResult<MutexGuard<'_, T>> {
        self.finish(self.raw.lock(&DefaultProbe::default(), Some(deadline)))
    }

    /// Whether a holder died and the mutex was released without repair: it can never be locked
    /// again.
    pub fn is_not_recoverable(&self) -> bool {
        self.raw.is_not_recoverable()
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` proves no guard and no other reference exists in this process;
        // sharing the mutex with other processes is the caller's (ShmSafe) contract.
        self.data.with_mut(|p| unsafe { &mut *p })
    }

    /// The value, consuming the mutex.
    pub fn into_inner(self) -> T
    where
        T: Sized,
    {
        self.data.into_inner()
    }

    fn finish(&self, r: Result<Locked, Failed>) -> LockResult<MutexGuard<'_, T>> {
        match r {
            Ok(Locked::Clean) => Ok(MutexGuard::new(self)),
            Ok(Locked::OwnerDied) => {
                log::warn!(target: "multiproc", "a mutex's owner died holding it: taken over");
                Err(LockError::OwnerDied(MutexGuard::new(self)))
            }
            Err(Failed::NotRecoverable) => Err(LockError::NotRecoverable),
            Err(Failed::Timeout) => Err(LockError::Timeout),
            Err(Failed::WouldBlock) => Err(LockError::WouldBlock),
        }
    }

    #[cfg(all(test, not(multiproc_loom)))]
    pub(crate) fn raw(&self) -> &RawMutex {
        &self.raw
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl_lock_debug!(Mutex, MutexGuard);

/// Exclusive access to a [`Mutex`]'s value; unlocks when dropped. Not `Send`: the lock belongs
/// to the thread that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    lock: &'a Mutex<T>,
    /// `!Send`: the owner is the locking thread's id in the word.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard shares `&T` only.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    fn new(lock: &'a Mutex<T>) -> Self {
        MutexGuard {
            lock,
            _not_send: PhantomData,
        }
    }

    /// After [`LockError::OwnerDied`]: declares the data repaired, so that unlocking leaves the
    /// mutex usable. Without it, dropping this guard makes the mutex not recoverable. A no-op on
    /// a guard acquired cleanly.
    pub fn make_consistent(&mut self) {
        self.lock.raw.make_consistent();
    }

    /// The mutex this guard locks.
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.lock
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock, so no one else accesses the data.
        self.lock.data.with(|p| unsafe { &*p })
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock, and `&mut self` that no other
        // reference from this guard is live.
        self.lock.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw.unlock();
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;
    use crate::sync::{on_dead_thread, waits_for};
    use crate::testing::watchdog;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::Instant;

    #[test]
    fn contended_counter() {
        watchdog(30, || {
            let m = Mutex::new(0u64);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..20_000 {
                            *m.lock().unwrap() += 1;
                        }
                    });
                }
            });
            assert_eq!(*m.lock().unwrap(), 80_000);
        });
    }

    #[test]
    fn try_lock_and_timeout() {
        watchdog(10, || {
            let m = Mutex::new(1u32);
            let g = m.lock().unwrap();
            std::thread::scope(|s| {
                s.spawn(|| {
                    assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));
                    assert!(matches!(
                        waits_for(50, |d| m.lock_timeout(d)),
                        Err(LockError::Timeout)
                    ));
                });
            });
            drop(g);
            assert_eq!(*m.try_lock().unwrap(), 1);
            assert_eq!(*m.lock_timeout(Duration::from_millis(1)).unwrap(), 1);
        });
    }

    /// A thread takes the lock, writes 7, forgets the guard and exits.
    fn die_holding(m: &Mutex<u32>) {
        on_dead_thread(|| {
            let mut g = m.lock().unwrap();
            *g = 7;
            std::mem::forget(g);
        });
    }

    /// A thread that takes the lock and, once told to go, exits holding it (its guard
    /// forgotten); returns once it holds the lock, with the sender that lets it go.
    fn hold_until_go(m: &Arc<Mutex<u32>>) -> (std::thread::JoinHandle<()>, mpsc::Sender<()>) {
        let (locked_tx, locked_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let m = Arc::clone(m);
        let holder = std::thread::spawn(move || {
            let g = m.lock().unwrap();
            locked_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            std::mem::forget(g);
        });
        locked_rx.recv().unwrap();
        (holder, go_tx)
    }

    #[test]
    fn owner_death_blocked_and_late_waiters_exactly_one() {
        watchdog(10, || {
            let m = Arc::new(Mutex::new(0u32));
            let (owner_died, clean) = (AtomicU32::new(0), AtomicU32::new(0));
            // The holder takes the lock, lets a waiter block, then exits holding it.
            let (holder, go_tx) = hold_until_go(&m);
            let waiter = || match m.lock() {
                Ok(g) => {
                    assert_eq!(*g, 0);
                    clean.fetch_add(1, Ordering::SeqCst);
                }
                Err(LockError::OwnerDied(mut g)) => {
                    owner_died.fetch_add(1, Ordering::SeqCst);
                    g.make_consistent();
                }
                Err(e) => panic!("unexpected {e}"),
            };
            let t = std::thread::scope(|s| {
                s.spawn(waiter); // blocked
                std::thread::sleep(Duration::from_millis(20));
                go_tx.send(()).unwrap();
                holder.join().unwrap();
                let t = Instant::now();
                s.spawn(waiter); // late
                t
            });
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
            assert_eq!(owner_died.load(Ordering::SeqCst), 1);
            assert_eq!(clean.load(Ordering::SeqCst), 1);
            // Repaired: usable again.
            assert!(m.lock().is_ok());
        });
    }

    #[test]
    fn late_locker_detects_death() {
        watchdog(10, || {
            let m = Mutex::new(0u32);
            die_holding(&m);
            let t = Instant::now();
            match m.lock() {
                Err(LockError::OwnerDied(mut g)) => {
                    assert_eq!(*g, 7);
                    *g = 0;
                    g.make_consistent();
                }
                other => panic!("expected OwnerDied, got {:?}", other.err()),
            }
            let latency = t.elapsed();
            eprintln!("late locker detected the death after {latency:?}");
            // A late arrival notices at its first slice (1 ms) plus a `/proc` read; the bound is
            // generous (tests run in parallel on few cores): latency is measured by the soaks.
            assert!(latency < Duration::from_secs(5), "{latency:?}");
            assert_eq!(*m.lock().unwrap(), 0);
        });
    }

    #[test]
    fn blocked_waiter_detects_death_within_a_slice() {
        watchdog(10, || {
            let m = Arc::new(Mutex::new(0u32));
            let (holder, go_tx) = hold_until_go(&m);
            let m2 = Arc::clone(&m);
            let waiter = std::thread::spawn(move || {
                let r = matches!(m2.lock(), Err(LockError::OwnerDied(_)));
                (r, Instant::now())
            });
            // Long enough for the waiter's slices to reach their maximum.
            std::thread::sleep(Duration::from_millis(30));
            go_tx.send(()).unwrap();
            holder.join().unwrap();
            let died = Instant::now();
            let (owner_died, at) = waiter.join().unwrap();
            assert!(owner_died);
            let latency = at.saturating_duration_since(died);
            eprintln!("blocked waiter detected the death after {latency:?}");
            // One slice (at most 4 ms) plus a `/proc` read; the bound is generous (a loaded
            // machine): latency is measured by the soaks, not asserted here.
            assert!(latency < Duration::from_secs(5), "{latency:?}");
        });
    }

    #[test]
    fn drop_without_repair_is_not_recoverable() {
        watchdog(10, || {
            let m = Mutex::new(0u32);
            die_holding(&m);
            // A waiter blocks while the repairing holder holds the OwnerDied guard.
            let g = m.lock().err().and_then(LockError::into_guard).unwrap();
            std::thread::scope(|s| {
                let blocked = s.spawn(|| matches!(m.lock(), Err(LockError::NotRecoverable)));
                std::thread::sleep(Duration::from_millis(20));
                drop(g);
                assert!(blocked.join().unwrap());
            });
            assert!(m.is_not_recoverable());
            assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
            assert!(matches!(m.try_lock(), Err(LockError::NotRecoverable)));
        });
    }

    #[test]
    fn garbage_word_is_a_dead_owner() {
        watchdog(10, || {
            for garbage in [
                0x3FFF_FFFEu64,
                u64::MAX,
                0x4000_0000,
                0x8000_0000,
                0xFFFF_FFFE_0000_0001, // pid 1 lives, but started at another time
            ] {
                let m = Mutex::new(5u32);
                m.raw().raw_word().store(garbage, Ordering::SeqCst);
                match m.lock_timeout(Duration::from_secs(1)) {
                    Ok(g) => assert_eq!(garbage & ((1 << 30) - 1), 0, "{garbage:#x} {}", *g),
                    Err(LockError::OwnerDied(mut g)) => g.make_consistent(),
                    Err(e) => panic!("{garbage:#x}: {e}"),
                }
                assert_eq!(*m.lock().unwrap(), 5);
            }
            // A live thread named without a start tag cannot be judged: it is waited for.
            let m = Mutex::new(0u32);
            m.raw().raw_word().store(1, Ordering::SeqCst);
            assert!(matches!(
                m.lock_timeout(Duration::from_millis(20)),
                Err(LockError::Timeout)
            ));
        });
    }

    #[test]
    fn garbage_state_is_not_recoverable() {
        let m = Mutex::new(0u32);
        // SAFETY: test-only view of the state word: the u32 at byte 8 of the repr(C) block.
        let state = unsafe { &*(&m as *const Mutex<u32> as *const AtomicU32).add(2) };
        state.store(77, Ordering::SeqCst);
        assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
    }
}
