//! The sync primitives across real child processes: each test shares one primitive (or a
//! `#[repr(C)]` struct of them) through `Shared<T>` and checks an exact invariant.

mod common;

use common::watchdog;
use multiproc::sync::{Barrier, Condvar, Event, Mutex, ReentrantMutex, RwLock, Semaphore};
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

fn add_many((m, times): (Shared<Mutex<u64>>, u64)) {
    for _ in 0..times {
        // A read-modify-write of a plain u64: only mutual exclusion keeps it exact.
        let mut g = m.lock().unwrap();
        let v = *g;
        *g = v + 1;
    }
}

#[test]
fn mutex_contended_counter_across_four_processes_is_exact() {
    watchdog(60, || {
        let m = Shared::new(Mutex::new(0u64)).unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| Process::spawn(add_many, (m.clone(), 10_000)).unwrap())
            .collect();
        for c in children {
            c.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 40_000);
    });
}

/// A bounded FIFO of `u64`s, protected by the mutex in [`ProdCons`].
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Ring {
    buf: [u64; 8],
    head: u64,
    len: u64,
}

#[repr(C)]
struct ProdCons {
    ring: Mutex<Ring>,
    not_empty: Condvar,
    not_full: Condvar,
}

// SAFETY: `#[repr(C)]` of `ShmSafe` fields (a mutex around plain integers, two condvars); every bit
// pattern of `Ring` is valid (indices are reduced modulo the buffer length on use).
unsafe impl ShmSafe for Ring {}
// SAFETY: as above.
unsafe impl ShmSafe for ProdCons {}

const ITEMS_PER_PRODUCER: u64 = 2_000;

fn produce((pc, base): (Shared<ProdCons>, u64)) {
    for i in 1..=ITEMS_PER_PRODUCER {
        let mut g = pc
            .not_full
            .wait_while(pc.ring.lock().unwrap(), |r| r.len as usize == r.buf.len())
            .unwrap();
        let slot = ((g.head + g.len) % g.buf.len() as u64) as usize;
        g.buf[slot] = base + i;
        g.len += 1;
        drop(g);
        pc.not_empty.notify_one();
    }
}

fn consume((pc, count): (Shared<ProdCons>, u64)) -> u64 {
    let mut sum = 0;
    for _ in 0..count {
        let mut g = pc
            .not_empty
            .wait_while(pc.ring.lock().unwrap(), |r| r.len == 0)
            .unwrap();
        let head = (g.head % g.buf.len() as u64) as usize;
        sum += g.buf[head];
        g.head = (g.head + 1) % g.buf.len() as u64;
        g.len -= 1;
        drop(g);
        pc.not_full.notify_one();
    }
    sum
}

#[test]
fn condvar_producers_and_consumers_across_processes_lose_nothing() {
    watchdog(60, || {
        let pc = Shared::new(ProdCons {
            ring: Mutex::new(Ring::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
        })
        .unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|_| Process::spawn(consume, (pc.clone(), ITEMS_PER_PRODUCER)).unwrap())
            .collect();
        let producers: Vec<_> = [0u64, 1_000_000]
            .into_iter()
            .map(|base| Process::spawn(produce, (pc.clone(), base)).unwrap())
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let total: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        let one = ITEMS_PER_PRODUCER * (ITEMS_PER_PRODUCER + 1) / 2;
        assert_eq!(total, 2 * one + 1_000_000 * ITEMS_PER_PRODUCER);
        assert_eq!(pc.ring.lock().unwrap().len, 0);
    });
}

#[repr(C)]
struct Restaurant {
    seats: Semaphore,
    /// Customers at the door; the parent opens when all are there.
    at_door: AtomicU32,
    open: Event,
    seated: AtomicU32,
    max_seated: AtomicU32,
}

// SAFETY: `#[repr(C)]` of atomics and in-place primitives, all `ShmSafe`.
unsafe impl ShmSafe for Restaurant {}

fn customer(r: Shared<Restaurant>) -> u32 {
    r.at_door.fetch_add(1, Ordering::SeqCst);
    assert!(r.open.wait_timeout(Duration::from_secs(20)));
    let mut most = 0;
    for _ in 0..2 {
        r.seats.acquire();
        let now = r.seated.fetch_add(1, Ordering::SeqCst) + 1;
        r.max_seated.fetch_max(now, Ordering::SeqCst);
        most = most.max(now);
        // Long enough that three customers are seated at once.
        std::thread::sleep(Duration::from_millis(30));
        r.seated.fetch_sub(1, Ordering::SeqCst);
        r.seats.release().unwrap();
    }
    most
}

#[test]
fn semaphore_restaurant_seats_exactly_three_of_eight_processes() {
    watchdog(60, || {
        let r = Shared::new(Restaurant {
            seats: Semaphore::new(3),
            at_door: AtomicU32::new(0),
            open: Event::new(),
            seated: AtomicU32::new(0),
            max_seated: AtomicU32::new(0),
        })
        .unwrap();
        let customers: Vec<_> = (0..8)
            .map(|_| Process::spawn(customer, r.clone()).unwrap())
            .collect();
        while r.at_door.load(Ordering::SeqCst) < 8 {
            std::thread::sleep(Duration::from_millis(1));
        }
        r.open.set();
        let most = customers.into_iter().map(|c| c.join().unwrap()).max();
        assert_eq!(r.max_seated.load(Ordering::SeqCst), 3);
        assert_eq!(most, Some(3));
        assert_eq!(r.seated.load(Ordering::SeqCst), 0);
        assert_eq!(r.seats.value(), 3);
    });
}

const PHASES: usize = 20;
const PARTIES: u32 = 4;

#[repr(C)]
struct Phases {
    barrier: Barrier,
    arrived: AtomicU32,
    leaders: [AtomicU32; PHASES],
}

// SAFETY: `#[repr(C)]` of atomics and a barrier, all `ShmSafe`.
unsafe impl ShmSafe for Phases {}

/// Runs the phases; returns how many times this party saw a phase start before all arrived.
fn party(s: Shared<Phases>) -> u32 {
    let mut early = 0;
    for p in 0..PHASES {
        s.arrived.fetch_add(1, Ordering::SeqCst);
        let i = s.barrier.wait_timeout(Duration::from_secs(20)).unwrap();
        assert!(i < PARTIES as usize);
        if i == 0 {
            s.leaders[p].fetch_add(1, Ordering::SeqCst);
        }
        if s.arrived.load(Ordering::SeqCst) < PARTIES * (p as u32 + 1) {
            early += 1;
        }
        // A second wait so nobody arrives for phase p + 1 before everyone checked phase p.
        s.barrier.wait_timeout(Duration::from_secs(20)).unwrap();
    }
    early
}

#[test]
fn barrier_phases_across_four_processes_have_one_leader_each() {
    watchdog(60, || {
        let s = Shared::new(Phases {
            barrier: Barrier::new(PARTIES).unwrap(),
            arrived: AtomicU32::new(0),
            leaders: std::array::from_fn(|_| AtomicU32::new(0)),
        })
        .unwrap();
        let parties: Vec<_> = (0..PARTIES)
            .map(|_| Process::spawn(party, s.clone()).unwrap())
            .collect();
        let early: u32 = parties.into_iter().map(|p| p.join().unwrap()).sum();
        assert_eq!(early, 0);
        for (p, l) in s.leaders.iter().enumerate() {
            assert_eq!(l.load(Ordering::SeqCst), 1, "phase {p}");
        }
        assert_eq!(s.barrier.n_waiting(), 0);
        assert!(!s.barrier.is_broken());
    });
}

#[repr(C)]
struct Gate {
    event: Event,
    passed_at: AtomicU64,
}

// SAFETY: `#[repr(C)]` of an event and an atomic.
unsafe impl ShmSafe for Gate {}

fn wait_at_gate(g: Shared<Gate>) -> bool {
    let set = g.event.wait_timeout(Duration::from_secs(20));
    g.passed_at.store(common::now_ns(), Ordering::SeqCst);
    set
}

#[test]
fn event_gates_a_child_until_the_parent_sets_it() {
    watchdog(30, || {
        let g = Shared::new(Gate {
            event: Event::new(),
            passed_at: AtomicU64::new(0),
        })
        .unwrap();
        let mut child = Process::spawn(wait_at_gate, g.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        assert!(child.is_alive());
        assert_eq!(
            g.passed_at.load(Ordering::SeqCst),
            0,
            "passed an unset gate"
        );
        let set_at = common::now_ns();
        g.event.set();
        assert!(child.join_timeout(Duration::from_secs(5)).unwrap());
        let passed = g.passed_at.load(Ordering::SeqCst);
        assert!(passed >= set_at, "the child passed before the set");
        eprintln!(
            "event: child passed {} us after set",
            (passed - set_at) / 1000
        );
        // A cleared event gates again.
        g.event.clear();
        g.passed_at.store(0, Ordering::SeqCst);
        let mut child = Process::spawn(wait_at_gate, g.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(g.passed_at.load(Ordering::SeqCst), 0);
        g.event.set();
        assert!(child.join_timeout(Duration::from_secs(5)).unwrap());
    });
}

fn add_recursively((m, times): (Shared<ReentrantMutex<AtomicU64>>, u64)) {
    for _ in 0..times {
        let outer = m.lock().unwrap();
        let inner = m.lock().unwrap();
        // A split read-modify-write: only the lock makes it exact.
        let v = inner.load(Ordering::Relaxed);
        outer.store(v + 1, Ordering::Relaxed);
        drop(outer);
        // Still held through `inner`: another process cannot have changed it.
        assert_eq!(inner.load(Ordering::Relaxed), v + 1);
    }
}

fn hold_reentrant((m, held): (Shared<ReentrantMutex<AtomicU64>>, Shared<Event>)) {
    let _g = m.lock().unwrap();
    let _g2 = m.lock().unwrap();
    held.set();
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn reentrant_mutex_across_processes_is_exclusive_and_owner_only() {
    watchdog(60, || {
        let m = Shared::new(ReentrantMutex::new(AtomicU64::new(0))).unwrap();
        let children: Vec<_> = (0..3)
            .map(|_| Process::spawn(add_recursively, (m.clone(), 3_000)).unwrap())
            .collect();
        for c in children {
            c.join().unwrap();
        }
        assert_eq!(m.lock().unwrap().load(Ordering::Relaxed), 9_000);

        // Held (twice) by a child: the parent can neither take nor release it.
        let held = Shared::new(Event::new()).unwrap();
        let child = Process::spawn(hold_reentrant, (m.clone(), held.clone())).unwrap();
        assert!(held.wait_timeout(Duration::from_secs(10)));
        assert!(matches!(
            m.try_lock(),
            Err(multiproc::sync::LockError::WouldBlock)
        ));
        let t = Instant::now();
        assert!(m.lock_timeout(Duration::from_secs(5)).is_ok());
        child.join().unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    });
}

#[repr(C)]
struct Table {
    /// Writers keep both halves equal.
    pair: RwLock<[u64; 2]>,
    writers_done: AtomicU32,
}

// SAFETY: `#[repr(C)]` of an rwlock around plain integers and an atomic.
unsafe impl ShmSafe for Table {}

fn write_pairs((t, times): (Shared<Table>, u64)) {
    for _ in 0..times {
        let mut g = t.pair.write().unwrap();
        let v = g[0];
        g[0] = v + 1;
        std::hint::spin_loop();
        g[1] = v + 1;
    }
    t.writers_done.fetch_add(1, Ordering::SeqCst);
}

/// Reads until both writers are done; returns (reads, torn reads).
fn read_pairs(t: Shared<Table>) -> (u64, u64) {
    let (mut reads, mut torn) = (0, 0);
    while t.writers_done.load(Ordering::SeqCst) < 2 || reads < 100 {
        let g = t.pair.read().unwrap();
        reads += 1;
        torn += u64::from(g[0] != g[1]);
    }
    (reads, torn)
}

#[test]
fn rwlock_readers_and_writers_across_processes() {
    watchdog(60, || {
        let t = Shared::new(Table {
            pair: RwLock::new([0, 0]),
            writers_done: AtomicU32::new(0),
        })
        .unwrap();
        let readers: Vec<_> = (0..2)
            .map(|_| Process::spawn(read_pairs, t.clone()).unwrap())
            .collect();
        // Writers finish despite two readers that never stop reading (writer preference).
        let writers: Vec<_> = (0..2)
            .map(|_| Process::spawn(write_pairs, (t.clone(), 3_000)).unwrap())
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        for r in readers {
            let (reads, torn) = r.join().unwrap();
            assert!(reads >= 100);
            assert_eq!(torn, 0);
        }
        assert_eq!(*t.pair.read().unwrap(), [6_000, 6_000]);
    });
}
