//! Crash soak for `Queue` (MPMC): random-time SIGKILL of a producer or consumer child; the shape is
//! `common::ring`'s, shared by every ring.

mod common;

use common::crash::*;
use common::ring::ring_soak;
use common::soak::Msg;
use multiproc::{Process, Queue};
use std::time::{Duration, Instant};

multiproc::test_support!();

#[test]
fn mpmc_queue_soak_random_kills() {
    ring_soak::<Queue<Msg>>();
}

// ---- JoinableQueue crash-point battery --------------------------------------------------------

use multiproc::JoinableQueue;
use multiproc::crash::{self, CrashAction};

/// Pops the one task, waits for the joiners to sleep, then marks it done with `point` armed: it
/// dies after the count reached 0, before waking the joiners.
fn task_done_victim((q, point, kill): (JoinableQueue<u64>, String, bool)) {
    let v = q.pop().unwrap();
    assert_eq!(v, 7);
    std::thread::sleep(Duration::from_millis(20));
    crash::arm(&point, 1, action_of(kill));
    q.task_done().unwrap();
}

fn joiner(q: JoinableQueue<u64>) -> Outcome {
    q.join();
    Outcome::Ok
}

fn joinable_scene(point: &str, waiters: usize, action: CrashAction) -> bool {
    let q = JoinableQueue::<u64>::new(4).unwrap();
    q.push(7).unwrap();
    let ws: Vec<_> = (0..waiters)
        .map(|_| Process::spawn(joiner, q.clone()).unwrap())
        .collect();
    let v = Process::spawn(
        task_done_victim,
        (q.clone(), point.to_owned(), action == CrashAction::Kill),
    )
    .unwrap();
    // This process joins too, without a timeout: the slices bring it back.
    let t0 = Instant::now();
    q.join();
    let died = victim_died(v, action, point);
    let ctx = format!("{point} ({waiters} waiters, {action:?}, died {died})");
    let codes = join_survivors(ws, Instant::now(), &ctx);
    assert!(codes.iter().all(|&c| c == Outcome::Ok), "{ctx}: {codes:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "{ctx}: {:?}",
        t0.elapsed()
    );
    assert_eq!(q.unfinished_tasks(), 0, "{ctx}");
    // Still usable.
    q.push(8).unwrap();
    assert_eq!(q.pop().unwrap(), 8);
    q.task_done().unwrap();
    q.join_timeout(Duration::from_secs(1)).unwrap();
    died
}

/// Joiners (0, 1, 2 other processes and this one), all without a timeout, return although the
/// worker whose `task_done` emptied the count died before its wake call.
#[test]
fn battery_joinable() {
    multiproc::testing::watchdog(60, || {
        run_point("joinable.task_done.before_wake", joinable_scene);
    });
}
