#[derive(multiproc::ShmSafe)]
struct NoRepr {
    value: u64,
}

fn main() {}
