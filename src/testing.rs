//! Helpers shared by every test of the crate: its unit tests (`crate::testing`) and its
//! integration tests (`tests/common` re-exports them): one watchdog and one seeded generator.
//! Not part of the API.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Duration;

/// Runs `body` on its own thread and fails the test if it does not finish within `secs`, so a
/// hang fails in seconds instead of stalling CI; a panic in `body` is the test's panic.
pub fn watchdog<T: Send + 'static>(secs: u64, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(body)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("watchdog: the test did not finish within {secs} s"),
    }
}

/// xorshift64*: a tiny seeded generator, so that randomised tests replay from their seed.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
