//! Hostile bytes written over a live heap's metadata and blocks (free lists, counters, the
//! intent record, block headers, holder words, the named-object list), then every heap operation:
//! each is `Ok` or a clear error (`Corrupted`, `HeapFull`, ...), never a panic, UB, a hang or an
//! access outside the mapping.
//!
//! Input: 9-byte chunks: bytes 0-1 pick the word, bytes 1-8 the value, byte 8 also how the value is
//! used (raw, a plausible block offset, a small count, or a bit flip of the word that is there).
//! See `multiproc::heap::__fuzz::hostile`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for outcome in multiproc::heap::__fuzz::hostile(data) {
        let _ = outcome;
    }
});
