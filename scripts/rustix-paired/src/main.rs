//! Paired old (libc, as in multiproc's src/sys before the move to rustix, commit 47de091) vs new
//! (rustix, as in src/sys after it) syscall wrappers. The `old` module copies the libc code; the
//! `new` module mirrors the rustix code. A measuring tool, not part of the crate: its unsafe
//! blocks are the copied libc code.
//! Usage: rustix-paired <case> <old|new> <n>      (runs the case n times; for callgrind diffs)
//!        rustix-paired wall <case> <rounds> <n>  (interleaved old/new batches; prints ns/op and ratio)
use std::hint::black_box;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::sync::OnceLock;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
fn cvt_retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            o => return o,
        }
    }
}

struct ShmName {
    buf: [u8; 256],
    len: usize,
}
impl ShmName {
    fn as_ptr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }
    fn as_c_str(&self) -> &std::ffi::CStr {
        unsafe { std::ffi::CStr::from_bytes_with_nul_unchecked(&self.buf[..=self.len]) }
    }
}
#[inline(never)]
fn shm_name(name: &str) -> io::Result<ShmName> {
    let name = name.as_bytes();
    if name.contains(&0) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    if name.len() >= 256 {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let mut c = ShmName {
        buf: [0; 256],
        len: name.len(),
    };
    c.buf[..name.len()].copy_from_slice(name);
    Ok(c)
}
fn shm_dir() -> BorrowedFd<'static> {
    static DIR: OnceLock<OwnedFd> = OnceLock::new();
    DIR.get_or_init(|| {
        let fd = unsafe {
            libc::open(
                c"/dev/shm".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        unsafe { OwnedFd::from_raw_fd(fd) }
    })
    .as_fd()
}

mod old {
    use super::*;
    #[inline(never)]
    pub fn futex_wake(w: &AtomicU32) -> u32 {
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                w.as_ptr(),
                libc::FUTEX_WAKE,
                1 as libc::c_int,
            )
        };
        r.max(0) as u32
    }
    #[inline(never)]
    pub fn timed_wait(w: &AtomicU32) -> bool {
        let ts = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        }; // long past on CLOCK_MONOTONIC
        let ts_ptr = &ts as *const libc::timespec;
        loop {
            if w.load(std::sync::atomic::Ordering::Relaxed) != 0 {
                return true;
            }
            let r = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    w.as_ptr(),
                    libc::FUTEX_WAIT_BITSET,
                    0u32,
                    ts_ptr,
                    std::ptr::null::<u32>(),
                    !0u32,
                )
            };
            if r == 0 {
                return true;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) => return false,
                _ => return true,
            }
        }
    }
    #[inline(never)]
    pub fn membarrier() -> bool {
        unsafe { libc::syscall(libc::SYS_membarrier, 1 << 1, 0, 0) == 0 }
    }
    unsafe fn fstat_raw(fd: i32, st: *mut libc::stat) -> libc::c_int {
        unsafe { libc::syscall(libc::SYS_fstat, fd, st) as libc::c_int }
    }
    #[inline(never)]
    pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        cvt_retry(|| unsafe { fstat_raw(fd.as_raw_fd(), &mut st) })?;
        Ok((st.st_size as u64, st.st_nlink as u64))
    }
    fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        cvt_retry(|| unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
    }
    #[inline(never)]
    pub fn create_named(name: &str, len: u64) -> io::Result<OwnedFd> {
        let (dir, c) = (shm_dir(), shm_name(name)?);
        let flags =
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = cvt_retry(|| unsafe {
            libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o600 as libc::c_uint)
        })?;
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        set_len(fd.as_fd(), len)?;
        Ok(fd)
    }
    #[inline(never)]
    pub fn unlink_named(name: &str) -> io::Result<()> {
        let (dir, c) = (shm_dir(), shm_name(name)?);
        cvt_retry(|| unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }
    #[inline(never)]
    pub fn rename_noreplace(from: &str, to: &str) -> io::Result<()> {
        let (dir, from, to) = (shm_dir(), shm_name(from)?, shm_name(to)?);
        cvt_retry(|| unsafe {
            libc::renameat2(
                dir.as_raw_fd(),
                from.as_ptr(),
                dir.as_raw_fd(),
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        })
        .map(drop)
    }
    #[inline(never)]
    pub fn memfd_sealed(len: u64) -> io::Result<OwnedFd> {
        let fd = cvt_retry(|| unsafe {
            libc::memfd_create(
                c"multiproc".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        })?;
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        set_len(fd.as_fd(), len)?;
        cvt_retry(|| unsafe {
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )
        })?;
        Ok(fd)
    }
    pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
        if fd.as_raw_fd() > 2 {
            return Ok(fd);
        }
        let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
        Ok(unsafe { OwnedFd::from_raw_fd(new) })
    }
    #[inline(never)]
    pub fn memfd(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
        let fd = cvt_retry(|| unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
        above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
    }
    fn with_file<R>(fd: BorrowedFd<'_>, f: impl FnOnce(&std::fs::File) -> R) -> R {
        let file =
            std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) });
        f(&file)
    }
    #[inline(never)]
    pub fn write_all_at(fd: BorrowedFd<'_>, buf: &[u8], off: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        with_file(fd, |f| f.write_all_at(buf, off))
    }
    #[inline(never)]
    pub fn read_exact_at(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        with_file(fd, |f| f.read_exact_at(buf, off))
    }
    #[inline(never)]
    pub fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        loop {
            let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    #[inline(never)]
    pub fn getpid() -> u32 {
        unsafe { libc::getpid() as u32 }
    }
    #[inline(never)]
    pub fn gettid() -> u32 {
        unsafe { libc::gettid() as u32 }
    }
    #[inline(never)]
    pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
        let fd =
            unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
    #[inline(never)]
    pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    #[inline(never)]
    pub fn try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<(i32, i32)>> {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        cvt_retry(|| unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        })?;
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some((info.si_code, status)))
    }
    #[inline(never)]
    pub fn poll_now(fd: BorrowedFd<'_>) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r > 0)
    }
    #[inline(never)]
    pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0 as libc::c_int; 2];
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((above_stdio(r)?, above_stdio(w)?))
    }
    #[inline(never)]
    pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
    }
    #[inline(never)]
    pub fn random_u64() -> io::Result<u64> {
        let mut buf = [0u8; 8];
        let mut filled = 0;
        while filled < buf.len() {
            let n = unsafe {
                libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            filled += n as usize;
        }
        Ok(u64::from_ne_bytes(buf))
    }
    #[inline(never)]
    pub fn geteuid() -> u32 {
        unsafe { libc::geteuid() }
    }
    #[inline(never)]
    pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        let (o, l) = (offset as libc::off_t, len as libc::off_t);
        cvt_retry(|| unsafe {
            libc::fallocate(
                fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                o,
                l,
            )
        })
        .map(drop)
    }
    // ---- sockets ----
    #[inline(never)]
    pub fn send_with_fds(sock: BorrowedFd<'_>, buf: &[u8], fds: &[i32]) -> io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 140];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let data_len = std::mem::size_of_val(fds) as u32;
            let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
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
        loop {
            let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    #[inline(never)]
    pub fn recv_with_fds(
        sock: BorrowedFd<'_>,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
    ) -> io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 140];
        loop {
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_SOCKET
                        && (*cmsg).cmsg_type == libc::SCM_RIGHTS
                    {
                        let header = libc::CMSG_LEN(0) as usize;
                        let count = ((*cmsg).cmsg_len as usize).saturating_sub(header) / 4;
                        let data = libc::CMSG_DATA(cmsg).cast::<i32>();
                        for i in 0..count {
                            fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
            }
            return Ok(n as usize);
        }
    }
    #[inline(never)]
    pub fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0 as libc::c_int; 2];
        cvt(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        })?;
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }
}

mod new {
    use super::*;
    use rustix::fs::{self as rfs, Mode, OFlags};
    use rustix::io::{retry_on_intr, Errno};
    use rustix::thread::futex::{self, Flags, Timespec};
    use std::num::NonZeroU32;
    #[inline(never)]
    pub fn futex_wake(w: &AtomicU32) -> u32 {
        futex::wake(w, Flags::empty(), 1).map_or(0, |n| n as u32)
    }
    #[inline(never)]
    pub fn timed_wait(w: &AtomicU32) -> bool {
        let ts = Some(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        loop {
            if w.load(std::sync::atomic::Ordering::Relaxed) != 0 {
                return true;
            }
            match futex::wait_bitset(w, Flags::empty(), 0, ts.as_ref(), NonZeroU32::MAX) {
                Ok(()) => return true,
                Err(Errno::INTR) => continue,
                Err(Errno::TIMEDOUT) => return false,
                Err(_) => return true,
            }
        }
    }
    #[inline(never)]
    pub fn membarrier() -> bool {
        rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_ok()
    }
    #[inline(never)]
    pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
        let st = retry_on_intr(|| rfs::fstat(fd))?;
        Ok((st.st_size as u64, st.st_nlink as u64))
    }
    fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
        if i64::try_from(len).is_err() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        Ok(retry_on_intr(|| rfs::ftruncate(fd, len))?)
    }
    #[inline(never)]
    pub fn create_named(name: &str, len: u64) -> io::Result<OwnedFd> {
        let (dir, c) = (shm_dir(), shm_name(name)?);
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = retry_on_intr(|| rfs::openat(dir, c.as_c_str(), flags, Mode::RUSR | Mode::WUSR))?;
        set_len(fd.as_fd(), len)?;
        Ok(fd)
    }
    #[inline(never)]
    pub fn unlink_named(name: &str) -> io::Result<()> {
        let (dir, c) = (shm_dir(), shm_name(name)?);
        Ok(retry_on_intr(|| {
            rfs::unlinkat(dir, c.as_c_str(), rfs::AtFlags::empty())
        })?)
    }
    #[inline(never)]
    pub fn rename_noreplace(from: &str, to: &str) -> io::Result<()> {
        let (dir, from, to) = (shm_dir(), shm_name(from)?, shm_name(to)?);
        Ok(retry_on_intr(|| {
            rfs::renameat_with(
                dir,
                from.as_c_str(),
                dir,
                to.as_c_str(),
                rfs::RenameFlags::NOREPLACE,
            )
        })?)
    }
    #[inline(never)]
    pub fn memfd_sealed(len: u64) -> io::Result<OwnedFd> {
        let fd = retry_on_intr(|| {
            rfs::memfd_create(
                c"multiproc",
                rfs::MemfdFlags::CLOEXEC | rfs::MemfdFlags::ALLOW_SEALING,
            )
        })?;
        set_len(fd.as_fd(), len)?;
        retry_on_intr(|| {
            rfs::fcntl_add_seals(
                &fd,
                rfs::SealFlags::SHRINK | rfs::SealFlags::GROW | rfs::SealFlags::SEAL,
            )
        })?;
        Ok(fd)
    }
    pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
        if fd.as_raw_fd() > 2 {
            return Ok(fd);
        }
        Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
    }
    #[inline(never)]
    pub fn memfd(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
        above_stdio(retry_on_intr(|| {
            rfs::memfd_create(name, rfs::MemfdFlags::CLOEXEC)
        })?)
    }
    #[inline(never)]
    pub fn write_all_at(fd: BorrowedFd<'_>, mut buf: &[u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match rustix::io::pwrite(fd, buf, off) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    off += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    #[inline(never)]
    pub fn read_exact_at(fd: BorrowedFd<'_>, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match rustix::io::pread(fd, &mut *buf, off) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    off += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    #[inline(never)]
    pub fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if i64::try_from(offset).is_err() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        Ok(retry_on_intr(|| rustix::io::pread(fd, &mut *buf, offset))?)
    }
    #[inline(never)]
    pub fn getpid() -> u32 {
        rustix::process::getpid().as_raw_pid() as u32
    }
    #[inline(never)]
    pub fn gettid() -> u32 {
        rustix::thread::gettid().as_raw_pid() as u32
    }
    #[inline(never)]
    pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
        let pid = rustix::process::Pid::from_raw(pid as i32).ok_or(io::ErrorKind::InvalidInput)?;
        Ok(rustix::process::pidfd_open(
            pid,
            rustix::process::PidfdFlags::empty(),
        )?)
    }
    #[inline(never)]
    pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
        let sig =
            rustix::process::Signal::from_named_raw(signal).ok_or(io::ErrorKind::InvalidInput)?;
        Ok(rustix::process::pidfd_send_signal(pidfd, sig)?)
    }
    #[inline(never)]
    pub fn try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<(i32, i32)>> {
        use rustix::process::{waitid, WaitId, WaitIdOptions};
        let st = retry_on_intr(|| {
            waitid(
                WaitId::PidFd(pidfd),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            )
        })?;
        Ok(st.map(|s| {
            (
                s.raw_code(),
                s.exit_status().or(s.terminating_signal()).unwrap_or(0),
            )
        }))
    }
    #[inline(never)]
    pub fn poll_now(fd: BorrowedFd<'_>) -> io::Result<bool> {
        use rustix::event::{poll, PollFd, PollFlags};
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        Ok(poll(&mut fds, Some(&ts))? > 0)
    }
    #[inline(never)]
    pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok((above_stdio(r)?, above_stdio(w)?))
    }
    #[inline(never)]
    pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?)
    }
    #[inline(never)]
    pub fn random_u64() -> io::Result<u64> {
        let mut buf = [0u8; 8];
        let mut filled = 0;
        while filled < buf.len() {
            match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())
            {
                Ok(n) => filled += n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(u64::from_ne_bytes(buf))
    }
    #[inline(never)]
    pub fn geteuid() -> u32 {
        rustix::process::geteuid().as_raw()
    }
    #[inline(never)]
    pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        Ok(retry_on_intr(|| {
            rfs::fallocate(
                fd,
                rfs::FallocateFlags::PUNCH_HOLE | rfs::FallocateFlags::KEEP_SIZE,
                offset,
                len,
            )
        })?)
    }
    // ---- sockets ----
    use rustix::net::{
        self, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
        SendAncillaryMessage, SendFlags,
    };
    #[inline(never)]
    pub fn send_with_fds(
        sock: BorrowedFd<'_>,
        buf: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<usize> {
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); 1120];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        Ok(retry_on_intr(|| {
            net::sendmsg(
                sock,
                &[io::IoSlice::new(buf)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
        })?)
    }
    #[inline(never)]
    pub fn recv_with_fds(
        sock: BorrowedFd<'_>,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
    ) -> io::Result<usize> {
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); 1120];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = retry_on_intr(|| {
            net::recvmsg(
                sock,
                &mut [io::IoSliceMut::new(buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
        })?;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(r) = m {
                fds.extend(r);
            }
        }
        Ok(msg.bytes)
    }
    #[inline(never)]
    pub fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
        Ok(net::socketpair(
            net::AddressFamily::UNIX,
            net::SocketType::STREAM,
            net::SocketFlags::CLOEXEC,
            None,
        )?)
    }
}

struct Fixture {
    word: AtomicU32,
    memfd: OwnedFd,
    pidfd: OwnedFd,
    pipe_r: OwnedFd,
    _pipe_w: OwnedFd,
    sock_a: OwnedFd,
    sock_b: OwnedFd,
    passfd: OwnedFd,
    seq: u64,
}

fn fixture() -> Fixture {
    let memfd = old::memfd(c"bench").unwrap();
    old::write_all_at(memfd.as_fd(), &[7u8; 4096], 0).unwrap();
    let pidfd = old::pidfd_open(old::getpid()).unwrap_or_else(|_| old::memfd(c"nopidfd").unwrap());
    let (pipe_r, _pipe_w) = old::pipe_cloexec().unwrap();
    let (sock_a, sock_b) = old::stream_pair().unwrap();
    let passfd = old::memfd(c"pass").unwrap();
    Fixture {
        word: AtomicU32::new(0),
        memfd,
        pidfd,
        pipe_r,
        _pipe_w,
        sock_a,
        sock_b,
        passfd,
        seq: 0,
    }
}

macro_rules! cases {
    ($m:ident, $case:expr, $fx:expr, $n:expr) => {{
        let fx: &mut Fixture = $fx;
        let pid = std::process::id();
        match $case {
            "futex_wake" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::futex_wake(&fx.word));
                }
            }
            "timed_wait" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::timed_wait(&fx.word));
                }
            }
            "membarrier" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::membarrier());
                }
            }
            "fstat" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::fstat(fx.memfd.as_fd()).unwrap());
                }
            }
            "pread" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    let mut b = [0u8; 64];
                    black_box($m::read_at(fx.memfd.as_fd(), &mut b, 128).unwrap());
                }
            }
            "named_segment" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    let name = format!("rxp-{pid}-{}", fx.seq);
                    let fd = $m::create_named(&name, 4096).unwrap();
                    black_box($m::fstat(fd.as_fd()).unwrap());
                    drop(fd);
                    $m::unlink_named(&name).unwrap();
                }
            }
            "renameat2" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    let (a, b) = (
                        format!("rxa-{pid}-{}", fx.seq),
                        format!("rxb-{pid}-{}", fx.seq),
                    );
                    drop($m::create_named(&a, 4096).unwrap());
                    $m::rename_noreplace(&a, &b).unwrap();
                    $m::unlink_named(&b).unwrap();
                }
            }
            "memfd" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::memfd_sealed(4096).unwrap());
                }
            }
            "bootstrap" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    let fd = $m::memfd(c"multiproc-boot").unwrap();
                    $m::write_all_at(fd.as_fd(), &[1u8; 256], 0).unwrap();
                    let mut b = [0u8; 256];
                    $m::read_exact_at(fd.as_fd(), &mut b, 0).unwrap();
                    black_box(b);
                }
            }
            "getpid" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::getpid());
                }
            }
            "gettid" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::gettid());
                }
            }
            "geteuid" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::geteuid());
                }
            }
            "pidfd_open" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::pidfd_open(pid).unwrap());
                }
            }
            "pidfd_signal0" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    let _ = black_box($m::pidfd_send_signal(fx.pidfd.as_fd(), libc::SIGCHLD));
                }
            }
            "waitid" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    let _ = black_box($m::try_reap(fx.pidfd.as_fd()));
                }
            }
            "ppoll" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::poll_now(fx.pipe_r.as_fd()).unwrap());
                }
            }
            "pipe2" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::pipe_cloexec().unwrap());
                }
            }
            "set_cloexec" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    $m::set_cloexec(fx.memfd.as_fd()).unwrap();
                }
            }
            "getrandom" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    black_box($m::random_u64().unwrap());
                }
            }
            "punch_hole" => {
                for _ in 0..$n {
                    fx.seq += 1;
                    $m::punch_hole(fx.memfd.as_fd(), 0, 4096).unwrap();
                }
            }
            _ => panic!("unknown case"),
        }
    }};
}

fn run(case: &str, mode: &str, fx: &mut Fixture, n: u64) {
    for _ in 0..if matches!(case, "sendrecv_fd" | "sendrecv" | "socketpair") {
        n
    } else {
        0
    } {
        if case == "sendrecv_fd" {
            // one 16-byte message carrying one fd, sent and received
            let mut got = Vec::new();
            let mut b = [0u8; 64];
            if mode == "old" {
                old::send_with_fds(fx.sock_a.as_fd(), &[3u8; 16], &[fx.passfd.as_raw_fd()])
                    .unwrap();
                old::recv_with_fds(fx.sock_b.as_fd(), &mut b, &mut got).unwrap();
            } else {
                new::send_with_fds(fx.sock_a.as_fd(), &[3u8; 16], &[fx.passfd.as_fd()]).unwrap();
                new::recv_with_fds(fx.sock_b.as_fd(), &mut b, &mut got).unwrap();
            }
            assert_eq!(got.len(), 1);
            continue;
        }
        if case == "sendrecv" {
            let mut got = Vec::new();
            let mut b = [0u8; 64];
            if mode == "old" {
                old::send_with_fds(fx.sock_a.as_fd(), &[3u8; 16], &[]).unwrap();
                old::recv_with_fds(fx.sock_b.as_fd(), &mut b, &mut got).unwrap();
            } else {
                new::send_with_fds(fx.sock_a.as_fd(), &[3u8; 16], &[]).unwrap();
                new::recv_with_fds(fx.sock_b.as_fd(), &mut b, &mut got).unwrap();
            }
            continue;
        }
        if case == "socketpair" {
            if mode == "old" {
                black_box(old::stream_pair().unwrap());
            } else {
                black_box(new::stream_pair().unwrap());
            }
            continue;
        }
    }
    if !matches!(case, "sendrecv_fd" | "sendrecv" | "socketpair") {
        if mode == "old" {
            cases!(old, case, fx, n)
        } else {
            cases!(new, case, fx, n)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut fx = fixture();
    if args[1] == "wall" {
        let (case, rounds, n): (&str, u32, u64) =
            (&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        run(case, "old", &mut fx, n);
        run(case, "new", &mut fx, n); // warm up
        let mut ratios = Vec::new();
        let (mut to, mut tn) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let order: [&str; 2] = if r % 2 == 0 {
                ["old", "new"]
            } else {
                ["new", "old"]
            };
            let mut t = [0f64; 2];
            for m in order {
                let s = std::time::Instant::now();
                run(case, m, &mut fx, n);
                let ns = s.elapsed().as_nanos() as f64 / n as f64;
                if m == "old" {
                    t[0] = ns
                } else {
                    t[1] = ns
                }
            }
            to.push(t[0]);
            tn.push(t[1]);
            ratios.push(t[1] / t[0]);
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let min = |v: &Vec<f64>| v.iter().cloned().fold(f64::INFINITY, f64::min);
        let (mo, mn) = (min(&to), min(&tn));
        println!("{case}: median old {:.0} ns new {:.0} ns, median of paired new/old {:.3}; min old {:.0} ns new {:.0} ns, min ratio {:.3}", med(&mut to), med(&mut tn), med(&mut ratios), mo, mn, mn / mo);
    } else {
        run(&args[1], &args[2], &mut fx, args[3].parse().unwrap());
    }
}
