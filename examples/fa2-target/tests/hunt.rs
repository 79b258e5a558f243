//! The embedding `hunt` binary: fa2 passes its `target check`, served by the binary itself.

use std::process::Command;

#[test]
fn hunt_checks_the_embedded_fa2() {
    let out = Command::new(env!("CARGO_BIN_EXE_hunt"))
        .args(["target", "check"])
        .output()
        .expect("hunt runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("target: fa2 "), "{stdout}");
    assert!(stdout.ends_with("conformant\n"), "{stdout}");
}
