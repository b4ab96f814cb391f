//! Entry points for the fuzz targets in `fuzz/` (compiled only under `--cfg fuzzing`, which
//! cargo-fuzz sets): rings on the heap, their operations, and their shared bytes to corrupt.
//! Not part of the crate's API.

use super::mpmc::HeapMpmc;
use super::peer::OsEnv;
use super::ring::Wait;
use super::spsc::{End, EndState, HeapSpsc, SpscConsumer, SpscProducer, release_end, with_end};
pub use super::{BatchError, PopError, PushError, RoleError};
use std::time::Duration;

/// An MPMC ring of `u64` on the heap.
pub struct Mpmc {
    q: HeapMpmc<u64>,
    offsets: Vec<usize>,
}

impl Mpmc {
    /// A ring of `capacity` whose positions start `laps` laps before the 40-bit wrap.
    pub fn new(capacity: usize, laps: u64) -> Self {
        let q = HeapMpmc::near_wrap(capacity, laps);
        let offsets = q.state_offsets();
        Self { q, offsets }
    }
    /// `try_push`.
    pub fn try_push(&self, v: u64) -> Result<(), PushError<u64>> {
        self.q.ring().push_in(&OsEnv, v, Wait::No)
    }
    /// `try_pop`.
    pub fn try_pop(&self) -> Result<u64, PopError> {
        self.q.ring().pop_in(&OsEnv, Wait::No)
    }
    /// `push_timeout`.
    pub fn push_timeout(&self, v: u64, t: Duration) -> Result<(), PushError<u64>> {
        self.q.ring().push_in(&OsEnv, v, Wait::after(t))
    }
    /// `pop_timeout`.
    pub fn pop_timeout(&self, t: Duration) -> Result<u64, PopError> {
        self.q.ring().pop_in(&OsEnv, Wait::after(t))
    }
    /// `len`.
    pub fn len(&self) -> usize {
        self.q.ring().len()
    }
    /// `is_empty`.
    pub fn is_empty(&self) -> bool {
        self.q.ring().is_empty()
    }
    /// `is_full`.
    pub fn is_full(&self) -> bool {
        self.q.ring().is_full()
    }
    /// `close`.
    pub fn close(&self) {
        self.q.ring().close()
    }
    /// Number of shared-state bytes (header and stamps) [`scribble`](Self::scribble) can hit.
    pub fn state_len(&self) -> usize {
        self.offsets.len()
    }
    /// Overwrites shared-state byte `i % state_len()` with `byte`.
    pub fn scribble(&self, i: usize, byte: u8) {
        self.q
            .region()
            .scribble(self.offsets[i % self.offsets.len()], byte);
    }
    /// Attaches anew, validating the (possibly corrupted) header.
    pub fn reattach(&self) -> bool {
        let r = self.q.region();
        // SAFETY: the region is live and initialised; attach validates whatever it holds.
        unsafe { super::mpmc::RawMpmc::attach::<u64>(r.as_ptr(), r.len()) }.is_ok()
    }
}

/// An SPSC ring of `u64` on the heap with both endpoints claimed.
pub struct Spsc {
    /// The claimed ends, resumed on the ring for each operation.
    producer: Option<EndState>,
    consumer: Option<EndState>,
    q: HeapSpsc<u64>,
}

impl Spsc {
    /// A ring of `capacity` with both ends claimed.
    pub fn new(capacity: usize) -> Self {
        let q = HeapSpsc::new(capacity);
        Self {
            producer: q.ring().producer().ok().map(SpscProducer::suspend),
            consumer: q.ring().consumer().ok().map(SpscConsumer::suspend),
            q,
        }
    }
    fn produce<R>(&mut self, f: impl FnOnce(&mut SpscProducer<'_, u64>) -> R) -> R {
        with_end(self.q.ring(), self.producer.as_mut().expect("producer"), f)
    }
    fn consume<R>(&mut self, f: impl FnOnce(&mut SpscConsumer<'_, u64>) -> R) -> R {
        with_end(self.q.ring(), self.consumer.as_mut().expect("consumer"), f)
    }
    /// Releases both endpoints.
    fn release(&mut self) {
        if let Some(p) = self.producer.take() {
            release_end::<_, SpscProducer<'_, u64>>(self.q.ring(), p);
        }
        if let Some(c) = self.consumer.take() {
            release_end::<_, SpscConsumer<'_, u64>>(self.q.ring(), c);
        }
    }
    /// `try_push`.
    pub fn try_push(&mut self, v: u64) -> Result<(), PushError<u64>> {
        self.produce(|p| p.push_in(v, Wait::No))
    }
    /// `push_slice`.
    pub fn push_slice(&mut self, src: &[u64]) -> Result<usize, BatchError> {
        self.produce(|p| p.push_slice(src))
    }
    /// `push_timeout`.
    pub fn push_timeout(&mut self, v: u64, t: Duration) -> Result<(), PushError<u64>> {
        self.produce(|p| p.push_in(v, Wait::after(t)))
    }
    /// `try_pop`.
    pub fn try_pop(&mut self) -> Result<u64, PopError> {
        self.consume(|c| c.pop_in(Wait::No))
    }
    /// `pop_into`.
    pub fn pop_into(&mut self, dst: &mut [u64]) -> Result<usize, BatchError> {
        self.consume(|c| c.pop_into(dst))
    }
    /// `pop_timeout`.
    pub fn pop_timeout(&mut self, t: Duration) -> Result<u64, PopError> {
        self.consume(|c| c.pop_in(Wait::after(t)))
    }
    /// Drops and re-claims both endpoints (they resume from the shared indices).
    pub fn reclaim(&mut self) -> Result<(), RoleError> {
        self.release();
        self.producer = Some(self.q.ring().producer()?.suspend());
        self.consumer = Some(self.q.ring().consumer()?.suspend());
        Ok(())
    }
    /// Whether both endpoints are held.
    pub fn has_endpoints(&self) -> bool {
        self.producer.is_some() && self.consumer.is_some()
    }
    /// `len`.
    pub fn len(&self) -> usize {
        self.q.ring().len()
    }
    /// `is_empty`.
    pub fn is_empty(&self) -> bool {
        self.q.ring().is_empty()
    }
    /// `close`.
    pub fn close(&self) {
        self.q.ring().close()
    }
    /// Number of shared-state bytes (the header) [`scribble`](Self::scribble) can hit.
    pub fn state_len(&self) -> usize {
        self.q.state_len()
    }
    /// Overwrites header byte `i % state_len()` with `byte`.
    pub fn scribble(&self, i: usize, byte: u8) {
        self.q.region().scribble(i % self.q.state_len(), byte);
    }
}

impl Drop for Spsc {
    fn drop(&mut self) {
        self.release();
    }
}
