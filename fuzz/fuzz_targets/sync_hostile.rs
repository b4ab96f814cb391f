//! A hostile writer: random bytes scribbled over the lock words, counters and flags of every
//! sync primitive between operations. Every operation must return (a value, an error, a
//! timeout); a panic, a hang or a fault is a finding. Timeouts are tiny so a garbage state that
//! makes a call wait costs microseconds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::sync::{Barrier, Condvar, Event, LockError, Mutex, RwLock, Semaphore};
use std::time::Duration;

const TICK: Duration = Duration::from_micros(20);

#[repr(C)]
struct Primitives {
    mutex: Mutex<u64>,
    condvar: Condvar,
    semaphore: Semaphore,
    bounded: Semaphore,
    event: Event,
    barrier: Barrier,
    rwlock: RwLock<u64>,
}

fuzz_target!(|data: &[u8]| {
    let p = Box::new(Primitives {
        mutex: Mutex::new(0),
        condvar: Condvar::new(),
        semaphore: Semaphore::new(2),
        bounded: Semaphore::bounded(1),
        event: Event::new(),
        barrier: Barrier::new(2).unwrap(),
        rwlock: RwLock::new(0),
    });
    let base = &*p as *const Primitives as *mut u8;
    for c in data.chunks_exact(3) {
        match c[0] % 12 {
            0 | 1 => {
                let at = (usize::from(c[1]) << 8 | usize::from(c[2])) % size_of::<Primitives>();
                // SAFETY: `at` is inside the boxed struct; this thread is the only one touching
                // it and holds no guard across the write; every field is atomics or Pod, valid for
                // any byte (the point of the exercise).
                unsafe { base.add(at).write_volatile(c[1] ^ c[2]) };
            }
            2 => match p.mutex.lock_timeout(TICK) {
                Ok(mut g) => *g += 1,
                Err(LockError::OwnerDied(mut g)) if c[1] % 2 == 0 => g.make_consistent(),
                Err(_) => {}
            },
            3 => {
                if let Ok(g) = p.mutex.try_lock() {
                    let _ = p.condvar.wait_timeout(g, TICK);
                }
                p.condvar.notify_all();
            }
            4 => drop(p.semaphore.acquire_timeout(TICK).map(|()| p.semaphore.release())),
            5 => drop((p.bounded.release(), p.bounded.try_acquire(), p.semaphore.value())),
            6 => p.event.set(),
            7 => drop((p.event.wait_timeout(TICK), p.event.clear(), p.event.is_set())),
            8 => drop((p.barrier.wait_timeout(TICK), p.barrier.n_waiting(), p.barrier.is_broken())),
            9 => {
                if c[1] % 2 == 0 {
                    p.barrier.reset()
                } else {
                    p.barrier.abort()
                }
            }
            10 => drop(p.rwlock.read_timeout(TICK).map(|g| *g)),
            _ => drop(p.rwlock.write_timeout(TICK).map(|mut g| *g += 1)),
        }
    }
});
