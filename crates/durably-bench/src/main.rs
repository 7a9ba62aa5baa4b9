//! The durably benchmark program (being built: see issue 5).

fn main() {}
