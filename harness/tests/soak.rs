//! `forcefield soak` end to end: with the seed bug planted, repeated crashes under one signature and
//! flight-recorder cases that replay; without it, none.

use std::process::Command;

fn forcefield() -> Command {
    Command::new(env!("CARGO_BIN_EXE_forcefield"))
}

#[test]
fn the_seed_bug_crashes_repeatedly_with_one_signature_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let out = forcefield()
        .args([
            "soak",
            "--duration",
            "3s",
            "--fault",
            "sort-count-unclamped",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("soak.json")).unwrap())
            .unwrap();
    let crashes = report["crashes"].as_array().unwrap();
    assert_eq!(crashes.len(), 1, "{report}");
    assert_eq!(crashes[0]["signature"], "signal:SIGSEGV:sort_pairs");
    assert!(crashes[0]["count"].as_u64().unwrap() >= 2, "{report}");
    let saved = crashes[0]["saved"][0].as_str().unwrap();
    let repro = forcefield().args(["repro", saved]).output().unwrap();
    let stdout = String::from_utf8_lossy(&repro.stdout);
    assert!(
        stdout.contains("signature: signal:SIGSEGV:sort_pairs"),
        "{stdout}"
    );
}

#[test]
fn the_clean_engine_survives_a_soak() {
    let dir = tempfile::tempdir().unwrap();
    let out = forcefield()
        .args(["soak", "--duration", "3s", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("soak.json")).unwrap())
            .unwrap();
    assert_eq!(report["crashes"].as_array().unwrap().len(), 0);
    assert!(report["steps"].as_u64().unwrap() > 0);
}
