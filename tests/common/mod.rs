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

/// The calling thread's CPU time (ns) and voluntary context switches (its sleeps), from
/// `/proc/thread-self`: what an idle waiter costs.
pub fn thread_cost() -> (u64, u64) {
    let sched = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let cpu = sched.split_whitespace().next().unwrap().parse().unwrap();
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let switches = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (cpu, switches)
}

/// Prints `n`, p50, p99 and max of latencies in ns, in ms; returns p99.
pub fn report_latency(what: &str, v: &mut [u64]) -> u64 {
    let p99 = percentile(v, 99);
    println!(
        "{what}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        v.len(),
        percentile(v, 50) as f64 / 1e6,
        p99 as f64 / 1e6,
        percentile(v, 100) as f64 / 1e6,
    );
    p99
}
