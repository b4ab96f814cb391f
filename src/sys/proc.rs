//! Process and thread identity, and the liveness test that owner-death detection relies on.
//!
//! A TID alone does not name a thread for long: TIDs are reused, and `kill(tid, 0)` succeeds for
//! zombies. A thread is therefore named by its TID *and* its start time (field 22 of
//! `/proc/<tid>/stat`, in clock ticks since boot), which no later thread with the same TID shares.
//! TIDs are local to a PID namespace: processes sharing a lock must share one.

use std::cell::Cell;
use std::io;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// What `/proc` says about a thread id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThreadState {
    /// No such thread: it exited and was reaped (or never existed).
    Gone,
    /// The thread is dead but its process has not been reaped.
    Zombie,
    /// A thread with this id runs; `start_time` says whether it is the one we mean.
    Running {
        /// Start time in clock ticks after boot.
        start_time: u64,
    },
}

/// Bumped in the child of every `fork`, so per-thread caches copied from the parent are refreshed.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn bump_fork_generation() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The calling thread's kernel id and start time, computed once per thread (and again after a
/// `fork`, whose child runs on a copy of the parent's thread and its thread-locals).
pub(crate) fn current_thread_identity() -> (u32, u64) {
    thread_local! { static ID: Cell<(u64, u32, u64)> = const { Cell::new((0, 0, 0)) }; }
    ID.with(|c| {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let (cached_generation, tid, start) = c.get();
        if tid != 0 && cached_generation == generation {
            return (tid, start);
        }
        static ATFORK: Once = Once::new();
        ATFORK.call_once(|| {
            // SAFETY: the handler is an `extern "C" fn` that only touches an atomic, which is
            // async-signal-safe and valid in a freshly forked child. Registration cannot fail
            // except for lack of memory, in which case forks just keep the stale cache.
            unsafe { libc::pthread_atfork(None, None, Some(bump_fork_generation)) };
        });
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let tid = rustix::thread::gettid().as_raw_pid() as u32;
        let start = match thread_state(tid) {
            Ok(ThreadState::Running { start_time }) => start_time,
            _ => 0,
        };
        c.set((generation, tid, start));
        (tid, start)
    })
}

/// This process's id and start time (0 when `/proc` cannot say), read from `/proc` once per
/// process: a forked child has another pid, which invalidates the cache.
pub(crate) fn current_process_identity() -> (u32, u64) {
    static CACHED: std::sync::Mutex<(u32, u64)> = std::sync::Mutex::new((0, 0));
    let pid = getpid();
    let mut cached = CACHED.lock().unwrap_or_else(|e| e.into_inner());
    if cached.0 != pid {
        *cached = (pid, process_start_time(pid).unwrap_or(0));
    }
    *cached
}

/// The calling process's id.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_pid() as u32
}

/// The parent process's id.
pub(crate) fn getppid() -> u32 {
    // `None`: no parent in this PID namespace (ppid 0).
    rustix::process::getppid().map_or(0, |p| p.as_raw_pid() as u32)
}

/// Reads `/proc/<tid>/stat` and reports whether that thread lives and when it started.
pub(crate) fn thread_state(tid: u32) -> io::Result<ThreadState> {
    let path = format!("/proc/{tid}/stat");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ThreadState::Gone),
        // ESRCH: the thread exited while we read.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(ThreadState::Gone),
        Err(e) => return Err(e),
    };
    parse_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc stat"))
}

/// Parses the state and start time out of a `/proc/<id>/stat` line.
fn parse_stat(text: &[u8]) -> Option<ThreadState> {
    // The command name (field 2) may hold spaces and parentheses; it ends at the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?; // field 3
    if state == "Z" || state == "X" || state == "x" {
        return Some(ThreadState::Zombie);
    }
    let start_time = fields.nth(18)?.parse().ok()?; // field 22
    Some(ThreadState::Running { start_time })
}

/// The start time of process `pid` (same clock as [`current_thread_identity`]), if it is running.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    match thread_state(pid) {
        Ok(ThreadState::Running { start_time }) => Some(start_time),
        _ => None,
    }
}

/// The process (thread group) that thread `tid` belongs to, from `/proc/<tid>/status`, or
/// `None` if it is gone or unreadable.
pub(crate) fn thread_group(tid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Number of CPUs this process may run on.
pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(ThreadState::Running { start_time: 98765 })
        );
        assert_eq!(parse_stat(b"42 (x) Z 1 2 3"), Some(ThreadState::Zombie));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn own_thread_is_running_and_stable() {
        let (tid, start) = current_thread_identity();
        assert_ne!(tid, 0);
        assert_eq!(current_thread_identity(), (tid, start));
        assert_eq!(
            thread_state(tid).unwrap(),
            ThreadState::Running { start_time: start }
        );
    }

    #[test]
    fn exited_thread_is_gone() {
        let tid = std::thread::spawn(|| current_thread_identity().0)
            .join()
            .unwrap();
        // The joined thread has exited and, being a non-leader thread, was reaped at once.
        assert_eq!(thread_state(tid).unwrap(), ThreadState::Gone);
    }
}
