//! The ring tests' fault-injecting env (the watchdog and generator are `crate::testing`'s).

use super::PopError;
use super::PushError;
use super::mpmc::MpmcRef;
use super::peer::{Env, OsEnv, Step};
use super::ring::Wait;
use bytemuck::Pod;
use std::time::Duration;

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

/// The handle's operations on a bare MPMC ring in the real environment, for the ring's tests.
pub(crate) trait MpmcOps<T> {
    fn try_push(&self, value: T) -> Result<(), PushError<T>>;
    fn push(&self, value: T) -> Result<(), PushError<T>>;
    fn push_timeout(&self, value: T, timeout: Duration) -> Result<(), PushError<T>>;
    fn try_pop(&self) -> Result<T, PopError>;
    fn pop(&self) -> Result<T, PopError>;
    fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError>;
}

impl<T: Pod + Send> MpmcOps<T> for MpmcRef<'_, T> {
    fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        self.push_in(&OsEnv, value, Wait::No)
    }
    fn push(&self, value: T) -> Result<(), PushError<T>> {
        self.push_in(&OsEnv, value, Wait::Until(None))
    }
    fn push_timeout(&self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_in(&OsEnv, value, Wait::after(timeout))
    }
    fn try_pop(&self) -> Result<T, PopError> {
        self.pop_in(&OsEnv, Wait::No)
    }
    fn pop(&self) -> Result<T, PopError> {
        self.pop_in(&OsEnv, Wait::Until(None))
    }
    fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
        self.pop_in(&OsEnv, Wait::after(timeout))
    }
}
