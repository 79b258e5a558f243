/*!
The generic checks of the oracle — `memory-accounting`, `restart-equivalence`,
`differential` — and the engine's grid-cell cap in case files: each check fails on a hand-made broken
input and passes on a good one, and tiny cases with a planted fault are caught by the check that is
meant to catch it (the checks themselves never look at which fault is on).
*/

use std::time::Duration;

use forcefield_harness::case::Case;
use forcefield_harness::hunt::campaign::run_isolated;
use forcefield_harness::isolate::{SupervisorConfig, WorkerCommand, WorkerSlot};
use forcefield_harness::worker::execute::{execute, CaseResult, ExecOptions};
use forcefield_harness::worker::oracle::{
    check_differential, check_memory_accounting, check_restart_equivalence, checks,
    DIFFERENTIAL_TOLERANCE,
};

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

#[test]
fn memory_accounting_wants_every_byte_owned() {
    check_memory_accounting(4096, 4096).unwrap();
    let e = check_memory_accounting(5000, 4096).unwrap_err();
    assert_eq!(e.check, checks::MEMORY_ACCOUNTING);
    assert!(e.detail.contains("904 bytes leaked"), "{e}");
    assert!(check_memory_accounting(4000, 4096).is_err());
}

#[test]
fn restart_equivalence_is_bitwise_on_the_cpu_and_tolerant_elsewhere() {
    let pos = vec![[1.0f32, 2.0, 3.0], [-4.0, 5.0, 0.0]];
    let vel = vec![[0.5f32, 0.0, 0.0], [0.0, 0.0, -0.25]];
    check_restart_equivalence((&pos, &vel), (&pos, &vel), true).unwrap();
    let mut near = pos.clone();
    near[1][1] = f32::from_bits(5.0f32.to_bits() + 1);
    let e = check_restart_equivalence((&pos, &vel), (&near, &vel), true).unwrap_err();
    assert_eq!(e.check, checks::RESTART_EQUIVALENCE);
    assert!(e.detail.starts_with("node 1 position axis 1"), "{e}");
    check_restart_equivalence((&pos, &vel), (&near, &vel), false).unwrap();
    let mut slower = vel.clone();
    slower[0][0] = 0.4;
    let e = check_restart_equivalence((&pos, &vel), (&pos, &slower), false).unwrap_err();
    assert!(e.detail.starts_with("node 0 velocity axis 0"), "{e}");
    assert!(check_restart_equivalence((&pos, &vel), (&pos[..1], &vel[..1]), true).is_err());
}

#[test]
fn differential_allows_the_stated_tolerance_and_no_more() {
    let cpu = vec![[100.0f32, -1.0, 0.0]];
    let inside = vec![[100.0 + 100.0 * DIFFERENTIAL_TOLERANCE, -1.0, 0.0]];
    check_differential(&cpu, &inside).unwrap();
    let outside = vec![[100.0f32, -1.0, 0.01]];
    let e = check_differential(&cpu, &outside).unwrap_err();
    assert_eq!(e.check, checks::DIFFERENTIAL);
    assert!(e.detail.starts_with("node 0 axis 2"), "{e}");
    assert!(check_differential(&cpu, &[]).is_err());
}

fn run(text: &str) -> CaseResult {
    let case = Case::from_json(text).unwrap_or_else(|e| panic!("{e}"));
    execute(&case, &ExecOptions::default(), &mut |_| {})
}

/// `(check, op)` of an invariant violation.
fn violated(r: &CaseResult) -> (String, String) {
    match r {
        CaseResult::InvariantViolation { check, op, .. } => (check.clone(), op.clone()),
        other => panic!("expected an invariant violation, got: {other}"),
    }
}

fn with_fault(fault: &str, body: &str) -> String {
    format!(r#"{{"format":"forcefield-case/1","faults":[{fault}],{body}}}"#)
}

#[test]
fn restart_equivalence_catches_params_that_never_reach_the_kernels() {
    let body = r#""graph":{"num_nodes":6,"edges":[{"u":0,"v":1,"w":1},{"u":1,"v":2,"w":1},{"u":3,"v":4,"w":1}]},
        "ops":[{"op":"step","count":2},{"op":"set_params","params":{"repel_k":200.0,"spring_k":3.0}},
               {"op":"step","count":3}]"#;
    assert!(run(&with_fault("", body)).is_pass());
    let r = run(&with_fault(r#""params-not-uploaded""#, body));
    assert_eq!(
        violated(&r),
        (checks::RESTART_EQUIVALENCE.to_string(), "step".to_string()),
        "{r}"
    );
}

#[test]
fn memory_accounting_catches_buffers_leaked_on_resize() {
    let body = r#""graph":{"num_nodes":4,"edges":[{"u":0,"v":1,"w":1}]},
        "ops":[{"op":"add_nodes","count":5},{"op":"step","count":1}]"#;
    assert!(run(&with_fault("", body)).is_pass());
    let r = run(&with_fault(r#""leak-on-resize""#, body));
    assert_eq!(
        violated(&r),
        (
            checks::MEMORY_ACCOUNTING.to_string(),
            "add_nodes".to_string()
        ),
        "{r}"
    );
}

#[test]
fn the_sort_checks_catch_stale_sort_values() {
    // Nodes placed in descending cells, so the sorted order is not the identity.
    let body = r#""graph":{"num_nodes":5,"edges":[],
            "positions":[[8,0,0],[6,0,0],[4,0,0],[2,0,0],[0,0,0]]},
        "params":{"grid_cell_size":1.0},
        "ops":[{"op":"step","count":1},{"op":"step","count":1},{"op":"step","count":1}]"#;
    assert!(run(&with_fault("", body)).is_pass());
    let r = run(&with_fault(r#""sort-values-stale""#, body));
    let (check, op) = violated(&r);
    assert_eq!(op, "step");
    assert!(
        check == checks::SORT_PAIRS || check == checks::SORT_PERMUTATION,
        "{r}"
    );
}

#[test]
fn a_small_grid_cap_is_respected_by_the_clean_engine_and_exposes_an_unclamped_grid() {
    let body = r#""engine":{"max_grid_cells":8},
        "graph":{"num_nodes":60,"edges":[{"u":0,"v":1,"w":1}]},
        "params":{"grid_cell_size":0.5},
        "ops":[{"op":"step","count":2},{"op":"add_nodes","count":30},{"op":"step","count":2}]"#;
    assert!(run(&with_fault("", body)).is_pass());
    // The defect indexes cell buffers of 8 cells with the uncapped dimensions: on the guarded CPU
    // memory the worker dies of it.
    let case = Case::from_json(&with_fault(r#""grid-cap-unclamped""#, body)).unwrap();
    let mut slot = WorkerSlot::new(
        WorkerCommand::new(BIN).arg("worker"),
        SupervisorConfig::default(),
    );
    let (verdict, _) = run_isolated(&mut slot, &case, true, Duration::from_secs(60));
    slot.shutdown();
    let signature = verdict.signature().map(ToString::to_string);
    assert!(
        signature
            .as_deref()
            .is_some_and(|s| s.starts_with("signal:SIGSEGV:")),
        "{verdict:?}"
    );
}
