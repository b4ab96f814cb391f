//! The one place that names atomics and cells: `std` types normally, loom's model types under
//! `cfg(multiproc_loom)`, so the algorithms in `sync/` and `queue/` run unchanged inside the model checker.
//!
//! Code in this crate imports `crate::loom::sync::atomic::AtomicU32` (never `core::sync::atomic`
//! directly) for any atomic that takes part in a cross-process protocol.

// Not every path is used by every build; they are the shim's interface.
#[cfg(not(multiproc_loom))]
#[allow(unused_imports)]
pub(crate) use std::{cell, hint, sync, thread};

#[cfg(multiproc_loom)]
#[allow(unused_imports)]
pub(crate) use ::loom::{cell, hint, sync, thread};

/// `UnsafeCell` with loom's closure API, over `std`'s cell when not model checking.
#[cfg(not(multiproc_loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T: ?Sized>(std::cell::UnsafeCell<T>);

#[cfg(not(multiproc_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Unwraps the value.
    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

#[cfg(not(multiproc_loom))]
impl<T: ?Sized> UnsafeCell<T> {
    /// Runs `f` with a shared pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a unique pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(multiproc_loom)]
pub(crate) use ::loom::cell::UnsafeCell;

/// Runs the loom model `f` with at most two preemptions per execution, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise: the bound the crate's models are sized for.
#[cfg(all(test, multiproc_loom))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = ::loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

#[cfg(multiproc_loom)]
mod futex_model;

/// Futex wait/wake as the algorithms see them: the shared futex normally, a model under loom.
pub(crate) mod futex {
    pub(crate) use crate::sys::time::Deadline;

    #[cfg(not(multiproc_loom))]
    pub(crate) use crate::sys::futex::{wait, wait_low, wake, wake_low};

    /// Wakes one waiter blocked on `word`.
    #[inline]
    pub(crate) fn wake_one(word: &super::sync::atomic::AtomicU32) -> bool {
        wake(word, 1) > 0
    }

    /// Wakes every waiter blocked on `word`.
    #[inline]
    pub(crate) fn wake_all(word: &super::sync::atomic::AtomicU32) {
        wake(word, u32::MAX);
    }

    #[cfg(all(multiproc_loom, test))]
    pub(crate) use super::futex_model::death;
    #[cfg(multiproc_loom)]
    pub(crate) use super::futex_model::{poll_wait, poll_wait_low, wait, wait_low, wake, wake_low};

    /// A waiter's bounded sleep on the low half of `word`, after which it checks on a lock's
    /// owner: the futex with a timeout normally. In the model there is no time: the sleep ends
    /// when woken, or when some modelled thread died since the caller last looked (then it
    /// returns `false`, as a timeout would), so a live owner is never polled in a busy loop.
    #[cfg(not(multiproc_loom))]
    #[inline]
    pub(crate) fn poll_wait_low(
        word: &super::sync::atomic::AtomicU64,
        expected: u32,
        wake_by: Deadline,
    ) -> bool {
        wait_low(word, expected, Some(wake_by))
    }

    /// [`poll_wait_low`] on a 32-bit word: a bounded sleep after which the caller checks on a
    /// holder (an `RwLock` reader waiting for a writer's gate). Returns `false` on timeout.
    #[cfg(not(multiproc_loom))]
    #[inline]
    pub(crate) fn poll_wait(
        word: &super::sync::atomic::AtomicU32,
        expected: u32,
        wake_by: Deadline,
    ) -> bool {
        wait(word, expected, Some(wake_by))
    }
}
