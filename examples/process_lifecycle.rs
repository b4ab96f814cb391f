//! A child's life seen from its parent: `is_alive`, `terminate`, `exit_status`, `join_timeout`,
//! `kill`, and what `join` says about a child that panicked. The first part ports the seed's
//! `terminate()`/`is_alive()` example:
//!
//! ```python
//! def func():
//!     i = 1
//!     while True:
//!         time.sleep(1)
//!         print('{}--child running, pid:{}'.format(i, os.getpid()))
//!         i += 1
//!
//! p = Process(target=func); p.start()
//! time.sleep(3)
//! p.terminate()
//! print(p.is_alive())   # True: the signal takes a moment
//! time.sleep(1)
//! print(p.is_alive())   # False
//! ```
//!
//! Run with `cargo run --release --example process_lifecycle`.

use multiproc::{ExitStatus, Process, current_process};
use std::time::Duration;

/// Prints a line every 300 ms until it is stopped.
fn ticker(_: ()) {
    for i in 1.. {
        std::thread::sleep(Duration::from_millis(300));
        println!("{i}--child running, pid: {}", current_process().pid);
    }
}

/// Fails the way a bug does.
fn buggy(n: u32) -> u32 {
    assert!(n < 10, "n is too large: {n}");
    n
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();

    // terminate() and is_alive(), as in the seed.
    let mut p = Process::spawn(ticker, ())?;
    std::thread::sleep(Duration::from_millis(1000));
    p.terminate()?; // SIGTERM
    println!("right after terminate: is_alive = {}", p.is_alive());
    std::thread::sleep(Duration::from_millis(300));
    println!("a moment later:        is_alive = {}", p.is_alive());
    // Python's exitcode: minus the signal number.
    if let Some(status) = p.exit_status()? {
        println!("exit status: {status:?}, exitcode {}", status.exitcode());
        assert!(matches!(status, ExitStatus::Signaled(_)));
    }

    // join_timeout gives up without killing; kill() then ends it for sure.
    let mut p = Process::spawn(ticker, ())?;
    match p.join_timeout(Duration::from_millis(400)) {
        Err(multiproc::Error::Timeout) => println!("join_timeout: still running after 400 ms"),
        other => println!("join_timeout: {other:?}"),
    }
    p.kill()?; // SIGKILL
    println!("after kill, join says: {}", p.join().unwrap_err());

    // A panic in the child reaches join() as an error carrying the message.
    println!("buggy(3) returned {}", Process::spawn(buggy, 3)?.join()?);
    match Process::spawn(buggy, 42)?.join() {
        Err(e) => println!("buggy(42): {e}"),
        Ok(v) => println!("buggy(42) returned {v}?"),
    }
    Ok(())
}
