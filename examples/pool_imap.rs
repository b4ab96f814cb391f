//! `imap` (results in input order) and `imap_unordered` (as they complete) over tasks of
//! different lengths, and an endless input consumed lazily. Run with
//! `cargo run --example pool_imap`.
//!
//! The Python it ports:
//! ```python
//! from multiprocessing import Pool
//! import itertools, time
//!
//! def nap(ms):
//!     time.sleep(ms / 1000)
//!     return ms
//!
//! if __name__ == '__main__':
//!     with Pool(3) as pool:
//!         naps = [300, 10, 200, 20, 100]
//!         print(list(pool.imap(nap, naps)))                 # [300, 10, 200, 20, 100]
//!         print(list(pool.imap_unordered(nap, naps)))       # quick ones first
//!         squares = pool.imap(pow2, itertools.count())      # endless input
//!         print(list(itertools.islice(squares, 5)))         # [0, 1, 4, 9, 16]
//! ```

use multiproc::Pool;
use std::time::Duration;

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn pow2(x: u64) -> u64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let pool = Pool::new(3)?;
    let naps = vec![300, 10, 200, 20, 100];
    let ordered: Result<Vec<u64>, _> = pool.imap(nap, naps.clone()).collect();
    println!("imap:           {:?}", ordered?);
    let unordered: Result<Vec<u64>, _> = pool.imap_unordered(nap, naps).collect();
    println!("imap_unordered: {:?}", unordered?);
    // An endless input: only a bounded window of it is ever taken.
    let squares: Result<Vec<u64>, _> = pool.imap(pow2, 0u64..).take(5).collect();
    println!("endless imap:   {:?}", squares?);
    Ok(())
}
