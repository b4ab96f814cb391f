//! Raw shared-memory segments: a named file in `/dev/shm` or an anonymous sealed memfd, mapped
//! shared. Typed objects ([`Value`](crate::Value), [`Array`](crate::Array), [`Shared`](crate::Shared),
//! queues) are segments that start with a [header](super::header).

use super::handoff;
use crate::error::{Error, Result};
use crate::sys::shm as os;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Longest accepted segment name, in bytes (the file name limit is 255; leave room for prefixes).
pub const MAX_NAME_LEN: usize = 200;

/// Largest segment accepted, in bytes (128 TiB: more than any machine maps, less than `isize::MAX`).
pub const MAX_SEGMENT_LEN: u64 = 1 << 47;

/// How a segment is created or opened. The defaults suit almost everyone.
///
/// ```
/// let opts = multiproc::shm::ShmOptions::new().populate(true);
/// let seg = multiproc::Segment::anonymous_with(1 << 20, &opts)?;
/// assert_eq!(seg.len(), 1 << 20);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShmOptions {
    pub(crate) populate: bool,
    pub(crate) allow_foreign: bool,
    pub(crate) init_timeout: Duration,
}

impl Default for ShmOptions {
    fn default() -> Self {
        Self {
            populate: false,
            allow_foreign: false,
            init_timeout: Duration::from_secs(1),
        }
    }
}

impl ShmOptions {
    /// The defaults: no pre-faulting, refuse foreign segments, wait up to 1 s for a creator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pre-fault every page when mapping (`MAP_POPULATE`): creation costs more, the first touch of
    /// each page (about 3 µs per 4 KiB otherwise) costs nothing later. Worth it for big segments.
    pub fn populate(mut self, yes: bool) -> Self {
        self.populate = yes;
        self
    }

    /// Open named segments owned by another user, or writable by group or others. Off by
    /// default: such a segment can be changed or replaced by someone else.
    pub fn allow_foreign(mut self, yes: bool) -> Self {
        self.allow_foreign = yes;
        self
    }

    /// How long `open` waits for a creator that is still initialising the segment.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }
}

/// A shared-memory segment mapped into this process. Cheap to clone (clones share the mapping).
///
/// Named segments live in `/dev/shm` until their creator drops its last handle (unless
/// [`persist`](Segment::persist) was called); opening never unlinks. Anonymous segments have no
/// name at all and vanish when the last process holding them exits; they reach children as
/// inherited file descriptors when passed in [`Process::spawn`](crate::Process::spawn) arguments.
///
/// A raw segment is untyped bytes: other processes may write them at any time, so it hands out a
/// pointer, not a slice. For typed data use [`Value`](crate::Value), [`Array`](crate::Array) or
/// [`Shared`](crate::Shared).
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

struct Inner {
    /// Declared before `fd`, so it is unmapped before the fd closes (the file's last reference
    /// then goes with the close, as with `shared_memory`).
    map: os::Mapping,
    fd: OwnedFd,
    name: Option<String>,
    /// This process created the name and unlinks it on drop unless persisted.
    owner: bool,
    persisted: AtomicBool,
    writable: bool,
}

impl Segment {
    /// Creates a named segment of `len` bytes (zero-filled, mode 0600, `O_EXCL|O_NOFOLLOW`).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the name is taken, [`Error::InvalidName`], [`Error::InvalidSize`]
    /// for a zero or absurd `len`, [`Error::Os`] for anything else the OS refuses.
    pub fn create(name: &str, len: usize) -> Result<Segment> {
        Self::create_with(name, len, &ShmOptions::default())
    }

    /// [`Segment::create`] with options.
    pub fn create_with(name: &str, len: usize, opts: &ShmOptions) -> Result<Segment> {
        let name = validate_name(name)?;
        let len = validate_len(len as u64)?;
        let fd = os::create_named(name, len).map_err(|e| name_error(e, name))?;
        Self::map_fd(fd, Some(len), Some(name), true, true, opts).inspect_err(|_| {
            let _ = os::unlink_named(name);
        })
    }

    /// Creates a named segment that appears under `name` only once `init` has filled it: it is
    /// built under a temporary name (which records the creator, for stale cleanup) and renamed
    /// into place without replacing anything. Openers never see it half-initialised, and a
    /// creator killed midway leaves only a temporary name that [`super::cleanup`] removes.
    pub(crate) fn create_initialised(
        name: &str,
        len: usize,
        opts: &ShmOptions,
        init: impl FnOnce(&Segment),
    ) -> Result<Segment> {
        let name = validate_name(name)?;
        let len = validate_len(len as u64)?;
        let tmp = temp_name(name);
        let fd = os::create_named(&tmp, len).map_err(|e| name_error(e, name))?;
        let mut segment =
            Self::map_fd(fd, Some(len), None, false, true, opts).inspect_err(|_| {
                let _ = os::unlink_named(&tmp);
            })?;
        init(&segment);
        if let Err(e) = os::rename_noreplace(&tmp, name) {
            let _ = os::unlink_named(&tmp);
            return Err(name_error(e, name));
        }
        match Arc::get_mut(&mut segment.inner) {
            Some(inner) => {
                inner.name = Some(name.to_owned());
                inner.owner = true;
            }
            // `init` only borrowed the segment, so the handle is still unique; should that ever
            // change, the name would merely not be unlinked on drop, so say so loudly instead.
            None => return Err(Error::Corrupted("segment handle escaped its initialiser")),
        }
        Ok(segment)
    }

    /// Opens an existing named segment read-write.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidName`], [`Error::PermissionDenied`] for a symlink, a
    /// segment of another user or one writable by group or others (see
    /// [`ShmOptions::allow_foreign`]), [`Error::Os`].
    pub fn open(name: &str) -> Result<Segment> {
        Self::open_with(name, &ShmOptions::default())
    }

    /// [`Segment::open`] with options.
    pub fn open_with(name: &str, opts: &ShmOptions) -> Result<Segment> {
        Self::open_impl(name, true, opts)
    }

    /// Opens an existing named segment read-only: it is mapped without write permission, so this
    /// process cannot change it.
    pub fn open_read_only(name: &str) -> Result<Segment> {
        Self::open_impl(name, false, &ShmOptions::default())
    }

    fn open_impl(name: &str, writable: bool, opts: &ShmOptions) -> Result<Segment> {
        let name = validate_name(name)?;
        let fd = os::open_named(name, writable).map_err(|e| name_error(e, name))?;
        let info = check_ownership(fd.as_fd(), opts)?;
        Self::map_fd(fd, Some(info.len), Some(name), false, writable, opts)
    }

    /// Creates an anonymous segment of `len` bytes: a memfd sealed against shrinking and growing,
    /// invisible in `/dev/shm`, shared with children it is passed to.
    pub fn anonymous(len: usize) -> Result<Segment> {
        Self::anonymous_with(len, &ShmOptions::default())
    }

    /// [`Segment::anonymous`] with options.
    pub fn anonymous_with(len: usize, opts: &ShmOptions) -> Result<Segment> {
        let len = validate_len(len as u64)?;
        let fd = os::create_anonymous(len)?;
        Self::map_fd(fd, Some(len), None, false, true, opts)
    }

    /// Maps an fd received from a parent (an anonymous segment, or a named one passed by fd).
    pub(crate) fn from_inherited_fd(
        fd: OwnedFd,
        name: Option<String>,
        opts: &ShmOptions,
    ) -> Result<Segment> {
        let known_len = if name.is_none() {
            let seals = os::seals(fd.as_fd()).unwrap_or(0);
            if seals & os::REQUIRED_SEALS != os::REQUIRED_SEALS {
                return Err(Error::PermissionDenied {
                    reason: "anonymous segment is not sealed against resizing",
                });
            }
            None
        } else {
            Some(check_ownership(fd.as_fd(), opts)?.len)
        };
        Self::map_fd(fd, known_len, name.as_deref(), false, true, opts)
    }

    /// Maps `fd`; `known_len` is its length when the caller just set or read it (saves an fstat).
    fn map_fd(
        fd: OwnedFd,
        known_len: Option<u64>,
        name: Option<&str>,
        owner: bool,
        writable: bool,
        opts: &ShmOptions,
    ) -> Result<Segment> {
        let mut len = match known_len {
            Some(len) => len,
            None => os::file_info(fd.as_fd())?.len,
        };
        if len == 0 && !owner && name.is_some() {
            // A creator may sit between O_EXCL and ftruncate; give it the init timeout.
            let deadline = crate::sys::time::Deadline::after(opts.init_timeout);
            while len == 0 && !deadline.has_passed() {
                std::thread::sleep(Duration::from_micros(200));
                len = os::file_info(fd.as_fd())?.len;
            }
        }
        if len == 0 {
            return Err(Error::Corrupted("segment is empty"));
        }
        if len > MAX_SEGMENT_LEN {
            return Err(Error::Corrupted(
                "segment is larger than any segment this crate creates",
            ));
        }
        let name = name.map(str::to_owned);
        let map = os::map(fd.as_fd(), len as usize, writable, opts.populate)?;
        Ok(Segment {
            inner: Arc::new(Inner {
                fd,
                map,
                name,
                owner,
                persisted: AtomicBool::new(false),
                writable,
            }),
        })
    }

    /// The first byte of the mapping. Valid for [`len`](Segment::len) bytes while any clone of
    /// this handle lives; other processes may write the bytes at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.map.as_mut_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Always false: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name, or `None` for an anonymous segment.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Whether this process created the name (and so unlinks it when the last handle drops).
    pub fn is_owner(&self) -> bool {
        self.inner.owner
    }

    /// Whether this mapping may be written.
    pub fn is_writable(&self) -> bool {
        self.inner.writable
    }

    /// Keeps the name in `/dev/shm` after the creator's handles are dropped.
    pub fn persist(&self) {
        self.inner.persisted.store(true, Ordering::Relaxed);
    }

    /// Removes the name now (the mapping stays valid). Opening a removed name fails with
    /// [`Error::NotFound`]. Anyone may unlink a name they know, like `shm_unlink`.
    pub fn unlink(name: &str) -> Result<()> {
        let name = validate_name(name)?;
        os::unlink_named(name).map_err(|e| name_error(e, name))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let (true, Some(name)) = (self.owner, &self.name) {
            if !self.persisted.load(Ordering::Relaxed) && os::is_still_linked(self.fd.as_fd()) {
                // Errors are ignored: the name may already be gone, and Drop cannot report.
                let _ = os::unlink_named(name);
            }
        }
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("owner", &self.inner.owner)
            .finish()
    }
}

/// How a segment travels in serialised form: an inherited fd slot during a spawn, else its name.
#[derive(Serialize, Deserialize)]
enum Wire {
    Fd { slot: u32, name: Option<String> },
    Name(String),
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let wire = match (handoff::export_fd(self.fd()), self.name()) {
            (Some(slot), name) => Wire::Fd {
                slot,
                name: name.map(str::to_owned),
            },
            (None, Some(name)) => Wire::Name(name.to_owned()),
            (None, None) => {
                return Err(serde::ser::Error::custom(
                    "an anonymous segment can only be passed to a child as a Process::spawn argument",
                ));
            }
        };
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let opened = match Wire::deserialize(d)? {
            Wire::Fd { slot, name } => handoff::import_fd(slot)
                .map_err(Error::Os)
                .and_then(|fd| Segment::from_inherited_fd(fd, name, &ShmOptions::default())),
            Wire::Name(name) => Segment::open(&name),
        };
        opened.map_err(serde::de::Error::custom)
    }
}

/// Prefix of the temporary names under which named objects are built.
pub(crate) const TEMP_PREFIX: &str = ".mp-tmp.";

/// `.mp-tmp.<pid>.<process start time>.<counter>.<name>`: unique, and naming its creator.
fn temp_name(name: &str) -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (pid, start) = crate::sys::proc::current_process_identity();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TEMP_PREFIX}{pid}.{start}.{n}.{name}")
}

/// Splits a temporary name into (creator pid, creator start time, final name).
pub(crate) fn parse_temp_name(tmp: &str) -> Option<(u32, u64, &str)> {
    let mut parts = tmp.strip_prefix(TEMP_PREFIX)?.splitn(4, '.');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let _counter = parts.next()?;
    Some((pid, start, parts.next()?))
}

/// Checks a name and returns it without its optional leading `/`.
pub(crate) fn validate_name(name: &str) -> Result<&str> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return bad("empty");
    }
    if bare.len() > MAX_NAME_LEN {
        return bad("longer than 200 bytes");
    }
    if bare.contains('/') {
        return bad("contains '/'");
    }
    if bare.contains('\0') {
        return bad("contains NUL");
    }
    if bare.starts_with(TEMP_PREFIX) {
        return bad("names starting with '.mp-tmp.' are reserved");
    }
    if bare == "." || bare == ".." {
        return bad("'.' and '..' are not names");
    }
    Ok(bare)
}

fn validate_len(len: u64) -> Result<u64> {
    match len {
        0 => Err(Error::InvalidSize {
            reason: "zero bytes",
        }),
        l if l > MAX_SEGMENT_LEN => Err(Error::InvalidSize {
            reason: "larger than 128 TiB",
        }),
        l => Ok(l),
    }
}

/// Refuses a segment of another user or one writable by group or others (unless allowed), and
/// returns what `fstat` said, so callers need not ask again.
fn check_ownership(fd: BorrowedFd<'_>, opts: &ShmOptions) -> Result<os::FileInfo> {
    let info = os::file_info(fd)?;
    if opts.allow_foreign {
        return Ok(info);
    }
    if info.uid != os::geteuid() {
        return Err(Error::PermissionDenied {
            reason: "segment is owned by another user",
        });
    }
    if info.mode & 0o022 != 0 {
        return Err(Error::PermissionDenied {
            reason: "segment is writable by group or others",
        });
    }
    Ok(info)
}

/// Turns the OS error of a named operation into the matchable error.
pub(crate) fn name_error(e: io::Error, name: &str) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound {
            name: name.to_owned(),
        },
        Some(libc::EEXIST) => Error::AlreadyExists {
            name: name.to_owned(),
        },
        Some(libc::ELOOP) => Error::PermissionDenied {
            reason: "the name is a symbolic link",
        },
        Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied {
            reason: "the OS refused access",
        },
        Some(libc::ENAMETOOLONG) => Error::InvalidName {
            name: name.to_owned(),
            reason: "too long",
        },
        _ => Error::Os(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> String {
        format!(
            "mp-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], "")
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", "/", "a/b", "a\0b", ".", "..", &"x".repeat(201)] {
            assert!(
                matches!(Segment::create(bad, 8), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(validate_name("/ok").unwrap(), "ok");
    }

    #[test]
    fn sizes_are_validated() {
        assert!(matches!(
            Segment::anonymous(0),
            Err(Error::InvalidSize { .. })
        ));
        assert!(matches!(
            Segment::anonymous(usize::MAX),
            Err(Error::InvalidSize { .. })
        ));
    }

    #[test]
    fn create_open_and_owner_unlink() {
        let name = unique("seg");
        let created = Segment::create(&name, 4096).unwrap();
        assert!(matches!(
            Segment::create(&name, 4096),
            Err(Error::AlreadyExists { .. })
        ));
        let opened = Segment::open(&name).unwrap();
        // SAFETY: both mappings are 4096 bytes long; no other process touches this test segment.
        unsafe {
            created.as_ptr().write(42);
            assert_eq!(opened.as_ptr().read(), 42);
        }
        drop(opened);
        assert!(
            Segment::open(&name).is_ok(),
            "dropping an opener must not unlink"
        );
        drop(created);
        assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    }

    #[test]
    fn persist_keeps_the_name() {
        let name = unique("persist");
        let created = Segment::create(&name, 64).unwrap();
        created.persist();
        drop(created);
        assert!(Segment::open(&name).is_ok());
        Segment::unlink(&name).unwrap();
    }

    #[test]
    fn anonymous_segments_are_sealed() {
        let seg = Segment::anonymous(4096).unwrap();
        assert_eq!(
            os::seals(seg.fd()).unwrap() & os::REQUIRED_SEALS,
            os::REQUIRED_SEALS
        );
        assert!(seg.name().is_none());
    }

    #[test]
    fn group_writable_segments_are_refused() {
        let name = unique("mode");
        let seg = Segment::create(&name, 64).unwrap();
        let path = format!("/dev/shm/{name}");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o620))
            .unwrap();
        assert!(matches!(
            Segment::open(&name),
            Err(Error::PermissionDenied { .. })
        ));
        assert!(Segment::open_with(&name, &ShmOptions::new().allow_foreign(true)).is_ok());
        drop(seg);
    }

    #[test]
    fn symlinks_are_refused() {
        let name = unique("link");
        let target = Segment::create(&unique("target"), 64).unwrap();
        let target_path = format!("/dev/shm/{}", target.name().unwrap());
        std::os::unix::fs::symlink(&target_path, format!("/dev/shm/{name}")).unwrap();
        let res = Segment::open(&name);
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        assert!(matches!(
            res,
            Err(Error::PermissionDenied {
                reason: "the name is a symbolic link"
            })
        ));
    }

    #[test]
    fn inherited_anonymous_fd_without_seals_is_refused() {
        use std::os::fd::FromRawFd;
        // SAFETY: a valid NUL-terminated name; the returned fd is checked and then owned.
        let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: `raw` is a fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        std::fs::File::from(fd.try_clone().unwrap())
            .set_len(4096)
            .unwrap();
        let res = Segment::from_inherited_fd(fd, None, &ShmOptions::default());
        assert!(matches!(
            res,
            Err(Error::PermissionDenied {
                reason: "anonymous segment is not sealed against resizing"
            })
        ));
    }
}
