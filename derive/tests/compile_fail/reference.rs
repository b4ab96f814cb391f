#[derive(multiproc::ShmSafe)]
#[repr(C)]
struct HoldsAReference<'a> {
    value: &'a u64,
}

fn main() {}
