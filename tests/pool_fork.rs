//! The pool's fork start method. Alone in its binary, so the harness runs no other test thread
//! that could hold a lock when the pool forks a worker (at build and when replacing one).

use multiproc::{ExitStatus, Pool, TaskError};
use std::time::{Duration, Instant};

fn triple(x: u64) -> u64 {
    x * 3
}

fn die(_: ()) {
    std::process::abort();
}

#[test]
fn fork_workers_serve_die_and_are_replaced() {
    // SAFETY: this test is the only test in its binary, and while the pool lives this thread
    // makes no other use of the launcher (no spawn, join or active_children) and holds no lock
    // a forked worker needs.
    let pool = unsafe { Pool::builder().processes(2).fork() }
        .build()
        .unwrap();
    assert_eq!(pool.map(triple, 0..1000u64).unwrap()[999], 2997);
    let before = pool.pids();
    assert_eq!(
        pool.apply(die, ()),
        Err(TaskError::WorkerDied(ExitStatus::Signaled(libc::SIGABRT)))
    );
    let end = Instant::now() + Duration::from_secs(10);
    while pool.pids().len() < 2 || pool.pids() == before {
        assert!(Instant::now() < end, "no replacement worker");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pool.map(triple, 0..100u64).unwrap()[99], 297);
    let pids = pool.pids();
    // Each worker closed its copies of the pool's other sockets, so `join` (end of file on
    // every socket) lets all of them go.
    pool.join();
    for p in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                stat.contains(") Z")
            }
        );
    }
}
