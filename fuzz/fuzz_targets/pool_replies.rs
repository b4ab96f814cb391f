//! A hostile worker's bytes fed to the pool's reply decoder: frames with any lengths, counts,
//! kinds and payloads are decoded or refused, never a panic, an out-of-bounds read or a huge
//! allocation. Structured inputs also check that encoding replies and decoding them again gives
//! the same replies.
//!
//! Input: a mode byte and an expected reply count byte, then either raw bytes (even modes) or
//! (odd modes) replies to round-trip: each `len` byte, a kind bit, then `len` payload bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::pool::__fuzz::{decode_replies, round_trip};

fuzz_target!(|data: &[u8]| {
    let [mode, expected, rest @ ..] = data else {
        return;
    };
    if mode % 2 == 0 {
        let _ = decode_replies(rest, u32::from(*expected));
        return;
    }
    let mut results = Vec::new();
    let mut bytes = rest;
    while let [len, kind, tail @ ..] = bytes {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        results.push(if kind % 2 == 0 {
            Ok(payload.to_vec())
        } else {
            Err(String::from_utf8_lossy(payload).into_owned())
        });
        bytes = next;
    }
    assert!(round_trip(&results), "replies changed in a round trip");
});
