//! Placeholder futex mutex (replaced by the robust mutex of the sync work).
#![allow(missing_docs)]

use crate::loom::futex;
use crate::loom::sync::atomic::{AtomicU32, Ordering};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// Lock errors.
pub enum LockError<G> {
    OwnerDied(G),
    NotRecoverable,
    Timeout,
    WouldBlock,
}

impl<G> std::fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockError::OwnerDied(_) => "OwnerDied(..)",
            LockError::NotRecoverable => "NotRecoverable",
            LockError::Timeout => "Timeout",
            LockError::WouldBlock => "WouldBlock",
        })
    }
}

pub type LockResult<G> = Result<G, LockError<G>>;

#[repr(C)]
pub struct Mutex<T> {
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: placeholder: the lock grants exclusive access.
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    pub fn new(v: T) -> Self {
        Self {
            state: AtomicU32::new(0),
            data: UnsafeCell::new(v),
        }
    }
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        while self.state.swap(2, Ordering::Acquire) != 0 {
            futex::wait(&self.state, 2, None);
        }
        Ok(MutexGuard { m: self })
    }
    pub fn lock_timeout(&self, _d: Duration) -> LockResult<MutexGuard<'_, T>> {
        self.lock()
    }
}

pub struct MutexGuard<'a, T> {
    m: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: placeholder: lock held.
        unsafe { &*self.m.data.get() }
    }
}
impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: placeholder: lock held.
        unsafe { &mut *self.m.data.get() }
    }
}
impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.m.state.store(0, Ordering::Release);
        futex::wake_one(&self.m.state);
    }
}
