/*!
`forcefield selftest` end to end, on the real binary.

The snapshot holds the deterministic columns of the self-test's table (fault, detected, outcome
class, minimized size): with case-count budgets and a fixed seed, each fault's first finding in
case order and its minimization do not depend on timing or on the number of workers (except for a
hang, a verdict of the wall-clock watchdog: its minimized size is left out). A change that weakens
the harness (a check dropped, a generator narrowed, minimization made worse) changes this snapshot,
so it shows up in review. The snapshot is of the release build, which is what CI tests.
*/

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{assert_exit, assert_success};

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

/// Cases per fault: every planted fault shows within this many cases of seed [`SEED`] (the table's
/// "cases run" column says how many each needed).
const CASES: &str = "60";
/// Cases of the clean engine's campaign.
const CLEAN_CASES: &str = "60";
const SEED: &str = "1";

fn selftest(json: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "selftest",
            "--backend",
            "cpu",
            "--seed",
            SEED,
            "--jobs",
            "2",
        ])
        // Minimization reaches its fixpoint in well under a second for every finding but a hang,
        // whose candidates cost a watchdog each: this limit binds only there.
        .args(["--minimize-time", "20s", "--json"])
        .arg(json)
        .args(extra)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The deterministic columns of the report's rows, one line each.
fn deterministic_table(report: &serde_json::Value) -> String {
    let mut lines =
        vec!["fault | detected | outcome class | minimized (nodes, edges, ops)".to_string()];
    for row in report["faults"].as_array().unwrap() {
        let class = row["signature"]
            .as_str()
            .map_or("-", |s| s.split(':').next().unwrap());
        let minimized = match &row["minimization"]["after"] {
            serde_json::Value::Null => "-".to_string(),
            // A hang is a verdict of the wall-clock watchdog: which case hangs first, and which
            // candidates still hang while minimizing, follow the machine's timing.
            _ if class == "hang" => "(timing-dependent)".to_string(),
            m => format!("{}, {}, {}", m["nodes"], m["edges"], m["ops"]),
        };
        lines.push(format!(
            "{} | {} | {class} | {minimized}",
            row["fault"].as_str().unwrap(),
            if row["detected"].as_bool().unwrap() {
                "yes"
            } else {
                "no"
            }
        ));
    }
    for skipped in report["skipped"].as_array().unwrap() {
        lines.push(format!(
            "{} | skipped: {} | - | -",
            skipped["fault"].as_str().unwrap(),
            skipped["reason"].as_str().unwrap()
        ));
    }
    lines.join("\n")
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "the snapshot is of the release build that CI tests: a debug build's overflow checks turn some crashes into panics"
)]
fn every_planted_fault_is_detected_and_minimized_and_the_clean_engine_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("selftest.json");
    let out = selftest(&json, &["--cases", CASES, "--clean-cases", CLEAN_CASES]);
    let stdout = text(&out.stdout);
    assert_success(&out);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["format"], "forcefield-selftest/1");

    // Every crash fault of the catalog that exists on the CPU is hunted and detected; the others
    // are listed as skipped with why.
    let rows = report["faults"].as_array().unwrap();
    let expected: Vec<&str> = forcefield::Fault::ALL
        .iter()
        .filter(|f| f.kind() == forcefield::FaultKind::Crash && f.applies_to("cpu"))
        .map(|f| f.name())
        .collect();
    let hunted: Vec<&str> = rows.iter().map(|r| r["fault"].as_str().unwrap()).collect();
    assert_eq!(hunted, expected);
    for row in rows {
        assert_eq!(row["detected"], true, "{row}");
        // A reproducer: minimized, no larger than the case that showed the fault.
        let before = &row["minimization"]["before"];
        let after = &row["minimization"]["after"];
        for key in ["nodes", "edges", "ops"] {
            assert!(
                after[key].as_u64().unwrap() <= before[key].as_u64().unwrap(),
                "{row}"
            );
        }
        let minimized = &row["minimized"];
        assert_eq!(minimized["faults"][0], row["fault"], "{row}");
    }
    let clean = &report["clean"];
    assert_eq!(clean["cases"].as_u64(), Some(60), "{clean}");
    assert_eq!(clean["findings"].as_array().unwrap().len(), 0, "{clean}");

    // The markdown table on stdout has a row per catalog fault.
    for f in forcefield::Fault::ALL {
        assert!(stdout.contains(&format!("| {} |", f.name())), "{stdout}");
    }
    insta::assert_snapshot!(deterministic_table(&report));
}

#[test]
fn a_fault_that_does_not_exist_on_the_backend_is_refused_as_input() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("selftest.json");
    for fault in ["race-integrate", "slow-force-pass"] {
        let out = selftest(&json, &["--fault", fault, "--cases", "1"]);
        assert_exit(&out, 2);
        assert!(text(&out.stderr).contains(fault), "{}", text(&out.stderr));
    }
    assert!(!json.exists());
}

#[test]
fn a_missed_fault_fails_with_one_line_naming_it() {
    // No case can show anything: the fault is missed, and the table and the JSON are still
    // written.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("selftest.json");
    let out = selftest(
        &json,
        &[
            "--fault",
            "leak-on-resize",
            "--cases",
            "0",
            "--clean-cases",
            "1",
        ],
    );
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.contains("not detected") && last.contains("leak-on-resize"),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("| leak-on-resize | **no** |"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["faults"][0]["detected"], false);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "compares with the snapshot of the release build"
)]
fn several_hunts_at_once_give_the_rows_of_one_at_a_time_in_catalog_order() {
    // Hunts running side by side, the clean campaign beside them: each row is still its fault's
    // own (the first finding in case order and its minimization), in the catalog's order, equal
    // to the one-at-a-time snapshot's row.
    let faults = [
        "leak-on-resize",
        "no-softening",
        "cell-bounds-over-cells",
        "sort-values-stale",
    ];
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("selftest.json");
    let mut args = vec!["--hunts", "4", "--cases", CASES, "--clean-cases", "5"];
    for f in faults {
        args.extend(["--fault", f]);
    }
    let out = selftest(&json, &args);
    assert_success(&out);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["clean"]["cases"].as_u64(), Some(5));
    let table = deterministic_table(&report);
    let rows: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|l| !l.contains("skipped"))
        .collect();

    let snapshot = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/snapshots/selftest__every_planted_fault_is_detected_and_minimized_and_the_clean_engine_is_clean.snap"
    ))
    .unwrap();
    let expected: Vec<&str> = snapshot
        .lines()
        .filter(|l| faults.iter().any(|f| l.starts_with(&format!("{f} |"))))
        .collect();
    assert_eq!(expected.len(), faults.len(), "{snapshot}");
    assert_eq!(rows, expected, "{table}");
    // Each hunt names its fault on its progress lines, since they interleave.
    let stderr = text(&out.stderr);
    for f in faults {
        assert!(stderr.contains(&format!("{f}: detected after")), "{stderr}");
    }
}
