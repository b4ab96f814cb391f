//! The child's side: recognise a spawned child in `init()`, decode, run the entry, report.

use super::record::{self, Outcome};
use super::registry::{self, Identity};
use crate::shm::handoff;
use crate::sys::process as sys;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The environment variable a spawned child finds its bootstrap through: `<fd>:<token hex>`.
pub(super) const ENV: &str = "MULTIPROC_SPAWN";

/// The type every `run_entry::<A, R>` has once `A` and `R` are fixed.
pub(super) type Wrapper = fn(entry: usize, args: &[u8], slots: &[RawFd]) -> Outcome;

/// The fixed point entry and wrapper addresses are measured from. Its address in the child is
/// at the same offset from every other function of the executable as in the parent.
#[inline(never)]
pub(super) fn anchor() -> u64 {
    std::hint::black_box(record::BOOT_MAGIC)
}

/// The address of [`anchor`].
pub(crate) fn anchor_addr() -> usize {
    anchor as fn() -> u64 as usize
}

/// If this process is a spawned child, runs its entry and exits; otherwise returns.
pub(super) fn dispatch() {
    let Some(var) = std::env::var_os(ENV) else {
        return;
    };
    let Some((fd, token)) = parse_env(var.to_str().unwrap_or("")) else {
        return;
    };
    // Anything but a regular file at `fd` (a closed fd, or a pipe or socket that happens to have
    // that number in a process that merely inherited the variable) means "not a child".
    if !sys::is_regular_file(fd) {
        return;
    }
    // SAFETY: `fd` is open (fstat succeeded); it is only read from here, and only owned (below)
    // once its content proves the parent put it there for us.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let Some(boot) = record::boot_read(borrowed, token) else {
        return;
    };
    // SAFETY: the bootstrap with our parent's token is in this fd, so it is the memfd the parent
    // made inheritable for us; nothing else in this process refers to it.
    let memfd = unsafe { sys::own_inherited(fd) };
    // Grandchildren must not inherit it; failure only risks a leak, so it is not fatal.
    let _ = sys::set_cloexec(memfd.as_fd());
    run(memfd.as_fd(), token, boot)
}

fn parse_env(var: &str) -> Option<(RawFd, u64)> {
    let (fd, token) = var.split_once(':')?;
    let fd: RawFd = fd.parse().ok()?;
    let token = u64::from_str_radix(token, 16).ok()?;
    (fd > 2).then_some((fd, token))
}

fn run(memfd: BorrowedFd<'_>, token: u64, boot: record::Boot) -> ! {
    let record::Boot { meta, args } = boot;
    registry::set_current(Identity {
        name: Some(meta.name),
        path: meta.identity,
    });
    if let Some(fd) = meta.daemon_fd {
        if fd <= 2 || !sys::is_pipe(fd) {
            sys::exit_now(1);
        }
        // SAFETY: the parent listed `fd` as the daemon pipe's read end it made inheritable for
        // us; nothing else in this process refers to it.
        let read = unsafe { sys::own_inherited(fd) };
        let _ = sys::set_cloexec(read.as_fd());
        registry::watch_parent(read);
    }
    if let Some(parent) = meta.parent_pid {
        registry::die_with_parent_thread(parent);
    }
    // If this fails the parent may report an `exit(0)` inside the entry as "no init()": a
    // wrong message in a case that is already failing, so it is not fatal.
    let _ = record::mark_started(memfd);
    log::info!(target: "multiproc", "child process calling its entry");
    let anchor = anchor_addr();
    let wrapper_addr = anchor.wrapping_add_signed(meta.wrapper_offset as isize);
    let entry_addr = anchor.wrapping_add_signed(meta.entry_offset as isize);
    // SAFETY: the parent (the same executable, verified by the token in a bootstrap only it can
    // have written) computed `wrapper_offset` from `run_entry::<A, R> as Wrapper`, so the
    // address is that function in this process, which has exactly the `Wrapper` type.
    let wrapper: Wrapper = unsafe { std::mem::transmute::<usize, Wrapper>(wrapper_addr) };
    let outcome = wrapper(entry_addr, &args, &meta.slots);
    log::info!(target: "multiproc", "process exiting with exitcode {}", outcome.exit_code());
    finish(memfd, token, &outcome)
}

/// Reports `outcome` through the memfd, flushes stdout and exits.
pub(super) fn finish(memfd: BorrowedFd<'_>, token: u64, outcome: &Outcome) -> ! {
    let written = record::result_write(memfd, token, outcome);
    exit_after_report(written, outcome.exit_code())
}

/// Runs `entry(args)` under `catch_unwind`, reports what happened through the memfd and exits:
/// [`call`] then [`finish`], except that a result that fits the stack buffer is encoded
/// straight into it (a forked child then touches no heap page before `_exit`).
pub(super) fn call_and_finish<A, R: Serialize>(
    memfd: BorrowedFd<'_>,
    token: u64,
    entry: impl FnOnce(A) -> R,
    args: A,
) -> ! {
    let value = match catch_unwind(AssertUnwindSafe(|| entry(args))) {
        Ok(value) => value,
        Err(payload) => {
            let outcome = Outcome::Panicked(panic_message(payload.as_ref()));
            finish(memfd, token, &outcome)
        }
    };
    let outcome = match record::result_write_value(memfd, token, &value) {
        Ok(Some(written)) => {
            // Dropped before exiting, as `call` does.
            drop(value);
            exit_after_report(written, 0)
        }
        Ok(None) => returned(&value),
        Err(e) => Outcome::BadResult(e.to_string()),
    };
    drop(value);
    finish(memfd, token, &outcome)
}

/// Flushes stdout (stderr is unbuffered) and exits with `code`, or with
/// [`REPORT_FAILED_EXIT`] if the result record could not be written.
#[inline]
fn exit_after_report(written: std::io::Result<()>, code: i32) -> ! {
    let _ = std::io::stdout().flush();
    if written.is_err() {
        sys::exit_now(REPORT_FAILED_EXIT);
    }
    sys::exit_now(code)
}

/// Exit code of a child that could not write its result record.
const REPORT_FAILED_EXIT: i32 = 70;

/// Decodes the arguments of a spawned child, runs `entry` on them and encodes its outcome.
///
/// Monomorphised per `(A, R)` in the parent, which passes its offset to the child.
pub(super) fn run_entry<A: DeserializeOwned, R: Serialize>(
    entry: usize,
    args: &[u8],
    slots: &[RawFd],
) -> Outcome {
    let decoded = handoff::with_imports(slots, || postcard::from_bytes::<A>(args));
    let args = match decoded {
        Ok(a) => a,
        Err(e) => return Outcome::BadArgs(e.to_string()),
    };
    // SAFETY: the parent computed this address's offset from `entry: fn(A) -> R` together with
    // this very wrapper's, so it is a function of exactly this type in this executable.
    let entry = unsafe { std::mem::transmute::<usize, fn(A) -> R>(entry) };
    call(entry, args)
}

/// Runs `entry(args)` under `catch_unwind` and encodes what happened.
pub(super) fn call<A, R: Serialize>(entry: impl FnOnce(A) -> R, args: A) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| entry(args))) {
        Ok(r) => returned(&r),
        Err(payload) => Outcome::Panicked(panic_message(payload.as_ref())),
    }
}

/// The outcome of an entry that returned `r`: its encoding, or why it could not be encoded.
fn returned<R: Serialize>(r: &R) -> Outcome {
    match postcard::to_stdvec(r) {
        Ok(bytes) => Outcome::Returned(bytes),
        Err(e) => Outcome::BadResult(e.to_string()),
    }
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_parsing_rejects_garbage() {
        assert_eq!(parse_env("7:ff"), Some((7, 0xff)));
        assert_eq!(parse_env("1:ff"), None);
        assert_eq!(parse_env("x:ff"), None);
        assert_eq!(parse_env("7"), None);
        assert_eq!(parse_env("7:zz"), None);
    }

    #[test]
    fn panic_messages_are_extracted() {
        let out = call(|_: ()| -> u8 { panic!("boom {}", 7) }, ());
        assert!(matches!(out, Outcome::Panicked(m) if m == "boom 7"));
        let out = call(|x: u8| x + 1, 1);
        assert!(matches!(out, Outcome::Returned(b) if b == vec![2]));
    }
}
