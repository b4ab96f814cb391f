//! `pool.map` of a doubler over a list, then the same with `apply_async` and `get(timeout)`.
//! Run with `cargo run --example pool_map`.
//!
//! The Python it ports (the seed's Pool examples):
//! ```python
//! from multiprocessing import Pool
//!
//! def doubler(number):
//!     return number * 2
//!
//! if __name__ == '__main__':
//!     numbers = [5, 10, 20]
//!     pool = Pool(processes=3)
//!     print(pool.map(doubler, numbers))
//!     result = pool.apply_async(doubler, (25,))
//!     print(result.get(timeout=1))
//! ```

use multiproc::Pool;
use std::time::Duration;

fn doubler(number: u64) -> u64 {
    number * 2
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let numbers = vec![5, 10, 20];
    let pool = Pool::new(3)?;
    println!("{:?}", pool.map(doubler, numbers)?);
    let result = pool.apply_async(doubler, 25);
    match result.get_timeout(Duration::from_secs(1)) {
        Some(value) => println!("{}", value?),
        None => println!("no result within 1 s"),
    }
    Ok(())
}
