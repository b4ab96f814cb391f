//! A pool of worker processes fed by a task queue and answering on a done queue: the shape of
//! the seed's asynchronous SNMP poller. Tasks are host numbers on a `Queue<u32>`; results are
//! `String`s on a `Channel`. Each worker stops at the sentinel. Run with
//! `cargo run --example worker_pool`.

use multiproc::{Channel, Process, Queue, current_process};
use std::time::Duration;

const WORKERS: usize = 4;
const HOSTS: u32 = 12;
/// No more work.
const STOP: u32 = u32::MAX;

/// "Polls" host `n` (sleeps a little, like a network round trip) and reports on `done`.
fn worker((tasks, done): (Queue<u32>, Channel<String>)) -> usize {
    let me = current_process().name;
    let mut handled = 0;
    loop {
        let host = tasks.pop().expect("task queue closed");
        if host == STOP {
            return handled;
        }
        std::thread::sleep(Duration::from_millis(10 + u64::from(host % 4) * 10));
        let answer = format!("10.0.0.{host}: sysUpTime={} (by {me})", 1000 + host * 7);
        done.send(answer).expect("done channel closed");
        handled += 1;
    }
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let tasks = Queue::<u32>::new(64)?;
    let done = Channel::<String>::new(64 * 1024)?;
    let pool: Vec<_> = (0..WORKERS)
        .map(|i| {
            Process::builder()
                .name(format!("worker-{i}"))
                .spawn(worker, (tasks.clone(), done.clone()))
        })
        .collect::<Result<_, _>>()?;
    for host in 1..=HOSTS {
        tasks.push(host).expect("task queue closed");
    }
    for _ in 0..WORKERS {
        tasks.push(STOP).expect("task queue closed");
    }
    for _ in 0..HOSTS {
        println!("{}", done.recv().expect("done channel closed"));
    }
    for w in pool {
        let name = w.name().to_string();
        println!("{name} handled {} hosts", w.join()?);
    }
    Ok(())
}
