//! A pool whose workers die at every step of their loop, at random (a soak), or whose parent
//! dies: no hang, exactly the held task fails, the pool keeps its size, no worker outlives it.
//!
//! The long soak (>= 1000 kills) is `cargo test --test pool_crash -- --ignored`.

mod common;

use common::{Rng, is_dead, wait_for, watchdog};
use multiproc::crash::{self, CrashAction};
use multiproc::{Error, ExitStatus, Pool, Process, Queue, TaskError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

fn arm((point, nth, kill): (String, u64, bool)) -> u32 {
    let action = if kill {
        CrashAction::Kill
    } else {
        CrashAction::Exit
    };
    crash::arm(&point, nth, action);
    std::process::id()
}

fn slow_double(x: u64) -> u64 {
    common::spin_us(2000);
    x * 2
}

/// The worker loop's crash points and the hit that comes after the arming task's own.
const POINTS: [(&str, u64, bool); 5] = [
    // (point, nth, whether the death always holds a task)
    ("pool.worker.received", 1, true),
    ("pool.worker.took_task", 1, true),
    ("pool.worker.ran_task", 2, true),
    ("pool.worker.mid_result", 2, true),
    ("pool.worker.sent_result", 2, false),
];

#[test]
fn a_worker_dying_at_each_step_fails_only_what_it_held() {
    watchdog(120, || {
        for kill in [true, false] {
            for (point, nth, holds) in POINTS {
                let pool = Pool::builder().processes(2).chunksize(1).build().unwrap();
                let armed = pool
                    .apply(arm, (point.to_owned(), nth, kill))
                    .unwrap_or_else(|e| panic!("arming {point}: {e}"));
                let results: Vec<_> = pool.imap(slow_double, 0..40u64).collect();
                let expected = if kill {
                    ExitStatus::Signaled(libc::SIGKILL)
                } else {
                    ExitStatus::Exited(77)
                };
                let mut failed = 0;
                for (i, r) in results.iter().enumerate() {
                    match r {
                        Ok(v) => assert_eq!(*v, 2 * i as u64),
                        Err(TaskError::WorkerDied(s)) => {
                            assert_eq!(*s, expected, "{point}");
                            failed += 1;
                        }
                        Err(e) => panic!("{point}: task {i}: {e}"),
                    }
                }
                if holds {
                    assert_eq!(failed, 1, "{point} (kill: {kill}): one task held");
                } else {
                    assert!(failed <= 1, "{point} (kill: {kill}): {failed} failed");
                }
                wait_for("a replacement", || {
                    let pids = pool.pids();
                    pids.len() == 2 && !pids.contains(&armed)
                });
                assert!(is_dead(armed), "{point}");
                assert_eq!(pool.apply(slow_double, 5), Ok(10));
            }
        }
    });
}

/// SIGKILLs a random worker of `pool` every few ms until `kills` were sent; checks each pid is
/// still our child first (a reaped worker's pid may be reused).
fn killer(pool: &Pool, kills: u64, sent: &AtomicU64, stop: &AtomicBool, seed: u64) {
    let mut rng = Rng(seed);
    let me = std::process::id();
    while sent.load(Ordering::Relaxed) < kills && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_micros(2000 + rng.below(8000)));
        let pids = pool.pids();
        if pids.is_empty() {
            continue;
        }
        let pid = pids[rng.below(pids.len() as u64) as usize];
        if parent_of(pid) != Some(me) {
            continue;
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
        if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

fn spin_double(x: u64) -> u64 {
    common::spin_us(300);
    x * 2
}

/// Runs an endless `imap` while `kills` SIGKILLs land on random workers; every result is right
/// or `WorkerDied`, no more failures than kills, and the pool ends with its size.
fn soak(kills: u64, seed: u64) {
    let pool = Pool::builder().processes(3).build().unwrap();
    let sent = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| killer(&pool, kills, &sent, &stop, seed));
        let mut failed = 0u64;
        let mut done = 0u64;
        for (i, r) in pool.imap(spin_double, 0u64..).enumerate() {
            match r {
                Ok(v) => assert_eq!(v, 2 * i as u64),
                Err(TaskError::WorkerDied(_)) => failed += 1,
                Err(e) => panic!("task {i}: {e}"),
            }
            done += 1;
            if sent.load(Ordering::Relaxed) >= kills && done > 200 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let sent = sent.load(Ordering::Relaxed);
        assert!(failed <= sent, "{failed} failures for {sent} kills");
        eprintln!("soak: {done} tasks, {sent} kills, {failed} tasks failed");
    });
    // The last kill may land after the loop stopped: wait until every worker the pool lists is
    // alive (a killed one replaced), or the check below would hit that worker's death.
    // A SIGKILL takes effect shortly after kill() returns: let it land first.
    std::thread::sleep(Duration::from_millis(50));
    wait_for("the pool's size, all alive", || {
        let pids = pool.pids();
        pids.len() == 3 && pids.iter().all(|&p| !is_dead(p))
    });
    assert_eq!(pool.map(spin_double, 0..30u64).unwrap()[29], 58);
}

/// Short tasks (answered while their caller still reads the sockets itself) and tasks longer
/// than that window (answered through the supervisor thread), by the input's low bits.
fn mixed_double(x: u64) -> u64 {
    if x % 4 == 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    x * 2
}

#[test]
fn callers_on_many_threads_share_the_socket_reading_with_the_supervisor() {
    // Four threads call `apply` and `apply_async` at once, so callers reading replies
    // themselves and the supervisor reading them interleave, while SIGKILLs land on workers:
    // every reply reaches its own caller, right, or fails with `WorkerDied`.
    watchdog(120, || {
        let pool = Pool::builder().processes(2).build().unwrap();
        let (sent, stop) = (AtomicU64::new(0), AtomicBool::new(false));
        let failed = AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| killer(&pool, 20, &sent, &stop, 0xca11));
            let callers: Vec<_> = (0..4u64)
                .map(|t| {
                    let (pool, failed) = (&pool, &failed);
                    s.spawn(move || {
                        for i in 0..150u64 {
                            let x = t * 1000 + i;
                            let got = if i % 2 == 0 {
                                pool.apply(mixed_double, x)
                            } else {
                                pool.apply_async(mixed_double, x).get()
                            };
                            match got {
                                Ok(v) => assert_eq!(v, 2 * x),
                                Err(TaskError::WorkerDied(_)) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => panic!("task {x}: {e}"),
                            }
                        }
                    })
                })
                .collect();
            for c in callers {
                c.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        let (sent, failed) = (sent.into_inner(), failed.into_inner());
        assert!(failed <= sent, "{failed} failures for {sent} kills");
        eprintln!("600 calls on 4 threads, {sent} kills, {failed} tasks failed");
    });
}

#[test]
fn random_kills_during_a_long_imap() {
    watchdog(120, || soak(30, 0x5eed));
}

#[test]
#[ignore = "long soak: cargo test --test pool_crash -- --ignored"]
fn random_kills_soak_1000() {
    watchdog(1800, || soak(1000, 0xdead_beef));
}

fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A pool's parent: reports its workers' pids, then blocks in a long `map`. With `group`, it
/// first becomes a process group leader (its workers join the group), as a shell's
/// foreground job is.
/// A parent blocked in a long `map`. With `quiet_log`, it leads its own process group and takes
/// SIGINT's default action (as a shell's foreground job does: a test run started in the background
/// by a non-interactive shell inherits SIGINT ignored) and sends its and its workers' stderr to
/// that file. (Their stdout carries the test harness's own "running 1 test" lines, printed before
/// `init` takes over.)
fn pool_parent((pids, quiet_log): (Queue<u32>, Option<String>)) {
    if let Some(path) = quiet_log {
        let log = std::fs::File::create(path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setpgid on ourselves, restoring SIGINT's default action (no handler runs) and
        // dup2 of a file we own onto stderr have no memory-safety preconditions; `log` stays
        // open until dup2 has copied it.
        unsafe {
            libc::setpgid(0, 0);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::dup2(log.as_raw_fd(), 2);
        }
    }
    let pool = Pool::new(2).unwrap();
    for p in pool.pids() {
        pids.push(p).unwrap();
    }
    let _ = pool.map(sleepy, vec![60_000u64; 4]);
}

fn workers_of(parent: Process<()>, pids: &Queue<u32>) -> (Process<()>, Vec<u32>) {
    let workers = (0..2)
        .map(|_| pids.pop_timeout(Duration::from_secs(20)).unwrap())
        .collect();
    (parent, workers)
}

/// SIGKILLs the pool's parent and asserts that every worker is dead within 1 s.
fn kill_and_check_workers_follow(parent: Process<()>, workers: &[u32]) {
    std::thread::sleep(Duration::from_millis(100));
    parent.kill().unwrap();
    let killed = Instant::now();
    assert!(matches!(parent.join(), Err(Error::ChildSignaled { .. })));
    while !workers.iter().all(|&p| is_dead(p)) {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "workers outlived their parent by 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn workers_exit_within_a_second_of_their_parent_being_killed() {
    watchdog(60, || {
        let pids = Queue::<u32>::new(8).unwrap();
        let parent = Process::spawn(pool_parent, (pids.clone(), None)).unwrap();
        let (parent, workers) = workers_of(parent, &pids);
        kill_and_check_workers_follow(parent, &workers);
    });
}

/// Like [`pool_parent`], after one worker was killed and replaced: the replacement is started
/// by the pool's supervisor thread and tied to it (`PR_SET_PDEATHSIG`), not a daemon.
fn pool_parent_with_a_replacement(pids: Queue<u32>) {
    let pool = Pool::new(2).unwrap();
    let first = pool.pids();
    // SAFETY: kill has no memory-safety preconditions; the pid is our own worker's.
    unsafe { libc::kill(first[0] as i32, libc::SIGKILL) };
    let started = Instant::now();
    while !pool.pids().iter().any(|p| !first.contains(p)) || pool.pids().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no replacement"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for p in pool.pids() {
        pids.push(p).unwrap();
    }
    let _ = pool.map(sleepy, vec![60_000u64; 4]);
}

#[test]
fn a_replacement_worker_exits_within_a_second_of_its_parent_being_killed() {
    watchdog(60, || {
        let pids = Queue::<u32>::new(8).unwrap();
        let parent = Process::spawn(pool_parent_with_a_replacement, pids.clone()).unwrap();
        let (parent, workers) = workers_of(parent, &pids);
        kill_and_check_workers_follow(parent, &workers);
    });
}

#[test]
fn ctrl_c_ends_a_blocked_map_and_every_worker() {
    watchdog(60, || {
        let pids = Queue::<u32>::new(8).unwrap();
        let log = std::env::temp_dir().join(format!("multiproc-ctrl-c-{}.log", std::process::id()));
        let quiet_log = Some(log.to_string_lossy().into_owned());
        let parent = Process::spawn(pool_parent, (pids.clone(), quiet_log)).unwrap();
        let (parent, workers) = workers_of(parent, &pids);
        std::thread::sleep(Duration::from_millis(100));
        // What the terminal does on Ctrl-C: SIGINT to the foreground process group.
        // SAFETY: kill has no memory-safety preconditions; the group is our child's.
        let sent = unsafe { libc::kill(-(parent.pid() as i32), libc::SIGINT) };
        assert_eq!(sent, 0);
        let sent = Instant::now();
        match parent.join() {
            Err(Error::ChildSignaled { signal }) => assert_eq!(signal, libc::SIGINT),
            other => panic!("expected death by SIGINT, got {other:?}"),
        }
        wait_for("the workers to end", || workers.iter().all(|&p| is_dead(p)));
        assert!(sent.elapsed() < Duration::from_secs(2));
        // Nobody complained: no panic message, no broken-pipe noise from the workers.
        let printed = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert!(printed.is_empty(), "Ctrl-C made noise: {printed:?}");
    });
}
