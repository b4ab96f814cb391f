//! The seed's producer/consumer: a producer process puts numbers on a `Queue`, a consumer
//! process takes them until it sees the sentinel value. Run with
//! `cargo run --example producer_consumer`.

use multiproc::{Process, Queue, current_process};
use std::time::Duration;

/// Marks the end of the stream (Python puts `None`; a `Pod` queue carries a reserved value).
const SENTINEL: i64 = -1;

fn producer((q, count): (Queue<i64>, i64)) {
    for item in 0..count {
        std::thread::sleep(Duration::from_millis(20));
        println!("{} put {item}", current_process().name);
        q.push(item).expect("queue closed");
    }
    q.push(SENTINEL).expect("queue closed");
}

fn consumer(q: Queue<i64>) -> i64 {
    let mut total = 0;
    loop {
        let item = q.pop().expect("queue closed");
        if item == SENTINEL {
            println!("{} got the sentinel, stopping", current_process().name);
            return total;
        }
        println!("{} got {item}", current_process().name);
        total += item;
    }
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let q = Queue::<i64>::new(5)?;
    let p = Process::builder()
        .name("producer")
        .spawn(producer, (q.clone(), 10))?;
    let c = Process::builder()
        .name("consumer")
        .spawn(consumer, q.clone())?;
    p.join()?;
    let total = c.join()?;
    println!(
        "consumer summed {total} (expected {})",
        (0..10).sum::<i64>()
    );
    Ok(())
}
