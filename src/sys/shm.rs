//! POSIX shared memory, memfds and shared mappings.
//!
//! Named segments are files in `/dev/shm`, opened the way glibc's `shm_open` does but with the
//! flags chosen here: `O_NOFOLLOW` (a symlink at the name is refused), `O_CLOEXEC`, and for
//! creation `O_CREAT | O_EXCL` with mode `0600`; names are resolved relative to an `O_PATH` fd of
//! `/dev/shm` that this module opens once and keeps. Anonymous segments are memfds sealed against
//! shrinking and growing, so no process holding the fd can truncate the mapping under another
//! (which would turn accesses into `SIGBUS`).

use rustix::fs::{self as rfs, AtFlags, FallocateFlags, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::retry_on_intr;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

/// Where named segments live.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The seals every anonymous segment carries.
const SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// [`SEALS`] as the bit mask that [`seals`] reports.
pub(crate) const REQUIRED_SEALS: u32 = SEALS.bits();

/// Room for a file name of up to `NAME_MAX` (255) bytes and its NUL.
const NAME_CAP: usize = 255 + 1;

/// A name in `/dev/shm` as a NUL-terminated C string on the stack: building it allocates nothing.
struct ShmName {
    buf: [u8; NAME_CAP],
    /// Bytes of the name, before its NUL.
    len: usize,
}

impl ShmName {
    fn as_c_str(&self) -> &CStr {
        // Not `CStr::from_bytes_until_nul`: scanning for the NUL again made every named create,
        // open, unlink and rename cost more instructions than libc's wrappers did (callgrind).
        // SAFETY: `shm_name` copied a name without NUL bytes into `buf[..len]` and left
        // `buf[len]` zero (`len < NAME_CAP`), so `buf[..=len]` is NUL-terminated with no interior
        // NUL.
        unsafe { CStr::from_bytes_with_nul_unchecked(&self.buf[..=self.len]) }
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
    let mut c = ShmName {
        buf: [0; NAME_CAP],
        len: name.len(),
    };
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
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = retry_on_intr(|| rfs::open(c"/dev/shm", flags, Mode::empty()))?;
    // Should another thread have won the race, our fd is closed here.
    Ok(DIR.get_or_init(|| fd).as_fd())
}

/// `fstat(2)`, retried after `EINTR`. rustix issues the kernel's own `fstat` on 64-bit targets
/// (glibc's is `newfstatat(fd, "", AT_EMPTY_PATH)`, which makes the kernel check an empty path).
fn fstat(fd: BorrowedFd<'_>) -> io::Result<rfs::Stat> {
    Ok(retry_on_intr(|| rfs::fstat(fd))?)
}

/// The device and inode of an open file.
pub(crate) fn file_identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Creates `/dev/shm/<name>` exclusively with mode 0600 (less what the umask clears) and sets its
/// length.
///
/// The file is visible under its name from the moment it exists; callers publish its contents
/// through the segment header's init state, not through the name.
pub(crate) fn create_named(name: &str, len: u64) -> io::Result<OwnedFd> {
    let (dir, name_c) = (shm_dir()?, shm_name(name)?);
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = Mode::RUSR | Mode::WUSR;
    let fd = retry_on_intr(|| rfs::openat(dir, name_c.as_c_str(), flags, mode))?;
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
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    let flags = access | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let name = name_c.as_c_str();
    Ok(retry_on_intr(|| {
        rfs::openat(dir, name, flags, Mode::empty())
    })?)
}

/// Removes `/dev/shm/<name>`. Mappings and fds already open stay valid.
pub(crate) fn unlink_named(name: &str) -> io::Result<()> {
    let (dir, name_c) = (shm_dir()?, shm_name(name)?);
    let name = name_c.as_c_str();
    Ok(retry_on_intr(|| {
        rfs::unlinkat(dir, name, AtFlags::empty())
    })?)
}

/// Creates an anonymous memfd of `len` bytes, sealed against shrinking, growing and re-sealing.
pub(crate) fn create_anonymous(len: u64) -> io::Result<OwnedFd> {
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = retry_on_intr(|| rfs::memfd_create(c"multiproc", flags))?;
    set_len(fd.as_fd(), len)?;
    retry_on_intr(|| rfs::fcntl_add_seals(&fd, SEALS))?;
    Ok(fd)
}

/// The seals on `fd` (`F_GET_SEALS`); `EINVAL` for files that cannot carry seals.
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(retry_on_intr(|| rfs::fcntl_get_seals(fd))?.bits())
}

fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    // The kernel takes a signed length.
    if i64::try_from(len).is_err() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    Ok(retry_on_intr(|| rfs::ftruncate(fd, len))?)
}

/// Returns the pages of `len` bytes at `offset` of the file to the OS (`fallocate` with
/// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`): they read as zeroes afterwards and take no memory
/// until written again. The file keeps its length, so mappings stay valid.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    // The kernel takes signed offsets.
    if i64::try_from(offset).is_err() || i64::try_from(len).is_err() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    Ok(retry_on_intr(|| rfs::fallocate(fd, mode, offset, len))?)
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
    let st = fstat(fd)?;
    Ok(FileInfo {
        len: st.st_size as u64,
        uid: st.st_uid,
        mode: st.st_mode as u32,
        mtime: st.st_mtime as i64,
    })
}

/// The effective user id of this process.
pub(crate) fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
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
    fstat(fd).is_ok_and(|st| st.st_nlink > 0)
}

/// Renames `/dev/shm/<from>` to `/dev/shm/<to>` unless `to` exists (`EEXIST` then): the atomic
/// step that publishes a fully initialised named object under its name.
pub(crate) fn rename_noreplace(from: &str, to: &str) -> io::Result<()> {
    let (dir, from, to) = (shm_dir()?, shm_name(from)?, shm_name(to)?);
    let (from, to) = (from.as_c_str(), to.as_c_str());
    let flags = rfs::RenameFlags::NOREPLACE;
    Ok(retry_on_intr(|| {
        rfs::renameat_with(dir, from, dir, to, flags)
    })?)
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
