//! Shared futexes: wait and wake on a 32-bit word that may live in memory mapped by several
//! processes.
//!
//! Never `FUTEX_PRIVATE_FLAG`: a private futex is keyed by (mm, address), so a waiter in one process
//! would never see a wake from another. Deadlines are absolute on `CLOCK_MONOTONIC`
//! (`FUTEX_WAIT_BITSET`), so retrying after `EINTR` never extends the wait.

use super::time::Deadline;
use rustix::io::Errno;
use rustix::thread::futex::{self, Flags};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Blocks while `*word == expected`, until woken, or until `deadline` passes.
///
/// Returns `false` only when the deadline passed; `true` when woken, when the value was already
/// different, or spuriously. Callers re-check their condition in a loop, as with any futex.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> bool {
    wait_on(word, || word.load(Ordering::Relaxed), expected, deadline)
}

/// Wakes up to `count` waiters blocked on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> u32 {
    wake_on(word, count)
}

/// Like [`wait`], on the low 32 bits of a 64-bit word (so a lock can keep its owner's full
/// identity in one atomic while waiters sleep on the part that changes on unlock).
pub(crate) fn wait_low(word: &AtomicU64, expected: u32, deadline: Option<Deadline>) -> bool {
    // Miri emulates the kernel's read of the low half as a 4-byte Rust atomic load and reports it
    // as a mixed-size race with the 8-byte RMWs; the real kernel read is not a Rust access. Under
    // Miri, wait by yielding instead (a spurious wake-up, which every caller re-checks).
    if cfg!(miri) {
        std::thread::yield_now();
        return deadline.is_none_or(|d| !d.has_passed());
    }
    wait_on(
        low_half(word),
        || word.load(Ordering::Relaxed) as u32,
        expected,
        deadline,
    )
}

/// Like [`wake`], for waiters in [`wait_low`] on `word`.
pub(crate) fn wake_low(word: &AtomicU64, count: u32) -> u32 {
    if cfg!(miri) {
        return 0; // see `wait_low`: nobody sleeps under Miri
    }
    wake_on(low_half(word), count)
}

/// The low 32 bits of a 64-bit word, as the futex that [`wait_low`] and [`wake_low`] use. The
/// returned reference is only ever handed to the kernel as an address: Rust code never loads or
/// stores through it, and only ever accesses the whole `AtomicU64`.
fn low_half(word: &AtomicU64) -> &AtomicU32 {
    let base = word.as_ptr() as *mut u32;
    let low = if cfg!(target_endian = "little") {
        base
    } else {
        base.wrapping_add(1)
    };
    // SAFETY: `low` is 4-byte aligned (an `AtomicU64` is 8-byte aligned) and lies inside `word`,
    // which stays valid for the returned lifetime. No Rust access of 4 bytes ever happens through
    // the reference (see above), so there is no mixed-size atomic access in the Rust memory model;
    // the kernel reads the 32 bits, which an aligned 64-bit RMW on the same memory cannot tear.
    unsafe { AtomicU32::from_ptr(low) }
}

/// The wait loop shared by [`wait`] and [`wait_low`]: re-checks `current()` and retries after
/// `EINTR`, so the absolute deadline bounds the whole wait.
fn wait_on(
    word: &AtomicU32,
    current: impl Fn() -> u32,
    expected: u32,
    deadline: Option<Deadline>,
) -> bool {
    let ts = deadline.map(Deadline::as_timespec);
    loop {
        if current() != expected {
            return true;
        }
        // FUTEX_WAIT_BITSET with MATCH_ANY takes an absolute CLOCK_MONOTONIC timeout; without
        // FUTEX_PRIVATE_FLAG the futex is keyed by the page, so other processes mapping it share
        // it.
        match futex::wait_bitset(word, Flags::empty(), expected, ts.as_ref(), MATCH_ANY) {
            Ok(()) => return true,
            Err(Errno::INTR) => continue,
            Err(Errno::TIMEDOUT) => return false,
            // EAGAIN: the value changed before we slept.
            Err(_) => return true,
        }
    }
}

/// `FUTEX_BITSET_MATCH_ANY`.
const MATCH_ANY: NonZeroU32 = NonZeroU32::MAX;

/// Wakes up to `count` waiters on the futex `word`; returns how many were woken.
fn wake_on(word: &AtomicU32, count: u32) -> u32 {
    // The kernel reads the count as an `int`.
    let count = count.min(i32::MAX as u32);
    futex::wake(word, Flags::empty(), count).map_or(0, |n| n as u32)
}
