/*!
`forcefield soak` end to end, on the real binary: with the seed bug planted, repeated crashes under
one signature and flight-recorder cases that replay with it; with the seed's deadlock, hangs killed
by the watchdog while the driver goes on; without faults, a clean run whose planned restarts keep
the worker; with injected environment faults, every one tolerated while the engine keeps stepping;
Ctrl-C, a clean stop that still writes `soak.json`.
*/

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use forcefield_harness::case::{Case, Expectation};

mod common;

use common::{assert_exit, assert_success};

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

fn soak(dir: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["soak", "--duration", "4s", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("soak.json")).unwrap()).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_seed_bug_crashes_repeatedly_under_one_signature_and_its_recorders_replay() {
    const SIGNATURE: &str = "signal:SIGSEGV:sort_pairs";
    let dir = tempfile::tempdir().unwrap();
    let out = soak(
        dir.path(),
        &[
            "--fault",
            "sort-count-unclamped",
            "--seed",
            "1",
            "--keep-cases",
            "3",
        ],
    );
    assert_exit(&out, 1);
    assert!(
        text(&out.stdout).contains(SIGNATURE),
        "{}",
        text(&out.stdout)
    );
    let r = report(dir.path());
    let crashes = r["crashes"].as_array().unwrap();
    assert_eq!(crashes.len(), 1, "one signature: {r}");
    let group = &crashes[0];
    assert_eq!(group["signature"], SIGNATURE);
    let count = group["count"].as_u64().unwrap();
    assert!(count >= 2, "repeated crashes: {r}");
    // Every crash restarted the engine: one life per crash, plus the one running at the end.
    let engines = r["engines"].as_u64().unwrap();
    assert!(engines == count || engines == count + 1, "{r}");

    // At most --keep-cases recorders, each a loadable case expecting this signature.
    let saved = group["saved"].as_array().unwrap();
    assert_eq!(saved.len() as u64, count.min(3), "{r}");
    let files = std::fs::read_dir(dir.path().join("crashes"))
        .unwrap()
        .count();
    assert_eq!(files, saved.len());
    for path in saved {
        let case = Case::from_json(&std::fs::read_to_string(path.as_str().unwrap()).unwrap())
            .expect("a flight recorder is a valid case");
        assert_eq!(
            case.expect,
            Some(Expectation::Open {
                signature: SIGNATURE.to_string()
            })
        );
        assert_eq!(case.faults.len(), 1);
    }
    assert_eq!(group["replay"], SIGNATURE, "the soak's own replay: {r}");

    let shortest = group["shortest"].as_str().unwrap();
    let repro = Command::new(BIN)
        .args(["repro", shortest])
        .output()
        .unwrap();
    assert_exit(&repro, 1);
    assert!(
        text(&repro.stdout).contains(&format!("signature: {SIGNATURE}")),
        "{}",
        text(&repro.stdout)
    );
}

#[test]
fn the_seed_deadlock_is_killed_by_the_watchdog_and_counted_as_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let out = soak(
        dir.path(),
        &["--fault", "logger-relock", "--chunk-timeout", "1s"],
    );
    assert_exit(&out, 1);
    let r = report(dir.path());
    let crashes = r["crashes"].as_array().unwrap();
    assert!(!crashes.is_empty(), "{r}");
    for group in crashes {
        let signature = group["signature"].as_str().unwrap();
        assert!(signature.starts_with("hang:"), "{r}");
    }
}

#[test]
fn the_clean_engine_survives_and_planned_restarts_keep_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    // Small graphs and lives of at least 100 steps: several planned restarts, even in a debug build.
    let out = soak(dir.path(), &["--life-steps", "100", "--max-nodes", "64"]);
    assert_success(&out);
    let r = report(dir.path());
    assert_eq!(r["crashes"].as_array().unwrap().len(), 0, "{r}");
    assert!(!dir.path().join("crashes").exists());
    let steps = r["steps"].as_u64().unwrap();
    assert!(r["chunks"].as_u64().unwrap() * 20 <= steps, "{r}");
    let engines = r["engines"].as_u64().unwrap();
    assert!(engines >= 2, "{r}");
    assert_eq!(r["retired"].as_u64(), Some(engines - 1), "{r}");
    assert!(r["longest_life"]["steps"].as_u64().unwrap() >= 100, "{r}");
    // A planned restart is a new engine in the same worker process.
    assert_eq!(r["workers"], 1, "{r}");
    assert_eq!(
        r["longest_worker"]["engines"].as_u64(),
        Some(engines),
        "{r}"
    );
}

#[test]
fn injected_faults_of_every_kind_are_tolerated_and_the_soak_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = soak(
        dir.path(),
        &["--inject-rate", "20", "--seed", "3", "--max-nodes", "128"],
    );
    let stdout = text(&out.stdout);
    assert_success(&out);
    let r = report(dir.path());
    assert_eq!(r["crashes"].as_array().unwrap().len(), 0, "{r}");
    let injections = &r["injections"];
    assert_eq!(injections["counted"], true, "{r}");
    assert_eq!(injections["not_tolerated"], 0, "{r}");
    for kind in ["fail-alloc", "fail-copy", "fail-launch", "lose-context"] {
        let k = &injections["kinds"][kind];
        let fired = k["fired"].as_u64().unwrap();
        assert!(fired > 0, "no {kind} fault fired: {r}");
        assert!(k["armed"].as_u64().unwrap() >= fired, "{r}");
        assert_eq!(k["recovered"].as_u64(), Some(fired), "{kind}: {r}");
    }
    // The engine kept working through them: steps after the faults, in the same worker (the CPU
    // backend recovers a lost context in-process).
    assert!(r["steps"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["workers"], 1, "{r}");
    assert!(
        stdout.contains("| every injected fault recovered | yes"),
        "{stdout}"
    );
}

/// Waits until `pid` has started a child (its first worker: Ctrl-C's handler is in place by then).
fn wait_for_worker(pid: u32) {
    let children = format!("/proc/{pid}/task/{pid}/children");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if std::fs::read_to_string(&children).is_ok_and(|c| !c.trim().is_empty()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_cleanly_and_still_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(["soak", "--duration", "10m", "--out"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_worker(child.id());
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    assert!(text(&out.stdout).contains("(interrupted)"));
    let r = report(dir.path());
    assert_eq!(r["interrupted"], true);
    assert!(r["chunks"].as_u64().unwrap() > 0, "{r}");
}
