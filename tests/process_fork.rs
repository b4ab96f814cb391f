//! The fork start method. Alone in its binary, so the harness runs no other test thread that
//! could hold a lock at the moment of the fork.

use multiproc::{Error, Process, current_process};
use std::sync::mpsc;
use std::time::Duration;

fn sum_and_name(v: Vec<u64>) -> (u64, String) {
    (v.iter().sum(), current_process().name)
}

fn fork_panics(_: ()) -> u8 {
    panic!("forked failure")
}

fn big(n: usize) -> Vec<u8> {
    vec![7; n]
}

fn exits_without_result(code: i32) -> Vec<u8> {
    std::process::exit(code)
}

fn sleeps(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// What a fork child sees of the launcher: its own children (none) and name, and those of a
/// grandchild it forks in turn.
fn launcher_view(_: ()) -> (usize, String, String, u32) {
    let mine = multiproc::active_children().len();
    // SAFETY: a fork child has one thread.
    let grandchild = unsafe { Process::builder().fork_spawn(name_and_parent, ()) }.unwrap();
    let (name, parent) = grandchild.join().unwrap();
    (mine, current_process().name, name, parent)
}

fn name_and_parent(_: ()) -> (String, u32) {
    (current_process().name, current_process().parent_pid)
}

fn unit_exits(code: i32) {
    if code >= 0 {
        std::process::exit(code)
    }
}

#[test]
fn fork_start_method() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let run = || {
            // SAFETY: this binary holds this one test; the harness's main thread only waits
            // for it and holds no lock the child needs.
            let p = unsafe {
                Process::builder()
                    .name("forked")
                    .fork_spawn(sum_and_name, vec![1, 2, 3])
            }
            .unwrap();
            assert_eq!(p.name(), "forked");
            assert_eq!(p.join().unwrap(), (6, "forked".to_owned()));
            // SAFETY: as above.
            let p = unsafe { Process::builder().fork_spawn(fork_panics, ()) }.unwrap();
            // Nothing of the previous (joined) child shows in the new handle.
            assert!(p.name().starts_with("Process-"), "{}", p.name());
            match p.join() {
                Err(Error::ChildPanicked { message }) => assert_eq!(message, "forked failure"),
                other => panic!("expected ChildPanicked, got {other:?}"),
            }
            assert_eq!(current_process().name, "MainProcess");
            // Result memfds are recycled: a large record, a small one over it, then a child
            // that reports nothing must each get exactly their own outcome.
            // A `()` result needs no record: exit code 0 says it (also after `exit(0)`).
            for (code, ok) in [(-1, true), (0, true), (4, false)] {
                // SAFETY: as above.
                let p = unsafe { Process::builder().fork_spawn(unit_exits, code) }.unwrap();
                match p.join() {
                    Ok(()) if ok => {}
                    Err(Error::ChildExited { code: 4 }) if !ok => {}
                    other => panic!("code {code}: got {other:?}"),
                }
            }
            // The launcher state a fork child starts with is its own, and the parent keeps its
            // own: its children, its name, its daemon pipe.
            // SAFETY: as above.
            let sleeper = unsafe { Process::builder().fork_spawn(sleeps, 30_000) }.unwrap();
            // SAFETY: as above.
            let daemon = unsafe { Process::builder().daemon(true).fork_spawn(sleeps, 1) }.unwrap();
            assert_eq!(daemon.join().unwrap(), 1);
            // SAFETY: as above.
            let p = unsafe {
                Process::builder()
                    .name("viewer")
                    .fork_spawn(launcher_view, ())
            }
            .unwrap();
            let pid = p.pid();
            let (mine, name, grandchild, grandparent) = p.join().unwrap();
            assert_eq!(mine, 0, "a fork child listed its parent's children");
            assert_eq!(name, "viewer");
            assert!(
                grandchild.starts_with("Process-") && grandchild.ends_with(":1"),
                "{grandchild}"
            );
            assert_eq!(grandparent, pid);
            assert_eq!(current_process().name, "MainProcess");
            let listed = multiproc::active_children();
            assert!(listed.iter().any(|c| c.pid == sleeper.pid()), "{listed:?}");
            sleeper.kill().unwrap();
            assert!(matches!(
                sleeper.join(),
                Err(Error::ChildSignaled { signal: 9 })
            ));
            // Watching, waiting with a timeout and signalling work on fork children too.
            // SAFETY: as above.
            let mut p = unsafe { Process::builder().fork_spawn(sleeps, 30_000) }.unwrap();
            assert!(p.is_alive());
            assert!(matches!(
                p.join_timeout(Duration::from_millis(50)),
                Err(Error::Timeout)
            ));
            p.terminate().unwrap();
            match p.join_timeout(Duration::from_secs(10)) {
                Err(Error::ChildSignaled { signal: 15 }) => {}
                other => panic!("expected ChildSignaled(15), got {other:?}"),
            }
            assert!(!p.is_alive());
            p.kill().unwrap(); // reaped: a no-op
            for n in [10_000, 3, 5_000] {
                // SAFETY: as above.
                let p = unsafe { Process::builder().fork_spawn(big, n) }.unwrap();
                assert_eq!(p.join().unwrap(), vec![7; n]);
                // SAFETY: as above.
                let p = unsafe { Process::builder().fork_spawn(exits_without_result, 3) }.unwrap();
                match p.join() {
                    Err(Error::ChildExited { code: 3 }) => {}
                    other => panic!("expected ChildExited(3), got {other:?}"),
                }
                // SAFETY: as above.
                let p = unsafe { Process::builder().fork_spawn(exits_without_result, 0) }.unwrap();
                match p.join() {
                    Err(Error::ChildExited { code: 0 }) => {}
                    other => panic!("expected ChildExited(0), got {other:?}"),
                }
            }
        };
        let _ = tx.send(std::panic::catch_unwind(run));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => r.unwrap_or_else(|p| std::panic::resume_unwind(p)),
        Err(_) => panic!("watchdog: fork test hung"),
    }
}
