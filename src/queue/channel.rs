//! `Channel<T>`: variable-length messages between processes, Python's `multiprocessing.Queue`
//! of arbitrary objects, as length-prefixed records in a byte ring.
//!
//! # Layout
//!
//! ```text
//! payload:  ChannelHeader (meta | send side | recv side | not_empty | not_full), 128-aligned
//!           data: `cap` bytes (a multiple of 8)
//! send side: robust Mutex (held by one sender at a time) | tail | sent (message count)
//! recv side: robust Mutex (held by one receiver at a time) | head | received
//!
//! record at byte offset o (a multiple of 8):
//!   word u64 = RECORD << 32 | n     then n bytes of postcard, padded to 8
//!   word u64 = SKIP << 32           "the rest of the ring up to its end is unused: go to 0"
//! ```
//!
//! `head` and `tail` are byte positions that only grow (offset = position % cap); `tail - head`
//! bytes are in use. It is a single-producer single-consumer byte ring (the BipBuffer shape:
//! records never wrap; a record that does not fit before the end is preceded by a SKIP record)
//! whose two ends are each serialised by a robust process-shared mutex, so any number of
//! senders and receivers share it, and a sender copies in while a receiver copies out.
//!
//! A sender serialises with postcard straight into the free bytes after `tail` (one copy in),
//! writes the record word, then publishes with one Release store of `tail`. A receiver reads the
//! record word at `head` (after an Acquire load of `tail`), validates it, decodes straight from
//! the ring (one copy out), then commits with one Release store of `head`. Waiting for room or
//! for a message sleeps on a futex [`Signal`] *without* holding the lock.
//!
//! # What a killed peer can lose
//!
//! The single stores of `tail` and `head` are the commit points, so a process killed anywhere
//! leaves a consistent ring; the next locker gets `OwnerDied`, re-validates head and tail, makes
//! the lock consistent and goes on.
//! - A sender killed inside `send` loses that message (never returned `Ok`): either its `tail`
//!   store happened (the message is delivered) or not (its bytes are ignored).
//! - A receiver killed inside `recv` before its `head` store loses nothing: the message stays
//!   for the next receiver. Killed after that store (and before returning), it loses that one
//!   message.
//! - `len()` may be off by one after a killed peer (the counts are advisory).
//!
//! # Hostile peers
//!
//! Every position and record word read from shared memory is validated before use: head and
//! tail 8-aligned and at most `cap` apart, a record's tag known, its length within the bytes in
//! use and before the end of the ring. Anything else is `Corrupted`, never an out-of-bounds
//! access. A record that is well framed but does not decode is consumed and reported as
//! [`RecvError::Deserialize`]. Decoding allocates at most what the record's bytes describe
//! (serde caps pre-allocation), so a garbage length cannot cause a huge allocation.

use super::CachePadded;
use super::error::{RecvError, SendError};
use super::ring::{self, Common, Extent, Fill, KIND_CHANNEL, Place, RingHeader, Wait};
use crate::loom::futex::Deadline;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::sync::wait::Signal;
use crate::sync::{LockError, Mutex, MutexGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// Records start at multiples of this; the record word is this long.
const ALIGN: u64 = 8;
/// Bytes before a record's payload.
const WORD: u64 = 8;
/// Smallest ring: a record word and one payload word.
pub(crate) const MIN_CAPACITY: usize = 16;
/// Largest ring (1 TiB); a record's payload length must also fit in 32 bits.
pub(crate) const MAX_CAPACITY: usize = 1 << 40;

const RECORD: u64 = 0x4d50_5245; // "ERPM": a message of `n` bytes follows the word
const SKIP: u64 = 0x4d50_534b; // "KSPM": nothing until the end of the ring

#[inline]
const fn record_word(n: u32) -> u64 {
    (RECORD << 32) | n as u64
}
const SKIP_WORD: u64 = SKIP << 32;

/// Bytes a record with an `n`-byte payload takes, or `None` if `n` does not fit a record.
#[inline]
fn record_len(n: usize) -> Option<u64> {
    let n = u32::try_from(n).ok()?;
    Some(WORD + u64::from(n).next_multiple_of(ALIGN))
}

/// One end of the ring: its lock, the position only the lock holder writes, and a count.
#[repr(C)]
struct Side {
    lock: Mutex<()>,
    /// `tail` on the send side, `head` on the receive side: a byte position.
    pos: AtomicU64,
    /// Messages sent / received (advisory, for `len`).
    count: AtomicU64,
}

/// The channel's shared state; the data bytes follow at the common header's data offset.
#[repr(C)]
pub(crate) struct ChannelHeader {
    common: CachePadded<Common>,
    send: CachePadded<Side>,
    recv: CachePadded<Side>,
    not_empty: CachePadded<Signal>,
    not_full: CachePadded<Signal>,
}

// SAFETY: `#[repr(C)]`, atomics and mutexes made of atomics: valid for any bit pattern.
unsafe impl RingHeader for ChannelHeader {
    const KIND: u64 = KIND_CHANNEL;
    const NOT_ONE: &'static str = "not an initialised channel";
    fn common(&self) -> &Common {
        &self.common
    }
}

/// Why one attempt stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Halt {
    /// No room (send) or no message (receive).
    Blocked,
    /// A deadline passed (waiting for the lock or for room/messages).
    Timeout,
    /// Closed (sends), or closed and drained (receives).
    Closed,
    /// The encoded message can never fit.
    TooLarge {
        size: usize,
        max: usize,
    },
    /// The message did not encode.
    Serialize(String),
    /// A record did not decode (it was consumed).
    Deserialize(String),
    /// The caller's buffer is shorter than the next record's `needed` bytes (it was left in
    /// place).
    BufferTooShort {
        needed: usize,
    },
    Corrupted(&'static str),
}

/// What a record carries: a message encoded with postcard, or bytes as they are.
pub(crate) trait Payload {
    /// Encodes into `buf`: `Ok(n)` bytes written; `Err(None)` if `buf` is too short,
    /// `Err(Some(reason))` if the message cannot be encoded at all.
    fn encode_into(&self, buf: &mut [u8]) -> std::result::Result<usize, Option<String>>;
    /// The encoded length.
    fn encoded_len(&self) -> std::result::Result<usize, String>;
}

/// A serde message, encoded with postcard.
pub(crate) struct Postcard<'m, T: ?Sized>(pub(crate) &'m T);

impl<T: Serialize + ?Sized> Payload for Postcard<'_, T> {
    fn encode_into(&self, buf: &mut [u8]) -> std::result::Result<usize, Option<String>> {
        match postcard::to_slice(self.0, buf) {
            Ok(out) => Ok(out.len()),
            Err(postcard::Error::SerializeBufferFull) => Err(None),
            Err(e) => Err(Some(e.to_string())),
        }
    }
    fn encoded_len(&self) -> std::result::Result<usize, String> {
        postcard::serialize_with_flavor(self.0, postcard::ser_flavors::Size::default())
            .map_err(|e| e.to_string())
    }
}

/// Bytes sent as they are (`send_bytes`): the record is exactly these bytes.
pub(crate) struct Raw<'m>(pub(crate) &'m [u8]);

impl Payload for Raw<'_> {
    fn encode_into(&self, buf: &mut [u8]) -> std::result::Result<usize, Option<String>> {
        let dst = buf.get_mut(..self.0.len()).ok_or(None)?;
        dst.copy_from_slice(self.0);
        Ok(self.0.len())
    }
    fn encoded_len(&self) -> std::result::Result<usize, String> {
        Ok(self.0.len())
    }
}

/// Region sizing and setup.
pub(crate) struct RawChannel;

impl RawChannel {
    /// How full the channel at `ptr` is (messages, data bytes, closed), for inspection tools.
    ///
    /// # Safety
    /// `ptr` is valid for reads of `len` bytes while the call runs; other processes may write
    /// them at any time. `attach` and the calls made here only load (no lock is taken), so a
    /// read-only mapping is enough.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub(crate) unsafe fn peek(ptr: *mut u8, len: usize) -> std::result::Result<Fill, &'static str> {
        // SAFETY: the caller's contract (for `attach`, and the region mapped while `ring` is
        // used, here); the place is what `attach` returned for `ptr`; only loading methods are
        // called on the result.
        let ring = unsafe { ChannelRef::at(ptr, Self::attach(ptr, len)?) };
        Ok(Fill {
            len: ring.len() as u64,
            capacity: ring.capacity() as u64,
            closed: ring.is_closed(),
        })
    }

    /// Where the data bytes start.
    fn data_offset() -> usize {
        size_of::<ChannelHeader>().next_multiple_of(align_of::<ChannelHeader>())
    }

    /// The ring size used for a requested capacity (rounded up to a multiple of 8), or `None`.
    pub(crate) fn ring_capacity(capacity: usize) -> Option<usize> {
        let cap = capacity
            .max(MIN_CAPACITY)
            .checked_next_multiple_of(ALIGN as usize)?;
        (cap <= MAX_CAPACITY).then_some(cap)
    }

    /// Bytes a region for a ring of `cap` bytes needs.
    pub(crate) fn bytes_for(cap: usize) -> Option<usize> {
        Self::data_offset().checked_add(cap)
    }

    /// The alignment the region must have.
    pub(crate) fn align() -> usize {
        align_of::<ChannelHeader>()
    }

    /// Initialises an empty, open channel of `cap` data bytes at `ptr`.
    ///
    /// # Safety
    /// - `ptr` is valid for writes of `bytes_for(cap)` bytes and aligned to [`align`](Self::align);
    /// - nobody else accesses the region during the call.
    pub(crate) unsafe fn init(ptr: *mut u8, cap: usize) -> std::result::Result<(), &'static str> {
        if Self::ring_capacity(cap) != Some(cap) {
            return Err("invalid channel capacity");
        }
        debug_assert!(ptr as usize % Self::align() == 0);
        let side = || Side {
            lock: Mutex::new(()),
            pos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        };
        let hdr = ChannelHeader {
            common: CachePadded(Common::new(KIND_CHANNEL, cap, 1, 1, Self::data_offset())),
            send: CachePadded(side()),
            recv: CachePadded(side()),
            not_empty: CachePadded(Signal::new()),
            not_full: CachePadded(Signal::new()),
        };
        // SAFETY: the caller gives us `bytes_for(cap)` writable bytes at `ptr`, aligned for the
        // header, and exclusive access.
        unsafe { ring::init(ptr, Self::data_offset() + cap, hdr) };
        Ok(())
    }

    /// Attaches to a channel initialised by [`init`](Self::init) in a region of `len` bytes;
    /// returns where its data bytes lie (for [`ChannelRef::at`]).
    ///
    /// # Safety
    /// `ptr` is valid for reads and writes of `len` initialised bytes while the call runs;
    /// other processes may write them at any time.
    pub(crate) unsafe fn attach(
        ptr: *mut u8,
        len: usize,
    ) -> std::result::Result<Place, &'static str> {
        // A ring of `cap` bytes exists only for the capacities `init` takes.
        let extent = |cap| {
            let total = Self::bytes_for(cap)?;
            (Self::ring_capacity(cap) == Some(cap)).then_some(Extent {
                data_offset: Self::data_offset(),
                total,
            })
        };
        // SAFETY: the caller's contract.
        unsafe {
            ring::attach::<ChannelHeader>(ptr, len, Self::align(), (1, 1), MAX_CAPACITY, extent)
        }
    }
}

/// A channel attached in place; `Copy`, shared by every thread that uses it. Untyped: the
/// message type is the handle's.
#[derive(Clone, Copy)]
pub(crate) struct ChannelRef<'a> {
    hdr: &'a ChannelHeader,
    /// The data bytes: `cap` of them.
    data: *mut u8,
    /// Copied at attach: a peer rewriting the header cannot change it.
    cap: u64,
    _region: PhantomData<&'a [u8]>,
}

// SAFETY: shared words are atomics; the data bytes are only accessed by the holder of one side's
// lock, in the part of the ring that side owns (see `bytes`).
unsafe impl Send for ChannelRef<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for ChannelRef<'_> {}

impl<'a> ChannelRef<'a> {
    /// The channel at `place` in the region at `base`, without re-reading its header.
    ///
    /// # Safety
    /// - `place` is what [`RawChannel::attach`] returned for `base`;
    /// - the region stays mapped for `'a`.
    pub(crate) unsafe fn at(base: *mut u8, place: Place) -> Self {
        ChannelRef {
            // SAFETY: `attach` checked that the region holds a header and `cap` data bytes from
            // `offset` (caller); the header is atomics, valid for any bits; mapped for `'a`.
            hdr: unsafe { &*base.cast::<ChannelHeader>() },
            // SAFETY: as above, `offset + cap` is within the region.
            data: unsafe { base.add(place.offset) },
            cap: place.cap as u64,
            _region: PhantomData,
        }
    }

    /// The ring's data capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The largest encoded message the ring takes.
    pub(crate) fn max_message(&self) -> usize {
        (self.cap - WORD) as usize
    }

    /// `len` data bytes from offset `at`.
    ///
    /// # Safety
    /// `at + len <= cap`, and the caller holds the lock of the side that owns those bytes under
    /// the protocol: a sender the free bytes after `tail`, a receiver the used bytes after
    /// `head`. No honest peer touches them meanwhile; a hostile one can only change the bytes
    /// (they are plain `u8`s), and the receiver validates whatever it reads.
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes(&self, at: u64, len: u64) -> &mut [u8] {
        debug_assert!(at + len <= self.cap);
        // SAFETY: in bounds (caller); exclusive under the protocol (caller).
        unsafe { std::slice::from_raw_parts_mut(self.data.add(at as usize), len as usize) }
    }

    /// Reads the record word at `at`.
    ///
    /// # Safety
    /// As [`bytes`](Self::bytes) for the 8 bytes at `at` (a multiple of 8, below `cap`).
    unsafe fn read_word(&self, at: u64) -> u64 {
        // SAFETY: in bounds and 8-aligned (data is 128-aligned, `at` a multiple of 8).
        unsafe { self.data.add(at as usize).cast::<u64>().read() }
    }

    /// Writes the record word at `at`.
    ///
    /// # Safety
    /// As [`read_word`](Self::read_word).
    unsafe fn write_word(&self, at: u64, word: u64) {
        // SAFETY: as for `read_word`.
        unsafe { self.data.add(at as usize).cast::<u64>().write(word) }
    }

    /// Head and tail, validated: 8-aligned and at most `cap` apart. Returns `(head, tail)`.
    #[inline]
    fn positions(&self) -> std::result::Result<(u64, u64), Halt> {
        // Acquire on both: a sender sees the receivers' reads done before it overwrites
        // (pairs with the Release store of `head`); a receiver sees the record bytes (pairs
        // with the Release store of `tail`).
        let head = self.hdr.recv.pos.load(Ordering::Acquire);
        let tail = self.hdr.send.pos.load(Ordering::Acquire);
        if head % ALIGN != 0 || tail % ALIGN != 0 || tail.wrapping_sub(head) > self.cap {
            return Err(Halt::Corrupted("channel head and tail out of step"));
        }
        Ok((head, tail))
    }

    /// Locks one side, recovering from a holder that died.
    fn lock(
        &self,
        side: &'a Side,
        deadline: Option<Deadline>,
    ) -> std::result::Result<MutexGuard<'a, ()>, Halt> {
        let r = match deadline {
            Some(d) => side.lock.lock_deadline(d),
            None => side.lock.lock(),
        };
        match r {
            Ok(g) => Ok(g),
            Err(LockError::OwnerDied(mut g)) => {
                // The dead holder's only shared write that matters is one store of its side's
                // position, which either happened or not: both leave a consistent ring. Mark the
                // lock usable, then let the operation re-validate the positions.
                g.make_consistent();
                self.positions()?;
                Ok(g)
            }
            Err(LockError::Timeout) => Err(Halt::Timeout),
            // `RecursionLimit` comes only from a reentrant mutex; this is a plain one.
            Err(LockError::WouldBlock | LockError::RecursionLimit) => Err(Halt::Blocked),
            Err(LockError::NotRecoverable) => Err(Halt::Corrupted("channel lock not recoverable")),
        }
    }

    super::ring::ring_state!();

    /// Messages in the channel (approximate).
    pub(crate) fn len(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        let sent = self.hdr.send.count.load(Ordering::Relaxed);
        let received = self.hdr.recv.count.load(Ordering::Relaxed);
        (sent.wrapping_sub(received).min(self.cap / (WORD + ALIGN)) as usize).max(1)
    }

    /// Whether the channel looks empty.
    pub(crate) fn is_empty(&self) -> bool {
        match self.positions() {
            Ok((head, tail)) => {
                head == tail
                    || self.hdr.send.count.load(Ordering::Relaxed)
                        == self.hdr.recv.count.load(Ordering::Relaxed)
            }
            Err(_) => true,
        }
    }

    // ----- sending -----

    /// One attempt to write `msg`, holding the send lock. `size` caches the encoded length
    /// once it had to be measured.
    fn write_attempt<P: Payload + ?Sized>(
        &self,
        msg: &P,
        size: &mut Option<usize>,
    ) -> std::result::Result<(), Halt> {
        let cap = self.cap;
        loop {
            let (head, tail) = self.positions()?;
            let used = tail.wrapping_sub(head);
            let at = tail % cap;
            let to_end = cap - at;
            let free = cap - used;
            let avail = free.min(to_end);
            if size.is_none() && avail > WORD {
                // Optimistic: encode straight into the contiguous free bytes, at most the
                // longest record a word can describe (a larger message fails `record_len`).
                let room = (avail - WORD).min(u64::from(u32::MAX));
                // SAFETY: `at + WORD + room <= at + avail <= cap`; the `free` bytes after
                // `tail` belong to the holder of the send lock (receivers stop at `tail`).
                let buf = unsafe { self.bytes(at + WORD, room) };
                match msg.encode_into(buf) {
                    Ok(len) => {
                        self.commit(tail, at, len);
                        return Ok(());
                    }
                    Err(None) => {}
                    Err(Some(e)) => return Err(Halt::Serialize(e)),
                }
            }
            let n = match *size {
                Some(n) => n,
                None => {
                    let n = msg.encoded_len().map_err(Halt::Serialize)?;
                    *size = Some(n);
                    n
                }
            };
            let too_large = Halt::TooLarge {
                size: n,
                max: self.max_message(),
            };
            let r = record_len(n).ok_or(too_large)?;
            if r > cap {
                return Err(Halt::TooLarge {
                    size: n,
                    max: self.max_message(),
                });
            }
            if r <= avail {
                // SAFETY: as above; `at + WORD + n <= at + r <= at + avail <= cap`.
                let buf = unsafe { self.bytes(at + WORD, n as u64) };
                return match msg.encode_into(buf) {
                    Ok(len) => {
                        self.commit(tail, at, len);
                        Ok(())
                    }
                    Err(e) => Err(Halt::Serialize(format!(
                        "the message encoded to another size on a second pass: {}",
                        e.unwrap_or_default()
                    ))),
                };
            }
            if r <= to_end || free < to_end {
                // Fits before the end once receivers free room, or the bytes up to the end
                // are not free yet. A SKIP record at the head frees room without any message
                // being taken: consume it if no receiver is busy, rather than wait for one.
                if self.consume_skips_for_receivers()? {
                    continue;
                }
                return Err(Halt::Blocked);
            }
            // The record must start at offset 0: fill the rest of the ring with a SKIP record
            // and publish it on its own, so receivers consume it and free the start.
            // SAFETY: `to_end >= 8` bytes at `at` are free (`free >= to_end`) and ours.
            unsafe { self.write_word(at, SKIP_WORD) };
            crate::crash::point("channel.send.skip");
            // Release: the SKIP word is visible to the receiver that sees the new tail.
            self.hdr
                .send
                .pos
                .store(tail.wrapping_add(to_end), Ordering::Release);
            self.hdr.not_empty.notify_all();
        }
    }

    /// Writes the record word for an `n`-byte payload already at `at + WORD`, and publishes.
    fn commit(&self, tail: u64, at: u64, n: usize) {
        // `n` fits: it was encoded into fewer than `cap - WORD` bytes.
        let r = record_len(n).unwrap_or(self.cap);
        // SAFETY: `at` is a multiple of 8 below `cap`, in the free bytes we own.
        unsafe { self.write_word(at, record_word(n as u32)) };
        crate::crash::point("channel.send.written");
        // Counted before publishing: a sender killed in between makes `len` read one high.
        let sent = self.hdr.send.count.load(Ordering::Relaxed);
        self.hdr
            .send
            .count
            .store(sent.wrapping_add(1), Ordering::Relaxed);
        // Release: the record is visible to the receiver that sees the new tail.
        self.hdr
            .send
            .pos
            .store(tail.wrapping_add(r), Ordering::Release);
        crate::crash::point("channel.send.published");
        self.hdr.not_empty.notify_all();
    }

    pub(crate) fn send_with<T: Serialize + ?Sized>(
        &self,
        msg: &T,
        wait: Wait,
    ) -> std::result::Result<(), Halt> {
        self.send_payload(&Postcard(msg), wait)
    }

    /// Sends `bytes` as one record, as they are (Python's `send_bytes`).
    pub(crate) fn send_bytes_with(
        &self,
        bytes: &[u8],
        wait: Wait,
    ) -> std::result::Result<(), Halt> {
        self.send_payload(&Raw(bytes), wait)
    }

    fn send_payload<P: Payload + ?Sized>(
        &self,
        msg: &P,
        wait: Wait,
    ) -> std::result::Result<(), Halt> {
        let mut size = None;
        self.locked(&self.hdr.send, &self.hdr.not_full, wait, || {
            if self.is_closed() {
                return Err(Halt::Closed);
            }
            self.write_attempt(msg, &mut size)
        })
    }

    /// Runs `attempt` under `side`'s lock, sleeping (without the lock, so that other callers'
    /// `try_` calls and timeouts work) on `signal` while it is blocked, per `wait`.
    fn locked<R>(
        &self,
        side: &'a Side,
        signal: &Signal,
        wait: Wait,
        mut attempt: impl FnMut() -> std::result::Result<R, Halt>,
    ) -> std::result::Result<R, Halt> {
        let deadline = wait.deadline();
        let mut once = || {
            let _guard = self.lock(side, deadline)?;
            attempt()
        };
        // The first attempt here: one that need not wait costs what a `Wait::No` one does.
        match (once(), wait) {
            (Err(Halt::Blocked), Wait::Until(_)) => signal
                .block_on(deadline, false, once, |h| matches!(h, Halt::Blocked))
                .map_err(|h| h.unwrap_or(Halt::Timeout)),
            (tried, _) => tried,
        }
    }

    // ----- receiving -----

    /// Consumes SKIP records at `head`, holding the receive lock. `Ok(Some(..))`: a record of
    /// `n` bytes starts at offset `at` of position `head`; `Ok(None)`: nothing to read.
    fn next_record(&self) -> std::result::Result<Option<(u64, u64, u64)>, Halt> {
        loop {
            let (head, tail) = self.positions()?;
            let used = tail.wrapping_sub(head);
            if used == 0 {
                return Ok(None);
            }
            let at = head % self.cap;
            let to_end = self.cap - at;
            if used < WORD {
                return Err(Halt::Corrupted("channel holds a partial record word"));
            }
            // SAFETY: `at` is a multiple of 8 below `cap`, within the used bytes after `head`,
            // which belong to the receive-lock holder.
            let word = unsafe { self.read_word(at) };
            match word >> 32 {
                SKIP if word == SKIP_WORD => {
                    if to_end > used {
                        return Err(Halt::Corrupted("SKIP record beyond the sent bytes"));
                    }
                    // Release: pairs with the senders' Acquire of `head`.
                    self.hdr
                        .recv
                        .pos
                        .store(head.wrapping_add(to_end), Ordering::Release);
                    self.hdr.not_full.notify_all();
                }
                RECORD => {
                    let n = word & 0xffff_ffff;
                    let r = record_len(n as usize).unwrap_or(u64::MAX);
                    if r > used || r > to_end {
                        return Err(Halt::Corrupted("record length beyond the sent bytes"));
                    }
                    return Ok(Some((head, at, n)));
                }
                _ => return Err(Halt::Corrupted("bad record word")),
            }
        }
    }

    /// For a blocked sender: consumes SKIP records at the head if the receive lock is free now
    /// (never waits for it). Returns whether the head moved.
    fn consume_skips_for_receivers(&self) -> std::result::Result<bool, Halt> {
        let _guard = match self.hdr.recv.lock.try_lock() {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) => {
                g.make_consistent();
                g
            }
            Err(_) => return Ok(false),
        };
        let (before, _) = self.positions()?;
        let after = match self.next_record()? {
            Some((head, _, _)) => head,
            None => self.positions()?.0,
        };
        Ok(after != before)
    }

    /// One attempt to take a message, holding the receive lock.
    fn read_attempt<T: DeserializeOwned>(&self) -> std::result::Result<T, Halt> {
        self.take_attempt(|bytes| {
            Some(match postcard::take_from_bytes::<T>(bytes) {
                Ok((v, [])) => Ok(v),
                Ok((_, rest)) => Err(Halt::Deserialize(format!(
                    "{} bytes left over after the message",
                    rest.len()
                ))),
                Err(e) => Err(Halt::Deserialize(e.to_string())),
            })
        })
    }

    /// One attempt to take a record, holding the receive lock: `take` reads its bytes and
    /// says what the receive returns; the record is consumed unless `take` returns `None`
    /// (then the attempt fails with `BufferTooShort`).
    fn take_attempt<R>(
        &self,
        take: impl FnOnce(&[u8]) -> Option<std::result::Result<R, Halt>>,
    ) -> std::result::Result<R, Halt> {
        let Some((head, at, n)) = self.next_record()? else {
            return Err(Halt::Blocked);
        };
        // SAFETY: `at + WORD + n <= at + r <= cap` (checked in `next_record`); the bytes are
        // between head and tail, ours under the receive lock.
        let bytes = unsafe { self.bytes(at + WORD, n) };
        let Some(decoded) = take(bytes) else {
            return Err(Halt::BufferTooShort { needed: n as usize });
        };
        crate::crash::point("channel.recv.decoded");
        let r = record_len(n as usize).unwrap_or(self.cap);
        // Release: our reads of the record happen before a sender overwrites it.
        self.hdr
            .recv
            .pos
            .store(head.wrapping_add(r), Ordering::Release);
        crate::crash::point("channel.recv.committed");
        let received = self.hdr.recv.count.load(Ordering::Relaxed);
        self.hdr
            .recv
            .count
            .store(received.wrapping_add(1), Ordering::Relaxed);
        self.hdr.not_full.notify_all();
        decoded
    }

    /// A read attempt that reports `Closed` once the channel is closed and drained.
    fn read_or_closed<T: DeserializeOwned>(&self) -> std::result::Result<T, Halt> {
        self.or_closed(|| self.read_attempt())
    }

    /// Runs `attempt`, and once more if it found nothing and the channel is closed: `Closed`
    /// if that finds nothing either.
    fn or_closed<R>(
        &self,
        mut attempt: impl FnMut() -> std::result::Result<R, Halt>,
    ) -> std::result::Result<R, Halt> {
        match attempt() {
            // Closed counts only once an attempt started after we saw the flag finds nothing.
            Err(Halt::Blocked) if self.is_closed() => match attempt() {
                Err(Halt::Blocked) => Err(Halt::Closed),
                other => other,
            },
            other => other,
        }
    }

    pub(crate) fn recv_with<T: DeserializeOwned>(
        &self,
        wait: Wait,
    ) -> std::result::Result<T, Halt> {
        self.locked(&self.hdr.recv, &self.hdr.not_empty, wait, || {
            self.read_or_closed()
        })
    }

    /// Takes the next record's bytes as they are (Python's `recv_bytes`): a message sent with
    /// `send` comes out as its postcard encoding.
    pub(crate) fn recv_bytes_with(&self, wait: Wait) -> std::result::Result<Vec<u8>, Halt> {
        self.locked(&self.hdr.recv, &self.hdr.not_empty, wait, || {
            self.or_closed(|| self.take_attempt(|bytes| Some(Ok(bytes.to_vec()))))
        })
    }

    /// Copies the next record's bytes into the front of `buf` and returns their length
    /// (Python's `recv_bytes_into`); `BufferTooShort` leaves a longer record in place.
    pub(crate) fn recv_bytes_into_with(
        &self,
        buf: &mut [u8],
        wait: Wait,
    ) -> std::result::Result<usize, Halt> {
        self.locked(&self.hdr.recv, &self.hdr.not_empty, wait, || {
            self.or_closed(|| {
                self.take_attempt(|bytes| {
                    let dst = buf.get_mut(..bytes.len())?;
                    dst.copy_from_slice(bytes);
                    Some(Ok(bytes.len()))
                })
            })
        })
    }

    /// Whether a message (or the end of a closed channel) is ready, waiting per `wait`.
    pub(crate) fn ready(&self, wait: Wait) -> std::result::Result<bool, Halt> {
        let r = self.locked(&self.hdr.recv, &self.hdr.not_empty, wait, || {
            match self.next_record()? {
                Some(_) => Ok(()),
                None if self.is_closed() => Ok(()),
                None => Err(Halt::Blocked),
            }
        });
        match r {
            Ok(()) => Ok(true),
            Err(Halt::Blocked | Halt::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The public error of a send that stopped with `h` while waiting per `wait`: a full ring is
/// `Full` if the caller would not wait, else `Timeout`.
pub(crate) fn send_error<T>(h: Halt, value: T, wait: Wait) -> SendError<T> {
    match h {
        Halt::Blocked if matches!(wait, Wait::No) => SendError::Full(value),
        Halt::Blocked => SendError::Timeout(value),
        Halt::Timeout => SendError::Timeout(value),
        Halt::Closed => SendError::Closed(value),
        Halt::TooLarge { size, max } => SendError::TooLarge { value, size, max },
        Halt::Serialize(reason) => SendError::Serialize { value, reason },
        Halt::Deserialize(_) | Halt::BufferTooShort { .. } => {
            SendError::Corrupted("unexpected decode error while sending")
        }
        Halt::Corrupted(what) => SendError::Corrupted(what),
    }
}

/// The public error of a receive that stopped with `h` while waiting per `wait`: an empty ring
/// is `Empty` if the caller would not wait, else `Timeout`.
pub(crate) fn recv_error(h: Halt, wait: Wait) -> RecvError {
    match h {
        Halt::Blocked if matches!(wait, Wait::No) => RecvError::Empty,
        Halt::Blocked => RecvError::Timeout,
        Halt::Timeout => RecvError::Timeout,
        Halt::Closed => RecvError::Closed,
        Halt::Deserialize(why) => RecvError::Deserialize(why),
        Halt::BufferTooShort { needed } => RecvError::BufferTooShort { needed },
        Halt::Corrupted(what) => RecvError::Corrupted(what),
        Halt::TooLarge { .. } | Halt::Serialize(_) => {
            RecvError::Corrupted("unexpected encode error while receiving")
        }
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
