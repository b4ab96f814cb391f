#[derive(multiproc::ShmSafe)]
#[repr(u8)]
enum State {
    Idle,
    Busy,
}

fn main() {}
