//! The restaurant with three seats: a port of Python's `Semaphore(3)` example. Ten customers (each
//! a process) queue for a table with three seats; each eats for a while and leaves. At most three
//! are ever seated, which the customers check themselves with a shared counter.
//!
//! Run with `cargo run --example restaurant`.

use multiproc::sync::Semaphore;
use multiproc::{Process, Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The table: three seats, and how many are taken (to show the bound holds). The derive checks
/// the layout is fixed and every field may live in shared memory.
#[derive(ShmSafe)]
#[repr(C)]
struct Table {
    seats: Semaphore,
    seated: AtomicU32,
    most_seated: AtomicU32,
}

/// One customer: waits for a seat, eats, leaves.
fn customer((table, i): (Shared<Table>, u64)) {
    table.seats.acquire();
    let now = table.seated.fetch_add(1, Ordering::SeqCst) + 1;
    table.most_seated.fetch_max(now, Ordering::SeqCst);
    println!("customer {i} sits down and starts eating ({now} seated)");
    // Python sleeps 3 to 8 s; a tenth of that keeps the example short.
    std::thread::sleep(Duration::from_millis(300 + (i * 37) % 500));
    let left = table.seated.fetch_sub(1, Ordering::SeqCst) - 1;
    println!("customer {i} has finished and leaves ({left} seated)");
    table
        .seats
        .release()
        .expect("an unbounded semaphore never overflows");
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let table = Shared::new(Table {
        seats: Semaphore::new(3),
        seated: AtomicU32::new(0),
        most_seated: AtomicU32::new(0),
    })?;
    let customers = (0..10)
        .map(|i| Process::spawn(customer, (table.clone(), i)))
        .collect::<Result<Vec<_>, _>>()?;
    for c in customers {
        c.join()?;
    }
    let most = table.most_seated.load(Ordering::SeqCst);
    println!("at most {most} customers were seated at once");
    assert!(most <= 3);
    Ok(())
}
