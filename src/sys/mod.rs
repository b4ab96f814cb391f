//! The only module that talks to the operating system. Everything above it is portable logic.
//!
//! Linux is the one backend today; a macOS port adds sibling files, selected here.

// Loom models replace the futex and never map segments, so much of this is idle under loom.
#![cfg_attr(multiproc_loom, allow(dead_code))]

pub(crate) mod futex;
pub(crate) mod membarrier;
pub(crate) mod proc;
pub(crate) mod process;
pub(crate) mod shm;
pub(crate) mod socket;
pub(crate) mod time;

use std::io;

/// Turns a `-1` return from libc into the thread's `errno`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
