use super::*;
use crate::queue::test_util::StopAt;
use crate::testing::{Rng, watchdog};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CAPS: [usize; 5] = [1, 2, 3, 8, 100];

/// An identity no live process has: a child that has exited and been reaped.
fn dead_identity() -> u64 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    (u64::from(pid) << 32) | 1
}

#[test]
fn single_and_batch_ops_match_a_model() {
    for cap in CAPS {
        let q = HeapSpsc::<u64>::new(cap);
        let r = q.ring();
        let mut p = r.producer().unwrap();
        let mut c = r.consumer().unwrap();
        let mut model = VecDeque::new();
        let mut rng = Rng(cap as u64 + 11);
        let mut next = 0u64;
        for _ in 0..(cap * 50 + 300) {
            match rng.next() % 4 {
                0 => match p.try_push(next) {
                    Ok(()) => {
                        model.push_back(next);
                        next += 1;
                    }
                    Err(PushError::Full(_)) => assert_eq!(model.len(), cap),
                    Err(e) => panic!("{e}"),
                },
                1 => {
                    let k = (rng.next() % (2 * cap as u64 + 2)) as usize;
                    let src: Vec<u64> = (next..next + k as u64).collect();
                    let n = p.push_slice(&src).unwrap();
                    assert_eq!(n, k.min(cap - model.len()));
                    model.extend(&src[..n]);
                    next += n as u64;
                }
                2 => match c.try_pop() {
                    Ok(v) => assert_eq!(Some(v), model.pop_front()),
                    Err(PopError::Empty) => assert!(model.is_empty()),
                    Err(e) => panic!("{e}"),
                },
                _ => {
                    let mut dst = vec![0; (rng.next() % (2 * cap as u64 + 2)) as usize];
                    let n = c.pop_into(&mut dst).unwrap();
                    assert_eq!(n, dst.len().min(model.len()));
                    for v in &dst[..n] {
                        assert_eq!(Some(*v), model.pop_front());
                    }
                }
            }
            assert_eq!(r.len(), model.len());
            assert_eq!(r.is_full(), model.len() == cap);
        }
    }
}

#[test]
fn roles_are_exclusive_and_reclaimable() {
    let q = HeapSpsc::<u32>::new(4);
    let r = q.ring();
    let p = r.producer().unwrap();
    assert_eq!(r.producer().err(), Some(RoleError::Taken));
    let c = r.consumer().unwrap();
    assert_eq!(r.consumer().err(), Some(RoleError::Taken));
    drop(p);
    let mut p = r.producer().unwrap();
    p.try_push(7).unwrap();
    drop(c);
    // A holder that died is replaced; the new consumer resumes from the shared head.
    let dead = dead_identity();
    let old = r.hdr.roles.consumer.swap(dead, Ordering::SeqCst);
    assert_eq!(old, NO_HOLDER);
    let mut c = r.consumer().unwrap();
    assert_eq!(c.try_pop(), Ok(7));
    // A live holder (this process, another handle) is not.
    drop(p);
    let live = OsEnv.process_identity();
    r.hdr.roles.producer.store(live, Ordering::SeqCst);
    assert_eq!(r.producer().err(), Some(RoleError::Taken));
}

#[test]
fn stream_between_threads_in_order() {
    for cap in [1, 3, 64] {
        watchdog(60, move || {
            const N: u64 = 200_000;
            let q = Arc::new(HeapSpsc::<u64>::new(cap));
            let q2 = q.clone();
            let producer = std::thread::spawn(move || {
                let r = q2.ring();
                let mut p = r.producer().unwrap();
                let mut i = 0;
                while i < N {
                    if i % 3 == 0 {
                        p.push_in(i, Wait::Until(None)).unwrap();
                        i += 1;
                    } else {
                        let src: Vec<u64> = (i..(i + 7).min(N)).collect();
                        let n = p.push_slice(&src).unwrap();
                        if n == 0 {
                            // Full: block for one value instead of spinning.
                            p.push_in(i, Wait::Until(None)).unwrap();
                            i += 1;
                        }
                        i += n as u64;
                    }
                }
                r.close();
            });
            let r = q.ring();
            let mut c = r.consumer().unwrap();
            let mut want = 0;
            let mut buf = [0u64; 5];
            loop {
                if want % 2 == 0 {
                    match c.pop_in(Wait::Until(None)) {
                        Ok(v) => {
                            assert_eq!(v, want);
                            want += 1;
                        }
                        Err(PopError::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    match c.pop_into(&mut buf) {
                        Ok(n) => {
                            for v in &buf[..n] {
                                assert_eq!(*v, want);
                                want += 1;
                            }
                        }
                        Err(BatchError::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            assert_eq!(want, N);
            producer.join().unwrap();
        });
    }
}

#[test]
fn close_wakes_and_timeouts_hold() {
    watchdog(10, || {
        let q = Arc::new(HeapSpsc::<u64>::new(1));
        let q2 = q.clone();
        let popper =
            std::thread::spawn(move || q2.ring().consumer().unwrap().pop_in(Wait::Until(None)));
        std::thread::sleep(Duration::from_millis(30));
        q.ring().close();
        assert_eq!(popper.join().unwrap(), Err(PopError::Closed));

        let q = Arc::new(HeapSpsc::<u64>::new(1));
        let r = q.ring();
        let mut c = r.consumer().unwrap();
        let t = Instant::now();
        assert_eq!(
            c.pop_in(Wait::after(Duration::from_millis(20))),
            Err(PopError::Timeout)
        );
        assert!(
            t.elapsed() >= Duration::from_millis(20) && t.elapsed() < Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
        drop(c);
        let q2 = q.clone();
        let pusher = std::thread::spawn(move || {
            let mut p = q2.ring().producer().unwrap();
            p.push_in(1, Wait::Until(None)).unwrap();
            let t = Instant::now();
            assert_eq!(
                p.push_in(2, Wait::after(Duration::from_millis(20))),
                Err(PushError::Timeout(2))
            );
            assert!(t.elapsed() >= Duration::from_millis(20));
            p.push_in(3, Wait::Until(None))
        });
        std::thread::sleep(Duration::from_millis(60));
        r.close();
        assert_eq!(pusher.join().unwrap(), Err(PushError::Closed(3)));
        let mut c = r.consumer().unwrap();
        assert_eq!(c.pop_in(Wait::Until(None)), Ok(1));
        assert_eq!(c.pop_in(Wait::Until(None)), Err(PopError::Closed));
        assert_eq!(c.pop_into(&mut [0; 2]), Err(BatchError::Closed));
    });
}

/// A consumer killed in `pop_into` before releasing loses nothing; a producer killed in
/// `push_slice` before publishing shows nothing.
#[test]
fn killed_endpoints_lose_only_unpublished_work() {
    let q = HeapSpsc::<u64>::new(8);
    let r = q.ring();
    let mut p = r.producer().unwrap();
    assert_eq!(p.push_slice(&[1, 2, 3]), Ok(3));
    let mut c = r.consumer().unwrap();
    let mut buf = [0; 2];
    assert!(c.pop_into_in(&StopAt(Step::Copied), &mut buf).is_err());
    std::mem::forget(c); // killed: its role stays held...
    r.hdr
        .roles
        .consumer
        .store(dead_identity(), Ordering::SeqCst); // ...by a dead process
    let mut c = r.consumer().unwrap();
    assert!(p.push_slice_in(&StopAt(Step::Copied), &[66, 67]).is_err());
    std::mem::forget(p);
    r.hdr
        .roles
        .producer
        .store(dead_identity(), Ordering::SeqCst);
    let mut p = r.producer().unwrap();
    p.push_in(4, Wait::Until(None)).unwrap();
    let mut got = [0; 8];
    assert_eq!(c.pop_into(&mut got), Ok(4));
    assert_eq!(&got[..4], [1, 2, 3, 4]);
}

#[test]
fn corrupted_state_gives_errors_not_panics() {
    watchdog(60, || {
        let mut corrupted = 0;
        for seed in 1..300u64 {
            let mut rng = Rng(seed);
            let q = HeapSpsc::<u64>::new(CAPS[(seed % 5) as usize]);
            let r = q.ring();
            let (Ok(mut p), Ok(mut c)) = (r.producer(), r.consumer()) else {
                panic!("fresh ring");
            };
            for _ in 0..200 {
                match rng.next() % 7 {
                    0 => {
                        let at = (rng.next() % q.state_len() as u64) as usize;
                        q.region().scribble(at, rng.next() as u8);
                    }
                    1 => {
                        corrupted += p
                            .try_push(1)
                            .is_err_and(|e| matches!(e, PushError::Corrupted(_)))
                            as u32
                    }
                    2 => {
                        corrupted += p
                            .push_slice(&[1, 2, 3])
                            .is_err_and(|e| matches!(e, BatchError::Corrupted(_)))
                            as u32
                    }
                    3 => {
                        corrupted += c
                            .try_pop()
                            .is_err_and(|e| matches!(e, PopError::Corrupted(_)))
                            as u32
                    }
                    4 => {
                        let _ = c.pop_into(&mut [0; 4]);
                    }
                    5 => {
                        let _ = c.pop_in(Wait::after(Duration::from_micros(20)));
                        let _ = p.push_in(2, Wait::after(Duration::from_micros(20)));
                    }
                    _ => {
                        let _ = (r.len(), r.producer().is_ok(), r.consumer().is_ok());
                    }
                }
            }
            // SAFETY: the region is live; attach must validate whatever the header holds now.
            let _ = unsafe { RawSpsc::attach::<u64>(q.region().as_ptr(), q.region().len()) };
        }
        assert!(corrupted > 0, "corruption was never detected");
    });
}
