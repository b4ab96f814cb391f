//! How file descriptors of shared segments travel inside spawn arguments.
//!
//! While `Process::spawn` serialises the arguments, a segment's `Serialize` calls [`export_fd`]
//! and writes the slot it returns; the launcher makes those fds inheritable in the child only.
//! While the child decodes the arguments, `Deserialize` calls [`import_fd`] with the slot.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

/// Registers `fd` for the spawn whose arguments are being serialised on this thread and returns
/// its slot; `None` when no spawn is serialising (the handle is being sent elsewhere).
pub(crate) fn export_fd(fd: BorrowedFd<'_>) -> Option<u32> {
    let _ = fd;
    None
}

/// In a child decoding its spawn arguments: a new fd (a dup, `O_CLOEXEC`) for `slot`.
pub(crate) fn import_fd(slot: u32) -> io::Result<OwnedFd> {
    let _ = slot;
    Err(io::ErrorKind::NotFound.into())
}
