//! Looking at named segments from outside, the way `ipcs` does: what the `multiproc` command-line
//! tool's `ls` and `info` print.
//!
//! Only headers are read (through atomics, from a read-only mapping), so inspecting never
//! disturbs the processes using a segment. Files of other users are listed without their header.
//! [`segment_info`] also reads the object's state ([`ObjectState`]) the same way: loads only,
//! never a lock taken.

use super::cleanup::creator_alive;
use super::header::{HEADER_LEN, Header, HeaderSummary};
use super::segment::{TEMP_PREFIX, parse_temp_name, validate_name};
use crate::error::{Error, Result};
use crate::sys::shm as os;
use std::os::fd::AsFd;

/// What a named segment in `/dev/shm` is and who made it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// Its name in `/dev/shm`.
    pub name: String,
    /// Its size in bytes.
    pub len: u64,
    /// The object it holds (`"Value"`, `"Queue"`, ...), or `None` for a raw [`Segment`](super::Segment),
    /// another program's file (Python's `SharedMemory`, say) or one this process may not read.
    pub kind: Option<String>,
    /// The type it was created with (`Value<u64>`), for multiproc objects.
    pub type_name: Option<String>,
    /// Payload bytes after the header, for multiproc objects.
    pub payload_len: Option<u64>,
    /// The pid of the process that created it, for multiproc objects and unfinished builds.
    pub creator_pid: Option<u32>,
    /// Whether that process still runs (a different process with a reused pid counts as gone).
    pub creator_alive: Option<bool>,
    /// `persist()` was called: the name outlives its creator on purpose.
    pub persisted: bool,
    /// A temporary name whose object was never finished (its creator may still be building it).
    pub unfinished: bool,
    /// The file's owner.
    pub uid: u32,
    /// Seconds since the file was last modified (created, for segments).
    pub age_secs: u64,
    /// What the object is doing now (its lock's owner, a queue's length, ...), from
    /// [`segment_info`] for the objects it knows; always `None` from [`list_segments`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ObjectState>,
}

/// A snapshot of the object in a segment, read without taking any lock: every figure may change
/// as soon as it is read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "object", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ObjectState {
    /// A `Shared<Mutex<_>>` or `Shared<ReentrantMutex<_>>`, or the lock of a `Value` or `Array`.
    Lock(LockState),
    /// A `Shared<RwLock<_>>`.
    RwLock {
        /// Read holds (reader slots in use, of 32).
        readers: u32,
        /// Of those, holds whose reader is definitely gone (the next writer frees them).
        dead_readers: u32,
        /// The gate is closed: a writer holds the lock, or waits for the readers to leave (or
        /// the lock is not recoverable).
        gate_closed: bool,
        /// Readers wait at the gate.
        readers_waiting: bool,
        /// The writer lock: its holder (a writer, or a reader told `OwnerDied`), waiters and
        /// consistency.
        writer: LockState,
    },
    /// A `Shared<Semaphore>`.
    Semaphore {
        /// Permits available.
        value: u32,
    },
    /// A `Shared<Event>`.
    Event {
        /// Whether the flag is set.
        set: bool,
    },
    /// A `Shared<Barrier>`.
    Barrier {
        /// Parties per generation.
        parties: u32,
        /// Parties waiting now.
        waiting: u32,
        /// Whether it is broken.
        broken: bool,
    },
    /// A `Queue`, `SpscQueue` or `Channel` (whose length counts messages and whose capacity
    /// counts bytes).
    Queue {
        /// Values in it.
        len: u64,
        /// Slots (bytes, for a channel).
        capacity: u64,
        /// Whether `close()` was called.
        closed: bool,
    },
    /// The task counter of a `JoinableQueue` or `JoinableChannel` (its values are in a `Queue`
    /// or `Channel` segment of their own).
    JoinableQueue {
        /// Values pushed and not yet marked done.
        unfinished_tasks: u32,
    },
    /// A [`Heap`](crate::heap::Heap).
    #[cfg(not(multiproc_loom))]
    Heap {
        /// Its lock.
        lock: LockState,
        /// Its statistics, or `None` if its lock stayed held for the whole wait
        /// (about a second).
        stats: Option<crate::heap::HeapStats>,
    },
}

/// A robust lock seen from outside.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LockState {
    /// The thread id of the holder, if it is held.
    pub owner_tid: Option<u32>,
    /// The process of that thread, while it runs.
    pub owner_pid: Option<u32>,
    /// Whether that holder may still run: `false` when it is definitely gone, so the next locker
    /// gets `OwnerDied`.
    pub owner_alive: Option<bool>,
    /// Some locker may be asleep on it.
    pub waiters: bool,
    /// `"consistent"`, `"owner died, not yet made consistent"` or `"not recoverable"`.
    pub consistency: &'static str,
}

/// Every named segment whose name starts with `prefix`, sorted by name.
///
/// ```
/// for seg in multiproc::shm::list_segments("")? {
///     println!("{} {} bytes {:?}", seg.name, seg.len, seg.type_name);
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
/// [`Error::Os`] if `/dev/shm` cannot be listed.
pub fn list_segments(prefix: &str) -> Result<Vec<SegmentInfo>> {
    let mut found: Vec<SegmentInfo> = os::list_names()?
        .into_iter()
        .filter(|name| name.starts_with(prefix) || final_name(name).starts_with(prefix))
        .filter_map(|name| read_info(&name, false).ok())
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// What the segment `name` is and what its object is doing now (see [`SegmentInfo`] and
/// [`ObjectState`]). Reading never blocks for long and never changes the segment.
///
/// ```
/// let q = multiproc::Queue::<u32>::create("doc-info-queue", 8)?;
/// q.push(7).unwrap();
/// let info = multiproc::shm::segment_info("doc-info-queue")?;
/// assert_eq!(info.kind.as_deref(), Some("Queue"));
/// assert!(matches!(
///     info.state,
///     Some(multiproc::shm::ObjectState::Queue { len: 1, capacity: 8, closed: false })
/// ));
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
/// [`Error::NotFound`], [`Error::InvalidName`], [`Error::PermissionDenied`] if it cannot be
/// opened for reading; [`Error::Corrupted`] if its header names an object whose contents are
/// not that object's.
pub fn segment_info(name: &str) -> Result<SegmentInfo> {
    read_info(name, true)
}

fn read_info(name: &str, with_state: bool) -> Result<SegmentInfo> {
    let temp = parse_temp_name(name);
    let name = if temp.is_some() {
        name
    } else {
        validate_name(name)?
    };
    let fd = os::open_named(name, false).map_err(|e| open_error(e, name))?;
    let file = os::file_info(fd.as_fd())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut info = SegmentInfo {
        name: name.to_owned(),
        len: file.len,
        kind: None,
        type_name: None,
        payload_len: None,
        creator_pid: None,
        creator_alive: None,
        persisted: false,
        unfinished: temp.is_some(),
        uid: file.uid,
        age_secs: now.saturating_sub(u64::try_from(file.mtime).unwrap_or(0)),
        state: None,
    };
    if let Some((pid, start, _)) = temp {
        info.creator_pid = Some(pid);
        info.creator_alive = Some(creator_alive(pid, start));
        return Ok(info);
    }
    // Only our own files are mapped: another user could truncate theirs under the mapping.
    if file.uid != os::geteuid() || file.len < HEADER_LEN as u64 {
        return Ok(info);
    }
    // The whole file when the object's state is wanted: `file_info` said it is this long (and a
    // same-user peer is trusted not to truncate it, see SAFETY.md).
    let map_len = if with_state {
        usize::try_from(file.len).map_err(|_| Error::Corrupted("segment too large to map"))?
    } else {
        HEADER_LEN
    };
    let map = os::map(fd.as_fd(), map_len, false, false)?;
    // SAFETY: the mapping is at least `HEADER_LEN` bytes, page-aligned, and `Header` is atomics
    // only (valid for any bytes); it is only read, and the mapping outlives the reference.
    let header = unsafe { &*map.as_ptr().cast::<Header>() };
    if let Some(summary) = header.summary() {
        if with_state {
            // SAFETY: `map` is `map_len` readable bytes, mapped until the end of this function
            // (the pointer is `*mut` only because the rings' readers take one; nothing writes).
            info.state = unsafe { object_state(&summary, map.as_ptr().cast_mut(), map_len) }?;
        }
        info.kind = Some(summary.kind.unwrap_or("unknown kind").to_owned());
        info.type_name = Some(summary.type_label);
        info.payload_len = Some(summary.payload_len);
        info.persisted = summary.persisted;
        if summary.creator_pid != 0 {
            info.creator_pid = Some(summary.creator_pid);
            info.creator_alive = Some(creator_alive(
                summary.creator_pid,
                summary.creator_start_time,
            ));
        }
    }
    Ok(info)
}

/// The state of the object a published header describes, read from the mapping of the whole
/// segment (`len` bytes at `base`); `None` for objects without one to show (raw `Shared` data).
///
/// # Safety
/// `base` is page-aligned and valid for reads of `len` bytes while the call runs; other
/// processes may write them at any time. Every read below is an atomic load.
#[cfg(not(multiproc_loom))]
unsafe fn object_state(
    summary: &HeaderSummary,
    base: *mut u8,
    len: usize,
) -> Result<Option<ObjectState>> {
    use crate::queue::{channel::RawChannel, joinable, mpmc::RawMpmc, ring::Fill, spsc::RawSpsc};
    use crate::sync::{Barrier, Event, RwLock, Semaphore, raw_mutex::RawMutex};

    let offset = usize::try_from(summary.payload_offset).unwrap_or(usize::MAX);
    let payload_len = usize::try_from(summary.payload_len).unwrap_or(usize::MAX);
    if offset < HEADER_LEN || offset.checked_add(payload_len).is_none_or(|end| end > len) {
        return Err(Error::Corrupted("payload lies outside the segment"));
    }
    // SAFETY: `offset + payload_len <= len`, so the payload lies inside the mapping.
    let payload = unsafe { base.add(offset) };
    // The payload's start as a `&T`, if it is long and aligned enough for one.
    let at = |size: usize, align: usize| -> Result<*mut u8> {
        if payload_len < size || payload as usize % align != 0 {
            return Err(Error::Corrupted(
                "payload too short or misaligned for its type",
            ));
        }
        Ok(payload)
    };
    let lock = |p: *mut u8| {
        // SAFETY: `p` starts an aligned, readable `RawMutex` (checked by `at`): atomics, valid
        // for every bit pattern, of which `peek` only loads.
        let raw = unsafe { &*p.cast::<RawMutex>() };
        lock_state(raw.peek(&crate::sync::owner::SysProbe))
    };
    let fill = |f: std::result::Result<Fill, &'static str>| {
        f.map(|f| {
            Some(ObjectState::Queue {
                len: f.len,
                capacity: f.capacity,
                closed: f.closed,
            })
        })
        .map_err(Error::Corrupted)
    };
    let raw_size = (size_of::<RawMutex>(), align_of::<RawMutex>());
    let shared = summary.type_label.strip_prefix("Shared<");
    let holds = |path: &str| {
        shared.is_some_and(|inner| {
            let path = path.split('<').next().unwrap_or(path);
            inner
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with(['<', '>']))
        })
    };
    let state = match summary.kind {
        // `Value<T>` is a `Mutex<T>`; an `Array` starts with a `Mutex<()>`; both start with the
        // lock word (`#[repr(C)]`), as do `Mutex` and `ReentrantMutex`.
        Some("Value" | "Array") => Some(ObjectState::Lock(lock(at(raw_size.0, raw_size.1)?))),
        Some("Shared")
            if holds(std::any::type_name::<crate::sync::Mutex<()>>())
                || holds(std::any::type_name::<crate::sync::ReentrantMutex<()>>()) =>
        {
            Some(ObjectState::Lock(lock(at(raw_size.0, raw_size.1)?)))
        }
        Some("Shared") if holds(std::any::type_name::<RwLock<()>>()) => {
            let p = at(size_of::<RwLock<()>>(), align_of::<RwLock<()>>())?;
            // SAFETY: an aligned, readable `RwLock<()>` prefix (checked by `at`); its state
            // words are atomics, valid for every bit pattern; `peek` only loads.
            let peek = unsafe { &*p.cast::<RwLock<()>>() }.peek(&crate::sync::owner::SysProbe);
            Some(ObjectState::RwLock {
                readers: peek.readers,
                dead_readers: peek.dead_readers,
                gate_closed: peek.gate_closed,
                readers_waiting: peek.readers_waiting,
                writer: lock_state(peek.writer),
            })
        }
        Some("Shared") if holds(std::any::type_name::<Semaphore>()) => {
            let p = at(size_of::<Semaphore>(), align_of::<Semaphore>())?;
            // SAFETY: an aligned, readable `Semaphore` (checked by `at`), atomics only;
            // `value` is a load.
            let value = unsafe { &*p.cast::<Semaphore>() }.value();
            Some(ObjectState::Semaphore { value })
        }
        Some("Shared") if holds(std::any::type_name::<Event>()) => {
            let p = at(size_of::<Event>(), align_of::<Event>())?;
            // SAFETY: an aligned, readable `Event` (checked by `at`), atomics only; `is_set`
            // is a load.
            let set = unsafe { &*p.cast::<Event>() }.is_set();
            Some(ObjectState::Event { set })
        }
        Some("Shared") if holds(std::any::type_name::<Barrier>()) => {
            let p = at(size_of::<Barrier>(), align_of::<Barrier>())?;
            // SAFETY: an aligned, readable `Barrier` (checked by `at`), atomics only; the three
            // calls are loads.
            let b = unsafe { &*p.cast::<Barrier>() };
            Some(ObjectState::Barrier {
                parties: b.parties(),
                waiting: b.n_waiting(),
                broken: b.is_broken(),
            })
        }
        Some("Queue") => {
            // SAFETY: the payload is `payload_len` readable bytes, mapped for the call; `peek`
            // checks alignment and size itself and only loads.
            fill(unsafe { RawMpmc::peek(payload, payload_len) })?
        }
        Some("SpscQueue") => {
            // SAFETY: as for `Queue`.
            fill(unsafe { RawSpsc::peek(payload, payload_len) })?
        }
        Some("Channel") => {
            // SAFETY: as for `Queue`.
            fill(unsafe { RawChannel::peek(payload, payload_len) })?
        }
        Some("JoinableQueue" | "JoinableChannel") => {
            // SAFETY: as for the rings; `peek_unfinished` checks size and alignment.
            let unfinished = unsafe { joinable::peek_unfinished(payload, payload_len) }
                .ok_or(Error::Corrupted("task counter too short or misaligned"))?;
            Some(ObjectState::JoinableQueue {
                unfinished_tasks: unfinished,
            })
        }
        Some("Heap") => {
            let p = std::ptr::NonNull::new(at(4096, 64)?)
                .ok_or(Error::Corrupted("null heap payload"))?;
            // SAFETY: `payload_len` readable bytes, 64-aligned (checked by `at`), mapped for
            // the call; `peek` only loads.
            let (lock, stats) = unsafe {
                crate::heap::peek(p, payload_len as u64, std::time::Duration::from_secs(1))
            }?;
            Some(ObjectState::Heap {
                lock: lock_state(lock),
                stats,
            })
        }
        _ => None,
    };
    Ok(state)
}

/// Under loom the queues and the heap are not built: no state is read.
///
/// # Safety
/// None needed; it reads nothing.
#[cfg(multiproc_loom)]
unsafe fn object_state(_: &HeaderSummary, _: *mut u8, _: usize) -> Result<Option<ObjectState>> {
    Ok(None)
}

#[cfg(not(multiproc_loom))]
fn lock_state(p: crate::sync::raw_mutex::LockPeek) -> LockState {
    LockState {
        owner_tid: p.owner.map(|(tid, _)| tid),
        owner_pid: p
            .owner
            .filter(|(_, alive)| *alive)
            .and_then(|(tid, _)| crate::sys::proc::thread_group(tid)),
        owner_alive: p.owner.map(|(_, alive)| alive),
        waiters: p.waiters,
        consistency: p.state,
    }
}

/// The final name inside a temporary one, else the name itself.
fn final_name(name: &str) -> &str {
    if name.starts_with(TEMP_PREFIX) {
        parse_temp_name(name).map_or(name, |(_, _, n)| n)
    } else {
        name
    }
}

fn open_error(e: std::io::Error, name: &str) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound {
            name: name.to_owned(),
        },
        Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied {
            reason: "the segment cannot be opened for reading",
        },
        _ => Error::Os(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Array, Segment, Value};

    fn unique(tag: &str) -> String {
        format!("mp-inspect-{tag}-{}", std::process::id())
    }

    #[test]
    fn objects_raw_segments_and_missing_names() {
        let value_name = unique("value");
        let _value = Value::create(&value_name, 7u64).unwrap();
        let info = segment_info(&value_name).unwrap();
        assert_eq!(info.kind.as_deref(), Some("Value"));
        assert_eq!(info.type_name.as_deref(), Some("Value<u64>"));
        assert_eq!(info.creator_pid, Some(std::process::id()));
        assert_eq!(info.creator_alive, Some(true));
        assert!(!info.persisted && !info.unfinished);

        let array_name = unique("array");
        let array = Array::<f32>::create(&array_name, &[0.0; 10]);
        let raw_name = unique("raw");
        let _raw = Segment::create(&raw_name, 100).unwrap();
        let raw = segment_info(&raw_name).unwrap();
        assert_eq!((raw.kind, raw.len), (None, 100));

        let listed = list_segments("mp-inspect-").unwrap();
        let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&value_name.as_str()), "{names:?}");
        assert!(names.contains(&raw_name.as_str()), "{names:?}");
        if let Ok(array) = array {
            array.persist();
            let info = segment_info(&array_name).unwrap();
            assert!(info.persisted);
            assert_eq!(info.type_name.as_deref(), Some("Array<f32>"));
            Segment::unlink(&array_name).unwrap();
        }
        assert!(matches!(
            segment_info(&unique("missing")),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    #[cfg(not(multiproc_loom))]
    fn a_held_heap_lock_gives_no_stats_after_the_wait_and_is_left_alone() {
        let name = unique("heap");
        let heap = crate::heap::Heap::create(&name, 1 << 16).unwrap();
        let guard = heap.lock().unwrap();
        let info = segment_info(&name).unwrap();
        let Some(ObjectState::Heap { lock, stats }) = info.state else {
            panic!("{info:?}");
        };
        assert_eq!(stats, None);
        assert_eq!(
            lock.owner_tid,
            Some(crate::sys::proc::current_thread_identity().0)
        );
        assert_eq!(lock.owner_alive, Some(true));
        assert_eq!(lock.owner_pid, Some(std::process::id()));
        drop(guard);
        let Some(ObjectState::Heap { stats, .. }) = segment_info(&name).unwrap().state else {
            panic!("no heap state");
        };
        assert_eq!(stats, Some(heap.stats().unwrap()));
    }
}
