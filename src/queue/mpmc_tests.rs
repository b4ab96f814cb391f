use super::*;
use crate::queue::test_util::{MpmcOps, StopAt};
use crate::testing::{Rng, watchdog};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

const CAPS: [usize; 5] = [1, 2, 3, 8, 100];

/// FIFO order and full/empty edges over many laps, from position 0 and from near the wrap.
#[test]
fn fifo_over_many_laps_and_the_wrap() {
    for cap in CAPS {
        for laps in [0, 3] {
            let q = HeapMpmc::<u64>::near_wrap(cap, laps);
            let r = q.ring();
            let mut model = VecDeque::new();
            let mut rng = Rng(cap as u64 * 7 + laps + 1);
            let mut next = 0u64;
            for _ in 0..(cap * 40 + 200) {
                if rng.next() % 2 == 0 {
                    match r.try_push(next) {
                        Ok(()) => model.push_back(next),
                        Err(PushError::Full(v)) => {
                            assert_eq!(v, next);
                            assert_eq!(model.len(), cap);
                        }
                        Err(e) => panic!("{e}"),
                    }
                    next += 1;
                } else {
                    match r.try_pop() {
                        Ok(v) => assert_eq!(Some(v), model.pop_front()),
                        Err(PopError::Empty) => assert!(model.is_empty()),
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(r.len(), model.len());
                assert_eq!(r.is_empty(), model.is_empty());
                assert_eq!(r.is_full(), model.len() == cap);
            }
        }
    }
}

#[test]
fn attach_validates_the_header() {
    let q = HeapMpmc::<u64>::new(4);
    let (p, len) = (q.region().as_ptr(), q.region().len());
    // SAFETY: the region is live and initialised; only the claimed type, length or offset is
    // wrong, which attach must refuse.
    unsafe {
        assert!(RawMpmc::attach::<u64>(p, len).is_ok());
        assert!(RawMpmc::attach::<u32>(p, len).is_err());
        assert!(RawMpmc::attach::<[u64; 2]>(p, len).is_err());
        assert!(RawMpmc::attach::<u64>(p, len - 1).is_err());
        assert!(RawMpmc::attach::<u64>(p.add(8), len - 8).is_err());
    }
    q.region().scribble(0, 0xAA); // magic
    // SAFETY: as above.
    assert!(unsafe { RawMpmc::attach::<u64>(p, len) }.is_err());
    assert_eq!(RawMpmc::bytes_for(0, 8, 8), None);
    assert_eq!(RawMpmc::bytes_for(MAX_CAPACITY + 1, 8, 8), None);
    assert_eq!(RawMpmc::bytes_for(usize::MAX / 4, 8, 8), None);
}

#[test]
fn slot_layout_matches_repr_c() {
    assert_eq!(
        layout(1, 8, 8).unwrap().slot_size,
        std::mem::size_of::<Slot<u64>>()
    );
    assert_eq!(
        layout(1, 1, 1).unwrap().slot_size,
        std::mem::size_of::<Slot<u8>>()
    );
    assert_eq!(
        layout(1, 0, 1).unwrap().slot_size,
        std::mem::size_of::<Slot<()>>()
    );
    assert_eq!(
        layout(1, 32, 16).unwrap().slot_size,
        std::mem::size_of::<Slot<[u128; 2]>>()
    );
    assert_eq!(layout(1, 256, 256).unwrap().slot_size, 512);
}

/// 4 producers x 4 consumers, every value exactly once.
#[test]
fn four_by_four_exchange_each_value_once() {
    for cap in CAPS {
        watchdog(60, move || exchange(cap, 4, 4, 25_000, 2));
    }
}

fn exchange(cap: usize, producers: u64, consumers: usize, per: u64, laps: u64) {
    let q = Arc::new(HeapMpmc::<u64>::near_wrap(cap, laps));
    let mut hs = Vec::new();
    for p in 0..producers {
        let q = q.clone();
        hs.push(std::thread::spawn(move || {
            for i in 0..per {
                q.ring().push(p << 32 | i).unwrap();
            }
        }));
    }
    let cs: Vec<_> = (0..consumers)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match q.ring().pop() {
                        Ok(v) => got.push(v),
                        Err(PopError::Closed) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    q.ring().close();
    let mut seen = vec![vec![false; per as usize]; producers as usize];
    let mut total = 0;
    for c in cs {
        let got = c.join().unwrap();
        // Per producer, a consumer sees its values in order.
        let mut last = vec![None; producers as usize];
        for v in got {
            let (p, i) = ((v >> 32) as usize, v & 0xFFFF_FFFF);
            assert!(!seen[p][i as usize], "duplicate {p}:{i}");
            seen[p][i as usize] = true;
            assert!(last[p].is_none_or(|l| l < i), "out of order");
            last[p] = Some(i);
            total += 1;
        }
    }
    assert_eq!(total, producers * per);
}

#[test]
fn close_wakes_blocked_poppers_and_pushers() {
    watchdog(10, || {
        let q = Arc::new(HeapMpmc::<u64>::new(1));
        let poppers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || q.ring().pop())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        q.ring().close();
        for p in poppers {
            assert_eq!(p.join().unwrap(), Err(PopError::Closed));
        }
        let q = Arc::new(HeapMpmc::<u64>::new(1));
        q.ring().push(1).unwrap();
        let pushers: Vec<_> = (0..3)
            .map(|i| {
                let q = q.clone();
                std::thread::spawn(move || q.ring().push(10 + i).unwrap_err().into_inner())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        q.ring().close();
        let mut back: Vec<_> = pushers
            .into_iter()
            .map(|p| p.join().unwrap().unwrap())
            .collect();
        back.sort();
        assert_eq!(back, [10, 11, 12]);
        // Pops drain what was pushed before the close, then report it.
        assert_eq!(q.ring().pop(), Ok(1));
        assert_eq!(q.ring().pop(), Err(PopError::Closed));
        assert_eq!(q.ring().try_push(5), Err(PushError::Closed(5)));
    });
}

#[test]
fn timeouts_are_honoured() {
    watchdog(10, || {
        let q = HeapMpmc::<u64>::new(2);
        let r = q.ring();
        for wait in [Duration::from_millis(1), Duration::from_millis(30)] {
            let t = Instant::now();
            assert_eq!(r.pop_timeout(wait), Err(PopError::Timeout));
            let took = t.elapsed();
            assert!(
                // Tight below; generous above (tests run in parallel on few cores).
                took >= wait && took < wait + Duration::from_secs(5),
                "{took:?}"
            );
        }
        r.push(1).unwrap();
        r.push(2).unwrap();
        let t = Instant::now();
        assert_eq!(
            r.push_timeout(3, Duration::from_millis(20)),
            Err(PushError::Timeout(3))
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(20) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert_eq!(r.try_push(3), Err(PushError::Full(3)));
    });
}

#[test]
fn wake_up_arrives_before_the_timeout() {
    watchdog(10, || {
        let q = Arc::new(HeapMpmc::<u64>::new(1));
        let q2 = q.clone();
        let h = std::thread::spawn(move || q2.ring().pop_timeout(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        q.ring().push(9).unwrap();
        assert_eq!(h.join().unwrap(), Ok(9));
        assert!(t.elapsed() < Duration::from_secs(1));
    });
}

/// A producer thread stops (and exits) at each step of a push; survivors go on, see its value
/// only if it was published (exactly once then), and every acknowledged value arrives exactly
/// once.
#[test]
fn killed_producer_does_not_wedge_survivors() {
    for cap in [1, 2, 3] {
        for step in [Step::Claimed, Step::Copied, Step::Published] {
            watchdog(10, move || {
                let q = Arc::new(HeapMpmc::<u64>::new(cap));
                q.ring().push(1).unwrap_or(());
                let q2 = q.clone();
                let popped = if cap == 1 {
                    Some(q.ring().pop().unwrap())
                } else {
                    None
                };
                std::thread::spawn(move || {
                    assert_eq!(q2.ring().try_push_step(&StopAt(step), 666), Err(None));
                })
                .join()
                .unwrap();
                // The dead thread's slot sits between the consumers and the next value (and,
                // for cap > 1, fills the ring with value 1).
                let q3 = q.clone();
                let published = step == Step::Published;
                let want = if popped.is_some() { 1 } else { 2 } + usize::from(published);
                let consumer = std::thread::spawn(move || {
                    (0..want)
                        .map(|_| q3.ring().pop_timeout(Duration::from_secs(2)).unwrap())
                        .collect::<Vec<u64>>()
                });
                q.ring().push_timeout(2, Duration::from_secs(2)).unwrap();
                let mut got: Vec<u64> = popped.into_iter().collect();
                got.extend(consumer.join().unwrap());
                let expected: &[u64] = if published { &[1, 666, 2] } else { &[1, 2] };
                assert_eq!(got, expected, "cap {cap}, {step:?}");
                assert_eq!(q.ring().try_pop(), Err(PopError::Empty));
                // The ring still works for more laps.
                for i in 0..(3 * cap as u64) {
                    q.ring().push(i).unwrap();
                    assert_eq!(q.ring().pop(), Ok(i));
                }
            });
        }
    }
}

/// A consumer thread stops at each step of a pop; it loses the value it claimed (only that),
/// and producers blocked behind its slot go on.
#[test]
fn killed_consumer_does_not_wedge_survivors() {
    for cap in [1, 2, 3] {
        for step in [Step::Claimed, Step::Advanced, Step::Copied] {
            watchdog(10, move || {
                let q = Arc::new(HeapMpmc::<u64>::new(cap));
                for i in 0..cap as u64 {
                    q.ring().push(i).unwrap();
                }
                let q2 = q.clone();
                std::thread::spawn(move || {
                    assert_eq!(q2.ring().try_pop_step(&StopAt(step)), Err(None));
                })
                .join()
                .unwrap();
                // The ring is full except for the dead consumer's slot: a push reclaims it.
                q.ring().push_timeout(100, Duration::from_secs(2)).unwrap();
                let mut got = Vec::new();
                while let Ok(v) = q.ring().try_pop() {
                    got.push(v);
                }
                let mut want: Vec<u64> = (1..cap as u64).collect();
                want.push(100);
                assert_eq!(got, want);
            });
        }
    }
}

/// Random bytes over the header and stamps between operations: every operation returns a
/// value or an error; nothing panics, hangs or reads out of bounds.
#[test]
fn corrupted_state_gives_errors_not_panics() {
    watchdog(60, || {
        let mut corrupted = 0;
        for seed in 1..400u64 {
            let mut rng = Rng(seed);
            let cap = CAPS[(seed % 5) as usize];
            let q = HeapMpmc::<u64>::near_wrap(cap, seed % 3);
            let offsets = q.state_offsets();
            let r = q.ring();
            for _ in 0..200 {
                match rng.next() % 8 {
                    0 => {
                        for _ in 0..=rng.next() % 4 {
                            let at = offsets[(rng.next() % offsets.len() as u64) as usize];
                            q.region().scribble(at, rng.next() as u8);
                        }
                    }
                    1..=3 => {
                        if let Err(PushError::Corrupted(_)) = r.try_push(rng.next()) {
                            corrupted += 1;
                        }
                    }
                    4 => {
                        let _ = r.push_timeout(1, Duration::from_micros(50));
                    }
                    5 => {
                        let _ = r.pop_timeout(Duration::from_micros(50));
                    }
                    _ => {
                        if let Err(PopError::Corrupted(_)) = r.try_pop() {
                            corrupted += 1;
                        }
                    }
                }
                let _ = r.len();
            }
            // SAFETY: the region is live; attach must validate whatever the header holds now.
            let _ = unsafe { RawMpmc::attach::<u64>(q.region().as_ptr(), q.region().len()) };
        }
        assert!(corrupted > 0, "corruption was never detected");
    });
}
