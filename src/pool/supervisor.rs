//! The pool's parent side: a mailbox per worker, a queue of chunks no worker holds yet, and the
//! supervisor thread that reads replies, reaps and replaces dead workers and enforces
//! `task_timeout`. A thread waiting for a result also reads replies, for a short while, under
//! the same lock: whichever thread reads a reply delivers it.
//!
//! Every chunk is in exactly one place: the queue, or one worker's `inflight` list (in the
//! order it was sent), until its replies reach its sink. A worker replies to its frames in
//! order and to each before it starts the next (see `worker`), so when a worker dies its first
//! unanswered chunk is the one it held and fails (`WorkerDied`, or `Timeout` if the pool
//! killed it for that); the chunks behind it never started and go back to the front of the
//! queue for another worker. When nothing is queued and a worker is idle, the chunks another
//! worker holds and has not started are moved to it ([`claim`](super::claim) decides, with that
//! worker, which ones it has not started). No lock is shared with workers: a worker can only
//! stop talking, or keep its own chunks.

use super::claim::{self, Slots};
use super::error::{MapError, TaskError};
use super::frame::{self, Reply};
use super::worker::{self, Boot};
use crate::process::FdArg;
use crate::shm::Shared as SharedMemory;
use crate::sys::socket;
use crate::{Error, ExitStatus, Process};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Chunks a worker may hold at once while chunks are short: at least the one it runs and the
/// next, so it never waits for a round trip to the pool between two chunks; more while chunks
/// are very short, up to about [`MAILBOX_WORK`] of queued work, so one `send` carries many
/// of them and the worker reads them with one `recv`.
const MAILBOX: usize = 2;
/// The most chunks a worker may hold (one `sendmsg` of this many frames).
const MAILBOX_MAX: usize = socket::MAX_IOV;
// Each chunk a worker holds may need its own claim slot.
const _: () = assert!(MAILBOX_MAX <= claim::SLOTS);
/// The work a worker's mailbox may hold beyond [`MAILBOX`] chunks (by the average chunk's
/// time): little enough that a chunk queued behind others waits no longer than this.
const MAILBOX_WORK: Duration = Duration::from_micros(500);
/// Chunks longer than this (on average) go one per worker: a round trip between them costs
/// little, and a chunk queued behind a long one would wait for it while another worker idles.
const LONG_CHUNK: Duration = Duration::from_millis(5);
/// After a worker died running the initializer this many times in a row, the pool gives up.
const INIT_DEATHS: u32 = 3;
/// How long to wait before retrying a worker start the OS refused.
const SPAWN_RETRY: Duration = Duration::from_millis(100);
/// How often a worker holding tasks is checked for being alive, besides its socket's end of
/// file (which never comes if a process the task forked holds a copy of the socket).
const LIVENESS: Duration = Duration::from_millis(100);

/// How long a thread waiting for a result reads replies itself before it sleeps (only while
/// chunks take less than this on average: waiting for a longer one, it sleeps at once and
/// leaves the CPU to the workers).
const ASSIST: Duration = Duration::from_micros(50);
/// While a waiting thread reads replies, the supervisor leaves the sockets to it (it would
/// wake for each reply) and looks again this often: a reply that no thread is reading waits
/// at most this long after the last reader found its own.
const ASSISTED_TICK: Duration = Duration::from_millis(1);

/// The outcomes of one chunk's tasks, as one buffer (no allocation per task).
pub(super) enum Batch {
    /// A RESULTS body that [`frame::check_replies`] accepted.
    Replies(Body),
    /// Each of this many tasks failed with this error.
    Failed(TaskError, u32),
}

/// A copy of a RESULTS body: in place when small (one task's small result, as `apply_async`
/// gets: no allocation, which the reading thread would make and the waiting one free).
pub(super) enum Body {
    Inline { len: u8, bytes: [u8; Body::INLINE] },
    Heap(Vec<u8>),
}

impl Body {
    const INLINE: usize = 48;

    fn copy_of(body: &[u8]) -> Body {
        match u8::try_from(body.len()) {
            Ok(len) if body.len() <= Body::INLINE => {
                let mut bytes = [0; Body::INLINE];
                bytes[..body.len()].copy_from_slice(body);
                Body::Inline { len, bytes }
            }
            _ => Body::Heap(body.to_vec()),
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Inline { len, bytes } => &bytes[..*len as usize],
            Body::Heap(v) => v,
        }
    }
}

impl Batch {
    /// The outcome of the task at `*at` (start at 0), moving `*at` to the next; `None` past the
    /// last. `Ok` holds the encoded result.
    #[inline]
    pub(super) fn next_item(&self, at: &mut usize) -> Option<Result<&[u8], TaskError>> {
        match self {
            Batch::Replies(body) => {
                *at = (*at).max(frame::FIRST_REPLY);
                frame::next_reply(body.as_slice(), at).map(|r| r.map_err(Into::into))
            }
            Batch::Failed(e, count) => (*at < *count as usize).then(|| {
                *at += 1;
                Err(e.clone())
            }),
        }
    }

    /// Decodes every task's result onto `out`, in order; the first failed task's error with
    /// its position in `out`.
    pub(super) fn decode_into<R: DeserializeOwned>(
        &self,
        out: &mut Vec<R>,
    ) -> Result<(), MapError> {
        let mut at = 0;
        while let Some(item) = self.next_item(&mut at) {
            let index = out.len();
            out.push(super::result::decode(item).map_err(|error| MapError { index, error })?);
        }
        Ok(())
    }

    /// Whether every task returned.
    pub(super) fn all_returned(&self) -> bool {
        let mut at = 0;
        std::iter::from_fn(|| self.next_item(&mut at)).all(|r| r.is_ok())
    }
}

impl From<Reply> for TaskError {
    fn from(r: Reply) -> TaskError {
        match r {
            Reply::Returned(_) => TaskError::BadResult("a returned value is no error".into()),
            Reply::Panicked(m) => TaskError::Panicked(m),
            Reply::BadArgs(m) => TaskError::BadArgs(m),
            Reply::BadResult(m) => TaskError::BadResult(m),
        }
    }
}

/// Where the replies of submitted chunks go, each tagged with the sequence number its submitter
/// gave it. One sink serves an `AsyncResult` or a lazy `imap`.
#[derive(Default)]
pub(super) struct Sink {
    done: Mutex<Delivered>,
    cv: Condvar,
}

/// The chunks delivered to a sink and not yet taken, and how many threads sleep on it.
#[derive(Default)]
struct Delivered {
    chunks: VecDeque<(u64, Batch)>,
    sleepers: usize,
}

impl Sink {
    /// Hands the outcomes of chunk `seq` to whoever waits (a `notify` only if someone sleeps:
    /// each costs a system call).
    pub(super) fn deliver(&self, seq: u64, batch: Batch) {
        let mut done = lock(&self.done);
        done.chunks.push_back((seq, batch));
        let sleepers = done.sleepers;
        drop(done);
        if sleepers > 0 {
            self.cv.notify_all();
        }
    }

    /// Waits until `take` finds what it wants among the delivered chunks (it removes it), or
    /// until `deadline`; `None` on timeout. For its first [`ASSIST`], the waiting thread reads
    /// the workers' replies itself ([`Shared::read_replies`]) rather than sleeping until the
    /// supervisor thread has read them: a short task's reply then costs one wake-up fewer.
    pub(super) fn wait_for<T>(
        &self,
        shared: &Shared,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut VecDeque<(u64, Batch)>) -> Option<T>,
    ) -> Option<T> {
        let assist_until = match shared.chunk_time() {
            Some(t) if t >= ASSIST => Instant::now(), // a long wait ahead: sleep at once
            _ => Instant::now() + ASSIST,
        };
        let mut assisting = false;
        let mut done = lock(&self.done);
        loop {
            if let Some(t) = take(&mut done.chunks) {
                if assisting {
                    shared.assisting.fetch_sub(1, Ordering::Relaxed);
                }
                return Some(t);
            }
            let now = Instant::now();
            if now < assist_until && deadline.is_none_or(|d| now < d) {
                if !assisting {
                    assisting = true;
                    shared.assisting.fetch_add(1, Ordering::Relaxed);
                }
                drop(done);
                if !shared.read_replies() {
                    std::thread::yield_now();
                }
                done = lock(&self.done);
                continue;
            }
            if assisting {
                // From now on the supervisor must read the replies for us: wake it.
                assisting = false;
                shared.assisting.fetch_sub(1, Ordering::Relaxed);
                socket::wake(shared.wake_write.as_fd());
            }
            done.sleepers += 1;
            match deadline {
                None => done = self.cv.wait(done).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        done.sleepers -= 1;
                        return None;
                    }
                    done = self
                        .cv
                        .wait_timeout(done, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            done.sleepers -= 1;
        }
    }
}

/// Locks `m`, ignoring poison: every critical section here leaves its data consistent.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An encoded frame of tasks, and where its replies go.
pub(super) struct Chunk {
    /// Its number at the worker it was last given to (its frame's id; 0 before).
    id: u64,
    frame: Vec<u8>,
    /// The fds of shared handles inside the arguments, sent with the frame.
    fds: Vec<OwnedFd>,
    count: u32,
    /// `None` for the initializer.
    sink: Option<(Arc<Sink>, u64)>,
}

impl Chunk {
    /// A chunk of `count` tasks whose frame (and fds) `encode` writes; `Err` with `encode`'s
    /// error.
    pub(super) fn new(
        count: u32,
        sink: Option<(Arc<Sink>, u64)>,
        encode: impl FnOnce() -> Result<(Vec<u8>, Vec<OwnedFd>), String>,
    ) -> Result<Chunk, String> {
        let (frame, fds) = encode()?;
        Ok(Chunk {
            id: 0,
            frame,
            fds,
            count,
            sink,
        })
    }

    fn fail(self, error: &TaskError) {
        if let Some((sink, seq)) = self.sink {
            sink.deliver(seq, Batch::Failed(error.clone(), self.count));
        }
    }
}

/// Why the pool stopped talking to a worker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// End of file or a socket error: it died or exited.
    Ended,
    /// It sent a frame that breaks the format; the pool killed it.
    Malformed,
}

struct Worker {
    process: Process<()>,
    sock: OwnedFd,
    /// Chunks given to it, oldest first; the first is the one it runs.
    inflight: VecDeque<Chunk>,
    /// The number the next chunk given to it gets (from 1).
    next_seq: u64,
    /// The table through which it claims each chunk before running it.
    claims: SharedMemory<Slots>,
    /// Index in `inflight` of the first chunk not completely sent yet, and how many bytes of
    /// it were sent: the chunks from there on wait for room in its socket.
    unsent: usize,
    sent: usize,
    inbuf: Vec<u8>,
    /// When its first inflight chunk started (when the one before it was answered).
    front_since: Instant,
    /// Frames given to it, for `max_tasks_per_child`.
    given: u64,
    timed_out: bool,
    /// Its socket refused a write: give it nothing more.
    write_failed: bool,
    /// The pool shut its socket (`join`): it exits once idle.
    quitting: bool,
    /// Started ahead of time to replace a worker that reached `max_tasks_per_child`: it takes
    /// no task until that one has answered its last.
    standby: bool,
    gone: Option<Gone>,
}

impl Worker {
    /// It was given its last chunk under `max_tasks_per_child`.
    fn at_quota(&self, config: &Config) -> bool {
        config.max_tasks != 0 && self.given >= w_quota(config)
    }

    /// It counts toward the pool's size: not a standby, not gone, and not done with the last
    /// chunk of its quota.
    fn serving(&self, config: &Config) -> bool {
        !self.standby && self.gone.is_none() && !(self.at_quota(config) && self.inflight.is_empty())
    }

    /// Whether it may be given a chunk now, with `mailbox` chunks allowed: it has room, and
    /// the chunk's claim slot no longer belongs to a chunk it may still claim.
    fn takes_chunks(&self, config: &Config, mailbox: usize) -> bool {
        self.inflight.len() < mailbox
            && self
                .inflight
                .front()
                .is_none_or(|c| self.next_seq - claim::seq_of(c.id) < claim::SLOTS as u64)
            && !(self.at_quota(config)
                || self.standby
                || self.gone.is_some()
                || self.timed_out
                || self.write_failed
                || self.quitting)
    }

    /// Whether bytes wait to be sent to it.
    fn has_unsent(&self) -> bool {
        !self.write_failed && self.unsent < self.inflight.len()
    }

    /// Sends what it can without blocking: the first unsent frame's remaining bytes and the
    /// whole frames behind it that carry no fds, in one `sendmsg` (fds go with their frame's
    /// first byte).
    fn flush(&mut self) {
        while self.has_unsent() {
            let first = &self.inflight[self.unsent];
            let fds: Vec<RawFd> = if self.sent == 0 {
                first.fds.iter().map(AsRawFd::as_raw_fd).collect()
            } else {
                Vec::new()
            };
            let mut bufs = [IoSlice::new(&[]); socket::MAX_IOV];
            bufs[0] = IoSlice::new(&first.frame[self.sent..]);
            let mut used = 1;
            for c in self.inflight.range(self.unsent + 1..) {
                if used == bufs.len() || !c.fds.is_empty() {
                    break;
                }
                bufs[used] = IoSlice::new(&c.frame);
                used += 1;
            }
            match socket::send_with_fds(self.sock.as_fd(), &bufs[..used], &fds, true) {
                Ok(mut n) => {
                    while let Some(c) = self.inflight.get(self.unsent) {
                        let left = c.frame.len() - self.sent;
                        if n < left {
                            self.sent += n;
                            break;
                        }
                        n -= left;
                        self.unsent += 1;
                        self.sent = 0;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // It is gone; reading its socket will say so.
                    self.write_failed = true;
                    return;
                }
            }
        }
    }

    fn give(&mut self, mut chunk: Chunk) {
        let seq = self.next_seq;
        self.next_seq += 1;
        // The first chunk runs first and is never taken back: it needs no claim.
        chunk.id = if self.inflight.is_empty() {
            self.front_since = Instant::now();
            claim::kept(seq)
        } else {
            claim::offer(&self.claims, seq)
        };
        self.given += 1;
        frame::set_id(&mut chunk.frame, chunk.id);
        self.inflight.push_back(chunk);
    }

    /// Takes back up to `n` of the chunks it holds and has not started, the last given first
    /// (never the one it runs, nor a frame partly written to its socket, which must be
    /// completed), onto the front of `queue` in the order they were given; whether it took any.
    fn take_back(&mut self, n: usize, queue: &mut VecDeque<Chunk>) -> bool {
        let mut taken = 0;
        while taken < n && self.inflight.len() > 1 {
            let last = self.inflight.len() - 1;
            let partly_sent = last == self.unsent && self.sent > 0;
            if partly_sent || !claim::revoke(&self.claims, self.inflight[last].id) {
                break;
            }
            if let Some(chunk) = self.inflight.pop_back() {
                queue.push_front(chunk);
                self.unsent = self.unsent.min(self.inflight.len());
                self.given -= 1;
                taken += 1;
            }
        }
        taken > 0
    }

    /// Reads what the worker sent and hands complete replies to their sinks; whether it read
    /// anything.
    fn read(&mut self, pool: &mut Status) -> bool {
        let mut got_any = false;
        let mut ignored_fds = Vec::new();
        loop {
            if self.inbuf.len() > frame::HEADER + frame::MAX_BODY {
                self.gone = Some(Gone::Malformed);
                return got_any;
            }
            let scratch = &mut pool.scratch;
            let got = socket::recv_with_fds(self.sock.as_fd(), scratch, &mut ignored_fds, true);
            // A worker has no reason to send fds; closing them is all they get.
            ignored_fds.clear();
            match got {
                Ok(0) => {
                    self.gone.get_or_insert(Gone::Ended);
                    break;
                }
                Ok(n) => {
                    got_any = true;
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    if n < scratch.len() {
                        // A stream socket's receive takes all that is queued, up to the
                        // buffer's size: nothing was left (end of file shows at the next poll).
                        break;
                    }
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        self.gone.get_or_insert(Gone::Ended);
                    }
                    break;
                }
            }
        }
        let mut start = 0;
        while self.gone != Some(Gone::Malformed) {
            let f = match frame::next_frame(&self.inbuf[start..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    self.gone = Some(Gone::Malformed);
                    break;
                }
            };
            let body = start + f.body.start..start + f.body.end;
            let expected = match self.inflight.front() {
                Some(c) if f.kind == frame::KIND_RESULTS && f.id == c.id => c.count,
                _ => {
                    self.gone = Some(Gone::Malformed);
                    break;
                }
            };
            if frame::check_replies(&self.inbuf[body.clone()], expected).is_err() {
                self.gone = Some(Gone::Malformed);
                break;
            }
            let replies = &self.inbuf[body.clone()];
            start = body.end;
            if let Some(chunk) = self.inflight.pop_front() {
                // A worker answers a frame only after reading all of it; one that answers
                // earlier is hostile, and the rest of that frame is never sent.
                if self.unsent == 0 {
                    self.sent = 0;
                }
                self.unsent = self.unsent.saturating_sub(1);
                let now = Instant::now();
                pool.record_service(now - self.front_since);
                self.front_since = now;
                pool.answered(chunk, replies);
            }
        }
        self.inbuf.drain(..start);
        if self.gone == Some(Gone::Malformed) {
            let _ = self.process.kill();
        }
        got_any
    }
}

/// What the pool knows besides its workers.
struct Status {
    queue: VecDeque<Chunk>,
    /// Set when the initializer failed: every task fails with it.
    broken: Option<TaskError>,
    /// Workers that died in a row while running the initializer.
    init_deaths: u32,
    /// Moving average of how long a worker takes to answer a chunk; `None` before the first.
    service: Option<Duration>,
    /// Where replies are received (64 KiB, allocated once).
    scratch: Vec<u8>,
}

impl Status {
    fn record_service(&mut self, took: Duration) {
        self.service = Some(self.service.map_or(took, |avg| (avg * 7 + took) / 8));
    }

    /// Chunks a worker may hold now: one until chunks are known to be short, then
    /// [`MAILBOX`], or more for very short chunks (see [`MAILBOX_WORK`]).
    fn mailbox(&self) -> usize {
        match self.service {
            Some(avg) if avg < LONG_CHUNK => {
                let extra = MAILBOX_WORK.as_nanos() / avg.as_nanos().max(1);
                (MAILBOX + extra as usize).min(MAILBOX_MAX)
            }
            _ => 1,
        }
    }

    /// Hands a checked RESULTS body to the chunk's sink (one copy of the body, whatever the
    /// number of tasks).
    fn answered(&mut self, chunk: Chunk, replies: &[u8]) {
        match chunk.sink {
            Some((sink, seq)) => sink.deliver(seq, Batch::Replies(Body::copy_of(replies))),
            None => match frame::next_reply(replies, &mut { frame::FIRST_REPLY }) {
                Some(Err(e)) => {
                    let e = TaskError::from(e);
                    self.break_pool(TaskError::InitializerFailed(e.to_string()))
                }
                _ => self.init_deaths = 0,
            },
        }
    }

    fn break_pool(&mut self, error: TaskError) {
        for chunk in self.queue.drain(..) {
            chunk.fail(&error);
        }
        self.broken = Some(error);
    }
}

/// The pool's options, fixed at build time.
pub(super) struct Config {
    pub(super) processes: usize,
    /// 0: unlimited.
    pub(super) max_tasks: u64,
    pub(super) task_timeout: Option<Duration>,
    /// Tasks per chunk for map and imap, if set.
    pub(super) chunksize: Option<usize>,
    pub(super) fork: bool,
    /// Encodes the initializer call for a new worker.
    pub(super) init: Option<InitFn>,
}

/// Builds the initializer's frame.
pub(super) type InitFn = Box<dyn Fn() -> Result<(Vec<u8>, Vec<OwnedFd>), String> + Send + Sync>;

struct State {
    workers: Vec<Worker>,
    status: Status,
    /// No more submissions.
    closed: bool,
    /// `join`: finish the queue, then let the workers go.
    joining: bool,
    /// `terminate`: kill the workers now, fail what is left.
    terminating: bool,
    spawned: u64,
    retry_spawn_at: Option<Instant>,
}

/// What the pool's handle, its results and the supervisor thread share.
pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) config: Config,
    /// Threads reading replies while they wait ([`Sink::wait_for`]).
    assisting: AtomicUsize,
    /// The average time a worker takes to answer a chunk, in ns (0: not known yet), for
    /// threads that decide whether to wait busily.
    chunk_ns: AtomicU64,
    wake_read: OwnedFd,
    wake_write: OwnedFd,
}

impl Shared {
    /// A pool state, without workers yet ([`add_workers`](Self::add_workers) starts them).
    pub(super) fn start(config: Config) -> crate::Result<Arc<Shared>> {
        let (wake_read, wake_write) = crate::sys::process::pipe_cloexec()?;
        socket::set_nonblocking(wake_read.as_fd())?;
        socket::set_nonblocking(wake_write.as_fd())?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                workers: Vec::new(),
                status: Status {
                    queue: VecDeque::new(),
                    broken: None,
                    init_deaths: 0,
                    service: None,
                    scratch: vec![0; 64 * 1024],
                },
                closed: false,
                joining: false,
                terminating: false,
                spawned: 0,
                retry_spawn_at: None,
            }),
            config,
            assisting: AtomicUsize::new(0),
            chunk_ns: AtomicU64::new(0),
            wake_read,
            wake_write,
        });
        Ok(shared)
    }

    /// The average time a worker takes to answer a chunk, once known.
    pub(super) fn chunk_time(&self) -> Option<Duration> {
        match self.chunk_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn publish_chunk_time(&self, status: &Status) {
        let ns = status
            .service
            .map_or(0, |d| d.as_nanos().clamp(1, u64::MAX as u128) as u64);
        self.chunk_ns.store(ns, Ordering::Relaxed);
    }

    /// Queues `chunk` and gives it to a worker with room. It is sent at once to a worker that
    /// would otherwise run out of work; to one with replies on the way it goes with the next
    /// batch, when those are read (many frames per `send`).
    pub(super) fn submit(&self, chunk: Chunk) {
        let mut st = lock(&self.state);
        if st.closed {
            return chunk.fail(&TaskError::Closed);
        }
        if let Some(e) = &st.status.broken {
            return chunk.fail(e);
        }
        st.status.queue.push_back(chunk);
        if st.dispatch(&self.config, true) {
            socket::wake(self.wake_write.as_fd());
        }
    }

    /// No more submissions; with `join`, let the workers go once the queue is done.
    pub(super) fn close(&self, join: bool) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.joining |= join;
        drop(st);
        socket::wake(self.wake_write.as_fd());
    }

    /// Kill the workers and fail what is left.
    pub(super) fn terminate(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.terminating = true;
        drop(st);
        socket::wake(self.wake_write.as_fd());
    }

    /// The ids of the worker processes that serve (not a standby, nor one that is leaving
    /// after its last chunk under `max_tasks_per_child`).
    pub(super) fn pids(&self) -> Vec<u32> {
        lock(&self.state)
            .workers
            .iter()
            .filter(|w| w.serving(&self.config))
            .map(|w| w.process.pid())
            .collect()
    }

    /// Reads what the workers holding tasks sent and hands complete replies to their sinks,
    /// from a thread waiting for a result (skipped while another thread holds the state); the
    /// supervisor is woken for whatever else that calls for (a worker gone, bytes to send).
    pub(super) fn read_replies(&self) -> bool {
        let Ok(mut guard) = self.state.try_lock() else {
            return false;
        };
        let st = &mut *guard;
        let mut gone = false;
        let mut got_any = false;
        for w in st.workers.iter_mut() {
            if w.gone.is_none() && !w.inflight.is_empty() {
                got_any |= w.read(&mut st.status);
                gone |= w.gone.is_some();
            }
        }
        self.publish_chunk_time(&st.status);
        if st.dispatch(&self.config, false) || gone {
            socket::wake(self.wake_write.as_fd());
        }
        got_any
    }

    /// Starts the first `n` workers, from the thread that builds the pool. (One after
    /// another: from two threads at once, or from the supervisor thread, a start took longer
    /// here, 0.5 ms instead of 0.2 ms.)
    pub(super) fn add_workers(&self, n: usize) -> crate::Result<()> {
        (0..n).try_for_each(|_| self.add_worker(false))
    }

    /// Starts one worker (`from_supervisor`: from the supervisor thread) and gives it the
    /// initializer.
    fn add_worker(&self, from_supervisor: bool) -> crate::Result<()> {
        let (ours, theirs) = socket::stream_pair()?;
        socket::set_nonblocking(ours.as_fd())?;
        let max_tasks = match self.config.max_tasks {
            0 => 0,
            _ => w_quota(&self.config),
        };
        let (n, close) = {
            let mut st = lock(&self.state);
            st.spawned += 1;
            let mut close: Vec<RawFd> = st.workers.iter().map(|w| w.sock.as_raw_fd()).collect();
            close.extend([
                self.wake_read.as_raw_fd(),
                self.wake_write.as_raw_fd(),
                ours.as_raw_fd(),
            ]);
            (st.spawned, close)
        };
        let claims = SharedMemory::new(std::array::from_fn(|_| AtomicU64::new(0)))?;
        let boot = Boot {
            sock: FdArg(theirs),
            max_tasks,
            claims: claims.clone(),
            close: Vec::new(),
        };
        // A worker dies with this process, however it ends: a replacement with the supervisor
        // thread, which outlives it (no watcher thread to start in the worker); a first worker
        // is a daemon, as the thread that builds the pool may end before it.
        let builder = Process::builder().name(format!("PoolWorker-{n}"));
        let process = if self.config.fork {
            let boot = Boot { close, ..boot };
            // SAFETY: `PoolBuilder::fork`'s caller promised that `fork_spawn`'s preconditions
            // hold whenever the pool starts a worker; the child runs only `worker::serve`.
            unsafe { builder.daemon(true).fork_spawn(worker::serve, boot)? }
        } else if from_supervisor {
            builder.dies_with_thread().spawn(worker::serve, boot)?
        } else {
            builder.daemon(true).spawn(worker::serve, boot)?
        };
        let mut worker = Worker {
            process,
            sock: ours,
            inflight: VecDeque::new(),
            next_seq: 1,
            claims,
            unsent: 0,
            sent: 0,
            inbuf: Vec::new(),
            front_since: Instant::now(),
            given: 0,
            timed_out: false,
            write_failed: false,
            quitting: false,
            standby: true,
            gone: None,
        };
        if let Some(init) = &self.config.init {
            let chunk = Chunk::new(1, None, init).map_err(Error::Serialization)?;
            worker.give(chunk);
        }
        let mut st = lock(&self.state);
        worker.flush();
        st.workers.push(worker);
        st.activate_standbys(&self.config);
        Ok(())
    }

    /// The supervisor thread's loop; returns once the pool is joined or terminated.
    pub(super) fn supervise(&self) {
        let mut last_liveness = Instant::now();
        loop {
            let (fds, timeout, spawn) = {
                let mut st = lock(&self.state);
                st.bury();
                if st.terminating {
                    return st.kill_all();
                }
                if st.joining && st.workers.is_empty() && st.status.queue.is_empty() {
                    return;
                }
                st.let_idle_go();
                st.dispatch(&self.config, false);
                let spawn = st.workers_wanted(&self.config);
                let mut fds = vec![(self.wake_read.as_raw_fd(), false)];
                let mut timeout = st.poll_timeout(&self.config);
                if self.assisting.load(Ordering::Relaxed) > 0 {
                    // A waiting thread reads the sockets: leave them to it (its reads wake us
                    // for a worker gone), look again within `ASSISTED_TICK`.
                    let tick = ASSISTED_TICK.as_millis() as i32;
                    timeout = if timeout < 0 { tick } else { timeout.min(tick) };
                } else {
                    fds.extend(
                        st.workers
                            .iter()
                            .map(|w| (w.sock.as_raw_fd(), w.has_unsent())),
                    );
                }
                (fds, timeout, spawn)
            };
            if spawn > 0 {
                for _ in 0..spawn {
                    if let Err(e) = self.add_worker(true) {
                        let mut st = lock(&self.state);
                        st.retry_spawn_at = Some(Instant::now() + SPAWN_RETRY);
                        if st.workers.is_empty() {
                            let error = TaskError::NoWorkers(e.to_string());
                            for chunk in st.status.queue.drain(..) {
                                chunk.fail(&error);
                            }
                        }
                        break;
                    }
                }
                continue;
            }
            // SAFETY: each raw fd is the wake pipe (owned by `self`) or a worker socket; only
            // this thread removes workers, so every one stays open until `poll` returns.
            let borrowed: Vec<(BorrowedFd<'_>, bool)> = fds
                .iter()
                .map(|&(fd, w)| (unsafe { BorrowedFd::borrow_raw(fd) }, w))
                .collect();
            let ready = match socket::poll(&borrowed, timeout) {
                Ok(r) => r,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            if ready[0].readable {
                socket::drain(self.wake_read.as_fd());
            }
            let mut guard = lock(&self.state);
            let st = &mut *guard;
            for (w, r) in st.workers.iter_mut().zip(&ready[1..]) {
                if r.readable || r.hangup {
                    w.read(&mut st.status);
                }
                if r.writable {
                    w.flush();
                }
            }
            self.publish_chunk_time(&st.status);
            st.enforce_timeouts(&self.config);
            st.check_liveness(&mut last_liveness);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        st.kill_all();
    }
}

impl State {
    /// Gives queued chunks to workers with room (idle ones first) and sends what the sockets
    /// take. From a `submitter`, sends only to workers holding fewer than [`MAILBOX`] sent
    /// chunks: the others answer soon, and whoever reads their replies sends the rest. True
    /// if the supervisor must look again: bytes are left to send, or a worker started a task
    /// that a timeout must watch.
    fn dispatch(&mut self, config: &Config, submitter: bool) -> bool {
        let mut wake = false;
        self.activate_standbys(config);
        let mailbox = self.status.mailbox();
        loop {
            while !self.status.queue.is_empty() {
                // The worker holding the fewest chunks (the first of them), if it has room.
                let Some(w) = self
                    .workers
                    .iter_mut()
                    .filter(|w| w.takes_chunks(config, mailbox))
                    .min_by_key(|w| w.inflight.len())
                else {
                    break;
                };
                if let Some(chunk) = self.status.queue.pop_front() {
                    wake |= w.inflight.is_empty() && config.task_timeout.is_some();
                    w.give(chunk);
                }
            }
            // Each round gives a taken-back chunk to an idle worker (it holds the fewest), so
            // there is one idle worker fewer each round.
            if !self.take_back_for_idle(config, mailbox) {
                break;
            }
        }
        for w in &mut self.workers {
            if w.has_unsent() && !(submitter && w.unsent >= MAILBOX) {
                w.flush();
                wake |= w.has_unsent();
            }
        }
        wake
    }

    /// When nothing is queued and a worker that takes chunks is idle, queues again half (rounded
    /// up) of the chunks the busiest worker holds and has not started; whether it took any.
    fn take_back_for_idle(&mut self, config: &Config, mailbox: usize) -> bool {
        let idle = |w: &Worker| w.inflight.is_empty() && w.takes_chunks(config, mailbox);
        if !self.status.queue.is_empty() || !self.workers.iter().any(idle) {
            return false;
        }
        let Some(busiest) = self
            .workers
            .iter_mut()
            .filter(|w| w.gone.is_none() && !w.timed_out)
            .max_by_key(|w| w.inflight.len())
        else {
            return false;
        };
        let waiting = busiest.inflight.len().saturating_sub(1);
        busiest.take_back(waiting.div_ceil(2), &mut self.status.queue)
    }

    /// Reaps workers that are gone; fails the chunk each held, requeues the ones behind it.
    fn bury(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            if self.workers[i].gone.is_none() {
                i += 1;
                continue;
            }
            let mut w = self.workers.swap_remove(i);
            let status = reap(&mut w.process);
            let error = match (&self.status.broken, w.gone, w.timed_out) {
                (Some(broken), ..) => broken.clone(),
                (_, _, true) => TaskError::Timeout,
                (_, Some(Gone::Malformed), _) => {
                    TaskError::BadResult("the worker sent a malformed reply".into())
                }
                _ => TaskError::WorkerDied(status),
            };
            let mut held = w.inflight.drain(..);
            match held.next() {
                Some(c) if c.sink.is_none() => {
                    self.status.init_deaths += 1;
                    if self.status.init_deaths >= INIT_DEATHS {
                        self.status.break_pool(TaskError::InitializerFailed(format!(
                            "{INIT_DEATHS} workers in a row died running it ({error})"
                        )));
                    }
                }
                Some(c) => c.fail(&error),
                None => {}
            }
            let rest: Vec<Chunk> = held.collect();
            for chunk in rest.into_iter().rev() {
                match &self.status.broken {
                    Some(e) => chunk.fail(e),
                    None => self.status.queue.push_front(chunk),
                }
            }
        }
    }

    /// Lets standby workers take tasks while fewer than `processes` workers serve.
    fn activate_standbys(&mut self, config: &Config) {
        let serving = self.workers.iter().filter(|w| w.serving(config)).count();
        let room = config.processes.saturating_sub(serving);
        for w in self.workers.iter_mut().filter(|w| w.standby).take(room) {
            w.standby = false;
        }
    }

    /// How many workers to start now: one for each worker missing or given its last chunk
    /// (its successor starts while it runs that chunk, as a standby).
    fn workers_wanted(&self, config: &Config) -> usize {
        let idle_and_done = self.closed && self.status.queue.is_empty();
        if self.status.broken.is_some()
            || idle_and_done
            || self.retry_spawn_at.is_some_and(|t| Instant::now() < t)
        {
            return 0;
        }
        let staying = self.workers.iter().filter(|w| !w.at_quota(config)).count();
        config.processes.saturating_sub(staying)
    }

    /// When joining with nothing left to do, shuts every worker's socket: each exits at end of
    /// file.
    fn let_idle_go(&mut self) {
        if !self.joining || !self.status.queue.is_empty() {
            return;
        }
        if self.workers.iter().all(|w| w.inflight.is_empty()) {
            for w in self.workers.iter_mut().filter(|w| !w.quitting) {
                socket::shutdown_write(w.sock.as_fd());
                w.quitting = true;
            }
        }
    }

    /// Milliseconds until the next task deadline or spawn retry (`-1`: none).
    fn poll_timeout(&self, config: &Config) -> i32 {
        let mut next: Option<Instant> = self.retry_spawn_at;
        if self.workers.iter().any(|w| !w.inflight.is_empty()) {
            let at = Instant::now() + LIVENESS;
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if let Some(limit) = config.task_timeout {
            for w in self.workers.iter().filter(|w| !w.timed_out) {
                // A limit beyond what `Instant` can represent never expires.
                if let Some(at) = w
                    .inflight
                    .front()
                    .and_then(|c| w.front_since.checked_add(limit.saturating_mul(c.count)))
                {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        match next {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // Round up, so a wake-up never comes before the deadline.
                (left.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
            }
        }
    }

    /// Every [`LIVENESS`], marks gone each worker holding tasks whose process ended, after
    /// reading what it sent before it died.
    fn check_liveness(&mut self, last: &mut Instant) {
        if last.elapsed() < LIVENESS {
            return;
        }
        *last = Instant::now();
        for w in &mut self.workers {
            if w.gone.is_none() && !w.inflight.is_empty() && !w.process.is_alive() {
                w.read(&mut self.status);
                w.gone.get_or_insert(Gone::Ended);
            }
        }
    }

    /// Kills each worker whose current chunk ran past its time.
    fn enforce_timeouts(&mut self, config: &Config) {
        let Some(limit) = config.task_timeout else {
            return;
        };
        let now = Instant::now();
        for w in self.workers.iter_mut().filter(|w| !w.timed_out) {
            if let Some(c) = w.inflight.front() {
                let expired = w
                    .front_since
                    .checked_add(limit.saturating_mul(c.count))
                    .is_some_and(|at| now >= at);
                if c.sink.is_some() && expired {
                    w.timed_out = true;
                    let _ = w.process.kill();
                }
            }
        }
    }

    /// Kills and reaps every worker; fails every chunk not answered.
    fn kill_all(&mut self) {
        for w in &self.workers {
            let _ = w.process.kill();
        }
        for mut w in self.workers.drain(..) {
            reap(&mut w.process);
            for chunk in w.inflight.drain(..) {
                chunk.fail(&TaskError::Closed);
            }
        }
        for chunk in self.status.queue.drain(..) {
            chunk.fail(&TaskError::Closed);
        }
    }
}

/// Frames a worker may be given under `max_tasks_per_child` (the initializer counts).
fn w_quota(config: &Config) -> u64 {
    config.max_tasks + u64::from(config.init.is_some())
}

/// Waits for a worker that is gone or was killed, and says how it ended.
fn reap(process: &mut Process<()>) -> ExitStatus {
    if let Err(Error::Timeout) = process.join_timeout(Duration::from_secs(5)) {
        // Its socket closed but it still runs: it cannot serve any more.
        let _ = process.kill();
        let _ = process.join_timeout(Duration::from_secs(5));
    }
    // Unknown (still running after the kill, or the OS could not say): report it as killed.
    process
        .exit_status()
        .ok()
        .flatten()
        .unwrap_or(ExitStatus::Signaled(libc::SIGKILL))
}
