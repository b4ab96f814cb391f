//! The two records a spawn memfd carries: the bootstrap the parent writes and the result the
//! child writes over it.
//!
//! ```text
//! bootstrap: BOOT_MAGIC u64 | token u64 | args_len u64 | args (postcard A) | Meta (postcard)
//! started:   STARTED_MAGIC u64 | token u64 | (the rest of the bootstrap)
//! result:    RESULT_MAGIC u64 | token u64 | kind u8 | len u64 | payload
//! ```
//! All integers are little endian. The child reads the whole bootstrap before it writes the
//! result at offset 0, and the parent reads the result only after reaping the child, so the
//! file never holds a record being written while the other side reads it. A file still holding
//! the bootstrap after the child exited means the child never reached its entry.
//!
//! Fork children get recycled memfds (see `registry::result_memfd`), which may still hold an
//! earlier child's record, possibly longer than the new one: only a record with the reader's
//! token counts, and its header's length, not the file's, bounds the payload.

use crate::sys::process as sys;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::BorrowedFd;

/// First word of a bootstrap record ("mpboot01").
pub(super) const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"mpboot01");
/// First word of a bootstrap the child has read and whose entry it is about to run ("mpstartd").
const STARTED_MAGIC: u64 = u64::from_le_bytes(*b"mpstartd");
/// First word of a result record ("mpresult").
const RESULT_MAGIC: u64 = u64::from_le_bytes(*b"mpresult");
/// Bytes before the arguments in a bootstrap record.
pub(super) const BOOT_HEADER: usize = 24;
/// Bytes before the payload in a result record.
const RESULT_HEADER: usize = 25;

/// Result kinds.
const KIND_RETURNED: u8 = 0; // payload: postcard R
const KIND_PANICKED: u8 = 1; // payload: UTF-8 panic message
const KIND_BAD_ARGS: u8 = 2; // payload: UTF-8 decode error of the arguments
const KIND_BAD_RESULT: u8 = 3; // payload: UTF-8 encode error of the result

/// What the child needs besides the arguments.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Meta {
    /// `entry as usize - anchor as usize`.
    pub(super) entry_offset: i64,
    /// `run_entry::<A, R> as usize - anchor as usize`.
    pub(super) wrapper_offset: i64,
    /// Inherited fd numbers, by slot (see `shm::handoff`).
    pub(super) slots: Vec<i32>,
    /// The child's name.
    pub(super) name: String,
    /// The child's identity path (`Process-1:2` is `[1, 2]`).
    pub(super) identity: Vec<u32>,
    /// The read end of the parent's daemon pipe, for daemon children.
    pub(super) daemon_fd: Option<i32>,
    /// For a child that dies with the thread that started it: the parent's pid.
    pub(super) parent_pid: Option<u32>,
}

/// Starts a bootstrap record: the header with a zero args length, ready for the arguments to
/// be appended.
pub(super) fn boot_start(token: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(&BOOT_MAGIC.to_le_bytes());
    buf.extend_from_slice(&token.to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes());
    buf
}

/// Finishes a bootstrap record whose arguments were appended after [`boot_start`].
pub(super) fn boot_finish(mut buf: Vec<u8>, meta: &Meta) -> Result<Vec<u8>, postcard::Error> {
    let args_len = (buf.len() - BOOT_HEADER) as u64;
    buf[16..24].copy_from_slice(&args_len.to_le_bytes());
    postcard::to_extend(meta, buf)
}

/// A bootstrap record split into its parts.
pub(super) struct Boot {
    pub(super) meta: Meta,
    pub(super) args: Vec<u8>,
}

/// Reads the bootstrap record from `fd` if it starts with the magic and `token`; `None` for
/// anything else (not a file, too short, another token, garbage).
pub(super) fn boot_read(fd: BorrowedFd<'_>, token: u64) -> Option<Boot> {
    let mut header = [0u8; BOOT_HEADER];
    sys::read_exact_at(fd, &mut header, 0).ok()?;
    let word = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().unwrap_or_default());
    if word(0) != BOOT_MAGIC || word(8) != token {
        return None;
    }
    let total = crate::sys::shm::file_info(fd).ok()?.len;
    let args_len = word(16);
    let rest = total.checked_sub(BOOT_HEADER as u64)?;
    if args_len > rest {
        return None;
    }
    let mut body = vec![0u8; usize::try_from(rest).ok()?];
    sys::read_exact_at(fd, &mut body, BOOT_HEADER as u64).ok()?;
    let meta_bytes = body.split_off(args_len as usize);
    let meta = postcard::from_bytes(&meta_bytes).ok()?;
    Some(Boot { meta, args: body })
}

/// In the child, after [`boot_read`]: marks the record as started (see the module docs).
pub(super) fn mark_started(fd: BorrowedFd<'_>) -> io::Result<()> {
    sys::write_all_at(fd, &STARTED_MAGIC.to_le_bytes(), 0)
}

/// Whether a spawn child that wrote no result had started its entry for `token` (it then
/// ended the process from inside the entry, e.g. with `std::process::exit(0)`).
pub(super) fn entry_started(fd: BorrowedFd<'_>, token: u64) -> io::Result<bool> {
    let mut header = [0u8; 16];
    sys::read_exact_at(fd, &mut header, 0)?;
    Ok(header[..8] == STARTED_MAGIC.to_le_bytes() && header[8..] == token.to_le_bytes())
}

/// How the child's entry ended, as it reports it.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The entry returned; its postcard-encoded result.
    Returned(Vec<u8>),
    /// The entry panicked with this message.
    Panicked(String),
    /// The arguments could not be decoded.
    BadArgs(String),
    /// The result could not be encoded.
    BadResult(String),
}

impl Outcome {
    /// The exit code the child uses after reporting this outcome (Python's: 0, or 1 for an
    /// exception).
    pub(super) fn exit_code(&self) -> i32 {
        match self {
            Outcome::Returned(_) => 0,
            _ => 1,
        }
    }
}

/// Writes `outcome` as the result record at offset 0 of `fd`.
pub(super) fn result_write(fd: BorrowedFd<'_>, token: u64, outcome: &Outcome) -> io::Result<()> {
    let (kind, payload): (u8, &[u8]) = match outcome {
        Outcome::Returned(b) => (KIND_RETURNED, b),
        Outcome::Panicked(m) => (KIND_PANICKED, m.as_bytes()),
        Outcome::BadArgs(m) => (KIND_BAD_ARGS, m.as_bytes()),
        Outcome::BadResult(m) => (KIND_BAD_RESULT, m.as_bytes()),
    };
    // Small records go out in one write from the stack: no allocation (and no heap page
    // touched) in a child that is about to exit.
    let mut small = [0u8; SMALL_RECORD];
    if let Some(room) = small.get_mut(RESULT_HEADER..RESULT_HEADER + payload.len()) {
        room.copy_from_slice(payload);
        return write_small(fd, &mut small, token, kind, payload.len());
    }
    // The payload first, then the header that makes it count: a child that fails in between
    // leaves no record naming its token over whatever an earlier child of a recycled memfd left.
    sys::write_all_at(fd, payload, RESULT_HEADER as u64)?;
    sys::write_all_at(fd, &header(token, kind, payload.len()), 0)
}

/// Encodes `value` as a `Returned` record into a stack buffer and writes it, without allocating;
/// `Ok(None)` (nothing written) if it does not fit, `Err` for an encoding error. A value that
/// encodes to no bytes is not written at all (see [`value_without_record`]).
pub(super) fn result_write_value<R: Serialize>(
    fd: BorrowedFd<'_>,
    token: u64,
    value: &R,
) -> Result<Option<io::Result<()>>, postcard::Error> {
    let mut small = [0u8; SMALL_RECORD];
    match postcard::to_slice(value, &mut small[RESULT_HEADER..]) {
        // Nothing to say (a `()` result): the exit code 0 of a fork child says it all, see
        // `value_without_record`.
        Ok([]) => Ok(Some(Ok(()))),
        Ok(encoded) => {
            let len = encoded.len();
            Ok(Some(write_small(fd, &mut small, token, KIND_RETURNED, len)))
        }
        Err(postcard::Error::SerializeBufferFull) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the record in `buf` (payload of `len` bytes already after the header) at offset 0.
#[inline]
fn write_small(
    fd: BorrowedFd<'_>,
    buf: &mut [u8; SMALL_RECORD],
    token: u64,
    kind: u8,
    len: usize,
) -> io::Result<()> {
    buf[..RESULT_HEADER].copy_from_slice(&header(token, kind, len));
    sys::write_all_at(fd, &buf[..RESULT_HEADER + len], 0)
}

#[inline]
fn header(token: u64, kind: u8, len: usize) -> [u8; RESULT_HEADER] {
    let mut header = [0u8; RESULT_HEADER];
    header[..8].copy_from_slice(&RESULT_MAGIC.to_le_bytes());
    header[8..16].copy_from_slice(&token.to_le_bytes());
    header[16] = kind;
    header[17..].copy_from_slice(&(len as u64).to_le_bytes());
    header
}

/// The result of a fork child that exited with code 0, if `R` encodes to no bytes at all (`()`,
/// unit structs): such a child writes no record (see [`result_write_value`]), and code 0 means
/// its entry ended without panicking (a panic, a failed encoding or a failed report exits
/// nonzero). The one case it also covers, an entry that called `exit(0)`, then reads as having
/// returned, as in Python.
pub(super) fn value_without_record<R: DeserializeOwned>() -> Option<R> {
    postcard::from_bytes(&[]).ok()
}

/// Records up to this size are written and read in one call through a stack buffer.
const SMALL_RECORD: usize = 256;

/// Reads the result record from `fd`: `Ok(None)` if the file does not hold one for `token`
/// (the child never reported).
pub(super) fn result_read(fd: BorrowedFd<'_>, token: u64) -> io::Result<Option<Outcome>> {
    // One read usually holds the whole record: a `pread` of a memfd is short only at the end
    // of the file (the file may hold more: the tail of an earlier child's longer record).
    let mut first = [0u8; SMALL_RECORD];
    let got = sys::read_at(fd, &mut first, 0)?;
    let Some(header) = first[..got].get(..RESULT_HEADER) else {
        return Ok(None);
    };
    let word = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().unwrap_or_default());
    if word(0) != RESULT_MAGIC || word(8) != token {
        return Ok(None);
    }
    let kind = header[16];
    let len = word(17);
    let payload = if len <= (got - RESULT_HEADER) as u64 {
        first[RESULT_HEADER..RESULT_HEADER + len as usize].to_vec()
    } else {
        let total = crate::sys::shm::file_info(fd)?.len;
        if len > total.saturating_sub(RESULT_HEADER as u64) {
            return Ok(None);
        }
        let mut payload = vec![0u8; len as usize];
        sys::read_exact_at(fd, &mut payload, RESULT_HEADER as u64)?;
        payload
    };
    let text = |p: Vec<u8>| String::from_utf8_lossy(&p).into_owned();
    Ok(match kind {
        KIND_RETURNED => Some(Outcome::Returned(payload)),
        KIND_PANICKED => Some(Outcome::Panicked(text(payload))),
        KIND_BAD_ARGS => Some(Outcome::BadArgs(text(payload))),
        KIND_BAD_RESULT => Some(Outcome::BadResult(text(payload))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn meta() -> Meta {
        Meta {
            entry_offset: -5,
            wrapper_offset: 7,
            slots: vec![9, 10],
            name: "n".into(),
            identity: vec![1, 2],
            daemon_fd: None,
            parent_pid: Some(3),
        }
    }

    #[test]
    fn bootstrap_and_result_round_trip() {
        let fd = sys::memfd(c"test").unwrap();
        let buf = postcard::to_extend(&(1u32, "x"), boot_start(77)).unwrap();
        let buf = boot_finish(buf, &meta()).unwrap();
        sys::write_all_at(fd.as_fd(), &buf, 0).unwrap();
        assert!(boot_read(fd.as_fd(), 78).is_none(), "wrong token accepted");
        let boot = boot_read(fd.as_fd(), 77).unwrap();
        assert_eq!(boot.meta.slots, vec![9, 10]);
        assert_eq!(boot.meta.entry_offset, -5);
        let args: (u32, String) = postcard::from_bytes(&boot.args).unwrap();
        assert_eq!(args, (1, "x".to_owned()));
        // The bootstrap is not a result.
        assert!(result_read(fd.as_fd(), 77).unwrap().is_none());
        result_write(fd.as_fd(), 77, &Outcome::Panicked("p".into())).unwrap();
        assert!(matches!(result_read(fd.as_fd(), 77), Ok(Some(Outcome::Panicked(m))) if m == "p"));
        assert!(result_read(fd.as_fd(), 76).unwrap().is_none());
    }

    #[test]
    fn garbage_and_truncated_records_are_refused() {
        let fd = sys::memfd(c"test").unwrap();
        assert!(boot_read(fd.as_fd(), 1).is_none());
        let buf = boot_finish(boot_start(1), &meta()).unwrap();
        sys::write_all_at(fd.as_fd(), &buf[..buf.len() - 3], 0).unwrap();
        assert!(boot_read(fd.as_fd(), 1).is_none());
        // A result header claiming more payload than the file holds.
        let fd = sys::memfd(c"test").unwrap();
        result_write(fd.as_fd(), 1, &Outcome::Returned(vec![1, 2, 3])).unwrap();
        sys::write_all_at(fd.as_fd(), &u64::MAX.to_le_bytes(), 17).unwrap();
        assert!(result_read(fd.as_fd(), 1).unwrap().is_none());
    }
}
