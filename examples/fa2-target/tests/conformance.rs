//! The fa2 adapter passes the conformance check, driven as a process like any other target.

use std::time::Duration;

use forcefield_target::{check, ProcessOptions, ProcessTarget, Target, TargetError};

#[test]
fn fa2_target_is_conformant() {
    let command = shell_words::quote(env!("CARGO_BIN_EXE_fa2-target")).into_owned();
    let options = ProcessOptions {
        timeout: Duration::from_secs(30),
        ..ProcessOptions::default()
    };
    let report = check(&mut || {
        ProcessTarget::spawn(&command, options.clone())
            .map(|t| Box::new(t) as Box<dyn Target>)
            .map_err(|e| TargetError::Protocol(e.to_string()))
    });
    assert!(report.passed(), "{report}");
    let info = report.info.as_ref().expect("the handshake succeeded");
    assert_eq!(info.name, "fa2");
    // Every step ran: the script's steps, the two declared capabilities, determinism.
    for step in [
        "remove nodes",
        "bad input",
        "capability params",
        "capability counts",
        "determinism",
    ] {
        assert!(
            report.passed_steps.iter().any(|s| s == step),
            "{step} missing:\n{report}"
        );
    }
    assert_eq!(report.skipped.len(), 8, "{report}");
}
