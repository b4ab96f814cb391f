//! Results on their way back: [`AsyncResult`] and the lazy [`IMap`] iterator.

use super::Pool;
use super::error::TaskError;
use super::supervisor::{Batch, Shared, Sink};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Decodes one task's outcome into its result.
pub(super) fn decode<R: DeserializeOwned>(item: Result<&[u8], TaskError>) -> Result<R, TaskError> {
    postcard::from_bytes(item?).map_err(|e| TaskError::BadResult(e.to_string()))
}

/// `timeout` from now; `None` (no deadline: wait as long as it takes) when that instant is
/// beyond what `Instant` can represent (`Duration::MAX`), instead of panicking on overflow.
fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Turns every chunk of an `AsyncResult` (sorted by sequence number) into its value.
pub(super) type Finish<T, E> = fn(&[(u64, Batch)]) -> Result<T, E>;

/// The result of [`Pool::apply_async`] or [`Pool::map_async`], Python's `AsyncResult`: the
/// tasks run in the pool's workers while this handle waits for them.
pub struct AsyncResult<T, E = TaskError> {
    shared: Arc<Shared>,
    sink: Arc<Sink>,
    chunks: u64,
    finish: Finish<T, E>,
}

impl<T, E> std::fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T, E> AsyncResult<T, E> {
    pub(super) fn new(
        shared: Arc<Shared>,
        sink: Arc<Sink>,
        chunks: u64,
        finish: Finish<T, E>,
    ) -> Self {
        AsyncResult {
            shared,
            sink,
            chunks,
            finish,
        }
    }

    fn wait_deadline<U>(
        &self,
        deadline: Option<Instant>,
        then: impl Fn(&[(u64, Batch)]) -> U,
    ) -> Option<U> {
        self.sink.wait_for(&self.shared, deadline, |done| {
            (done.len() as u64 >= self.chunks).then(|| {
                let done = done.make_contiguous();
                done.sort_unstable_by_key(|c| c.0);
                then(done)
            })
        })
    }

    /// Waits for the result (every call decodes it again).
    ///
    /// # Errors
    /// The task's [`TaskError`] (for `map_async`, the first failed task's, with its index).
    pub fn get(&self) -> Result<T, E> {
        loop {
            // A wait without a deadline only returns with the result.
            if let Some(r) = self.wait_deadline(None, self.finish) {
                return r;
            }
        }
    }

    /// Like [`get`](Self::get), but `None` if the result is not ready within `timeout` (the
    /// tasks keep running; ask again). Python's `get(timeout)`.
    pub fn get_timeout(&self, timeout: Duration) -> Option<Result<T, E>> {
        self.wait_deadline(deadline_after(timeout), self.finish)
    }

    /// Like [`get_timeout`](Self::get_timeout), but `None` if the result is not ready at
    /// `deadline`.
    pub fn get_until(&self, deadline: Instant) -> Option<Result<T, E>> {
        self.wait_deadline(Some(deadline), self.finish)
    }

    /// Whether the result is there.
    pub fn ready(&self) -> bool {
        self.wait_deadline(Some(Instant::now()), |_| ()).is_some()
    }

    /// Waits until the result is there.
    pub fn wait(&self) {
        let _ = self.wait_deadline(None, |_| ());
    }

    /// Waits until the result is there or `timeout` passes; whether it is there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(deadline_after(timeout), |_| ())
            .is_some()
    }

    /// Waits until the result is there or `deadline` passes; whether it is there.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        self.wait_deadline(Some(deadline), |_| ()).is_some()
    }

    /// Whether every task returned (`None` while not ready). Python's `successful()`.
    pub fn successful(&self) -> Option<bool> {
        self.wait_deadline(Some(Instant::now()), |done| {
            done.iter().all(|(_, batch)| batch.all_returned())
        })
    }
}

/// The lazy iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: takes inputs only as
/// results are consumed, so at most a bounded number of tasks is in flight or waiting to be
/// read, whatever the length of the input (an endless iterator works).
pub struct IMap<'p, A, R, I> {
    pool: &'p Pool,
    f: fn(A) -> R,
    inputs: std::iter::Fuse<I>,
    chunksize: usize,
    ordered: bool,
    sink: Arc<Sink>,
    /// Chunks submitted so far (the next one's sequence number).
    submitted: u64,
    /// Chunks taken out of the sink.
    taken: u64,
    /// The chunk being handed out, and where its next outcome lies in it.
    current: Option<(Batch, usize)>,
    /// Most chunks submitted and not yet taken.
    limit: u64,
}

impl<A, R, I> std::fmt::Debug for IMap<'_, A, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("chunksize", &self.chunksize)
            .field("in_flight", &(self.submitted - self.taken))
            .finish()
    }
}

impl<'p, A, R, I> IMap<'p, A, R, I>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
    I: Iterator<Item = A>,
{
    pub(super) fn new(
        pool: &'p Pool,
        f: fn(A) -> R,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        IMap {
            pool,
            f,
            inputs: inputs.fuse(),
            chunksize: chunksize.max(1),
            ordered,
            sink: Arc::default(),
            submitted: 0,
            taken: 0,
            current: None,
            limit: pool.in_flight_limit(),
        }
    }

    /// Sets how many inputs go to a worker at once (Python's `chunksize`; default 1, or the
    /// pool's). Changing it mid-iteration applies to chunks not yet submitted.
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = chunksize.max(1);
        self
    }

    fn refill(&mut self) {
        while self.submitted - self.taken < self.limit {
            let args: Vec<A> = self.inputs.by_ref().take(self.chunksize).collect();
            if args.is_empty() {
                return;
            }
            self.pool
                .submit(self.f, &args, Arc::clone(&self.sink), self.submitted);
            self.submitted += 1;
        }
    }

    /// The next result, waiting at most until `deadline`: `Err(Error::Timeout)` if none is
    /// ready by then (iteration can go on), `Ok(None)` at the end.
    fn next_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<R, TaskError>>, crate::Error> {
        loop {
            if let Some((batch, at)) = &mut self.current {
                if let Some(item) = batch.next_item(at) {
                    return Ok(Some(decode(item)));
                }
                self.current = None;
            }
            let Some(batch) = self.next_chunk(deadline)? else {
                return Ok(None);
            };
            self.current = Some((batch, 0));
        }
    }

    /// The next chunk's outcomes (submitting more inputs first), waiting at most until
    /// `deadline`; `Ok(None)` at the end. Only while no chunk is being handed out.
    pub(super) fn next_chunk(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Batch>, crate::Error> {
        debug_assert!(self.current.is_none());
        self.refill();
        if self.taken == self.submitted {
            return Ok(None);
        }
        let want = self.taken;
        let ordered = self.ordered;
        let chunk = self.sink.wait_for(&self.pool.shared, deadline, |done| {
            let at = if ordered {
                done.iter().position(|c| c.0 == want)?
            } else if done.is_empty() {
                return None;
            } else {
                0
            };
            done.remove(at)
        });
        let Some((_, batch)) = chunk else {
            return Err(crate::Error::Timeout);
        };
        self.taken += 1;
        Ok(Some(batch))
    }

    /// Like `next()`, but gives up after `timeout`: `Err(Error::Timeout)` if no result is
    /// ready by then (the tasks keep running; call again), `Ok(None)` at the end.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout) as above.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<R, TaskError>>, crate::Error> {
        self.next_deadline(deadline_after(timeout))
    }

    /// Like `next()`, but gives up at `deadline`: `Err(Error::Timeout)` if no result is ready
    /// by then (the tasks keep running; call again), `Ok(None)` at the end.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout) as above.
    pub fn next_until(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Result<R, TaskError>>, crate::Error> {
        self.next_deadline(Some(deadline))
    }
}

impl<A, R, I> Iterator for IMap<'_, A, R, I>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
    I: Iterator<Item = A>,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_deadline(None).unwrap_or(None)
    }
}
