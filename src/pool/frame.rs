//! The byte frames between the pool and a worker, on the worker's socket.
//!
//! ```text
//! frame:    len u32 (bytes after this field) | kind u8 | id u64 | body
//!   id:     the chunk's number at its worker, from 1, top bit set if it is never taken back
//!           (`claim`); a RESULTS frame repeats its TASK's
//! TASK/INIT (pool -> worker): entry i64 | wrapper i64 | nfds u32 | count u32 | count x arg
//!   arg:    flag u8 (ARG_*) | len u32 | bytes (postcard A, or the pool's UTF-8 encode error)
//! RESULTS   (worker -> pool): count u32 | count x reply
//!   reply:  kind u8 (REPLY_*) | len u32 | bytes (postcard R, or a UTF-8 message)
//! ```
//! Integers are little endian. `nfds` fds travel with the frame's first byte (`SCM_RIGHTS`).
//! The worker trusts its parent's frames as it trusts its bootstrap; the pool trusts nothing a
//! worker sends: [`next_frame`] and [`check_replies`] bound-check every length, and a frame
//! that breaks the format is an error (the pool kills that worker), never a panic.

use std::ops::Range;

/// Bytes before a frame's body.
pub(crate) const HEADER: usize = 13;
/// Largest body accepted (1 GiB): a bigger length is garbage.
pub(crate) const MAX_BODY: usize = 1 << 30;

/// A chunk of tasks.
pub(crate) const KIND_TASK: u8 = 1;
/// The initializer (one argument); a worker whose initializer fails exits after its reply.
pub(crate) const KIND_INIT: u8 = 2;
/// The replies to one TASK or INIT frame, in argument order.
pub(crate) const KIND_RESULTS: u8 = 3;

const ARG_ENCODED: u8 = 0; // bytes: postcard A
const ARG_UNENCODABLE: u8 = 1; // bytes: UTF-8 error the pool met encoding it

const REPLY_RETURNED: u8 = 0; // bytes: postcard R
const REPLY_PANICKED: u8 = 1; // bytes: UTF-8 panic message
const REPLY_BAD_ARGS: u8 = 2; // bytes: UTF-8 decode error
const REPLY_BAD_RESULT: u8 = 3; // bytes: UTF-8 encode error

/// What running one task gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The encoded result.
    Returned(Vec<u8>),
    /// The task panicked with this message.
    Panicked(String),
    /// Its argument could not be encoded or decoded.
    BadArgs(String),
    /// Its result could not be encoded.
    BadResult(String),
}

/// A frame found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) id: u64,
    /// Where its body lies in the buffer.
    pub(crate) body: Range<usize>,
}

/// Starts a frame of `kind` for chunk `id` at the end of `buf`; returns where it starts, for
/// [`finish`].
pub(crate) fn begin(buf: &mut Vec<u8>, kind: u8, id: u64) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind);
    buf.extend_from_slice(&id.to_le_bytes());
    start
}

/// Writes `id` into the header of the frame at the start of `frame`.
pub(crate) fn set_id(frame: &mut [u8], id: u64) {
    frame[5..HEADER].copy_from_slice(&id.to_le_bytes());
}

/// Writes the length of the frame that starts at `start` of `buf` into its header.
pub(crate) fn finish(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends a task header (after [`begin`]): the entry and wrapper offsets, the fd and task
/// counts.
pub(crate) fn task_header(buf: &mut Vec<u8>, entry: i64, wrapper: i64, nfds: u32, count: u32) {
    buf.extend_from_slice(&entry.to_le_bytes());
    buf.extend_from_slice(&wrapper.to_le_bytes());
    buf.extend_from_slice(&nfds.to_le_bytes());
    buf.extend_from_slice(&count.to_le_bytes());
}

/// Appends `value`'s postcard encoding to `buf`, copying short pieces (a varint, a small
/// field) byte by byte: postcard's own `Vec` and `io::Write` paths call `memcpy` for each, which
/// cost more than the task of a small `map`.
#[inline]
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, Append(buf))
}

/// A postcard output that appends to a `Vec`.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 16 {
            self.0.reserve(data.len());
            let len = self.0.len();
            for (slot, &byte) in self.0.spare_capacity_mut().iter_mut().zip(data) {
                slot.write(byte);
            }
            // SAFETY: `reserve` made room for `data.len()` more bytes, and the loop above
            // initialised exactly those first `data.len()` spare bytes.
            unsafe { self.0.set_len(len + data.len()) };
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends one argument, written by `encode` (postcard into the buffer); if it fails, the
/// argument carries the error instead, and the worker replies `BadArgs` with it.
#[inline]
pub(crate) fn push_arg<E: std::fmt::Display>(
    buf: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) {
    push_encoded(buf, ARG_ENCODED, ARG_UNENCODABLE, encode);
}

/// Appends one reply, its bytes written by `encode`; if that fails, a `BadResult` reply.
#[inline]
pub(crate) fn push_reply<E: std::fmt::Display>(
    buf: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) {
    push_encoded(buf, REPLY_RETURNED, REPLY_BAD_RESULT, encode);
}

/// Appends a `flag | len | bytes` field whose bytes `encode` writes; if it fails, the field is
/// `failed | len | the error message` instead.
#[inline]
fn push_encoded<E: std::fmt::Display>(
    buf: &mut Vec<u8>,
    flag: u8,
    failed: u8,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) {
    let mark = buf.len();
    buf.extend_from_slice(&[flag, 0, 0, 0, 0]);
    if let Err(e) = encode(buf) {
        buf.truncate(mark);
        push_message(buf, failed, &e.to_string());
        return;
    }
    let len = (buf.len() - mark - 5) as u32;
    buf[mark + 1..mark + 5].copy_from_slice(&len.to_le_bytes());
}

/// Appends a failed reply (not `Returned`).
pub(crate) fn push_failure(buf: &mut Vec<u8>, reply: &Reply) {
    let (kind, message) = match reply {
        Reply::Returned(bytes) => {
            buf.push(REPLY_RETURNED);
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
            return;
        }
        Reply::Panicked(m) => (REPLY_PANICKED, m),
        Reply::BadArgs(m) => (REPLY_BAD_ARGS, m),
        Reply::BadResult(m) => (REPLY_BAD_RESULT, m),
    };
    push_message(buf, kind, message);
}

fn push_message(buf: &mut Vec<u8>, kind: u8, message: &str) {
    buf.push(kind);
    buf.extend_from_slice(&(message.len() as u32).to_le_bytes());
    buf.extend_from_slice(message.as_bytes());
}

/// The frame at the start of `buf`: `Ok(None)` if it is not complete yet, `Err` if its header
/// is impossible (a length over [`MAX_BODY`]).
pub(crate) fn next_frame(buf: &[u8]) -> Result<Option<Frame>, &'static str> {
    let Some(header) = buf.get(..HEADER) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(HEADER - 4..=MAX_BODY).contains(&len) {
        return Err("frame length out of range");
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&header[5..13]);
    Ok(Some(Frame {
        kind: header[4],
        id: u64::from_le_bytes(id),
        body: HEADER..4 + len,
    }))
}

/// A cursor over a body that refuses to read past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("frame shorter than its contents");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    #[inline]
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    #[inline]
    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, &'static str> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }
    /// A `len u32 | bytes` field.
    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

/// Checks that a RESULTS body holds exactly `expected` well-formed replies, without copying or
/// allocating: afterwards [`next_reply`] reads them.
pub(crate) fn check_replies(body: &[u8], expected: u32) -> Result<(), &'static str> {
    let mut c = Cursor(body);
    if c.u32()? != expected {
        return Err("reply count differs from the chunk's task count");
    }
    for _ in 0..expected {
        if c.u8()? > REPLY_BAD_RESULT {
            return Err("unknown reply kind");
        }
        c.bytes()?;
    }
    if !c.0.is_empty() {
        return Err("bytes after the last reply");
    }
    Ok(())
}

/// Offset of the first reply in a RESULTS body (after its count).
pub(crate) const FIRST_REPLY: usize = 4;

/// The reply at `*at` in a body that [`check_replies`] accepted, moving `*at` past it:
/// `Ok(bytes)` for a returned value, `Err` for a failure. `None` past the end (or on a body
/// that was not checked: it never reads out of bounds).
#[inline]
pub(crate) fn next_reply<'a>(body: &'a [u8], at: &mut usize) -> Option<Result<&'a [u8], Reply>> {
    let mut c = Cursor(body.get(*at..)?);
    let kind = c.u8().ok()?;
    let bytes = c.bytes().ok()?;
    *at = body.len() - c.0.len();
    let text = || String::from_utf8_lossy(bytes).into_owned();
    Some(match kind {
        REPLY_RETURNED => Ok(bytes),
        REPLY_PANICKED => Err(Reply::Panicked(text())),
        REPLY_BAD_ARGS => Err(Reply::BadArgs(text())),
        _ => Err(Reply::BadResult(text())),
    })
}

/// The replies in a RESULTS body, which must hold exactly `expected` of them (owned copies,
/// for tests and the fuzz targets).
pub(crate) fn parse_replies(body: &[u8], expected: u32) -> Result<Vec<Reply>, &'static str> {
    check_replies(body, expected)?;
    let mut at = FIRST_REPLY;
    let mut replies = Vec::new();
    while let Some(r) = next_reply(body, &mut at) {
        replies.push(r.map_or_else(|e| e, |b| Reply::Returned(b.to_vec())));
    }
    Ok(replies)
}

/// A TASK or INIT body as the worker reads it.
pub(crate) struct Task<'a> {
    pub(crate) entry: i64,
    pub(crate) wrapper: i64,
    pub(crate) nfds: u32,
    /// The arguments, read one at a time (no copy, no allocation per chunk).
    pub(crate) args: Args<'a>,
}

/// The arguments of a TASK or INIT body, in order: each its encoding, or the error the pool
/// met encoding it. Ends early (with [`Args::complete`] false) at a truncated argument.
pub(crate) struct Args<'a> {
    left: u32,
    rest: Cursor<'a>,
    truncated: bool,
}

impl Args<'_> {
    /// The number of arguments not read yet.
    pub(crate) fn len(&self) -> u32 {
        self.left
    }

    /// Whether every argument the header announced was read whole.
    pub(crate) fn complete(&self) -> bool {
        !self.truncated && self.left == 0
    }
}

impl<'a> Iterator for Args<'a> {
    type Item = Result<&'a [u8], String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.truncated {
            return None;
        }
        let (Ok(flag), Ok(bytes)) = (self.rest.u8(), self.rest.bytes()) else {
            self.truncated = true;
            return None;
        };
        self.left -= 1;
        Some(match flag {
            ARG_ENCODED => Ok(bytes),
            _ => Err(String::from_utf8_lossy(bytes).into_owned()),
        })
    }
}

/// Splits a TASK or INIT body.
pub(crate) fn parse_task(body: &[u8]) -> Result<Task<'_>, &'static str> {
    let mut c = Cursor(body);
    let entry = c.i64()?;
    let wrapper = c.i64()?;
    let nfds = c.u32()?;
    let count = c.u32()?;
    Ok(Task {
        entry,
        wrapper,
        nfds,
        args: Args {
            left: count,
            rest: c,
            truncated: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_and_results_round_trip() {
        let mut buf = Vec::new();
        begin(&mut buf, KIND_TASK, 9);
        task_header(&mut buf, -3, 4, 1, 2);
        push_arg(&mut buf, |b| encode(b, &7u64));
        push_arg(&mut buf, |_| Err("no"));
        finish(&mut buf, 0);
        let f = next_frame(&buf).unwrap().unwrap();
        assert_eq!((f.kind, f.id, f.body.end), (KIND_TASK, 9, buf.len()));
        assert_eq!(next_frame(&buf[..buf.len() - 1]), Ok(None));
        let t = parse_task(&buf[f.body.clone()]).unwrap();
        assert_eq!((t.entry, t.wrapper, t.nfds, t.args.len()), (-3, 4, 1, 2));
        let mut args = t.args;
        assert_eq!(
            args.by_ref().collect::<Vec<_>>(),
            vec![Ok(&[7u8][..]), Err("no".to_owned())]
        );
        assert!(args.complete());
        let cut = parse_task(&buf[f.body.start..f.body.end - 1]).unwrap();
        let mut args = cut.args;
        assert_eq!(args.by_ref().count(), 1);
        assert!(!args.complete());

        let mut buf = Vec::new();
        begin(&mut buf, KIND_RESULTS, 9);
        buf.extend_from_slice(&4u32.to_le_bytes());
        push_reply(&mut buf, |b| encode(b, &5u8));
        push_reply(&mut buf, |b| encode(b, &[9u8; 40][..]));
        push_reply(&mut buf, |_| Err("too big"));
        push_failure(&mut buf, &Reply::Panicked("boom".into()));
        finish(&mut buf, 0);
        let f = next_frame(&buf).unwrap().unwrap();
        let replies = parse_replies(&buf[f.body.clone()], 4).unwrap();
        assert_eq!(
            replies,
            vec![
                Reply::Returned(vec![5]),
                Reply::Returned([&[40u8][..], &[9; 40]].concat()),
                Reply::BadResult("too big".into()),
                Reply::Panicked("boom".into())
            ]
        );
        assert!(parse_replies(&buf[f.body], 3).is_err());
    }

    #[test]
    fn hostile_frames_are_errors() {
        assert!(next_frame(&[0xff; 13]).is_err());
        assert!(next_frame(&[0; 13]).is_err());
        assert!(parse_replies(&[1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], 1).is_err());
        assert!(parse_replies(&[1, 0, 0, 0, 9, 0, 0, 0, 0], 1).is_err());
        assert!(parse_replies(&[0, 0, 0, 0, 1], 0).is_err());
    }
}
