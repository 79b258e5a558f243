/*!
End-to-end tests of `forcefield bench record | compare | calibrate | report` on synthetic criterion
directories written into temporary directories: exit codes, the history file, the markdown table,
the A/A calibration, the interleaved re-run of unsure results (through a stand-in benchmark
executable) and the trend report. No benchmark runs here; every test takes well under a second
apart from process start-up.
*/

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use forcefield_harness::bench::criterion::write_result;

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn forcefield(dir: &Path, args: &[&str], faults: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("CRITERION_HOME");
    match faults {
        Some(f) => command.env("FORCEFIELD_FAULTS", f),
        None => command.env_remove("FORCEFIELD_FAULTS"),
    };
    let out = command.output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Samples around `center` ns with a deterministic spread of about 3%.
fn samples(center: f64, n: usize, phase: f64) -> Vec<f64> {
    (0..n)
        .map(|i| center * (1.0 + 0.03 * (i as f64 * 2.3 + phase).sin()))
        .collect()
}

/// A criterion directory `name` under `root` holding `benches` (id, per-iteration samples),
/// with the modification times of run number `run` (a later run is newer).
fn criterion_dir(root: &Path, name: &str, run: u64, benches: &[(&str, Vec<f64>)]) -> PathBuf {
    let dir = root.join(name);
    for (id, s) in benches {
        let iters = vec![1.0; s.len()];
        let new_dir = write_result(&dir, id, &iters, s).unwrap();
        // Each run is an hour after the previous one, whatever the clock did while writing.
        let when = SystemTime::now() - Duration::from_secs(3600 * (10 - run));
        std::fs::File::options()
            .write(true)
            .open(new_dir.join("sample.json"))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn record(dir: &Path, crit: &Path, extra: &[&str], faults: Option<&str>) -> Output {
    let mut args = vec![
        "bench",
        "record",
        "--history",
        "h.jsonl",
        "--criterion-dir",
        s(crit),
        "--no-quality",
        "--gpu",
        "none",
    ];
    args.extend_from_slice(extra);
    forcefield(dir, &args, faults)
}

fn history_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("h.jsonl"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_a_runs_pass_and_a_twenty_percent_slowdown_fails_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run1 = criterion_dir(
        dir,
        "run1",
        1,
        &[
            ("cpu_step/10k", samples(1e6, 30, 0.0)),
            ("sssp/10k", samples(5e5, 30, 0.0)),
        ],
    );
    let out = record(dir, &run1, &["--label", "clean"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("2 benchmarks"), "{}", out.stdout);
    assert!(out.stdout.contains("no GPU"), "{}", out.stdout);

    // The same results again are stale: nothing to record, bad input.
    let out = record(dir, &run1, &[], None);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("already recorded"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(history_lines(dir), 1);

    // A second run of the same build: no regression.
    let run2 = criterion_dir(
        dir,
        "run2",
        2,
        &[
            ("cpu_step/10k", samples(1.01e6, 30, 1.0)),
            ("sssp/10k", samples(4.98e5, 30, 1.0)),
        ],
    );
    assert_eq!(record(dir, &run2, &[], None).code, 0);
    let out = forcefield(dir, &["bench", "compare", "--history", "h.jsonl"], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("| cpu_step/10k |"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("| same |").count(), 2, "{}", out.stdout);
    assert!(out.stdout.contains("Result: no regression."));

    // The step 20% slower with a planted fault, the SSSP unchanged: exit 1, the step flagged.
    let run3 = criterion_dir(
        dir,
        "run3",
        3,
        &[
            ("cpu_step/10k", samples(1.2e6, 30, 2.0)),
            ("sssp/10k", samples(5.01e5, 30, 2.0)),
        ],
    );
    let out = record(dir, &run3, &["--label", "slow"], Some("slow-force-pass"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("faults slow-force-pass"),
        "{}",
        out.stdout
    );
    let md = dir.join("compare.md");
    let out = forcefield(
        dir,
        &[
            "bench",
            "compare",
            "--history",
            "h.jsonl",
            "--baseline",
            "clean",
            "--out",
            s(&md),
        ],
        None,
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("| cpu_step/10k |"))
        .unwrap();
    assert!(
        line.ends_with("| **slower** |") && line.contains("| +19.8% |"),
        "{line}"
    );
    assert!(out.stdout.contains("| sssp/10k |") && out.stdout.contains("| same |"));
    assert!(
        out.stdout.contains("planted faults differ"),
        "{}",
        out.stdout
    );
    assert!(out
        .stderr
        .starts_with("finding: 1 regression(s): cpu_step/10k slower"));
    assert_eq!(std::fs::read_to_string(&md).unwrap(), out.stdout);
}

#[test]
fn calibration_reports_false_alarms_and_writes_thresholds_that_compare_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Four A/A runs whose medians drift by up to 6%: more than the default 5% threshold.
    for (run, center) in [(1, 1.0e6), (2, 1.06e6), (3, 1.02e6), (4, 1.04e6)] {
        let crit = criterion_dir(
            dir,
            &format!("run{run}"),
            run,
            &[("b", samples(center, 30, run as f64))],
        );
        assert_eq!(record(dir, &crit, &[], None).code, 0);
    }
    // Uncalibrated, the 6% drift between the first two A/A entries is a false "slower".
    let out = forcefield(
        dir,
        &[
            "bench",
            "compare",
            "--history",
            "h.jsonl",
            "--current",
            "1",
            "--baseline",
            "0",
        ],
        None,
    );
    assert_eq!(
        out.code, 1,
        "the default threshold is below this machine's noise"
    );

    let out = forcefield(dir, &["bench", "calibrate", "--history", "h.jsonl"], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Calibration on 4 A/A entries"),
        "{}",
        out.stdout
    );
    // Out of sample, the first pair (6% apart) is judged with the threshold of the only pair that
    // shares no entry with it (1.02 -> 1.04, 2%): one false alarm of three, honestly reported.
    assert!(
        out.stdout.contains("False alarms: 1 of 3"),
        "{}",
        out.stdout
    );
    let thresholds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("h.thresholds.json")).unwrap())
            .unwrap();
    let t = thresholds["benchmarks"]["b"]["threshold"].as_f64().unwrap();
    assert!(t > 0.08 && t < 0.1, "1.5 x the 6% drift: {t}");

    // Calibrated, the same comparison is within noise.
    let out = forcefield(
        dir,
        &[
            "bench",
            "compare",
            "--history",
            "h.jsonl",
            "--current",
            "1",
            "--baseline",
            "0",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(!out.stdout.contains("(default)"), "{}", out.stdout);
}

/// A stand-in criterion executable: lists one benchmark and, when run, writes its samples into
/// `$CRITERION_HOME` — 100 ns, or 150 ns when `FORCEFIELD_FAULTS` is set.
fn fake_bench_exe(dir: &Path) -> PathBuf {
    let path = dir.join("fake_bench-0123abcd");
    let script = r#"#!/bin/sh
case "$*" in
  *--list*) echo "g/u: benchmark"; exit 0 ;;
esac
t=100
if [ -n "$FORCEFIELD_FAULTS" ]; then t=150; fi
d="$CRITERION_HOME/g/u/new"
mkdir -p "$d"
echo '{"group_id":"g","function_id":"u","value_str":null,"throughput":null,"full_id":"g/u","directory_name":"g/u","title":"g/u"}' > "$d/benchmark.json"
echo "{\"sampling_mode\":\"Flat\",\"iters\":[1,1,1,1,1,1,1,1,1,1],\"times\":[$t,$((t+1)),$((t+2)),$((t-1)),$((t-2)),$t,$((t+3)),$((t-3)),$t,$((t+1))]}" > "$d/sample.json"
"#;
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn unsure_results_are_re_run_interleaved_with_the_kept_executables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exe = fake_bench_exe(dir);
    // Three wildly spread samples per run: the recorded samples cannot decide.
    let run1 = criterion_dir(dir, "run1", 1, &[("g/u", vec![50.0, 100.0, 200.0])]);
    let out = record(dir, &run1, &["--exe", s(&exe), "--label", "clean"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run2 = criterion_dir(dir, "run2", 2, &[("g/u", vec![60.0, 130.0, 240.0])]);
    let out = record(dir, &run2, &["--exe", s(&exe)], Some("slow-force-pass"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The executable is kept beside the history, so a rebuild cannot take it away.
    std::fs::remove_file(&exe).unwrap();
    let kept: Vec<_> = std::fs::read_dir(dir.join("h.exes")).unwrap().collect();
    assert_eq!(kept.len(), 1);

    let out = forcefield(
        dir,
        &["bench", "compare", "--history", "h.jsonl", "--no-rerun"],
        None,
    );
    assert_eq!(out.code, 0, "unsure is not a regression: {}", out.stdout);
    assert!(out.stdout.contains("| unsure |"), "{}", out.stdout);
    assert!(
        out.stdout.contains("not re-run: --no-rerun"),
        "{}",
        out.stdout
    );

    // Re-run: baseline without faults (100 ns), current with its recorded fault (150 ns).
    let out = forcefield(dir, &["bench", "compare", "--history", "h.jsonl"], None);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("**slower** (re-run)"), "{}", out.stdout);
    assert!(out
        .stdout
        .contains("re-run interleaved, 2 round(s) per build: slower"));
}

#[test]
fn the_report_draws_every_benchmark_and_marks_the_change_point() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (run, center) in [(1, 1.0e6), (2, 1.01e6), (3, 1.5e6)] {
        let crit = criterion_dir(
            dir,
            &format!("run{run}"),
            run,
            &[
                ("cpu_step/10k", samples(center, 30, run as f64)),
                ("sssp/10k", samples(1e5, 30, run as f64)),
            ],
        );
        assert_eq!(record(dir, &crit, &[], None).code, 0);
    }
    let out = forcefield(
        dir,
        &["bench", "report", "--history", "h.jsonl", "--out", "rep"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("2 charts, 1 change points"),
        "{}",
        out.stdout
    );
    let step = std::fs::read_to_string(dir.join("rep/charts/m0-cpu_step_10k.svg")).unwrap();
    assert_eq!(step.matches("class=\"point\"").count(), 3);
    assert_eq!(step.matches("class=\"change-point\"").count(), 1);
    assert!(step.contains("slower"));
    let sssp = std::fs::read_to_string(dir.join("rep/charts/m0-sssp_10k.svg")).unwrap();
    assert_eq!(sssp.matches("class=\"change-point\"").count(), 0);
    let html = std::fs::read_to_string(dir.join("rep/index.html")).unwrap();
    assert!(html.contains("charts/m0-cpu_step_10k.svg") && html.contains("Change points"));
    let md = std::fs::read_to_string(dir.join("rep/index.md")).unwrap();
    assert!(
        md.contains("| cpu_step/10k |") && md.contains("slower"),
        "{md}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_two() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = record(dir, &dir.join("missing"), &[], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: cannot read criterion results"),
        "{}",
        out.stderr
    );

    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = record(dir, &empty, &[], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no benchmark results"),
        "{}",
        out.stderr
    );

    let crit = criterion_dir(dir, "run1", 1, &[("b", samples(1e6, 10, 0.0))]);
    let out = record(dir, &crit, &[], Some("no-such-fault"));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("unknown fault `no-such-fault`"),
        "{}",
        out.stderr
    );

    std::fs::write(dir.join("h.jsonl"), "not json\n").unwrap();
    let out = forcefield(dir, &["bench", "compare", "--history", "h.jsonl"], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("h.jsonl:1: not a benchmark history entry"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);

    std::fs::remove_file(dir.join("h.jsonl")).unwrap();
    assert_eq!(record(dir, &crit, &[], None).code, 0);
    let out = forcefield(dir, &["bench", "compare", "--history", "h.jsonl"], None);
    assert_eq!(out.code, 0, "a single entry has nothing to compare with");
    assert!(
        out.stdout.contains("No comparable baseline"),
        "{}",
        out.stdout
    );
    let out = forcefield(
        dir,
        &[
            "bench",
            "compare",
            "--history",
            "h.jsonl",
            "--baseline",
            "nope",
        ],
        None,
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no entry is named `nope`"),
        "{}",
        out.stderr
    );
}
