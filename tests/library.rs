//! The library's house rules that a reader relies on.
use std::process::Command;

use fedmkt_tests::*;

/// No two modules of the library import each other, directly or around a circle (each
/// `crate::` and sibling `super::` reference outside test code, top-level modules and their
/// submodules; tests/house/import_cycles.py finds the four circles the library had at 873a083).
#[test]
fn the_library_has_no_import_cycles() {
    let output = Command::new("python3")
        .current_dir(root())
        .args(["tests/house/import_cycles.py", "tools/fedmkt/src"])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(", 0 cycles"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
