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
    // Every other capability is skipped.
    assert_eq!(
        report.skipped.len(),
        forcefield_target::Capability::ALL.len() - 2,
        "{report}"
    );
}

/// A defect of `fa2` 0.3.0 the generic checks found: `FA2Layout::epoch` unwraps the extent of
/// the positions for its Barnes-Hut tree, which an empty graph does not have (`layout.rs:58`). The
/// driver sees the target die with Rust's panic exit code and the panic on stderr.
#[test]
fn fa2_panics_on_an_empty_graph_under_barnes_hut_and_the_driver_classifies_the_death() {
    let command = format!(
        "env RUST_BACKTRACE=0 {}",
        shell_words::quote(env!("CARGO_BIN_EXE_fa2-target"))
    );
    let mut t =
        ProcessTarget::spawn(&command, ProcessOptions::default()).expect("fa2-target starts");
    let params = serde_json::json!({ "barnes_hut_theta": 0.5 });
    let params = params.as_object().expect("an object");
    t.create(&forcefield_target::Graph::default(), Some(params))
        .expect("an empty graph is accepted");
    let e = t.step(1).expect_err("fa2 0.3.0 panics here");
    let TargetError::Died(death) = e else {
        panic!("expected the target to die, got {e:?}");
    };
    assert_eq!(death.op, "step");
    assert_eq!(death.exit, forcefield_target::ExitKind::Code(101));
    assert!(
        death
            .stderr_tail
            .iter()
            .any(|l| l.contains("called `Option::unwrap()` on a `None` value")),
        "{:?}",
        death.stderr_tail
    );
}
