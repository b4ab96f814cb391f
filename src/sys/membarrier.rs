//! Memory barriers run on other CPUs on request: `membarrier(2)` with
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
//!
//! A process that [`registered`] receives the barriers: whenever any process calls
//! [`barrier_everywhere`], the kernel makes every CPU that is running a thread of a registered
//! process execute a full memory barrier (by IPI) before the call returns, and threads not
//! running pass through one when they are scheduled. A thread of a registered process can
//! therefore replace its full fence in a store-load handshake by a compiler fence, as long as
//! the other side of the handshake calls [`barrier_everywhere`] instead of its own fence (see
//! the handshake below). Registration is inherited by `fork` and cleared by `exec`, like the
//! statics here.

use std::sync::atomic::{AtomicU8, Ordering};

use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};

const UNKNOWN: u8 = 0; // not asked yet
const REGISTERED: u8 = 1; // this process receives global expedited barriers
const UNAVAILABLE: u8 = 2; // the kernel (or a seccomp filter) does not offer them
const PENDING: u8 = 3; // a registration is under way (or was, in the parent of a forked child)

/// This process's registration, decided once.
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether this process receives the barriers of [`barrier_everywhere`]. Once `true`, always
/// `true` for this process. Never registers (see [`register`]).
#[inline]
pub(crate) fn registered() -> bool {
    STATE.load(Ordering::Relaxed) == REGISTERED
}

/// Registers this process now, unless that was done or started before. Takes microseconds in
/// a single-threaded process; in a multi-threaded one the kernel waits for an RCU grace period
/// (about 20 ms here), so call it early (`multiproc::init`) or use [`register_in_background`].
pub(crate) fn register() {
    if claim() {
        finish_registration();
    }
}

/// Starts the registration on a short-lived thread, unless it was done or started before;
/// until it completes, [`registered`] stays `false` (callers fence for real).
pub(crate) fn register_in_background() {
    if claim() {
        let spawned = std::thread::Builder::new()
            .name("multiproc-membarrier".into())
            .spawn(finish_registration);
        if spawned.is_err() {
            STATE.store(UNAVAILABLE, Ordering::Relaxed);
        }
    }
}

/// Moves `UNKNOWN` to `PENDING`; `true` for the one caller that did.
fn claim() -> bool {
    STATE
        .compare_exchange(UNKNOWN, PENDING, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

fn finish_registration() {
    // Miri has no membarrier: everyone fences for real. A failed query reports no commands.
    let ok = !cfg!(miri)
        && membarrier_query().contains_command(MembarrierCommand::GlobalExpedited)
        && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
    // Relaxed: a thread that sees REGISTERED was registered by the kernel before the store (the
    // registration is process-wide and complete when the syscall returns).
    STATE.store(if ok { REGISTERED } else { UNAVAILABLE }, Ordering::Relaxed);
}

/// Runs a full memory barrier on every CPU running a thread of a registered process, and one
/// in the caller before and after. `false` if the kernel refused (then nothing was done
/// beyond the caller's own fence, which the caller must issue itself).
pub(crate) fn barrier_everywhere() -> bool {
    !cfg!(miri) && membarrier(MembarrierCommand::GlobalExpedited).is_ok()
}

// ----- The handshake -----
// The two fences of a store-load handshake whose sides are unequal: a *hot* side that runs on
// every operation (publish, then look for sleepers) and a *cold* side that runs only before a
// sleep (announce the sleeper, then re-check). Correct pairing needs a full fence on each side;
// here the cold side pays for both.
//
// Normally the hot fence is only a compiler fence once this process is registered for
// `membarrier` (below), and the cold fence asks the kernel to run a full barrier on
// every CPU that runs a registered thread: either a hot thread's publication came before that
// barrier (and the cold side's re-check sees it), or its check for sleepers came after it (and
// sees the announcement). Without `membarrier` both are `SeqCst` fences. In the model both are
// `SeqCst` fences, which is the protocol the models check; SAFETY.md states the equivalence.

/// Gets this process ready to take the hot side: starts its `membarrier` registration in
/// the background if `multiproc::init` did not register it (hot fences stay full fences
/// until it completes). Idempotent and cheap after the first call.
pub(crate) fn prepare() {
    #[cfg(not(multiproc_loom))]
    register_in_background();
}

/// The hot side's fence, between its publication and its load of the sleeper count.
#[inline]
pub(crate) fn hot_fence() {
    #[cfg(not(multiproc_loom))]
    if registered() {
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        return;
    }
    crate::loom::sync::atomic::fence(crate::loom::sync::atomic::Ordering::SeqCst);
}

/// The cold side's fence, between its announcement and its re-check. `false` if it could
/// not cover hot threads of other processes (no `membarrier`): the caller must then sleep in
/// bounded slices, re-checking after each.
#[must_use]
pub(crate) fn cold_fence() -> bool {
    #[cfg(not(multiproc_loom))]
    if barrier_everywhere() {
        return true;
    }
    crate::loom::sync::atomic::fence(crate::loom::sync::atomic::Ordering::SeqCst);
    // Hot threads of other (registered) processes may have skipped their fence.
    cfg!(multiproc_loom)
}
