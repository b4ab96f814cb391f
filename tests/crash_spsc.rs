//! Crash soak for `SpscQueue`: random-time SIGKILL of the producer or consumer child; the shape is
//! `common::ring`'s, shared by every ring.

mod common;

use common::ring::ring_soak;
use common::soak::Msg;
use multiproc::SpscQueue;

multiproc::test_support!();

#[test]
fn spsc_queue_soak_random_kills() {
    ring_soak::<SpscQueue<Msg>>();
}
