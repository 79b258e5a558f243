//! Embedding (`forcefield_harness::embed::main`): the fixture executable, driver and worker of an
//! engine with one planted capacity bug, passes `target check` (its conformance script stays
//! below the bug), and a short campaign of it finds the bug, signed by the panic's site and the
//! op; `minimize` and `repro` of the embedded executable shrink and replay it.

use std::path::Path;
use std::process::Command;

mod common;

use common::{assert_exit, assert_success, fixture};

const SITE: &str = "panic:harness/tests/fixtures/embedded_fixture.rs:";

#[test]
fn the_embedded_engine_passes_target_check() {
    let out = fixture(&["target", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_success(&out);
    assert!(
        stdout.starts_with("target: springs-fixture 1 (capabilities: counts)"),
        "{stdout}"
    );
    assert!(stdout.contains("ok      determinism\n"), "{stdout}");
    assert!(stdout.ends_with("conformant\n"), "{stdout}");
}

#[test]
fn a_campaign_of_the_embedded_engine_finds_its_capacity_bug() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out_dir = dir.path().to_str().expect("a UTF-8 temporary path");
    let out = fixture(&[
        "run", "--time", "4s", "--seed", "1", "--jobs", "1", "--out", out_dir,
    ]);
    assert_exit(&out, 1);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json is JSON");
    let findings = summary["findings"].as_array().expect("findings");
    let signatures: Vec<&str> = findings
        .iter()
        .filter_map(|f| f["signature"].as_str())
        .collect();
    assert!(
        signatures
            .iter()
            .any(|s| s.starts_with(SITE) && s.ends_with(":step")),
        "{summary}"
    );
    let plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("target.json")).expect("target.json"),
    )
    .expect("target.json is JSON");
    assert_eq!(plan["name"], "springs-fixture");
    assert_eq!(plan["command"], "embedded");
}

#[test]
fn minimize_and_repro_of_the_embedded_engine_shrink_and_replay_the_bug() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let case = dir.path().join("case.json");
    // Ten nodes, then enough added to pass the 16 scratch slots, and steps between other ops.
    std::fs::write(
        &case,
        r#"{"format": "forcefield-case/1", "graph": {"num_nodes": 10, "edges": [{"u": 0, "v": 1, "w": 1.0}]},
            "ops": [{"op": "step", "count": 2}, {"op": "add_nodes", "count": 5},
                    {"op": "add_edges", "edges": [{"u": 2, "v": 12, "w": 1.0}]}, {"op": "step", "count": 1},
                    {"op": "add_nodes", "count": 9}, {"op": "remove_edges", "pairs": [[0, 1]]},
                    {"op": "step", "count": 3}, {"op": "read_positions"}]}"#,
    )
    .expect("the case is written");
    let case = case.to_str().expect("a UTF-8 path");
    let small = dir.path().join("small.json");
    let small_path = small.to_str().expect("a UTF-8 path");
    let out = fixture(&["minimize", case, "-o", small_path, "--max-time", "60s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_success(&out);
    assert!(stdout.starts_with(SITE), "{stdout}");
    let minimized: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&small).expect("written")).expect("JSON");
    // What the bug needs and nothing more: more than 16 nodes once the scratch is sized, a step.
    let ops = minimized["ops"].as_array().expect("ops");
    assert!(ops.len() <= 2, "{minimized}");
    assert_eq!(ops.last().map(|op| &op["op"]), Some(&"step".into()));
    assert!(
        minimized["graph"]["edges"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "{minimized}"
    );
    let out = fixture(&["repro", small_path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 1);
    assert!(stdout.contains(&format!("signature: {SITE}")), "{stdout}");
    assert!(
        stdout.contains("expectation: still open as recorded"),
        "{stdout}"
    );
    assert!(Path::new(small_path).exists());
}

/// `forcefield ci --target`: the corpus replays on the target and the campaign's findings are
/// judged; here the target is the fixture served as a process (`serve-target`), so the same gate
/// runs from `forcefield` as from the embedding executable.
#[test]
fn ci_gates_a_target_and_its_summary_totals_the_target_checks() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let regressions = dir.path().join("corpora/regressions");
    std::fs::create_dir_all(&regressions).expect("the corpus directory");
    std::fs::write(
        regressions.join("small-passes.json"),
        r#"{"format": "forcefield-case/1", "graph": {"num_nodes": 3},
            "ops": [{"op": "step", "count": 2}], "expect": {"outcome": "pass"}}"#,
    )
    .expect("the entry is written");
    let target = format!("{} serve-target", env!("CARGO_BIN_EXE_embedded-fixture"));
    let out_dir = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_forcefield"))
        .args([
            "ci",
            "--target",
            &target,
            "--corpus",
            dir.path().join("corpora").to_str().expect("UTF-8"),
            "--cases",
            "12",
            "--jobs",
            "1",
            "--out",
            out_dir.to_str().expect("UTF-8"),
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("forcefield runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corpus small-passes.json: ok"), "{stderr}");
    assert!(
        stdout.contains("cases in ") && stdout.contains("on target springs-fixture 1, seed 0"),
        "{stdout}"
    );
    assert!(stdout.contains("target checks run: "), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json is JSON");
    let totals = &summary["target"];
    assert_eq!(totals["name"], "springs-fixture 1", "{summary}");
    assert!(
        totals["checks_skipped"]
            .to_string()
            .contains("sssp-dijkstra (needs sssp)"),
        "{totals}"
    );
    // The capacity bug is a new finding of the gate (signed from the process's panic line, whose
    // path is cut to its last three components): exit 1.
    let signatures = summary["findings"].to_string();
    assert!(
        signatures.contains("panic:tests/fixtures/embedded_fixture.rs:"),
        "{signatures}"
    );
    assert_exit(&out, 1);
    assert!(
        totals["checks_run"]
            .to_string()
            .contains("positions-finite"),
        "{totals}"
    );
}
