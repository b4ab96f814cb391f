//! The ring tests' fault-injecting env (the watchdog and generator are `crate::testing`'s).

use super::peer::{Env, OsEnv, Step};

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
