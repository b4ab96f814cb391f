//! Processes: memfds for bootstrap records, fd flags, pidfds, reaping, signals, `fork`, `dladdr`.
//!
//! A child is named by a pidfd rather than a PID: a pidfd keeps naming the same process after it
//! was reaped (signals then fail with `ESRCH`), so no call here can hit a recycled PID.

use super::time::Deadline;
use super::{cvt, cvt_retry};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// How a child ended, as `waitid` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It called `exit(code)` or returned from `main`.
    Exited(i32),
    /// A signal killed it (with or without a core dump).
    Signaled(i32),
}

/// A new memfd (`O_CLOEXEC`, no seals) named `name`, used to carry a bootstrap and result record.
pub(crate) fn memfd(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string and the flags are a valid combination.
    let fd = cvt_retry(|| unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fd`, moved to a number above 2 if it landed on 0, 1 or 2 (in a process that closed its
/// standard streams): fds handed to a child must never take the place of its stdio, which the
/// child's runtime would treat as closed streams and reopen or ignore.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open fd is sound; `fd` is closed when it drops below.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Lends `fd` to std's `File` for one call, without taking ownership (no dup, no close).
fn with_file<R>(fd: BorrowedFd<'_>, f: impl FnOnce(&std::fs::File) -> R) -> R {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is open for the whole call; `ManuallyDrop` keeps the `File` from closing it,
    // so ownership stays with the caller.
    let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) });
    f(&file)
}

/// Writes all of `buf` at `offset` (`pwrite`, so the shared file offset is never used).
pub(crate) fn write_all_at(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    with_file(fd, |file| file.write_all_at(buf, offset))
}

/// Reads into all of `buf` from `offset` (`pread`); `UnexpectedEof` if the file is shorter.
///
/// `pread` fails with `ESPIPE` on pipes and sockets, so this never blocks on an fd that turns
/// out not to be a file.
pub(crate) fn read_exact_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    with_file(fd, |file| file.read_exact_at(buf, offset))
}

/// Whether the fd number `fd` is an open regular file (a memfd is one); false for closed fds,
/// pipes and sockets. Sound for any integer.
pub(crate) fn is_regular_file(fd: RawFd) -> bool {
    file_type(fd) == Some(libc::S_IFREG)
}

/// Whether the fd number `fd` is an open pipe. Sound for any integer.
pub(crate) fn is_pipe(fd: RawFd) -> bool {
    file_type(fd) == Some(libc::S_IFIFO)
}

fn file_type(fd: RawFd) -> Option<libc::mode_t> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only reads the fd number (any integer is acceptable; a bad one gives EBADF)
    // and writes into `st`, a valid stat buffer.
    let r = unsafe { libc::fstat(fd, &mut st) };
    (r == 0).then_some(st.st_mode & libc::S_IFMT)
}

/// Sets `FD_CLOEXEC` on `fd`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is open for the duration of the call.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// A new fd (`O_CLOEXEC`, numbered above 2, see [`above_stdio`]) for the open file behind the
/// raw fd number `fd`.
pub(crate) fn dup_raw_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on any fd number is sound; a closed fd gives EBADF.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Takes ownership of an fd number this process inherited.
///
/// # Safety
/// - `fd` must be open and owned by nobody else in this process (it was inherited across `exec`
///   and no other code refers to it).
pub(crate) unsafe fn own_inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A pipe, both ends `O_CLOEXEC` and numbered above 2 (see [`above_stdio`]): (read end, write end).
pub(crate) fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are new fds owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// Blocks until `fd` reports end of file or an error (data read is discarded).
pub(crate) fn read_until_eof(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is valid for writes of its length and `fd` is open for the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return;
        }
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// 64 random bits from the kernel.
pub(crate) fn random_u64() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
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

/// A pidfd for our child `pid` (`pidfd_open`, `O_CLOEXEC` by definition).
///
/// Race-free for a child that has not been reaped yet: the PID cannot be reused before that.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd`. `ESRCH` once it has been reaped.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: a null siginfo asks the kernel to fill it in as for kill(2); flags must be 0.
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

/// Waits until `fd` is readable (a pidfd: its process exited) or `deadline` passes; `Ok(false)`
/// on timeout. `None` waits forever; a deadline already past just checks.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Deadline>) -> io::Result<bool> {
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = deadline.map(|d| {
            let left = d.remaining();
            libc::timespec {
                tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        });
        let tp = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `pfd` is one valid pollfd, `tp` is null or points to a live timespec, and a
        // null signal mask leaves the mask unchanged.
        let r = unsafe { libc::ppoll(&mut pfd, 1, tp, std::ptr::null()) };
        match r {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => {
                if deadline.is_some_and(Deadline::has_passed) {
                    return Ok(false);
                }
            }
            _ => return Ok(true),
        }
    }
}

/// Reaps the child behind `pidfd` if it has ended (`waitid(P_PIDFD, WEXITED | WNOHANG)`);
/// `Ok(None)` while it runs.
pub(crate) fn try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<Ended>> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let options = libc::WEXITED | libc::WNOHANG;
    // SAFETY: `info` is a valid siginfo_t buffer and the pidfd is open for the call.
    cvt_retry(|| unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            options,
        )
    })?;
    // SAFETY: waitid filled `info` for a child event, or left it zeroed (si_pid 0) under WNOHANG;
    // both make the SIGCHLD fields readable.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => Ended::Exited(status),
        _ => Ended::Signaled(status),
    }))
}

/// `fork()`. In the child, only async-signal-safe work is sound unless the parent was single
/// threaded; see `Process::fork_spawn`.
///
/// # Safety
/// - The caller must uphold `fork`'s preconditions for whatever the child runs next.
// Inlined so the child resumes in its caller's code: every other code page it runs costs it a
// page fault (a fork child starts with no page table entries for the executable).
#[inline(always)]
pub(crate) unsafe fn fork() -> io::Result<u32> {
    // SAFETY: the caller takes responsibility for what the child does.
    let pid = unsafe { libc::fork() };
    // Checked here rather than by `cvt`, whose code the child would fault in.
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid as u32)
}

/// Ends the calling process at once with `code`, without atexit handlers or destructors.
#[inline]
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// Kills the calling process on the spot: `SIGKILL` to itself, or `_exit(77)`.
#[cfg(all(feature = "crash-injection", debug_assertions))]
pub(crate) fn die_now(kill: bool) -> ! {
    if kill {
        // SAFETY: raising a signal has no memory-safety preconditions; SIGKILL cannot be caught,
        // so the process ends here.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    exit_now(77)
}

/// Closes the raw fd `fd` (used in a forked child for an fd whose owner lives in the parent).
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: closing an fd number is memory safe; the caller knows no live owner in this
    // process will use it again (the owning value is forgotten, not dropped).
    unsafe { libc::close(fd) };
}

/// The load address of the object (executable or shared library) that contains `addr`, or
/// `None` if `addr` is in no loaded object.
pub(crate) fn object_base(addr: usize) -> Option<usize> {
    // SAFETY: an all-zero Dl_info (null pointers) is a valid value of this plain C struct.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only inspects the address (it never dereferences it) and fills `info`.
    let r = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    if r == 0 || info.dli_fbase.is_null() {
        None
    } else {
        Some(info.dli_fbase as usize)
    }
}

/// Starts `path` with `argv` and `envp` by `posix_spawn` (glibc's is a `CLONE_VFORK` clone, so
/// it neither copies this process's page tables nor runs anything of ours in the child, and is
/// safe from a multi-threaded parent). Each fd of `inherit` survives the `exec` in the child
/// only: `adddup2(fd, fd)` clears `FD_CLOEXEC` in the child (POSIX issue 8, glibc 2.29+); the
/// parent's fds stay close-on-exec. Like `std::process::Command`, the child starts with an
/// empty signal mask and `SIGPIPE` at its default. Returns the child's PID.
pub(crate) fn spawn_with_fds(
    path: &std::ffi::CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    inherit: &[RawFd],
) -> io::Result<u32> {
    // Both arrays are passed to C as null-terminated; refuse anything else.
    if argv.last() != Some(&std::ptr::null()) || envp.last() != Some(&std::ptr::null()) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let err = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(r))
        }
    };
    let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    // SAFETY: init writes a valid empty file-actions object into the buffer.
    err(unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) })?;
    let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    // SAFETY: as above, for the attributes object.
    if let Err(e) = err(unsafe { libc::posix_spawnattr_init(attr.as_mut_ptr()) }) {
        // SAFETY: `actions` was initialised above and is destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr()) };
        return Err(e);
    }
    let mut run = || -> io::Result<u32> {
        for &fd in inherit {
            // SAFETY: `actions` is initialised; the fd numbers are only recorded here.
            err(unsafe { libc::posix_spawn_file_actions_adddup2(actions.as_mut_ptr(), fd, fd) })?;
        }
        // SAFETY: an all-zero sigset_t is valid storage for sigemptyset to fill.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t and `attr` is initialised.
        unsafe {
            cvt(libc::sigemptyset(&mut set))?;
            err(libc::posix_spawnattr_setsigmask(attr.as_mut_ptr(), &set))?;
            cvt(libc::sigaddset(&mut set, libc::SIGPIPE))?;
            err(libc::posix_spawnattr_setsigdefault(attr.as_mut_ptr(), &set))?;
            let flags = libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK;
            err(libc::posix_spawnattr_setflags(
                attr.as_mut_ptr(),
                flags as libc::c_short,
            ))?;
        }
        let mut pid: libc::pid_t = 0;
        // SAFETY: `path` is a C string, `argv`/`envp` are null-terminated arrays of C strings
        // the caller keeps alive, and both objects are initialised.
        err(unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                actions.as_ptr(),
                attr.as_ptr(),
                argv.as_ptr().cast(),
                envp.as_ptr().cast(),
            )
        })?;
        Ok(pid as u32)
    };
    let out = run();
    // SAFETY: both objects were initialised above and are destroyed exactly once.
    unsafe {
        libc::posix_spawnattr_destroy(attr.as_mut_ptr());
        libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
    }
    out
}

/// Kills and reaps our child `pid`, which must not have been reaped yet (so the PID still
/// names it). Used only when a just-started child cannot be given a pidfd.
pub(crate) fn kill_and_reap(pid: u32) {
    // SAFETY: signalling and reaping our own unreaped child have no memory preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
        let mut status = 0;
        while libc::waitpid(pid as libc::pid_t, &mut status, 0) == -1
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}

/// Waits for the child behind `pidfd` to end and reaps it (`waitid(P_PIDFD, WEXITED)`, one
/// blocking call). `ECHILD` if it was already reaped.
pub(crate) fn reap_blocking(pidfd: BorrowedFd<'_>) -> io::Result<Ended> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid siginfo_t buffer and the pidfd is open for the call.
    cvt_retry(|| unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED,
        )
    })?;
    // SAFETY: without WNOHANG a successful waitid filled `info` for a child event.
    let status = unsafe { info.si_status() };
    Ok(match info.si_code {
        libc::CLD_EXITED => Ended::Exited(status),
        _ => Ended::Signaled(status),
    })
}

/// One `pread` into `buf` at `offset`: the number of bytes read (short at end of file).
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes and `fd` is open for the call.
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
