//! Arbitrary header bytes and file sizes (smaller than a header, not page-aligned, larger than
//! the bytes given) opened as each typed object: a distinct error or a usable object every time,
//! never a panic, UB or SIGBUS.
//!
//! Input: two length bytes, a mode byte, then either raw segment bytes (even modes) or, for odd
//! modes, patches `(offset, high, xor)` applied to a valid object's bytes, so the fuzzer reaches
//! every header check without first having to guess the magic, version and fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::shm::__fuzz::{open_bytes, valid_bytes};

fuzz_target!(|data: &[u8]| {
    let [a, b, mode, rest @ ..] = data else {
        return;
    };
    // Lengths from 1 byte to a little over two pages, independent of how many bytes we have.
    let any_len = 1 + (usize::from(*a) << 8 | usize::from(*b)) % 9000;
    if mode % 2 == 0 {
        for outcome in open_bytes(rest, any_len) {
            let _ = outcome;
        }
        return;
    }
    let mut bytes = valid_bytes(mode / 2, usize::from(*b));
    if bytes.is_empty() {
        return;
    }
    for patch in rest.chunks_exact(3) {
        // Mostly inside the 256-byte header; with the high bit set anywhere in the object.
        let offset = if patch[1] & 0x80 == 0 {
            usize::from(patch[0])
        } else {
            usize::from(u16::from_le_bytes([patch[0], patch[1] & 0x7f]))
        };
        let len = bytes.len();
        bytes[offset % len] ^= patch[2];
    }
    // The object's own length, or (when `a` says so) any other.
    let len = if *a < 0xc0 { bytes.len() } else { any_len };
    for outcome in open_bytes(&bytes, len) {
        let _ = outcome;
    }
});
