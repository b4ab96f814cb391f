//! The holders word of a shared heap block: who holds a reference, and how many are in flight.
//!
//! ```text
//! bits 0..48   one bit per process slot holding a reference (a process holds at most one)
//! bits 48..64  references in flight: serialised into a message, not decoded yet
//! ```
//!
//! Every change is one read-modify-write, and the one that leaves the word zero frees the block,
//! so exactly one process frees it. A decoder sets its bit *before* it drops the in-flight
//! reference it adopts, so the word never reads zero while a reference is held or carried.
//! Modelled by `loom_holders` (below) under `--cfg multiproc_loom`.

use crate::loom::sync::atomic::{AtomicU64, Ordering};

/// One reference in flight.
pub(crate) const IN_FLIGHT_ONE: u64 = 1 << 48;

/// Adds a reference in flight (a message was encoded). False, changing nothing, if 65535 are
/// already in flight.
pub(crate) fn send(word: &AtomicU64) -> bool {
    // AcqRel on all of these: a release orders our reads of the payload before a later free by
    // whoever makes the word zero, which acquires them.
    let before = word.fetch_add(IN_FLIGHT_ONE, Ordering::AcqRel);
    if before >> 48 == 0xffff {
        word.fetch_sub(IN_FLIGHT_ONE, Ordering::AcqRel);
        return false;
    }
    true
}

/// A decoder in slot `bit` takes over one reference in flight (`set_bit`: its process does not
/// hold the block yet).
pub(crate) fn adopt(word: &AtomicU64, bit: u32, set_bit: bool) {
    if set_bit {
        word.fetch_or(1 << bit, Ordering::AcqRel);
    }
    word.fetch_sub(IN_FLIGHT_ONE, Ordering::AcqRel);
}

/// Slot `bit` drops its reference. True if the block is now unreferenced: the caller frees it.
pub(crate) fn release(word: &AtomicU64, bit: u32) -> bool {
    let mask = 1 << bit;
    let before = word.fetch_and(!mask, Ordering::AcqRel);
    before & mask != 0 && before & !mask == 0
}

/// Clears the bits of dead slots. True if that left the block unreferenced: the caller frees it.
pub(crate) fn clear_dead(word: &AtomicU64, dead: u64) -> bool {
    let before = word.fetch_and(!dead, Ordering::AcqRel);
    before & dead != 0 && before & !dead == 0
}

#[cfg(all(test, multiproc_loom))]
mod loom_holders {
    use super::*;
    use crate::loom::model;
    use crate::loom::sync::Arc;
    use crate::loom::sync::atomic::AtomicU32;
    use crate::loom::thread;

    /// A sender holding slot 0 sends a reference and drops its own while slot 1 decodes it and
    /// then drops it, and slot 2 (dead) is reclaimed meanwhile: the block is freed exactly once,
    /// and only after the last holder let go.
    #[test]
    fn loom_holders_free_exactly_once() {
        model(|| {
            let word = Arc::new(AtomicU64::new(1 | 1 << 2)); // slots 0 and 2 hold it
            let frees = Arc::new(AtomicU32::new(0));
            assert!(send(&word));
            let receiver = {
                let (word, frees) = (word.clone(), frees.clone());
                thread::spawn(move || {
                    adopt(&word, 1, true);
                    // Holding it: it cannot have been freed.
                    assert_eq!(frees.load(Ordering::Acquire), 0);
                    if release(&word, 1) {
                        frees.fetch_add(1, Ordering::AcqRel);
                    }
                })
            };
            let reclaimer = {
                let (word, frees) = (word.clone(), frees.clone());
                thread::spawn(move || {
                    if clear_dead(&word, 1 << 2) {
                        frees.fetch_add(1, Ordering::AcqRel);
                    }
                })
            };
            if release(&word, 0) {
                frees.fetch_add(1, Ordering::AcqRel);
            }
            receiver.join().unwrap();
            reclaimer.join().unwrap();
            assert_eq!(frees.load(Ordering::Acquire), 1);
            assert_eq!(word.load(Ordering::Acquire), 0);
        });
    }
}
