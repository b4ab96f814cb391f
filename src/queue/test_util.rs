//! Helpers shared by the ring tests: a watchdog, a seeded generator, a fault-injecting env.

use super::peer::{Env, OsEnv, Step};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on its own thread and fails the test if it does not finish within `secs`.
pub(crate) fn watchdog<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(r) => {
            h.join().expect("test thread panicked");
            r
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(e) => std::panic::resume_unwind(e),
            Ok(()) => panic!("test thread ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("watchdog: test hung for {secs} s"),
    }
}

/// xorshift64*: a tiny seeded generator, so failures replay.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The real environment, except that the operation stops at `stop` as if killed there.
pub(crate) struct StopAt(pub(crate) Step);

impl Env for StopAt {
    fn me(&self) -> u32 {
        OsEnv.me()
    }
    fn is_dead(&self, tid: u32) -> bool {
        OsEnv.is_dead(tid)
    }
    fn process_identity(&self) -> u64 {
        OsEnv.process_identity()
    }
    fn process_dead(&self, id: u64) -> bool {
        OsEnv.process_dead(id)
    }
    fn survive(&self, at: Step) -> bool {
        at != self.0
    }
}
