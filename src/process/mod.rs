//! Starting functions in child processes, Python's `multiprocessing.Process` for `fn(A) -> R`.
//!
//! [`Process::spawn`] re-executes the running binary (`/proc/self/exe`), which is safe from a
//! multi-threaded parent; the child must call [`init`] first thing in `main`, where it runs its
//! entry and exits. Arguments and the result travel serialised with postcard; shared-memory
//! handles inside the arguments travel as inherited file descriptors and are re-opened in the
//! child. [`ProcessBuilder::fork_spawn`] is the opt-in `fork` start method.
//!
//! ```no_run
//! fn main() -> Result<(), multiproc::Error> {
//!     multiproc::init();
//!     let p = multiproc::Process::builder().name("doubler").spawn(double, 21u64)?;
//!     let r: u64 = p.join()?;
//!     assert_eq!(r, 42);
//!     Ok(())
//! }
//!
//! fn double(n: u64) -> u64 {
//!     n * 2
//! }
//! ```
//!
//! # Limits
//! - Entries must be functions of the executable (or of the same shared object as multiproc):
//!   functions in a dylib cannot be entries; `spawn` says so with [`Error::Spawn`].
//! - Handles inside the *result* cannot carry file descriptors back to the parent.
//! - Daemon children ([`ProcessBuilder::daemon`]) end when the parent *process* ends, however
//!   it ends. Non-daemon children keep running if the parent dies (as Python's do when the
//!   parent is killed); unlike Python, a parent that returns from `main` does not join them.
//! - The launcher reaps its own children through pidfds: a process that sets `SIGCHLD` to
//!   `SIG_IGN` or reaps with `waitpid(-1, ..)` elsewhere breaks `join`.
//! - Needs Linux 5.4 or later (pidfds).

mod child;
mod fd;
mod fork;
mod record;
mod registry;
mod spawn;
mod testsupport;

pub use fd::FdArg;
#[doc(hidden)]
pub use testsupport::__mark_libtest;
// For the pool, which starts functions in running workers the way spawn starts them in children
// (the pool is not built under loom).
#[cfg_attr(multiproc_loom, allow(unused_imports))]
pub(crate) use {
    child::{anchor_addr, panic_message},
    spawn::offsets as entry_offsets,
};

use crate::sys::process::{self as sys, Ended};
use crate::sys::time::Deadline;
use crate::{Error, Result};
use record::Outcome;
use registry::Child;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First line of `main`. In a child started by [`Process::spawn`] it decodes the arguments, runs
/// the entry, reports its outcome and exits (it never returns); in any other process it returns
/// at once.
///
/// A process counts as a spawned child only if the environment variable the parent set names
/// an inherited file holding a bootstrap record with the parent's random token; arguments never
/// decide it. Under the libtest harness, call `multiproc::test_support!()` in the test file
/// instead: it defines the helper test that calls `init`.
pub fn init() {
    registry::INIT_CALLED.store(true, std::sync::atomic::Ordering::Relaxed);
    // While the process is still single-threaded, registering costs microseconds (the rings'
    // notify fences rely on it: `sys::membarrier`, the handshake).
    crate::sys::membarrier::register();
    crate::logging::inherit();
    child::dispatch();
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the exit code, or minus the signal number.
    pub fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => -signal,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl From<Ended> for ExitStatus {
    fn from(e: Ended) -> Self {
        match e {
            Ended::Exited(code) => ExitStatus::Exited(code),
            Ended::Signaled(signal) => ExitStatus::Signaled(signal),
        }
    }
}

/// A child process running `fn(A) -> R`; [`join`](Process::join) gives its `R`.
///
/// Dropping the handle neither waits for nor kills the child; until it ends and is reaped (by
/// [`active_children`], like Python's), it counts as an active child.
pub struct Process<R = ()> {
    child: Arc<Child>,
    result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.child.name())
            .field("pid", &self.child.pid)
            .finish()
    }
}

impl Process<()> {
    /// A builder to set the child's name or make it a daemon.
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::default()
    }
}

impl<R: Serialize + DeserializeOwned> Process<R> {
    /// Starts `entry(args)` in a new child process with a default name (`Process-N`).
    ///
    /// # Errors
    /// [`Error::Spawn`] if `entry` is not a function of the executable or this process is a
    /// child that never called [`init`]; [`Error::Serialization`] if `args` cannot be encoded;
    /// [`Error::Os`] if the OS refuses to start the process.
    pub fn spawn<A>(entry: fn(A) -> R, args: A) -> Result<Process<R>>
    where
        A: Serialize + DeserializeOwned,
    {
        ProcessBuilder::default().spawn(entry, args)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid
    }

    /// The child's name (`current_process().name` in the child).
    pub fn name(&self) -> &str {
        self.child.name()
    }

    /// Whether the child is still running (not exited, not killed).
    pub fn is_alive(&self) -> bool {
        if self.child.reaped().is_some() {
            return false;
        }
        // A pidfd becomes readable when its process exits.
        matches!(
            sys::wait_readable(self.child.pidfd.as_fd(), Some(Deadline::now())),
            Ok(false)
        )
    }

    /// How the child ended (it is reaped here), or `None` while it runs, like
    /// `std::process::Child::try_wait`.
    ///
    /// # Errors
    /// [`Error::Os`] if the OS could not tell (the status is unknown, not "still running").
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.poll()?)
    }

    /// Waits for the child to end and returns its entry's result.
    ///
    /// # Errors
    /// [`Error::ChildPanicked`] with the panic message, [`Error::ChildSignaled`] if a signal
    /// killed it, [`Error::ChildExited`] if it exited without returning (`std::process::exit`
    /// in the entry), [`Error::Spawn`] if it exited 0 without ever running its entry (no
    /// [`init`]), [`Error::Serialization`] if arguments or result could not be decoded.
    pub fn join(self) -> Result<R> {
        let status = self.child.reap()?;
        registry::unregister(&self.child);
        self.log_ended(status);
        self.outcome(status)
    }

    /// Like [`join`](Process::join), but gives up after `timeout` with [`Error::Timeout`],
    /// leaving the handle usable: join again, or `kill` it. After the child ended, every call
    /// returns its outcome again (the result is decoded anew each time).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R> {
        let status = self.wait(Some(Deadline::after(timeout)))?;
        registry::unregister(&self.child);
        self.log_ended(status);
        self.outcome(status)
    }

    /// Like [`join_timeout`](Process::join_timeout), but gives up at `deadline` (a past one:
    /// no waiting, the outcome if the child already ended).
    ///
    /// # Errors
    /// [`Error::Timeout`] if the child is still running at `deadline`; otherwise as
    /// [`join`](Process::join).
    pub fn join_until(&mut self, deadline: Instant) -> Result<R> {
        let status = self.wait(Some(Deadline::at(deadline)))?;
        registry::unregister(&self.child);
        self.log_ended(status);
        self.outcome(status)
    }

    /// Sends `SIGTERM`. Does nothing if the child already ended.
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL`. Does nothing if the child already ended.
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&self, signal: i32) -> Result<()> {
        if self.child.reaped().is_some() {
            return Ok(());
        }
        log::info!(target: "multiproc", "sending signal {signal} to {} (pid {})", self.name(), self.pid());
        match sys::pidfd_send_signal(self.child.pidfd.as_fd(), signal) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map_err(Error::Os),
        }
    }

    /// Waits until `deadline` for the child to end and reaps it.
    fn wait(&self, deadline: Option<Deadline>) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.child.poll()? {
                return Ok(status);
            }
            if !sys::wait_readable(self.child.pidfd.as_fd(), deadline)? {
                return Err(Error::Timeout);
            }
        }
    }

    /// Logs how the joined child ended.
    fn log_ended(&self, status: ExitStatus) {
        let (name, pid) = (self.name(), self.pid());
        match status {
            ExitStatus::Exited(code) => {
                log::info!(target: "multiproc", "{name} (pid {pid}) exited with exitcode {code}");
            }
            ExitStatus::Signaled(signal) => {
                log::info!(target: "multiproc", "{name} (pid {pid}) was killed by signal {signal}");
            }
        }
    }

    /// Turns how the child ended and what it reported into the result.
    fn outcome(&self, status: ExitStatus) -> Result<R> {
        let code = match status {
            ExitStatus::Signaled(signal) => return Err(Error::ChildSignaled { signal }),
            ExitStatus::Exited(code) => code,
        };
        if code == 0 && self.child.is_forked() {
            if let Some(value) = record::value_without_record() {
                return Ok(value);
            }
        }
        match record::result_read(self.child.memfd(), self.child.token)? {
            Some(Outcome::Returned(bytes)) => {
                postcard::from_bytes(&bytes).map_err(|e| Error::Serialization(e.to_string()))
            }
            Some(Outcome::Panicked(message)) => Err(Error::ChildPanicked { message }),
            Some(Outcome::BadArgs(e)) => Err(Error::Serialization(format!(
                "the child could not decode its arguments: {e}"
            ))),
            Some(Outcome::BadResult(e)) => Err(Error::Serialization(format!(
                "the child could not encode its result: {e}"
            ))),
            None if code == 0
                && !self.child.is_forked()
                && !record::entry_started(self.child.memfd(), self.child.token)? =>
            {
                Err(Error::Spawn(
                    "child exited without running its entry: call multiproc::init() first in main, \
                 or multiproc::test_support!() in the test file",
                ))
            }
            None => Err(Error::ChildExited { code }),
        }
    }
}

/// Options for a new [`Process`]: `Process::builder().name("x").daemon(true).spawn(f, args)`.
#[derive(Clone, Debug, Default)]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: bool,
    dies_with_thread: bool,
}

impl ProcessBuilder {
    /// The child's name (default `Process-N`, N counting the children this process created).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon child is killed as soon as this process ends, however it ends (even by
    /// `SIGKILL`): it watches a pipe whose write end only this process holds.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The child is killed (`SIGKILL`, `PR_SET_PDEATHSIG`) as soon as the *thread* that
    /// spawns it ends, or this process, however it ends. Cheaper to start than a daemon (no
    /// watcher thread in the child); for a spawning thread that outlives its children, as
    /// the pool's supervisor does. Spawn start method only.
    #[cfg_attr(multiproc_loom, allow(dead_code))] // the pool is not built under loom
    pub(crate) fn dies_with_thread(mut self) -> Self {
        self.dies_with_thread = true;
        self
    }

    fn options(&self) -> spawn::Options<'_> {
        spawn::Options {
            name: self.name.as_deref(),
            daemon: self.daemon,
            dies_with_thread: self.dies_with_thread,
        }
    }

    /// Starts `entry(args)` in a new child process that re-executes this binary.
    ///
    /// # Errors
    /// As [`Process::spawn`].
    pub fn spawn<A, R>(self, entry: fn(A) -> R, args: A) -> Result<Process<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let child = spawn::spawn(self.options(), entry, args)?;
        Ok(Process {
            child,
            result: PhantomData,
        })
    }

    /// The `fork` start method: the child is a copy of this process that runs `entry(args)`
    /// with `args` moved into it (no serialisation; fds are inherited as they are), then
    /// reports `R` the same way a spawned child does and exits with `_exit` (no destructors,
    /// no atexit handlers). The parent drops its own copy of `args`, so a value whose `Drop`
    /// has effects outside the process (unlinking a name) runs it in both processes.
    ///
    /// # Safety
    /// After `fork`, the child has one thread, a copy of the caller's, while every lock held
    /// by another thread of the parent at that instant stays locked forever in the child. So,
    /// at the time of the call, one of these must hold:
    /// - the calling process has exactly one thread; or
    /// - no other thread holds, or may be about to take, any lock that the child will need:
    ///   std's stdout/stderr and environment locks, locks in user code, this crate's registry
    ///   (taken by any concurrent `spawn`/`join`/`active_children`); glibc resets its malloc
    ///   locks on fork, so allocation itself is fine; or
    /// - `entry` and the `Drop` of `args` use only async-signal-safe operations (then the
    ///   child must not be a daemon, whose watcher is a new thread, and `R` must encode
    ///   without allocating, which in practice means: make it the first case).
    ///
    /// In every case, no other thread may call `spawn`, `fork_spawn`, `join`,
    /// `active_children` or `current_process` until this call returns: around the `fork`, the
    /// launcher's per-process state holds what the child starts with.
    ///
    /// # Errors
    /// [`Error::Os`] if `fork` or `pidfd_open` fails.
    pub unsafe fn fork_spawn<A, R>(self, entry: fn(A) -> R, args: A) -> Result<Process<R>>
    where
        R: Serialize + DeserializeOwned,
    {
        // SAFETY: the caller upholds the fork preconditions documented above.
        let child = unsafe { fork::fork_spawn(self.options(), entry, args)? };
        Ok(Process {
            child,
            result: PhantomData,
        })
    }
}

/// Who the calling process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its name: `MainProcess`, or the name it was spawned with.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Its parent's process id.
    pub parent_pid: u32,
}

/// The calling process's name, pid and parent's pid.
pub fn current_process() -> ProcessInfo {
    ProcessInfo {
        name: registry::current_name(),
        pid: crate::sys::proc::getpid(),
        parent_pid: crate::sys::proc::getppid(),
    }
}

/// A running child of this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its name.
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

/// The children of this process that were not joined and still run. Children that ended are
/// reaped here and no longer listed, as in Python.
pub fn active_children() -> Vec<ChildInfo> {
    registry::alive_children()
        .iter()
        .map(|c| ChildInfo {
            name: c.name().to_owned(),
            pid: c.pid,
        })
        .collect()
}

/// The number of CPUs this process may run on.
pub fn cpu_count() -> usize {
    crate::sys::proc::cpu_count()
}
