//! The fork start method: `fork()` and run the entry in the copy, no serialisation of arguments.

use super::child;
use super::registry::{self, Child, Identity};
use super::spawn::Options;
use crate::Result;
use crate::sys::process as sys;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Arc;

/// Forks and runs `entry(args)` in the child; see `ProcessBuilder::fork_spawn` for the contract.
///
/// # Safety
/// - As `ProcessBuilder::fork_spawn`.
pub(super) unsafe fn fork_spawn<A, R>(
    opts: Options<'_>,
    entry: fn(A) -> R,
    args: A,
) -> Result<Arc<Child>>
where
    R: Serialize + DeserializeOwned,
{
    let token = registry::next_token()?;
    let memfd = registry::result_memfd()?;
    let path = registry::next_identity();
    let name = opts.name.map(str::to_owned);
    if opts.daemon {
        // Created before the fork so the child finds its read end.
        registry::daemon_read_fd()?;
    }
    // Buffered output would otherwise be written by both processes.
    let _ = std::io::stdout().flush();
    let staged = registry::stage_child(Identity { name, path });
    // SAFETY: the caller guarantees the fork preconditions documented on
    // `ProcessBuilder::fork_spawn` for everything the child does below.
    let forked = unsafe { sys::fork() };
    if let Ok(0) = forked {
        let watch = registry::in_fork_child(staged, opts.daemon);
        if opts.daemon {
            match watch {
                Some(read) => registry::watch_parent(read),
                None => sys::exit_now(1),
            }
        }
        child::call_and_finish(memfd.as_fd(), token, entry, args);
    }
    let identity = registry::unstage(staged);
    let pid = forked?;
    // The child runs on its own copy of `args`; the parent's copy is dropped like any moved value.
    drop(args);
    let pidfd = sys::pidfd_of_child(pid)?;
    let child = Arc::new(Child::forked(pid, identity, pidfd, memfd, token));
    log::info!(target: "multiproc", "started {} (pid {})", child.name(), child.pid);
    registry::register(Arc::clone(&child));
    Ok(child)
}
