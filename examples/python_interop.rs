//! Rust and Python share one block of numbers through `/dev/shm`, with no copy and no server.
//!
//! The Python side is plain `multiprocessing.shared_memory`:
//!
//! ```python
//! from multiprocessing import shared_memory, resource_tracker
//! shm = shared_memory.SharedMemory(name="mp-example-block")   # attach by name
//! resource_tracker.unregister(shm._name, "shared_memory")      # before 3.13: or it unlinks at exit
//! view = shm.buf.cast('Q')                                     # the block as u64s
//! print(sum(view)); view[0] = 1000
//! ```
//!
//! Here Rust creates the block, Python (`python3`, if the machine has it) sums it and writes
//! element 0, and a Rust child process sums it again. Run with
//! `cargo run --example python_interop`.

use multiproc::{Process, Segment};
use std::process::Command;

const PYTHON: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")
view = shm.buf.cast('Q')
print(f"python: sum = {sum(view)}, setting element 0 to 1000")
view[0] = 1000
del view
shm.close()
"#;

/// A Rust child process: attaches the block by name and sums it.
fn rust_sum(name: String) -> u64 {
    let Ok(block) = Segment::open(&name) else {
        return 0;
    };
    let mut values = vec![0u64; block.len() / 8];
    match block.read_pod(0, &mut values) {
        Ok(()) => values.iter().sum(),
        Err(_) => 0,
    }
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let name = format!("mp-example-block-{}", std::process::id());
    let block = Segment::create(&name, 8 * 100)?; // removed when `block` drops
    let numbers: Vec<u64> = (1..=100).collect();
    block.write_pod(0, &numbers)?;
    println!("rust: wrote 1..=100 into /dev/shm/{name}");

    match Command::new("python3")
        .arg("-c")
        .arg(PYTHON)
        .arg(&name)
        .status()
    {
        Ok(status) if status.success() => {}
        _ => println!("python3 with multiprocessing.shared_memory is not available: skipped"),
    }
    let sum = Process::spawn(rust_sum, name)?.join()?;
    println!("rust child: sum = {sum}");
    Ok(())
}
