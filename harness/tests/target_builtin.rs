//! Forcefield's own engine behind the `Target` trait (`--target builtin`): the generic target
//! checks run clean on it, every one of them (it declares every capability), and a planted fault
//! is found through them, as any other engine's defect would be.

mod common;

use common::forcefield;

fn campaign(extra: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out_dir = dir.path().to_str().expect("a UTF-8 temporary path");
    let mut args = vec![
        "run", "--target", "builtin", "--seed", "3", "--jobs", "1", "--out", out_dir,
    ];
    args.extend_from_slice(extra);
    let out = forcefield(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = std::fs::read_to_string(dir.path().join("summary.json")).unwrap_or_else(|e| {
        panic!(
            "summary.json: {e}; {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code(),
        stdout,
        serde_json::from_str(&summary).expect("summary.json is JSON"),
    )
}

#[test]
fn the_generic_checks_run_clean_on_our_engine() {
    let (code, stdout, summary) = campaign(&["--cases", "40"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(summary["cases"], 40, "{summary}");
    assert_eq!(summary["findings"], serde_json::json!([]));
    let target = &summary["target"];
    assert_eq!(target["checks_skipped"], serde_json::json!([]), "{target}");
    let ran = target["checks_run"].to_string();
    for check in [
        "positions-finite",
        "positions-count",
        "determinism",
        "sssp-dijkstra",
        "restart-equivalence",
        "counts-consistent",
        // On a second engine growing otherwise, as without `--target`.
        "capacity-invariance",
    ] {
        assert!(ran.contains(check), "{check} did not run: {target}");
    }
    assert!(stdout.contains("on target forcefield "), "{stdout}");
}

#[test]
fn a_planted_fault_is_found_through_the_trait() {
    let (code, stdout, summary) = campaign(&["--cases", "60", "--fault", "no-softening"]);
    assert_eq!(code, Some(1), "{stdout}");
    let signatures = summary["findings"].to_string();
    assert!(
        signatures.contains("invariant:positions-finite:"),
        "{signatures}"
    );
}

/// The checks of the grid, CSR, device-memory and buffers capabilities: a leak on resize is
/// device memory that no buffer's allocation holds (`memory-accounting`, at once, as the engine
/// executor signs it), a stale sort is a sort that is no permutation (`sort-permutation`, as
/// there).
#[test]
fn the_capability_checks_find_a_leak_and_a_stale_sort() {
    for (fault, signature) in [
        ("leak-on-resize", "invariant:memory-accounting:"),
        // The engine executor's grid oracles by their names, over the grid read-back.
        ("sort-values-stale", "invariant:sort-permutation:"),
        // The checkpoint holds the parameters set: an engine rebuilt from it steps otherwise
        // than the stale ones the kernels kept (the engine executor's restart check).
        ("params-not-uploaded", "invariant:restart-equivalence:step"),
        // The reference model over the velocities and attributes read-backs, and the physics
        // reference over a checkpoint and the grid's geometry: what the engine executor finds.
        (
            "remove-nodes-velocities-stale",
            "invariant:model-velocities:remove_nodes",
        ),
        ("repulsion-overscaled", "invariant:physics:step"),
    ] {
        let (code, stdout, summary) =
            campaign(&["--cases", "40", "--no-minimize", "--fault", fault]);
        assert_eq!(code, Some(1), "{fault}: {stdout}");
        let signatures = summary["findings"].to_string();
        assert!(signatures.contains(signature), "{fault}: {signatures}");
    }
    let (_, _, summary) = campaign(&["--cases", "40"]);
    let ran = summary["target"]["checks_run"].to_string();
    for check in [
        "grid-stage",
        "csr-edges",
        "device-memory",
        "counts-within-capacity",
        "memory-accounting",
        "model",
        "physics",
    ] {
        assert!(ran.contains(check), "{check} did not run: {ran}");
    }
}

/// A crash of our engine behind the trait is signed by the kernel it died in, as without
/// `--target`: the builtin target's backends write the running kernel into the breadcrumbs.
#[test]
fn a_crash_is_signed_by_its_kernel() {
    let (code, stdout, summary) = campaign(&[
        "--cases",
        "60",
        "--no-minimize",
        "--fault",
        "sort-count-unclamped",
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    let signatures = summary["findings"].to_string();
    assert!(
        signatures.contains("signal:SIGSEGV:sort_pairs"),
        "{signatures}"
    );
}

/// Injected environment faults through the trait: a clean engine tolerates them (an op a fault
/// failed changes nothing and succeeds when sent again, in both growth policies' runs), and a
/// stale capacity after a failed resize is signed as the engine executor signs it.
#[test]
fn injected_faults_are_tolerated_and_a_stale_resize_is_not() {
    let (code, stdout, summary) = campaign(&["--cases", "120", "--inject"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(summary["findings"], serde_json::json!([]));
    let (code, stdout, summary) = campaign(&[
        "--cases",
        "40",
        "--inject",
        "--no-minimize",
        "--fault",
        "resize-failure-stale",
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    let signatures = summary["findings"].to_string();
    assert!(
        signatures.contains("fault-not-tolerated:state-changed:"),
        "{signatures}"
    );
}
