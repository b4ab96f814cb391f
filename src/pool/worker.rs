//! The worker process: read task frames from the socket, run them in order, reply to each.
//!
//! A worker runs one frame at a time, in the order they arrived, and sends each frame's
//! replies before it looks at the next frame. So when it dies, the pool knows: frames it
//! replied to are done, the first unanswered one is the one it held (running, or about to),
//! and the ones behind it never started. Before it runs a frame, it claims it
//! ([`claim`](super::claim)); a frame the pool took back meanwhile is skipped, unanswered.

use super::claim::{self, Slots};
use super::frame::{self, Reply};
use crate::crash;
use crate::process::{FdArg, anchor_addr, panic_message};
use crate::shm::{Shared, handoff};
use crate::sys::socket;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// The worker's spawn arguments.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Boot {
    /// The worker's end of its socket.
    pub(super) sock: FdArg,
    /// Frames to serve before exiting; 0 for no limit.
    pub(super) max_tasks: u64,
    /// The table through which it claims each frame before running it.
    pub(super) claims: Shared<Slots>,
    /// Fork start method only: fd numbers of the pool's own fds that the forked copy must close
    /// (other workers' socket ends, the wake pipe), so that end of file still reaches them.
    #[serde(skip)]
    pub(super) close: Vec<RawFd>,
}

/// The type of every `run_chunk::<A, R>`: runs the entry on each argument and appends one
/// reply per argument to `out`; false if any of them did not return.
pub(super) type ChunkFn =
    fn(entry: usize, args: frame::Args<'_>, slots: &[RawFd], out: &mut Vec<u8>) -> bool;

/// Decodes the arguments of one frame, runs `entry` on each. Without fds, each argument is
/// decoded just before its task runs (no per-chunk list); with fds, all are decoded first,
/// while the fds are importable.
///
/// Monomorphised per `(A, R)` in the pool, which passes its offset in the frame.
pub(super) fn run_chunk<A: DeserializeOwned, R: Serialize>(
    entry: usize,
    mut args: frame::Args<'_>,
    slots: &[RawFd],
    out: &mut Vec<u8>,
) -> bool {
    // SAFETY: the pool computed this address's offset from `entry: fn(A) -> R` together with
    // this very wrapper's (`entry_offsets` checked both are in the executable), so it is a
    // function of exactly this type in this executable.
    let entry = unsafe { std::mem::transmute::<usize, fn(A) -> R>(entry) };
    let decode = |a: Result<&[u8], String>| {
        a.and_then(|bytes| postcard::from_bytes::<A>(bytes).map_err(|e| e.to_string()))
    };
    out.extend_from_slice(&args.len().to_le_bytes());
    // A reply of a small result takes a few bytes besides its 5-byte header.
    out.reserve((args.len() as usize).min(1 << 20) * 8);
    let mut all_returned = true;
    if slots.is_empty() {
        for arg in args.by_ref() {
            all_returned &= run_one(entry, decode(arg), out);
        }
    } else {
        let decoded: Vec<Result<A, String>> =
            handoff::with_imports(slots, || args.by_ref().map(decode).collect());
        for arg in decoded {
            all_returned &= run_one(entry, arg, out);
        }
    }
    // A truncated frame leaves fewer replies than tasks: the pool replaces this worker.
    all_returned && args.complete()
}

/// Runs `entry` on one decoded argument and appends its reply; false if it did not return.
fn run_one<A, R: Serialize>(entry: fn(A) -> R, arg: Result<A, String>, out: &mut Vec<u8>) -> bool {
    let arg = match arg {
        Ok(a) => a,
        Err(e) => {
            frame::push_failure(out, &Reply::BadArgs(e));
            return false;
        }
    };
    match catch_unwind(AssertUnwindSafe(|| entry(arg))) {
        Ok(r) => {
            frame::push_reply(out, |b| frame::encode(b, &r));
            true
        }
        Err(payload) => {
            frame::push_failure(out, &Reply::Panicked(panic_message(payload.as_ref())));
            false
        }
    }
}

/// The worker's entry: serves frames until the pool shuts its socket, it served `max_tasks`
/// frames, or its initializer failed.
pub(super) fn serve(boot: Boot) {
    for &fd in &boot.close {
        crate::sys::process::close_raw(fd);
    }
    let sock: OwnedFd = boot.sock.0;
    let mut inbuf: Vec<u8> = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut start = 0; // first unread byte of `inbuf`
    let mut fds: VecDeque<OwnedFd> = VecDeque::new();
    let mut received = Vec::new();
    let mut out = Vec::with_capacity(4096);
    let mut served = 0u64;
    loop {
        while let Ok(Some(f)) = frame::next_frame(&inbuf[start..]) {
            let body = start + f.body.start..start + f.body.end;
            start = body.end;
            if !claim::claim(&boot.claims, f.id) {
                skip_frame(&inbuf[body], &mut fds);
                continue;
            }
            crash::point("pool.worker.took_task");
            let ok = run_frame(f.kind, f.id, &inbuf[body], &mut fds, &mut out);
            crash::point("pool.worker.ran_task");
            if reply(sock.as_fd(), &out).is_err() {
                return;
            }
            out.clear();
            served += 1;
            if (f.kind == frame::KIND_INIT && !ok) || served == boot.max_tasks {
                return;
            }
        }
        if frame::next_frame(&inbuf[start..]).is_err() {
            return; // the pool never sends this: nothing sensible is left to do
        }
        inbuf.drain(..start);
        start = 0;
        let n = match recv_soon(sock.as_fd(), &mut scratch, &mut received) {
            Ok(n) => n,
            Err(_) => return,
        };
        inbuf.extend_from_slice(&scratch[..n]);
        fds.extend(received.drain(..));
        if n == 0 {
            return; // the pool closed our socket (or is gone)
        }
        crash::point("pool.worker.received");
    }
}

/// Drops the fds that came with a frame the pool took back, so the next frame gets its own.
fn skip_frame(body: &[u8], fds: &mut VecDeque<OwnedFd>) {
    let nfds = frame::parse_task(body).map_or(0, |t| t.nfds as usize);
    fds.drain(..nfds.min(fds.len()));
}

/// How long a worker keeps polling its socket for the next frame before it blocks: a caller
/// that sends its next task within this time finds the worker running, not asleep (a wake-up
/// costs more than the round trip it delays). An idle worker polls this long, then sleeps.
/// Between polls it yields the CPU: on a busy machine the peer it waits for may need this core
/// (a pure spin there made round trips bimodal, 7 µs or 130 µs; yielding held them at 20–30 µs).
const SPIN: Duration = Duration::from_micros(50);

/// Receives from the socket, polling it for up to [`SPIN`] before a blocking receive.
fn recv_soon(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> std::io::Result<usize> {
    let until = Instant::now() + SPIN;
    loop {
        match socket::recv_with_fds(sock, buf, fds, true) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            done => return done,
        }
        if Instant::now() >= until {
            return socket::recv_with_fds(sock, buf, fds, false);
        }
        std::thread::yield_now();
    }
}

/// Sends one frame of replies, with a crash point halfway through (in one `send` when crash
/// points are compiled out: two would wake the pool twice).
fn reply(sock: BorrowedFd<'_>, out: &[u8]) -> std::io::Result<()> {
    let half = if crash::ENABLED { out.len() / 2 } else { 0 };
    let (first, second) = out.split_at(half);
    socket::send_all(sock, first)?;
    crash::point("pool.worker.mid_result");
    socket::send_all(sock, second)?;
    crash::point("pool.worker.sent_result");
    Ok(())
}

/// Runs one TASK or INIT frame and appends its RESULTS frame to `out`; false if a task did not
/// return (or the frame could not be read).
fn run_frame(
    kind: u8,
    id: u64,
    body: &[u8],
    fds: &mut VecDeque<OwnedFd>,
    out: &mut Vec<u8>,
) -> bool {
    let start = frame::begin(out, frame::KIND_RESULTS, id);
    let task = match frame::parse_task(body) {
        Ok(t) if kind == frame::KIND_TASK || kind == frame::KIND_INIT => t,
        _ => {
            // Unreadable: the pool sees a wrong reply count and replaces this worker.
            out.extend_from_slice(&0u32.to_le_bytes());
            frame::finish(out, start);
            return false;
        }
    };
    let take = (task.nfds as usize).min(fds.len());
    let slots: Vec<RawFd> = fds.drain(..take).map(IntoRawFd::into_raw_fd).collect();
    let anchor = anchor_addr();
    let wrapper = anchor.wrapping_add_signed(task.wrapper as isize);
    // SAFETY: the pool (our parent, the same executable) computed `wrapper` as the offset of
    // `run_chunk::<A, R> as ChunkFn` from the anchor, so this address is that function here,
    // which has exactly the `ChunkFn` type.
    let run: ChunkFn = unsafe { std::mem::transmute::<usize, ChunkFn>(wrapper) };
    let ok = run(
        anchor.wrapping_add_signed(task.entry as isize),
        task.args,
        &slots,
        out,
    );
    frame::finish(out, start);
    ok
}
