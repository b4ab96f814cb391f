//! An event gating a child: a port of Python's `Event` example. The child works in rounds, but
//! only while the event is set; the parent opens and closes the gate, then sets it for good and
//! stops the child.
//!
//! Run with `cargo run --example event_gate`.

use multiproc::sync::Event;
use multiproc::{Process, Shared};
use std::time::Duration;

/// Works one round each time the gate is open, until it has done `rounds`.
fn worker((gate, rounds): (Shared<Event>, u32)) -> u32 {
    println!("child: started, waiting at the gate");
    for round in 1..=rounds {
        if !gate.is_set() {
            println!("child: gate closed, waiting");
        }
        gate.wait();
        println!("child: gate open, round {round}");
        std::thread::sleep(Duration::from_millis(100));
    }
    rounds
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let gate = Shared::new(Event::new())?;
    let child = Process::spawn(worker, (gate.clone(), 6))?;
    for step in 0..6 {
        if step % 3 == 2 {
            println!("parent: closing the gate (child blocks)");
            gate.clear();
        } else {
            println!("parent: opening the gate");
            gate.set();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("parent: opening the gate for good");
    gate.set();
    let rounds = child.join()?;
    println!("parent: the child did {rounds} rounds; done");
    Ok(())
}
