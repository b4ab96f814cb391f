//! What the random-time SIGKILL soaks share (each primitive's soak lives in its `crash_*` crate).
//!
//! Each run starts a victim child that loops the primitive's operations, SIGKILLs it after a
//! random delay (0..3 ms from the moment it started looping), and then checks that the survivors
//! (this process, its threads, or a second child) finish their operations within 1 s using the
//! `_timeout` forms, with the invariant intact or only the loss SAFETY.md documents for that
//! primitive (a lost permit, a waiter that needs its timeout, a wedged barrier, at most
//! the victim's in-flight value).
//!
//! Found (and since fixed by the robust RwLock): after an RwLock reader died holding, one
//! `write_timeout` that timed out left `WRITERS_WAITING` set for good, so every later reader timed
//! out too. The rwlock soak now checks that a dead reader's hold is freed by the next writer.
//!
//! The seed is fixed and printed; each run's context names the run. Default: 20 runs per
//! primitive. Longer soak (a debug build; `--test-threads=1` keeps the timing bounds honest):
//!
//! `MULTIPROC_SOAK_RUNS=2000 cargo test --test 'crash_*' soak -- --nocapture --test-threads=1`
//!
//! `MULTIPROC_SOAK_SEED=<n>` replays a seed.

use super::{Rng, spin_us, wait_for, watchdog};
use multiproc::{Error, Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A short timeout for operations that are expected to time out (a documented wedge).
pub const SHORT: Duration = Duration::from_millis(50);

/// How long a victim loops at most (it is always killed long before).
pub const VICTIM_LIFE: Duration = Duration::from_secs(10);

/// Slack allowed past a timeout before it counts as "did not fire": generous, since the soaks
/// run beside other tests on a 2-core machine (lower bounds stay tight; latency is measured and
/// printed, not asserted).
pub const SLACK: Duration = Duration::from_secs(5);

pub fn soak_runs() -> u64 {
    std::env::var("MULTIPROC_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

pub fn soak_seed(test: u64) -> u64 {
    let base = std::env::var("MULTIPROC_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_50a4);
    base ^ test.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Waits until the victim says it is looping, then SIGKILLs it after a random 0..3 ms, reaps it
/// and checks that it died by the signal.
pub fn kill_after_random_delay<R>(
    rng: &mut Rng,
    victim: &mut Process<R>,
    started: &AtomicU32,
    ctx: &str,
) where
    R: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for("the victim to start", || {
        started.load(Ordering::SeqCst) != 0 || !victim.is_alive()
    });
    spin_us(rng.below(3_000));
    let _ = victim.kill();
    match victim.join_timeout(Duration::from_secs(5)) {
        Err(Error::ChildSignaled { signal: 9 }) => {}
        other => panic!("{ctx}: victim: unexpected outcome {other:?}"),
    }
}

/// Asserts that an operation expected to time out after `timeout` did so within bounds.
pub fn assert_timed_out(took: Duration, timeout: Duration, ctx: &str) {
    assert!(
        took + Duration::from_millis(2) >= timeout && took < timeout + SLACK,
        "{ctx}: a {timeout:?} timeout fired after {took:?}"
    );
}

/// Runs `run` `soak_runs()` times with one seeded generator, printing the seed.
pub fn soak(name: &str, test: u64, mut run: impl FnMut(&mut Rng, &str)) {
    let seed = soak_seed(test);
    let runs = soak_runs();
    println!("{name}: seed {seed} ({runs} runs)");
    let mut rng = Rng(seed | 1);
    let t0 = Instant::now();
    for i in 0..runs {
        let ctx = format!("{name} seed {seed} run {i}");
        run(&mut rng, &ctx);
    }
    println!("{name}: {runs} runs in {:?}", t0.elapsed());
}

/// The watchdog for a whole soak: generous per run, so longer soaks are not cut short.
pub fn soak_watchdog(body: impl FnOnce() + Send + 'static) {
    watchdog(30 + soak_runs() * 3, body);
}

// Phases a victim publishes around a hold (a permit, a lock).
pub const IDLE: u32 = 0;
pub const TAKING: u32 = 1;
pub const HOLDING: u32 = 2;
pub const RETURNING: u32 = 3;
pub const RETURNED: u32 = 4;

// ---------------------------------------------------------------------------------------------
// Queues. Values carry a sequence number and a check word; the victim publishes how many of its
// operations returned. One producer and one consumer, so values arrive in order.

pub type Msg = [u64; 2];

pub fn msg(seq: u64) -> Msg {
    [seq, !seq.rotate_left(17)]
}

pub fn check(m: Msg, ctx: &str) -> u64 {
    assert_eq!(m[1], !m[0].rotate_left(17), "{ctx}: torn value {m:?}");
    m[0]
}

/// Values the survivor pushes when the victim is the consumer.
pub const STREAM: u64 = 300;

#[repr(C)]
pub struct QSoak {
    pub started: AtomicU32,
    /// How many of the victim's pushes or pops returned `Ok`.
    pub done: AtomicU64,
    /// The last value the victim popped + 1.
    pub last: AtomicU64,
}
// SAFETY: atomics only, `#[repr(C)]`.
unsafe impl ShmSafe for QSoak {}

pub fn new_qsoak() -> Shared<QSoak> {
    Shared::new(QSoak {
        started: AtomicU32::new(0),
        done: AtomicU64::new(0),
        last: AtomicU64::new(0),
    })
    .unwrap()
}

/// The survivor's checks, once the victim is dead. `victim_produced`: the victim pushed
/// `0..done` (maybe `done` too, in flight) and `got` is what the survivor popped, in order. Else
/// the survivor pushed `0..STREAM`, the victim popped `0..done` and `got` is the rest.
pub fn check_stream(got: &[u64], s: &QSoak, victim_produced: bool, ctx: &str) -> bool {
    let done = s.done.load(Ordering::SeqCst);
    for w in got.windows(2) {
        assert!(w[1] == w[0] + 1, "{ctx}: out of order or duplicated: {w:?}");
    }
    if victim_produced {
        // Every acknowledged push delivered; at most the in-flight one more.
        let n = got.len() as u64;
        assert!(
            n == done || n == done + 1,
            "{ctx}: victim pushed {done}, got {n}"
        );
        if let Some(&f) = got.first() {
            assert_eq!(f, 0, "{ctx}");
        }
        false
    } else {
        // The victim's popped values are gone; at most its in-flight value more.
        let first = got.first().copied().unwrap_or(STREAM);
        assert!(
            first == done || first == done + 1,
            "{ctx}: victim popped {done}, survivor's first is {first}"
        );
        if let Some(&l) = got.last() {
            assert_eq!(l, STREAM - 1, "{ctx}: the stream's end is missing");
        }
        let last = s.last.load(Ordering::SeqCst);
        assert!(
            last == done || last + 1 == done,
            "{ctx}: victim popped {done} values but its last was {last}"
        );
        // The victim's in-flight value, popped but not yet counted, is lost.
        first == done + 1
    }
}
