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
            }
        };
        let _ = tx.send(std::panic::catch_unwind(run));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => r.unwrap_or_else(|p| std::panic::resume_unwind(p)),
        Err(_) => panic!("watchdog: fork test hung"),
    }
}
