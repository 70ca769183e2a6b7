//! The `picsou` command.
fn main() {}
