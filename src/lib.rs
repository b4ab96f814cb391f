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
//! - [`Queue`] (lock-free MPMC), [`SpscQueue`] and [`JoinableQueue`] for `Pod` values;
//!   [`Channel`], [`Pipe`] and [`JoinableChannel`] for serde messages (and raw bytes), with
//!   task tracking in the joinable ones ([`queue`]).
//! - [`heap`]: a shared [`Heap`](heap::Heap) (an allocator in one sparse, crash-consistent
//!   segment) with zero-copy shareable handles and named objects, and Python's Manager types on
//!   it without a server process: [`Dict`](heap::Dict), [`List`](heap::List), [`Cell`](heap::Cell).
//! - [`Process`]: starts a function in a child process, hands it shared objects, returns its result;
//!   [`current_process`], [`active_children`], [`cpu_count`].
//! - [`Pool`]: Python's `Pool` (`map`, `imap`, `apply_async`, ...) whose workers may die at any
//!   point: only the task a dead worker held fails ([`TaskError::WorkerDied`]) ([`pool`]).
//! - [`shm::remove_stale_segments`]: removes named segments whose creator died without `persist()`.
//! - [`log_to_stderr`]: lifecycle records (children started, exited, killed; owners found dead)
//!   through the `log` facade, printed like Python's `[INFO/Process-1] ...`.
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
mod error_conversions;
#[cfg(not(multiproc_loom))]
pub mod heap;
/// Under loom, only the heap's lock-free part (its model lives there).
#[cfg(multiproc_loom)]
#[path = "heap/holders.rs"]
#[allow(dead_code)]
mod heap_holders;
/// Under loom, the seqlock protocol of the heap's containers (its model lives there).
#[cfg(multiproc_loom)]
#[path = "heap/seqlock.rs"]
#[allow(dead_code)]
mod heap_seqlock;
mod logging;
pub(crate) mod loom;
#[cfg(not(multiproc_loom))]
pub mod pool;
/// Under loom, the pool's claim protocol (its model lives there).
#[cfg(multiproc_loom)]
#[path = "pool/claim.rs"]
#[allow(dead_code)]
mod pool_claim;
pub mod process;
pub mod queue;
mod safe;
pub mod shm;
pub mod sync;
pub(crate) mod sys;
#[doc(hidden)]
pub mod testing;

pub use error::{Error, Result};
pub use error_conversions::IsTimeout;
pub use logging::log_to_stderr;
#[cfg(not(multiproc_loom))]
pub use pool::{AsyncResult, MapError, Pool, PoolBuilder, TaskError};
pub use process::{
    ChildInfo, ExitStatus, Process, ProcessBuilder, ProcessInfo, active_children, cpu_count,
    current_process, init,
};

/// `#[derive(ShmSafe)]`: implements [`ShmSafe`] for a `#[repr(C)]` struct whose fields are all
/// `ShmSafe`, checked at compile time (a pointer, reference, `String` or enum field is refused).
#[cfg(feature = "derive")]
pub use multiproc_derive::ShmSafe;
#[cfg(not(multiproc_loom))]
pub use queue::{Channel, Connection, JoinableChannel, JoinableQueue, Pipe, Queue, SpscQueue};
pub use shm::{Array, Segment, Shared, ShmSafe, Value};
