//! Per-process launcher state: who this process is, its unjoined children, and the pipe whose
//! end of file tells daemon children that this process is gone.

use super::ExitStatus;
use crate::sys::process as sys;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// Set by `init()`: a process that was started as a child but never called it must not spawn
/// (it would re-run `main`, or a whole test suite, in an endless chain of children).
pub(super) static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Set before `main` by `test_support!()`: this binary runs under the libtest harness.
pub(super) static UNDER_LIBTEST: AtomicBool = AtomicBool::new(false);

/// Children created by this process so far (for default names, like Python's counter).
static CREATED: AtomicU32 = AtomicU32::new(0);

/// Who this process is; `None` in the main process.
pub(super) struct Identity {
    /// The name it was given, or `None` for the default one (formatted from `path` on demand).
    pub(super) name: Option<String>,
    pub(super) path: Vec<u32>,
}

/// The default name of the process at `path`: `Process-1:2` for `[1, 2]`.
pub(super) fn default_name(path: &[u32]) -> String {
    let mut name = String::from("Process-");
    for (i, n) in path.iter().enumerate() {
        if i > 0 {
            name.push(':');
        }
        name.push_str(&n.to_string());
    }
    name
}

/// Random per-process seed of the bootstrap tokens; 0 until first use (and again in a forked
/// child, which must not repeat its parent's sequence).
static TOKEN_SEED: AtomicU64 = AtomicU64::new(0);
/// Tokens handed out so far.
static TOKEN_COUNT: AtomicU64 = AtomicU64::new(0);

/// A fresh bootstrap token: one `getrandom` per process, then the splitmix64 finaliser of the
/// seed plus a counter, so no two children of a process share a token and none is guessable
/// without the seed.
pub(super) fn next_token() -> std::io::Result<u64> {
    let mut seed = TOKEN_SEED.load(Ordering::Relaxed);
    if seed == 0 {
        let fresh = sys::random_u64()? | 1;
        seed = match TOKEN_SEED.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => fresh,
            Err(current) => current,
        };
    }
    let n = TOKEN_COUNT.fetch_add(1, Ordering::Relaxed);
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Ok(z ^ (z >> 31))
}

static CURRENT: Mutex<Option<Identity>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data is consistent at every unlock, so a panic elsewhere does not poison it for us.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records this process's identity (in a child, before its entry runs).
pub(super) fn set_current(identity: Identity) {
    *lock(&CURRENT) = Some(identity);
    CREATED.store(0, Ordering::Relaxed);
}

/// This process's name: the name it was spawned with, or `MainProcess`.
pub(super) fn current_name() -> String {
    lock(&CURRENT).as_ref().map_or_else(
        || "MainProcess".to_owned(),
        |id| id.name.clone().unwrap_or_else(|| default_name(&id.path)),
    )
}

/// The identity path of the next child.
pub(super) fn next_identity() -> Vec<u32> {
    let n = CREATED.fetch_add(1, Ordering::Relaxed) + 1;
    let mut path = lock(&CURRENT)
        .as_ref()
        .map_or_else(Vec::new, |id| id.path.clone());
    path.push(n);
    path
}

/// What the parent knows about one child; shared by its `Process` handle and the registry.
pub(super) struct Child {
    pub(super) pid: u32,
    /// The given name, or the default one, formatted from `path` on first use.
    name: OnceLock<String>,
    path: Vec<u32>,
    pub(super) pidfd: OwnedFd,
    /// The memfd holding the bootstrap, then the result.
    pub(super) memfd: OwnedFd,
    pub(super) token: u64,
    /// Set once the child has been reaped.
    ended: Mutex<Option<ExitStatus>>,
}

impl Child {
    pub(super) fn new(
        pid: u32,
        identity: Identity,
        pidfd: OwnedFd,
        memfd: OwnedFd,
        token: u64,
    ) -> Self {
        let name = OnceLock::new();
        if let Some(given) = identity.name {
            let _ = name.set(given);
        }
        Self {
            pid,
            name,
            path: identity.path,
            pidfd,
            memfd,
            token,
            ended: Mutex::new(None),
        }
    }

    /// Reaps the child if it has ended; its status from then on.
    pub(super) fn poll(&self) -> std::io::Result<Option<ExitStatus>> {
        let mut ended = lock(&self.ended);
        if ended.is_none() {
            *ended = sys::try_reap(self.pidfd.as_fd())?.map(ExitStatus::from);
        }
        Ok(*ended)
    }

    /// The child's name.
    pub(super) fn name(&self) -> &str {
        self.name.get_or_init(|| default_name(&self.path))
    }

    /// Waits for the child to end and reaps it: one blocking `waitid`, without holding the
    /// status lock (so `active_children` and friends never wait for it). If another thread
    /// reaped it first, that thread recorded its status under the lock before our `waitid`
    /// failed with `ECHILD`, so the status is there.
    pub(super) fn reap(&self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.reaped() {
            return Ok(status);
        }
        match sys::reap_blocking(self.pidfd.as_fd()) {
            Ok(ended) => Ok(*lock(&self.ended).get_or_insert(ExitStatus::from(ended))),
            Err(e) => self.reaped().ok_or(e),
        }
    }

    /// The status if the child was already reaped, without asking the OS.
    pub(super) fn reaped(&self) -> Option<ExitStatus> {
        *lock(&self.ended)
    }
}

/// Children not yet joined, in creation order.
static CHILDREN: Mutex<Vec<Arc<Child>>> = Mutex::new(Vec::new());

/// Adds a child to the registry.
pub(super) fn register(child: Arc<Child>) {
    lock(&CHILDREN).push(child);
}

/// Removes a child from the registry (it was joined).
pub(super) fn unregister(child: &Arc<Child>) {
    lock(&CHILDREN).retain(|c| !Arc::ptr_eq(c, child));
}

/// Reaps finished children, drops them from the registry and returns the ones still running.
pub(super) fn alive_children() -> Vec<Arc<Child>> {
    let mut children = lock(&CHILDREN);
    children.retain(|c| matches!(c.poll(), Ok(None)));
    children.clone()
}

/// The pipe daemon children watch: this process holds the write end (`O_CLOEXEC`, so no child
/// inherits it) until it dies; daemon children inherit the read end and see end of file then.
struct DaemonPipe {
    /// The process that created it; a forked child finds its parent's pipe here and replaces it.
    owner: u32,
    read: OwnedFd,
    /// Held, never written: only its closing (when this process ends) matters.
    _write: OwnedFd,
}

static DAEMON_PIPE: Mutex<Option<DaemonPipe>> = Mutex::new(None);

/// The read end of this process's daemon pipe (created on first use), as a raw fd that stays
/// open for the life of the process.
pub(super) fn daemon_read_fd() -> std::io::Result<RawFd> {
    let mut pipe = lock(&DAEMON_PIPE);
    let me = crate::sys::proc::getpid();
    if let Some(p) = pipe.as_ref().filter(|p| p.owner == me) {
        return Ok(p.read.as_raw_fd());
    }
    let (read, write) = sys::pipe_cloexec()?;
    let raw = read.as_raw_fd();
    *pipe = Some(DaemonPipe {
        owner: me,
        read,
        _write: write,
    });
    Ok(raw)
}

/// In a freshly forked child: forget the parent's children and daemon pipe. Returns a dup of
/// the daemon pipe's read end if there is one (for a daemon child to watch).
pub(super) fn after_fork_in_child() -> Option<OwnedFd> {
    TOKEN_SEED.store(0, Ordering::Relaxed);
    lock(&CHILDREN).clear();
    let pipe = lock(&DAEMON_PIPE).take()?;
    let read = sys::dup_raw_cloexec(pipe.read.as_raw_fd()).ok();
    // Dropping closes this process's copies of both ends; the parent keeps its own.
    drop(pipe);
    read
}

/// Starts the thread that ends this (daemon) process once the parent's pipe reports end of
/// file. If the parent is already gone, that happens at once.
pub(super) fn watch_parent(read: OwnedFd) {
    let watcher = std::thread::Builder::new()
        .name("multiproc-daemon".into())
        .spawn(move || {
            sys::read_until_eof(read.as_fd());
            sys::exit_now(DAEMON_ORPHANED_EXIT);
        });
    if watcher.is_err() {
        // Without a watcher this daemon could outlive its parent; refuse to run at all.
        sys::exit_now(DAEMON_ORPHANED_EXIT);
    }
}

/// Exit code of a daemon child that ends because its parent died (nobody is left to read it).
const DAEMON_ORPHANED_EXIT: i32 = 143;
