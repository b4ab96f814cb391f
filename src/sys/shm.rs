//! POSIX shared memory, memfds and shared mappings.
//!
//! Named segments are files in `/dev/shm`, opened the way glibc's `shm_open` does but with the
//! flags chosen here: `O_NOFOLLOW` (a symlink at the name is refused), `O_CLOEXEC`, and for
//! creation `O_CREAT | O_EXCL` with mode `0600`; names are resolved relative to an `O_PATH` fd of
//! `/dev/shm` that this module opens once and keeps. Anonymous segments are memfds sealed against
//! shrinking and growing, so no process holding the fd can truncate the mapping under another
//! (which would turn accesses into `SIGBUS`).

use super::cvt_retry;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// Where named segments live.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The seals every anonymous segment carries.
pub(crate) const REQUIRED_SEALS: libc::c_int =
    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Room for a file name of up to `NAME_MAX` (255) bytes and its NUL.
const NAME_CAP: usize = 255 + 1;

/// A name in `/dev/shm` as a NUL-terminated C string on the stack: building it allocates nothing.
struct ShmName {
    buf: [u8; NAME_CAP],
}

impl ShmName {
    fn as_ptr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }
}

/// `name` as a C string: `InvalidInput` if it holds a NUL, `ENAMETOOLONG` if it is longer than
/// a file name may be (as the kernel would say).
fn shm_name(name: &str) -> io::Result<ShmName> {
    let name = name.as_bytes();
    if name.contains(&0) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // At least the last byte stays NUL.
    if name.len() >= NAME_CAP {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let mut c = ShmName { buf: [0; NAME_CAP] };
    c.buf[..name.len()].copy_from_slice(name);
    Ok(c)
}

/// `/dev/shm` itself (`O_PATH | O_DIRECTORY | O_CLOEXEC`), opened on first use and owned by this
/// static for the life of the process. Names are resolved from it: one path component instead
/// of three and a mount crossing, for every create, open and unlink.
fn shm_dir() -> io::Result<BorrowedFd<'static>> {
    static DIR: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.as_fd());
    }
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: the path is a valid NUL-terminated string; open returns a new fd or -1.
    let fd = cvt_retry(|| unsafe { libc::open(c"/dev/shm".as_ptr(), flags) })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Should another thread have won the race, our fd is closed here.
    Ok(DIR.get_or_init(|| fd).as_fd())
}

/// `fstat(2)` as the kernel's own call: glibc's `fstat` is `newfstatat(fd, "", AT_EMPTY_PATH)`,
/// which makes the kernel check an empty path first.
///
/// # Safety
/// - `st` must be valid for writes (any fd number is acceptable: a bad one gives `EBADF`).
unsafe fn fstat(fd: std::os::fd::RawFd, st: *mut libc::stat) -> libc::c_int {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: on x86-64 glibc's `struct stat` is the kernel's; the caller guarantees `st`.
        unsafe { libc::syscall(libc::SYS_fstat, fd, st) as libc::c_int }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: the caller guarantees `st`.
        unsafe { libc::fstat(fd, st) }
    }
}

/// The device and inode of an open file.
pub(crate) fn file_identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid and `st` is a writable stat buffer.
    cvt_retry(|| unsafe { fstat(fd.as_raw_fd(), &mut st) })?;
    Ok((st.st_dev, st.st_ino))
}

/// Creates `/dev/shm/<name>` exclusively with mode 0600 (less what the umask clears) and sets its
/// length.
///
/// The file is visible under its name from the moment it exists; callers publish its contents
/// through the segment header's init state, not through the name.
pub(crate) fn create_named(name: &str, len: u64) -> io::Result<OwnedFd> {
    let (dir, name_c) = (shm_dir()?, shm_name(name)?);
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open directory fd and `name_c` a valid NUL-terminated string; openat
    // returns a new fd or -1.
    let fd = cvt_retry(|| unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name_c.as_ptr(),
            flags,
            0o600 as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The umask can only clear bits of 0600, never add group or other access.
    if let Err(e) = set_len(fd.as_fd(), len) {
        let _ = unlink_named(name);
        return Err(e);
    }
    Ok(fd)
}

/// Opens an existing `/dev/shm/<name>`, read-write or read-only. Symlinks are refused (`ELOOP`).
pub(crate) fn open_named(name: &str, writable: bool) -> io::Result<OwnedFd> {
    let (dir, name_c) = (shm_dir()?, shm_name(name)?);
    let access = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    let flags = access | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open directory fd and `name_c` a valid NUL-terminated string; openat
    // returns a new fd or -1.
    let fd = cvt_retry(|| unsafe { libc::openat(dir.as_raw_fd(), name_c.as_ptr(), flags) })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes `/dev/shm/<name>`. Mappings and fds already open stay valid.
pub(crate) fn unlink_named(name: &str) -> io::Result<()> {
    let (dir, name_c) = (shm_dir()?, shm_name(name)?);
    // SAFETY: `dir` is an open directory fd and `name_c` a valid NUL-terminated string.
    cvt_retry(|| unsafe { libc::unlinkat(dir.as_raw_fd(), name_c.as_ptr(), 0) }).map(drop)
}

/// Creates an anonymous memfd of `len` bytes, sealed against shrinking, growing and re-sealing.
pub(crate) fn create_anonymous(len: u64) -> io::Result<OwnedFd> {
    let name = c"multiproc";
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: `name` is a valid NUL-terminated string.
    let fd = cvt_retry(|| unsafe { libc::memfd_create(name.as_ptr(), flags) })?;
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_len(fd.as_fd(), len)?;
    // SAFETY: `fd` is a valid memfd created with MFD_ALLOW_SEALING.
    cvt_retry(|| unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, REQUIRED_SEALS) })?;
    Ok(fd)
}

/// The seals on `fd` (`F_GET_SEALS`); `EINVAL` for files that cannot carry seals.
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: `fd` is a valid open fd for the duration of the call.
    cvt_retry(|| unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is a valid open fd for the duration of the call.
    cvt_retry(|| unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// Returns the pages of `len` bytes at `offset` of the file to the OS (`fallocate` with
/// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`): they read as zeroes afterwards and take no memory
/// until written again. The file keeps its length, so mappings stay valid.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let (offset, len) = match (libc::off_t::try_from(offset), libc::off_t::try_from(len)) {
        (Ok(o), Ok(l)) => (o, l),
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: `fd` is a valid open fd for the duration of the call; fallocate touches no memory
    // of ours.
    cvt_retry(|| unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset, len) }).map(drop)
}

/// What `fstat` says about a segment file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileInfo {
    pub(crate) len: u64,
    pub(crate) uid: u32,
    pub(crate) mode: u32,
    /// Last modification (creation, for a segment nobody resized), seconds since the epoch.
    pub(crate) mtime: i64,
}

/// `fstat` of an open segment.
pub(crate) fn file_info(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid and `st` is a writable stat buffer.
    cvt_retry(|| unsafe { fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(FileInfo {
        len: st.st_size as u64,
        uid: st.st_uid,
        mode: st.st_mode,
        mtime: st.st_mtime,
    })
}

/// The effective user id of this process.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A shared mapping of a segment file.
pub(crate) type Mapping = memmap2::MmapRaw;

/// Maps `len` bytes of `fd` shared (`MAP_SHARED`), optionally pre-faulting every page.
///
/// The caller must have checked with [`file_info`] that the file is at least `len` bytes long;
/// anonymous segments are sealed so that stays true, named ones are trusted not to be truncated
/// by a peer (see SAFETY.md).
pub(crate) fn map(
    fd: BorrowedFd<'_>,
    len: usize,
    writable: bool,
    populate: bool,
) -> io::Result<Mapping> {
    let mut opts = memmap2::MmapOptions::new();
    opts.len(len);
    if populate {
        opts.populate();
    }
    let file = FdRef(fd);
    if writable {
        opts.map_raw(&file)
    } else {
        opts.map_raw_read_only(&file)
    }
}

/// memmap2 maps anything with a raw fd; this lends it a borrowed one without taking ownership.
struct FdRef<'a>(BorrowedFd<'a>);

impl AsRawFd for FdRef<'_> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// Whether the file open as `fd` still has a name (its link count is not zero). An owner that
/// finds its file unlinked leaves the name alone: it may belong to a successor by now. Named
/// segments are never renamed after creation, so a linked file is linked under its own name (a
/// same-user peer that renames files can do worse than this anyway; see SAFETY.md).
pub(crate) fn is_still_linked(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid and `st` is a writable stat buffer.
    cvt_retry(|| unsafe { fstat(fd.as_raw_fd(), &mut st) }).is_ok() && st.st_nlink > 0
}

/// Renames `/dev/shm/<from>` to `/dev/shm/<to>` unless `to` exists (`EEXIST` then): the atomic
/// step that publishes a fully initialised named object under its name.
pub(crate) fn rename_noreplace(from: &str, to: &str) -> io::Result<()> {
    let (dir, from, to) = (shm_dir()?, shm_name(from)?, shm_name(to)?);
    // SAFETY: `dir` is an open directory fd and both names are valid NUL-terminated strings;
    // renameat2 only reads them.
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

/// The names of the entries in `/dev/shm`.
pub(crate) fn list_names() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The files that processes we can inspect hold open or mapped, read from `/proc/<pid>/fd` and
/// `/proc/<pid>/maps`. Processes of other users are invisible to us.
#[derive(Default)]
pub(crate) struct FilesInUse {
    open: std::collections::HashSet<(u64, u64)>,
    /// Inodes of mapped files under `/dev/shm` (all on the one tmpfs, so the inode suffices).
    mapped_shm: std::collections::HashSet<u64>,
}

impl FilesInUse {
    /// Scans `/proc` once.
    pub(crate) fn scan() -> FilesInUse {
        use std::os::unix::fs::MetadataExt;
        let mut found = FilesInUse::default();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in procs.flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                continue;
            }
            let base = entry.path();
            for fd in std::fs::read_dir(base.join("fd"))
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(meta) = std::fs::metadata(fd.path()) {
                    found.open.insert((meta.dev(), meta.ino()));
                }
            }
            let maps = std::fs::read_to_string(base.join("maps")).unwrap_or_default();
            for line in maps.lines().filter(|l| l.contains(SHM_DIR)) {
                if let Some(ino) = line.split_whitespace().nth(4).and_then(|i| i.parse().ok()) {
                    found.mapped_shm.insert(ino);
                }
            }
        }
        found
    }

    /// Whether the `/dev/shm` file (device, inode) is open or mapped somewhere.
    pub(crate) fn contains(&self, dev: u64, ino: u64) -> bool {
        self.open.contains(&(dev, ino)) || self.mapped_shm.contains(&ino)
    }
}
