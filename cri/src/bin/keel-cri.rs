//! keel-cri: the CRI v1 server binary.
fn main() {}
