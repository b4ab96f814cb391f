//! `Pool` across real worker processes: results, errors, laziness, shared handles passed to
//! running workers, timeouts, recycling, and shutdown without zombies or orphans.

mod common;

use common::{is_dead, wait_for, watchdog};
use multiproc::pool::IMap;
use multiproc::sync::Event;
use multiproc::{ExitStatus, Pool, Queue, Shared, TaskError, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

fn double(x: u64) -> u64 {
    x * 2
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn panic_on_odd(x: u64) -> u64 {
    assert!(x % 2 == 0, "odd input {x}");
    x
}

fn bump(v: Value<u64>) -> u64 {
    let mut g = v.lock().unwrap();
    *g += 1;
    *g
}

fn push_pid(q: Queue<u32>) {
    q.push(std::process::id()).unwrap();
}

/// Per-task run counts, and the pid of the worker that ran task 0.
type Hits = Shared<[AtomicU64; 65]>;

/// Task `i`: task 0 waits (at most 30 s) for the gate; each counts its runs in `hits`.
fn gated((gate, hits, i): (Shared<Event>, Option<Hits>, u64)) -> u64 {
    if let Some(h) = &hits {
        h[i as usize].fetch_add(1, Ordering::Relaxed);
    }
    if i == 0 {
        if let Some(h) = &hits {
            h[64].store(u64::from(std::process::id()), Ordering::Release);
        }
        gate.wait_timeout(Duration::from_secs(30));
    }
    i
}

#[test]
fn map_apply_and_starmap_return_in_order() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.pids().len(), 2);
        let out = pool.map(double, 0..1000u64).unwrap();
        assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(pool.apply(double, 21), Ok(42));
        let sums = pool.map(add, vec![(1, 2), (3, 4)]).unwrap();
        assert_eq!(sums, vec![3, 7]);
        assert_eq!(
            pool.map(double, Vec::<u64>::new()).unwrap(),
            Vec::<u64>::new()
        );
        let r = pool.map_async(double, 0..10u64);
        assert_eq!(r.get().unwrap()[9], 18);
        assert_eq!(r.successful(), Some(true));
    });
}

#[test]
fn async_results_wait_and_time_out() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        let slow = pool.apply_async(sleep_ms, 300);
        assert!(!slow.ready());
        assert!(slow.get_timeout(Duration::from_millis(20)).is_none());
        assert!(!slow.wait_timeout(Duration::from_millis(10)));
        assert_eq!(slow.get_timeout(Duration::from_secs(10)), Some(Ok(300)));
        assert!(slow.ready());
        // `get` may be called again.
        assert_eq!(slow.get(), Ok(300));
    });
}

#[test]
fn panics_are_reported_and_the_worker_keeps_serving() {
    watchdog(60, || {
        let pool = Pool::new(1).unwrap();
        let before = pool.pids();
        match pool.apply(panic_on_odd, 3) {
            Err(TaskError::Panicked(m)) => assert!(m.contains("odd input 3"), "{m}"),
            other => panic!("expected a panic, got {other:?}"),
        }
        assert_eq!(pool.apply(panic_on_odd, 4), Ok(4));
        assert_eq!(pool.pids(), before, "a panic must not cost the worker");
        let e = pool.map(panic_on_odd, vec![0, 2, 5, 7]).unwrap_err();
        assert_eq!(e.index, 2);
        assert!(matches!(e.error, TaskError::Panicked(_)));
    });
}

#[test]
fn imap_is_lazy_over_an_endless_input() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        // An endless input: only what is consumed (plus a bounded window) is ever taken.
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = taken.clone();
        let inputs = (0u64..).inspect(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let first: Vec<u64> = pool
            .imap(double, inputs)
            .take(50)
            .map(Result::unwrap)
            .collect();
        assert_eq!(first, (0..50).map(|x| x * 2).collect::<Vec<_>>());
        let n = taken.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n < 50 + 64, "imap took {n} inputs for 50 results");

        // Unordered: every quick task comes back while task 0 waits for the gate, wherever
        // it was queued (some of the first imap's tasks may still be queued ahead of them).
        let gate = Shared::new(Event::new()).unwrap();
        let mut it = pool.imap_unordered(gated, (0..8u64).map(|i| (gate.clone(), None, i)));
        let mut quick: Vec<u64> = (1..8)
            .map(|_| {
                it.next_timeout(Duration::from_secs(20))
                    .unwrap()
                    .unwrap()
                    .unwrap()
            })
            .collect();
        gate.set();
        assert_eq!(it.next(), Some(Ok(0)));
        quick.sort();
        assert_eq!(quick, (1..8).collect::<Vec<_>>());

        let mut it: IMap<'_, u64, u64, _> = pool.imap(sleep_ms, vec![400u64]);
        assert!(matches!(
            it.next_timeout(Duration::from_millis(20)),
            Err(multiproc::Error::Timeout)
        ));
        assert_eq!(
            it.next_timeout(Duration::from_secs(10)).unwrap(),
            Some(Ok(400))
        );
        assert_eq!(it.next_timeout(Duration::from_secs(1)).unwrap(), None);
    });
}

#[test]
fn shared_handles_made_after_start_reach_running_workers() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        // Both objects are created after the workers started: their fds travel over the
        // workers' sockets.
        let counter = Value::new(0u64).unwrap();
        let q = Queue::<u32>::new(64).unwrap();
        let n = pool
            .map(bump, (0..20).map(|_| counter.clone()))
            .unwrap()
            .len();
        assert_eq!(n, 20);
        assert_eq!(counter.get().unwrap(), 20);
        pool.map(push_pid, (0..8).map(|_| q.clone())).unwrap();
        let pids = pool.pids();
        for _ in 0..8 {
            let p = q.pop_timeout(Duration::from_secs(5)).unwrap();
            assert!(pids.contains(&p), "pid {p} is not a worker");
        }
    });
}

#[test]
fn task_timeout_kills_only_the_overdue_task() {
    watchdog(60, || {
        let pool = Pool::builder()
            .processes(2)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let before = pool.pids();
        let slow = pool.apply_async(sleep_ms, 10_000);
        let quick: Vec<_> = (0..10).map(|_| pool.apply_async(sleep_ms, 5)).collect();
        let start = Instant::now();
        assert_eq!(slow.get(), Err(TaskError::Timeout));
        assert!(start.elapsed() < Duration::from_secs(5));
        for q in quick {
            assert_eq!(q.get(), Ok(5));
        }
        wait_for("a replacement worker", || pool.pids().len() == 2);
        let after = pool.pids();
        assert_eq!(
            before.iter().filter(|p| after.contains(p)).count(),
            1,
            "exactly the overdue worker is replaced"
        );
        assert_eq!(pool.apply(double, 4), Ok(8));
    });
}

#[test]
fn max_tasks_per_child_recycles_workers() {
    watchdog(60, || {
        let pool = Pool::builder()
            .processes(1)
            .max_tasks_per_child(2)
            .chunksize(1)
            .build()
            .unwrap();
        let pids = pool.map(pid, 0..6u64).unwrap();
        for w in pids.chunks(2) {
            assert_eq!(w[0], w[1], "a worker serves its 2 tasks: {pids:?}");
        }
        let mut distinct = pids.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{pids:?}");
    });
}

/// Counts the tasks running at once in `running`, keeps the most seen in `most`.
fn overlap((running, most): (Value<u64>, Value<u64>)) {
    let now = {
        let mut r = running.lock().unwrap();
        *r += 1;
        *r
    };
    {
        let mut m = most.lock().unwrap();
        *m = (*m).max(now);
    }
    std::thread::sleep(Duration::from_millis(5));
    *running.lock().unwrap() -= 1;
}

#[test]
fn a_recycled_worker_successor_never_runs_beside_it() {
    watchdog(60, || {
        // Recycling never lets a successor run beside the worker it replaces.
        let pool = Pool::builder()
            .processes(1)
            .max_tasks_per_child(1)
            .chunksize(1)
            .build()
            .unwrap();
        let (running, most) = (Value::new(0u64).unwrap(), Value::new(0u64).unwrap());
        let args = vec![(running.clone(), most.clone()); 8];
        pool.map(overlap, args).unwrap();
        assert_eq!(*most.lock().unwrap(), 1);
        assert!(pool.pids().len() <= 1, "{:?}", pool.pids());
    });
}

fn set_flag(v: Value<u64>) {
    *v.lock().unwrap() += 100;
}

fn read_flag(_: u64) -> u64 {
    INIT_SEEN.load(std::sync::atomic::Ordering::Relaxed)
}

static INIT_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn remember(x: u64) {
    INIT_SEEN.store(x, std::sync::atomic::Ordering::Relaxed);
}

fn failing_init(_: u64) {
    panic!("no database");
}

#[test]
fn initializer_runs_in_every_worker() {
    watchdog(60, || {
        let v = Value::new(0u64).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .initializer(set_flag, v.clone())
            .build()
            .unwrap();
        assert_eq!(pool.map(double, 0..10u64).unwrap().len(), 10);
        wait_for("both initializers", || v.get().unwrap() == 200);
        let pool = Pool::builder()
            .processes(1)
            .initializer(remember, 7)
            .build()
            .unwrap();
        assert_eq!(pool.apply(read_flag, 0), Ok(7));
        let pool = Pool::builder()
            .processes(1)
            .initializer(failing_init, 0)
            .build()
            .unwrap();
        match pool.apply(double, 1) {
            Err(TaskError::InitializerFailed(m)) => assert!(m.contains("no database"), "{m}"),
            other => panic!("expected InitializerFailed, got {other:?}"),
        }
    });
}

#[test]
fn close_join_terminate_and_drop_leave_no_worker() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        let pending: Vec<_> = (0..6).map(|_| pool.apply_async(sleep_ms, 30)).collect();
        pool.close();
        assert_eq!(pool.apply(double, 1), Err(TaskError::Closed));
        let pids = pool.pids();
        pool.join();
        for p in pending {
            assert_eq!(p.get(), Ok(30), "join finishes queued work");
        }
        assert!(pids.iter().all(|&p| is_dead(p)));

        let pool = Pool::new(2).unwrap();
        let slow = pool.apply_async(sleep_ms, 10_000);
        let pids = pool.pids();
        pool.terminate();
        assert_eq!(slow.get(), Err(TaskError::Closed));
        assert!(pids.iter().all(|&p| is_dead(p)));

        let pool = Pool::new(2).unwrap();
        let pids = pool.pids();
        let slow = pool.apply_async(sleep_ms, 10_000);
        drop(pool);
        assert_eq!(slow.get(), Err(TaskError::Closed));
        assert!(pids.iter().all(|&p| is_dead(p)), "drop reaps every worker");
    });
}

/// `Duration::MAX` (or any timeout past what `Instant` can hold) waits as long as it takes
/// instead of panicking on `Instant + Duration` overflow, in every timed wait of the pool and
/// as a task timeout.
#[test]
fn huge_timeouts_wait_instead_of_panicking() {
    watchdog(60, || {
        let pool = Pool::builder()
            .processes(1)
            .task_timeout(Duration::MAX)
            .build()
            .unwrap();
        let r = pool.apply_async(sleep_ms, 50);
        let t = Instant::now();
        assert!(r.wait_timeout(Duration::MAX));
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(r.get_timeout(Duration::MAX), Some(Ok(50)));
        let r = pool.apply_async(sleep_ms, 30);
        assert_eq!(r.get_timeout(Duration::MAX), Some(Ok(30)));
        let mut it = pool.imap(double, 0..3u64);
        assert_eq!(it.next_timeout(Duration::MAX).unwrap(), Some(Ok(0)));
        assert_eq!(it.next_timeout(Duration::MAX).unwrap(), Some(Ok(2)));
        assert_eq!(it.next_timeout(Duration::MAX).unwrap(), Some(Ok(4)));
        assert_eq!(it.next_timeout(Duration::MAX).unwrap(), None);
        // The supervisor survived the huge task timeout: the pool still serves.
        assert_eq!(pool.apply(double, 21), Ok(42));
    });
}

#[test]
fn zero_sizes_are_errors() {
    assert!(Pool::new(0).is_err());
    assert!(Pool::builder().processes(1).chunksize(0).build().is_err());
    assert!(
        Pool::builder()
            .processes(1)
            .max_tasks_per_child(0)
            .build()
            .is_err()
    );
}

#[test]
fn a_killed_worker_fails_its_task_and_is_replaced() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        let victim = pool.apply_async(sleep_ms, 10_000);
        let others: Vec<_> = (0..8).map(|_| pool.apply_async(sleep_ms, 20)).collect();
        // The first task went to the first idle worker; find which one runs it.
        std::thread::sleep(Duration::from_millis(100));
        let pids = pool.pids();
        // Kill both in turn until the victim fails (the other worker only runs 20 ms tasks,
        // which a kill fails too, so count).
        // SAFETY: test-only SIGKILL of our own live child.
        unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
        let mut died = 0;
        let mut ok = 0;
        for o in others {
            match o.get() {
                Ok(20) => ok += 1,
                Err(TaskError::WorkerDied(ExitStatus::Signaled(9))) => died += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        let v = victim.get_timeout(Duration::from_millis(100));
        let victim_died = matches!(v, Some(Err(TaskError::WorkerDied(_))));
        assert_eq!(died + usize::from(victim_died), 1, "exactly one task fails");
        assert_eq!(ok + died, 8);
        wait_for("a replacement worker", || pool.pids().len() == 2);
        assert!(!pool.pids().contains(&pids[0]));
        assert_eq!(pool.apply(double, 2), Ok(4));
    });
}

#[test]
fn an_idle_worker_takes_the_tasks_queued_behind_a_long_one() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        // Many tiny tasks first: workers then hold many chunks each (up to 64).
        assert_eq!(pool.map(double, 0..20_000u64).unwrap().len(), 20_000);
        let gate = Shared::new(Event::new()).unwrap();
        let hits: Hits = Shared::new(std::array::from_fn(|_| AtomicU64::new(0))).unwrap();
        let pending: Vec<_> = (0..64u64)
            .map(|i| pool.apply_async(gated, (gate.clone(), Some(hits.clone()), i)))
            .collect();
        // Task 0 blocks its worker; the 63 others were queued behind it or at the other
        // worker, and all finish while it waits.
        for (i, r) in pending.iter().enumerate().skip(1) {
            let got = r.get_timeout(Duration::from_secs(20));
            assert_eq!(got, Some(Ok(i as u64)), "task {i}");
        }
        wait_for("task 0 to start", || hits[64].load(Ordering::Acquire) != 0);
        let blocked = hits[64].load(Ordering::Acquire) as u32;
        // Its worker dies: exactly task 0 fails, every other task ran exactly once.
        // SAFETY: test-only SIGKILL of our own live child.
        unsafe { libc::kill(blocked as i32, libc::SIGKILL) };
        assert!(matches!(
            pending[0].get_timeout(Duration::from_secs(20)),
            Some(Err(TaskError::WorkerDied(_)))
        ));
        for i in 0..64 {
            assert_eq!(hits[i].load(Ordering::Relaxed), 1, "runs of task {i}");
        }
        wait_for("a replacement worker", || {
            pool.pids().len() == 2 && !pool.pids().contains(&blocked)
        });
        assert_eq!(pool.apply(double, 2), Ok(4));
    });
}

fn fork_then_die(_: ()) {
    // SAFETY: the forked child only calls async-signal-safe functions (sleep, _exit); the worker
    // then kills itself.
    unsafe {
        if libc::fork() == 0 {
            // Holds a copy of the worker's socket, so the pool sees no end of file for 10 s.
            libc::sleep(10);
            libc::_exit(0);
        }
        libc::raise(libc::SIGKILL);
    }
}

#[test]
fn a_dead_worker_is_noticed_even_when_its_socket_stays_open() {
    watchdog(60, || {
        let pool = Pool::new(1).unwrap();
        let start = Instant::now();
        assert_eq!(
            pool.apply(fork_then_die, ()),
            Err(TaskError::WorkerDied(ExitStatus::Signaled(libc::SIGKILL)))
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(pool.apply(double, 3), Ok(6));
    });
}
