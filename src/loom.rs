//! The one place that names atomics and cells: `std` types normally, loom's model types under
//! `cfg(loom)`, so the algorithms in `sync/` and `queue/` run unchanged inside the model checker.
//!
//! Code in this crate imports `crate::loom::sync::atomic::AtomicU32` (never `core::sync::atomic`
//! directly) for any atomic that takes part in a cross-process protocol.

#[cfg(not(loom))]
pub(crate) use std::{cell, hint, sync, thread};

#[cfg(loom)]
pub(crate) use ::loom::{cell, hint, sync, thread};

/// `UnsafeCell` with loom's closure API, over `std`'s cell when not model checking.
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T: ?Sized>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Unwraps the value.
    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

#[cfg(not(loom))]
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

    /// The raw pointer, for guards that hand out references for their whole lifetime.
    #[inline(always)]
    pub(crate) fn get(&self) -> *mut T {
        self.0.get()
    }
}

#[cfg(loom)]
pub(crate) use ::loom::cell::UnsafeCell;

/// Futex wait/wake as the algorithms see them: the shared futex normally, a model under loom.
pub(crate) mod futex {
    pub(crate) use crate::sys::time::Deadline;

    #[cfg(not(loom))]
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

    #[cfg(loom)]
    pub(crate) use model::{wait, wait_low, wake, wake_low};

    /// A futex model for loom: the kernel's hash-bucket lock is a loom `Mutex`, a sleeping waiter
    /// is a loom `Condvar` wait, so a wake-up that is lost shows up as a loom deadlock. A timed
    /// wait that would block is modelled as the timeout firing at once.
    #[cfg(loom)]
    mod model {
        use super::Deadline;
        use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
        use loom::sync::{Condvar, Mutex};

        struct Table {
            next_ticket: u64,
            sleepers: Vec<(usize, u64)>,
        }

        loom::thread_local! {
            static TIMEOUTS: std::cell::Cell<u32> = std::cell::Cell::new(0);
        }

        loom::lazy_static! {
            static ref TABLE: (Mutex<Table>, Condvar) =
                (Mutex::new(Table { next_ticket: 0, sleepers: Vec::new() }), Condvar::new());
        }

        pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> bool {
            wait_at(word as *const _ as usize, || word.load(Ordering::SeqCst), expected, deadline)
        }

        /// [`wait`] on the low 32 bits of a 64-bit word.
        pub(crate) fn wait_low(word: &AtomicU64, expected: u32, deadline: Option<Deadline>) -> bool {
            let load = || word.load(Ordering::SeqCst) as u32;
            wait_at(word as *const _ as usize, load, expected, deadline)
        }

        /// [`wake`] on the low 32 bits of a 64-bit word.
        pub(crate) fn wake_low(word: &AtomicU64, count: u32) -> u32 {
            wake_at(word as *const _ as usize, count)
        }

        fn wait_at(
            addr: usize,
            load: impl Fn() -> u32,
            expected: u32,
            deadline: Option<Deadline>,
        ) -> bool {
            let (lock, cv) = &*TABLE;
            let mut table = lock.lock().unwrap();
            if load() != expected {
                return true;
            }
            if deadline.is_some() {
                // The timeout fires at once. Every second timeout of a thread also yields, which
                // stands for time passing: the other threads run before it polls again. Without
                // the yield a polling caller would exhaust loom's branch budget; with it on every
                // call, loom would never show a poller checking twice on a stalled thread.
                drop(table);
                let n = TIMEOUTS.with(|c| {
                    c.set(c.get() + 1);
                    c.get()
                });
                if n % 2 == 0 {
                    loom::thread::yield_now();
                }
                return false;
            }
            let ticket = table.next_ticket;
            table.next_ticket += 1;
            table.sleepers.push((addr, ticket));
            while table.sleepers.iter().any(|&(_, t)| t == ticket) {
                table = cv.wait(table).unwrap();
            }
            true
        }

        pub(crate) fn wake(word: &AtomicU32, count: u32) -> u32 {
            wake_at(word as *const _ as usize, count)
        }

        fn wake_at(addr: usize, count: u32) -> u32 {
            let (lock, cv) = &*TABLE;
            let mut table = lock.lock().unwrap();
            let mut woken = 0;
            table.sleepers.retain(|&(a, _)| {
                if a == addr && woken < count {
                    woken += 1;
                    false
                } else {
                    true
                }
            });
            cv.notify_all();
            woken
        }
    }
}
