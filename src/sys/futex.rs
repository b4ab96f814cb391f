//! Shared futexes: wait and wake on a 32-bit word that may live in memory mapped by several
//! processes.
//!
//! Never `FUTEX_PRIVATE_FLAG`: a private futex is keyed by (mm, address), so a waiter in one process
//! would never see a wake from another. Deadlines are absolute on `CLOCK_MONOTONIC`
//! (`FUTEX_WAIT_BITSET`), so retrying after `EINTR` never extends the wait.

use super::time::Deadline;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Blocks while `*word == expected`, until woken, or until `deadline` passes.
///
/// Returns `false` only when the deadline passed; `true` when woken, when the value was already
/// different, or spuriously. Callers re-check their condition in a loop, as with any futex.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> bool {
    // SAFETY: `word` is a live, aligned 32-bit atomic for the whole call.
    unsafe {
        wait_on(
            word.as_ptr(),
            || word.load(Ordering::Relaxed),
            expected,
            deadline,
        )
    }
}

/// Wakes up to `count` waiters blocked on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> u32 {
    wake_on(word.as_ptr(), count)
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
    // SAFETY: `low_half(word)` is the aligned low half of a live 64-bit atomic for the whole call;
    // the kernel reads it as 32 bits, which an aligned 64-bit CAS on the same memory cannot tear.
    unsafe {
        wait_on(
            low_half(word),
            || word.load(Ordering::Relaxed) as u32,
            expected,
            deadline,
        )
    }
}

/// Like [`wake`], for waiters in [`wait_low`] on `word`.
pub(crate) fn wake_low(word: &AtomicU64, count: u32) -> u32 {
    if cfg!(miri) {
        return 0; // see `wait_low`: nobody sleeps under Miri
    }
    wake_on(low_half(word), count)
}

/// The address of the low 32 bits of a 64-bit word: the futex that [`wait_low`] and [`wake_low`]
/// use. Only the kernel reads it as 32 bits; Rust code only ever accesses the whole `AtomicU64`.
fn low_half(word: &AtomicU64) -> *mut u32 {
    let base = word.as_ptr() as *mut u32;
    if cfg!(target_endian = "little") {
        base
    } else {
        base.wrapping_add(1)
    }
}

/// The wait loop shared by [`wait`] and [`wait_low`]: re-checks `current()` and retries after
/// `EINTR`, so the absolute deadline bounds the whole wait.
///
/// # Safety
/// - `addr` is a valid, 4-byte aligned address of memory that stays mapped for the whole call
///   (the kernel reads 32 bits there).
unsafe fn wait_on(
    addr: *mut u32,
    current: impl Fn() -> u32,
    expected: u32,
    deadline: Option<Deadline>,
) -> bool {
    let ts = deadline.map(Deadline::as_timespec);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    loop {
        if current() != expected {
            return true;
        }
        // SAFETY: `addr` is valid and aligned for the call (caller); `ts_ptr` is null or points at
        // a timespec that outlives the call. FUTEX_WAIT_BITSET with MATCH_ANY takes an absolute
        // CLOCK_MONOTONIC timeout; without FUTEX_PRIVATE_FLAG the futex is keyed by the page, so
        // other processes mapping it share it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                addr,
                libc::FUTEX_WAIT_BITSET,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                !0u32,
            )
        };
        if r == 0 {
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ETIMEDOUT) => return false,
            // EAGAIN: the value changed before we slept.
            _ => return true,
        }
    }
}

/// Wakes up to `count` waiters on the futex at `addr`; returns how many were woken.
fn wake_on(addr: *mut u32, count: u32) -> u32 {
    let count = count.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: FUTEX_WAKE only uses the address as a key; it never dereferences it beyond
    // validating the mapping, which the caller's live reference keeps in place.
    let r = unsafe { libc::syscall(libc::SYS_futex, addr, libc::FUTEX_WAKE, count) };
    r.max(0) as u32
}
