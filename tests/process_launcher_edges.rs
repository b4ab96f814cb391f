//! The launcher in the corners a new user runs into: a parent with its standard streams closed,
//! an entry that ends the process itself, and every kind of fd a spawn hands over.

mod common;

use common::watchdog;
use multiproc::{Error, Process, ProcessBuilder, Value};

multiproc::test_support!();

fn double(x: u64) -> u64 {
    x * 2
}

/// Adds one to a shared counter and returns what it read: proves the child ran its entry and
/// got the segment's fd.
fn bump(counter: Value<u64>) -> u64 {
    let mut guard = counter.lock().unwrap();
    *guard += 1;
    *guard
}

/// Closes the fds in `close` (0, 1, 2 in any combination), then spawns grandchildren (plain,
/// daemon, with a shared segment) and returns what they returned, or the error text.
fn spawn_with_closed(close: Vec<i32>) -> Result<(u64, u64, u64), String> {
    for fd in close {
        // SAFETY: closing a standard stream of this child process; nothing in it holds a
        // borrowed handle to those fds (std's stdio tolerates closed fds).
        unsafe { libc::close(fd) };
    }
    let plain = Process::spawn(double, 21).map_err(|e| e.to_string())?;
    let daemon = ProcessBuilder::default()
        .daemon(true)
        .spawn(double, 50)
        .map_err(|e| e.to_string())?;
    let counter = Value::new(41u64).map_err(|e| e.to_string())?;
    let shared = Process::spawn(bump, counter.clone()).map_err(|e| e.to_string())?;
    Ok((
        plain.join().map_err(|e| e.to_string())?,
        daemon.join().map_err(|e| e.to_string())?,
        shared.join().map_err(|e| e.to_string())?,
    ))
}

#[test]
fn spawn_works_with_stdin_closed() {
    watchdog(60, || {
        let p = Process::spawn(spawn_with_closed, vec![0]).unwrap();
        assert_eq!(p.join().unwrap(), Ok((42, 100, 42)));
    });
}

#[test]
fn spawn_works_with_all_standard_streams_closed() {
    watchdog(60, || {
        let p = Process::spawn(spawn_with_closed, vec![0, 1, 2]).unwrap();
        assert_eq!(p.join().unwrap(), Ok((42, 100, 42)));
    });
}

fn exits_zero(_: ()) -> u64 {
    std::process::exit(0)
}

#[test]
fn entry_calling_exit_zero_reports_child_exited() {
    watchdog(30, || {
        let p = Process::spawn(exits_zero, ()).unwrap();
        match p.join() {
            Err(Error::ChildExited { code: 0 }) => {}
            other => panic!("expected ChildExited {{ code: 0 }}, got {other:?}"),
        }
    });
}

#[test]
fn exit_status_is_a_result() {
    watchdog(30, || {
        let mut p = Process::spawn(double, 1).unwrap();
        let status = loop {
            if let Some(status) = p.exit_status().unwrap() {
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        assert!(status.success());
    });
}
