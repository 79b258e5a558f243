/*!
Durable outputs beyond `run`'s (see `durability.rs`): a full disk never leaves a finding directory
half-written, and `ci`, `soak` and `selftest --json` stopped by SIGTERM (what a CI system sends a
job past its limit) still write their reports, `interrupted`, and exit `128 + 15`.

A full disk is simulated without root: the campaign runs with `RLIMIT_FSIZE` lowered and SIGXFSZ
ignored, so a write past the limit fails with `EFBIG` as a write to a full disk fails with
`ENOSPC`. Each stop test waits for an event (a worker process exists), never a duration.
*/

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");
/// How long a test waits for something that should come in about a second; only a broken build
/// comes near it.
const PATIENCE: Duration = Duration::from_secs(60);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `forcefield args...`, stdout and stderr piped.
fn start(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether process `pid` has a child, started by any of its threads.
fn has_child(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("children")).is_ok_and(|c| !c.trim().is_empty())
    })
}

/// Waits until process `pid` has a child (its first worker).
fn wait_for_worker(pid: u32) {
    let start = Instant::now();
    while !has_child(pid) {
        assert!(start.elapsed() < PATIENCE, "no worker started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM once `child` runs a worker, and waits for it to end.
fn sigterm_after_first_worker(child: Child) -> Output {
    wait_for_worker(child.id());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_full_disk_leaves_every_finding_directory_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("D");
    let mut command = Command::new(BIN);
    command
        .args([
            "run",
            "--backend",
            "cpu",
            "--seed",
            "4",
            "--fault",
            "sort-count-unclamped",
            "--time",
            "60s",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, sigaction).
    unsafe {
        command.pre_exec(|| {
            // 4 KiB: the journal's first records fit, a finding's case file (6 KiB) does not.
            setrlimit(Resource::RLIMIT_FSIZE, 4096, 4096)?;
            signal(Signal::SIGXFSZ, SigHandler::SigIgn)?;
            Ok(())
        });
    }
    let output = command.output().unwrap();
    let stderr = text(&output.stderr);
    // The write error stops the campaign at once and says what is on disk.
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    assert!(
        stderr.contains("the files written before are whole"),
        "{stderr}"
    );
    // Every finding directory on disk is whole: a report that parses and the case it names; no
    // staging directory is left behind.
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(out.join("findings")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left behind: {name}");
        let report = json(&entry.path().join("report.json"));
        if !report["finding"]["case"].is_null() {
            json(&entry.path().join("case.json"));
        }
        on_disk.push(name);
    }
    // The journal names only findings whose files are whole (files first, then the record).
    let journal = std::fs::read_to_string(out.join("findings.jsonl")).unwrap();
    let mut journaled = 0;
    for line in journal.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        if record["event"] == "finding" {
            let signature = record["finding"]["signature"].as_str().unwrap();
            let id = signature.replace(':', "-");
            assert!(on_disk.contains(&id), "{signature} journaled, not on disk");
            journaled += 1;
        }
    }
    // Files first, then the record: a journaled finding is always on disk. Which finding meets the
    // limit depends on which case fails first (two workers), so the count on disk is not fixed; a
    // finding whose files did not fit is absent, not half-written (checked above).
    assert!(
        journaled <= on_disk.len(),
        "{journaled} journaled, on disk: {on_disk:?}"
    );
}

#[test]
fn sigterm_stops_soak_with_its_report_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("S");
    let child = start(&["soak", "--duration", "10m", "--out", out.to_str().unwrap()]);
    let output = sigterm_after_first_worker(child);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + 15), "{stderr}");
    assert!(
        stderr.contains("interrupted: soak stopped after"),
        "{stderr}"
    );
    let report = json(&out.join("soak.json"));
    assert_eq!(report["interrupted"], true);
    // The worker the stop killed is not a crash of the engine.
    assert_eq!(
        report["crashes"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
}

#[test]
fn sigterm_stops_selftest_with_its_json_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("selftest.json");
    let child = start(&[
        "selftest",
        "--backend",
        "cpu",
        "--fault",
        "logger-relock",
        "--budget",
        "60s",
        "--json",
        path.to_str().unwrap(),
    ]);
    let output = sigterm_after_first_worker(child);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + 15), "{stderr}");
    assert!(stderr.contains("interrupted: selftest stopped"), "{stderr}");
    let report = json(&path);
    assert_eq!(report["interrupted"], true);
    // The hunt's workers were killed by the stop: that is no detection.
    for row in report["faults"].as_array().unwrap() {
        assert_eq!(row["detected"], false, "{row}");
    }
}

#[test]
fn sigterm_stops_ci_with_its_reports_written() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("regressions")).unwrap();
    let (junit, ci_json) = (dir.path().join("junit.xml"), dir.path().join("ci.json"));
    let child = start(&[
        "ci",
        "--backend",
        "cpu",
        "--corpus",
        corpus.to_str().unwrap(),
        "--time",
        "10m",
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        ci_json.to_str().unwrap(),
    ]);
    let output = sigterm_after_first_worker(child);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + 15), "{stderr}");
    assert!(stderr.contains("interrupted: ci stopped after"), "{stderr}");
    let report = json(&ci_json);
    assert_eq!(report["campaign"]["interrupted"], true);
    assert_eq!(
        report["findings"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuites"), "{xml}");
}
