//! The header at the start of every typed object's segment.
//!
//! It lets `open` tell a segment of the expected type from one of another type
//! ([`Error::TypeMismatch`]), from a truncated or garbage file ([`Error::Corrupted`]), and from one
//! whose creator is still initialising it (wait, bounded by the init timeout).
//!
//! Every field is an atomic: a peer may write the header while we read it, and reading it through
//! atomics makes that a wrong value at worst, never a data race. The creator writes every field,
//! then publishes with a release store of `init_state = READY`; an opener acquires it first.

use crate::error::{Error, Result};
use crate::sys::time::Deadline;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// "MPROCSEG" in little-endian bytes.
const MAGIC: u64 = u64::from_le_bytes(*b"MPROCSEG");
/// Bumped whenever the header or any object layout changes incompatibly.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes reserved for the header; payloads start at a multiple of this (or of their alignment).
pub(crate) const HEADER_LEN: usize = 256;
const TYPE_NAME_WORDS: usize = 16;
const TYPE_NAME_CAP: usize = TYPE_NAME_WORDS * 8;

/// `init_state` values.
const UNINIT: u32 = 0; // fresh zero-filled file: the creator has not published yet
const READY: u32 = 2; // every field and the payload are initialised

/// `flags` bits.
const FLAG_PERSISTED: u32 = 1; // `persist()` was called: stale-segment cleanup leaves it alone

/// The kind of object a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[cfg_attr(multiproc_loom, allow(dead_code))] // the queue kinds: no handles under loom
pub(crate) enum Kind {
    Shared = 1,
    Value = 2,
    Array = 3,
    Queue = 4,
    SpscQueue = 5,
    Channel = 6,
    /// The unfinished-task counter of a `JoinableQueue` (its ring is a `Queue` segment).
    JoinableQueue = 7,
    /// A [`Heap`](crate::heap::Heap): an allocator and the objects in it.
    Heap = 8,
    /// The unfinished-task counter of a `JoinableChannel` (its messages are in a `Channel`
    /// segment).
    JoinableChannel = 9,
}

/// A published header's fields (see [`Header::summary`]).
pub(crate) struct HeaderSummary {
    /// `None` for a kind this build does not know.
    pub(crate) kind: Option<&'static str>,
    pub(crate) type_label: String,
    #[cfg_attr(multiproc_loom, allow(dead_code))] // read by the object-state inspection
    pub(crate) payload_offset: u64,
    pub(crate) payload_len: u64,
    pub(crate) creator_pid: u32,
    pub(crate) creator_start_time: u64,
    pub(crate) persisted: bool,
}

impl Kind {
    /// The kind stored as `raw`, if it is one (the list names every variant).
    fn from_raw(raw: u32) -> Option<Kind> {
        [
            Kind::Shared,
            Kind::Value,
            Kind::Array,
            Kind::Queue,
            Kind::SpscQueue,
            Kind::Channel,
            Kind::JoinableQueue,
            Kind::Heap,
            Kind::JoinableChannel,
        ]
        .into_iter()
        .find(|k| *k as u32 == raw)
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Shared => "Shared",
            Kind::Value => "Value",
            Kind::Array => "Array",
            Kind::Queue => "Queue",
            Kind::SpscQueue => "SpscQueue",
            Kind::Channel => "Channel",
            Kind::JoinableQueue => "JoinableQueue",
            Kind::Heap => "Heap",
            Kind::JoinableChannel => "JoinableChannel",
        }
    }
}

/// What an object's segment must say about its contents.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) kind: Kind,
    /// `Kind<ElementType>`, shown in type mismatch errors.
    pub(crate) type_label: String,
    pub(crate) elem_size: usize,
    pub(crate) elem_align: usize,
    pub(crate) fingerprint: u64,
}

impl Spec {
    /// The spec of an object of `kind` over elements of type `E`, whose payload unit is `U` (the
    /// element itself, or what wraps it, like the mutex of a `Value`).
    pub(crate) fn new<E, U>(kind: Kind) -> Spec {
        let type_label = format!("{}<{}>", kind.label(), std::any::type_name::<E>());
        let (elem_size, elem_align) = (std::mem::size_of::<U>(), std::mem::align_of::<U>());
        let fingerprint = fnv1a(&[
            type_label.as_bytes(),
            &(elem_size as u64).to_le_bytes(),
            &(elem_align as u64).to_le_bytes(),
        ]);
        Spec {
            kind,
            type_label,
            elem_size,
            elem_align,
            fingerprint,
        }
    }

    /// Where the payload starts: after the header, aligned for the element type.
    pub(crate) fn payload_offset(&self) -> usize {
        HEADER_LEN.next_multiple_of(self.elem_align.max(1))
    }
}

pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The header as it lies in shared memory.
#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    init_state: AtomicU32,
    kind: AtomicU32,
    type_name_len: AtomicU32,
    elem_size: AtomicU64,
    elem_align: AtomicU64,
    fingerprint: AtomicU64,
    payload_offset: AtomicU64,
    payload_len: AtomicU64,
    creator_pid: AtomicU32,
    /// `FLAG_PERSISTED`: the creator asked for the name to outlive it.
    flags: AtomicU32,
    creator_start_time: AtomicU64,
    type_name: [AtomicU64; TYPE_NAME_WORDS],
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_LEN);

impl Header {
    /// Writes every field for `spec` and `payload_len`, leaving `init_state` unpublished.
    pub(crate) fn write(&self, spec: &Spec, payload_len: usize) {
        let r = Ordering::Relaxed;
        self.magic.store(MAGIC, r);
        self.version.store(FORMAT_VERSION, r);
        self.kind.store(spec.kind as u32, r);
        self.elem_size.store(spec.elem_size as u64, r);
        self.elem_align.store(spec.elem_align as u64, r);
        self.fingerprint.store(spec.fingerprint, r);
        self.payload_offset.store(spec.payload_offset() as u64, r);
        self.payload_len.store(payload_len as u64, r);
        let (pid, start) = crate::sys::proc::current_process_identity();
        self.creator_pid.store(pid, r);
        self.creator_start_time.store(start, r);
        let name = spec.type_label.as_bytes();
        let name = &name[..name.len().min(TYPE_NAME_CAP)];
        self.type_name_len.store(name.len() as u32, r);
        let mut padded = [0u8; TYPE_NAME_CAP];
        padded[..name.len()].copy_from_slice(name);
        for (word, chunk) in self.type_name.iter().zip(padded.chunks_exact(8)) {
            word.store(u64::from_le_bytes(chunk.try_into().unwrap_or_default()), r);
        }
    }

    /// Publishes the header and payload: everything written before is visible to any opener that
    /// sees `READY`.
    pub(crate) fn publish(&self) {
        self.init_state.store(READY, Ordering::Release);
    }

    /// Waits (bounded) for the creator to publish, then checks the header against `spec` and the
    /// mapping length. Returns the payload length.
    pub(crate) fn validate(
        &self,
        spec: &Spec,
        mapped_len: usize,
        init_timeout: Duration,
    ) -> Result<usize> {
        self.wait_ready(init_timeout)?;
        let r = Ordering::Relaxed;
        if self.magic.load(r) != MAGIC {
            return Err(Error::Corrupted("not a multiproc segment (bad magic)"));
        }
        if self.version.load(r) != FORMAT_VERSION {
            return Err(Error::Corrupted("unsupported segment format version"));
        }
        let matches = self.kind.load(r) == spec.kind as u32
            && self.elem_size.load(r) == spec.elem_size as u64
            && self.elem_align.load(r) == spec.elem_align as u64
            && self.fingerprint.load(r) == spec.fingerprint;
        if !matches {
            return Err(Error::TypeMismatch {
                expected: spec.type_label.clone(),
                found: self.type_label(),
            });
        }
        if self.payload_offset.load(r) != spec.payload_offset() as u64 {
            return Err(Error::Corrupted("payload offset disagrees with the type"));
        }
        let payload_len = self.payload_len.load(r);
        let end = (spec.payload_offset() as u64).checked_add(payload_len);
        match end {
            Some(end) if end <= mapped_len as u64 => Ok(payload_len as usize),
            _ => Err(Error::Corrupted(
                "payload extends past the end of the segment (truncated?)",
            )),
        }
    }

    fn wait_ready(&self, init_timeout: Duration) -> Result<()> {
        let deadline = Deadline::after(init_timeout);
        let mut pause = Duration::from_micros(20);
        loop {
            match self.init_state.load(Ordering::Acquire) {
                READY => return Ok(()),
                UNINIT if !deadline.has_passed() => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                UNINIT => {
                    return Err(Error::Corrupted(
                        "segment was never initialised (its creator died or stalled)",
                    ));
                }
                _ => return Err(Error::Corrupted("bad init state")),
            }
        }
    }

    /// The creator's pid and process start time (0 when unknown).
    pub(crate) fn creator(&self) -> (u32, u64) {
        (
            self.creator_pid.load(Ordering::Relaxed),
            self.creator_start_time.load(Ordering::Relaxed),
        )
    }

    /// Records that the name should outlive its creator.
    pub(crate) fn mark_persisted(&self) {
        self.flags.fetch_or(FLAG_PERSISTED, Ordering::Relaxed);
    }

    /// Whether the creator asked for the name to outlive it.
    pub(crate) fn is_persisted(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & FLAG_PERSISTED != 0
    }

    /// Whether the first bytes look like a published header (magic and init state), for scans.
    pub(crate) fn looks_published(&self) -> bool {
        self.magic.load(Ordering::Relaxed) == MAGIC
            && self.init_state.load(Ordering::Acquire) == READY
    }

    /// What the header says, for inspection tools: `None` unless it is a published header of
    /// this format. Every field is a snapshot a peer may change at any time.
    pub(crate) fn summary(&self) -> Option<HeaderSummary> {
        let r = Ordering::Relaxed;
        if !self.looks_published() || self.version.load(r) != FORMAT_VERSION {
            return None;
        }
        let (creator_pid, creator_start_time) = self.creator();
        Some(HeaderSummary {
            kind: Kind::from_raw(self.kind.load(r)).map(Kind::label),
            type_label: self.type_label(),
            payload_offset: self.payload_offset.load(r),
            payload_len: self.payload_len.load(r),
            creator_pid,
            creator_start_time,
            persisted: self.is_persisted(),
        })
    }

    fn type_label(&self) -> String {
        let len = (self.type_name_len.load(Ordering::Relaxed) as usize).min(TYPE_NAME_CAP);
        let bytes: Vec<u8> = self
            .type_name
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        String::from_utf8_lossy(&bytes[..len]).into_owned()
    }
}
