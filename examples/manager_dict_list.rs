//! Port of the Python `Manager` example: a child changes a shared dict and reverses a shared
//! list; the parent prints both. No manager server process: the dict and the list live in a
//! shared heap that both processes map.
//!
//! ```python
//! from multiprocessing import Process, Manager
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//!
//! if __name__ == '__main__':
//!     manager = Manager()
//!     d = manager.dict()
//!     l = manager.list(range(10))
//!     p = Process(target=f, args=(d, l))
//!     p.start()
//!     p.join()
//!     print(d)
//!     print(l)
//! ```
//!
//! Python's dict takes keys of any type; here one enum plays that part. The Manager's `d[k] += 1`
//! from several processes loses updates; `Dict::update` does not (the last lines).

use multiproc::Process;
use multiproc::heap::{Dict, List};
use serde::{Deserialize, Serialize};

/// The Python values the seed uses as keys and values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Py {
    Int(i64),
    Float(f64),
    Str(String),
    None,
}

fn f((d, l): (Dict<Py, Py>, List<i64>)) {
    d.insert(&Py::Int(1), &Py::Str("1".into())).expect("insert");
    d.insert(&Py::Str("2".into()), &Py::Int(2)).expect("insert");
    d.insert(&Py::Float(0.25), &Py::None).expect("insert");
    let mut items = l.to_vec().expect("list");
    items.reverse();
    for (i, x) in items.into_iter().enumerate() {
        l.set(i, x).expect("set");
    }
}

fn add_ones(d: Dict<Py, Py>) {
    for _ in 0..1000 {
        d.update(&Py::Str("hits".into()), |v| match v {
            Some(Py::Int(n)) => *n += 1,
            other => *other = Some(Py::Int(1)),
        })
        .expect("update");
    }
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let d = Dict::<Py, Py>::new()?;
    let l = List::<i64>::new()?;
    l.extend(0..10)?;
    Process::spawn(f, (d.clone(), l.clone()))?.join()?;
    println!("{:?}", d.iter()?.collect::<Vec<_>>());
    println!("{:?}", l.to_vec()?);

    let workers: Vec<_> = (0..4)
        .map(|_| Process::spawn(add_ones, d.clone()))
        .collect::<Result<_, _>>()?;
    for w in workers {
        w.join()?;
    }
    println!(
        "hits = {:?} (4 processes x 1000 updates)",
        d.get(&Py::Str("hits".into()))?
    );
    Ok(())
}
