//! `Pool` against Python's `multiprocessing.Pool` (scripts/python_multiprocessing_bench.py writes
//! the same ids with `python`), rayon (threads), and bare process starts. Two workers (and two
//! rayon threads) throughout, the size of this machine and of the Python runs.
//!
//! Groups and ids (time per task unless said):
//! - `pool_map_1e6`: `ours`: `map` of `u64 -> u64` over 10^6 inputs with automatic chunking
//!   (Python's rule: 4 chunks per worker); the time of one map divided by 10^6.
//! - `pool_apply_async`: `ours`: 10^4 `apply_async` (one task each), then every `get`.
//! - `pool_apply`: `ours`: one `apply` on an idle pool, the round trip; `unix_socket`: the raw
//!   limit, a u64 there and back over a Unix socket pair to a child that echoes it (blocking
//!   reads on both sides, so two wake-ups per round trip; in `apply` the caller reads the
//!   reply itself for its first 50 µs and the worker polls for 50 µs before it blocks);
//!   `procspawn`: one `spawn` + `join` on an idle 2-worker `procspawn::Pool`, the peer crate.
//! - `pool_cpu_1ms`: 64 tasks of ~1 ms of CPU each: `ours` (`map`, chunk size 1), `rayon`
//!   (`par_iter` on a 2-thread pool), `serial` (one thread, the work itself). Parallel
//!   efficiency against rayon is rayon's time over ours.
//! - `pool_start`: time of the whole start (not per task): `ours` (`Pool::new(2)` then `join`:
//!   both workers started, served their socket and exited), `bare_spawn` (2 `Process::spawn`
//!   of a no-op, then both `join`s), `procspawn` (`procspawn::Pool::new(2)`, one task per
//!   worker joined so both served, then `shutdown`).
//! - `pool_behind_long`: head-of-line waiting. After a `map` of 20,000 trivial tasks (which
//!   fills each worker's mailbox with many chunks), `apply_async` of one 100 ms sleep and then
//!   63 of 1 ms: the time until the 63 are done (not per task). `ours` against Python's
//!   (`pool_behind_long/python`); one worker doing the 63 alone takes about 63 ms.
//! - `pool_recycle`: `max_tasks_per_child`'s gap in throughput. `gap`: on a one-worker pool
//!   that recycles its worker every 20 tasks, `imap` (chunk size 1) over 100 tasks: the mean wait
//!   between a worker's last result and its successor's first (four recycles); `worker_start`: `Pool::new(1)` and
//!   one `apply`, the time until a fresh worker has served its first task. The target is a gap
//!   no longer than one worker start.

mod common;

use common::Watchdog;
use criterion::{Bencher, Criterion};
use multiproc::{Pool, Process};
use rayon::prelude::*;
use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const WORKERS: usize = 2;
const MAP_N: u64 = 1_000_000;
const ASYNC_N: u64 = 10_000;
const CPU_TASKS: u64 = 64;

fn main() {
    // procspawn's children run their call from here and exit; ours from `bench_main`'s init.
    procspawn::init();
    common::bench_main(&[
        map_1e6,
        apply_async,
        apply,
        cpu_1ms,
        behind_long,
        start,
        recycle,
    ]);
}

fn double(x: u64) -> u64 {
    x * 2
}

fn noop(_: ()) {}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// `n` rounds of an xorshift: CPU work that the optimiser cannot remove.
fn burn(n: u64) -> u64 {
    let mut x = n | 1;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// Rounds of [`burn`] that take about 1 ms here.
fn rounds_per_ms() -> u64 {
    let probe = 1_000_000;
    let t = Instant::now();
    burn(probe);
    let ns = t.elapsed().as_nanos().max(1) as u64;
    probe * 1_000_000 / ns
}

/// Times `iters` calls of `round` (each `tasks` tasks): the time per task.
fn per_task(b: &mut Bencher<'_>, tasks: u64, mut round: impl FnMut()) {
    b.iter_custom(|iters| {
        Watchdog::arm();
        let t = Instant::now();
        for _ in 0..iters {
            round();
        }
        t.elapsed() / tasks as u32
    })
}

fn pool() -> Pool {
    Pool::new(WORKERS).expect("pool")
}

fn map_1e6(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_map_1e6");
    g.sample_size(10);
    let pool = pool();
    g.bench_function("ours", |b| {
        per_task(b, MAP_N, || {
            black_box(pool.map(double, 0..MAP_N).expect("map"));
        })
    });
    g.finish();
}

fn apply_async(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_apply_async");
    g.sample_size(10);
    let pool = pool();
    g.bench_function("ours", |b| {
        per_task(b, ASYNC_N, || {
            let pending: Vec<_> = (0..ASYNC_N).map(|i| pool.apply_async(double, i)).collect();
            for (i, p) in pending.into_iter().enumerate() {
                assert_eq!(p.get(), Ok(2 * i as u64));
            }
        })
    });
    g.finish();
}

/// Echoes 8-byte messages until end of file.
fn echo(sock: multiproc::process::FdArg) {
    let mut s = std::os::unix::net::UnixStream::from(sock.0);
    let mut buf = [0u8; 8];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            return;
        }
    }
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_apply");
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    let child = Process::spawn(echo, multiproc::process::FdArg(theirs.into())).expect("spawn");
    g.bench_function("unix_socket", |b| {
        per_task(b, 1, || {
            let mut buf = [7u8; 8];
            ours.write_all(&buf).expect("write");
            ours.read_exact(&mut buf).expect("read");
        })
    });
    drop(ours);
    child.join().expect("echo child");
    let pool = pool();
    g.bench_function("ours", |b| {
        per_task(b, 1, || {
            black_box(pool.apply(double, 7).expect("apply"));
        })
    });
    drop(pool);
    let peer = procspawn::Pool::new(WORKERS).expect("procspawn pool");
    g.bench_function("procspawn", |b| {
        per_task(b, 1, || {
            black_box(peer.spawn(7, double).join().expect("procspawn"));
        })
    });
    peer.shutdown();
    g.finish();
}

fn cpu_1ms(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_cpu_1ms");
    g.sample_size(10);
    let rounds = rounds_per_ms();
    let inputs: Vec<u64> = (0..CPU_TASKS).map(|i| rounds + i).collect();
    let pool = Pool::builder()
        .processes(WORKERS)
        .chunksize(1)
        .build()
        .expect("pool");
    g.bench_function("ours", |b| {
        per_task(b, CPU_TASKS, || {
            black_box(pool.map(burn, inputs.iter().copied()).expect("map"));
        })
    });
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .expect("rayon");
    g.bench_function("rayon", |b| {
        per_task(b, CPU_TASKS, || {
            let out: Vec<u64> = threads.install(|| inputs.par_iter().map(|&n| burn(n)).collect());
            black_box(out);
        })
    });
    g.bench_function("serial", |b| {
        per_task(b, CPU_TASKS, || {
            black_box(inputs.iter().map(|&n| burn(n)).collect::<Vec<_>>());
        })
    });
    g.finish();
}

fn behind_long(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_behind_long");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let pool = pool();
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            Watchdog::arm();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                black_box(pool.map(double, 0..20_000u64).expect("map"));
                let t = Instant::now();
                let long = pool.apply_async(nap, 100);
                let short: Vec<_> = (0..63).map(|_| pool.apply_async(nap, 1)).collect();
                for s in &short {
                    s.get().expect("short task");
                }
                total += t.elapsed();
                long.get().expect("long task");
            }
            total
        })
    });
    g.finish();
}

fn start(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_start");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("ours", |b| per_task(b, 1, || pool().join()));
    g.bench_function("bare_spawn", |b| {
        per_task(b, 1, || {
            let children: Vec<_> = (0..WORKERS)
                .map(|_| Process::spawn(noop, ()).expect("spawn"))
                .collect();
            for child in children {
                child.join().expect("join");
            }
        })
    });
    g.bench_function("procspawn", |b| {
        per_task(b, 1, || {
            let peer = procspawn::Pool::new(WORKERS).expect("procspawn pool");
            let tasks: Vec<_> = (0..WORKERS as u64).map(|i| peer.spawn(i, double)).collect();
            for t in tasks {
                t.join().expect("procspawn");
            }
            peer.shutdown();
        })
    });
    g.finish();
}

fn recycle(c: &mut Criterion) {
    const TASKS: u64 = 100;
    const PER_CHILD: u64 = 20;
    let mut g = c.benchmark_group("pool_recycle");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("gap", |b| {
        b.iter_custom(|iters| {
            Watchdog::arm();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pool = Pool::builder()
                    .processes(1)
                    .max_tasks_per_child(PER_CHILD)
                    .chunksize(1)
                    .build()
                    .expect("pool");
                // Result `i` (from 0) is the first of a fresh worker when `i % PER_CHILD == 0`;
                // the wait for it, after result `i - 1`, is the gap its predecessor's exit left.
                let mut last = Instant::now();
                let mut gaps = Duration::ZERO;
                for (i, r) in pool.imap(double, 0..TASKS).enumerate() {
                    r.expect("task");
                    if i > 0 && i as u64 % PER_CHILD == 0 {
                        gaps += last.elapsed();
                    }
                    last = Instant::now();
                }
                let gap = gaps / (TASKS / PER_CHILD - 1) as u32;
                total += gap;
            }
            total
        })
    });
    g.bench_function("worker_start", |b| {
        b.iter_custom(|iters| {
            Watchdog::arm();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let pool = Pool::new(1).expect("pool");
                black_box(pool.apply(double, 1).expect("task"));
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}
