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

    /// The raw pointer, for guards that hand out references for their whole lifetime.
    #[allow(dead_code)]
    #[inline(always)]
    pub(crate) fn get(&self) -> *mut T {
        self.0.get()
    }
}

#[cfg(multiproc_loom)]
pub(crate) use ::loom::cell::UnsafeCell;

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

    #[cfg(multiproc_loom)]
    pub(crate) use model::{death, poll_wait_low, wait, wait_low, wake, wake_low};

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

    /// A futex model for loom: the kernel's hash-bucket lock is a loom `Mutex`, a sleeping waiter
    /// is a loom `Condvar` wait, so a wake-up that is lost shows up as a loom deadlock. A timed
    /// wait that would block is modelled as the timeout firing at once.
    #[cfg(multiproc_loom)]
    mod model {
        use super::Deadline;
        use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
        use loom::sync::{Condvar, Mutex};

        struct Table {
            next_ticket: u64,
            /// (address, ticket, polling sleeper)
            sleepers: Vec<(usize, u64, bool)>,
            /// Modelled thread deaths so far.
            deaths: u64,
        }

        loom::thread_local! {
            /// The death count this thread's polling sleeps have seen.
            static SEEN_DEATHS: std::cell::Cell<u64> = std::cell::Cell::new(0);
        }

        /// Records a modelled thread death (or time passing): polling sleepers wake up as if
        /// their slice ran out.
        pub(crate) fn death() {
            let (lock, cv) = &*TABLE;
            let mut table = lock.lock().unwrap();
            table.deaths += 1;
            table.sleepers.retain(|&(_, _, polled)| !polled);
            cv.notify_all();
        }

        /// See `crate::loom::futex::poll_wait_low`.
        pub(crate) fn poll_wait_low(word: &AtomicU64, expected: u32, _wake_by: Deadline) -> bool {
            let (lock, cv) = &*TABLE;
            let mut table = lock.lock().unwrap();
            if word.load(Ordering::SeqCst) as u32 != expected {
                return true;
            }
            let deaths = table.deaths;
            if SEEN_DEATHS.with(|c| c.replace(deaths)) != deaths {
                return false;
            }
            let ticket = table.next_ticket;
            table.next_ticket += 1;
            table
                .sleepers
                .push((word as *const _ as usize, ticket, true));
            while table.sleepers.iter().any(|&(_, t, _)| t == ticket) {
                table = cv.wait(table).unwrap();
            }
            let deaths = table.deaths;
            SEEN_DEATHS.with(|c| c.replace(deaths)) == deaths
        }

        loom::lazy_static! {
            static ref TABLE: (Mutex<Table>, Condvar) =
                (Mutex::new(Table { next_ticket: 0, sleepers: Vec::new(), deaths: 0 }), Condvar::new());
        }

        pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> bool {
            wait_at(
                word as *const _ as usize,
                || word.load(Ordering::SeqCst),
                expected,
                deadline,
            )
        }

        /// [`wait`] on the low 32 bits of a 64-bit word.
        pub(crate) fn wait_low(
            word: &AtomicU64,
            expected: u32,
            deadline: Option<Deadline>,
        ) -> bool {
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
                // The timeout fires at once.
                return false;
            }
            let ticket = table.next_ticket;
            table.next_ticket += 1;
            table.sleepers.push((addr, ticket, false));
            while table.sleepers.iter().any(|&(_, t, _)| t == ticket) {
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
            table.sleepers.retain(|&(a, _, _)| {
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

/// The two fences of a store-load handshake whose sides are unequal: a *hot* side that runs on
/// every operation (publish, then look for sleepers) and a *cold* side that runs only before a
/// sleep (announce the sleeper, then re-check). Correct pairing needs a full fence on each side;
/// here the cold side pays for both.
///
/// Normally the hot fence is only a compiler fence once this process is registered for
/// `membarrier` (`sys::membarrier`), and the cold fence asks the kernel to run a full barrier on
/// every CPU that runs a registered thread: either a hot thread's publication came before that
/// barrier (and the cold side's re-check sees it), or its check for sleepers came after it (and
/// sees the announcement). Without `membarrier` both are `SeqCst` fences. In the model both are
/// `SeqCst` fences, which is the protocol the models check; SAFETY.md states the equivalence.
pub(crate) mod handshake {
    /// Gets this process ready to take the hot side: starts its `membarrier` registration in
    /// the background if `multiproc::init` did not register it (hot fences stay full fences
    /// until it completes). Idempotent and cheap after the first call.
    pub(crate) fn prepare() {
        #[cfg(not(multiproc_loom))]
        crate::sys::membarrier::register_in_background();
    }

    /// The hot side's fence, between its publication and its load of the sleeper count.
    #[inline]
    pub(crate) fn hot_fence() {
        #[cfg(not(multiproc_loom))]
        if crate::sys::membarrier::registered() {
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
            return;
        }
        super::sync::atomic::fence(super::sync::atomic::Ordering::SeqCst);
    }

    /// The cold side's fence, between its announcement and its re-check. `false` if it could
    /// not cover hot threads of other processes (no `membarrier`): the caller must then sleep in
    /// bounded slices, re-checking after each.
    #[must_use]
    pub(crate) fn cold_fence() -> bool {
        #[cfg(not(multiproc_loom))]
        if crate::sys::membarrier::barrier_everywhere() {
            return true;
        }
        super::sync::atomic::fence(super::sync::atomic::Ordering::SeqCst);
        // Hot threads of other (registered) processes may have skipped their fence.
        cfg!(multiproc_loom)
    }
}
