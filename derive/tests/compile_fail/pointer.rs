#[derive(multiproc::ShmSafe)]
#[repr(C)]
struct HoldsAPointer {
    next: *const u8,
}

fn main() {}
