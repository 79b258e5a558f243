/*!
Several cases side by side in one worker (`--cases-per-worker`): every case's outcome is its own.
A batch answered by its worker gives each case the verdict of its own reply; a batch whose worker
died has every case re-run alone, so the crash lands on the crashing case only; a campaign
finds the same findings in batches of four as one case at a time; and when workers share a GPU
(MPS, where another worker's fault ends this one's context) a case's verdict is its own too.
*/

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use forcefield_harness::case::{BackendKind, Case};
use forcefield_harness::client::batch::{run_batch, BatchRun};
use forcefield_harness::hunt::campaign::{
    run_isolated, run_shared_watched, run_side_by_side_watched,
};
use forcefield_harness::hunt::watchdog::{Watchdog, WatchdogConfig};
use forcefield_harness::isolate::{
    SupervisorConfig, WorkerCommand, WorkerSlot, ENV_WORKER_TEST_CRASH_EVERY, ENV_WORKER_TEST_MODES,
};

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

fn slot() -> WorkerSlot {
    WorkerSlot::new(
        WorkerCommand::new(BIN)
            .arg("worker")
            .arg("--threads")
            .arg("1"),
        SupervisorConfig::default(),
    )
}

fn case(faults: &str, body: &str) -> Case {
    let text = format!(r#"{{"format":"forcefield-case/1","faults":[{faults}],{body}}}"#);
    Case::from_json(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Passing cases, a case that breaks the model oracle (an invariant finding in a reply), and the
/// seed bug's crash (SIGSEGV in the sort, which kills the worker).
fn cases() -> (Vec<Case>, Case) {
    let pass = |n: u32, steps: u32| {
        case(
            "",
            &format!(
                r#""graph":{{"num_nodes":{n},"edges":[{{"u":0,"v":1,"w":1.0}}]}},"ops":[{{"op":"step","count":{steps}}},{{"op":"add_nodes","count":5}},{{"op":"step","count":3}}]"#
            ),
        )
    };
    let deduplicated = case(
        r#""add-edges-deduplicated""#,
        r#""graph":{"num_nodes":4,"edges":[{"u":0,"v":1,"w":1.0}]},"ops":[{"op":"add_edges","edges":[{"u":0,"v":1,"w":1.0}]},{"op":"step","count":2}]"#,
    );
    let crash = case(
        r#""sort-count-unclamped""#,
        r#""graph":{"num_nodes":0,"edges":[]},"ops":[{"op":"add_nodes","count":1},{"op":"step","count":1}]"#,
    );
    (vec![pass(6, 4), deduplicated, pass(30, 2)], crash)
}

fn signature(verdict: &forcefield_harness::client::signature::Verdict) -> String {
    match verdict.signature() {
        Some(s) => s.to_string(),
        None => format!("{verdict:?}"),
    }
}

fn solo_signatures(cases: &[Case]) -> Vec<String> {
    let mut slot = slot();
    let signatures = cases
        .iter()
        .map(|c| signature(&run_isolated(&mut slot, c, true, Duration::from_secs(60)).0))
        .collect();
    slot.shutdown();
    signatures
}

fn watchdog() -> Arc<Watchdog> {
    Arc::new(Watchdog::new(WatchdogConfig::for_backend(
        BackendKind::Cpu,
        Duration::from_secs(60),
        1,
    )))
}

#[test]
fn a_batch_answers_each_case_with_its_own_reply() {
    let (cases, _) = cases();
    let solo = solo_signatures(&cases);
    assert_eq!(solo[1], "invariant:model-counts:add_edges", "{solo:?}");
    let mut slot = slot();
    let BatchRun::Answered {
        cases: answers,
        worker_seconds,
    } = run_batch(&mut slot, &cases, true, Duration::from_secs(60))
    else {
        panic!("the worker of a batch without a crash answers it");
    };
    assert!(worker_seconds.is_some_and(|s| s > 0.0));
    let batched: Vec<String> = answers
        .iter()
        .map(|a| signature(&a.as_ref().expect("no case needs a solo run").verdict))
        .collect();
    assert_eq!(batched, solo);
    // Every case reports its own time, and the batch ran in one worker.
    assert!(answers
        .iter()
        .all(|a| a.as_ref().is_some_and(|a| a.worker_seconds.is_some())));
    assert_eq!(slot.spawns(), 1);
    slot.shutdown();
}

#[test]
fn a_crash_in_a_batch_lands_on_the_crashing_case_only() {
    let (mut cases, crash) = cases();
    cases.insert(1, crash);
    let solo = solo_signatures(&cases);
    assert_eq!(solo[1], "signal:SIGSEGV:sort_pairs", "{solo:?}");
    // The batch's worker dies: nothing of that death is pinned on any case by the batch itself.
    let mut slot = slot();
    assert!(matches!(
        run_batch(&mut slot, &cases, true, Duration::from_secs(60)),
        BatchRun::Died { .. }
    ));
    // Through the campaign's path: each case re-run alone, each outcome its own.
    let outcomes = run_side_by_side_watched(&mut slot, watchdog(), cases.clone(), true);
    let batched: Vec<String> = outcomes.iter().map(|(v, _)| signature(v)).collect();
    assert_eq!(batched, solo);
    assert_eq!(
        batched.iter().filter(|s| s.starts_with("signal:")).count(),
        1,
        "{batched:?}"
    );
    // The crash's execution is the solo run's: its breadcrumb names the crashing kernel.
    let crumb = outcomes[1].1.as_ref().and_then(|e| e.breadcrumb.clone());
    assert_eq!(crumb.and_then(|b| b.kernel).as_deref(), Some("sort_pairs"));
    slot.shutdown();
}

/// `forcefield run` of `cases` cases of seed 5 with planted faults, one worker taking `k` cases
/// at a time: its summary.
fn campaign(k: u32, cases: u32) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run", "--backend", "cpu", "--seed", "5", "--jobs", "1"])
        .args([
            "--fault",
            "sort-count-unclamped",
            "--fault",
            "add-edges-deduplicated",
        ])
        .args([
            "--cases",
            &cases.to_string(),
            "--no-minimize",
            "--reproduce-tries",
            "0",
        ])
        .args(["--cases-per-worker", &k.to_string()])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Signature, count and first case of each finding.
fn findings(summary: &serde_json::Value) -> Vec<(String, u64, u64)> {
    summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["signature"].as_str().unwrap().to_string(),
                f["count"].as_u64().unwrap(),
                f["first_case"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn batches_of_four_find_what_one_case_at_a_time_finds() {
    // Not a multiple of four: the last batch is short.
    let cases = 18;
    let one = campaign(1, cases);
    let four = campaign(4, cases);
    assert_eq!(one["cases"], four["cases"]);
    let (one, four) = (findings(&one), findings(&four));
    assert!(
        one.iter().any(|f| f.0.starts_with("signal:")),
        "the crash is among the findings: {one:?}"
    );
    assert!(one.len() >= 2, "{one:?}");
    assert_eq!(one, four);
}

/// A worker that dies on every `every`th request it receives, before handling it: what a worker
/// sharing a GPU through MPS suffers when another client's fault ends its context.
fn sabotaged_slot(every: u32) -> WorkerSlot {
    WorkerSlot::new(
        WorkerCommand::new(BIN)
            .arg("worker")
            .arg("--threads")
            .arg("1")
            .env(ENV_WORKER_TEST_MODES, "1")
            .env(ENV_WORKER_TEST_CRASH_EVERY, every.to_string()),
        SupervisorConfig::default(),
    )
}

#[test]
fn under_a_shared_gpu_a_case_that_does_not_pass_is_judged_by_its_run_in_a_private_worker() {
    let (cases, _) = cases();
    let solo = solo_signatures(&cases);
    let (mut shared, mut private) = (sabotaged_slot(2), slot());
    // The shared worker answers the batch (its first request): the passes stand, the finding is
    // re-run in the private worker.
    let outcomes = run_shared_watched(&mut shared, &mut private, watchdog(), cases.clone(), true);
    let signatures: Vec<String> = outcomes.iter().map(|(v, _, _)| signature(v)).collect();
    assert_eq!(signatures, solo);
    let private_runs: Vec<bool> = outcomes.iter().map(|(_, _, p)| *p).collect();
    assert_eq!(private_runs, [false, true, false]);
    // After anything but passes the shared worker is replaced (under MPS the server admits no new
    // client while an old one lives): the next batch is its new worker's first request, answered.
    let again = run_shared_watched(&mut shared, &mut private, watchdog(), cases, true);
    assert_eq!(shared.spawns(), 2);
    assert_eq!(
        again
            .iter()
            .map(|(v, _, _)| signature(v))
            .collect::<Vec<_>>(),
        solo
    );
    shared.shutdown();
    private.shutdown();
}

#[test]
fn under_a_shared_gpu_no_death_of_a_shared_worker_lands_on_a_case() {
    let (mut cases, crash) = cases();
    cases.insert(1, crash);
    let solo = solo_signatures(&cases);
    // Without the rule, the deaths of a worker whose context others end land on cases: the batch
    // dies (of the real crash) and its cases, run alone in the same worker, meet its deaths too.
    let mut sabotaged = sabotaged_slot(2);
    let unruled: Vec<String> =
        run_side_by_side_watched(&mut sabotaged, watchdog(), cases.clone(), true)
            .iter()
            .map(|(v, _)| signature(v))
            .collect();
    sabotaged.shutdown();
    assert_ne!(unruled, solo, "the sabotage must be able to mislead");
    // With it: every case of the dead batch runs alone in the private worker.
    let (mut shared, mut private) = (sabotaged_slot(2), slot());
    let outcomes = run_shared_watched(&mut shared, &mut private, watchdog(), cases, true);
    let signatures: Vec<String> = outcomes.iter().map(|(v, _, _)| signature(v)).collect();
    assert_eq!(signatures, solo);
    assert!(
        outcomes.iter().all(|(_, _, p)| *p),
        "the batch died: all alone"
    );
    let crumb = outcomes[1].1.as_ref().and_then(|e| e.breadcrumb.clone());
    assert_eq!(crumb.and_then(|b| b.kernel).as_deref(), Some("sort_pairs"));
    shared.shutdown();
    private.shutdown();
}

#[test]
fn gpu_sharing_is_refused_where_it_cannot_apply() {
    let out = Command::new(BIN)
        .args([
            "run",
            "--backend",
            "cpu",
            "--cases",
            "1",
            "--gpu-share",
            "mps",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: --gpu-share mps does not apply here: not a CUDA campaign"
    );
}
