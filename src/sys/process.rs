//! Processes: memfds for bootstrap records, fd flags, pidfds, reaping, signals, `fork`, `dladdr`.
//!
//! A child is named by a pidfd rather than a PID: a pidfd keeps naming the same process after it
//! was reaped (signals then fail with `ESRCH`), so no call here can hit a recycled PID.

use super::cvt;
use super::time::Deadline;
use rustix::fs::MemfdFlags;
use rustix::io::{Errno, retry_on_intr};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitIdStatus};
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
    above_stdio(retry_on_intr(|| {
        rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)
    })?)
}

/// `fd`, moved to a number above 2 if it landed on 0, 1 or 2 (in a process that closed its
/// standard streams): fds handed to a child must never take the place of its stdio, which the
/// child's runtime would treat as closed streams and reopen or ignore.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // `fd` is closed when it drops here.
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// Writes all of `buf` at `offset` (`pwrite`, so the shared file offset is never used).
/// `WriteZero` if the file takes no more; `EINTR` is retried.
pub(crate) fn write_all_at(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads into all of `buf` from `offset` (`pread`); `UnexpectedEof` if the file is shorter.
///
/// `pread` fails with `ESPIPE` on pipes and sockets, so this never blocks on an fd that turns
/// out not to be a file.
pub(crate) fn read_exact_at(
    fd: BorrowedFd<'_>,
    mut buf: &mut [u8],
    mut offset: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pread(fd, &mut *buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
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
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?)
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
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// Blocks until `fd` reports end of file or an error (data read is discarded).
pub(crate) fn read_until_eof(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return,
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// 64 random bits from the kernel.
pub(crate) fn random_u64() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        let flags = rustix::rand::GetRandomFlags::empty();
        match rustix::rand::getrandom(&mut buf[filled..], flags) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(u64::from_ne_bytes(buf))
}

/// A pidfd for our child `pid` (`pidfd_open`, `O_CLOEXEC` by definition).
///
/// Race-free for a child that has not been reaped yet: the PID cannot be reused before that.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(
        pid_of(pid)?,
        PidfdFlags::empty(),
    )?)
}

/// A pidfd for our new, unreaped child `pid`; if none can be had, kills and reaps the child
/// (not reaped yet, so the PID still names it) and returns the error.
pub(crate) fn pidfd_of_child(pid: u32) -> io::Result<OwnedFd> {
    pidfd_open(pid).inspect_err(|_| kill_and_reap(pid))
}

/// `pid` as rustix's `Pid`: `EINVAL` for 0 and for numbers no process can have.
fn pid_of(pid: u32) -> io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Sends `signal` (a named signal: `SIGTERM`, `SIGKILL`, ...) to the process behind `pidfd`.
/// `ESRCH` once it has been reaped; `EINVAL` for a number that names no signal.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    let signal =
        Signal::from_named_raw(signal).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, signal)?)
}

/// Waits until `fd` is readable (a pidfd: its process exited) or `deadline` passes; `Ok(false)`
/// on timeout. `None` waits forever; a deadline already past just checks.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Deadline>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = deadline.map(|d| {
            let left = d.remaining();
            Timespec {
                tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        // `ppoll` with a relative timeout (recomputed from the deadline after each EINTR).
        match poll(&mut fds, timeout.as_ref()) {
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
            Ok(0) => {
                if deadline.is_some_and(Deadline::has_passed) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
        }
    }
}

/// Reaps the child behind `pidfd` if it has ended (`waitid(P_PIDFD, WEXITED | WNOHANG)`);
/// `Ok(None)` while it runs.
pub(crate) fn try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<Ended>> {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    // rustix reports `None` when WNOHANG found the child still running (`si_pid` 0).
    let status = retry_on_intr(|| rustix::process::waitid(WaitId::PidFd(pidfd), options))?;
    Ok(status.as_ref().map(ended))
}

/// How a child ended, from a `waitid(WEXITED)` report (which is only ever an exit, a kill or a
/// dump).
fn ended(status: &WaitIdStatus) -> Ended {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => Ended::Exited(code),
        (None, Some(signal)) => Ended::Signaled(signal),
        // Not reachable with WEXITED alone; the raw status is the signal field, as before.
        (None, None) => Ended::Signaled(status.raw_signo()),
    }
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

/// Asks the kernel to send this process `SIGKILL` when the thread that created it ends
/// (`PR_SET_PDEATHSIG`; kept across `execve`, cleared by `fork`).
pub(crate) fn kill_when_parent_thread_ends() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(io::Error::from)
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
    let Ok(pid) = pid_of(pid) else { return };
    // Signalling and reaping our own unreaped child cannot hit another process.
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    let _ = retry_on_intr(|| {
        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
    });
}

/// Waits for the child behind `pidfd` to end and reaps it (`waitid(P_PIDFD, WEXITED)`, one
/// blocking call). `ECHILD` if it was already reaped.
pub(crate) fn reap_blocking(pidfd: BorrowedFd<'_>) -> io::Result<Ended> {
    let options = WaitIdOptions::EXITED;
    match retry_on_intr(|| rustix::process::waitid(WaitId::PidFd(pidfd), options))? {
        Some(status) => Ok(ended(&status)),
        // Without WNOHANG a successful waitid always reports a child.
        None => Err(io::Error::from_raw_os_error(libc::ECHILD)),
    }
}

/// One `pread` into `buf` at `offset`: the number of bytes read (short at end of file).
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // The kernel takes a signed offset.
    if i64::try_from(offset).is_err() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    Ok(retry_on_intr(|| rustix::io::pread(fd, &mut *buf, offset))?)
}
