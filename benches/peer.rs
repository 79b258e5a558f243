/*!
The peer group: forcefield's CPU step next to a well-known CPU force-layout crate on the same
graphs in the same run, so that the ratio between them is measured, not quoted.

The peer is `fa2` (a Rust port of graphology's ForceAtlas2; MIT), with Barnes–Hut repulsion and its
rayon-parallel path, which is how it is meant to be used on graphs of thousands of nodes; forcefield
runs on `CpuBackend::new()` (every core). Both use every core of the machine.

* `peer/<graph>/forcefield`: one `Engine::step(1)`, from a snapshot taken after [`WARMUP`] steps, on
  a fresh engine per sample (as in the step benchmark).
* `peer/<graph>/fa2`: one `FA2Layout::epoch()`, continuing a layout warmed up for [`WARMUP`] epochs
  (ForceAtlas2's cost follows the Barnes–Hut tree, which changes little once the layout has spread).

Graphs: `power` (the US power grid from `corpora/graphs`, 4941 nodes, 6594 edges) and `random_10k`
(10k nodes, 100k random edges, the step benchmark's generator). The two algorithms differ (3-D with
a cutoff grid against 2-D ForceAtlas2), so the ratio is of one iteration's cost on the same graph,
not of equal work; `forcefield bench compare` prints it for the current entry.

Run with `cargo bench --bench peer` (about 15 s on two cores).
*/

mod common;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fa2::{FA2Data, FA2Settings};
use forcefield::{CpuBackend, Edge, Engine, EngineConfig, GraphSpec, SimParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Steps (or epochs) before measuring.
const WARMUP: u32 = 20;
/// Samples per benchmark.
const SAMPLES: usize = 30;

/// The `power` grid from the corpus.
fn power_graph() -> GraphSpec {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/corpora/graphs/power.edges");
    let text = std::fs::read_to_string(path).expect("corpora/graphs/power.edges is readable");
    let mut edges = Vec::new();
    let mut num_nodes = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('%') {
            continue;
        }
        let mut it = line.split_whitespace().map(|w| w.parse::<u32>());
        let (Some(Ok(u)), Some(Ok(v))) = (it.next(), it.next()) else {
            panic!("power.edges: bad line `{line}`");
        };
        num_nodes = num_nodes.max(u + 1).max(v + 1);
        edges.push(Edge::new(u, v));
    }
    GraphSpec {
        num_nodes,
        edges,
        positions: None,
    }
}

fn graphs() -> Vec<(&'static str, GraphSpec)> {
    vec![
        ("power", power_graph()),
        (
            "random_10k",
            common::random_graph(10_000, common::EDGES_PER_NODE, common::GRAPH_SEED),
        ),
    ]
}

fn forcefield_engine(graph: &GraphSpec, params: SimParams) -> Engine<CpuBackend> {
    Engine::with_config(
        CpuBackend::new(),
        graph,
        params,
        EngineConfig::default(),
        common::faults(),
    )
    .expect("the benchmark graph is valid")
}

fn peer(c: &mut Criterion) {
    let mut group = c.benchmark_group("peer");
    common::fixed_samples(&mut group, SAMPLES);
    for (name, mut graph) in graphs() {
        group.throughput(Throughput::Elements(graph.num_nodes as u64));

        // forcefield: a snapshot after the warm-up, a fresh engine per measured step.
        let mut warm = forcefield_engine(&graph, SimParams::default());
        warm.step(WARMUP).expect("warm-up steps succeed");
        graph.positions = Some(warm.positions().expect("positions read back"));
        drop(warm);
        let resumed = SimParams {
            iteration: WARMUP,
            ..SimParams::default()
        };
        group.bench_function(format!("{name}/forcefield"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut engine = forcefield_engine(&graph, resumed.clone());
                    let started = Instant::now();
                    engine.step(1).expect("step succeeds");
                    total += started.elapsed();
                }
                total
            })
        });

        // fa2: seeded random start in the unit square, Barnes-Hut, parallel.
        let n = graph.num_nodes as usize;
        let mut data = FA2Data::<f32>::with_capacity(n, graph.edges.len());
        let mut rng = ChaCha8Rng::seed_from_u64(common::GRAPH_SEED);
        for _ in 0..n {
            data.add_node_with_position(rng.gen::<f32>(), rng.gen::<f32>());
        }
        for e in &graph.edges {
            data.add_edge(e.u as usize, e.v as usize);
        }
        let layout = RefCell::new(
            FA2Settings::<f32>::from_graph_order(n)
                .parallel(true)
                .with_barnes_hut()
                .build(data),
        );
        layout.borrow_mut().run(WARMUP as usize);
        group.bench_function(format!("{name}/fa2"), |b| {
            b.iter_custom(|iters| {
                let mut layout = layout.borrow_mut();
                let started = Instant::now();
                for _ in 0..iters {
                    criterion::black_box(layout.epoch());
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().nresamples(10_000);
    targets = peer
}
criterion_main!(benches);
