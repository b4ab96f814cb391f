//! Processes with arguments and names: a port of the doubler from Python's `multiprocessing`
//! tutorial. Run with `cargo run --example doubler`.

use multiproc::{Process, current_process};

/// Doubles `number` and says which process did it, first by pid.
fn doubler_by_pid(number: u64) -> u64 {
    let result = number * 2;
    println!(
        "{number} doubled to {result} by process id: {}",
        current_process().pid
    );
    result
}

/// Doubles `number` and says which process did it, by name.
fn doubler(number: u64) -> u64 {
    let result = number * 2;
    println!(
        "{number} doubled to {result} by: {}",
        current_process().name
    );
    result
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let numbers = [5u64, 10, 15, 20, 25];

    let procs = numbers
        .iter()
        .map(|&n| Process::spawn(doubler_by_pid, n))
        .collect::<Result<Vec<_>, _>>()?;
    for p in procs {
        p.join()?;
    }

    let mut procs = numbers
        .iter()
        .map(|&n| Process::spawn(doubler, n))
        .collect::<Result<Vec<_>, _>>()?;
    procs.push(Process::builder().name("Test").spawn(doubler, 2)?);
    let mut results = Vec::new();
    for p in procs {
        results.push(p.join()?);
    }
    println!("results: {results:?}");
    Ok(())
}
