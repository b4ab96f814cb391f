//! Daemon and non-daemon children, named with `Process::builder()`, and `active_children()`: a
//! port of the seed's daemon example.
//!
//! ```python
//! p = Process(target=func)     # prints a line every second, forever
//! p.daemon = True
//! p.start()
//! p2 = Process(target=func2)   # prints, sleeps 10 s, prints again
//! p2.start()
//! time.sleep(5)
//! print('main code done')      # the daemon p is stopped; Python then waits for p2
//! ```
//!
//! A daemon child ends when its parent process ends, however it ends (even when the parent is
//! killed). Unlike Python, a parent returning from `main` does not wait for its other children:
//! this one joins `p2` itself. Run with `cargo run --release --example daemon`.

use multiproc::{Process, active_children, current_process};
use std::time::Duration;

/// Prints a line every 200 ms, forever.
fn func(_: ()) {
    for i in 1.. {
        std::thread::sleep(Duration::from_millis(200));
        println!(
            "{i}--{} running, pid {}",
            current_process().name,
            current_process().pid
        );
    }
}

/// Prints, sleeps, prints.
fn func2(_: ()) {
    let me = current_process();
    println!("{} starts, pid {}", me.name, me.pid);
    std::thread::sleep(Duration::from_millis(1500));
    println!("{} ends, pid {}", me.name, me.pid);
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    println!("main starts, pid {}", current_process().pid);
    let _p = Process::builder()
        .name("p1-daemon")
        .daemon(true)
        .spawn(func, ())?;
    let p2 = Process::builder().name("p2").spawn(func2, ())?;

    std::thread::sleep(Duration::from_millis(1000));
    let names: Vec<String> = active_children()
        .into_iter()
        .map(|c| format!("{} (pid {})", c.name, c.pid))
        .collect();
    println!("active children: {names:?}");

    p2.join()?;
    let names: Vec<String> = active_children().into_iter().map(|c| c.name).collect();
    println!("after joining p2, active children: {names:?}");
    println!("main code done: the daemon ends with this process");
    Ok(())
}
