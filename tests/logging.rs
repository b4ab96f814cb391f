//! `log_to_stderr`: lifecycle lines from the parent and from its children, and silence when
//! nobody asked.

mod common;

use common::watchdog;
use multiproc::Process;
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;

multiproc::test_support!();

fn quiet(_: ()) {}

/// Sends this process's stderr to a file, optionally installs the stderr logger, runs a named
/// grandchild to its end and returns what reached stderr (its own lines and the grandchild's).
fn stderr_of_a_run(log: bool) -> String {
    let mut file = tempfile();
    // SAFETY: dup2 onto fd 2 of this child process; std's stderr handle refers to fd 2 by
    // number and simply writes to the new file.
    assert!(unsafe { libc::dup2(file.as_raw_fd(), 2) } == 2);
    if log {
        assert!(multiproc::log_to_stderr(log::LevelFilter::Info));
    }
    let p = Process::builder().name("worker").spawn(quiet, ()).unwrap();
    p.join().unwrap();
    let mut out = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut out).unwrap();
    out
}

fn tempfile() -> std::fs::File {
    let path = std::env::temp_dir().join(format!("multiproc-log-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}

#[test]
fn lifecycle_lines_from_parent_and_child() {
    watchdog(30, || {
        let parent = Process::builder().name("boss").spawn(stderr_of_a_run, true);
        let out = parent.unwrap().join().unwrap();
        let expected = [
            "[INFO/boss] started worker (pid ",
            "[INFO/worker] child process calling its entry",
            "[INFO/worker] process exiting with exitcode 0",
            "[INFO/boss] worker (pid ",
        ];
        for line in expected {
            assert!(out.contains(line), "missing {line:?} in:\n{out}");
        }
        assert!(out.contains(") exited with exitcode 0"), "{out}");
    });
}

#[test]
fn nothing_is_printed_unless_asked() {
    watchdog(30, || {
        let out = Process::spawn(stderr_of_a_run, false)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(out, "");
    });
}
