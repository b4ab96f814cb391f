mod common; fn main() { common::bench_main(&[]); }
