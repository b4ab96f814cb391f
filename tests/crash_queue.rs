//! Crash soak for `Queue` (MPMC): random-time SIGKILL of a producer or consumer child.

mod common;

use common::crash::*;
use common::soak::*;
use multiproc::queue::PopError;
use multiproc::{Process, Queue, Shared};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

fn mpmc_victim((q, s, produce): (Queue<Msg>, Shared<QSoak>, bool)) {
    s.started.store(1, Ordering::SeqCst);
    let end = Instant::now() + VICTIM_LIFE;
    let mut seq = 0;
    while Instant::now() < end {
        if produce {
            if q.push_timeout(msg(seq), Duration::from_secs(1)).is_ok() {
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
            }
        } else if let Ok(m) = q.pop_timeout(Duration::from_millis(100)) {
            let v = m[0];
            assert_eq!(m[1], !v.rotate_left(17));
            assert_eq!(v, seq);
            seq += 1;
            s.done.store(seq, Ordering::SeqCst);
            s.last.store(v + 1, Ordering::SeqCst);
        }
    }
}

#[test]
fn mpmc_queue_soak_random_kills() {
    soak_watchdog(|| {
        let mut lost = 0;
        soak("mpmc", 7, |rng, ctx| {
            let q = Queue::<Msg>::new(8).unwrap();
            let s = new_qsoak();
            let victim_produces = rng.below(2) == 0;
            let mut victim =
                Process::spawn(mpmc_victim, (q.clone(), s.clone(), victim_produces)).unwrap();
            let dead = Arc::new(AtomicBool::new(false));
            // The survivor runs on a thread here during and after the victim's life.
            let survivor = {
                let (q, dead, ctx) = (q.clone(), dead.clone(), ctx.to_owned());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    if victim_produces {
                        loop {
                            match q.pop_timeout(Duration::from_millis(20)) {
                                Ok(m) => got.push(check(m, &ctx)),
                                Err(PopError::Timeout) if dead.load(Ordering::SeqCst) => {
                                    return got;
                                }
                                Err(PopError::Timeout) => {}
                                Err(e) => panic!("{ctx}: pop: {e:?}"),
                            }
                        }
                    }
                    for v in 0..STREAM {
                        let t0 = Instant::now();
                        if let Err(e) = q.push_timeout(msg(v), SURVIVE) {
                            panic!("{ctx}: push {v}: {e:?} after {:?}", t0.elapsed());
                        }
                    }
                    got
                })
            };
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            dead.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            let mut got = Vec::new();
            if !victim_produces {
                // Drain while the survivor thread pushes the rest of the stream.
                loop {
                    match q.pop_timeout(SHORT) {
                        Ok(m) => got.push(check(m, ctx)),
                        Err(PopError::Timeout) if survivor.is_finished() => break,
                        Err(PopError::Timeout) => {}
                        Err(e) => panic!("{ctx}: pop: {e:?}"),
                    }
                }
            }
            got.extend(survivor.join().unwrap());
            assert!(
                t0.elapsed() < SURVIVE + SURVIVE,
                "{ctx}: took {:?}",
                t0.elapsed()
            );
            lost += u64::from(check_stream(&got, &s, victim_produces, ctx));
            // Still a working queue.
            q.push_timeout(msg(7), SURVIVE).unwrap();
            assert_eq!(
                q.pop_timeout(SURVIVE).map(|m| check(m, ctx)),
                Ok(7),
                "{ctx}"
            );
        });
        println!("mpmc: {lost} runs: the dead consumer had popped a value it had not yet recorded");
    });
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
