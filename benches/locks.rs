//! Locks: uncontended lock+unlock, a shared `Value` under its lock, and two processes contending.
//!
//! Groups and ids (the report pairs "ours_*" with the others by group):
//! - `mutex_uncontended`: `std_mutex` (in-process), `pthread_robust` (glibc PROCESS_SHARED +
//!   ROBUST mutex in shared memory), `raw_sync` (its pthread PROCESS_SHARED mutex); ours: `ours`
//!   (a `Shared<sync::Mutex<u64>>`, `*m.lock() += 1`).
//! - `value_lock`: lock, read-modify-write, unlock of a shared u64 (Python's
//!   `with v.get_lock(): v.value += 1`); ours: `ours` (`Value<u64>`).
//! - `mutex_contended_2proc`: two processes increment one counter under the lock (one iteration
//!   = one increment): `pthread_robust`, `raw_sync`, `std_mutex_2threads` (in-process
//!   reference); ours: `ours` (`Shared<sync::Mutex<u64>>`, the child forked after it).
//! - `mutex_scaling/<n>`: n = 1, 2, 4 .. cpus processes increment one counter (lock hand-off as
//!   contention grows): `pthread_robust/<n>`; ours: `ours/<n>`.
//! - `rwlock_read_uncontended`: read lock + load + unlock: `std_rwlock` (in-process
//!   `std::sync::RwLock`); ours: `ours` (a `Shared<sync::RwLock<u64>>`: claims a reader owner
//!   slot, checks the gate, frees the slot).

mod common;

use common::{PthreadRobustMutex, ShmPages};
use criterion::Criterion;
use multiproc::Shared;
use multiproc::sync::Mutex;
use raw_sync::locks::LockInit;
use std::hint::black_box;

fn main() {
    common::bench_main(&[
        mutex_uncontended,
        value_lock,
        mutex_contended_2proc,
        mutex_scaling,
        rwlock_read_uncontended,
    ]);
}

/// Our robust mutex around a u64 counter, in its own anonymous segment (children forked after
/// this share it).
fn new_mutex() -> Shared<Mutex<u64>> {
    Shared::new(Mutex::new(0u64)).expect("Shared::new(Mutex)")
}

/// Offset of the lock in the shared page, and of the counter it protects.
const LOCK_AT: usize = 0;
const DATA_AT: usize = 256;

fn mutex_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_uncontended");
    let ours = new_mutex();
    g.bench_function("ours", |b| {
        b.iter(|| {
            *black_box(&ours).lock().expect("lock") += 1;
        })
    });

    let m = std::sync::Mutex::new(0u64);
    g.bench_function("std_mutex", |b| {
        b.iter(|| {
            *black_box(&m).lock().unwrap() += 1;
        })
    });

    let shm = ShmPages::new(4096);
    let pm = PthreadRobustMutex::init(shm.ptr());
    let data = shm.ptr().wrapping_add(DATA_AT).cast::<u64>();
    g.bench_function("pthread_robust", |b| {
        b.iter(|| {
            pm.lock();
            // SAFETY: `data` is in the mapping and guarded by `pm`, which we hold.
            unsafe { *data += 1 };
            pm.unlock();
        })
    });

    let shm2 = ShmPages::new(4096);
    // SAFETY: the page is fresh, writable and outlives the lock.
    let (rm, _) = unsafe { raw_sync::locks::Mutex::new(shm2.ptr(), shm2.ptr().add(DATA_AT)) }
        .expect("raw_sync mutex");
    g.bench_function("raw_sync", |b| {
        b.iter(|| {
            let guard = rm.lock().expect("raw_sync lock");
            // SAFETY: the guard's data pointer is our u64 in the mapping, guarded by the lock.
            unsafe { *(*guard).cast::<u64>() += 1 };
        })
    });
    g.finish();
}

fn rwlock_read_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("rwlock_read_uncontended");
    let ours = Shared::new(multiproc::sync::RwLock::new(7u64)).expect("Shared::new(RwLock)");
    g.bench_function("ours", |b| {
        b.iter(|| *black_box(&ours).read().expect("read"))
    });
    let std_lock = std::sync::RwLock::new(7u64);
    g.bench_function("std_rwlock", |b| {
        b.iter(|| *black_box(&std_lock).read().unwrap())
    });
    g.finish();
}

fn value_lock(c: &mut Criterion) {
    let mut g = c.benchmark_group("value_lock");
    let v = multiproc::Value::new(0u64).expect("Value::new");
    g.bench_function("ours", |b| {
        b.iter(|| {
            let mut guard = black_box(&v).lock().expect("lock");
            *guard += 1;
        })
    });
    g.finish();
}

fn mutex_contended_2proc(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_contended_2proc");
    let ours = new_mutex();
    common::contended_2proc(
        &mut g,
        "ours",
        || *ours.lock().expect("lock") += 1,
        || *ours.lock().expect("lock"),
    );

    let shm = ShmPages::new(4096);
    let pm = PthreadRobustMutex::init(shm.ptr().wrapping_add(LOCK_AT));
    let data = shm.ptr().wrapping_add(DATA_AT).cast::<u64>();
    common::contended_2proc(
        &mut g,
        "pthread_robust",
        || {
            pm.lock();
            // SAFETY: `data` is in the shared mapping and guarded by `pm`, which we hold.
            unsafe { *data += 1 };
            pm.unlock();
        },
        || {
            pm.lock();
            // SAFETY: as above.
            let v = unsafe { *data };
            pm.unlock();
            v
        },
    );

    let shm2 = ShmPages::new(4096);
    // SAFETY: the page is fresh, writable and outlives the lock (and is shared with the child).
    let (rm, _) = unsafe { raw_sync::locks::Mutex::new(shm2.ptr(), shm2.ptr().add(DATA_AT)) }
        .expect("raw_sync mutex");
    common::contended_2proc(
        &mut g,
        "raw_sync",
        || {
            let guard = rm.lock().expect("raw_sync lock");
            // SAFETY: the guard's data pointer is our u64 in the mapping, guarded by the lock.
            unsafe { *(*guard).cast::<u64>() += 1 };
        },
        || {
            let guard = rm.lock().expect("raw_sync lock");
            // SAFETY: as above.
            unsafe { *(*guard).cast::<u64>() }
        },
    );

    std_mutex_2threads(&mut g);
    g.finish();
}

/// The in-process reference: two threads incrementing a `std::sync::Mutex<u64>`.
fn std_mutex_2threads(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicU64, Ordering};
    let m = std::sync::Mutex::new(0u64);
    let n = AtomicU64::new(0);
    let start = Barrier::new(2);
    let end = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            loop {
                start.wait();
                let k = n.load(Ordering::Acquire);
                if k == u64::MAX {
                    break;
                }
                for _ in 0..k {
                    *m.lock().unwrap() += 1;
                }
                end.wait();
            }
        });
        g.bench_function("std_mutex_2threads", |b| {
            b.iter_custom(|iters| {
                let theirs = iters / 2;
                let before = *m.lock().unwrap();
                let t = common::timed(iters, |iters| {
                    n.store(theirs, Ordering::Release);
                    start.wait();
                    for _ in 0..iters - theirs {
                        *m.lock().unwrap() += 1;
                    }
                    end.wait();
                });
                assert_eq!(*m.lock().unwrap() - before, iters);
                t
            })
        });
        n.store(u64::MAX, Ordering::Release);
        start.wait();
    });
    common::Watchdog::disarm();
}

fn mutex_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_scaling");
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let shm = ShmPages::new(4096);
    let pm = PthreadRobustMutex::init(shm.ptr().wrapping_add(LOCK_AT));
    let data = shm.ptr().wrapping_add(DATA_AT).cast::<u64>();
    let mut procs = 1;
    while procs <= cpus {
        let ours = new_mutex();
        common::contended(
            &mut g,
            "ours",
            Some(procs),
            procs,
            || *ours.lock().expect("lock") += 1,
            || *ours.lock().expect("lock"),
        );
        common::contended(
            &mut g,
            "pthread_robust",
            Some(procs),
            procs,
            || {
                pm.lock();
                // SAFETY: `data` is in the shared mapping and guarded by `pm`, which we hold.
                unsafe { *data += 1 };
                pm.unlock();
            },
            || {
                pm.lock();
                // SAFETY: as above.
                let v = unsafe { *data };
                pm.unlock();
                v
            },
        );
        procs *= 2;
    }
    g.finish();
}
