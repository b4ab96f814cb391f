//! The process launcher across real child processes.

use multiproc::process::FdArg;
use multiproc::{Error, ExitStatus, Process, active_children, current_process};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

multiproc::test_support!();

mod common;
use common::{is_dead, proc_state, watchdog};

type Mixed = (u32, String, Vec<i64>, (bool, char, Option<f64>));

fn transform((n, s, v, (b, c, f)): Mixed) -> Mixed {
    let v = v.into_iter().map(|x| -x).collect();
    (n * 2, s.to_uppercase(), v, (!b, c, f.map(|x| x + 1.0)))
}

fn my_name(_: ()) -> String {
    current_process().name
}

fn my_parent(_: ()) -> u32 {
    current_process().parent_pid
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn panics(code: u32) -> u32 {
    panic!("deliberate failure {code}")
}

fn exits(code: i32) -> u32 {
    std::process::exit(code)
}

#[test]
fn arguments_and_results_round_trip() {
    watchdog(20, || {
        let args: Mixed = (21, "abc".into(), vec![1, -2, 3], (true, 'é', Some(1.5)));
        let p = Process::spawn(transform, args.clone()).unwrap();
        assert_eq!(p.join().unwrap(), transform(args));
        let p = Process::spawn(|v: Vec<String>| v.concat(), vec!["a".into(), "bc".into()]);
        let s: String = p.unwrap().join().unwrap();
        assert_eq!(s, "abc");
    });
}

#[test]
fn children_know_their_names_and_parent() {
    watchdog(20, || {
        let p = Process::builder()
            .name("worker-7")
            .spawn(my_name, ())
            .unwrap();
        assert_eq!(p.name(), "worker-7");
        assert_eq!(p.join().unwrap(), "worker-7");

        let p = Process::spawn(my_name, ()).unwrap();
        let expected = p.name().to_owned();
        assert!(expected.starts_with("Process-"), "{expected}");
        assert_eq!(p.join().unwrap(), expected);

        let p = Process::spawn(my_parent, ()).unwrap();
        assert_eq!(p.join().unwrap(), std::process::id());
        assert_eq!(current_process().name, "MainProcess");
        assert_eq!(current_process().pid, std::process::id());
    });
}

#[test]
fn panic_message_reaches_join() {
    watchdog(20, || {
        let p = Process::spawn(panics, 42).unwrap();
        match p.join() {
            Err(Error::ChildPanicked { message }) => {
                assert_eq!(message, "deliberate failure 42")
            }
            other => panic!("expected ChildPanicked, got {other:?}"),
        }
    });
}

#[test]
fn killed_child_reports_the_signal() {
    watchdog(20, || {
        let mut p = Process::spawn(sleep_ms, 30_000).unwrap();
        assert!(p.is_alive());
        assert_eq!(p.exit_status().unwrap(), None);
        p.kill().unwrap();
        match p.join_timeout(Duration::from_secs(10)) {
            Err(Error::ChildSignaled { signal: 9 }) => {}
            other => panic!("expected ChildSignaled(9), got {other:?}"),
        }
        assert_eq!(p.exit_status().unwrap(), Some(ExitStatus::Signaled(9)));
        assert_eq!(p.exit_status().unwrap().map(ExitStatus::exitcode), Some(-9));
        assert!(!p.is_alive());
        // Signals to a reaped child are no-ops, never a recycled PID.
        p.kill().unwrap();
    });
}

#[test]
fn terminate_sends_sigterm() {
    watchdog(20, || {
        let mut p = Process::spawn(sleep_ms, 30_000).unwrap();
        p.terminate().unwrap();
        match p.join_timeout(Duration::from_secs(10)) {
            Err(Error::ChildSignaled { signal: 15 }) => {}
            other => panic!("expected ChildSignaled(15), got {other:?}"),
        }
        assert_eq!(
            p.exit_status().unwrap().map(ExitStatus::exitcode),
            Some(-15)
        );
    });
}

#[test]
fn join_timeout_then_join() {
    watchdog(20, || {
        let mut p = Process::spawn(sleep_ms, 1_000).unwrap();
        let start = Instant::now();
        assert!(matches!(
            p.join_timeout(Duration::from_millis(100)),
            Err(Error::Timeout)
        ));
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(p.is_alive());
        assert_eq!(p.join_timeout(Duration::from_secs(10)).unwrap(), 1_000);
        assert_eq!(p.exit_status().unwrap(), Some(ExitStatus::Exited(0)));
        assert!(!p.is_alive());
        // The outcome stays available.
        assert_eq!(p.join().unwrap(), 1_000);
    });
}

#[test]
fn exit_without_result_reports_the_code() {
    watchdog(20, || {
        let p = Process::spawn(exits, 3).unwrap();
        match p.join() {
            Err(Error::ChildExited { code: 3 }) => {}
            other => panic!("expected ChildExited(3), got {other:?}"),
        }
    });
}

#[test]
fn active_children_lists_running_and_reaps_finished() {
    watchdog(20, || {
        let a = Process::builder()
            .name("active-a")
            .spawn(sleep_ms, 30_000)
            .unwrap();
        let b = Process::spawn(sleep_ms, 0).unwrap();
        let b_pid = b.pid();
        drop(b); // never joined: active_children must reap it once it ended
        let listed = active_children();
        assert!(
            listed
                .iter()
                .any(|c| c.pid == a.pid() && c.name == "active-a"),
            "{listed:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while active_children().iter().any(|c| c.pid == b_pid) {
            assert!(Instant::now() < deadline, "finished child still listed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(is_dead(b_pid));
        assert_ne!(proc_state(b_pid), Some('Z'), "finished child not reaped");
        a.kill().unwrap();
        let a_pid = a.pid();
        assert!(a.join().is_err());
        assert!(!active_children().iter().any(|c| c.pid == a_pid));
    });
}

/// Starts a grandchild sleeping 30 s, returns its pid and exits (without joining it).
fn start_grandchild(daemon: bool) -> u32 {
    let p = Process::builder()
        .daemon(daemon)
        .spawn(sleep_ms, 30_000)
        .unwrap();
    p.pid()
}

#[test]
fn daemon_dies_with_its_parent_process() {
    watchdog(20, || {
        let parent = Process::spawn(start_grandchild, true).unwrap();
        let daemon = parent.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while !is_dead(daemon) {
            assert!(
                Instant::now() < deadline,
                "daemon {daemon} outlived its parent"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

#[test]
fn non_daemon_outlives_its_parent_process() {
    watchdog(20, || {
        let parent = Process::spawn(start_grandchild, false).unwrap();
        let orphan = parent.join().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let alive = !is_dead(orphan);
        // SAFETY: plain kill(2) of the orphan we just started; it is not our child, so its
        // pid cannot have been recycled while it still runs a sleep of 30 s.
        unsafe { libc::kill(orphan as libc::pid_t, libc::SIGKILL) };
        assert!(alive, "non-daemon grandchild died with its parent");
    });
}

/// Writes a greeting to the inherited pipe; returns (its link, how many fds of this process
/// point at that pipe, what a grandchild sees in /proc/self/fd).
fn use_fd(fd: FdArg) -> (String, usize, String) {
    let link = |path: std::path::PathBuf| {
        std::fs::read_link(path).map_or(String::new(), |l| l.to_string_lossy().into_owned())
    };
    let mine = link(format!("/proc/self/fd/{}", fd.0.as_raw_fd()).into());
    let count = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter(|e| link(e.as_ref().unwrap().path()) == mine)
        .count();
    let mut w = std::fs::File::from(fd.0);
    std::io::Write::write_all(&mut w, b"hello from child").unwrap();
    let out = std::process::Command::new("ls")
        .args(["-l", "/proc/self/fd/"])
        .output()
        .unwrap();
    (
        mine,
        count,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn fds_reach_the_child_and_not_grandchildren() {
    watchdog(20, || {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let p = Process::spawn(use_fd, FdArg(OwnedFd::from(writer))).unwrap();
        let mut got = String::new();
        // EOF only comes once the child is gone: spawn dropped the parent's write end.
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello from child");
        let (link, count, grandchild_fds) = p.join().unwrap();
        assert!(link.starts_with("pipe:["), "{link}");
        assert_eq!(count, 1, "the inherited original was not closed");
        assert!(!grandchild_fds.contains(&link), "{grandchild_fds}");
        assert!(
            !grandchild_fds.contains("multiproc"),
            "bootstrap memfd leaked: {grandchild_fds}"
        );
    });
}

#[test]
fn fd_arg_outside_spawn_is_an_error() {
    let (_r, w) = std::io::pipe().unwrap();
    assert!(postcard::to_stdvec(&FdArg(OwnedFd::from(w))).is_err());
}
