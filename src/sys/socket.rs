//! Unix stream socket pairs that carry bytes and file descriptors (`SCM_RIGHTS`), and `poll`.
//!
//! The pool talks to each worker over one pair: tasks and the fds of shared handles inside
//! them go one way, results the other. Every fd made or received here is `O_CLOEXEC`.

use super::cvt;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The most fds one `sendmsg` may carry (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;
/// The most slices one [`send_with_fds`] takes (well below the kernel's `UIO_MAXIOV`).
pub(crate) const MAX_IOV: usize = 64;

/// A connected pair of `AF_UNIX` stream sockets, both `O_CLOEXEC`.
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both are new fds owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an open fd only read and change its status flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Sends the bytes of `bufs`, in order, in one `sendmsg`, with `fds` attached to the first
/// byte; returns the bytes sent (the fds went with them if it is more than zero). At most
/// [`MAX_IOV`] slices. Never raises `SIGPIPE` (`EPIPE` instead); with `dontwait`, gives
/// `WouldBlock` rather than blocking. `EINTR` is retried.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[RawFd],
    dontwait: bool,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS || bufs.len() > MAX_IOV {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: an all-zero msghdr (null pointers, zero lengths) is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on Unix (its documented guarantee); sendmsg
    // only reads the slices.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // Zeroed (1 KiB) only for a message that carries fds; it outlives the `sendmsg`.
    let mut control: ControlBuf;
    if !fds.is_empty() {
        control = ControlBuf::new();
        let data_len = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg_control` points to `control`, at least `space` bytes (checked by
        // `ControlBuf`'s size, which holds MAX_FDS fds) and aligned for cmsghdr; the header
        // and the data written lie within those `space` bytes.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                data_len as usize,
            );
        }
    }
    let flags = libc::MSG_NOSIGNAL | if dontwait { libc::MSG_DONTWAIT } else { 0 };
    loop {
        // SAFETY: `msg` points to the live slices of `bufs` and to a control buffer laid out
        // above; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Control-message room for [`MAX_FDS`] fds, aligned for `cmsghdr`.
struct ControlBuf([u64; 140]);

impl ControlBuf {
    fn new() -> Self {
        const _: () = assert!(std::mem::size_of::<ControlBuf>() >= 16 + MAX_FDS * 4 + 8);
        ControlBuf([0; 140])
    }
}

/// Receives into `buf`, appending any fds that came with the bytes to `fds` (as `O_CLOEXEC`
/// owned fds). `Ok(0)` is end of file. With `dontwait`, `WouldBlock` instead of blocking.
/// `EINTR` is retried.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    dontwait: bool,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = ControlBuf::new();
    let flags = libc::MSG_CMSG_CLOEXEC | if dontwait { libc::MSG_DONTWAIT } else { 0 };
    loop {
        // SAFETY: an all-zero msghdr is a valid value; the fields set below point to live
        // buffers of the stated lengths.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of::<ControlBuf>() as _;
        // SAFETY: `msg` describes `buf` and `control`, both writable for their lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: recvmsg filled `msg_controllen` bytes of `control` with well-formed control
        // messages; the CMSG_* macros walk them within that length.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let header = libc::CMSG_LEN(0) as usize;
                    let count = ((*cmsg).cmsg_len as usize).saturating_sub(header) / 4;
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    for i in 0..count {
                        let fd = data.add(i).read_unaligned();
                        // The kernel installed this fd for us just now; nothing else owns it.
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        return Ok(n as usize);
    }
}

/// `shutdown(SHUT_WR)`: the peer reads end of file once it has read what was sent, whoever
/// else holds a copy of this fd.
pub(crate) fn shutdown_write(sock: BorrowedFd<'_>) {
    // SAFETY: shutdown on an open fd has no memory-safety preconditions; an error (the peer is
    // gone) leaves nothing to do.
    unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_WR) };
}

/// Writes all of `buf` to a blocking socket (`EINTR` retried, `EPIPE` instead of `SIGPIPE`).
pub(crate) fn send_all(sock: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = send_with_fds(sock, &[IoSlice::new(buf)], &[], false)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// What `poll` reported for one fd.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    /// Data (or end of file) to read.
    pub(crate) readable: bool,
    /// Room to write.
    pub(crate) writable: bool,
    /// Hang-up or error: reading tells which.
    pub(crate) hangup: bool,
}

/// Waits until one of `fds` (each with "want to write" flag) is ready or `timeout_ms` passes
/// (`-1`: forever). Returns one `Ready` per fd; `EINTR` returns with nothing ready.
pub(crate) fn poll(fds: &[(BorrowedFd<'_>, bool)], timeout_ms: i32) -> io::Result<Vec<Ready>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, write)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN | if *write { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        pfds.iter_mut().for_each(|p| p.revents = 0);
    }
    Ok(pfds
        .iter()
        .map(|p| Ready {
            readable: p.revents & libc::POLLIN != 0,
            writable: p.revents & libc::POLLOUT != 0,
            hangup: p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        })
        .collect())
}

/// Writes one byte to a nonblocking wake pipe (a full pipe is already awake).
pub(crate) fn wake(fd: BorrowedFd<'_>) {
    let b = 1u8;
    // SAFETY: writes one byte from a live local; failures (full pipe) need no handling.
    unsafe { libc::write(fd.as_raw_fd(), (&b as *const u8).cast(), 1) };
}

/// Empties a nonblocking wake pipe.
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a live local buffer of its length; stops at EAGAIN or EOF.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn bytes_and_fds_cross_a_pair() {
        let (a, b) = stream_pair().unwrap();
        let (r, w) = crate::sys::process::pipe_cloexec().unwrap();
        let n = send_with_fds(
            a.as_fd(),
            &[IoSlice::new(b"hello")],
            &[w.as_raw_fd()],
            false,
        )
        .unwrap();
        assert_eq!(n, 5);
        drop(w);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        // The received fd is the pipe's write end: writing reaches `r`.
        // SAFETY: test-only write of one byte from a live local to an open pipe.
        let wrote = unsafe { libc::write(fds[0].as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(wrote, 1);
        let mut got = [0u8; 1];
        // SAFETY: test-only read into a live local buffer of its length.
        let read = unsafe { libc::read(r.as_raw_fd(), got.as_mut_ptr().cast(), 1) };
        assert_eq!(read, 1);
        assert_eq!(got, *b"x");
        drop(fds);
        shutdown_write(a.as_fd());
        assert_eq!(
            recv_with_fds(b.as_fd(), &mut buf, &mut Vec::new(), false).unwrap(),
            0
        );
        set_nonblocking(a.as_fd()).unwrap();
        let e = recv_with_fds(a.as_fd(), &mut buf, &mut Vec::new(), true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
