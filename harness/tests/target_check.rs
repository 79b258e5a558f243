//! `forcefield target check` on the example targets: the NumPy layout conforms, its broken copy's
//! capacity bug is reported in plain words, a missing program is bad input.

mod common;

use common::{assert_exit, assert_success, example, forcefield, numpy};

#[test]
fn the_numpy_target_is_conformant() {
    if !numpy() {
        return;
    }
    let out = forcefield(&["target", "check", &example("target.py")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_success(&out);
    assert!(
        stdout.starts_with(
            "target: numpy-layout 1.0 (capabilities: params, capacity, counts, checkpoint)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok      capability checkpoint\n"),
        "{stdout}"
    );
    assert!(stdout.contains("ok      determinism\n"), "{stdout}");
    assert!(stdout.contains("skipped sssp (not declared)\n"), "{stdout}");
    assert!(stdout.ends_with("conformant\n"), "{stdout}");
}

#[test]
fn the_broken_copys_capacity_bug_is_reported_in_plain_words() {
    if !numpy() {
        return;
    }
    let command = example("broken_target.py");
    let out = forcefield(&["target", "check", &command]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 1);
    // The velocities were not grown with the graph: the first step after growth fails.
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert!(
        failed[0].starts_with("FAILED  step: `step 10` failed: internal error: ValueError('operands could not be broadcast together with shapes (0,3) (6,3) ')"),
        "{stdout}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("finding: target `{command}` does not conform: 1 problem(s)\n")
    );
}

#[test]
fn a_target_that_cannot_start_is_bad_input_in_one_line() {
    let out = forcefield(&["target", "check", "no-such-engine --fast"]);
    assert_exit(&out, 2);
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: cannot start target `no-such-engine`: No such file or directory (os error 2)\n"
    );
    let out = forcefield(&["target", "check", "python3 'unclosed"]);
    assert_exit(&out, 2);
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn a_target_that_fails_the_handshake_is_a_finding() {
    // Starts, but speaks something else on stdout.
    let out = forcefield(&[
        "target",
        "check",
        "sh -c 'echo hello there; cat >/dev/null'",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 1);
    assert!(
        stdout.starts_with("FAILED  handshake: protocol violation: the target wrote a line that is not a JSON reply on stdout: `hello there`"),
        "{stdout}"
    );
}
