#[derive(multiproc::ShmSafe)]
#[repr(C)]
struct HoldsAString {
    name: String,
}

fn main() {}
