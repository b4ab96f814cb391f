//! Operation sequences against both rings and a `VecDeque` model: every result must match.
//! Capacities {1, 2, 3, 16, 7}; MPMC positions start 0-5 laps before the 40-bit wrap-around.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::queue::__fuzz::{BatchError, Mpmc, PopError, PushError, Spsc};
use std::collections::VecDeque;
use std::time::Duration;

const CAPS: [usize; 5] = [1, 2, 3, 16, 7];

fuzz_target!(|data: &[u8]| {
    let [kind, cap, laps, ops @ ..] = data else {
        return;
    };
    let cap = CAPS[*cap as usize % CAPS.len()];
    if kind % 2 == 0 {
        mpmc(cap, u64::from(*laps % 6), ops);
    } else {
        spsc(cap, ops);
    }
});

fn mpmc(cap: usize, laps: u64, ops: &[u8]) {
    let q = Mpmc::new(cap, laps);
    let mut model = VecDeque::new();
    let mut closed = false;
    let mut next = 1u64;
    for op in ops {
        match op % 8 {
            0..=2 => {
                let r = if op % 8 == 2 {
                    q.push_timeout(next, Duration::ZERO)
                } else {
                    q.try_push(next)
                };
                match r {
                    Ok(()) => {
                        assert!(!closed && model.len() < cap);
                        model.push_back(next);
                    }
                    Err(PushError::Closed(v)) => assert!(closed && v == next),
                    Err(PushError::Full(v) | PushError::Timeout(v)) => {
                        assert!(!closed && model.len() == cap && v == next)
                    }
                    Err(e) => panic!("{e}"),
                }
                next += 1;
            }
            3..=5 => {
                let r = if op % 8 == 5 {
                    q.pop_timeout(Duration::ZERO)
                } else {
                    q.try_pop()
                };
                match r {
                    Ok(v) => assert_eq!(Some(v), model.pop_front()),
                    Err(PopError::Closed) => assert!(closed && model.is_empty()),
                    Err(PopError::Empty | PopError::Timeout) => {
                        assert!(!closed && model.is_empty())
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            6 => {
                assert_eq!(q.len(), model.len());
                assert_eq!(q.is_empty(), model.is_empty());
                assert_eq!(q.is_full(), model.len() == cap);
            }
            _ => {
                if op % 64 == 7 {
                    q.close();
                    closed = true;
                }
            }
        }
    }
}

fn spsc(cap: usize, ops: &[u8]) {
    let mut q = Spsc::new(cap);
    assert!(q.has_endpoints());
    let mut model = VecDeque::new();
    let mut closed = false;
    let mut next = 1u64;
    let mut buf = vec![0u64; 2 * cap + 1];
    for op in ops {
        let k = (*op as usize >> 3) % (2 * cap + 1);
        match op % 8 {
            0 => match q.try_push(next) {
                Ok(()) => {
                    assert!(!closed && model.len() < cap);
                    model.push_back(next);
                    next += 1;
                }
                Err(PushError::Closed(_)) => assert!(closed),
                Err(PushError::Full(_)) => assert!(!closed && model.len() == cap),
                Err(e) => panic!("{e}"),
            },
            1 => {
                let src: Vec<u64> = (next..next + k as u64).collect();
                match q.push_slice(&src) {
                    Ok(n) => {
                        assert!(!closed);
                        assert_eq!(n, k.min(cap - model.len()));
                        model.extend(&src[..n]);
                        next += n as u64;
                    }
                    Err(BatchError::Closed) => assert!(closed),
                    Err(e) => panic!("{e}"),
                }
            }
            2 => match q.try_pop() {
                Ok(v) => assert_eq!(Some(v), model.pop_front()),
                Err(PopError::Closed) => assert!(closed && model.is_empty()),
                Err(PopError::Empty) => assert!(!closed && model.is_empty()),
                Err(e) => panic!("{e}"),
            },
            3 => match q.pop_into(&mut buf[..k]) {
                Ok(n) => {
                    assert_eq!(n, k.min(model.len()));
                    assert!(n > 0 || k == 0 || !closed);
                    for v in &buf[..n] {
                        assert_eq!(Some(*v), model.pop_front());
                    }
                }
                Err(BatchError::Closed) => assert!(closed && model.is_empty() && k > 0),
                Err(e) => panic!("{e}"),
            },
            4 => assert_eq!(q.len(), model.len()),
            5 => q.reclaim().unwrap(),
            6 => match q.pop_timeout(Duration::ZERO) {
                Ok(v) => assert_eq!(Some(v), model.pop_front()),
                Err(PopError::Closed) => assert!(closed && model.is_empty()),
                Err(PopError::Timeout) => assert!(!closed && model.is_empty()),
                Err(e) => panic!("{e}"),
            },
            _ => {
                if op % 64 == 7 {
                    q.close();
                    closed = true;
                }
            }
        }
    }
}
