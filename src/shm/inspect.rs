//! Looking at named segments from outside, the way `ipcs` does: what the `multiproc` command-line
//! tool's `ls` and `info` print.
//!
//! Only headers are read (through atomics, from a read-only mapping), so inspecting never
//! disturbs the processes using a segment. Files of other users are listed without their header.

use super::cleanup::creator_alive;
use super::header::{HEADER_LEN, Header};
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
        .filter_map(|name| segment_info(&name).ok())
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// What the segment `name` is (see [`SegmentInfo`]).
///
/// # Errors
/// [`Error::NotFound`], [`Error::InvalidName`], [`Error::PermissionDenied`] if it cannot be
/// opened for reading.
pub fn segment_info(name: &str) -> Result<SegmentInfo> {
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
    let map = os::map(fd.as_fd(), HEADER_LEN, false, false)?;
    // SAFETY: the mapping is `HEADER_LEN` bytes, page-aligned, and `Header` is atomics only (valid
    // for any bytes); it is only read, and the mapping outlives the reference.
    let header = unsafe { &*map.as_ptr().cast::<Header>() };
    if let Some(summary) = header.summary() {
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
}
