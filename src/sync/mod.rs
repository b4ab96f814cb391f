//! Process-shared synchronisation primitives.
mod mutex;
pub use mutex::{LockError, LockResult, Mutex, MutexGuard};
