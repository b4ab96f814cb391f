//! A `Connection` as a request/response link to a worker process, with the parts of Python's
//! `Connection` that `examples/pipe.rs` does not show: `poll(timeout)`, `recv_timeout`, and the
//! end of the conversation (`close()` on one end makes the other's `recv` fail with `Closed`
//! once it has drained, Python's `EOFError`).
//!
//! ```python
//! def worker(conn):
//!     while True:
//!         try:
//!             n = conn.recv()
//!         except EOFError:
//!             break
//!         conn.send(n * n)
//! ```
//!
//! Run with `cargo run --release --example connection`.

use multiproc::queue::RecvError;
use multiproc::{Connection, Pipe, Process};
use std::time::Duration;

/// Answers each number with its square until the parent closes the connection.
fn worker(conn: Connection<u64>) -> u32 {
    let mut served = 0;
    loop {
        match conn.recv() {
            Ok(n) => {
                conn.send(n * n).expect("the parent hung up early");
                served += 1;
            }
            Err(RecvError::Closed) => return served, // EOFError
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let (conn, child_end) = Pipe::new::<u64>(4096)?;
    let child = Process::spawn(worker, child_end)?;

    // Nothing has been asked yet: poll says so without blocking for long.
    println!(
        "anything to read before asking? {}",
        conn.poll(Duration::from_millis(50))
    );

    for n in [3, 4, 5] {
        conn.send(n).expect("the worker hung up");
        let answer = conn
            .recv_timeout(Duration::from_secs(5))
            .expect("an answer within 5 s");
        println!("{n}^2 = {answer}");
    }

    conn.close(); // the worker's next recv gets Closed
    println!("the worker served {} requests", child.join()?);
    Ok(())
}
