//! What the io_uring test binaries share beyond the conformance harness: whether io_uring can
//! run here, and skipping visibly when it cannot.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::Write as _;

/// Why io_uring tests cannot run here, if they cannot (`PICSOU_TEST_NO_URING=1` pretends the
/// probe failed, to check that skips are visible).
pub fn uring_unavailable() -> Option<String> {
    if std::env::var_os("PICSOU_TEST_NO_URING").is_some() {
        return Some("PICSOU_TEST_NO_URING is set".into());
    }
    picsou_transport_uring::probe().err().map(|e| e.to_string())
}

/// True if io_uring works here; otherwise says so on the process's stderr (which the test
/// harness does not capture: a skip is never silent) and returns false.
pub fn uring_here() -> bool {
    let Some(why) = uring_unavailable() else { return true };
    // The harness names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: io_uring unavailable here: {why}");
    false
}
