/*!
The engine's CPU benchmarks as regions of counted work, for Callgrind: instructions (and, with
cache simulation, estimated cycles) that do not depend on what else runs on the machine.

`forcefield bench count --exe <this executable>` runs it under
`valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*::counted_region
--dump-after=*::counted_region`: collection is on only inside [`counted_region`], and Callgrind
writes one profile part each time the region returns. The executable prints `counted: <id>` after
every region, so the n-th line names the n-th part. A benchmark measured in several regions (a
kernel launched more than once in a step) is the sum of its parts.

The ids are those of the time benchmarks (`benches/step.rs`, `benches/engine_ops.rs`), so that
`forcefield bench record --counts` puts each count beside the samples of the same benchmark:

* `cpu_step/<size>`: one `Engine::step(1)` on a fresh engine at the warmed-up snapshot (the same
  state `benches/step.rs` times);
* `cpu_kernels/<size>/<kernel>`: each kernel launch of such a step;
* `resize/grow/<size>`, `resize/shrink/<size>`: `reserve(2n, 2m)` and the `shrink_to_fit()` after
  it, on an engine built at exactly its counts (one unmeasured round first, as the time bench);
* `sssp/<size>`: `run_sssp(0)`.

Sizes: `1k`, `10k` (default) and `100k_1M` (`--sizes 1k,10k,100k_1M`; under Callgrind a 100k-node
step and its warm-up take minutes). Everything runs on one thread (`CpuBackend::with_threads(1)`):
Callgrind runs a program's threads one at a time anyway, its collection switch is per thread, and
the work of a step does not depend on how it is split, so one thread counts all of it, and the
same number on every machine whatever its core count.

Run natively (`cargo bench --bench step_counts`) it does the same work uncounted and prints the
ids, which is how it is checked to run. `--list` prints the ids without running anything.
Planted faults named by `FORCEFIELD_FAULTS` are switched on, as in the time benches.
*/

mod common;

use std::io::Write as _;

use forcefield::backend::layer::{Layer, Layered};
use forcefield::backend::Launch;
use forcefield::{
    Backend, BackendError, CpuBackend, Engine, EngineConfig, FaultSet, GraphSpec, SimParams,
};

/// Steps run from the seeded positions before the snapshot (as in `benches/step.rs`).
const WARMUP_STEPS: u32 = 20;

/// The sizes: label and nodes (edges: `common::EDGES_PER_NODE` per node).
const SIZES: [(&str, u32); 3] = [("1k", 1_000), ("10k", 10_000), ("100k_1M", 100_000)];
/// Sizes counted unless `--sizes` says otherwise.
const DEFAULT_SIZES: [&str; 2] = ["1k", "10k"];
/// Sizes of the resize and SSSP benchmarks (as in `benches/engine_ops.rs`).
const OPS_SIZES: [&str; 2] = ["10k", "100k_1M"];

/// The measured region: Callgrind collects only while this function runs and writes one profile
/// part when it returns. Never inlined, so that the symbol exists for `--toggle-collect`.
#[inline(never)]
fn counted_region(op: &mut dyn FnMut()) {
    op();
    std::hint::black_box(());
}

/// Runs `op` as a counted region named `id`, then names the part on stdout.
fn counted<R>(id: &str, op: impl FnOnce() -> R) -> R {
    let mut op = Some(op);
    let mut result = None;
    counted_region(&mut || {
        if let Some(op) = op.take() {
            result = Some(op());
        }
    });
    let mut out = std::io::stdout().lock();
    // A closed stdout leaves the parts unnamed; the reader then reports a mismatch.
    let _ = writeln!(out, "counted: {id}");
    let _ = out.flush();
    match result {
        Some(r) => r,
        None => unreachable!("counted_region runs its operation once"),
    }
}

/// A backend that runs each kernel launch as a counted region named `<prefix>/<kernel>`.
type CountedLaunches<B> = Layered<B, CountLaunches>;

/// The layer of [`CountedLaunches`]: launches are counted regions when a prefix is set.
struct CountLaunches {
    prefix: Option<String>,
}

impl Layer for CountLaunches {
    fn launch(&mut self, inner: &mut dyn Backend, launch: &Launch) -> Result<f64, BackendError> {
        match &self.prefix {
            Some(prefix) => {
                let id = format!("{prefix}/{}", launch.kernel_name());
                counted(&id, || inner.launch(launch))
            }
            None => inner.launch(launch),
        }
    }
}

fn engine(
    graph: &GraphSpec,
    params: SimParams,
    faults: FaultSet,
    prefix: Option<String>,
) -> Engine<CountedLaunches<CpuBackend>> {
    let backend = CountedLaunches::new(CpuBackend::with_threads(1), CountLaunches { prefix });
    Engine::with_config(backend, graph, params, EngineConfig::default(), faults)
        .unwrap_or_else(|e| fail(&format!("the benchmark graph is refused: {e}")))
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(3);
}

/// The benchmark graph of `nodes` with its positions after [`WARMUP_STEPS`] steps.
fn snapshot(nodes: u32, faults: FaultSet) -> GraphSpec {
    let mut graph = common::random_graph(nodes, common::EDGES_PER_NODE, common::GRAPH_SEED);
    let mut e = engine(&graph, SimParams::default(), faults, None);
    if let Err(err) = e.step(WARMUP_STEPS) {
        fail(&format!("warm-up steps failed: {err}"));
    }
    graph.positions = Some(
        e.positions()
            .unwrap_or_else(|err| fail(&format!("positions: {err}"))),
    );
    graph
}

/// The ids this run counts, in order (kernels named as the engine launches them).
fn plan(sizes: &[&str]) -> Vec<String> {
    let kernels = [
        "bounds_reduce",
        "build_grid",
        "sort_pairs",
        "gather_positions",
        "cell_bounds",
        "force_pass",
        "integrate",
    ];
    let mut ids = Vec::new();
    for size in sizes {
        ids.push(format!("cpu_step/{size}"));
        ids.extend(kernels.iter().map(|k| format!("cpu_kernels/{size}/{k}")));
    }
    for size in sizes.iter().filter(|s| OPS_SIZES.contains(s)) {
        ids.push(format!("resize/grow/{size}"));
        ids.push(format!("resize/shrink/{size}"));
        ids.push(format!("sssp/{size}"));
    }
    ids
}

/// Grows `e` to twice its counts and shrinks it back, counted as `resize/{grow,shrink}/<label>`
/// when a label is given.
fn resize_round<B: Backend>(e: &mut Engine<B>, label: Option<&str>) {
    let (n, m) = (e.num_nodes() * 2, e.num_edges() * 2);
    let grown = match label {
        Some(l) => counted(&format!("resize/grow/{l}"), || e.reserve(n, m)),
        None => e.reserve(n, m),
    };
    grown.unwrap_or_else(|err| fail(&format!("reserve: {err}")));
    let shrunk = match label {
        Some(l) => counted(&format!("resize/shrink/{l}"), || e.shrink_to_fit()),
        None => e.shrink_to_fit(),
    };
    shrunk.unwrap_or_else(|err| fail(&format!("shrink_to_fit: {err}")));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes: Vec<&str> = DEFAULT_SIZES.to_vec();
    let mut list = false;
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        match a.as_str() {
            "--list" => list = true,
            "--sizes" => {
                let value = iter.next().unwrap_or_else(|| fail("--sizes needs a value"));
                sizes = Vec::new();
                for s in value.split(',') {
                    match SIZES.iter().find(|(label, _)| *label == s) {
                        Some((label, _)) => sizes.push(label),
                        None => {
                            eprintln!("error: unknown size `{s}` (known: 1k, 10k, 100k_1M)");
                            std::process::exit(2);
                        }
                    }
                }
            }
            // cargo bench passes --bench; criterion-style flags mean nothing here.
            _ => {}
        }
    }
    if list {
        for id in plan(&sizes) {
            println!("{id}: count");
        }
        return;
    }
    let faults = common::faults();
    for &(label, nodes) in SIZES.iter().filter(|(l, _)| sizes.contains(l)) {
        let graph = snapshot(nodes, faults);
        let params = SimParams {
            iteration: WARMUP_STEPS,
            ..SimParams::default()
        };
        let mut e = engine(&graph, params.clone(), faults, None);
        counted(&format!("cpu_step/{label}"), || e.step(1))
            .unwrap_or_else(|err| fail(&format!("step: {err}")));
        let mut e = engine(&graph, params, faults, Some(format!("cpu_kernels/{label}")));
        e.step(1)
            .unwrap_or_else(|err| fail(&format!("step: {err}")));
    }
    for &(label, nodes) in SIZES
        .iter()
        .filter(|(l, _)| sizes.contains(l) && OPS_SIZES.contains(l))
    {
        let graph = common::random_graph(nodes, common::EDGES_PER_NODE, common::GRAPH_SEED);
        let mut e = engine(&graph, SimParams::default(), faults, None);
        // The first round after construction is not typical (see benches/engine_ops.rs).
        resize_round(&mut e, None);
        resize_round(&mut e, Some(label));
        let dist = counted(&format!("sssp/{label}"), || e.run_sssp(0))
            .unwrap_or_else(|err| fail(&format!("sssp: {err}")));
        std::hint::black_box(dist);
    }
}
