//! `apply_async` with `get(timeout)`, `map`, and `imap` with `next(timeout)`: the seed's tour of
//! Pool. Where Python's `get(timeout=1)` raises `TimeoutError`, `get_timeout` returns `None`;
//! the slow task keeps running and the pool's drop kills it. Run with
//! `cargo run --example pool_async`.
//!
//! The Python it ports:
//! ```python
//! from multiprocessing import Pool
//! import time
//!
//! def f(x):
//!     return x*x
//!
//! if __name__ == '__main__':
//!     pool = Pool(processes=4)              # start 4 worker processes
//!     result = pool.apply_async(f, (10,))   # evaluate "f(10)" asynchronously
//!     print(result.get(timeout=1))          # prints "100" unless your computer is *very* slow
//!     print(pool.map(f, range(10)))         # prints "[0, 1, 4,..., 81]"
//!     it = pool.imap(f, range(10))
//!     print(next(it))                       # prints "0"
//!     print(next(it))                       # prints "1"
//!     print(it.next(timeout=1))             # prints "4" unless your computer is *very* slow
//!     result = pool.apply_async(time.sleep, (10,))
//!     print(result.get(timeout=1))          # raises TimeoutError
//! ```

use multiproc::Pool;
use std::time::Duration;

fn f(x: u64) -> u64 {
    x * x
}

fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let pool = Pool::new(4)?;
    let result = pool.apply_async(f, 10);
    println!("{:?}", result.get_timeout(Duration::from_secs(1)));
    println!("{:?}", pool.map(f, 0..10)?);
    let mut it = pool.imap(f, 0..10);
    println!("{:?}", it.next());
    println!("{:?}", it.next());
    println!("{:?}", it.next_timeout(Duration::from_secs(1))?);
    let result = pool.apply_async(sleep, 10);
    match result.get_timeout(Duration::from_secs(1)) {
        None => println!("TimeoutError: not ready after 1 s"),
        Some(r) => println!("{r:?}"),
    }
    Ok(())
}
