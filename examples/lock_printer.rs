//! Lock-protected printing from ten processes: a port of Python's
//!
//! ```python
//! def f(l, i):
//!     l.acquire()
//!     print('hello world', i)
//!     l.release()
//! ```
//!
//! Run with `cargo run --example lock_printer`. Each line comes out whole, in whatever order the
//! processes get the lock.

use multiproc::sync::Mutex;
use multiproc::{Process, Shared};
use std::io::Write;

/// Prints one greeting while holding the lock, so lines from different processes never mix.
fn f((lock, i): (Shared<Mutex<()>>, u32)) {
    let _guard = lock.lock().unwrap_or_else(|e| match e.into_guard() {
        // A previous printer died holding the lock; there is no data to repair.
        Some(mut g) => {
            g.make_consistent();
            g
        }
        None => panic!("the print lock is unusable"),
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hello world {i}");
    let _ = out.flush();
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let lock = Shared::new(Mutex::new(()))?;
    let procs = (0..10)
        .map(|num| Process::spawn(f, (lock.clone(), num)))
        .collect::<Result<Vec<_>, _>>()?;
    for p in procs {
        p.join()?;
    }
    Ok(())
}
