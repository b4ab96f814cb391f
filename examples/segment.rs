//! Raw shared-memory segments, Python's `shared_memory.SharedMemory`:
//!
//! ```python
//! shm = shared_memory.SharedMemory(create=True, size=64, name="mp-example-segment")
//! # in another process:
//! other = shared_memory.SharedMemory(name="mp-example-segment")
//! other.buf[:8] = (42).to_bytes(8, "little")
//! ```
//!
//! A named segment is opened by name from any process of the same user; an anonymous one has no
//! name and reaches a child as a `Process::spawn` argument. Raw bytes have no lock: the parent
//! reads only after joining the child. For typed, locked data use `Value`, `Array` or `Shared`.
//!
//! Run with `cargo run --release --example segment`.

use multiproc::{Process, Segment};

const NAME: &str = "mp-example-segment";

/// Opens the segment by name, as an unrelated process would, and writes eight numbers.
fn fill_by_name(_: ()) -> Result<(), String> {
    let seg = Segment::open(NAME).map_err(|e| e.to_string())?;
    let squares: Vec<u64> = (0..8).map(|i| i * i).collect();
    seg.write_pod(0, &squares).map_err(|e| e.to_string())
}

/// Receives an anonymous segment as an argument and sums what it holds.
fn sum_anonymous(seg: Segment) -> u64 {
    let mut values = [0u64; 8];
    seg.read_pod(0, &mut values).expect("in range and aligned");
    values.iter().sum()
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();

    // Named: created here (mode 0600), opened by name in the child.
    let named = Segment::create(NAME, 64)?;
    Process::spawn(fill_by_name, ())?
        .join()?
        .map_err(|_| multiproc::Error::Spawn("the child could not fill the segment"))?;
    let mut squares = [0u64; 8];
    named.read_pod(0, &mut squares)?;
    println!("the child wrote {squares:?} into {NAME}");

    // A read-only view refuses writes.
    let view = Segment::open_read_only(NAME)?;
    println!(
        "writing through a read-only view: {:?}",
        view.write_pod(0, &[1u64]).err()
    );

    // Anonymous: no name in /dev/shm; the child gets it as an inherited file descriptor.
    let anon = Segment::anonymous(64)?;
    anon.write_pod(0, &squares)?;
    let sum = Process::spawn(sum_anonymous, anon.clone())?.join()?;
    println!("the child summed the anonymous segment: {sum}");
    assert_eq!(sum, squares.iter().sum::<u64>());

    // The creator's handle unlinks the name when dropped (unless `persist()` was called);
    // `Segment::unlink` removes a name explicitly, and mappings already open stay valid.
    Segment::unlink(NAME)?;
    println!("after unlink, open says: {:?}", Segment::open(NAME).err());
    Ok(())
}
