//! Crash soak for `Queue` (MPMC): random-time SIGKILL of a producer or consumer child; the shape is
//! `common::ring`'s, shared by every ring.

mod common;

use common::ring::ring_soak;
use common::soak::Msg;
use multiproc::Queue;

multiproc::test_support!();

#[test]
fn mpmc_queue_soak_random_kills() {
    ring_soak::<Queue<Msg>>();
}
