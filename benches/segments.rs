//! Segments and process start.
//!
//! Groups and ids (the report pairs "ours_*" with the others by group):
//! - `segment_4KiB`: create + open + close (unlink) of a named 4 KiB segment: `ours`
//!   (`Segment::create` + `Segment::open` + drop), `shared_memory` (the crate: `ShmemConf`
//!   create + open + drop); also `ours_anonymous` (`Segment::anonymous` + drop, no name) and
//!   `ours_typed` (`Shared::<AtomicU64>::create` + `Shared::open` + drop: a named typed object,
//!   built under a temporary name and renamed into place, then opened with its header checked).
//! - `process_start`: start a trivial child and wait for it: `bare_fork` (`fork` + `_exit` +
//!   `waitpid`), `bare_reexec` (`/proc/self/exe` with an env var that makes `main` exit at once,
//!   via `std::process::Command`), `bare_fork_exec` (the same with raw `fork` + `execve`);
//!   ours: `ours_spawn` (`Process::spawn` + `join`), `ours_fork` (the fork start method); then
//!   `bare_fork_after`, the bare fork again in the state ours ran in. A fork copies the page
//!   table entries of every resident anonymous page and the child's exit drops them again, so
//!   `bare_fork`, measured first, before criterion's first analysis grew the heap, forks a
//!   smaller process than ours do (with `--bench 'process_start/(bare_fork$|ours_fork|after)'`:
//!   228 KiB of resident anonymous memory during `bare_fork`, 372 KiB during `ours_fork` and
//!   `bare_fork_after`); `ours_fork` is compared with both.

mod common;

use common::ops::{
    SEGMENT_LEN, bare_fork, bare_reexec, ours_fork, ours_segment, ours_spawn, shared_memory_segment,
};
use criterion::Criterion;
use std::ffi::CString;
use std::sync::atomic::AtomicU64;

fn main() {
    common::bench_main(&[segment_4k, process_start]);
}

fn segment_4k(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment_4KiB");
    let name = common::unique_name("seg");
    g.bench_function("ours", |b| b.iter(|| ours_segment(&name)));
    g.bench_function("ours_anonymous", |b| {
        b.iter(|| multiproc::Segment::anonymous(SEGMENT_LEN).expect("anonymous"))
    });
    g.bench_function("ours_typed", |b| {
        b.iter(|| {
            let created = multiproc::Shared::create(&name, AtomicU64::new(0)).expect("create");
            let opened = multiproc::Shared::<AtomicU64>::open(&name).expect("open");
            drop(opened);
            drop(created); // the owner unlinks
        })
    });
    g.bench_function("shared_memory", |b| b.iter(|| shared_memory_segment(&name)));
    g.finish();
}

fn process_start(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_start");
    g.bench_function("bare_fork", |b| b.iter(bare_fork));
    g.bench_function("bare_reexec", |b| b.iter(bare_reexec));

    // Raw fork + execve: everything the child needs is prepared before the fork.
    let path = CString::new("/proc/self/exe").expect("path");
    let argv = [path.as_ptr(), std::ptr::null()];
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).expect("env")
        })
        .chain(std::iter::once(
            CString::new(format!("{}=1", common::EXIT_AT_ONCE_VAR)).expect("env"),
        ))
        .collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|s| s.as_ptr()).collect();
    envp.push(std::ptr::null());
    g.bench_function("bare_fork_exec", |b| {
        b.iter(|| {
            // SAFETY: single-threaded; the child only calls execve and _exit with prepared data.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // SAFETY: argv and envp are null-terminated arrays of valid C strings.
                unsafe {
                    libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    libc::_exit(127);
                }
            }
            let mut status = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        })
    });

    // Ours last: the benches above fork from a process that has never started a child of ours.
    g.bench_function("ours_spawn", |b| b.iter(ours_spawn));
    g.bench_function("ours_fork", |b| b.iter(ours_fork));
    // The bare fork again, in the state ours ran in (see the top of the file).
    g.bench_function("bare_fork_after", |b| b.iter(bare_fork));
    g.finish();
}
