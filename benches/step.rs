/*!
Criterion benchmarks of the layout step on the CPU backend.

* `cpu_step` times one `Engine::step(1)` at 1k, 10k and 100k nodes (ten random edges per node, so
  100k nodes carry 1M edges).
* `cpu_kernels` breaks the 100k / 1M step down by kernel. Criterion cannot time one kernel from
  outside the engine, so this group reads the durations the engine already records in its kernel
  log: the benchmark's time is the sum of kernel time per step (the step's wall time less host work
  such as the bounds read-back and the cell-buffer fills), and the median of each kernel over every
  step the group ran is printed to stderr when the group ends.

Every timed step starts from the same state. A random graph does not settle quickly: the seeded cube
contracts for tens of steps into a dense ball, and the cost of the force pass grows with the density
(at 10k nodes a step costs more than ten times as much at step 30 as at step 0). Stepping one engine
over and over would therefore time a moving target that depends on how many iterations criterion
chose. Instead each size is warmed up once for [`WARMUP_STEPS`] steps, its positions are kept as a
snapshot, and every timed step runs on a fresh engine built from that snapshot outside the timing.
Velocities restart at zero there, which does not change the work: a step's cost follows where the
nodes are (how many neighbours share a grid stencil), not how fast they move.

Run with `cargo bench --bench step`; `cargo bench --bench step -- cpu_step/10k` runs one case.
*/

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use forcefield::{CpuBackend, Edge, Engine, GraphSpec, SimParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seed of every benchmark graph, so that runs compare the same work.
const GRAPH_SEED: u64 = 0x5eed_f0ce;
/// Undirected edges per node in every benchmark graph.
const EDGES_PER_NODE: u32 = 10;
/// Steps run from the seeded positions before the snapshot is taken, so that the timed state is a
/// layout in motion rather than the uniform cube it starts from.
const WARMUP_STEPS: u32 = 20;

/// One benchmark size, with the criterion settings that keep both groups near a minute on a
/// two-core machine, and its warmed-up snapshot (built on first use, so a filtered run pays only
/// for the sizes it runs).
struct Case {
    label: &'static str,
    num_nodes: u32,
    sample_size: usize,
    measurement: Duration,
    snapshot: OnceLock<GraphSpec>,
}

static CASES: [Case; 3] = [
    Case {
        label: "1k",
        num_nodes: 1_000,
        sample_size: 30,
        measurement: Duration::from_secs(3),
        snapshot: OnceLock::new(),
    },
    Case {
        label: "10k",
        num_nodes: 10_000,
        sample_size: 10,
        measurement: Duration::from_secs(5),
        snapshot: OnceLock::new(),
    },
    Case {
        label: "100k_1M",
        num_nodes: 100_000,
        sample_size: 10,
        measurement: Duration::from_secs(12),
        snapshot: OnceLock::new(),
    },
];

/// The case the per-kernel breakdown runs on.
const KERNEL_CASE: usize = 2;

impl Case {
    /// The benchmark graph with its positions after [`WARMUP_STEPS`] steps.
    fn snapshot(&self) -> &GraphSpec {
        self.snapshot
            .get_or_init(|| warmed_snapshot(self.num_nodes))
    }

    /// A fresh engine at the snapshot, ready for one timed step.
    fn engine(&self) -> Engine<CpuBackend> {
        Engine::new(CpuBackend::new(), self.snapshot(), snapshot_params())
            .expect("the snapshot graph is valid")
    }
}

/// A uniform random graph: `EDGES_PER_NODE * num_nodes` edges between distinct endpoints.
fn random_graph(num_nodes: u32, seed: u64) -> GraphSpec {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let edges = (0..num_nodes as u64 * EDGES_PER_NODE as u64)
        .map(|_| {
            let u = rng.gen_range(0..num_nodes);
            // Drawing v from the other n - 1 ids avoids self-loops, which add no spring work.
            let v = (u + rng.gen_range(1..num_nodes)) % num_nodes;
            Edge::new(u, v)
        })
        .collect();
    GraphSpec {
        num_nodes,
        edges,
        positions: None,
    }
}

/// Parameters of an engine resumed from a snapshot: the step counter continues where the warm-up
/// stopped, so that the damping schedule is the one the warmed engine would have used.
fn snapshot_params() -> SimParams {
    SimParams {
        iteration: WARMUP_STEPS,
        ..SimParams::default()
    }
}

/// The benchmark graph of `num_nodes`, with positions taken after [`WARMUP_STEPS`] steps.
fn warmed_snapshot(num_nodes: u32) -> GraphSpec {
    let mut graph = random_graph(num_nodes, GRAPH_SEED);
    let mut engine = Engine::new(CpuBackend::new(), &graph, SimParams::default())
        .expect("the benchmark graph is valid");
    engine.step(WARMUP_STEPS).expect("warm-up steps succeed");
    graph.positions = Some(engine.positions().expect("positions read back"));
    graph
}

fn cpu_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_step");
    group.warm_up_time(Duration::from_secs(1));
    // Steps take milliseconds to a second: equal iteration counts per sample keep the number of
    // steps (and engine builds) at the 100k size near the sample size.
    group.sampling_mode(SamplingMode::Flat);
    for case in &CASES {
        group.sample_size(case.sample_size);
        group.measurement_time(case.measurement);
        // Nodes per second is the figure that compares across sizes.
        group.throughput(Throughput::Elements(case.num_nodes as u64));
        group.bench_function(BenchmarkId::from_parameter(case.label), |b| {
            // Built here, not in the setup below, so that criterion's estimate of the time per
            // iteration (which counts setup) is not inflated by the one-off warm-up.
            case.snapshot();
            b.iter_batched_ref(
                || case.engine(),
                |engine| engine.step(1).expect("step succeeds"),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Median of `samples` (which it sorts); `None` when empty.
fn median(samples: &mut [f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    Some(if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    })
}

fn cpu_kernels(c: &mut Criterion) {
    let case = &CASES[KERNEL_CASE];
    let mut group = c.benchmark_group("cpu_kernels");
    group.warm_up_time(Duration::from_secs(1));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(case.sample_size);
    group.measurement_time(case.measurement);
    let mut per_kernel: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut steps = 0usize;
    let id = format!("{}/kernel_sum", case.label);
    group.bench_function(id.as_str(), |b| {
        case.snapshot();
        b.iter_custom(|iters| {
            let mut kernel_us = 0.0;
            for _ in 0..iters {
                let mut engine = case.engine();
                engine.step(1).expect("step succeeds");
                // A fresh engine logs only this step's launches.
                for rec in engine.kernel_log().recent() {
                    kernel_us += rec.duration_us;
                    per_kernel
                        .entry(rec.kernel)
                        .or_default()
                        .push(rec.duration_us);
                }
                steps += 1;
            }
            Duration::from_secs_f64(kernel_us * 1e-6)
        })
    });
    group.finish();
    // Nothing ran when criterion's filter or `--list` skipped the group.
    if steps == 0 {
        return;
    }
    eprintln!(
        "cpu_kernels/{}: median per kernel over {steps} steps",
        case.label
    );
    let mut total = 0.0;
    for (kernel, samples) in &mut per_kernel {
        if let Some(m) = median(samples) {
            total += m;
            eprintln!("  {kernel:<14} {:>10.2} ms", m / 1e3);
        }
    }
    eprintln!("  {:<14} {:>10.2} ms", "(sum)", total / 1e3);
}

criterion_group!(benches, cpu_step, cpu_kernels);
criterion_main!(benches);
