//! Who runs a chunk that a worker holds but has not started: that worker, or an idle one the
//! pool moves it to. Without this, a chunk queued behind a long one would wait for it while
//! another worker idles.
//!
//! Each worker shares a table of [`SLOTS`] words with the pool. The pool numbers the chunks it
//! gives a worker 1, 2, 3, ... (`seq`, sent as the frame's id) and, before sending one, writes
//! `offered(seq)` into slot `seq % SLOTS`. Before it runs a frame, the worker swaps that word
//! for `claimed(seq)`; to take a chunk back, the pool swaps it for [`REVOKED`]. Both are one
//! compare-and-swap on the same word, so exactly one of them wins: a chunk runs in the worker
//! it was sent to, or is moved, never both and never neither. A worker skips (without a
//! reply) a frame whose slot no longer holds `offered(seq)`. A chunk given to a worker that
//! holds none runs first there and is never taken back: its id is [`kept`]`(seq)`, which
//! needs no slot, so a round trip on an idle pool touches no shared word.
//!
//! The pool gives a worker a chunk only while `seq` minus the number of its oldest unanswered
//! chunk is below [`SLOTS`], so a slot is never rewritten while the chunk it holds may still
//! be claimed. A worker that writes garbage here can only make the pool move or keep its own
//! chunks: the pool matches every reply to the chunk it expects and replaces a worker whose
//! replies do not match, so each chunk still gets exactly one outcome.

use crate::loom::sync::atomic::{AtomicU64, Ordering};

/// Words in a worker's table: at least the most chunks a worker may hold.
pub(crate) const SLOTS: usize = 64;

/// A worker's table.
pub(crate) type Slots = [AtomicU64; SLOTS];

/// A slot whose chunk the pool took back (no `seq` is 0).
const REVOKED: u64 = 0;

/// The id bit of a chunk that is never taken back.
const KEPT: u64 = 1 << 63;

fn offered(seq: u64) -> u64 {
    seq << 1
}

fn claimed(seq: u64) -> u64 {
    (seq << 1) | 1
}

fn slot(slots: &Slots, seq: u64) -> &AtomicU64 {
    &slots[(seq % SLOTS as u64) as usize]
}

/// The pool, before it sends chunk `seq` (from 1): the worker may claim it. Returns the
/// chunk's id.
pub(crate) fn offer(slots: &Slots, seq: u64) -> u64 {
    debug_assert!(seq != 0 && seq < KEPT);
    // Release: the worker that reads the frame (sent after this) finds the offer.
    slot(slots, seq).store(offered(seq), Ordering::Release);
    seq
}

/// The id of chunk `seq` when the pool will never take it back (its worker runs it first).
pub(crate) fn kept(seq: u64) -> u64 {
    seq | KEPT
}

/// The number of the chunk with id `id`.
pub(crate) fn seq_of(id: u64) -> u64 {
    id & !KEPT
}

/// The worker, before it runs the chunk with id `id`: true if it is still its own to run.
pub(crate) fn claim(slots: &Slots, id: u64) -> bool {
    if id & KEPT != 0 {
        return true;
    }
    // Not kept: the id is the chunk's `seq`.
    slot(slots, id)
        .compare_exchange(
            offered(id),
            claimed(id),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// The pool: true if the chunk with id `id` was not started and now never will be by this
/// worker.
pub(crate) fn revoke(slots: &Slots, id: u64) -> bool {
    if id & KEPT != 0 {
        return false;
    }
    slot(slots, id)
        .compare_exchange(offered(id), REVOKED, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    fn table() -> Slots {
        std::array::from_fn(|_| AtomicU64::new(0))
    }

    #[test]
    fn a_chunk_is_claimed_or_revoked_once() {
        let t = table();
        offer(&t, 1);
        offer(&t, 2);
        assert!(claim(&t, 1));
        assert!(!revoke(&t, 1), "a started chunk stays with its worker");
        assert!(!claim(&t, 1), "a chunk runs once");
        assert!(revoke(&t, 2));
        assert!(!claim(&t, 2), "a moved chunk is skipped");
        assert!(!revoke(&t, 2));
        let first = kept(3);
        assert_eq!(seq_of(first), 3);
        assert!(!revoke(&t, first), "a kept chunk is never taken back");
        assert!(claim(&t, first));
        assert_eq!(t[3].load(Ordering::Relaxed), 0, "nor does it use a slot");
    }

    #[test]
    fn a_reused_slot_tells_old_frames_from_new() {
        let t = table();
        let seq = 5;
        offer(&t, seq);
        assert!(revoke(&t, seq));
        // The slot now holds a later chunk; the stale frame of `seq` must still be skipped.
        offer(&t, seq + SLOTS as u64);
        assert!(!claim(&t, seq));
        assert!(claim(&t, seq + SLOTS as u64));
    }

    #[test]
    fn an_unoffered_or_garbage_slot_is_never_claimed() {
        let t = table();
        assert!(!claim(&t, 3));
        t[3].store(u64::MAX, Ordering::Relaxed);
        assert!(!claim(&t, 3));
        assert!(!revoke(&t, 3));
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use crate::loom::sync::Arc;
    use crate::loom::sync::atomic::AtomicUsize;
    use crate::loom::thread;

    /// A worker claiming chunks 1 and 2 while the pool takes back 2 and then 1: each chunk runs
    /// exactly once, in the worker or after the move.
    #[test]
    fn loom_each_chunk_runs_exactly_once() {
        crate::loom::model(|| {
            let t: Arc<Slots> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
            let ran = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
            offer(&t, 1);
            offer(&t, 2);
            let worker = {
                let (t, ran) = (t.clone(), ran.clone());
                thread::spawn(move || {
                    for seq in 1..=2u64 {
                        if claim(&t, seq) {
                            ran[seq as usize - 1].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            };
            for seq in [2u64, 1] {
                if revoke(&t, seq) {
                    ran[seq as usize - 1].fetch_add(1, Ordering::Relaxed);
                }
            }
            worker.join().unwrap();
            for r in ran.iter() {
                assert_eq!(r.load(Ordering::Relaxed), 1);
            }
        });
    }
}
