//! Per-process launcher state: who this process is, its unjoined children, and the pipe whose
//! end of file tells daemon children that this process is gone.

use super::ExitStatus;
use crate::sys::process as sys;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// Set by `init()`: a process that was started as a child but never called it must not spawn
/// (it would re-run `main`, or a whole test suite, in an endless chain of children).
pub(super) static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Set before `main` by `test_support!()`: this binary runs under the libtest harness.
pub(super) static UNDER_LIBTEST: AtomicBool = AtomicBool::new(false);

/// The launcher's mutable per-process state, in one page-aligned static: `fork` write-protects
/// every private page, so each page that a start-and-join writes costs one page fault in the
/// parent and one copy in a forked child. Kept together, all of it costs one.
#[repr(C, align(4096))]
struct State {
    /// Random seed of the bootstrap tokens; 0 until first use (and again in a forked child,
    /// which must not repeat its parent's sequence).
    token_seed: AtomicU64,
    /// Tokens handed out so far.
    token_count: AtomicU64,
    /// Children created by this process so far (for default names, like Python's counter).
    created: AtomicU32,
    /// Bumped in every forked child: fds recorded under an older generation are copies that
    /// the parent still uses, never to be recycled here.
    generation: AtomicU64,
    current: Mutex<Option<Identity>>,
    /// Children not yet joined, in creation order.
    children: Mutex<Vec<Arc<Child>>>,
    daemon_pipe: Mutex<Option<DaemonPipe>>,
    /// Result memfds of reaped fork children, for the next fork child.
    pool: Mutex<Pool>,
}

static STATE: State = State {
    token_seed: AtomicU64::new(0),
    token_count: AtomicU64::new(0),
    created: AtomicU32::new(0),
    generation: AtomicU64::new(0),
    current: Mutex::new(None),
    children: Mutex::new(Vec::new()),
    daemon_pipe: Mutex::new(None),
    pool: Mutex::new(Pool {
        generation: 0,
        fds: [const { None }; POOL_LEN],
    }),
};

/// How many idle result memfds a process keeps.
const POOL_LEN: usize = 4;

/// Idle result memfds. A memfd enters only once its child was reaped (nobody writes it any
/// more); the next child overwrites the record, and its token tells a stale record from its own.
struct Pool {
    /// The generation the fds belong to; in a forked child they are the parent's and are closed.
    generation: u64,
    fds: [Option<OwnedFd>; POOL_LEN],
}

impl Pool {
    /// In a forked child (a newer `generation`), closes the fds inherited from the parent,
    /// which may hand them to its own children.
    fn forget_inherited(&mut self, generation: u64) {
        if self.generation != generation {
            self.fds = [const { None }; POOL_LEN];
            self.generation = generation;
        }
    }
}

/// A memfd for the result record of a fork child: an idle one of this process, or a new one.
pub(super) fn result_memfd() -> std::io::Result<OwnedFd> {
    let mut pool = lock(&STATE.pool);
    pool.forget_inherited(STATE.generation.load(Ordering::Relaxed));
    match pool.fds.iter_mut().rev().find_map(Option::take) {
        Some(fd) => Ok(fd),
        None => {
            drop(pool);
            sys::memfd(c"multiproc-fork")
        }
    }
}

/// Returns the result memfd of a reaped fork child created under `generation` to the pool
/// (closes it if the pool is full or it belongs to an older generation).
fn recycle(fd: OwnedFd, generation: u64) {
    if generation != STATE.generation.load(Ordering::Relaxed) {
        return;
    }
    let mut pool = lock(&STATE.pool);
    pool.forget_inherited(generation);
    if let Some(slot) = pool.fds.iter_mut().find(|s| s.is_none()) {
        *slot = Some(fd);
    }
}

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

/// A fresh bootstrap token: one `getrandom` per process, then the splitmix64 finaliser of the
/// seed plus a counter, so no two children of a process share a token and none is guessable
/// without the seed.
pub(super) fn next_token() -> std::io::Result<u64> {
    let mut seed = STATE.token_seed.load(Ordering::Relaxed);
    if seed == 0 {
        let fresh = sys::random_u64()? | 1;
        seed =
            match STATE
                .token_seed
                .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => fresh,
                Err(current) => current,
            };
    }
    let n = STATE.token_count.fetch_add(1, Ordering::Relaxed);
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Ok(z ^ (z >> 31))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data is consistent at every unlock, so a panic elsewhere does not poison it for us.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records this process's identity (in a child, before its entry runs).
#[inline]
pub(super) fn set_current(identity: Identity) {
    *lock(&STATE.current) = Some(identity);
    STATE.created.store(0, Ordering::Relaxed);
}

/// This process's name: the name it was spawned with, or `MainProcess`.
pub(super) fn current_name() -> String {
    lock(&STATE.current).as_ref().map_or_else(
        || "MainProcess".to_owned(),
        |id| id.name.clone().unwrap_or_else(|| default_name(&id.path)),
    )
}

/// The identity path of the next child.
pub(super) fn next_identity() -> Vec<u32> {
    let n = STATE.created.fetch_add(1, Ordering::Relaxed) + 1;
    let mut path = lock(&STATE.current)
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
    /// The memfd holding the bootstrap, then the result; taken out only by `drop`.
    memfd: ManuallyDrop<OwnedFd>,
    pub(super) token: u64,
    /// For a fork child's memfd: the generation to recycle it under once the child is reaped.
    recycle: Option<u64>,
    /// Set once the child has been reaped.
    ended: Mutex<Option<ExitStatus>>,
}

impl Child {
    /// A child whose memfd is closed with it (a spawned child's: it holds a bootstrap).
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
            memfd: ManuallyDrop::new(memfd),
            token,
            recycle: None,
            ended: Mutex::new(None),
        }
    }

    /// A fork child, whose result memfd (from [`result_memfd`]) goes back to the pool once the
    /// child has been reaped and this handle is dropped.
    pub(super) fn forked(
        pid: u32,
        identity: Identity,
        pidfd: OwnedFd,
        memfd: OwnedFd,
        token: u64,
    ) -> Self {
        let mut child = Self::new(pid, identity, pidfd, memfd, token);
        child.recycle = Some(STATE.generation.load(Ordering::Relaxed));
        child
    }

    /// Whether it was started by the fork start method.
    pub(super) fn is_forked(&self) -> bool {
        self.recycle.is_some()
    }

    /// The memfd the child reports its result through.
    pub(super) fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
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

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: the field is taken exactly once, here, and never used afterwards.
        let fd = unsafe { ManuallyDrop::take(&mut self.memfd) };
        // A reaped child writes no more, so its memfd can carry the next child's result.
        let reaped = matches!(self.ended.get_mut(), Ok(Some(_)));
        match self.recycle {
            Some(generation) if reaped => recycle(fd, generation),
            _ => drop(fd),
        }
    }
}

/// Adds a child to the registry.
pub(super) fn register(child: Arc<Child>) {
    lock(&STATE.children).push(child);
}

/// Removes a child from the registry (it was joined).
pub(super) fn unregister(child: &Arc<Child>) {
    lock(&STATE.children).retain(|c| !Arc::ptr_eq(c, child));
}

/// Reaps finished children, drops them from the registry and returns the ones still running.
pub(super) fn alive_children() -> Vec<Arc<Child>> {
    let mut children = lock(&STATE.children);
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

/// The read end of this process's daemon pipe (created on first use), as a raw fd that stays
/// open for the life of the process.
pub(super) fn daemon_read_fd() -> std::io::Result<RawFd> {
    let mut pipe = lock(&STATE.daemon_pipe);
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

/// The parent's launcher state, swapped out of `STATE` around a `fork` (see [`stage_child`]).
pub(super) struct Staged {
    generation: u64,
    token_seed: u64,
    created: u32,
    current: Option<Identity>,
    children: Vec<Arc<Child>>,
    daemon_pipe: Option<DaemonPipe>,
}

/// Right before a `fork`: puts into `STATE` what the fork child `identity` starts with (a newer
/// generation, no token seed, no children, no daemon pipe, its own identity) and returns the
/// parent's state, for [`unstage`] right after the `fork`. So the child finds its state in
/// place and writes nothing to `STATE`: every page a fork child writes costs it a
/// copy-on-write fault, and this one was on the path of every child. No other thread may use
/// the launcher until [`unstage`] (the `fork_spawn` contract): it would see the child's state.
pub(super) fn stage_child(identity: Identity) -> Staged {
    Staged {
        generation: STATE.generation.fetch_add(1, Ordering::Relaxed),
        token_seed: STATE.token_seed.swap(0, Ordering::Relaxed),
        created: STATE.created.swap(0, Ordering::Relaxed),
        current: lock(&STATE.current).replace(identity),
        children: std::mem::take(&mut *lock(&STATE.children)),
        daemon_pipe: lock(&STATE.daemon_pipe).take(),
    }
}

/// In the parent right after the `fork`: puts its state back and returns the child's identity.
pub(super) fn unstage(staged: Staged) -> Identity {
    STATE.generation.store(staged.generation, Ordering::Relaxed);
    STATE.token_seed.store(staged.token_seed, Ordering::Relaxed);
    STATE.created.store(staged.created, Ordering::Relaxed);
    // The staged list is empty: putting the parent's back frees nothing.
    *lock(&STATE.children) = staged.children;
    *lock(&STATE.daemon_pipe) = staged.daemon_pipe;
    let child = std::mem::replace(&mut *lock(&STATE.current), staged.current);
    // Always `Some` (`stage_child` put it there); an empty identity is only a fallback.
    child.unwrap_or(Identity {
        name: None,
        path: Vec::new(),
    })
}

/// In the fork child: closes this process's copies of the parent's daemon pipe, returning a dup
/// of its read end if `daemon` and there is one (for the child to watch). The rest of the
/// parent's state (its identity, its children) is left as it is, never dropped here.
#[inline]
pub(super) fn in_fork_child(mut staged: Staged, daemon: bool) -> Option<OwnedFd> {
    let pipe = staged.daemon_pipe.take();
    std::mem::forget(staged);
    let pipe = pipe?;
    let read = if daemon {
        sys::dup_raw_cloexec(pipe.read.as_raw_fd()).ok()
    } else {
        None
    };
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

/// Asks the kernel to kill this child when the thread that spawned it ends; exits at once if
/// its parent (pid `parent`) already died before the request took effect.
pub(super) fn die_with_parent_thread(parent: u32) {
    if sys::kill_when_parent_thread_ends().is_err() || crate::sys::proc::getppid() != parent {
        sys::exit_now(DAEMON_ORPHANED_EXIT);
    }
}

/// Exit code of a daemon child that ends because its parent died (nobody is left to read it).
const DAEMON_ORPHANED_EXIT: i32 = 143;
