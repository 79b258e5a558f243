/*!
Durable campaigns, end to end with the built binary: findings on disk as they are found, a campaign
stopped by SIGTERM or killed by SIGKILL keeps them (the journal rebuilds the summary), a locked or
unwritable `--out` is refused before any case runs, a time budget bounds minimization, findings
that do not reproduce are marked flaky, and files follow the umask.

The planted fault `sort-count-unclamped` crashes in the first cases on the CPU backend, so each
test waits for a finding on disk (an event, never a duration) and then acts.
*/

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");
/// How long a test waits for something that should come in well under a second; only a broken
/// build comes near it.
const PATIENCE: Duration = Duration::from_secs(60);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts `forcefield run` on the CPU backend with the seed bug, writing to `out`, under umask
/// 022, with `extra` flags.
fn start_campaign(out: &Path, extra: &[&str]) -> Child {
    let mut words = vec![
        "run",
        "--backend",
        "cpu",
        "--seed",
        "4",
        "--fault",
        "sort-count-unclamped",
        "--time",
        "60s",
    ];
    words.extend_from_slice(extra);
    // `exec`: the shell becomes forcefield, so the pid signalled is the campaign's.
    let script = format!("umask 022; exec \"$0\" {} --out \"$1\"", words.join(" "));
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `ready` holds, polling.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The journal's text (empty until it exists).
fn journal(out: &Path) -> String {
    std::fs::read_to_string(out.join("findings.jsonl")).unwrap_or_default()
}

/// Waits until the journal holds a record of `event`.
fn wait_for_event(out: &Path, event: &str) {
    let needle = format!("{{\"event\":\"{event}\"");
    wait_for(&format!("a `{event}` record"), || {
        journal(out).contains(&needle)
    });
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The findings directory of the seed bug's signature.
fn segv_dir(out: &Path) -> PathBuf {
    out.join("findings/signal-SIGSEGV-sort_pairs")
}

fn signatures(summary: &Value) -> Vec<String> {
    summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["signature"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sigterm_stops_the_campaign_and_keeps_every_finding() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("D");
    let child = start_campaign(&out, &[]);
    wait_for_event(&out, "finding");
    signal(&child, Signal::SIGTERM);
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + 15), "{stderr}");
    assert!(
        stderr.ends_with(&format!(
            "interrupted: stopped after {} cases with 1 distinct finding(s); see {}\n",
            json(&out.join("summary.json"))["cases"],
            out.display()
        )),
        "{stderr}"
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("(interrupted): 1 distinct finding(s)"),
        "{stdout}"
    );
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["interrupted"], true);
    assert_eq!(signatures(&summary), ["signal:SIGSEGV:sort_pairs"]);
    let case = json(&segv_dir(&out).join("case.json"));
    assert_eq!(case["expect"]["signature"], "signal:SIGSEGV:sort_pairs");
    let report = json(&segv_dir(&out).join("report.json"));
    assert_eq!(report["finding"]["signature"], "signal:SIGSEGV:sort_pairs");
    assert!(journal(&out).contains("{\"event\":\"end\""));
    // Written under umask 022: readable by everyone, as any file the user creates.
    for file in [
        out.join("summary.json"),
        out.join("findings.jsonl"),
        segv_dir(&out).join("case.json"),
        segv_dir(&out).join("report.json"),
    ] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", file.display());
    }
}

#[test]
fn after_sigkill_report_rebuilds_the_summary_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("D");
    let mut child = start_campaign(&out, &[]);
    wait_for_event(&out, "finding");
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();
    // Whatever summary.json said last (if the kill came before the first one), the journal has
    // the finding.
    let _ = std::fs::remove_file(out.join("summary.json"));
    let report = Command::new(BIN).arg("report").arg(&out).output().unwrap();
    let stderr = text(&report.stderr);
    assert_eq!(report.status.code(), Some(1), "{stderr}");
    assert!(text(&report.stdout).contains("| `signal:SIGSEGV:sort_pairs` |"));
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["interrupted"], true, "no end record: cut short");
    assert_eq!(summary["seed"], 4);
    assert_eq!(signatures(&summary), ["signal:SIGSEGV:sort_pairs"]);
    assert!(segv_dir(&out).join("case.json").is_file());
    // merge reads the directory the same way.
    let merged = Command::new(BIN).arg("merge").arg(&out).output().unwrap();
    assert_eq!(merged.status.code(), Some(1), "{}", text(&merged.stderr));
    assert!(text(&merged.stdout).contains("signal:SIGSEGV:sort_pairs"));
}

#[test]
fn a_second_campaign_on_a_locked_out_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("D");
    let first = start_campaign(&out, &[]);
    wait_for_event(&out, "start");
    let first_pid = first.id();
    let second = Command::new(BIN)
        .args(["run", "--backend", "cpu", "--cases", "5", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    // Still running: the refusal did not wait for it.
    let still_running = std::fs::metadata(format!("/proc/{}", first.id())).is_ok();
    signal(&first, Signal::SIGTERM);
    let first = first.wait_with_output().unwrap();
    assert!(still_running);
    assert_eq!(second.status.code(), Some(3));
    assert_eq!(text(&second.stdout), "", "no case ran");
    let stderr = text(&second.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {} is in use by another campaign (pid {}, started ",
            out.display(),
            first_pid
        )) && stderr.contains("--fault sort-count-unclamped")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(first.status.code(), Some(143));
    assert_eq!(
        json(&out.join("summary.json"))["seed"],
        4,
        "the first one's summary"
    );
}

#[test]
fn an_out_that_cannot_be_a_directory_is_refused_before_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    for out in [file.clone(), file.join("sub")] {
        let o = run_quick(&["--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        assert_eq!(text(&o.stdout), "", "no summary: no case ran");
        assert_eq!(
            text(&o.stderr),
            format!("error: {}: not a directory\n", out.display())
        );
    }
    // /proc refuses new files whoever asks (tests run as root, whom permissions do not stop).
    let o = run_quick(&["--out", "/proc/forcefield-out"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "");
    assert!(text(&o.stderr).starts_with("error: cannot write to /proc/forcefield-out: "));
}

fn run_quick(extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["run", "--backend", "cpu", "--cases", "100"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_time_budget_bounds_the_minimization_of_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("D");
    let o = Command::new(BIN)
        .args([
            "run",
            "--backend",
            "cpu",
            "--fault",
            "logger-relock",
            "--time",
            "10s",
            "--case-timeout",
            "2s",
            "--jobs",
            "1",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["interrupted"], false);
    assert_eq!(summary["wall"]["budget"], 10.0);
    assert_eq!(summary["wall"]["case_timeout"], 2.0);
    let hang = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["signature"].as_str().unwrap().starts_with("hang:"))
        .unwrap_or_else(|| panic!("no hang in {summary}"));
    // Every candidate of a hang costs the 2 s watchdog: the budget ends its minimization.
    assert_eq!(hang["minimized"], false, "{hang}");
    assert!(segv_or_hang_case(&out, hang).is_file());
}

fn segv_or_hang_case(out: &Path, finding: &Value) -> PathBuf {
    let id: String = finding["signature"]
        .as_str()
        .unwrap()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.join("findings").join(id).join("case.json")
}

/// The workers of the campaign `pid` (its children).
fn workers(pid: u32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

#[test]
fn a_worker_killed_from_outside_is_a_flaky_finding_not_minimized() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("D");
    // The clean engine: the only finding is the one made here.
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--backend",
            "cpu",
            "--time",
            "60s",
            "--jobs",
            "1",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two seconds in (the first periodic summary), the worker is running cases.
    wait_for_event(&out, "progress");
    for worker in workers(child.id()) {
        let _ = kill(Pid::from_raw(worker), Signal::SIGKILL);
    }
    wait_for_event(&out, "reproduced");
    signal(&child, Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let summary = json(&out.join("summary.json"));
    let killed = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["signature"]
                .as_str()
                .unwrap()
                .starts_with("signal:SIGKILL")
        })
        .unwrap_or_else(|| panic!("no SIGKILL finding in {summary}"));
    assert_eq!(killed["flaky"], true, "{killed}");
    assert_eq!(killed["reproduced"], "0/3");
    assert_eq!(killed["minimized"], false);
    assert!(
        killed.get("minimization").is_none(),
        "never minimized: {killed}"
    );
}
