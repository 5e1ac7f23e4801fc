//! hubsim binary.
fn main() {}
