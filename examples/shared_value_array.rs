//! Port of the Python `Value`/`Array` example: a child sets `num` and negates every element of
//! `arr`; the parent sees both changes without any copying.
//!
//! ```python
//! def f(n, a):
//!     n.value = 3.1415927
//!     for i in range(len(a)):
//!         a[i] = -a[i]
//!
//! num = Value('d', 0.0)
//! arr = Array('i', range(10))
//! p = Process(target=f, args=(num, arr)); p.start(); p.join()
//! print(num.value); print(arr[:])
//! ```

use multiproc::{Array, Process, Value};

// The seed's literal, not `PI`.
#[allow(clippy::approx_constant)]
fn f((num, arr): (Value<f64>, Array<i32>)) {
    num.set(3.1415927).expect("lock");
    for x in arr.lock().expect("lock").iter_mut() {
        *x = -*x;
    }
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let num = Value::new(0.0f64)?;
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    let p = Process::spawn(f, (num.clone(), arr.clone()))?;
    p.join()?;
    println!("{}", num.get().expect("lock"));
    println!("{:?}", arr.to_vec().expect("lock"));
    Ok(())
}
