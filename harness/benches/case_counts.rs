/*!
The harness's work on one case as counted work, for Callgrind (`forcefield bench count`; see
`benches/step_counts.rs` in the root package for the protocol): `harness/isolated_cases` is the
batch of small generated cases that `benches/harness.rs` times through a live worker (the same
seeds), each run here in-process with the same options a worker uses — oracles after every
operation and the capacity-invariance re-run — one counted region per case. What the count leaves
out is the worker plumbing (frames over pipes, breadcrumbs), which the time benchmark includes.

Run natively (`cargo bench -p forcefield-harness --bench case_counts`) it does the same work
uncounted and prints the ids.
*/

use std::io::Write as _;

use forcefield_harness::case::generate::{generate_case_from_seed, GenConfig};
use forcefield_harness::hunt::campaign::case_seed;
use forcefield_harness::worker::execute::{execute, ExecOptions};

/// Cases of the batch (as `benches/harness.rs`).
const BATCH: u64 = 10;
/// Campaign seed of the batch (as `benches/harness.rs`).
const SEED: u64 = 0x6265_6e63;
/// The id, shared with the time benchmark of the same cases.
const ID: &str = "harness/isolated_cases";

/// The measured region: Callgrind collects only while this function runs and writes one profile
/// part when it returns. Never inlined, so that the symbol exists for `--toggle-collect`.
#[inline(never)]
fn counted_region(op: &mut dyn FnMut()) {
    op();
    std::hint::black_box(());
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("{ID}: count");
        return;
    }
    let opts = ExecOptions::default();
    for k in 0..BATCH {
        let case = generate_case_from_seed(case_seed(SEED, k), &GenConfig::small());
        let mut passed = false;
        counted_region(&mut || {
            passed = execute(&case, &opts, &mut |_| {}).is_pass();
        });
        let mut out = std::io::stdout().lock();
        // A closed stdout leaves the part unnamed; the reader then reports a mismatch.
        let _ = writeln!(out, "counted: {ID}");
        let _ = out.flush();
        if !passed {
            eprintln!("error: case {k} of the batch did not pass: the clean engine must pass it");
            std::process::exit(1);
        }
    }
}
