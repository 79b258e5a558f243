/*!
`cargo test` replays the regression corpus (`corpora/regressions/`) through the isolated path, as
`forcefield ci` does: each entry runs in a worker process of the real binary and must meet its
expectation (`pass` passes; `open` still fails with exactly its signature). One line per entry is
printed (`cargo test -- --nocapture` shows them).

A second test turns every expectation around and checks that each entry then breaks, so the first
test cannot pass by judging everything as met.
*/

use std::path::Path;
use std::time::Duration;

use forcefield::CudaBackend;
use forcefield_harness::case::Expectation;
use forcefield_harness::hunt::corpus::{self, Entry, ReplayOptions, ReplayResult, ReplayStatus};
use forcefield_harness::isolate::WorkerCommand;

const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpora/regressions");

fn options() -> ReplayOptions {
    ReplayOptions {
        worker: WorkerCommand::new(env!("CARGO_BIN_EXE_forcefield")).arg("worker"),
        jobs: 2,
        // Generous: a loaded test machine must not turn a slow entry into a hang.
        deadline: Duration::from_secs(30),
        capacity_invariance: true,
        cuda_available: CudaBackend::is_available(),
    }
}

fn line(r: &ReplayResult) -> String {
    let got = match &r.verdict {
        None => "-".to_string(),
        Some(v) => v
            .signature()
            .map_or_else(|| "pass".to_string(), |s| s.to_string()),
    };
    format!("{:<40} got {:<30} {:?}", r.entry, got, r.status)
}

fn load() -> Vec<Entry> {
    corpus::load(Path::new(REGRESSIONS)).expect("the regression corpus loads")
}

#[test]
fn every_regression_entry_meets_its_expectation() {
    let entries = load();
    // An empty or one-sided corpus would make this test vacuous.
    assert!(
        entries.iter().any(|e| e.expectation() == Expectation::Pass),
        "the corpus has no `pass` entry"
    );
    assert!(
        entries.iter().any(|e| e.open_signature().is_some()),
        "the corpus has no `open` entry"
    );
    let results = corpus::replay(&entries, &options(), &|_| {});
    assert_eq!(results.len(), entries.len());
    for r in &results {
        println!("{}", line(r));
    }
    let bad: Vec<String> = results
        .iter()
        .filter(|r| !matches!(r.status, ReplayStatus::Met | ReplayStatus::Skipped { .. }))
        .map(line)
        .collect();
    assert!(
        bad.is_empty(),
        "entries not meeting their expectation:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_entry_breaks_when_its_expectation_is_turned_around() {
    let flipped: Vec<Entry> = load()
        .into_iter()
        .filter(|e| e.case.backend == forcefield_harness::case::BackendKind::Cpu)
        .map(|mut e| {
            e.case.expect = Some(match e.expectation() {
                Expectation::Pass => Expectation::Open {
                    signature: "signal:SIGSEGV:sort_pairs".into(),
                },
                Expectation::Open { .. } => Expectation::Pass,
            });
            e
        })
        .collect();
    let results = corpus::replay(&flipped, &options(), &|_| {});
    assert_eq!(results.len(), flipped.len());
    for r in &results {
        assert!(r.status.is_broken(), "{}", line(r));
    }
}
