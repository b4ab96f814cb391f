//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod crash;
pub mod ring;
pub mod soak;

use std::time::{Duration, Instant};

#[allow(unused_imports)] // not every test file uses both
pub use multiproc::testing::{Rng, watchdog};

/// A segment name unique to this process and call.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "mp-t-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What `/proc` says about `pid`: `None` if it is gone, else its state letter.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 1..].trim_start().chars().next()
}

/// Whether `pid` has exited (gone or a zombie).
pub fn is_dead(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some('Z' | 'X'))
}

/// Whether `/dev/shm/<name>` exists.
pub fn shm_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

/// Nanoseconds on `CLOCK_MONOTONIC`: one clock for every process on the machine, so times taken in
/// a child and in the parent can be compared.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `p`-th percentile (0..=100) of `samples` (sorted in place); 0 if there are none.
pub fn percentile(samples: &mut [u64], p: u64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let i = ((samples.len() as u64 - 1) * p / 100) as usize;
    samples[i]
}

/// Spins (busy) for `us` microseconds: a process that is running, not sleeping, when killed.
pub fn spin_us(us: u64) {
    let end = Instant::now() + Duration::from_micros(us);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Waits (bounded by 10 s) until `f` holds.
pub fn wait_for(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(100));
    }
}
