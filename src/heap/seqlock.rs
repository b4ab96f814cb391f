//! The version word of a seqlock: readers copy shared data out without taking a lock and keep
//! the copy only if no writer ran meanwhile; writers (serialised by a lock of their own) never
//! wait for readers.
//!
//! ```text
//! even   no write in progress
//! odd    a writer is changing the data (or died doing so: the next lock holder ends it)
//! ```
//!
//! Reader: `v = begin()?`, copy and bounds-check, `validate(v)`, and only then deserialize.
//! Writer (holding the data's lock): `write_begin`, change the data, `write_end`. A writer killed
//! in between leaves the word odd: readers stop trusting lock-free reads (they give up after a
//! bounded number of tries and read under the lock, whose `OwnerDied` repair calls `write_end`).
//! A hostile word costs readers that fallback, never a wrong value that validated: any write by a
//! protocol-following writer moves the word. Modelled by `loom_seqlock` (below) under
//! `--cfg multiproc_loom`.

use crate::loom::sync::atomic::{AtomicU64, Ordering, fence};

/// Starts a read: the version to validate against, or `None` while a write is in progress.
pub(crate) fn begin(word: &AtomicU64) -> Option<u64> {
    // Acquire: the data we then read is at least as new as the write that made `v` even.
    let v = word.load(Ordering::Acquire);
    (v & 1 == 0).then_some(v)
}

/// Ends a read begun at version `v`: true if no writer ran meanwhile, so the copy is consistent.
pub(crate) fn validate(word: &AtomicU64, v: u64) -> bool {
    // Acquire fence: if our data reads saw any store of a later writer, this load sees at least
    // that writer's odd version (pairs with the Release fence in `write_begin`).
    fence(Ordering::Acquire);
    word.load(Ordering::Relaxed) == v
}

/// Marks a write in progress (the caller holds the data's lock). From an odd word (a dead or
/// hostile writer) it still moves to a new odd value, so a reader's `v` cannot validate.
pub(crate) fn write_begin(word: &AtomicU64) {
    let v = word.load(Ordering::Relaxed);
    word.store(v.wrapping_add(1) | 1, Ordering::Relaxed);
    // Release fence: our data stores below are ordered after the odd version for any reader
    // that sees one of them.
    fence(Ordering::Release);
}

/// Ends a write (the caller holds the data's lock): the word becomes even again.
pub(crate) fn write_end(word: &AtomicU64) {
    let v = word.load(Ordering::Relaxed);
    let next = if v & 1 == 1 {
        v.wrapping_add(1)
    } else {
        v.wrapping_add(2)
    };
    // Release: a reader that sees this version also sees every data store before it.
    word.store(next, Ordering::Release);
}

#[cfg(all(test, multiproc_loom))]
mod loom_seqlock {
    use super::*;
    use crate::loom::model;
    use crate::loom::sync::Arc;
    use crate::loom::thread;

    /// Data is two words that writers keep equal. Returns a validated copy, or `None` if every
    /// try met a write (the caller would then read under the lock).
    fn read(word: &AtomicU64, data: &[AtomicU64; 2], tries: usize) -> Option<(u64, u64)> {
        for _ in 0..tries {
            if let Some(v) = begin(word) {
                let x = data[0].load(Ordering::Relaxed);
                let y = data[1].load(Ordering::Relaxed);
                if validate(word, v) {
                    return Some((x, y));
                }
            }
            thread::yield_now();
        }
        None
    }

    fn write(word: &AtomicU64, data: &[AtomicU64; 2], value: u64) {
        write_begin(word);
        data[0].store(value, Ordering::Relaxed);
        data[1].store(value, Ordering::Relaxed);
        write_end(word);
    }

    /// Two writes race a reader: every validated copy is one whole value (old or new), never a
    /// word of each.
    #[test]
    fn loom_seqlock_validated_reads_are_whole() {
        model(|| {
            let word = Arc::new(AtomicU64::new(0));
            let data = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
            let writer = {
                let (word, data) = (word.clone(), data.clone());
                thread::spawn(move || {
                    write(&word, &data, 1);
                    write(&word, &data, 2);
                })
            };
            if let Some((x, y)) = read(&word, &data, 2) {
                assert_eq!(x, y);
            }
            writer.join().unwrap();
            assert_eq!(read(&word, &data, 1), Some((2, 2)));
        });
    }

    /// A writer dies half-way (one word written, the version left odd): no read validates a
    /// torn copy, and once the next lock holder completes the write and ends it (the `OwnerDied`
    /// repair) reads validate again and see the new value.
    #[test]
    fn loom_seqlock_dead_writer() {
        model(|| {
            let word = Arc::new(AtomicU64::new(0));
            let data = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
            let writer = {
                let (word, data) = (word.clone(), data.clone());
                thread::spawn(move || {
                    write_begin(&word);
                    data[0].store(7, Ordering::Relaxed); // killed here
                })
            };
            if let Some((x, y)) = read(&word, &data, 2) {
                assert_eq!((x, y), (0, 0));
            }
            writer.join().unwrap();
            assert_eq!(read(&word, &data, 1), None);
            // Repair under the lock: re-apply the recorded write, then end it.
            data[0].store(7, Ordering::Relaxed);
            data[1].store(7, Ordering::Relaxed);
            write_end(&word);
            assert_eq!(read(&word, &data, 1), Some((7, 7)));
        });
    }
}
