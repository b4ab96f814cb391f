//! Recovering a lock whose holder was killed: a child takes the mutex that guards a two-field
//! record, updates one field and is killed (`SIGKILL`) before it writes the other. Python's
//! `multiprocessing.Lock` would stay locked forever here; our `Mutex` hands the next locker
//! `Err(LockError::OwnerDied(guard))`, whose guard lets it repair the record and call
//! `make_consistent()`.
//!
//! Run with `cargo run --release --example lock_recovery`.

use multiproc::sync::{LockError, Mutex};
use multiproc::{Process, Shared};
use std::time::Duration;

/// A transfer between two accounts: the invariant is `a + b == 100`.
type Accounts = [i64; 2];

/// Takes 30 from `a`, then "crashes" (waits to be killed) before giving it to `b`.
fn half_transfer(accounts: Shared<Mutex<Accounts>>) {
    let mut guard = accounts.lock().unwrap_or_else(|e| panic!("lock: {e}"));
    guard[0] -= 30;
    println!("child: took 30 from a, now waiting to be killed while holding the lock");
    std::thread::sleep(Duration::from_secs(60));
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let accounts = Shared::new(Mutex::new([100i64, 0]))?;
    let child = Process::spawn(half_transfer, accounts.clone())?;

    // Wait until the child holds the lock and has changed `a`, then kill it.
    while !matches!(accounts.try_lock(), Err(LockError::WouldBlock)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100)); // let it write `a`
    child.kill()?;
    println!("parent: killed the child: {:?}", child.join().err());

    // The next locker learns of the death and gets the lock with the half-done update.
    let mut guard = match accounts.lock() {
        Ok(_) => unreachable!("the holder died: the first locker is told"),
        Err(LockError::OwnerDied(guard)) => guard,
        Err(e) => panic!("the lock is unusable: {e}"),
    };
    println!("parent: OwnerDied, the record reads {:?}", *guard);
    // Repair: finish the transfer (or roll it back); here we finish it.
    let missing = 100 - (guard[0] + guard[1]);
    guard[1] += missing;
    guard.make_consistent();
    println!("parent: repaired to {:?} and made consistent", *guard);
    drop(guard);

    // The mutex works normally again, for every process.
    assert_eq!(accounts.lock().map(|g| g[0] + g[1]).ok(), Some(100));
    println!("parent: the lock is usable again");
    Ok(())
}
