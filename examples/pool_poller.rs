//! An SNMP-style poller: a pool queries a list of hosts and prints each answer as it completes
//! (`imap_unordered`), the shape of the seed's asynchronous Net-SNMP engine without its queues
//! and sentinels. One "host" kills its worker, as a crashing native library would: that query
//! fails with `WorkerDied`, every other one is answered, and the pool replaces the worker
//! (CPython's Pool would hang here forever). Run with `cargo run --example pool_poller`.
//!
//! The Python it ports (the seed's version, with a task queue, a done queue and 'STOP'):
//! ```python
//! def worker(input, output):
//!     for func in iter(input.get, 'STOP'):
//!         result = make_query(func)
//!         output.put(result)
//!
//! def main():
//!     hosts = ["localhost", "localhost"]
//!     NUMBER_OF_PROCESSES = len(hosts)
//!     task_queue = Queue()
//!     done_queue = Queue()
//!     for host in hosts:
//!         task_queue.put(host)
//!     for i in range(NUMBER_OF_PROCESSES):
//!         Process(target=worker, args=(task_queue, done_queue)).start()
//!     print('Unordered results:')
//!     for i in range(len(hosts)):
//!         print('\t', done_queue.get().query)
//!     for i in range(NUMBER_OF_PROCESSES):
//!         task_queue.put('STOP')
//! ```
//! With a Pool, the same program is `for r in pool.imap_unordered(make_query, hosts): print(r)`.

use multiproc::{Pool, TaskError};
use std::time::Duration;

/// "Queries" a host: a network round trip of 10-40 ms, then sysUpTime.
fn make_query(host: String) -> String {
    if host == "10.0.0.13" {
        // A native library crashing the process.
        std::process::abort();
    }
    let n: u64 = host
        .rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    std::thread::sleep(Duration::from_millis(10 + (n % 4) * 10));
    format!(
        "{host}: sysUpTime={} (by pid {})",
        1000 + n * 7,
        std::process::id()
    )
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let hosts: Vec<String> = (1..=16).map(|n| format!("10.0.0.{n}")).collect();
    let pool = Pool::new(4)?;
    println!("Unordered results:");
    for result in pool.imap_unordered(make_query, hosts) {
        match result {
            Ok(line) => println!("\t{line}"),
            Err(TaskError::WorkerDied(status)) => {
                println!("\ta query killed its worker ({status:?}); the pool replaced it")
            }
            Err(e) => println!("\tquery failed: {e}"),
        }
    }
    pool.join();
    Ok(())
}
