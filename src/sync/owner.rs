//! Who holds a lock, and whether that thread still lives: the two questions owner-death detection
//! asks, behind one small trait so that loom can answer them with a model.
//!
//! Production answers come from `gettid` and `/proc/<tid>/stat` (`crate::sys::proc`); under loom a
//! registry of fake thread ids lets a test make an owner "die" (stop at any step) or have its id
//! reused by another thread.

/// What a liveness probe says about the thread recorded as a lock's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Definitely dead: no such thread, or a zombie.
    Dead,
    /// A thread with this id runs, started at `start_time` (which may not be the owner's).
    Alive {
        /// Start time of the live thread with this id.
        start_time: u64,
    },
    /// The probe failed (e.g. `/proc` unreadable): assume alive.
    #[cfg_attr(multiproc_loom, allow(dead_code))]
    Unknown,
}

impl Liveness {
    /// Whether this answer proves that the thread recorded with start tag `recorded` is gone:
    /// dead, or its id now names a thread whose start time `tag` maps to another non-zero tag
    /// (the id was reused). With no recorded tag (0), or an unknown answer, it cannot tell.
    #[inline]
    pub(crate) fn proves_gone(self, recorded: u32, tag: impl FnOnce(u64) -> u32) -> bool {
        match self {
            Liveness::Dead => true,
            Liveness::Alive { start_time } => recorded != 0 && recorded != tag(start_time),
            Liveness::Unknown => false,
        }
    }
}

/// Identity and liveness of threads, as owner-death detection sees them.
pub(crate) trait OwnerProbe {
    /// The calling thread's id (non-zero, fits in the futex word's TID bits) and start time
    /// ([`UNKNOWN_START`] if it could not be read).
    fn identity(&self) -> (u32, u64);
    /// Whether thread `tid` lives.
    fn liveness(&self, tid: u32) -> Liveness;
    /// Whether contended waiters sleep in bounded slices and check the owner on each timeout
    /// (always, except in loom models that check for lost wake-ups with no owner death).
    fn polls(&self) -> bool {
        true
    }
}

/// Start time recorded by an owner whose own start time could not be read: waiters then rely on
/// the owner being gone or a zombie, never on a start-time mismatch.
pub(crate) const UNKNOWN_START: u64 = u64::MAX;

/// The real probe: `gettid` and `/proc` (the rings' `OsEnv` asks it too).
#[cfg_attr(multiproc_loom, allow(dead_code))]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SysProbe;

impl OwnerProbe for SysProbe {
    #[inline]
    fn identity(&self) -> (u32, u64) {
        let (tid, start) = crate::sys::proc::current_thread_identity();
        (tid, if start == 0 { UNKNOWN_START } else { start })
    }

    fn liveness(&self, tid: u32) -> Liveness {
        use crate::sys::proc::{ThreadState, thread_state};
        // Miri's emulated thread ids are not in /proc, so every owner would look gone; under Miri
        // (which checks the algorithms for UB, not owner death) an owner is never judged dead.
        if cfg!(miri) {
            return Liveness::Unknown;
        }
        match thread_state(tid) {
            Ok(ThreadState::Gone) | Ok(ThreadState::Zombie) => Liveness::Dead,
            Ok(ThreadState::Running { start_time }) => Liveness::Alive { start_time },
            Err(_) => Liveness::Unknown,
        }
    }
}

/// The probe the public API uses.
#[cfg(not(multiproc_loom))]
pub(crate) type DefaultProbe = SysProbe;

/// The probe the public API uses: the model registry, polling.
#[cfg(multiproc_loom)]
pub(crate) type DefaultProbe = model::ModelProbe;

#[cfg(multiproc_loom)]
pub(crate) mod model {
    //! A registry of fake threads for loom: each loom thread gets a small id on first use; a test
    //! can mark it dead or give its id to a "new" thread with another start time.

    use super::{Liveness, OwnerProbe};
    use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::cell::Cell;

    const SLOTS: usize = 8;

    struct Registry {
        next: AtomicU32,
        /// Start time of the live thread with id `i`; 0 = no such thread.
        start: [AtomicU64; SLOTS],
    }

    loom::lazy_static! {
        static ref REGISTRY: Registry = Registry {
            next: AtomicU32::new(1),
            start: std::array::from_fn(|_| AtomicU64::new(0)),
        };
    }

    loom::thread_local! {
        static ME: Cell<u32> = Cell::new(0);
    }

    /// Start time a fake thread `tid` gets.
    pub(crate) fn start_of(tid: u32) -> u64 {
        1000 + u64::from(tid)
    }

    /// The calling loom thread's fake id, registered as alive on first use.
    pub(crate) fn current_tid() -> u32 {
        ME.with(|me| {
            if me.get() == 0 {
                let tid = REGISTRY.next.fetch_add(1, Ordering::Relaxed);
                REGISTRY.start[tid as usize % SLOTS].swap(start_of(tid), Ordering::AcqRel);
                me.set(tid);
            }
            me.get()
        })
    }

    /// Models the calling thread's death: from now on its id names no thread.
    #[cfg(test)]
    pub(crate) fn die() {
        let tid = current_tid();
        REGISTRY.start[tid as usize % SLOTS].swap(0, Ordering::AcqRel);
        crate::loom::futex::death();
    }

    /// Models the calling thread's death and the reuse of its id by a thread started later.
    #[cfg(test)]
    pub(crate) fn die_and_reuse() {
        let tid = current_tid();
        REGISTRY.start[tid as usize % SLOTS].swap(start_of(tid) + 500, Ordering::AcqRel);
        crate::loom::futex::death();
    }

    /// Models time passing: every polling sleeper's slice runs out, so it checks on the owner.
    #[cfg(test)]
    pub(crate) fn time_passes() {
        crate::loom::futex::death();
    }

    /// Liveness from the registry.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct ModelProbe {
        /// Whether waiters poll (check the owner on timed-out waits) or sleep until woken.
        pub(crate) poll: bool,
    }

    impl Default for ModelProbe {
        fn default() -> Self {
            ModelProbe { poll: true }
        }
    }

    impl OwnerProbe for ModelProbe {
        fn identity(&self) -> (u32, u64) {
            let tid = current_tid();
            (tid, start_of(tid))
        }

        fn liveness(&self, tid: u32) -> Liveness {
            if tid == 0 || tid as usize >= SLOTS {
                return Liveness::Dead;
            }
            // An RMW reads the latest value, as `/proc` does (a plain load could see a stale one
            // in loom's model); AcqRel pairs with `die`: a thread seen dead did all it will do.
            match REGISTRY.start[tid as usize].fetch_add(0, Ordering::AcqRel) {
                0 => Liveness::Dead,
                start_time => Liveness::Alive { start_time },
            }
        }

        fn polls(&self) -> bool {
            self.poll
        }
    }
}
