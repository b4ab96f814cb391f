//! The shared heap and its containers.
//!
//! Groups and ids:
//! - `dict_u64`: `Dict<u64, u64>` uncontended `ours_get` / `ours_insert` (replacing the value of
//!   a present key) over 1000 keys, against `std_get` / `std_insert` (`HashMap<u64, u64>` behind
//!   `std::sync::Mutex`, the in-process ceiling); Python's `Manager().dict()` is measured by
//!   scripts/python_multiprocessing_bench.py as `dict_u64/python_get` / `python_insert`.
//! - `dict_serde`: the same with a short `String` key and a `Vec<u32>` of 8 as the value.
//! - `handover_1MiB`: a 1 MiB buffer to a child process and back (a round trip; one way is half):
//!   `ours_heap_rc` sends a `HeapRc<[u8]>` through a `Channel` (an offset, not the bytes),
//!   `ours_channel_vec` sends the `Vec<u8>` itself through a `Channel`; `memcpy` is one copy of
//!   1 MiB in this process.

mod common;

use criterion::{BenchmarkId, Criterion};
use multiproc::heap::{Dict, Heap, HeapRc};
use multiproc::{Channel, Process};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;

fn main() {
    common::bench_main(&[dict_u64, dict_serde, handover]);
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

const MIB: usize = 1 << 20;

/// A channel of shared 1 MiB buffers.
type RcChannel = Channel<HeapRc<[u8]>>;

fn echo_rc((_heap, rx, tx): (Heap, RcChannel, RcChannel)) {
    while let Ok(rc) = rx.recv() {
        if tx.send(rc).is_err() {
            return;
        }
    }
}

fn echo_vec((rx, tx): (Channel<Vec<u8>>, Channel<Vec<u8>>)) {
    while let Ok(v) = rx.recv() {
        if tx.send(v).is_err() {
            return;
        }
    }
}

fn handover(c: &mut Criterion) {
    let mut g = c.benchmark_group("handover_1MiB");
    let heap = Heap::new(64 << 20).expect("heap");
    let (there, back) = (
        Channel::new(4096).expect("ch"),
        Channel::new(4096).expect("ch"),
    );
    let child =
        Process::spawn(echo_rc, (heap.clone(), there.clone(), back.clone())).expect("spawn");
    let rc = heap
        .alloc_zeroed_slice::<u8>(MIB)
        .expect("alloc")
        .into_shared()
        .expect("share");
    g.bench_function(BenchmarkId::new("ours_heap_rc", MIB), |b| {
        b.iter(|| {
            there.send(rc.clone()).expect("send");
            black_box(back.recv().expect("recv"));
        })
    });
    there.close();
    drop(child.join());

    let (there, back) = (
        Channel::<Vec<u8>>::new(4 * MIB).expect("ch"),
        Channel::<Vec<u8>>::new(4 * MIB).expect("ch"),
    );
    let child = Process::spawn(echo_vec, (there.clone(), back.clone())).expect("spawn");
    let buf = vec![0x5au8; MIB];
    g.bench_function(BenchmarkId::new("ours_channel_vec", MIB), |b| {
        b.iter(|| {
            there.send(buf.clone()).expect("send");
            black_box(back.recv().expect("recv"));
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
