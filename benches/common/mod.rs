/*!
What the engine benches share: the benchmark graphs, the planted faults of the run, and the
"fixed samples" plan that makes criterion take exactly one measured operation per sample.

# Fixed samples

Criterion normally plans iterations from a time budget. That does not suit these benches: an
operation (one step of a 100k-node layout, one SSSP) takes milliseconds to seconds and needs a
fresh engine built outside the timing, and a per-kernel benchmark reports a small share of the
wall time it costs, so a time budget would run it many times longer than planned. [`fixed_samples`]
sets flat sampling with a 1 ns measurement time and warm-up, so that every sample is one
iteration — one independently measured operation — and a benchmark costs `samples + 1` operations.
Criterion then warns that it is "unable to complete N samples in 1.0ns"; that is expected.

Options given on the bench's command line win: `--sample-size N` replaces the sample counts, and
`--measurement-time` / `--warm-up-time` bring back criterion's own time-budget planning.

# CPU time, not wall time

The engine benches on the CPU backend report the CPU time of the process (every thread, through
`CLOCK_PROCESS_CPUTIME_ID`), not the wall time. On a shared machine with two cores the wall time of
a step mostly measures the neighbours: when other processes hold the cores, a 10 ms kernel waits
for several scheduler slices, and A/A runs of the same build differed by 2x to 10x. The CPU time of
the work itself moves far less. Per-kernel times come the same way: [`CpuTimed`] wraps the backend
and returns each launch's CPU time as its duration, which is what the engine writes into its kernel
log. The price is that a regression in parallel efficiency alone (the same work, less overlap) does
not show; `cpu_step_wall/<size>` keeps the wall time of the same steps for that.

# Faults

[`faults`] reads `FORCEFIELD_FAULTS` (comma-separated fault names, as the `forcefield` binary
does); the root package's benches are built with the `faults` feature through its
self-dev-dependency, so `FORCEFIELD_FAULTS=slow-force-pass cargo bench` really runs the slow force
pass.
*/

// Each bench binary uses a different part of this module.
#![allow(dead_code)]

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, SamplingMode};
use forcefield::backend::layer::{Layer, Layered};
use forcefield::backend::Launch;
use forcefield::{Backend, BackendError, Edge, FaultSet, GraphSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seed of every benchmark graph, so that runs compare the same work.
pub const GRAPH_SEED: u64 = 0x5eed_f0ce;
/// Undirected edges per node in the random benchmark graphs.
pub const EDGES_PER_NODE: u32 = 10;

/// A uniform random graph: `edges_per_node * num_nodes` edges between distinct endpoints.
pub fn random_graph(num_nodes: u32, edges_per_node: u32, seed: u64) -> GraphSpec {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let edges = (0..num_nodes as u64 * edges_per_node as u64)
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

/// The planted faults named by `FORCEFIELD_FAULTS`; a bad name ends the bench with exit 2.
pub fn faults() -> FaultSet {
    match FaultSet::from_env() {
        Ok(f) => {
            if !f.is_empty() {
                let names: Vec<&str> = f.iter().map(|f| f.name()).collect();
                eprintln!("planted faults on: {}", names.join(", "));
            }
            f
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// Whether the bench's command line names `flag` (as `flag` or `flag=value`).
pub fn cli_has(flag: &str) -> bool {
    std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// One measured operation per sample, `samples` samples (see the module documentation).
pub fn fixed_samples(group: &mut BenchmarkGroup<'_, WallTime>, samples: usize) {
    group.sampling_mode(SamplingMode::Flat);
    if !cli_has("--sample-size") {
        group.sample_size(samples.max(10));
    }
    if !cli_has("--measurement-time") && !cli_has("--warm-up-time") {
        group.warm_up_time(Duration::from_nanos(1));
        group.measurement_time(Duration::from_nanos(1));
    }
}

/// Median of `samples` (which it sorts); `None` when empty.
pub fn median(samples: &mut [f64]) -> Option<f64> {
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

/// CPU time of this process so far (all threads), in nanoseconds.
pub fn process_cpu_ns() -> f64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID) {
        Ok(t) => t.tv_sec() as f64 * 1e9 + t.tv_nsec() as f64,
        Err(e) => {
            eprintln!("error: cannot read the process CPU-time clock: {e}");
            std::process::exit(3);
        }
    }
}

/// A backend whose kernel launches report their CPU time (all threads of the process) instead of
/// the wall time, so that the engine's kernel log holds CPU times. Everything else passes through.
pub type CpuTimed<B> = Layered<B, CpuTime>;

/// The layer of [`CpuTimed`].
pub struct CpuTime;

impl Layer for CpuTime {
    fn launch(&mut self, inner: &mut dyn Backend, launch: &Launch) -> Result<f64, BackendError> {
        let started = process_cpu_ns();
        inner.launch(launch)?;
        Ok((process_cpu_ns() - started) * 1e-9)
    }
}
