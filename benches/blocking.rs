//! Blocking primitives across processes: ping-pong round trips that sleep in the kernel, and a
//! 2-process barrier round.
//!
//! Groups and ids (the report pairs "ours_*" with the others by group):
//! - `pingpong_blocking`: one iteration = parent signals child, child signals back. `raw_futex`
//!   (the limit: shared futex word, FUTEX_WAIT/FUTEX_WAKE), `pipe` (8-byte messages),
//!   `posix_sem` (two unnamed process-shared `sem_t`), `raw_sync_event` (raw_sync's
//!   auto-reset Event: pthread mutex + condvar); ours: `ours_event`, `ours_semaphore`.
//! - `barrier_2proc`: one iteration = one round of a 2-party barrier across processes:
//!   `pthread_barrier` (PROCESS_SHARED); ours: `ours`.

mod common;

use common::pingpong::{self, GRACE};
use common::{Child, ShmPages, timed};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use raw_sync::Timeout;
use raw_sync::events::{EventInit, EventState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn main() {
    common::bench_main(&[pingpong_blocking, barrier_2proc]);
}

fn pingpong_blocking(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong_blocking");
    // ours_event: two `Shared<sync::Event>`: parent sets A and waits B (then clears it), child
    // waits A (clears it) and sets B. ours_semaphore: two `Shared<sync::Semaphore>` at 0:
    // parent releases A and acquires B, child acquires A and releases B.
    pingpong::raw_futex(&mut g, "raw_futex");
    pingpong::pipe_u64(&mut g, "pipe");
    posix_sem(&mut g);
    raw_sync_event(&mut g);
    g.finish();
}

/// Offsets in the shared page: stop flag, then two `sem_t`/events on their own cache lines.
const STOP_AT: usize = 0;
const A_AT: usize = 128;
const B_AT: usize = 256;

/// Two unnamed POSIX semaphores (`sem_init(.., pshared = 1, 0)`) in shared memory.
fn posix_sem(g: &mut BenchmarkGroup<'_, WallTime>) {
    let shm = ShmPages::new(4096);
    let stop: &AtomicBool = shm.at(STOP_AT);
    let a = shm.ptr().wrapping_add(A_AT).cast::<libc::sem_t>();
    let b = shm.ptr().wrapping_add(B_AT).cast::<libc::sem_t>();
    // SAFETY: a and b point to distinct, aligned, writable sem_t-sized spots of the mapping.
    unsafe {
        assert_eq!(libc::sem_init(a, 1, 0), 0);
        assert_eq!(libc::sem_init(b, 1, 0), 0);
    }
    let wait = |s: *mut libc::sem_t| {
        // SAFETY: `s` is an initialised process-shared semaphore in the mapping.
        while unsafe { libc::sem_wait(s) } != 0 {}
    };
    // SAFETY: as above.
    let post = |s: *mut libc::sem_t| unsafe {
        libc::sem_post(s);
    };
    common::roundtrip(
        g,
        "posix_sem",
        || {
            loop {
                wait(a);
                if stop.load(Ordering::Acquire) {
                    break;
                }
                post(b);
            }
        },
        || {
            post(a);
            wait(b);
        },
        || {
            stop.store(true, Ordering::Release);
            post(a);
        },
    );
}

/// raw_sync's auto-reset `Event` (pthread mutex + condition variable, process-shared).
fn raw_sync_event(g: &mut BenchmarkGroup<'_, WallTime>) {
    let shm = ShmPages::new(4096);
    let stop: &AtomicBool = shm.at(STOP_AT);
    // SAFETY: distinct, writable spots of a fresh mapping that outlives the events.
    let (a, _) = unsafe { raw_sync::events::Event::new(shm.ptr().add(A_AT), true) }.expect("event");
    // SAFETY: as above (B_AT leaves 128 bytes, enough for raw_sync's event).
    let (b, _) = unsafe { raw_sync::events::Event::new(shm.ptr().add(1024), true) }.expect("event");
    let child = Child::fork(|| {
        loop {
            a.wait(Timeout::Infinite).expect("wait");
            if stop.load(Ordering::Acquire) {
                break;
            }
            b.set(EventState::Signaled).expect("set");
        }
    });
    g.bench_function("raw_sync_event", |bch| {
        bch.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    a.set(EventState::Signaled).expect("set");
                    b.wait(Timeout::Infinite).expect("wait");
                }
            })
        })
    });
    stop.store(true, Ordering::Release);
    a.set(EventState::Signaled).expect("set");
    child.finish(GRACE);
}

fn barrier_2proc(c: &mut Criterion) {
    let mut g = c.benchmark_group("barrier_2proc");
    // ours: `Shared<sync::Barrier>` of 2, parent and child call `wait()` in a loop.
    pthread_barrier(&mut g);
    g.finish();
}

/// A glibc `pthread_barrier_t` of 2 with `PTHREAD_PROCESS_SHARED`. The child waits in a loop;
/// at the end the parent writes the number of its last crossing to `last` and crosses once
/// more: the child leaves after that crossing (and only that one).
fn pthread_barrier(g: &mut BenchmarkGroup<'_, WallTime>) {
    let shm = ShmPages::new(4096);
    let last: &AtomicU64 = shm.at(STOP_AT);
    let bar = shm
        .ptr()
        .wrapping_add(A_AT)
        .cast::<libc::pthread_barrier_t>();
    // SAFETY: `attr` is initialised before use; `bar` is an aligned, writable spot of the mapping.
    unsafe {
        let mut attr: libc::pthread_barrierattr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_barrierattr_init(&mut attr), 0);
        assert_eq!(
            libc::pthread_barrierattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
            0
        );
        assert_eq!(libc::pthread_barrier_init(bar, &attr, 2), 0);
        libc::pthread_barrierattr_destroy(&mut attr);
    }
    let wait = || {
        // SAFETY: `bar` is an initialised process-shared barrier in the mapping.
        unsafe { libc::pthread_barrier_wait(bar) };
    };
    let child = Child::fork(|| {
        let mut crossed = 0u64;
        loop {
            wait();
            crossed += 1;
            // The parent stores `last` before its last crossing, so after that crossing we
            // see it; an earlier crossing may see it too, but then crossed != last.
            if last.load(Ordering::Acquire) == crossed {
                break;
            }
        }
    });
    let mut crossed = 0u64;
    g.bench_function("pthread_barrier", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    wait();
                }
                crossed += n;
            })
        })
    });
    common::Watchdog::arm();
    last.store(crossed + 1, Ordering::Release);
    wait();
    child.finish(GRACE);
}
