//! The spawn start method: re-execute this binary and hand the child its entry and arguments.
//!
//! The child is `/proc/self/exe` (the exact file this process runs, even if it was replaced on
//! disk since), started with the parent's `argv[0]`, the environment variable `MULTIPROC_SPAWN`
//! naming an inherited memfd and a random token, and, under libtest, the arguments that select
//! the helper test `test_support!()` defines. The memfd holds the bootstrap record (see
//! `record`); the child overwrites it with its result, which the parent reads after reaping it,
//! so no pipe can fill up and block either side.
//!
//! The entry `fn(A) -> R` and the wrapper `run_entry::<A, R>` that decodes `A` and encodes `R`
//! travel as offsets from an anchor function. That is only valid when all three live in the same
//! loaded object; `dladdr` checks it, so functions in a shared library cannot be entries.

use super::child::{self, Wrapper};
use super::record::{self, Meta};
use super::registry::{self, Child, Identity, UNDER_LIBTEST};
use crate::shm::handoff;
use crate::sys::process as sys;
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// The arguments that make a libtest binary run only the helper test of `test_support!()`.
const LIBTEST_CHILD_ARGS: [&str; 5] = [
    "__multiproc_child",
    "--exact",
    "--nocapture",
    "--test-threads=1",
    "-q",
];

/// What the launcher needs from a `ProcessBuilder`.
pub(super) struct Options<'a> {
    pub(super) name: Option<&'a str>,
    pub(super) daemon: bool,
    pub(super) dies_with_thread: bool,
}

/// Offsets of `entry` and `wrapper` from the anchor, after checking that all three are in the
/// same loaded object.
pub(crate) fn offsets(entry: usize, wrapper: usize) -> Result<(i64, i64)> {
    static ANCHOR_BASE: OnceLock<Option<usize>> = OnceLock::new();
    let anchor = child::anchor_addr();
    let base = *ANCHOR_BASE.get_or_init(|| sys::object_base(anchor));
    if base.is_none() || sys::object_base(entry) != base || sys::object_base(wrapper) != base {
        return Err(Error::Spawn(
            "the entry function is not in the executable that links multiproc \
             (functions in a dylib cannot be entries)",
        ));
    }
    let off = |addr: usize| addr.wrapping_sub(anchor) as isize as i64;
    Ok((off(entry), off(wrapper)))
}

/// The child's argument vector: this process's `argv[0]`, then under libtest the arguments
/// that select the helper test. Built once.
struct Argv {
    _strings: Vec<CString>,
    /// Pointers into `_strings`, null-terminated.
    pointers: Vec<*const std::ffi::c_char>,
}

// SAFETY: the pointers point into the `CString`s owned by the same value, which are never
// mutated or dropped while it lives (a static), so sharing them between threads is sound.
unsafe impl Send for Argv {}
// SAFETY: as above; nothing is ever written through the pointers.
unsafe impl Sync for Argv {}

fn argv() -> &'static Argv {
    static ARGV: OnceLock<Argv> = OnceLock::new();
    ARGV.get_or_init(|| {
        let argv0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| OsString::from("/proc/self/exe"));
        let mut strings = vec![c_string(argv0.into_vec())];
        if UNDER_LIBTEST.load(Ordering::Relaxed) {
            strings.extend(
                LIBTEST_CHILD_ARGS
                    .iter()
                    .map(|a| c_string(a.as_bytes().to_vec())),
            );
        }
        let mut pointers: Vec<*const std::ffi::c_char> =
            strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        Argv {
            _strings: strings,
            pointers,
        }
    })
}

/// `bytes` as a C string, cut at the first NUL (an OS string never holds one).
fn c_string(mut bytes: Vec<u8>) -> CString {
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(nul);
    }
    CString::new(bytes).unwrap_or_default()
}

/// This process's environment as `KEY=value` C strings, with [`child::ENV`] set to `value`
/// (replacing an inherited one), and the logging level if the child should log to stderr.
fn environment(value: &str) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| {
            k.as_bytes() != child::ENV.as_bytes() && k.as_bytes() != crate::logging::ENV.as_bytes()
        })
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            c_string(kv)
        })
        .collect();
    env.push(c_string(format!("{}={value}", child::ENV).into_bytes()));
    env.extend(crate::logging::child_env().map(|kv| c_string(kv.into_bytes())));
    env
}

/// Starts `entry(args)` in a re-executed child.
pub(super) fn spawn<A, R>(opts: Options<'_>, entry: fn(A) -> R, args: A) -> Result<Arc<Child>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    if !registry::INIT_CALLED.load(Ordering::Relaxed) && std::env::var_os(child::ENV).is_some() {
        return Err(Error::Spawn(
            "this process was started as a child but never called multiproc::init(): call \
             multiproc::init() first in main, or multiproc::test_support!() in the test file",
        ));
    }
    let wrapper: Wrapper = child::run_entry::<A, R>;
    let (entry_offset, wrapper_offset) = offsets(entry as usize, wrapper as usize)?;
    let token = registry::next_token()?;

    let (encoded, exported) =
        handoff::collect_exports(|| postcard::to_extend(&args, record::boot_start(token)));
    let buf = encoded.map_err(|e| Error::Serialization(e.to_string()))?;

    let path = registry::next_identity();
    let name = opts
        .name
        .map_or_else(|| registry::default_name(&path), str::to_owned);
    let daemon_fd = if opts.daemon {
        Some(registry::daemon_read_fd()?)
    } else {
        None
    };
    let meta = Meta {
        entry_offset,
        wrapper_offset,
        slots: exported.iter().map(AsRawFd::as_raw_fd).collect(),
        name,
        identity: path,
        daemon_fd,
        parent_pid: opts.dies_with_thread.then(crate::sys::proc::getpid),
    };
    let buf = record::boot_finish(buf, &meta).map_err(|e| Error::Serialization(e.to_string()))?;
    let memfd = sys::memfd(c"multiproc-spawn")?;
    sys::write_all_at(memfd.as_fd(), &buf, 0)?;

    let mut inherit: Vec<RawFd> = meta.slots.clone();
    inherit.push(memfd.as_raw_fd());
    inherit.extend(daemon_fd);

    let env = environment(&format!("{}:{token:x}", memfd.as_raw_fd()));
    let mut envp: Vec<*const std::ffi::c_char> = env.iter().map(|v| v.as_ptr()).collect();
    envp.push(std::ptr::null());
    let pid = sys::spawn_with_fds(c"/proc/self/exe", &argv().pointers, &envp, &inherit)?;
    // The child holds its own copies now; ours (the exported duplicates) can go.
    drop(exported);
    drop(args);
    let pidfd = sys::pidfd_of_child(pid)?;
    let identity = Identity {
        name: Some(meta.name),
        path: meta.identity,
    };
    let child = Arc::new(Child::new(pid, identity, pidfd, memfd, token));
    log::info!(target: "multiproc", "started {} (pid {pid})", child.name());
    registry::register(Arc::clone(&child));
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(x: u8) -> u8 {
        x
    }

    #[test]
    fn entries_must_share_the_anchors_object() {
        let wrapper: Wrapper = child::run_entry::<u8, u8>;
        assert!(offsets(local as fn(u8) -> u8 as usize, wrapper as usize).is_ok());
        // A function of libc.so is in another loaded object.
        let foreign = libc::getpid as unsafe extern "C" fn() -> libc::pid_t as usize;
        assert!(matches!(
            offsets(foreign, wrapper as usize),
            Err(Error::Spawn(_))
        ));
    }
}
