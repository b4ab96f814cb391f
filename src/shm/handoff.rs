//! How file descriptors of shared segments travel inside spawn arguments.
//!
//! While `Process::spawn` serialises the arguments, a segment's `Serialize` calls [`export_fd`]
//! and writes the slot it returns; the launcher makes those fds inheritable in the child only.
//! While the child decodes the arguments, `Deserialize` calls [`import_fd`] with the slot.
//!
//! The parent's side keeps its own `O_CLOEXEC` duplicate of every exported fd until the child has
//! been started, so the value being serialised may even drop its fd at once. Only the launcher's
//! `posix_spawn` file actions (`adddup2(fd, fd)`), in the child, clear `FD_CLOEXEC` on those
//! duplicates; the parent's fds never become inheritable, so children that other threads start meanwhile inherit nothing.
//! In the child, the inherited fds are closed as soon as the arguments are decoded, so they do
//! not leak into grandchildren; the fds handed out by [`import_fd`] are `O_CLOEXEC`.

use crate::sys::process as sys;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

thread_local! {
    /// Parent side: `Some` while a spawn serialises its arguments on this thread; slot `i` is
    /// the `i`-th fd exported.
    static EXPORTS: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Child side: `Some` while the child decodes its arguments; slot `i` is the inherited fd
    /// number the parent listed at index `i`.
    static IMPORTS: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
}

/// Registers `fd` for the spawn whose arguments are being serialised on this thread and returns
/// its slot; `None` when no spawn is serialising (the handle is being sent elsewhere), or when
/// the fd cannot be duplicated (the process is out of fds).
pub(crate) fn export_fd(fd: BorrowedFd<'_>) -> Option<u32> {
    EXPORTS.with(|cell| {
        let mut exports = cell.borrow_mut();
        let list = exports.as_mut()?;
        let dup = sys::dup_raw_cloexec(fd.as_raw_fd()).ok()?;
        let slot = u32::try_from(list.len()).ok()?;
        list.push(dup);
        Some(slot)
    })
}

/// Whether a spawn is serialising its arguments on this thread (so [`export_fd`] would succeed).
#[cfg_attr(multiproc_loom, allow(dead_code))] // only the heap asks; loom builds have no heap
pub(crate) fn exporting() -> bool {
    EXPORTS.with(|cell| cell.borrow().is_some())
}

/// In a child decoding its spawn arguments: a new fd (a dup, `O_CLOEXEC`) for `slot`.
///
/// `NotFound` outside the decoding of spawn arguments or for a slot the parent did not export.
pub(crate) fn import_fd(slot: u32) -> io::Result<OwnedFd> {
    IMPORTS.with(|cell| {
        let imports = cell.borrow();
        let fd = imports
            .as_ref()
            .and_then(|list| list.get(slot as usize).copied())
            .ok_or(io::ErrorKind::NotFound)?;
        sys::dup_raw_cloexec(fd)
    })
}

/// Runs `serialise` with fd export enabled on this thread; returns its result and the fds it
/// exported, in slot order.
pub(crate) fn collect_exports<T>(serialise: impl FnOnce() -> T) -> (T, Vec<OwnedFd>) {
    let previous = EXPORTS.with(|cell| cell.borrow_mut().replace(Vec::new()));
    let out = serialise();
    let fds = EXPORTS.with(|cell| std::mem::replace(&mut *cell.borrow_mut(), previous));
    (out, fds.unwrap_or_default())
}

/// Runs `decode` with the inherited fds `slots` importable on this thread, then closes every
/// inherited fd (whether or not it was imported), so none reaches a grandchild.
pub(crate) fn with_imports<T>(slots: &[RawFd], decode: impl FnOnce() -> T) -> T {
    let previous = IMPORTS.with(|cell| cell.borrow_mut().replace(slots.to_vec()));
    let out = decode();
    IMPORTS.with(|cell| *cell.borrow_mut() = previous);
    for &fd in slots {
        sys::close_raw(fd);
    }
    out
}
