//! A futex model for loom: the kernel's hash-bucket lock is a loom `Mutex`, a sleeping waiter
//! is a loom `Condvar` wait, so a wake-up that is lost shows up as a loom deadlock. A timed
//! wait that would block is modelled as the timeout firing at once.

use crate::sys::time::Deadline;
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
#[cfg(test)]
pub(crate) fn death() {
    let (lock, cv) = &*TABLE;
    let mut table = lock.lock().unwrap();
    table.deaths += 1;
    table.sleepers.retain(|&(_, _, polled)| !polled);
    cv.notify_all();
}

/// See `crate::loom::futex::poll_wait_low`.
pub(crate) fn poll_wait_low(word: &AtomicU64, expected: u32, _wake_by: Deadline) -> bool {
    let addr = word as *const _ as usize;
    poll_wait_at(addr, || word.load(Ordering::SeqCst) as u32, expected)
}

/// See `crate::loom::futex::poll_wait`.
pub(crate) fn poll_wait(word: &AtomicU32, expected: u32, _wake_by: Deadline) -> bool {
    let addr = word as *const _ as usize;
    poll_wait_at(addr, || word.load(Ordering::SeqCst), expected)
}

fn poll_wait_at(addr: usize, load: impl Fn() -> u32, expected: u32) -> bool {
    let (lock, cv) = &*TABLE;
    let mut table = lock.lock().unwrap();
    if load() != expected {
        return true;
    }
    let deaths = table.deaths;
    if SEEN_DEATHS.with(|c| c.replace(deaths)) != deaths {
        return false;
    }
    let ticket = table.next_ticket;
    table.next_ticket += 1;
    table.sleepers.push((addr, ticket, true));
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
pub(crate) fn wait_low(word: &AtomicU64, expected: u32, deadline: Option<Deadline>) -> bool {
    let load = || word.load(Ordering::SeqCst) as u32;
    wait_at(word as *const _ as usize, load, expected, deadline)
}

/// [`wake`] on the low 32 bits of a 64-bit word.
pub(crate) fn wake_low(word: &AtomicU64, count: u32) -> u32 {
    wake_at(word as *const _ as usize, count)
}

fn wait_at(addr: usize, load: impl Fn() -> u32, expected: u32, deadline: Option<Deadline>) -> bool {
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
