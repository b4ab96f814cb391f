//! Arbitrary header bytes and file sizes (smaller than a header, not page-aligned, larger than
//! the bytes given) opened as each typed object: a distinct error or a usable object every time,
//! never a panic, UB or SIGBUS.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, bytes @ ..] = data else {
        return;
    };
    // Lengths from 1 byte to a little over two pages, independent of how many bytes we have.
    let len = 1 + (usize::from(*a) << 8 | usize::from(*b)) % 9000;
    for outcome in multiproc::shm::__fuzz::open_bytes(bytes, len) {
        let _ = outcome;
    }
});
