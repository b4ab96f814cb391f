//! Crash soak for `SpscQueue`: random-time SIGKILL of the producer or consumer child.

mod common;

use common::crash::*;
use common::soak::*;
use common::wait_for;
use multiproc::queue::PopError;
use multiproc::{Process, Shared, SpscQueue};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

fn spsc_victim((q, s, produce): (SpscQueue<Msg>, Shared<QSoak>, bool)) {
    let end = Instant::now() + VICTIM_LIFE;
    let mut seq = 0;
    if produce {
        let mut tx = q.producer().unwrap();
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            if tx.push_timeout(msg(seq), Duration::from_secs(1)).is_ok() {
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
            }
        }
    } else {
        let mut rx = q.consumer().unwrap();
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            if let Ok(m) = rx.pop_timeout(Duration::from_millis(100)) {
                let v = m[0];
                assert_eq!(m[1], !v.rotate_left(17));
                assert_eq!(v, seq);
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
                s.last.store(v + 1, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn spsc_queue_soak_random_kills() {
    soak_watchdog(|| {
        let mut lost = 0;
        soak("spsc", 8, |rng, ctx| {
            let q = SpscQueue::<Msg>::new(8).unwrap();
            let s = new_qsoak();
            let victim_produces = rng.below(2) == 0;
            let mut victim =
                Process::spawn(spsc_victim, (q.clone(), s.clone(), victim_produces)).unwrap();
            wait_for("the victim's role", || {
                s.started.load(Ordering::SeqCst) != 0 || !victim.is_alive()
            });
            let dead = Arc::new(AtomicBool::new(false));
            let survivor = {
                let (q, dead, ctx) = (q.clone(), dead.clone(), ctx.to_owned());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    if victim_produces {
                        let mut rx = q.consumer().unwrap();
                        loop {
                            // Read the flag *before* the pop: a pop that times out after the
                            // victim was seen dead proves the ring drained. Read after it (as
                            // this soak once did), the victim could push one more value between
                            // the timeout and its death, and that value was left behind (the
                            // takeover then popped it instead of its own: one failure in ~180).
                            let was_dead = dead.load(Ordering::SeqCst);
                            match rx.pop_timeout(Duration::from_millis(20)) {
                                Ok(m) => got.push(check(m, &ctx)),
                                Err(PopError::Timeout) if was_dead => return got,
                                Err(PopError::Timeout) => {}
                                Err(e) => panic!("{ctx}: pop: {e:?}"),
                            }
                        }
                    }
                    let mut tx = q.producer().unwrap();
                    for v in 0..STREAM {
                        if let Err(e) = tx.push_timeout(msg(v), SURVIVE) {
                            panic!("{ctx}: push {v}: {e:?}");
                        }
                    }
                    got
                })
            };
            kill_after_random_delay(rng, &mut victim, &s.started, ctx);
            dead.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            let mut got = Vec::new();
            // Take over the dead victim's role.
            if victim_produces {
                got = survivor.join().unwrap();
                let mut tx = q.producer().expect("the dead producer's role");
                tx.push_timeout(msg(1 << 40), SURVIVE).unwrap();
                let mut rx = q.consumer().unwrap();
                let last = rx.pop_timeout(SURVIVE).map(|m| check(m, ctx));
                assert_eq!(last, Ok(1 << 40), "{ctx}");
            } else {
                let mut rx = q.consumer().expect("the dead consumer's role");
                loop {
                    // As above: whether the producer finished is read before the pop.
                    let finished = survivor.is_finished();
                    match rx.pop_timeout(SHORT) {
                        Ok(m) => got.push(check(m, ctx)),
                        Err(PopError::Timeout) if finished => break,
                        Err(PopError::Timeout) => {}
                        Err(e) => panic!("{ctx}: pop: {e:?}"),
                    }
                }
                assert!(survivor.join().unwrap().is_empty());
            }
            assert!(
                t0.elapsed() < SURVIVE + SURVIVE,
                "{ctx}: took {:?}",
                t0.elapsed()
            );
            lost += u64::from(check_stream(&got, &s, victim_produces, ctx));
        });
        println!("spsc: {lost} runs: the dead consumer had popped a value it had not yet recorded");
    });
}
