//! Crash soak for `Channel`: random-time SIGKILL of a sender or receiver child.

mod common;

use common::crash::*;
use common::soak::*;
use multiproc::queue::RecvError;
use multiproc::{Channel, Process, Shared};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

fn channel_victim((ch, s, produce): (Channel<Msg>, Shared<QSoak>, bool)) {
    s.started.store(1, Ordering::SeqCst);
    let end = Instant::now() + VICTIM_LIFE;
    let mut seq = 0;
    while Instant::now() < end {
        if produce {
            if ch.send_timeout(msg(seq), Duration::from_secs(1)).is_ok() {
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
            }
        } else if let Ok(m) = ch.recv_timeout(Duration::from_millis(100)) {
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
fn channel_soak_random_kills() {
    soak_watchdog(|| {
        let mut lost = 0;
        soak("channel", 9, |rng, ctx| {
            // Small: about five records, so senders block and records wrap with SKIPs.
            let ch = Channel::<Msg>::new(128).unwrap();
            let s = new_qsoak();
            let victim_produces = rng.below(2) == 0;
            let mut victim =
                Process::spawn(channel_victim, (ch.clone(), s.clone(), victim_produces)).unwrap();
            let dead = Arc::new(AtomicBool::new(false));
            let survivor = {
                let (ch, dead, ctx) = (ch.clone(), dead.clone(), ctx.to_owned());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    if victim_produces {
                        loop {
                            match ch.recv_timeout(Duration::from_millis(20)) {
                                Ok(m) => got.push(check(m, &ctx)),
                                Err(RecvError::Timeout) if dead.load(Ordering::SeqCst) => {
                                    return got;
                                }
                                Err(RecvError::Timeout) => {}
                                Err(e) => panic!("{ctx}: recv: {e:?}"),
                            }
                        }
                    }
                    for v in 0..STREAM {
                        if let Err(e) = ch.send_timeout(msg(v), SURVIVE) {
                            panic!("{ctx}: send {v}: {e:?}");
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
                loop {
                    match ch.recv_timeout(SHORT) {
                        Ok(m) => got.push(check(m, ctx)),
                        Err(RecvError::Timeout) if survivor.is_finished() => break,
                        Err(RecvError::Timeout) => {}
                        Err(e) => panic!("{ctx}: recv: {e:?}"),
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
            ch.send_timeout(msg(7), SURVIVE).unwrap();
            assert_eq!(
                ch.recv_timeout(SURVIVE).map(|m| check(m, ctx)),
                Ok(7),
                "{ctx}"
            );
        });
        println!(
            "channel: {lost} runs: the dead consumer had popped a value it had not yet recorded"
        );
    });
}
