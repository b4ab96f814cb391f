//! Queues and channels: cross-process round trips of a u64, one-way u64 throughput, message
//! throughput by size, and MPMC scaling.
//!
//! Groups and ids (the report pairs "ours_*" with the others by group):
//! - `roundtrip_u64`: `raw_atomic` (cache-line limit), `raw_atomic_two_lines` (the same with a
//!   line per direction: the limit of two queues), `raw_futex` (blocking limit), `pipe`,
//!   `unix_socket`, `ipc_channel`, `iceoryx2`; ours: `ours_queue_busy` (two `Queue<u64>`,
//!   `try_push`/`try_pop` spin loops), `ours_queue_blocking` (`push`/`pop`), `ours_spsc_busy`
//!   (two `SpscQueue<u64>`, `try_push`/`try_pop` spin loops), `ours_pipe`
//!   (`Pipe::new::<u64>`, blocking `send`/`recv` on its two `Connection`s).
//! - `throughput_u64`: `raw_ring` (cached-index SPSC ring between processes),
//!   `crossbeam_array_queue` (between threads); ours: `ours_spsc` (`SpscQueue<u64>`, single
//!   `try_push`/`try_pop`), `ours_spsc_batch` (`push_slice`/`pop_into`, batches of
//!   [`BATCH`]), `ours_queue` (`Queue<u64>`, single `try_push`/`try_pop`), all between processes.
//! - `message_bytes/<size>`: `memcpy`, `raw_copy_ring` (the cross-process copy limit), `pipe`,
//!   `ipc_channel`; ours: `ours_channel`
//!   (`Channel<Bytes>`, a byte-string newtype), `ours_channel_vec` (`Channel<Vec<u8>>`, which
//!   serde encodes byte by byte), `ours_send_bytes` (`send_bytes`/`recv_bytes_into`: no encoding).
//! - `mpmc_scaling/<producers>`: `crossbeam_array_queue` with N producer and N consumer threads;
//!   ours: `ours_queue` (`Queue<u64>` with N producer and N consumer processes).

mod common;

use common::pingpong::{self, GRACE};
use common::{
    CACHE_LINE, Child, ShmPages, Spin, close, pipe, read_exact, spin_until, timed, write_all,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use multiproc::queue::{PopError, PushError, SpscProducer};
use multiproc::{Channel, Pipe, Queue, Shared, SpscQueue};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn main() {
    common::bench_main(&[roundtrip_u64, throughput_u64, message_bytes, mpmc_scaling]);
}

// ---------------------------------------------------------------------------------------------
// Round trip of a u64 between two processes.

fn roundtrip_u64(c: &mut Criterion) {
    let mut g = c.benchmark_group("roundtrip_u64");
    pingpong::raw_atomic(&mut g, "raw_atomic");
    pingpong::raw_atomic_two_lines(&mut g, "raw_atomic_two_lines");
    pingpong::raw_futex(&mut g, "raw_futex");
    pingpong::pipe_u64(&mut g, "pipe");
    pingpong::unix_socket_u64(&mut g, "unix_socket");
    ipc_channel_u64(&mut g);
    iceoryx2_u64(&mut g);
    ours_queue_roundtrip(&mut g, true);
    ours_queue_roundtrip(&mut g, false);
    ours_spsc_roundtrip(&mut g);
    ours_pipe_roundtrip(&mut g);
    g.finish();
}

/// Capacity of the queues of the round-trip benches (one item in flight at a time).
const ROUNDTRIP_CAP: usize = 64;

/// Value that tells a responder or consumer child to leave.
const STOP: u64 = u64::MAX;

/// Busy `try_push` (with [`Spin`]): the queue only fills if the peer is gone.
fn push_spin(q: &Queue<u64>, v: u64) {
    spin_push(|v| q.try_push(v), v);
}

/// Re-tries `try_push` (with [`Spin`]) while it reports `Full`, taking the value back each time.
fn spin_push(mut try_push: impl FnMut(u64) -> Result<(), PushError<u64>>, v: u64) {
    let mut spin = Spin::new();
    let mut v = v;
    loop {
        match try_push(v) {
            Ok(()) => return,
            Err(PushError::Full(back)) => {
                v = back;
                spin.wait();
            }
            Err(e) => panic!("try_push: {e:?}"),
        }
    }
}

/// Busy `try_pop` (with [`Spin`]).
fn pop_spin(q: &Queue<u64>) -> u64 {
    let mut spin = Spin::new();
    loop {
        match q.try_pop() {
            Ok(v) => return v,
            Err(PopError::Empty) => spin.wait(),
            Err(e) => panic!("try_pop: {e:?}"),
        }
    }
}

/// Two `Queue<u64>`, one per direction: the parent pushes a sequence number and pops the echo;
/// the child pops and pushes back. `busy`: `try_push`/`try_pop` spin loops on both sides
/// (`ours_queue_busy`); else blocking `push`/`pop` (`ours_queue_blocking`).
fn ours_queue_roundtrip(g: &mut BenchmarkGroup<'_, WallTime>, busy: bool) {
    let to_child = Queue::<u64>::new(ROUNDTRIP_CAP).expect("Queue::new");
    let to_parent = Queue::<u64>::new(ROUNDTRIP_CAP).expect("Queue::new");
    let send = |q: &Queue<u64>, v: u64| {
        if busy {
            push_spin(q, v);
        } else {
            q.push(v).expect("push");
        }
    };
    let recv = |q: &Queue<u64>| {
        if busy {
            pop_spin(q)
        } else {
            q.pop().expect("pop")
        }
    };
    let mut seq = 0u64;
    common::roundtrip(
        g,
        if busy {
            "ours_queue_busy"
        } else {
            "ours_queue_blocking"
        },
        || {
            loop {
                let v = recv(&to_child);
                if v == STOP {
                    break;
                }
                send(&to_parent, v);
            }
        },
        || {
            seq += 1;
            send(&to_child, seq);
            let v = recv(&to_parent);
            debug_assert_eq!(v, seq);
        },
        || send(&to_child, STOP),
    );
}

/// Two `SpscQueue<u64>`, one per direction, `try_push`/`try_pop` spin loops on both sides: the
/// parent holds the producer of one and the consumer of the other, the child the other two.
/// Closing the parent's outgoing queue stops the child.
fn ours_spsc_roundtrip(g: &mut BenchmarkGroup<'_, WallTime>) {
    let to_child = SpscQueue::<u64>::new(ROUNDTRIP_CAP).expect("SpscQueue::new");
    let to_parent = SpscQueue::<u64>::new(ROUNDTRIP_CAP).expect("SpscQueue::new");
    let mut tx = to_child.producer().expect("producer role");
    let mut rx = to_parent.consumer().expect("consumer role");
    let mut seq = 0u64;
    common::roundtrip(
        g,
        "ours_spsc_busy",
        || {
            let mut rx = to_child.consumer().expect("consumer role");
            let mut tx = to_parent.producer().expect("producer role");
            let mut spin = Spin::new();
            loop {
                match rx.try_pop() {
                    Ok(v) => {
                        spsc_push_spin(&mut tx, v);
                        spin.reset();
                    }
                    Err(PopError::Empty) => spin.wait(),
                    Err(PopError::Closed) => break,
                    Err(e) => panic!("try_pop: {e:?}"),
                }
            }
        },
        || {
            seq += 1;
            spsc_push_spin(&mut tx, seq);
            let mut spin = Spin::new();
            let v = loop {
                match rx.try_pop() {
                    Ok(v) => break v,
                    Err(PopError::Empty) => spin.wait(),
                    Err(e) => panic!("try_pop: {e:?}"),
                }
            };
            debug_assert_eq!(v, seq);
        },
        || to_child.close(),
    );
}

/// Busy `try_push` on an SPSC producer (with [`Spin`]).
fn spsc_push_spin(tx: &mut SpscProducer<u64>, v: u64) {
    spin_push(|v| tx.try_push(v), v);
}

/// `Pipe::new::<u64>`: the parent sends on its `Connection` and receives the echo; the child
/// receives on the other end and sends back (blocking `send`/`recv` on both sides).
fn ours_pipe_roundtrip(g: &mut BenchmarkGroup<'_, WallTime>) {
    let (parent, child) = Pipe::new::<u64>(4096).expect("Pipe::new");
    let mut seq = 0u64;
    common::roundtrip(
        g,
        "ours_pipe",
        || {
            while let Ok(v) = child.recv() {
                if v == STOP || child.send(v).is_err() {
                    break;
                }
            }
        },
        || {
            seq += 1;
            parent.send(seq).expect("send");
            let v = parent.recv().expect("recv");
            debug_assert_eq!(v, seq);
        },
        || parent.send(STOP).expect("send stop"),
    );
}

/// ipc-channel: a typed `IpcSender<u64>` each way (what a user of the crate writes).
fn ipc_channel_u64(g: &mut BenchmarkGroup<'_, WallTime>) {
    use ipc_channel::ipc;
    const STOP: u64 = u64::MAX;
    let (to_child, from_parent) = ipc::channel::<u64>().expect("ipc channel");
    let (to_parent, from_child) = ipc::channel::<u64>().expect("ipc channel");
    let child = Child::fork(|| {
        while let Ok(v) = from_parent.recv() {
            if v == STOP || to_parent.send(v).is_err() {
                break;
            }
        }
    });
    let mut seq = 0u64;
    g.bench_function("ipc_channel", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    seq += 1;
                    to_child.send(seq).expect("send");
                    let v = from_child.recv().expect("recv");
                    debug_assert_eq!(v, seq);
                }
            })
        })
    });
    let _ = to_child.send(STOP);
    child.finish(GRACE);
}

/// iceoryx2 publish-subscribe (zero-copy shared memory), busy-polling `receive` on both sides:
/// service "ping" parent -> child, service "pong" child -> parent.
fn iceoryx2_u64(g: &mut BenchmarkGroup<'_, WallTime>) {
    use iceoryx2::prelude::*;
    const STOP: u64 = u64::MAX;
    set_log_level(LogLevel::Warn);
    let tag = common::unique_name("ice");
    let ping_name = format!("{tag}/ping");
    let pong_name = format!("{tag}/pong");
    let shm = ShmPages::new(4096);
    let ready: &AtomicBool = shm.at(0);

    // Each process makes its own node after the fork (iceoryx2 state is per process).
    let child = Child::fork(|| {
        let node = NodeBuilder::new()
            .create::<ipc::Service>()
            .expect("iceoryx2 node");
        let ping = node
            .service_builder(&ping_name.as_str().try_into().expect("name"))
            .publish_subscribe::<u64>()
            .open_or_create()
            .expect("ping service");
        let pong = node
            .service_builder(&pong_name.as_str().try_into().expect("name"))
            .publish_subscribe::<u64>()
            .open_or_create()
            .expect("pong service");
        let sub = ping.subscriber_builder().create().expect("subscriber");
        let publ = pong.publisher_builder().create().expect("publisher");
        ready.store(true, Ordering::Release);
        let mut spin = Spin::new();
        loop {
            match sub.receive() {
                Ok(Some(sample)) => {
                    let v = *sample;
                    drop(sample);
                    if v == STOP {
                        break;
                    }
                    publ.send_copy(v).expect("send");
                    spin.reset();
                }
                Ok(None) => spin.wait(),
                Err(_) => break,
            }
        }
    });
    spin_until(|| ready.load(Ordering::Acquire));
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node");
    let ping = node
        .service_builder(&ping_name.as_str().try_into().expect("name"))
        .publish_subscribe::<u64>()
        .open_or_create()
        .expect("ping service");
    let pong = node
        .service_builder(&pong_name.as_str().try_into().expect("name"))
        .publish_subscribe::<u64>()
        .open_or_create()
        .expect("pong service");
    let publ = ping.publisher_builder().create().expect("publisher");
    let sub = pong.subscriber_builder().create().expect("subscriber");
    // Connections are set up lazily: resend until the first answer arrives.
    common::Watchdog::arm();
    'connect: loop {
        publ.send_copy(0).expect("send");
        for _ in 0..100_000 {
            if let Ok(Some(_)) = sub.receive() {
                break 'connect;
            }
            std::hint::spin_loop();
        }
    }
    while let Ok(Some(_)) = sub.receive() {}
    let mut seq = 0u64;
    g.bench_function("iceoryx2", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    seq += 1;
                    publ.send_copy(seq).expect("send");
                    let mut spin = Spin::new();
                    loop {
                        match sub.receive() {
                            Ok(Some(sample)) => {
                                debug_assert_eq!(*sample, seq);
                                break;
                            }
                            Ok(None) => spin.wait(),
                            Err(e) => panic!("iceoryx2 receive: {e:?}"),
                        }
                    }
                }
            })
        })
    });
    let _ = publ.send_copy(STOP);
    child.finish(GRACE);
}

// ---------------------------------------------------------------------------------------------
// One-way throughput of u64 items.

/// Items in the raw ring and in the crossbeam queue.
const RING_CAP: usize = 4096;

fn throughput_u64(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput_u64");
    g.throughput(Throughput::Elements(1));
    raw_ring(&mut g);
    crossbeam_array_queue(&mut g);
    ours_spsc(&mut g, false);
    ours_spsc(&mut g, true);
    ours_queue_throughput(&mut g);
    g.finish();
}

/// Items per `push_slice`/`pop_into` call of `ours_spsc_batch`.
const BATCH: usize = 64;

/// `SpscQueue<u64>` parent -> child (the consumer in the child checks it sees 0, 1, 2, ...;
/// the clock stops when it has taken everything). `batch`: `push_slice`/`pop_into` of up to
/// [`BATCH`] items (`ours_spsc_batch`); else single `try_push`/`try_pop` (`ours_spsc`).
fn ours_spsc(g: &mut BenchmarkGroup<'_, WallTime>, batch: bool) {
    let q = SpscQueue::<u64>::new(RING_CAP).expect("SpscQueue::new");
    // How many items the consumer has taken, and the stop flag.
    let ctl = Shared::new([AtomicU64::new(0), AtomicU64::new(0)]).expect("Shared::new");
    let child = Child::fork(|| {
        let mut rx = q.consumer().expect("consumer role");
        let mut expect = 0u64;
        let mut spin = Spin::new();
        let mut buf = [0u64; BATCH];
        loop {
            let got = if batch {
                let n = rx.pop_into(&mut buf).expect("pop_into");
                for &v in &buf[..n] {
                    assert_eq!(v, expect, "SpscQueue: out of order");
                    expect += 1;
                }
                n
            } else {
                match rx.try_pop() {
                    Ok(v) => {
                        assert_eq!(v, expect, "SpscQueue: out of order");
                        expect += 1;
                        1
                    }
                    Err(PopError::Empty) => 0,
                    Err(e) => panic!("try_pop: {e:?}"),
                }
            };
            // The count is published only when the ring looks empty (the producer waits for the
            // final count only), so the loop adds no shared store per item to the queue's own.
            if got > 0 {
                spin.reset();
            } else if ctl[1].load(Ordering::Relaxed) != 0 {
                break;
            } else {
                if ctl[0].load(Ordering::Relaxed) != expect {
                    ctl[0].store(expect, Ordering::Release);
                }
                spin.wait();
            }
        }
    });
    let mut tx = q.producer().expect("producer role");
    let mut next = 0u64;
    let mut buf = [0u64; BATCH];
    g.bench_function(
        if batch {
            "ours_spsc_batch"
        } else {
            "ours_spsc"
        },
        |b| {
            b.iter_custom(|iters| {
                timed(iters, |n| {
                    let end = next + n;
                    let mut spin = Spin::new();
                    while next < end {
                        if batch {
                            let k = ((end - next) as usize).min(BATCH);
                            for (j, slot) in buf[..k].iter_mut().enumerate() {
                                *slot = next + j as u64;
                            }
                            let pushed = tx.push_slice(&buf[..k]).expect("push_slice");
                            if pushed == 0 {
                                spin.wait();
                            } else {
                                next += pushed as u64;
                                spin.reset();
                            }
                        } else {
                            match tx.try_push(next) {
                                Ok(()) => {
                                    next += 1;
                                    spin.reset();
                                }
                                Err(PushError::Full(_)) => spin.wait(),
                                Err(e) => panic!("try_push: {e:?}"),
                            }
                        }
                    }
                    spin_until(|| ctl[0].load(Ordering::Acquire) == end);
                })
            })
        },
    );
    ctl[1].store(1, Ordering::Release);
    assert!(child.finish(GRACE), "SpscQueue consumer failed");
}

/// `Queue<u64>` (MPMC) parent -> child, single `try_push`/`try_pop`, order checked.
fn ours_queue_throughput(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = Queue::<u64>::new(RING_CAP).expect("Queue::new");
    let taken = Shared::new(AtomicU64::new(0)).expect("Shared::new");
    let child = Child::fork(|| {
        let mut expect = 0u64;
        loop {
            let v = pop_spin(&q);
            if v == STOP {
                break;
            }
            assert_eq!(v, expect, "Queue: out of order");
            expect += 1;
            taken.store(expect, Ordering::Release);
        }
    });
    let mut next = 0u64;
    g.bench_function("ours_queue", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    push_spin(&q, next);
                    next += 1;
                }
                spin_until(|| taken.load(Ordering::Acquire) == next);
            })
        })
    });
    push_spin(&q, STOP);
    assert!(child.finish(GRACE), "Queue consumer failed");
}

/// Layout of the raw SPSC ring in a shared page: producer index, consumer index and the stop flag
/// on their own cache lines, then the slots.
const RING_TAIL: usize = 0;
const RING_HEAD: usize = CACHE_LINE;
const RING_STOP: usize = 2 * CACHE_LINE;
const RING_SLOTS: usize = 4 * CACHE_LINE;

/// The raw limit for a queue between processes: a single-producer single-consumer ring with
/// cached indices (each side re-reads the other's index only when its cached copy says
/// full/empty), the consumer in a child checking that it sees 0, 1, 2, ... in order.
fn raw_ring(g: &mut BenchmarkGroup<'_, WallTime>) {
    let shm = ShmPages::new(RING_SLOTS + RING_CAP * 8);
    let tail: &AtomicU64 = shm.at(RING_TAIL);
    let head: &AtomicU64 = shm.at(RING_HEAD);
    let stop: &AtomicBool = shm.at(RING_STOP);
    let slot = |i: u64| -> &AtomicU64 { shm.at(RING_SLOTS + (i as usize % RING_CAP) * 8) };
    let child = Child::fork(|| {
        let mut h = 0u64;
        let mut tail_cache = 0u64;
        let mut spin = Spin::new();
        loop {
            if h == tail_cache {
                tail_cache = tail.load(Ordering::Acquire);
                if h == tail_cache {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    spin.wait();
                    continue;
                }
                spin.reset();
            }
            let v = slot(h).load(Ordering::Relaxed);
            assert_eq!(v, h, "raw ring: out of order");
            h += 1;
            head.store(h, Ordering::Release);
        }
    });
    let mut t = 0u64;
    let mut head_cache = 0u64;
    g.bench_function("raw_ring", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    if t - head_cache == RING_CAP as u64 {
                        spin_until(|| {
                            head_cache = head.load(Ordering::Acquire);
                            t - head_cache < RING_CAP as u64
                        });
                    }
                    slot(t).store(t, Ordering::Relaxed);
                    t += 1;
                    tail.store(t, Ordering::Release);
                }
                // Done when the consumer has taken everything.
                spin_until(|| head.load(Ordering::Acquire) == t);
                head_cache = t;
            })
        })
    });
    stop.store(true, Ordering::Release);
    assert!(child.finish(GRACE), "raw ring consumer failed");
}

/// crossbeam's `ArrayQueue` between two threads of one process (what a user would pick within a
/// process; the in-process reference for our queues).
fn crossbeam_array_queue(g: &mut BenchmarkGroup<'_, WallTime>) {
    use crossbeam_queue::ArrayQueue;
    let q = ArrayQueue::<u64>::new(RING_CAP);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut expect = 0u64;
            let mut spin = Spin::new();
            loop {
                match q.pop() {
                    Some(v) => {
                        assert_eq!(v, expect, "crossbeam: out of order");
                        expect += 1;
                        spin.reset();
                    }
                    None if stop.load(Ordering::Relaxed) => break,
                    None => spin.wait(),
                }
            }
        });
        let mut next = 0u64;
        g.bench_function("crossbeam_array_queue", |b| {
            b.iter_custom(|iters| {
                timed(iters, |n| {
                    for _ in 0..n {
                        let mut v = next;
                        let mut spin = Spin::new();
                        while let Err(back) = q.push(v) {
                            v = back;
                            spin.wait();
                        }
                        next += 1;
                    }
                    spin_until(|| q.is_empty());
                })
            })
        });
        stop.store(true, Ordering::Release);
    });
    common::Watchdog::disarm();
}

// ---------------------------------------------------------------------------------------------
// Message throughput by size.

/// Message sizes of the byte-throughput benches.
const MESSAGE_SIZES: [usize; 3] = [64, 4096, 1 << 20];

fn message_bytes(c: &mut Criterion) {
    let mut g = c.benchmark_group("message_bytes");
    for size in MESSAGE_SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        memcpy(&mut g, size);
        raw_copy_ring(&mut g, size);
        ours_channel::<Bytes>(&mut g, "ours_channel", size);
        ours_channel::<Vec<u8>>(&mut g, "ours_channel_vec", size);
        ours_send_bytes(&mut g, size);
        pipe_bytes(&mut g, size);
        ipc_channel_bytes(&mut g, size);
    }
    g.finish();
}

/// The bandwidth limit: one `memcpy` of the message within a process (hot caches).
fn memcpy(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    let src = vec![0x5au8; size];
    let mut dst = vec![0u8; size];
    g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, _| {
        b.iter(|| {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut dst);
        })
    });
}

/// Ring bytes of the `Channel` benches: room for three 1 MiB messages in flight.
const CHANNEL_CAP: usize = 4 << 20;

/// The limit of any channel that copies a message into shared memory and out again: a raw ring
/// of `size`-byte slots (as many bytes in flight as the `Channel` benches), the parent copies
/// each message in with one `copy_from_slice` and the child copies it out with another; a
/// published count on each side and nothing else (no framing, no serialisation, no locks).
/// The two copies run at once on two cores, each reading what the other core just wrote, so
/// this is what the hardware allows for copy in + copy out (`memcpy` is one copy, cache-hot).
fn raw_copy_ring(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    let slots = (CHANNEL_CAP / size).clamp(2, 1 << 16);
    let data_at = 2 * CACHE_LINE;
    let shm = ShmPages::new(data_at + slots * size);
    let sent: &AtomicU64 = shm.at(0);
    let taken: &AtomicU64 = shm.at(CACHE_LINE);
    let slot = |i: u64| -> *mut u8 {
        // SAFETY: `i % slots < slots`, so the slot lies inside the mapping.
        unsafe { shm.ptr().add(data_at + (i as usize % slots) * size) }
    };
    let child = Child::fork(|| {
        let mut out = vec![0u8; size];
        let mut next = 0u64;
        let mut spin = Spin::new();
        loop {
            let upto = sent.load(Ordering::Acquire);
            if upto == u64::MAX {
                break;
            }
            if upto == next {
                spin.wait();
                continue;
            }
            spin.reset();
            // SAFETY: message `next` was published (`sent` > next, Acquire) and its slot is not
            // rewritten before we publish `taken` > next.
            let msg = unsafe { std::slice::from_raw_parts(slot(next), size) };
            out.copy_from_slice(msg);
            std::hint::black_box(&mut out);
            next += 1;
            taken.store(next, Ordering::Release);
        }
    });
    let msg = vec![0x5au8; size];
    let mut next = 0u64;
    g.bench_with_input(BenchmarkId::new("raw_copy_ring", size), &size, |b, _| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    spin_until(|| next - taken.load(Ordering::Acquire) < slots as u64);
                    // SAFETY: the child has taken message `next - slots` (checked above), the
                    // last one in this slot, and reads it again only after we publish `next`.
                    let dst = unsafe { std::slice::from_raw_parts_mut(slot(next), size) };
                    dst.copy_from_slice(&msg);
                    next += 1;
                    sent.store(next, Ordering::Release);
                }
                spin_until(|| taken.load(Ordering::Acquire) == next);
            })
        })
    });
    sent.store(u64::MAX, Ordering::Release);
    assert!(child.finish(GRACE), "raw_copy_ring: child failed");
}

/// A message body for [`ours_channel`]: made from the message bytes, and its length.
trait Message: serde::Serialize + serde::de::DeserializeOwned + Clone {
    fn from_bytes(b: Vec<u8>) -> Self;
    fn len(&self) -> usize;
}

impl Message for Vec<u8> {
    fn from_bytes(b: Vec<u8>) -> Self {
        b
    }
    fn len(&self) -> usize {
        self.len()
    }
}

/// A byte string that serde encodes as one byte slice (`serialize_bytes`: for postcard a length
/// and one copy) rather than as a sequence of `u8` (one call per byte), as `serde_bytes` does.
/// Shared, so that the sender's `clone` per message copies nothing: the bench measures the
/// channel's copy in and copy out only.
#[derive(Clone)]
struct Bytes(std::sync::Arc<[u8]>);

impl Message for Bytes {
    fn from_bytes(b: Vec<u8>) -> Self {
        Bytes(b.into())
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl serde::Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.into()))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// `Channel<M>` parent -> child: the parent sends the messages (blocking `send`), the child
/// receives them (blocking `recv`, checking each length) and publishes how many it took; the
/// clock stops when it has taken them all. A 1-byte message stops the child.
fn ours_channel<M: Message>(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, size: usize) {
    let ch = Channel::<M>::new(CHANNEL_CAP).expect("Channel::new");
    let taken = Shared::new(AtomicU64::new(0)).expect("Shared::new");
    let child = Child::fork(|| {
        let mut count = 0u64;
        loop {
            let m = ch.recv().expect("recv");
            match m.len() {
                1 => break,
                n => assert_eq!(n, size, "Channel: wrong message length"),
            }
            count += 1;
            taken.store(count, Ordering::Release);
        }
    });
    let msg = M::from_bytes(vec![0x5au8; size]);
    let mut sent = 0u64;
    g.bench_with_input(BenchmarkId::new(id, size), &size, |b, _| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    ch.send(msg.clone()).expect("send");
                }
                sent += n;
                spin_until(|| taken.load(Ordering::Acquire) == sent);
            })
        })
    });
    ch.send(M::from_bytes(vec![0])).expect("send stop");
    assert!(child.finish(GRACE), "{id}: Channel consumer failed");
}

/// `Channel::send_bytes` parent -> child, `recv_bytes_into` a reused buffer in the child (no
/// encoding, no allocation per message: Python's `send_bytes`/`recv_bytes_into`); otherwise as
/// [`ours_channel`].
fn ours_send_bytes(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    let ch = Channel::<()>::new(CHANNEL_CAP).expect("Channel::new");
    let taken = Shared::new(AtomicU64::new(0)).expect("Shared::new");
    let child = Child::fork(|| {
        let mut buf = vec![0u8; size.max(1)];
        let mut count = 0u64;
        loop {
            match ch.recv_bytes_into(&mut buf).expect("recv_bytes_into") {
                1 => break,
                n => assert_eq!(n, size, "send_bytes: wrong message length"),
            }
            std::hint::black_box(&mut buf);
            count += 1;
            taken.store(count, Ordering::Release);
        }
    });
    let msg = vec![0x5au8; size];
    let mut sent = 0u64;
    g.bench_with_input(BenchmarkId::new("ours_send_bytes", size), &size, |b, _| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    ch.send_bytes(&msg).expect("send_bytes");
                }
                sent += n;
                spin_until(|| taken.load(Ordering::Acquire) == sent);
            })
        })
    });
    ch.send_bytes(&[0]).expect("send stop");
    assert!(
        child.finish(GRACE),
        "ours_send_bytes: Channel consumer failed"
    );
}

/// A pipe: the parent announces the byte count, writes the messages, and waits for the child's
/// acknowledgement after it has read them all.
fn pipe_bytes(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    let (p2c_r, p2c_w) = pipe();
    let (c2p_r, c2p_w) = pipe();
    let child = Child::fork(|| {
        close(p2c_w);
        close(c2p_r);
        let mut buf = vec![0u8; 1 << 20];
        let mut header = [0u8; 8];
        while read_exact(p2c_r, &mut header) {
            let mut left = u64::from_ne_bytes(header) as usize;
            while left > 0 {
                let k = left.min(buf.len());
                if !read_exact(p2c_r, &mut buf[..k]) {
                    return;
                }
                left -= k;
            }
            if !write_all(c2p_w, &header) {
                return;
            }
        }
    });
    close(p2c_r);
    close(c2p_w);
    let msg = vec![0x5au8; size];
    g.bench_with_input(BenchmarkId::new("pipe", size), &size, |b, _| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                let total = n * size as u64;
                assert!(write_all(p2c_w, &total.to_ne_bytes()));
                for _ in 0..n {
                    assert!(write_all(p2c_w, &msg));
                }
                let mut ack = [0u8; 8];
                assert!(read_exact(c2p_r, &mut ack));
            })
        })
    });
    close(p2c_w);
    close(c2p_r);
    child.finish(GRACE);
}

/// ipc-channel's byte channel (no serialisation): the parent sends the messages then an empty
/// one; the child acknowledges the empty one with the count it received.
fn ipc_channel_bytes(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    use ipc_channel::ipc;
    let (to_child, from_parent) = ipc::bytes_channel().expect("ipc bytes channel");
    let (ack_tx, ack_rx) = ipc::channel::<u64>().expect("ipc channel");
    let child = Child::fork(|| {
        let mut count = 0u64;
        while let Ok(m) = from_parent.recv() {
            match m.len() {
                0 => {
                    if ack_tx.send(count).is_err() {
                        break;
                    }
                    count = 0;
                }
                1 => break, // stop
                _ => count += 1,
            }
        }
    });
    let msg = vec![0x5au8; size];
    g.bench_with_input(BenchmarkId::new("ipc_channel", size), &size, |b, _| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    to_child.send(&msg).expect("send");
                }
                to_child.send(&[]).expect("send");
                let got = ack_rx.recv().expect("ack");
                assert_eq!(got, n, "ipc-channel lost messages");
            })
        })
    });
    let _ = to_child.send(&[0]);
    child.finish(GRACE);
}

// ---------------------------------------------------------------------------------------------
// MPMC scaling: N producers and N consumers.

fn mpmc_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_scaling");
    g.throughput(Throughput::Elements(1));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut n = 1;
    while n <= cpus {
        crossbeam_scaling(&mut g, n);
        ours_scaling(&mut g, n);
        n *= 2;
    }
    g.finish();
}

/// crossbeam `ArrayQueue` with `producers` producer threads and as many consumer threads. One
/// iteration is one item through the queue; the producers share the items of each batch.
fn crossbeam_scaling(g: &mut BenchmarkGroup<'_, WallTime>, producers: usize) {
    use crossbeam_queue::ArrayQueue;
    use std::sync::Barrier;
    let q = ArrayQueue::<u64>::new(RING_CAP);
    let stop = AtomicBool::new(false);
    let popped = AtomicU64::new(0);
    // The batch each producer pushes in the current round (0 = exit).
    let batch = AtomicU64::new(0);
    let start = Barrier::new(producers + 1);
    let end = Barrier::new(producers + 1);
    std::thread::scope(|s| {
        for _ in 0..producers {
            s.spawn(|| {
                let mut spin = Spin::new();
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if q.pop().is_some() {
                        popped.fetch_add(1, Ordering::Relaxed);
                        spin.reset();
                    } else {
                        spin.wait();
                    }
                }
            });
        }
        for _ in 0..producers {
            s.spawn(|| {
                loop {
                    start.wait();
                    let k = batch.load(Ordering::Acquire);
                    if k == 0 {
                        break;
                    }
                    for v in 0..k {
                        let mut v = v;
                        let mut spin = Spin::new();
                        while let Err(back) = q.push(v) {
                            v = back;
                            spin.wait();
                        }
                    }
                    end.wait();
                }
            });
        }
        g.bench_with_input(
            BenchmarkId::new("crossbeam_array_queue", producers),
            &producers,
            |b, _| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(producers as u64).max(1);
                    let total = per * producers as u64;
                    let before = popped.load(Ordering::Acquire);
                    let t = timed(iters, |_| {
                        batch.store(per, Ordering::Release);
                        start.wait();
                        end.wait();
                        spin_until(|| popped.load(Ordering::Acquire) - before == total);
                    });
                    // Report per item actually moved (per >= iters / producers).
                    t.mul_f64(iters as f64 / total as f64)
                })
            },
        );
        batch.store(0, Ordering::Release);
        start.wait();
        stop.store(true, Ordering::Release);
    });
    common::Watchdog::disarm();
}

/// Control words of [`ours_scaling`], each on its own cache line of a shared page.
const SC_GEN: usize = 0;
const SC_BATCH: usize = CACHE_LINE;
const SC_DONE: usize = 2 * CACHE_LINE;
const SC_POPPED: usize = 3 * CACHE_LINE;
const SC_STOP: usize = 4 * CACHE_LINE;

/// `Queue<u64>` with `producers` producer processes and as many consumer processes, all forked
/// children (the same shape as [`crossbeam_scaling`], processes instead of threads). One
/// iteration is one item through the queue.
fn ours_scaling(g: &mut BenchmarkGroup<'_, WallTime>, producers: usize) {
    let q = Queue::<u64>::new(RING_CAP).expect("Queue::new");
    let ctl = ShmPages::new(4096);
    let generation: &AtomicU64 = ctl.at(SC_GEN);
    let batch: &AtomicU64 = ctl.at(SC_BATCH);
    let done: &AtomicU64 = ctl.at(SC_DONE);
    let popped: &AtomicU64 = ctl.at(SC_POPPED);
    let stop: &AtomicBool = ctl.at(SC_STOP);
    let mut children = Vec::new();
    for _ in 0..producers {
        children.push(Child::fork(|| {
            let mut spin = Spin::new();
            loop {
                match q.try_pop() {
                    Ok(_) => {
                        popped.fetch_add(1, Ordering::Relaxed);
                        spin.reset();
                    }
                    Err(PopError::Empty) if stop.load(Ordering::Relaxed) => break,
                    Err(PopError::Empty) => spin.wait(),
                    Err(e) => panic!("try_pop: {e:?}"),
                }
            }
        }));
    }
    for _ in 0..producers {
        children.push(Child::fork(|| {
            let mut seen = 0u64;
            loop {
                let mut spin = Spin::new();
                let now = loop {
                    let v = generation.load(Ordering::Acquire);
                    if v != seen {
                        break v;
                    }
                    spin.wait();
                };
                if now == STOP {
                    break;
                }
                seen = now;
                for v in 0..batch.load(Ordering::Acquire) {
                    push_spin(&q, v);
                }
                done.fetch_add(1, Ordering::AcqRel);
            }
        }));
    }
    let mut round = 0u64;
    g.bench_with_input(
        BenchmarkId::new("ours_queue", producers),
        &producers,
        |b, _| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(producers as u64).max(1);
                let total = per * producers as u64;
                let before = popped.load(Ordering::Acquire);
                let t = timed(iters, |_| {
                    batch.store(per, Ordering::Release);
                    round += 1;
                    generation.store(round, Ordering::Release);
                    spin_until(|| {
                        done.load(Ordering::Acquire) == round * producers as u64
                            && popped.load(Ordering::Acquire) - before == total
                    });
                });
                // Report per item actually moved (per >= iters / producers).
                t.mul_f64(iters as f64 / total as f64)
            })
        },
    );
    generation.store(STOP, Ordering::Release);
    stop.store(true, Ordering::Release);
    for child in children {
        assert!(
            child.finish(GRACE),
            "mpmc_scaling/ours_queue/{producers}: child failed"
        );
    }
}
