//! Why a pool task has no result.

use crate::ExitStatus;
use std::fmt;

/// Why a task gave no result.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the panic message.
    Panicked(String),
    /// The worker running the task (or holding it next) died: killed by a signal (the OOM
    /// killer, `kill -9`) or exited. The pool replaced it; other tasks were not affected.
    WorkerDied(ExitStatus),
    /// The task ran longer than the pool's `task_timeout`; its worker was killed and replaced.
    Timeout,
    /// The argument could not be encoded by the pool or decoded by the worker.
    BadArgs(String),
    /// The result could not be encoded by the worker or decoded by the pool.
    BadResult(String),
    /// The pool was closed before the task was submitted, or terminated before it finished.
    Closed,
    /// The pool's initializer failed in a worker, so no worker can run tasks.
    InitializerFailed(String),
    /// The pool could not start a worker (the OS refused) and has none left to run the task.
    NoWorkers(String),
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(m) => write!(f, "task panicked: {m}"),
            TaskError::WorkerDied(crate::ExitStatus::Signaled(s)) => {
                write!(f, "the worker died (signal {s})")
            }
            TaskError::WorkerDied(crate::ExitStatus::Exited(c)) => {
                write!(f, "the worker exited (code {c})")
            }
            TaskError::Timeout => f.write_str("task exceeded the pool's task timeout"),
            TaskError::BadArgs(m) => write!(f, "task argument could not be passed: {m}"),
            TaskError::BadResult(m) => write!(f, "task result could not be passed: {m}"),
            TaskError::Closed => f.write_str("the pool was closed or terminated"),
            TaskError::InitializerFailed(m) => write!(f, "the pool's initializer failed: {m}"),
            TaskError::NoWorkers(m) => write!(f, "the pool could not start a worker: {m}"),
        }
    }
}

impl std::error::Error for TaskError {}

/// A failed [`Pool::map`](super::Pool::map): the first task (by input position) that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapError {
    /// The failed task's position in the input.
    pub index: usize,
    /// Why it failed.
    pub error: TaskError,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}: {}", self.index, self.error)
    }
}

impl std::error::Error for MapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
