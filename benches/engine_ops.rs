/*!
Criterion benchmarks of the engine's operations other than the step, on the CPU backend.

* `resize/grow/<size>`: `reserve(2n, 2m)` on an engine whose capacity is exactly its `n` nodes and
  `m` edges — every node and edge buffer reallocated at twice the size and the live prefix copied.
* `resize/shrink/<size>`: `shrink_to_fit()` right after such a grow — every buffer reallocated back
  to the live counts.
* `sssp/<size>`: `run_sssp(0)` on the random graph (unit weights), the engine's frontier-based
  shortest paths.

Sizes are 10k nodes / 100k edges and 100k nodes / 1M edges (the step benchmark's graphs). One
engine per size serves every sample: a grow and the shrink after it bring the engine back to where
it started, and SSSP does not change the state, so each sample is one independent operation on the
same state (see `common::fixed_samples`). The grow and shrink of one round are measured together and
each benchmark takes its half.

Every benchmark reports the CPU time of the process (all threads), not the wall time: see `common`
for why. Planted faults named by `FORCEFIELD_FAULTS` are switched on in every engine. Run with
`cargo bench --bench engine_ops` (about 20 s on two cores).
*/

mod common;

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use forcefield::{CpuBackend, Engine, EngineConfig, FaultSet, SimParams};

/// One size: label, nodes, samples.
struct Size {
    label: &'static str,
    num_nodes: u32,
    samples: usize,
    state: OnceLock<Mutex<State>>,
}

/// The engine of a size and the resize rounds measured on it.
struct State {
    engine: Engine<CpuBackend>,
    /// (grow, shrink) nanoseconds per round.
    rounds: Vec<(f64, f64)>,
    grows_used: usize,
    shrinks_used: usize,
}

static SIZES: [Size; 2] = [
    Size {
        label: "10k",
        num_nodes: 10_000,
        samples: 30,
        state: OnceLock::new(),
    },
    Size {
        label: "100k_1M",
        num_nodes: 100_000,
        samples: 12,
        state: OnceLock::new(),
    },
];

fn faults() -> FaultSet {
    static FAULTS: OnceLock<FaultSet> = OnceLock::new();
    *FAULTS.get_or_init(common::faults)
}

impl Size {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .get_or_init(|| {
                let graph = common::random_graph(
                    self.num_nodes,
                    common::EDGES_PER_NODE,
                    common::GRAPH_SEED,
                );
                let engine = Engine::with_config(
                    CpuBackend::new(),
                    &graph,
                    SimParams::default(),
                    EngineConfig::default(),
                    faults(),
                )
                .expect("the benchmark graph is valid");
                let mut state = State {
                    engine,
                    rounds: Vec::new(),
                    grows_used: 0,
                    shrinks_used: 0,
                };
                // The first round after construction is not typical (the engine was built at
                // exactly its counts and the grid buffers were never sized): it is not measured.
                state.measure_round();
                Mutex::new(state)
            })
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// One round: grow to twice the counts, then shrink back, each timed.
    fn measure_round(&mut self) -> (f64, f64) {
        let nodes = self.engine.num_nodes() * 2;
        let edges = self.engine.num_edges() * 2;
        let started = common::process_cpu_ns();
        self.engine.reserve(nodes, edges).expect("grow succeeds");
        let grown = common::process_cpu_ns();
        self.engine.shrink_to_fit().expect("shrink succeeds");
        let shrunk = common::process_cpu_ns();
        (grown - started, shrunk - grown)
    }

    /// The next round the grow (or shrink) benchmark has not used.
    fn take(&mut self, grow: bool) -> f64 {
        let used = if grow {
            &mut self.grows_used
        } else {
            &mut self.shrinks_used
        };
        let index = *used;
        *used += 1;
        while self.rounds.len() <= index {
            let round = self.measure_round();
            self.rounds.push(round);
        }
        if grow {
            self.rounds[index].0
        } else {
            self.rounds[index].1
        }
    }
}

fn ns(total: f64) -> Duration {
    Duration::from_secs_f64(total * 1e-9)
}

fn resize(c: &mut Criterion) {
    let mut group = c.benchmark_group("resize");
    for size in &SIZES {
        common::fixed_samples(&mut group, size.samples);
        group.throughput(Throughput::Elements(size.num_nodes as u64));
        for (name, grow) in [("grow", true), ("shrink", false)] {
            let id = BenchmarkId::new(name, size.label);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut state = size.state();
                    ns((0..iters).map(|_| state.take(grow)).sum())
                })
            });
        }
    }
    group.finish();
}

fn sssp(c: &mut Criterion) {
    let mut group = c.benchmark_group("sssp");
    for size in &SIZES {
        common::fixed_samples(&mut group, size.samples);
        group.throughput(Throughput::Elements(size.num_nodes as u64));
        group.bench_function(BenchmarkId::from_parameter(size.label), |b| {
            b.iter_custom(|iters| {
                let mut state = size.state();
                let mut total = 0.0;
                for _ in 0..iters {
                    let started = common::process_cpu_ns();
                    let dist = state.engine.run_sssp(0).expect("sssp succeeds");
                    total += common::process_cpu_ns() - started;
                    criterion::black_box(dist);
                }
                ns(total)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().nresamples(10_000);
    targets = resize, sssp
}
criterion_main!(benches);
