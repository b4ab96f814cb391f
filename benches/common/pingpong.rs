//! Cross-process round-trip baselines shared by several bench files: each adds one benchmark
//! (one iteration = one round trip parent -> child -> parent) to the given group.
#![allow(dead_code)]

use super::{
    Child, ShmPages, Spin, close, futex_wait, futex_wake, pipe, read_exact, spin_until, timed,
};
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Grace period for a child to leave after being told to stop.
pub const GRACE: Duration = Duration::from_secs(2);

/// The hardware limit: one cache line bounced between two busy-polling processes. The parent
/// writes an odd sequence number, the child answers with the next even one in the same word.
pub fn raw_atomic(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    busy_ping_pong(g, id, 0);
}

/// The limit of any design with one channel per direction: the same busy ping-pong, but the
/// child answers in another word, two cache lines apart (so adjacent-line prefetch does not pair
/// them), as two queues are.
pub fn raw_atomic_two_lines(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    busy_ping_pong(g, id, 2 * super::CACHE_LINE);
}

/// The parent writes odd sequence numbers to the word at offset 0; the child answers each with
/// the next even number in the word at `answer_at` (0: the same word).
fn busy_ping_pong(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, answer_at: usize) {
    const STOP: u64 = u64::MAX;
    let shm = ShmPages::new(4096);
    let ping: &AtomicU64 = shm.at(0);
    let pong: &AtomicU64 = shm.at(answer_at);
    let child = Child::fork(|| {
        let mut answered = 0u64;
        let mut spin = Spin::new();
        loop {
            let v = ping.load(Ordering::Acquire);
            if v == STOP {
                break;
            }
            if v & 1 == 1 && v != answered {
                answered = v;
                pong.store(v + 1, Ordering::Release);
                spin.reset();
            } else {
                spin.wait();
            }
        }
    });
    let mut seq = 0u64;
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    seq += 1;
                    ping.store(seq, Ordering::Release);
                    seq += 1;
                    spin_until(|| pong.load(Ordering::Acquire) == seq);
                }
            })
        })
    });
    ping.store(STOP, Ordering::Release);
    child.finish(GRACE);
}

/// The blocking limit: one shared futex word (no `FUTEX_PRIVATE_FLAG`); each side stores the
/// next sequence number, wakes the other, and sleeps in `FUTEX_WAIT` until the word changes.
/// No spinning: two wakes and two sleeps per round trip.
pub fn raw_futex(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    const STOP: u32 = u32::MAX;
    let shm = ShmPages::new(4096);
    let word: &AtomicU32 = shm.at(0);
    let child = Child::fork(|| {
        let mut seen = 0;
        loop {
            let v = word.load(Ordering::Acquire);
            if v == STOP {
                break;
            }
            if v == seen {
                futex_wait(word, v);
                continue;
            }
            seen = v + 1;
            word.store(seen, Ordering::Release);
            futex_wake(word, 1);
        }
    });
    let mut seq = 0u32;
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    seq = seq.wrapping_add(1);
                    word.store(seq, Ordering::Release);
                    futex_wake(word, 1);
                    loop {
                        let v = word.load(Ordering::Acquire);
                        if v != seq {
                            break;
                        }
                        futex_wait(word, v);
                    }
                    seq = seq.wrapping_add(1);
                    if seq == STOP - 1 {
                        // Never hand out STOP as a request (2^31 round trips: not in a bench).
                        seq = 0;
                    }
                }
            })
        })
    });
    word.store(STOP, Ordering::Release);
    futex_wake(word, 1);
    child.finish(GRACE);
}

/// Two pipes, 8-byte messages: write a u64, read the echo.
pub fn pipe_u64(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    let (p2c_r, p2c_w) = pipe();
    let (c2p_r, c2p_w) = pipe();
    let child = Child::fork(|| {
        close(p2c_w);
        close(c2p_r);
        let mut buf = [0u8; 8];
        while read_exact(p2c_r, &mut buf) {
            if !super::write_all(c2p_w, &buf) {
                break;
            }
        }
    });
    close(p2c_r);
    close(c2p_w);
    let mut seq = 0u64;
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                let mut buf = [0u8; 8];
                for _ in 0..n {
                    seq += 1;
                    assert!(super::write_all(p2c_w, &seq.to_ne_bytes()));
                    assert!(read_exact(c2p_r, &mut buf));
                    debug_assert_eq!(u64::from_ne_bytes(buf), seq);
                }
            })
        })
    });
    close(p2c_w); // EOF ends the child
    close(c2p_r);
    child.finish(GRACE);
}

/// A Unix stream socket pair, 8-byte messages.
pub fn unix_socket_u64(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    let (mut parent_end, mut child_end) = UnixStream::pair().expect("socketpair");
    let parent_fd = parent_end.as_raw_fd();
    let child = Child::fork(|| {
        close(parent_fd); // so that the parent closing its end is EOF here
        let mut buf = [0u8; 8];
        while child_end.read_exact(&mut buf).is_ok() {
            if child_end.write_all(&buf).is_err() {
                break;
            }
        }
    });
    drop(child_end);
    let mut seq = 0u64;
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                let mut buf = [0u8; 8];
                for _ in 0..n {
                    seq += 1;
                    parent_end.write_all(&seq.to_ne_bytes()).expect("send");
                    parent_end.read_exact(&mut buf).expect("recv");
                }
            })
        })
    });
    drop(parent_end);
    child.finish(GRACE);
}
