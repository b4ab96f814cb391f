//! Crash soak for `Channel`: random-time SIGKILL of a sender or receiver child; the shape is
//! `common::ring`'s, shared by every ring.

mod common;

use common::ring::ring_soak;
use common::soak::Msg;
use multiproc::Channel;

multiproc::test_support!();

#[test]
fn channel_soak_random_kills() {
    ring_soak::<Channel<Msg>>();
}
