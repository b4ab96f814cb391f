//! The shared heap and its containers.
//!
//! Groups and ids:
//! - `dict_u64`: `Dict<u64, u64>` uncontended `ours_get` / `ours_insert` (replacing the value of
//!   a present key) over 1000 keys, against `std_get` / `std_insert` (`HashMap<u64, u64>` behind
//!   `std::sync::Mutex`, the in-process ceiling); Python's `Manager().dict()` is measured by
//!   scripts/python_multiprocessing_bench.py as `dict_u64/python_get` / `python_insert`.
//! - `dict_serde`: the same with a short `String` key and a `Vec<u32>` of 8 as the value.
//! - `dict_read_scaling`: `Dict<u64, u64>` get latency with `n` readers in all (1..=cpu count):
//!   this process times its gets while `n - 1` child processes read the same dict in a loop.
//!   `ours_get/n` against `std_get/n` (`HashMap` behind `Mutex`, read by `n - 1` other threads
//!   meanwhile). Flat figures mean reads scale (they take no lock and write nothing shared).
//! - `handover_1MiB_oneway`: a 1 MiB buffer to a child process, one way, timed from before the
//!   send in this process to after the receive (and decode) in the child, on the shared monotonic
//!   clock; one message in flight at a time (the child acknowledges each). `ours_queue_handle`: a
//!   `HeapRc<[u8]>` as a Pod `RcHandle` through a `Queue`, the child sleeping in `pop` (so the
//!   figure includes its wake-up) or, `ours_queue_handle_spin`, busy-polling `try_pop` (the
//!   hand-over itself); `ours_channel_heap_rc`: the `HeapRc` itself through a `Channel`;
//!   `ours_channel_vec`: the `Vec<u8>` through a `Channel` (one copy in, one out, plus serde);
//!   `memcpy`: one copy of 1 MiB in this process.

mod common;

use criterion::{BenchmarkId, Criterion};
use multiproc::heap::{Dict, Heap, HeapRc, RcHandle};
use multiproc::{Channel, Process, Queue};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn main() {
    common::bench_main(&[dict_u64, dict_serde, read_scaling, handover_oneway]);
}

const KEYS: u64 = 1000;

fn dict_u64(c: &mut Criterion) {
    let mut g = c.benchmark_group("dict_u64");
    let d = Dict::<u64, u64>::new().expect("dict");
    let std = Mutex::new(HashMap::<u64, u64>::new());
    for k in 0..KEYS {
        d.insert(&k, &k).expect("insert");
        std.lock().expect("lock").insert(k, k);
    }
    let mut k = 0u64;
    let mut next = || {
        k = (k + 7) % KEYS;
        k
    };
    g.bench_function("ours_get", |b| {
        b.iter(|| black_box(d.get(&next()).expect("get")))
    });
    g.bench_function("ours_insert", |b| {
        b.iter(|| d.insert(&next(), &black_box(5)).expect("insert"))
    });
    g.bench_function("std_get", |b| {
        b.iter(|| black_box(std.lock().expect("lock").get(&next()).copied()))
    });
    g.bench_function("std_insert", |b| {
        b.iter(|| std.lock().expect("lock").insert(next(), black_box(5)))
    });
    g.finish();
}

fn dict_serde(c: &mut Criterion) {
    let mut g = c.benchmark_group("dict_serde");
    let d = Dict::<String, Vec<u32>>::new().expect("dict");
    let std = Mutex::new(HashMap::<String, Vec<u32>>::new());
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k}")).collect();
    let value: Vec<u32> = (0..8).collect();
    for k in &keys {
        d.insert(k, &value).expect("insert");
        std.lock().expect("lock").insert(k.clone(), value.clone());
    }
    let mut i = 0usize;
    let mut next = || {
        i = (i + 7) % keys.len();
        &keys[i]
    };
    g.bench_function("ours_get", |b| {
        b.iter(|| black_box(d.get(next()).expect("get")))
    });
    g.bench_function("ours_insert", |b| {
        b.iter(|| d.insert(next(), black_box(&value)).expect("insert"))
    });
    g.bench_function("std_get", |b| {
        b.iter(|| black_box(std.lock().expect("lock").get(next()).cloned()))
    });
    g.bench_function("std_insert", |b| {
        b.iter(|| {
            std.lock()
                .expect("lock")
                .insert(next().clone(), black_box(value.clone()))
        })
    });
    g.finish();
}

/// Reads every key of `d` until its heap's "stop" word is set.
fn background_reader(d: Dict<u64, u64>) {
    let stop = d.heap().find::<AtomicU64>("stop").expect("stop word");
    let mut k = 0;
    while stop.load(Ordering::Relaxed) == 0 {
        k = (k + 7) % KEYS;
        black_box(d.get(&k).expect("get"));
    }
}

fn read_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("dict_read_scaling");
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let d = Dict::<u64, u64>::new().expect("dict");
    let stop = d
        .heap()
        .find_or_construct("stop", || AtomicU64::new(0))
        .expect("stop word");
    let std = Arc::new(Mutex::new(HashMap::<u64, u64>::new()));
    for k in 0..KEYS {
        d.insert(&k, &k).expect("insert");
        std.lock().expect("lock").insert(k, k);
    }
    let mut k = 0u64;
    let mut next = move || {
        k = (k + 7) % KEYS;
        k
    };
    for n in 1..=cpus {
        stop.store(0, Ordering::Relaxed);
        let readers: Vec<_> = (1..n)
            .map(|_| Process::spawn(background_reader, d.clone()).expect("spawn"))
            .collect();
        g.bench_function(BenchmarkId::new("ours_get", n), |b| {
            b.iter(|| black_box(d.get(&next()).expect("get")))
        });
        stop.store(1, Ordering::Relaxed);
        for r in readers {
            r.join().expect("reader");
        }

        let halt = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (1..n)
            .map(|i| {
                let (std, halt) = (std.clone(), halt.clone());
                std::thread::spawn(move || {
                    let mut k = i as u64;
                    while !halt.load(Ordering::Relaxed) {
                        k = (k + 7) % KEYS;
                        black_box(std.lock().expect("lock").get(&k).copied());
                    }
                })
            })
            .collect();
        g.bench_function(BenchmarkId::new("std_get", n), |b| {
            b.iter(|| black_box(std.lock().expect("lock").get(&next()).copied()))
        });
        halt.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("reader thread");
        }
    }
    g.finish();
}

const MIB: usize = 1 << 20;

/// Nanoseconds on the monotonic clock, which every process on the machine shares.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A shared buffer's handle and when it was sent.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Stamped {
    handle: RcHandle,
    sent_ns: u64,
}

/// Receives handles (busy-polling if `spin`, else sleeping in `pop`); acknowledges each with its
/// one-way latency in ns.
fn oneway_handle((_heap, rx, acks, spin): (Heap, Queue<Stamped>, Queue<u64>, bool)) {
    loop {
        let m = if spin {
            match rx.try_pop() {
                Ok(m) => m,
                Err(_) if rx.is_closed() => return,
                Err(_) => {
                    std::hint::spin_loop();
                    continue;
                }
            }
        } else {
            match rx.pop() {
                Ok(m) => m,
                Err(_) => return,
            }
        };
        let rc = HeapRc::<[u8]>::from_handle(m.handle).expect("decode");
        black_box(rc[MIB - 1]);
        let ns = now_ns() - m.sent_ns;
        drop(rc);
        if acks.push(ns).is_err() {
            return;
        }
    }
}

/// A channel of shared 1 MiB buffers with their send times.
type RcChannel = Channel<(u64, HeapRc<[u8]>)>;

fn oneway_rc((_heap, rx, acks): (Heap, RcChannel, Queue<u64>)) {
    while let Ok((sent, rc)) = rx.recv() {
        black_box(rc[MIB - 1]);
        let ns = now_ns() - sent;
        drop(rc);
        if acks.push(ns).is_err() {
            return;
        }
    }
}

fn oneway_vec((rx, acks): (Channel<(u64, Vec<u8>)>, Queue<u64>)) {
    while let Ok((sent, v)) = rx.recv() {
        black_box(v[MIB - 1]);
        let ns = now_ns() - sent;
        drop(v);
        if acks.push(ns).is_err() {
            return;
        }
    }
}

/// Sums the one-way latencies the child acknowledges for `iters` sends.
fn oneway(acks: &Queue<u64>, iters: u64, mut send: impl FnMut()) -> Duration {
    let mut total = 0;
    for _ in 0..iters {
        send();
        total += acks.pop().expect("ack");
    }
    Duration::from_nanos(total)
}

fn handover_oneway(c: &mut Criterion) {
    let mut g = c.benchmark_group("handover_1MiB_oneway");
    let heap = Heap::new(64 << 20).expect("heap");
    let rc = heap
        .alloc_zeroed_slice::<u8>(MIB)
        .expect("alloc")
        .into_shared()
        .expect("share");

    for (id, spin) in [
        ("ours_queue_handle", false),
        ("ours_queue_handle_spin", true),
    ] {
        let (there, acks) = (Queue::new(4).expect("queue"), Queue::new(4).expect("queue"));
        let args = (heap.clone(), there.clone(), acks.clone(), spin);
        let child = Process::spawn(oneway_handle, args).expect("spawn");
        g.bench_function(BenchmarkId::new(id, MIB), |b| {
            b.iter_custom(|iters| {
                oneway(&acks, iters, || {
                    let sent_ns = now_ns();
                    let handle = rc.clone().into_handle().expect("handle");
                    there.push(Stamped { handle, sent_ns }).expect("push");
                })
            })
        });
        there.close();
        drop(child.join());
    }

    let (there, acks) = (
        Channel::new(4096).expect("ch"),
        Queue::new(4).expect("queue"),
    );
    let child =
        Process::spawn(oneway_rc, (heap.clone(), there.clone(), acks.clone())).expect("spawn");
    g.bench_function(BenchmarkId::new("ours_channel_heap_rc", MIB), |b| {
        b.iter_custom(|iters| {
            oneway(&acks, iters, || {
                there.send((now_ns(), rc.clone())).expect("send")
            })
        })
    });
    there.close();
    drop(child.join());

    let (there, acks) = (
        Channel::new(4 * MIB).expect("ch"),
        Queue::new(4).expect("queue"),
    );
    let child = Process::spawn(oneway_vec, (there.clone(), acks.clone())).expect("spawn");
    let buf = vec![0x5au8; MIB];
    g.bench_function(BenchmarkId::new("ours_channel_vec", MIB), |b| {
        b.iter_custom(|iters| {
            oneway(&acks, iters, || {
                let v = buf.clone();
                there.send((now_ns(), v)).expect("send")
            })
        })
    });
    there.close();
    drop(child.join());

    let src = vec![0x5au8; MIB];
    let mut dst = vec![0u8; MIB];
    g.bench_function(BenchmarkId::new("memcpy", MIB), |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    g.finish();
}
