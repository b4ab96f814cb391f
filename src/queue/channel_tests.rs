use super::*;
use crate::queue::Channel;
use crate::testing::watchdog;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn fifo_against_a_model_with_many_wraps_and_sizes() {
    watchdog(30, || {
        for cap in [16usize, 24, 64, 100, 1000] {
            let ch = Channel::<Vec<u8>>::new(cap).unwrap();
            let max = ch.max_message_len();
            let mut model = VecDeque::new();
            let mut seed = 0x9e37_79b9_7f4a_7c15 ^ cap as u64;
            for i in 0..5000u32 {
                if rng(&mut seed) % 2 == 0 {
                    let len = (rng(&mut seed) % (max as u64 + 4)) as usize;
                    let msg: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                    match ch.try_send(msg.clone()) {
                        Ok(()) => model.push_back(msg),
                        Err(SendError::Full(back)) => assert_eq!(back, msg),
                        Err(SendError::TooLarge {
                            value,
                            size,
                            max: m,
                        }) => {
                            assert_eq!(value, msg);
                            assert!(size > m && m == max, "{size} {m}");
                        }
                        Err(e) => panic!("cap {cap}: {e}"),
                    }
                } else {
                    match ch.try_recv() {
                        Ok(got) => assert_eq!(Some(got), model.pop_front(), "cap {cap}"),
                        Err(RecvError::Empty) => assert!(model.is_empty(), "cap {cap}"),
                        Err(e) => panic!("cap {cap}: {e}"),
                    }
                }
                assert_eq!(ch.is_empty(), model.is_empty(), "cap {cap}");
            }
            while let Some(m) = model.pop_front() {
                assert_eq!(ch.try_recv().unwrap(), m);
            }
            assert_eq!(ch.try_recv(), Err(RecvError::Empty));
        }
    });
}

#[test]
fn the_largest_message_fits_and_one_more_byte_is_refused() {
    let ch = Channel::<Vec<u8>>::new(1024).unwrap();
    assert_eq!(ch.capacity(), 1024);
    // postcard: a 2-byte varint length then the bytes.
    let fits = vec![7u8; ch.max_message_len() - 2];
    ch.send(fits.clone()).unwrap();
    assert_eq!(ch.recv().unwrap(), fits);
    // Misaligned start: the big record needs a SKIP and must wait for the ring to drain.
    ch.send(vec![1u8; 3]).unwrap();
    assert!(matches!(ch.try_send(fits.clone()), Err(SendError::Full(_))));
    assert_eq!(ch.recv().unwrap(), vec![1u8; 3]);
    ch.send(fits.clone()).unwrap();
    assert_eq!(ch.recv().unwrap(), fits);
    let too_big = vec![7u8; ch.max_message_len() - 1];
    match ch.send(too_big.clone()) {
        Err(SendError::TooLarge { value, size, max }) => {
            assert_eq!(value, too_big);
            assert_eq!((size, max), (1017, 1016));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timeouts_are_honoured() {
    watchdog(10, || {
        let ch = Channel::<u64>::new(16).unwrap();
        let t = Instant::now();
        assert_eq!(
            ch.recv_timeout(Duration::from_millis(50)),
            Err(RecvError::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
        ch.send(1).unwrap();
        let t = Instant::now();
        assert!(matches!(
            ch.send_timeout(2, Duration::from_millis(50)),
            Err(SendError::Timeout(2))
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(ch.poll(Duration::ZERO));
        assert_eq!(ch.recv().unwrap(), 1);
        assert!(!ch.poll(Duration::from_millis(10)));
    });
}

#[test]
fn close_wakes_blocked_receivers_after_draining() {
    watchdog(10, || {
        let ch = Channel::<String>::new(256).unwrap();
        ch.send("left".into()).unwrap();
        assert_eq!(ch.recv().unwrap(), "left");
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let ch = ch.clone();
                std::thread::spawn(move || ch.recv())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        ch.send("one".into()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        ch.close();
        let mut got: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        got.sort_by_key(|r| r.is_err());
        assert_eq!(got[0], Ok("one".to_string()));
        assert_eq!(&got[1..], &[Err(RecvError::Closed), Err(RecvError::Closed)]);
        assert!(matches!(
            ch.send("late".into()),
            Err(SendError::Closed(s)) if s == "late"
        ));
        assert!(ch.poll(Duration::ZERO), "closed: a receive would not block");
    });
}

#[test]
fn close_wakes_a_blocked_sender() {
    watchdog(10, || {
        let ch = Channel::<u64>::new(16).unwrap();
        ch.send(1).unwrap();
        let c = ch.clone();
        let h = std::thread::spawn(move || c.send(2));
        std::thread::sleep(Duration::from_millis(50));
        ch.close();
        assert!(matches!(h.join().unwrap(), Err(SendError::Closed(2))));
        assert_eq!(ch.recv().unwrap(), 1);
        assert_eq!(ch.recv(), Err(RecvError::Closed));
    });
}

#[test]
fn threads_exchange_every_message_exactly_once() {
    watchdog(60, || {
        let ch = Channel::<(u32, u32, String)>::new(512).unwrap();
        const PER: u32 = 3000;
        let senders: Vec<_> = (0..3u32)
            .map(|p| {
                let ch = ch.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let pad = "x".repeat((i % 37) as usize);
                        ch.send((p, i, pad)).unwrap();
                    }
                })
            })
            .collect();
        let receivers: Vec<_> = (0..3)
            .map(|_| {
                let ch = ch.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok((p, i, pad)) = ch.recv() {
                        assert_eq!(pad.len(), (i % 37) as usize);
                        got.push((p, i));
                    }
                    got
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        ch.close();
        let mut seen = vec![vec![false; PER as usize]; 3];
        for r in receivers {
            let got = r.join().unwrap();
            // Each receiver sees each sender's messages in order.
            let mut last = [None::<u32>; 3];
            for (p, i) in got {
                assert!(last[p as usize] < Some(i));
                last[p as usize] = Some(i);
                assert!(!seen[p as usize][i as usize], "duplicate {p}/{i}");
                seen[p as usize][i as usize] = true;
            }
        }
        assert!(seen.iter().flatten().all(|&s| s), "a message was lost");
    });
}

#[test]
fn corrupted_positions_and_records_are_errors() {
    let ch = Channel::<String>::new(128).unwrap();
    let hdr = ch.ring().hdr;
    ch.send("a".into()).unwrap();
    // Unaligned tail.
    let tail = hdr.send.pos.load(Ordering::Relaxed);
    hdr.send.pos.store(tail + 3, Ordering::Relaxed);
    assert!(matches!(ch.try_recv(), Err(RecvError::Corrupted(_))));
    assert!(matches!(
        ch.try_send("b".into()),
        Err(SendError::Corrupted(_))
    ));
    // Tail too far ahead.
    hdr.send.pos.store(tail + 1024, Ordering::Relaxed);
    assert!(matches!(ch.try_recv(), Err(RecvError::Corrupted(_))));
    hdr.send.pos.store(tail, Ordering::Relaxed);
    // A record word with a huge length.
    // SAFETY: offset 0 holds the record word; no other thread uses the channel.
    unsafe { ch.ring().write_word(0, record_word(u32::MAX)) };
    assert!(matches!(ch.try_recv(), Err(RecvError::Corrupted(_))));
    // A record word with a bad tag.
    // SAFETY: as above.
    unsafe { ch.ring().write_word(0, 0xdead_beef_0000_0001) };
    assert!(matches!(ch.try_recv(), Err(RecvError::Corrupted(_))));
    // A well-framed record whose bytes do not decode (a string of invalid UTF-8): consumed.
    // SAFETY: as above; the record is 8 + 8 bytes.
    unsafe {
        ch.ring().write_word(0, record_word(3));
        ch.ring().bytes(8, 3).copy_from_slice(&[2, 0xff, 0xfe]);
    }
    assert!(matches!(ch.try_recv(), Err(RecvError::Deserialize(_))));
    ch.send("next".into()).unwrap();
    assert_eq!(ch.try_recv().unwrap(), "next");
}

#[test]
fn a_lock_holder_that_died_is_recovered_from() {
    watchdog(10, || {
        let ch = Channel::<u32>::new(64).unwrap();
        ch.send(5).unwrap();
        for side in [0, 1] {
            let c = ch.clone();
            std::thread::spawn(move || {
                let side = if side == 0 {
                    &c.ring().hdr.send
                } else {
                    &c.ring().hdr.recv
                };
                std::mem::forget(side.lock.lock().unwrap());
            })
            .join()
            .unwrap();
        }
        ch.send(6).unwrap();
        assert_eq!(ch.recv().unwrap(), 5);
        assert_eq!(ch.recv().unwrap(), 6);
    });
}

#[test]
fn poll_consumes_a_lone_skip_so_a_waiting_sender_gets_room() {
    watchdog(10, || {
        let ch = Arc::new(Channel::<Vec<u8>>::new(64).unwrap());
        ch.send(vec![0; 20]).unwrap(); // 8 + 24 = 32 bytes
        assert_eq!(ch.recv().unwrap(), vec![0; 20]);
        // Head and tail at 32: a 40-byte record needs a SKIP of 32 and then 40 free bytes.
        let c = Arc::clone(&ch);
        let h = std::thread::spawn(move || c.send(vec![1; 30]));
        let t = Instant::now();
        while !ch.poll(Duration::from_millis(20)) {
            assert!(t.elapsed() < Duration::from_secs(5));
        }
        h.join().unwrap().unwrap();
        assert_eq!(ch.recv().unwrap(), vec![1; 30]);
    });
}
