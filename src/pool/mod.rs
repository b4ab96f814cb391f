//! Python's `multiprocessing.Pool`: worker processes that run `fn(A) -> R` tasks, and that
//! never hang when a worker dies.
//!
//! Each worker has its own mailbox (a Unix socket pair made when it starts, holding one chunk
//! of tasks while chunks take more than 5 ms, two while they are shorter, and for very short
//! chunks up to about 0.5 ms of work, at most 64) and answers each chunk before it starts the
//! next, so the pool always knows which tasks a worker held. A chunk never waits behind a long
//! one while another worker idles: an idle worker takes over the chunks a busy one holds and
//! has not started (as Python's shared task queue would give them to it). When a worker is
//! killed (the OOM killer, `kill -9`, a `task_timeout`), exactly the chunk it held fails with
//! [`TaskError::WorkerDied`] (or [`TaskError::Timeout`]), the chunks queued behind it go to
//! other workers, and a new worker takes its place. CPython's `Pool` hangs forever in that case; `ProcessPoolExecutor` fails
//! every pending task.
//!
//! Arguments and results travel serialised with postcard, as with [`Process::spawn`](crate::Process::spawn): a tuple
//! argument is Python's `starmap`. Shared handles inside arguments ([`Value`](crate::Value),
//! [`Queue`](crate::Queue), [`Shared`](crate::Shared), ...) reach the running worker as file
//! descriptors passed over its socket (`SCM_RIGHTS`), never re-opened by name.
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiproc::init();
//!     let pool = multiproc::Pool::new(4)?;
//!     let doubled = pool.map(double, 0..100u64)?;
//!     assert_eq!(doubled[21], 42);
//!     let r = pool.apply_async(double, 5);
//!     assert_eq!(r.get()?, 10);
//!     for x in pool.imap_unordered(double, 0..10u64) {
//!         println!("{}", x?);
//!     }
//!     Ok(())
//! }
//!
//! fn double(x: u64) -> u64 {
//!     x * 2
//! }
//! ```
//!
//! # Limits
//! - A chunk is the unit a dead worker loses: with `chunksize` c, up to c tasks fail together.
//! - A task whose worker dies after running it but before its result reached the pool fails
//!   with `WorkerDied`, though its side effects happened (as when a process dies right after
//!   its work).
//! - `max_tasks_per_child` counts chunks, as Python counts its tasks; `task_timeout` bounds a
//!   chunk of c tasks to c times the timeout. A recycled worker's successor starts when the
//!   worker is given its last chunk, and takes tasks only once that chunk is answered (so the
//!   pool briefly has one process more than `processes`, never more running tasks).
//! - Workers end when the pool's process ends, however it ends (daemon children, or tied to
//!   the pool's thread with `PR_SET_PDEATHSIG`).

mod claim;
mod error;
mod frame;
mod result;
mod supervisor;
mod worker;

#[doc(hidden)]
pub mod __fuzz;

pub use error::{MapError, TaskError};
pub use result::{AsyncResult, IMap};

use crate::process::entry_offsets;
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use supervisor::{Chunk, Config, InitFn, Shared, Sink, lock};

/// A pool of worker processes. See the [module docs](self).
///
/// Dropping it terminates and reaps every worker (no zombie, no orphan); call
/// [`close`](Pool::close) and [`join`](Pool::join) to let queued work finish first.
pub struct Pool {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .field("pids", &self.pids())
            .finish()
    }
}

/// Options for a [`Pool`]: `Pool::builder().processes(4).task_timeout(d).build()?`.
pub struct PoolBuilder {
    processes: Option<usize>,
    max_tasks: Option<u64>,
    task_timeout: Option<Duration>,
    chunksize: Option<usize>,
    fork: bool,
    init: Option<InitFn>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("max_tasks_per_child", &self.max_tasks)
            .field("task_timeout", &self.task_timeout)
            .field("chunksize", &self.chunksize)
            .field("fork", &self.fork)
            .field("initializer", &self.init.is_some())
            .finish()
    }
}

impl PoolBuilder {
    /// The number of workers (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs `f(args)` in every worker before its first task (each worker gets its own copy of
    /// `args`; shared handles in it reach each worker as fds). If it panics, every task fails
    /// with [`TaskError::InitializerFailed`].
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.init = Some(Box::new(move || {
            encode_chunk(f, std::slice::from_ref(&args), frame::KIND_INIT)
        }));
        self
    }

    /// A worker exits after this many tasks (chunks) and a new one replaces it (Python's
    /// `maxtasksperchild`); it exits only after its last result reached the pool.
    pub fn max_tasks_per_child(mut self, k: u64) -> Self {
        self.max_tasks = Some(k);
        self
    }

    /// A task (a chunk: `timeout` per task in it) that runs longer is failed with
    /// [`TaskError::Timeout`] and its worker is killed and replaced.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Tasks per chunk for [`map`](Pool::map), [`map_async`](Pool::map_async) and the `imap`s
    /// (default: Python's, `ceil(n / (4 * processes))` for `map`, 1 for `imap`).
    pub fn chunksize(mut self, c: usize) -> Self {
        self.chunksize = Some(c);
        self
    }

    /// The spawn start method (the default): workers re-execute this binary.
    pub fn spawn(mut self) -> Self {
        self.fork = false;
        self
    }

    /// The `fork` start method: workers are copies of this process (faster to start).
    ///
    /// # Safety
    /// The pool starts workers at [`build`](Self::build) and whenever it replaces one (from
    /// its own thread, at any time while it lives). Each time, the preconditions of
    /// [`ProcessBuilder::fork_spawn`](crate::ProcessBuilder::fork_spawn) must hold: in
    /// practice, no other thread of this process may hold a lock (stdout, the environment,
    /// the launcher's registry: `spawn`, `join`, `active_children`) while the pool lives.
    pub unsafe fn fork(mut self) -> Self {
        self.fork = true;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] for zero processes, zero `max_tasks_per_child`, a zero
    /// `chunksize` or `task_timeout`; the error of starting a worker ([`Error::Os`],
    /// [`Error::Spawn`]), after killing those already started.
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        let invalid = |reason| Err(Error::InvalidSize { reason });
        if processes == 0 {
            return invalid("a pool needs at least one process");
        }
        if self.max_tasks == Some(0) {
            return invalid("max_tasks_per_child must be at least 1");
        }
        if self.chunksize == Some(0) {
            return invalid("chunksize must be at least 1");
        }
        if self.task_timeout == Some(Duration::ZERO) {
            return invalid("task_timeout must be longer than zero");
        }
        let shared = Shared::start(Config {
            processes,
            max_tasks: self.max_tasks.unwrap_or(0),
            task_timeout: self.task_timeout,
            chunksize: self.chunksize,
            fork: self.fork,
            init: self.init,
        })?;
        // On error, the workers started so far are killed when `shared` drops.
        shared.add_workers(shared.config.processes)?;
        let thread_shared = Arc::clone(&shared);
        let supervisor = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || thread_shared.supervise())?;
        Ok(Pool {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }
}

/// [`entry_offsets`], remembered for the last pair this thread asked about (it calls `dladdr`,
/// which costs more than sending a small task).
fn offsets_of(entry: usize, wrapper: usize) -> std::result::Result<(i64, i64), String> {
    type Last = Option<((usize, usize), (i64, i64))>;
    thread_local! {
        static LAST: std::cell::Cell<Last> = const { std::cell::Cell::new(None) };
    }
    if let Some((key, offsets)) = LAST.get() {
        if key == (entry, wrapper) {
            return Ok(offsets);
        }
    }
    let offsets = entry_offsets(entry, wrapper).map_err(|e| e.to_string())?;
    LAST.set(Some(((entry, wrapper), offsets)));
    Ok(offsets)
}

/// Encodes `args` as one frame of `kind`, with the fds of the shared handles in them (its id is
/// written when the frame is given to a worker).
fn encode_chunk<A: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned>(
    f: fn(A) -> R,
    args: &[A],
    kind: u8,
) -> std::result::Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>), String> {
    let wrapper: worker::ChunkFn = worker::run_chunk::<A, R>;
    let (entry, wrapper) = offsets_of(f as usize, wrapper as usize)?;
    let (buf, fds) = crate::shm::handoff::collect_exports(|| {
        let mut buf = Vec::with_capacity(64 + args.len() * 16);
        let start = frame::begin(&mut buf, kind, 0);
        frame::task_header(&mut buf, entry, wrapper, 0, args.len() as u32);
        for a in args {
            frame::push_arg(&mut buf, |b| frame::encode(b, a));
        }
        frame::finish(&mut buf, start);
        buf
    });
    if fds.len() > crate::sys::socket::MAX_FDS {
        return Err(format!(
            "a chunk can carry at most {} shared handles, this one has {}",
            crate::sys::socket::MAX_FDS,
            fds.len()
        ));
    }
    let mut buf = buf;
    // The fd count sits after the header, the entry and the wrapper offsets.
    let at = frame::HEADER + 16;
    buf[at..at + 4].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    Ok((buf, fds))
}

impl Pool {
    /// A pool of `processes` workers (spawn start method).
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for the pool's options.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            max_tasks: None,
            task_timeout: None,
            chunksize: None,
            fork: false,
            init: None,
        }
    }

    /// The number of workers the pool keeps.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// The process ids of the workers serving now (not one leaving after its last task under
    /// `max_tasks_per_child`, nor its successor before it takes over).
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    /// Chunks an `imap` keeps submitted and not yet consumed.
    fn in_flight_limit(&self) -> u64 {
        (self.processes() as u64) * 4
    }

    /// Encodes `args` as a chunk whose replies go to `sink` as chunk `seq`, and queues it.
    fn submit<A: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned>(
        &self,
        f: fn(A) -> R,
        args: &[A],
        sink: Arc<Sink>,
        seq: u64,
    ) {
        let count = args.len() as u32;
        let chunk = Chunk::new(count, Some((Arc::clone(&sink), seq)), || {
            encode_chunk(f, args, frame::KIND_TASK)
        });
        match chunk {
            Ok(chunk) => self.shared.submit(chunk),
            Err(e) => sink.deliver(seq, supervisor::Batch::Failed(TaskError::BadArgs(e), count)),
        }
    }

    /// Runs `f(arg)` in a worker and waits for its result (Python's `apply`).
    ///
    /// # Errors
    /// The task's [`TaskError`].
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> std::result::Result<R, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, arg).get()
    }

    /// Starts `f(arg)` in a worker; the handle gives its result (Python's `apply_async`).
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> AsyncResult<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let sink = Arc::<Sink>::default();
        self.submit(f, std::slice::from_ref(&arg), Arc::clone(&sink), 0);
        AsyncResult::new(Arc::clone(&self.shared), sink, 1, |done| {
            let item = done[0].1.next_item(&mut 0);
            result::decode(item.unwrap_or(Err(TaskError::BadResult("no reply".into()))))
        })
    }

    /// `f` applied to every input, in input order (Python's `map`; a tuple `A` is `starmap`).
    /// The inputs are taken lazily, with a bounded number of tasks in flight; chunks are
    /// `ceil(n / (4 * processes))` tasks for an input whose length `n` is known.
    ///
    /// # Errors
    /// The first failed task by input position, with that position: [`MapError`].
    pub fn map<A, R, I>(&self, f: fn(A) -> R, inputs: I) -> std::result::Result<Vec<R>, MapError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let inputs = inputs.into_iter();
        let chunksize = self.map_chunksize(inputs.size_hint().0);
        let mut out = Vec::with_capacity(inputs.size_hint().0);
        let mut chunks = IMap::new(self, f, inputs, chunksize, true);
        // Without a deadline, a chunk always comes (or the end).
        while let Ok(Some(batch)) = chunks.next_chunk(None) {
            batch.decode_into(&mut out)?;
        }
        Ok(out)
    }

    fn map_chunksize(&self, n: usize) -> usize {
        self.shared
            .config
            .chunksize
            .unwrap_or_else(|| n.div_ceil(4 * self.processes()).max(1))
    }

    /// Starts `f` on every input (taken at once, as Python's `map_async` does); the handle
    /// gives all results in input order, or the first failed task with its position.
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, inputs: I) -> AsyncResult<Vec<R>, MapError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let inputs: Vec<A> = inputs.into_iter().collect();
        let chunksize = self.map_chunksize(inputs.len());
        let sink = Arc::<Sink>::default();
        let mut chunks = 0;
        for args in inputs.chunks(chunksize) {
            self.submit(f, args, Arc::clone(&sink), chunks);
            chunks += 1;
        }
        AsyncResult::new(Arc::clone(&self.shared), sink, chunks, |done| {
            let mut out = Vec::new();
            for (_, batch) in done {
                batch.decode_into(&mut out)?;
            }
            Ok(out)
        })
    }

    /// A lazy iterator of `f` over `inputs`, results in input order (Python's `imap`): an
    /// endless input works, with a bounded number of tasks in flight.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, inputs: I) -> IMap<'_, A, R, I::IntoIter>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let chunksize = self.shared.config.chunksize.unwrap_or(1);
        IMap::new(self, f, inputs.into_iter(), chunksize, true)
    }

    /// Like [`imap`](Pool::imap), results in the order they complete (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, inputs: I) -> IMap<'_, A, R, I::IntoIter>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let chunksize = self.shared.config.chunksize.unwrap_or(1);
        IMap::new(self, f, inputs.into_iter(), chunksize, false)
    }

    /// No more tasks: later submissions fail with [`TaskError::Closed`]; queued ones still run.
    pub fn close(&self) {
        self.shared.close(false);
    }

    /// Closes the pool, waits for every queued task to finish, then lets the workers exit and
    /// reaps them. (Python requires `close()` first; here `join` implies it.)
    pub fn join(&self) {
        self.shared.close(true);
        self.wait_supervisor();
    }

    /// Kills every worker now (`SIGKILL`) and reaps it; unfinished tasks fail with
    /// [`TaskError::Closed`].
    pub fn terminate(&self) {
        self.shared.terminate();
        self.wait_supervisor();
    }

    fn wait_supervisor(&self) {
        let handle = lock(&self.supervisor).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}
