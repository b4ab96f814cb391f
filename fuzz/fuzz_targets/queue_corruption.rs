//! Random bytes written over a ring's shared state (header, indices, stamps) between
//! operations: every operation must return a value or an error. A panic, a hang or an
//! out-of-bounds access is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::queue::__fuzz::{Mpmc, Spsc};
use std::time::Duration;

const CAPS: [usize; 5] = [1, 2, 3, 16, 7];
const TICK: Duration = Duration::from_micros(10);

fuzz_target!(|data: &[u8]| {
    let [kind, cap, laps, ops @ ..] = data else {
        return;
    };
    let cap = CAPS[*cap as usize % CAPS.len()];
    if kind % 2 == 0 {
        let q = Mpmc::new(cap, u64::from(*laps % 6));
        let mut it = ops.chunks_exact(3);
        for c in &mut it {
            match c[0] % 8 {
                0 | 1 => q.scribble(usize::from(c[1]) * 7 + usize::from(c[0] >> 3), c[2]),
                2 => drop(q.try_push(u64::from(c[1]))),
                3 => drop(q.try_pop()),
                4 => drop(q.push_timeout(u64::from(c[2]), TICK)),
                5 => drop(q.pop_timeout(TICK)),
                6 => drop((q.len(), q.is_empty(), q.is_full(), q.reattach())),
                _ => q.close(),
            }
        }
    } else {
        let mut q = Spsc::new(cap);
        let mut buf = [0u64; 40];
        for c in ops.chunks_exact(3) {
            let k = usize::from(c[1]) % buf.len();
            match c[0] % 10 {
                0 | 1 => q.scribble(usize::from(c[1]) * 3 + usize::from(c[0] >> 4), c[2]),
                2 if q.has_endpoints() => drop(q.try_push(u64::from(c[1]))),
                3 if q.has_endpoints() => drop(q.push_slice(&buf[..k])),
                4 if q.has_endpoints() => drop(q.try_pop()),
                5 if q.has_endpoints() => drop(q.pop_into(&mut buf[..k])),
                6 if q.has_endpoints() => drop(q.pop_timeout(TICK)),
                7 if q.has_endpoints() => drop(q.push_timeout(1, TICK)),
                8 => drop(q.reclaim()),
                9 => q.close(),
                _ => drop(q.len()),
            }
        }
    }
});
