//! Sharing raw blocks with Python's `multiprocessing.shared_memory.SharedMemory`, against the real
//! `python3` of the machine (each test says so and passes vacuously where it is missing).

mod common;

use common::{unique, watchdog};
use multiproc::{Process, Segment};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

multiproc::test_support!();

/// Python's attach registers the block with its resource tracker, which (before Python 3.13's
/// `track=False`) unlinks it when the attaching process exits (cpython gh-82300): unregister it.
const PY_ATTACH: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")
"#;

fn python() -> Option<Command> {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import multiprocessing.shared_memory")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("python3 with multiprocessing.shared_memory not found: test skipped");
        return None;
    }
    Some(Command::new("python3"))
}

/// Sums the `u64`s of the named raw block (as a Rust child process would see it).
fn sum_block(name: String) -> u64 {
    let seg = Segment::open(&name).unwrap();
    let mut values = vec![0u64; seg.len() / 8];
    seg.read_pod(0, &mut values).unwrap();
    values.iter().sum()
}

#[test]
fn python_attaches_a_block_rust_created() {
    let Some(mut py) = python() else { return };
    watchdog(60, move || {
        let name = unique("py-attach");
        let seg = Segment::create(&name, 8 * 1000).unwrap();
        let values: Vec<u64> = (1..=1000).collect();
        seg.write_pod(0, &values).unwrap();
        let script = format!(
            "{PY_ATTACH}\nview = shm.buf.cast('Q')\nprint(sum(view))\nview[0] = 123456\n\
             del view\nshm.close()\n"
        );
        let out = py.arg("-c").arg(script).arg(&name).output().unwrap();
        assert!(out.status.success(), "python failed: {out:?}");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(printed.trim(), "500500");
        let mut first = [0u64];
        seg.read_pod(0, &mut first).unwrap();
        assert_eq!(first, [123456]);
        // Python's attach did not unlink it: a Rust child still opens it by name.
        let child = Process::spawn(sum_block, name.clone()).unwrap();
        assert_eq!(child.join().unwrap(), 500500 - 1 + 123456);
    });
}

#[test]
fn rust_child_and_python_sum_a_block_python_created() {
    let Some(mut py) = python() else { return };
    watchdog(60, move || {
        let name = unique("py-create");
        // Python creates and fills the block, prints its sum, waits for a line, then unlinks.
        let script = r#"
import sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=8 * 4096)
view = shm.buf.cast('Q')
for i in range(len(view)):
    view[i] = i * 3
print(sum(view), flush=True)
sys.stdin.readline()
del view
shm.close()
shm.unlink()
"#;
        let mut child = py
            .arg("-c")
            .arg(script)
            .arg(&name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let python_sum: u64 = line.trim().parse().unwrap();
        let rust_sum = Process::spawn(sum_block, name.clone())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(rust_sum, python_sum);
        // Opening never unlinks: the name stays Python's to remove.
        assert!(Segment::open(&name).is_ok());
        child.stdin.take().unwrap().write_all(b"done\n").unwrap();
        assert!(child.wait().unwrap().success());
        assert!(matches!(
            Segment::open(&name),
            Err(multiproc::Error::NotFound { .. })
        ));
    });
}
