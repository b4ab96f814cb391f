//! The counter-file race, fixed with a lock: a port of the Python example in which ten processes
//! each read a number from a file, decrement it and write it back. Without a lock their reads and
//! writes interleave and updates are lost; with our process-shared `Mutex` around each
//! read-modify-write, the final count is exact.
//!
//! Run with `cargo run --example counter_file`.

use multiproc::sync::Mutex;
use multiproc::{Process, Shared};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WORKERS: u64 = 10;
const START: u64 = 100;

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Decrements the number in the file: read, think, write.
fn decrement(path: &Path) {
    let n = read_number(path);
    // Python's version sleeps a full second here, which is what makes the race visible.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(path, n.saturating_sub(1).to_string()).expect("write the counter file");
}

fn unlocked(path: PathBuf) {
    decrement(&path);
}

fn locked((lock, path): (Shared<Mutex<()>>, PathBuf)) {
    let guard = match lock.lock() {
        Ok(g) => g,
        Err(e) => {
            // A worker died while holding the lock: its write may be missing, but the file
            // always holds a whole number, so carry on.
            let mut g = e.into_guard().expect("the lock is unusable");
            g.make_consistent();
            g
        }
    };
    decrement(&path);
    drop(guard);
}

fn run<A: serde::Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    entry: fn(A),
    args: impl Fn() -> A,
) -> Result<u64, multiproc::Error> {
    std::fs::write(path, START.to_string()).expect("create the counter file");
    let procs = (0..WORKERS)
        .map(|_| Process::spawn(entry, args()))
        .collect::<Result<Vec<_>, _>>()?;
    for p in procs {
        p.join()?;
    }
    Ok(read_number(path))
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let path = std::env::temp_dir().join(format!("multiproc-counter-{}.txt", std::process::id()));

    let racy = run(&path, unlocked, || path.clone())?;
    println!(
        "without a lock: {START} - {WORKERS} decrements = {racy} (expected {}; {} updates lost)",
        START - WORKERS,
        racy - (START - WORKERS)
    );

    let lock = Shared::new(Mutex::new(()))?;
    let exact = run(&path, locked, || (lock.clone(), path.clone()))?;
    println!(
        "with a lock:    {START} - {WORKERS} decrements = {exact} (expected {})",
        START - WORKERS
    );
    let _ = std::fs::remove_file(&path);
    assert_eq!(exact, START - WORKERS);
    Ok(())
}
