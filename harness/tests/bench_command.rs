/*!
End-to-end tests of `forcefield bench record | compare | calibrate | report | count` on synthetic
criterion directories and counts files written into temporary directories: exit codes, the history
file, the markdown table, the count gate beside the time gate, the plain flow without calibration,
the A/A calibration, the interleaved re-run of unsure results (through a stand-in benchmark
executable), the trend report, Nsight Compute's CSV, and one real Callgrind run of a tiny counting
program (skipped with a line when valgrind is not installed). Every test takes well under a second
apart from process start-up, the Callgrind one a few seconds.
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
    // Uncalibrated, the 20% slower time is reported and not gated: the plain flow cannot fail on
    // noise. Counts beside it carry the gate: the step's instructions 3% up fails it.
    let counts = counts_file(
        dir,
        "slow-counts.json",
        100,
        &[("cpu_step/10k", 1_030_000), ("sssp/10k", 500_000)],
    );
    let out = record(
        dir,
        &run3,
        &["--label", "slow", "--counts", s(&counts)],
        Some("slow-force-pass"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("faults slow-force-pass") && out.stdout.contains("(2 with counts)"),
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
            "clean",
        ],
        None,
    );
    assert_eq!(out.code, 0, "no counts in the baseline: {}", out.stdout);
    assert!(
        out.stdout
            .contains("+19.8% | <0.001 | 5.0% (default) | slower (not gated: uncalibrated) |"),
        "{}",
        out.stdout
    );
    // A baseline with counts of the same tool: the count gate judges.
    let run4 = criterion_dir(
        dir,
        "run4",
        4,
        &[
            ("cpu_step/10k", samples(1.0e6, 30, 3.0)),
            ("sssp/10k", samples(5.0e5, 30, 3.0)),
        ],
    );
    let counts = counts_file(
        dir,
        "clean-counts.json",
        101,
        &[("cpu_step/10k", 1_000_000), ("sssp/10k", 500_000)],
    );
    let out = record(
        dir,
        &run4,
        &["--label", "clean2", "--counts", s(&counts)],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let md = dir.join("compare.md");
    let out = forcefield(
        dir,
        &[
            "bench",
            "compare",
            "--history",
            "h.jsonl",
            "--baseline",
            "clean2",
            "--current",
            "slow",
            "--markdown",
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
        line.ends_with("| 1,000,000 | 1,030,000 | +3.0% | **slower** (±0.5%) |"),
        "{line}"
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("| sssp/10k |"))
        .unwrap();
    assert!(
        line.ends_with("| 500,000 | 500,000 | +0.0% | same (±0.5%) |"),
        "{line}"
    );
    assert!(
        out.stdout.contains("planted faults differ"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.starts_with(
            "finding: 1 regression(s): cpu_step/10k slower (instructions +3.0%, count gate)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&md).unwrap(), out.stdout);
}

/// A counts file of `forcefield bench count` named `name`, measured at `at`.
fn counts_file(dir: &Path, name: &str, at: u64, counts: &[(&str, u64)]) -> PathBuf {
    let counts: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|(id, n)| (id.to_string(), serde_json::json!({ "instructions": n })))
        .collect();
    let file = serde_json::json!({
        "format": "forcefield-counts/1",
        "tool": "callgrind (valgrind-3.19.0)",
        "measured_at": at,
        "counts": counts,
    });
    let path = dir.join(name);
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

#[test]
fn the_plain_flow_of_one_build_passes_and_counts_alone_make_an_entry() {
    // record; record; compare with no calibration: times drift 8% (beyond the default 5%), the
    // counts repeat exactly; the comparison passes.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (run, center) in [(1, 1.0e6), (2, 1.08e6)] {
        let crit = criterion_dir(
            dir,
            &format!("run{run}"),
            run,
            &[("cpu_step/1k", samples(center, 30, run as f64))],
        );
        let counts = counts_file(
            dir,
            &format!("c{run}.json"),
            run,
            &[
                ("cpu_step/1k", 7_738_986),
                ("cpu_kernels/1k/force_pass", 7_224_282),
            ],
        );
        let out = record(dir, &crit, &["--counts", s(&counts)], None);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let out = forcefield(dir, &["bench", "compare", "--history", "h.jsonl"], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("slower (not gated: uncalibrated)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("| cpu_kernels/1k/force_pass | – | – | – | – | – | no times | 7,224,282 | 7,224,282 | +0.0% | same (±0.5%) |"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Result: no regression."));

    // The same counts again are stale; counts with no criterion directory make an entry.
    let old = dir.join("c2.json");
    let out = record(dir, &dir.join("missing"), &["--counts", s(&old)], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("already recorded"), "{}", out.stderr);
    let counts = counts_file(dir, "c3.json", 3, &[("cpu_step/1k", 7_739_016)]);
    let out = record(dir, &dir.join("missing"), &["--counts", s(&counts)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("1 benchmarks (1 with counts)"),
        "{}",
        out.stdout
    );
    let out = forcefield(dir, &["bench", "compare", "--history", "h.jsonl"], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // A counts file that is not one: one line, exit 2.
    std::fs::write(dir.join("bad.json"), "{\"format\": \"x\"}").unwrap();
    let out = record(dir, &dir.join("missing"), &["--counts", "bad.json"], None);
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("bad.json"), "{}", out.stderr);
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
    // Uncalibrated, the 6% drift between the first two A/A entries is a "slower" time, reported
    // and not gated.
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
    assert!(
        out.stdout.contains("slower (not gated: uncalibrated)"),
        "the default threshold is below this machine's noise: {}",
        out.stdout
    );

    let out = forcefield(
        dir,
        &[
            "bench",
            "calibrate",
            "--history",
            "h.jsonl",
            "--margin",
            "1.5",
        ],
        None,
    );
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
        &[
            "bench",
            "compare",
            "--history",
            "h.jsonl",
            "--no-rerun",
            "--gate-uncalibrated-times",
        ],
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
    let out = forcefield(
        dir,
        &[
            "bench",
            "compare",
            "--history",
            "h.jsonl",
            "--gate-uncalibrated-times",
        ],
        None,
    );
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

#[test]
fn nsight_compute_csv_becomes_per_kernel_counts_that_record_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let header = "\"ID\",\"Process ID\",\"Process Name\",\"Host Name\",\"Kernel Name\",\"Context\",\"Stream\",\"Block Size\",\"Grid Size\",\"Device\",\"CC\",\"Section Name\",\"Metric Name\",\"Metric Unit\",\"Metric Value\"";
    let row = |id: u32, kernel: &str, metric: &str, unit: &str, value: &str| {
        format!("\"{id}\",\"7\",\"forcefield\",\"h\",\"{kernel}\",\"1\",\"7\",\"(256, 1, 1)\",\"(20, 1, 1)\",\"0\",\"9.0\",\"Command line profiler metrics\",\"{metric}\",\"{unit}\",\"{value}\"")
    };
    let csv = [
        "==PROF== Connected to process 7".to_string(),
        header.to_string(),
        row(0, "force_pass", "dram__bytes.sum", "byte", "39,168"),
        row(0, "force_pass", "smsp__inst_executed.sum", "inst", "9,012"),
        row(1, "force_pass", "smsp__inst_executed.sum", "inst", "9,012"),
        row(2, "integrate", "smsp__inst_executed.sum", "inst", "1,200"),
    ]
    .join("\n");
    std::fs::write(dir.join("ncu.csv"), csv).unwrap();
    let out = forcefield(
        dir,
        &[
            "bench",
            "count",
            "--ncu-csv",
            "ncu.csv",
            "--prefix",
            "gpu_kernels/power",
            "--tool",
            "ncu 2025.3",
            "--out",
            "c.json",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("c.json")).unwrap()).unwrap();
    let fp = &file["counts"]["gpu_kernels/power/force_pass"];
    assert_eq!(fp["instructions"], 18_024);
    assert_eq!(fp["dram_bytes"], 39_168);
    assert_eq!(fp["launches"], 2);
    assert_eq!(file["tool"], "ncu 2025.3");
    let out = record(
        dir,
        &dir.join("no-criterion"),
        &["--counts", "c.json"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("2 benchmarks (2 with counts)"),
        "{}",
        out.stdout
    );

    std::fs::write(dir.join("junk.csv"), "not a table\n").unwrap();
    let out = forcefield(
        dir,
        &["bench", "count", "--ncu-csv", "junk.csv", "--out", "j.json"],
        None,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(!dir.join("j.json").exists());
}

/// A counting program: `small` runs 1,000 iterations, `big` 100,000, `kernel` twice 5,000, each
/// in a `counted_region` followed by its `counted:` line.
const COUNTING_PROGRAM: &str = r#"
use std::io::Write;
#[inline(never)]
fn counted_region(op: &mut dyn FnMut()) { op(); std::hint::black_box(()); }
fn work(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n { s = std::hint::black_box(s.wrapping_mul(31).wrapping_add(i)); }
    s
}
fn main() {
    let mut sink = work(1_000_000);
    for (id, n) in [("small", 1_000u64), ("big", 100_000), ("kernel", 5_000), ("kernel", 5_000)] {
        counted_region(&mut || sink ^= work(n));
        let mut out = std::io::stdout().lock();
        writeln!(out, "counted: {id}").unwrap();
        out.flush().unwrap();
    }
    std::hint::black_box(sink);
}
"#;

#[test]
fn callgrind_counts_each_region_and_repeats_them_exactly() {
    let have_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_valgrind {
        println!("skipped: valgrind not installed (.ci/run installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("counting.rs"), COUNTING_PROGRAM).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let built = Command::new(rustc)
        .args(["-O", "-o", "counting_counts-0123abcd", "counting.rs"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let count = |out: &str| {
        let o = forcefield(
            dir,
            &[
                "bench",
                "count",
                "--exe",
                "counting_counts-0123abcd",
                "--out",
                out,
            ],
            None,
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(out)).unwrap()).unwrap();
        assert!(v["tool"]
            .as_str()
            .unwrap()
            .starts_with("callgrind (valgrind-"));
        ["small", "big", "kernel"].map(|id| v["counts"][id]["instructions"].as_u64().unwrap())
    };
    let [small, big, kernel] = count("a.json");
    // Only the regions count (not the million iterations before them), in proportion to their
    // work: the two `kernel` regions add up.
    assert!(big > 50 * small && big < 150 * small, "{small} {big}");
    assert!(
        kernel > 5 * small && kernel < 15 * small,
        "{small} {kernel}"
    );
    assert!(
        big < 2_000_000,
        "the setup outside the regions is not counted: {big}"
    );
    // A second run of the same program counts exactly the same.
    assert_eq!(count("b.json"), [small, big, kernel]);

    // Not a counting executable: its regions cannot be matched, exit 3 with one line.
    let o = forcefield(
        dir,
        &["bench", "count", "--exe", "/bin/true", "--out", "t.json"],
        None,
    );
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert_eq!(
        o.stderr.lines().count(),
        2,
        "progress line and error: {}",
        o.stderr
    );
}
