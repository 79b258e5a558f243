/*!
`--sanitize` end to end, on the real binary: with the seed bug planted, `--sanitize checked` turns
the SIGSEGV in the sort into a `sanitizer` finding that names the kernel, the scratch buffer, the
index and the capacity, in a campaign, in a replay (isolated and in-process) and in a soak; a clean
campaign stays clean; compute-sanitizer modes say clearly why they cannot run.
*/

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{assert_exit, assert_success};

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");
const SIGNATURE: &str = "sanitizer:out-of-bounds:sort_pairs";

fn forcefield(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `index I >= capacity C` in a finding's text, as numbers.
fn index_and_capacity(summary: &str) -> (u64, u64) {
    let after = |word: &str| -> u64 {
        let rest = &summary[summary
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {summary}"))
            + word.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (after("index "), after(">= capacity "))
}

#[test]
fn the_seed_bug_is_a_sanitizer_finding_naming_the_sort_and_its_scratch_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("D");
    let out = forcefield(&[
        "run",
        "--backend",
        "cpu",
        "--sanitize",
        "checked",
        "--fault",
        "sort-count-unclamped",
        "--cases",
        "16",
        "--seed",
        "1",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_exit(&out, 1);
    let summary = json(&out_dir.join("summary.json"));
    let findings = summary["findings"].as_array().unwrap();
    assert_eq!(
        findings.len(),
        1,
        "one bug, one finding, no crash: {summary}"
    );
    let finding = &findings[0];
    let signature = finding["signature"].as_str().unwrap();
    assert!(signature.starts_with(SIGNATURE), "{summary}");
    let line = finding["summary"].as_str().unwrap();
    assert!(
        line.contains("`sorted_keys`") || line.contains("`sorted_nodes`"),
        "{line}"
    );
    let (index, capacity) = index_and_capacity(line);
    // The scratch kept the capacity of before the growth (0 when the engine started empty).
    assert!(index >= capacity, "{line}");

    // The structured record is in the report, beside the case that shows it.
    let fdir = out_dir
        .join("findings")
        .join("sanitizer-out-of-bounds-sort_pairs");
    let report = json(&fdir.join("report.json"));
    let record = &report["execution"]["outcome"]["payload"]["sanitizer"];
    assert_eq!(record["kernel"], "sort_pairs", "{report}");
    assert_eq!(record["access"], "write", "{report}");
    assert_eq!(record["index"].as_u64(), Some(index));
    assert_eq!(record["capacity"].as_u64(), Some(capacity));

    // The minimized case replays to the same finding, isolated and in this process (where a
    // SIGSEGV would have killed the driver), and without the sanitizer it is the old crash.
    let minimized = fdir.join("minimized.json");
    let minimized = minimized.to_str().unwrap();
    for extra in [&[][..], &["--in-process"][..]] {
        let mut args = vec!["repro", minimized, "--sanitize", "checked"];
        args.extend_from_slice(extra);
        let repro = forcefield(&args);
        assert_exit(&repro, 1);
        assert!(
            text(&repro.stdout).contains(&format!("signature: {SIGNATURE}")),
            "{args:?}: {}",
            text(&repro.stdout)
        );
    }
    let plain = forcefield(&["repro", minimized]);
    assert!(
        text(&plain.stdout).contains("signature: signal:SIGSEGV:sort_pairs"),
        "{}",
        text(&plain.stdout)
    );
}

#[test]
fn a_clean_campaign_has_no_sanitizer_findings() {
    // A generous watchdog: a debug build is slow, and only false sanitizer alarms are under test.
    let out = forcefield(&[
        "run",
        "--backend",
        "cpu",
        "--sanitize",
        "checked",
        "--cases",
        "24",
        "--seed",
        "3",
        "--case-timeout",
        "300s",
        "--no-minimize",
    ]);
    assert_success(&out);
}

#[test]
fn a_soak_under_the_checked_mode_records_sanitizer_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["soak", "--duration", "3s", "--sanitize", "checked"])
        .args(["--fault", "sort-count-unclamped", "--seed", "1", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let r = json(&dir.path().join("soak.json"));
    let signatures: Vec<&str> = r["crashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["signature"].as_str().unwrap())
        .collect();
    assert!(signatures.contains(&SIGNATURE), "{r}");
    // The point: the bug no longer kills a worker. (A slow machine may add a hang of its own.)
    assert!(signatures.iter().all(|s| !s.starts_with("signal:")), "{r}");
}

#[test]
fn compute_sanitizer_modes_explain_what_they_need() {
    // On the CPU backend a compute-sanitizer tool is a usage error.
    let out = forcefield(&[
        "run",
        "--backend",
        "cpu",
        "--sanitize",
        "memcheck",
        "--cases",
        "1",
    ]);
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--backend cuda") && stderr.contains("--sanitize checked"),
        "{stderr}"
    );
    // Unknown modes are refused by the parser.
    let out = forcefield(&["run", "--sanitize", "bogus", "--cases", "1"]);
    assert_exit(&out, 2);
    for command in ["repro", "ci", "soak"] {
        let help = forcefield(&[command, "--help"]);
        assert!(
            text(&help.stdout).contains("--sanitize"),
            "{command} --help"
        );
    }
}
