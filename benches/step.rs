/*!
Criterion benchmarks of the layout step on the CPU backend.

* `cpu_step/<size>`: the CPU time (all threads) of one `Engine::step(1)` at 1k, 10k and 100k nodes
  (ten random edges per node, so 100k nodes carry 1M edges).
* `cpu_kernels/<size>/<kernel>`: the same steps broken down by kernel (`bounds_reduce`,
  `build_grid`, `sort_pairs`, `force_pass`, ...), from the kernel log of an engine whose backend
  reports each launch's CPU time (`common::CpuTimed`). The step less the sum of its kernels is host
  work (bounds read-back, cell fills).
* `cpu_step_wall/<size>`: the wall time of the same steps. Why CPU time is the primary measure:
  see `common` (on a shared two-core machine the wall time mostly measures the neighbours).

# Every sample is one independent step from the same state

A random graph does not settle quickly: the seeded cube contracts for tens of steps into a dense
ball, and the force pass costs more as it does (at 10k nodes a step costs more than ten times as
much at step 30 as at step 0), so stepping one engine over and over would time a moving target.
Each size is therefore warmed up once for [`WARMUP_STEPS`] steps and its positions kept as a
snapshot; every measured step runs on a fresh engine built from that snapshot outside the timing
(velocities restart at zero, which does not change the work: a step's cost follows where the nodes
are). Each sample is exactly one such step (see `common::fixed_samples`).

The steps of a size are measured once and shared: `cpu_step/<size>`, `cpu_step_wall/<size>` and
`cpu_kernels/<size>/<kernel>` take each step's CPU time, wall time and kernel times, so the
breakdown costs no extra steps and its kernels add up to the step they come from.

Planted faults named by `FORCEFIELD_FAULTS` are switched on in every engine: with
`slow-force-pass` the force pass scans 125 cells instead of 27 (the same forces, more work).

Run with `cargo bench --bench step`; `cargo bench --bench step -- cpu_step/10k` runs one case; with
the whole file, about a minute on two cores.
*/

mod common;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::{CpuTime, CpuTimed};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use forcefield::{CpuBackend, Engine, EngineConfig, FaultSet, GraphSpec, SimParams};

/// Steps run from the seeded positions before the snapshot is taken, so that the timed state is a
/// layout in motion rather than the uniform cube it starts from.
const WARMUP_STEPS: u32 = 20;

/// One measured step: its wall time, its CPU time and each kernel's CPU time, in nanoseconds.
#[derive(Clone, Debug)]
struct StepRecord {
    wall_ns: f64,
    cpu_ns: f64,
    kernels: Vec<(&'static str, f64)>,
}

impl StepRecord {
    fn kernel_ns(&self, kernel: &str) -> f64 {
        self.kernels
            .iter()
            .filter(|(k, _)| *k == kernel)
            .map(|(_, ns)| ns)
            .sum()
    }
}

/// Steps measured so far, and how many of them each benchmark has used.
#[derive(Default)]
struct Pool {
    steps: Vec<StepRecord>,
    used: BTreeMap<String, usize>,
}

/// One benchmark size, with its sample count, its warmed-up snapshot and its pool of measured
/// steps (both built on first use, so a filtered run pays only for the sizes it runs).
struct Case {
    label: &'static str,
    num_nodes: u32,
    samples: usize,
    snapshot: OnceLock<GraphSpec>,
    pool: Mutex<Pool>,
}

impl Case {
    const fn new(label: &'static str, num_nodes: u32, samples: usize) -> Self {
        Case {
            label,
            num_nodes,
            samples,
            snapshot: OnceLock::new(),
            pool: Mutex::new(Pool {
                steps: Vec::new(),
                used: BTreeMap::new(),
            }),
        }
    }
}

static CASES: [Case; 3] = [
    Case::new("1k", 1_000, 60),
    Case::new("10k", 10_000, 40),
    Case::new("100k_1M", 100_000, 12),
];

fn faults() -> FaultSet {
    static FAULTS: OnceLock<FaultSet> = OnceLock::new();
    *FAULTS.get_or_init(common::faults)
}

impl Case {
    /// The benchmark graph with its positions after [`WARMUP_STEPS`] steps.
    fn snapshot(&self) -> &GraphSpec {
        self.snapshot.get_or_init(|| {
            let mut graph =
                common::random_graph(self.num_nodes, common::EDGES_PER_NODE, common::GRAPH_SEED);
            let mut engine = self.engine_at(&graph, SimParams::default());
            engine.step(WARMUP_STEPS).expect("warm-up steps succeed");
            graph.positions = Some(engine.positions().expect("positions read back"));
            graph
        })
    }

    fn engine_at(&self, graph: &GraphSpec, params: SimParams) -> Engine<CpuTimed<CpuBackend>> {
        Engine::with_config(
            CpuTimed::new(CpuBackend::new(), CpuTime),
            graph,
            params,
            EngineConfig::default(),
            faults(),
        )
        .expect("the benchmark graph is valid")
    }

    /// One step on a fresh engine at the snapshot (the step counter continues where the warm-up
    /// stopped, so the damping schedule is the warmed engine's).
    fn measure_step(&self) -> StepRecord {
        let params = SimParams {
            iteration: WARMUP_STEPS,
            ..SimParams::default()
        };
        let mut engine = self.engine_at(self.snapshot(), params);
        let cpu_started = common::process_cpu_ns();
        let started = Instant::now();
        engine.step(1).expect("step succeeds");
        let wall = started.elapsed();
        let cpu_ns = common::process_cpu_ns() - cpu_started;
        let kernels = engine
            .kernel_log()
            .recent()
            .into_iter()
            .filter(|r| r.iteration == WARMUP_STEPS)
            .map(|r| (r.kernel, r.duration_us * 1e3))
            .collect();
        StepRecord {
            wall_ns: wall.as_secs_f64() * 1e9,
            cpu_ns,
            kernels,
        }
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next step `consumer` has not used yet, measuring one when every step is used.
    fn take(&self, consumer: &str) -> StepRecord {
        let index = {
            let mut pool = self.pool();
            let used = pool.used.entry(consumer.to_string()).or_insert(0);
            let index = *used;
            *used += 1;
            index
        };
        loop {
            if let Some(step) = self.pool().steps.get(index) {
                return step.clone();
            }
            let step = self.measure_step();
            self.pool().steps.push(step);
        }
    }
}

/// The kernels of a step, in launch order, from one step of a small graph: the launch sequence
/// does not depend on the size, and a filtered run must not build a large snapshot just to name
/// the benchmarks of a size it skips.
fn kernel_names() -> Vec<&'static str> {
    let graph = common::random_graph(200, 4, common::GRAPH_SEED);
    let mut engine = Engine::new(CpuBackend::new(), &graph, SimParams::default())
        .expect("the probe graph is valid");
    engine.step(1).expect("probe step succeeds");
    let mut names: Vec<&'static str> = Vec::new();
    for r in engine.kernel_log().recent() {
        if !names.contains(&r.kernel) {
            names.push(r.kernel);
        }
    }
    names
}

fn ns(total: f64) -> Duration {
    Duration::from_secs_f64(total * 1e-9)
}

fn cpu_step(c: &mut Criterion) {
    for (group_name, wall) in [("cpu_step", false), ("cpu_step_wall", true)] {
        let mut group = c.benchmark_group(group_name);
        for case in &CASES {
            common::fixed_samples(&mut group, case.samples);
            // Nodes per second is the figure that compares across sizes.
            group.throughput(Throughput::Elements(case.num_nodes as u64));
            group.bench_function(BenchmarkId::from_parameter(case.label), |b| {
                b.iter_custom(|iters| {
                    ns((0..iters)
                        .map(|_| {
                            let step = case.take(group_name);
                            if wall {
                                step.wall_ns
                            } else {
                                step.cpu_ns
                            }
                        })
                        .sum())
                })
            });
        }
        group.finish();
    }
}

fn cpu_kernels(c: &mut Criterion) {
    let kernels = kernel_names();
    let mut group = c.benchmark_group("cpu_kernels");
    for case in &CASES {
        common::fixed_samples(&mut group, case.samples);
        group.throughput(Throughput::Elements(case.num_nodes as u64));
        for &kernel in &kernels {
            let id = format!("{}/{kernel}", case.label);
            group.bench_function(id.as_str(), |b| {
                b.iter_custom(|iters| {
                    ns((0..iters)
                        .map(|_| case.take(kernel).kernel_ns(kernel))
                        .sum())
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Criterion's own bootstrap of every benchmark is not used by `forcefield bench`; fewer
    // resamples keep its analysis from dominating the run.
    config = Criterion::default().nresamples(10_000);
    targets = cpu_step, cpu_kernels
}
criterion_main!(benches);
