//! The seed's Pipe: the parent and a child each send a message on their end of a duplex pipe
//! and receive the other's. Run with `cargo run --example pipe`.

use multiproc::{Connection, Pipe, Process};
use std::time::Duration;

fn child(conn: Connection<String>) {
    conn.send("hello, parent!".to_string())
        .expect("pipe closed");
    let reply = conn.recv().expect("pipe closed");
    println!("child received: {reply}");
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let (parent_end, child_end) = Pipe::new::<String>(4096)?;
    let p = Process::spawn(child, child_end)?;
    if parent_end.poll(Duration::from_secs(5)) {
        println!(
            "parent received: {}",
            parent_end.recv().expect("pipe closed")
        );
    }
    parent_end
        .send("hello, child!".to_string())
        .expect("pipe closed");
    p.join()?;
    parent_end.close();
    Ok(())
}
