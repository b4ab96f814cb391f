//! # multiproc
//!
//! Python's `multiprocessing`, done the Rust way: real OS processes that share typed memory and
//! synchronise through it, with no serialisation and no broker on the hot path.
//!
//! - [`Value`], [`Array`] and [`Shared`]: typed data in shared-memory segments ([`Segment`]),
//!   anonymous (inherited by children) or named (opened by any process of the same user).
//! - [`sync`]: process-shared locks and signals that survive a holder killed with `kill -9`:
//!   [`Mutex`](sync::Mutex) (robust: [`LockError::OwnerDied`](sync::LockError)),
//!   [`ReentrantMutex`](sync::ReentrantMutex), [`Condvar`](sync::Condvar),
//!   [`Semaphore`](sync::Semaphore), [`Barrier`](sync::Barrier), [`Event`](sync::Event),
//!   [`RwLock`](sync::RwLock): in-place `#[repr(C)]` types, shared with `Shared::new(..)`.
//! - [`Queue`] (lock-free MPMC) and [`SpscQueue`] for `Pod` values; [`Channel`], [`Pipe`] and
//!   [`JoinableQueue`] for serde messages and task tracking ([`queue`]).
//! - [`Process`]: starts a function in a child process, hands it shared objects, returns its result;
//!   [`current_process`], [`active_children`], [`cpu_count`].
//! - [`Pool`]: Python's `Pool` (`map`, `imap`, `apply_async`, ...) whose workers may die at any
//!   point: only the task a dead worker held fails ([`TaskError::WorkerDied`]) ([`pool`]).
//! - [`shm::remove_stale_segments`]: removes named segments whose creator died without `persist()`.
//!
//! The cross-process invariants every `unsafe` block relies on, and the test or model covering
//! each, are in `SAFETY.md`.
//!
//! ```no_run
//! fn main() -> Result<(), multiproc::Error> {
//!     multiproc::init(); // first line of main: a spawned child runs its entry here and exits
//!     let counter = multiproc::Value::new(0u64)?;
//!     let child = multiproc::Process::spawn(add_one, counter.clone())?;
//!     child.join()?;
//!     assert_eq!(counter.get().unwrap(), 1);
//!     Ok(())
//! }
//!
//! fn add_one(counter: multiproc::Value<u64>) {
//!     *counter.lock().unwrap() += 1;
//! }
//! ```
//!
//! Linux only for now; every OS call lives in one module so a port is one new backend.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[doc(hidden)]
pub mod crash;
mod error;
pub(crate) mod loom;
#[cfg(not(loom))]
pub mod pool;
pub mod process;
pub mod queue;
pub mod shm;
pub mod sync;
pub(crate) mod sys;

pub use error::{Error, Result};
#[cfg(not(loom))]
pub use pool::{AsyncResult, MapError, Pool, PoolBuilder, TaskError};
pub use process::{
    ChildInfo, ExitStatus, Process, ProcessBuilder, ProcessInfo, active_children, cpu_count,
    current_process, init,
};

#[cfg(not(loom))]
pub use queue::{Channel, Connection, JoinableQueue, Pipe, Queue, SpscQueue};
pub use shm::{Array, Segment, Shared, ShmSafe, Value};
