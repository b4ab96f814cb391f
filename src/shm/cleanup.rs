//! Finding and removing named segments whose creator died without `persist()`.
//!
//! Every named object records its creator (pid and process start time) in its header, and is
//! built under a temporary name that records the creator too. A segment is **stale** when its
//! creator is gone (no such process, or a different process with a reused pid), it was not
//! persisted, and no process we can see has it open or mapped. Segments that are not multiproc
//! objects (raw [`Segment`](super::Segment)s, other programs' files) are never touched.

use super::header::{HEADER_LEN, Header};
use super::segment::{TEMP_PREFIX, parse_temp_name, validate_name};
use crate::error::Result;
use crate::sys::{proc, shm as os};
use std::os::fd::AsFd;

/// A named segment left behind by a creator that died.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StaleSegment {
    /// Its name in `/dev/shm`.
    pub name: String,
    /// The pid of the process that created it (no longer running).
    pub creator_pid: u32,
    /// Whether the creator died while still building it (a temporary name).
    pub unfinished: bool,
}

/// Lists the stale segments whose (final) name starts with `prefix`.
///
/// ```
/// for stale in multiproc::shm::stale_segments("myapp-")? {
///     println!("{} (creator {} is gone)", stale.name, stale.creator_pid);
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn stale_segments(prefix: &str) -> Result<Vec<StaleSegment>> {
    let mut candidates = Vec::new();
    for name in os::list_names()? {
        if let Some(found) = inspect(&name, prefix) {
            candidates.push(found);
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Scan /proc after the candidates were chosen, so a segment opened in between counts as used.
    let in_use = os::FilesInUse::scan();
    Ok(candidates
        .into_iter()
        .filter(|c| !in_use.contains(c.dev, c.ino))
        .map(|c| c.stale)
        .collect())
}

/// Removes the stale segments whose name starts with `prefix` and returns them.
///
/// A segment opened between the check and the removal keeps working (its mapping stays valid);
/// only the name goes.
pub fn remove_stale_segments(prefix: &str) -> Result<Vec<StaleSegment>> {
    let mut removed = Vec::new();
    for stale in stale_segments(prefix)? {
        if os::unlink_named(&stale.name).is_ok() {
            log::info!(
                target: "multiproc",
                "removed stale segment {} (creator pid {} is gone)",
                stale.name,
                stale.creator_pid
            );
            removed.push(stale);
        }
    }
    Ok(removed)
}

pub(super) fn creator_alive(pid: u32, start_time: u64) -> bool {
    match proc::process_start_time(pid) {
        Some(now) => start_time == 0 || now == start_time,
        None => false,
    }
}

/// A segment whose creator is gone, not yet checked for other users.
struct Candidate {
    stale: StaleSegment,
    dev: u64,
    ino: u64,
}

fn inspect(name: &str, prefix: &str) -> Option<Candidate> {
    if name.starts_with(TEMP_PREFIX) {
        let (pid, start, final_name) = parse_temp_name(name)?;
        if !final_name.starts_with(prefix) || creator_alive(pid, start) {
            return None;
        }
        let fd = os::open_named(name, false).ok()?;
        let (dev, ino) = os::file_identity(fd.as_fd()).ok()?;
        let stale = StaleSegment {
            name: name.to_owned(),
            creator_pid: pid,
            unfinished: true,
        };
        return Some(Candidate { stale, dev, ino });
    }
    if !name.starts_with(prefix) || validate_name(name).is_err() {
        return None;
    }
    let fd = os::open_named(name, false).ok()?;
    let info = os::file_info(fd.as_fd()).ok()?;
    if info.uid != os::geteuid() || info.len < HEADER_LEN as u64 {
        return None;
    }
    let (dev, ino) = os::file_identity(fd.as_fd()).ok()?;
    let map = os::map(fd.as_fd(), HEADER_LEN, false, false).ok()?;
    // SAFETY: the mapping is `HEADER_LEN` bytes, page-aligned, and `Header` is atomics only (valid
    // for any bytes); it is only read, and the mapping outlives the reference.
    let header = unsafe { &*map.as_ptr().cast::<Header>() };
    let (published, persisted, (pid, start)) = (
        header.looks_published(),
        header.is_persisted(),
        header.creator(),
    );
    if !published || persisted || pid == 0 || creator_alive(pid, start) {
        return None;
    }
    let stale = StaleSegment {
        name: name.to_owned(),
        creator_pid: pid,
        unfinished: false,
    };
    Some(Candidate { stale, dev, ino })
}
