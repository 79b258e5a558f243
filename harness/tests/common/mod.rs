//! What the end-to-end tests share: running `forcefield` and the embedding fixture, asserting a
//! process's exit code (with its output on failure), naming the example targets, and whether NumPy
//! is there for the Python ones.

// Each test crate that includes this module uses some of it; the rest would warn there.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `forcefield` with `args`.
pub fn forcefield(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forcefield"))
        .args(args)
        .output()
        .expect("forcefield runs")
}

/// Runs the embedding fixture (`tests/fixtures/embedded_fixture.rs`) with `args`.
pub fn fixture(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embedded-fixture"))
        .args(args)
        // A backtrace per panicking worker would only slow the deaths down.
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the fixture runs")
}

/// The command line of the Python example target `name` (`target.py`, `broken_target.py`).
pub fn example(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "examples",
        "python-target",
        name,
    ]
    .iter()
    .collect();
    format!("python3 {}", path.display())
}

/// Whether NumPy can be imported; the tests that need it say so on stdout and return otherwise.
pub fn numpy() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("skipped: numpy not installed");
    }
    found
}

/// Asserts that the process behind `out` exited with `code`; a failure shows its stdout and stderr,
/// which say why.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that the process behind `out` exited 0 (see [`assert_exit`]).
#[track_caller]
pub fn assert_success(out: &Output) {
    assert_exit(out, 0);
}
