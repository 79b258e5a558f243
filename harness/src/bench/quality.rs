/*!
Layout quality next to time: what a benchmark entry records about the layouts the measured build
produces, so that a speedup that degrades the layout shows in `forcefield bench compare`.

For each fixed-seed graph (the small real networks of `corpora/graphs` and a generated random
graph), [`measure`] lays it out on the CPU backend (one thread, so bit-for-bit reproducible) with
the default parameters and the planted faults of the recording process, and computes:

* **energy** after [`ENERGY_STEPS`] steps: the potential of the engine's own force model — springs
  `w k/2 (d - L)^2` per edge, repulsion `repel_k / sqrt(d^2 + eps)` per pair within the cutoff,
  gravity `g/2 |p|^2` per node (lower is better);
* **distance ratio** after the same steps: the mean distance of connected pairs over the mean
  distance of all pairs (lower is better: neighbours sit close compared with the layout's size);
* **steps to converge**: steps until the energy settles — the first checkpoint (every
  [`CHECK_EVERY`] steps of a [`CONVERGE_STEPS`]-step run) from which it stays within
  [`SETTLED_BAND`] of its final level (fewer is better; `None` when it never settles). The layout
  never comes to rest — nodes crossing grid cells keep it jittering at a fraction of an edge length
  per step — so the energy level, not the motion, is what settles.

The numbers are deterministic for a build, so compare treats any change beyond a small relative
tolerance ([`DEFAULT_TOLERANCE`]) as real.
*/

use std::path::Path;

use forcefield::{Backend, CpuBackend, Edge, Engine, EngineConfig, EngineError, FaultSet};
use forcefield::{GraphSpec, SimParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Steps before energy and distance ratio are measured.
pub const ENERGY_STEPS: u32 = 300;
/// Steps of the run that measures convergence.
pub const CONVERGE_STEPS: u32 = 1000;
/// Steps between energy checkpoints.
pub const CHECK_EVERY: u32 = 10;
/// Checkpoints at the end whose mean is the settled energy level.
pub const FINAL_CHECKPOINTS: usize = 10;
/// Settled: the energy stays within this fraction of its final level.
pub const SETTLED_BAND: f64 = 0.02;
/// Relative change of a quality metric that compare reports as a change.
pub const DEFAULT_TOLERANCE: f64 = 0.01;
/// The corpus graphs measured, by file stem.
pub const CORPUS_GRAPHS: [&str; 4] = ["karate", "lesmis", "dolphins", "football"];
/// Name, nodes, edges per node and seed of the generated graph.
pub const GENERATED: (&str, u32, u32, u64) = ("random_1k", 1000, 3, 0x9a11_7e57);
/// Pairs sampled for the mean pair distance of graphs above this many nodes (all pairs below).
const EXACT_PAIRS_UP_TO: usize = 2000;

/// The quality of one graph's layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityRecord {
    /// The graph's name.
    pub graph: String,
    /// Its nodes.
    pub nodes: u32,
    /// Its edges.
    pub edges: usize,
    /// Steps before `energy` and `distance_ratio`.
    pub steps: u32,
    /// Potential energy of the layout after `steps` steps.
    pub energy: f64,
    /// Mean connected-pair distance over mean pair distance after `steps` steps.
    pub distance_ratio: f64,
    /// Steps until the energy settled; `None` when it did not within [`CONVERGE_STEPS`].
    pub steps_to_converge: Option<u32>,
}

/// The metrics of a [`QualityRecord`] by name, for tables: (name, value, lower is better).
pub fn metrics(r: &QualityRecord) -> [(&'static str, Option<f64>); 3] {
    [
        ("energy", Some(r.energy)),
        ("distance_ratio", Some(r.distance_ratio)),
        ("steps_to_converge", r.steps_to_converge.map(f64::from)),
    ]
}

/// Potential energy of `positions` under `params` (see the module documentation).
pub fn energy(positions: &[[f32; 3]], edges: &[Edge], params: &SimParams) -> f64 {
    let p64 = |p: &[f32; 3]| [p[0] as f64, p[1] as f64, p[2] as f64];
    let dist2 = |a: [f64; 3], b: [f64; 3]| {
        (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
    };
    let mut e = 0.0;
    let springs = params.feature_flags & forcefield::params::features::SPRINGS != 0;
    let repulsion = params.feature_flags & forcefield::params::features::REPULSION != 0;
    let gravity = params.feature_flags & forcefield::params::features::CENTER_GRAVITY != 0;
    if springs {
        for edge in edges {
            let (Some(a), Some(b)) = (
                positions.get(edge.u as usize),
                positions.get(edge.v as usize),
            ) else {
                continue;
            };
            let d = dist2(p64(a), p64(b)).sqrt();
            e += edge.w as f64 * params.spring_k as f64 / 2.0
                * (d - params.rest_length as f64).powi(2);
        }
    }
    if repulsion {
        let cutoff2 = (params.repulsion_cutoff as f64).powi(2);
        let eps = params.repulsion_softening_epsilon as f64;
        for i in 0..positions.len() {
            let pi = p64(&positions[i]);
            for pj in &positions[i + 1..] {
                let d2 = dist2(pi, p64(pj));
                if d2 < cutoff2 {
                    e += params.repel_k as f64 / (d2 + eps).sqrt();
                }
            }
        }
    }
    if gravity {
        for p in positions {
            let q = p64(p);
            e += params.center_gravity_k as f64 / 2.0 * (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]);
        }
    }
    e
}

fn distance(a: &[f32; 3], b: &[f32; 3]) -> f64 {
    let d: f64 = (0..3).map(|k| (a[k] as f64 - b[k] as f64).powi(2)).sum();
    d.sqrt()
}

/// Mean distance of connected pairs over mean distance of all pairs (a fixed-seed sample of pairs
/// for large graphs); `NaN` without edges or pairs.
pub fn distance_ratio(positions: &[[f32; 3]], edges: &[Edge]) -> f64 {
    let connected: Vec<f64> = edges
        .iter()
        .filter(|e| e.u != e.v)
        .filter_map(|e| {
            Some(distance(
                positions.get(e.u as usize)?,
                positions.get(e.v as usize)?,
            ))
        })
        .collect();
    let n = positions.len();
    if connected.is_empty() || n < 2 {
        return f64::NAN;
    }
    let (mut sum, mut count) = (0.0, 0u64);
    if n <= EXACT_PAIRS_UP_TO {
        for i in 0..n {
            for j in i + 1..n {
                sum += distance(&positions[i], &positions[j]);
                count += 1;
            }
        }
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(0x9a12_5eed);
        for _ in 0..200_000 {
            let i = rng.gen_range(0..n);
            let j = (i + rng.gen_range(1..n)) % n;
            sum += distance(&positions[i], &positions[j]);
            count += 1;
        }
    }
    let mean_connected = connected.iter().sum::<f64>() / connected.len() as f64;
    let mean_pair = sum / count as f64;
    mean_connected / mean_pair
}

/// Lays out `graph` on `backend` with default parameters and `faults`, and measures it.
pub fn measure<Bk: Backend>(
    name: &str,
    graph: &GraphSpec,
    backend: Bk,
    faults: FaultSet,
) -> Result<QualityRecord, EngineError> {
    let params = SimParams::default();
    let mut engine = Engine::with_config(
        backend,
        graph,
        params.clone(),
        EngineConfig::default(),
        faults,
    )?;
    let mut at_energy_steps = None;
    // Energy at every checkpoint: (step, energy).
    let mut trace: Vec<(u32, f64)> = Vec::new();
    let mut step = 0;
    while step < CONVERGE_STEPS {
        engine.step(CHECK_EVERY)?;
        step += CHECK_EVERY;
        let positions = engine.positions()?;
        trace.push((step, energy(&positions, &graph.edges, &params)));
        if step == ENERGY_STEPS {
            at_energy_steps = Some(positions);
        }
    }
    let positions = match at_energy_steps {
        Some(p) => p,
        None => engine.positions()?,
    };
    Ok(QualityRecord {
        graph: name.to_string(),
        nodes: graph.num_nodes,
        edges: graph.edges.len(),
        steps: ENERGY_STEPS,
        energy: energy(&positions, &graph.edges, &params),
        distance_ratio: distance_ratio(&positions, &graph.edges),
        steps_to_converge: settling_step(&trace),
    })
}

/// The first checkpoint from which the energy stays within [`SETTLED_BAND`] of its final level
/// (the mean of the last [`FINAL_CHECKPOINTS`] checkpoints); `None` when the final level itself is
/// not settled (the last checkpoints leave the band) or there is no trace.
pub fn settling_step(trace: &[(u32, f64)]) -> Option<u32> {
    if trace.len() < FINAL_CHECKPOINTS {
        return None;
    }
    let tail = &trace[trace.len() - FINAL_CHECKPOINTS..];
    let level = tail.iter().map(|(_, e)| e).sum::<f64>() / FINAL_CHECKPOINTS as f64;
    let inside = |e: f64| (e - level).abs() <= SETTLED_BAND * level.abs();
    if !level.is_finite() || !tail.iter().all(|&(_, e)| inside(e)) {
        return None;
    }
    let last_outside = trace.iter().rposition(|&(_, e)| !inside(e));
    Some(match last_outside {
        Some(i) => trace[i + 1].0,
        None => trace[0].0,
    })
}

/// The generated graph: [`GENERATED`]'s nodes, each with that many random edges (no self-loops).
pub fn generated_graph() -> GraphSpec {
    let (_, n, per_node, seed) = GENERATED;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let edges = (0..n * per_node)
        .map(|_| {
            let u = rng.gen_range(0..n);
            let v = (u + rng.gen_range(1..n)) % n;
            Edge::new(u, v)
        })
        .collect();
    GraphSpec {
        num_nodes: n,
        edges,
        positions: None,
    }
}

/// Why the quality suite could not run.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    /// A corpus graph cannot be read.
    #[error(transparent)]
    Graph(#[from] crate::graph_io::ReadError),
    /// The engine failed on a graph.
    #[error("layout of {graph} failed: {source}")]
    Engine {
        /// The graph.
        graph: String,
        /// Why.
        #[source]
        source: EngineError,
    },
}

/// The suite: every graph of [`CORPUS_GRAPHS`] found in `graphs_dir` (missing ones are skipped
/// with a note on stderr) and the generated graph, on one-thread CPU backends.
pub fn measure_suite(
    graphs_dir: &Path,
    faults: FaultSet,
) -> Result<Vec<QualityRecord>, QualityError> {
    let mut graphs = Vec::new();
    for name in CORPUS_GRAPHS {
        let path = graphs_dir.join(format!("{name}.edges"));
        if !path.is_file() {
            eprintln!("bench: quality: {} not found, skipped", path.display());
            continue;
        }
        graphs.push((name.to_string(), crate::graph_io::read_graph(&path)?));
    }
    graphs.push((GENERATED.0.to_string(), generated_graph()));
    graphs
        .into_iter()
        .map(|(name, graph)| {
            measure(&name, &graph, CpuBackend::with_threads(1), faults).map_err(|source| {
                QualityError::Engine {
                    graph: name,
                    source,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_the_force_models_potential() {
        let params = SimParams {
            feature_flags: forcefield::params::features::SPRINGS,
            spring_k: 2.0,
            rest_length: 1.0,
            ..SimParams::default()
        };
        // One edge of length 3: k/2 (3 - 1)^2 = 4.
        let pos = [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]];
        assert!((energy(&pos, &[Edge::new(0, 1)], &params) - 4.0).abs() < 1e-12);
        let params = SimParams {
            feature_flags: forcefield::params::features::REPULSION,
            repel_k: 10.0,
            repulsion_softening_epsilon: 0.0 + 7.0,
            repulsion_cutoff: 5.0,
            ..SimParams::default()
        };
        // d^2 = 9, eps = 7: 10 / sqrt(16) = 2.5; a pair beyond the cutoff adds nothing.
        let pos = [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [100.0, 0.0, 0.0]];
        assert!((energy(&pos, &[], &params) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn distance_ratio_compares_neighbours_with_all_pairs() {
        // A path 0-1-2 on a line: connected pairs 1 apart, all pairs (1 + 1 + 2) / 3 apart.
        let pos = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]];
        let r = distance_ratio(&pos, &[Edge::new(0, 1), Edge::new(1, 2)]);
        assert!((r - 0.75).abs() < 1e-12, "{r}");
        assert!(distance_ratio(&pos, &[]).is_nan());
    }

    #[test]
    fn settling_is_the_first_checkpoint_that_stays_in_the_band() {
        let trace: Vec<(u32, f64)> = [500.0, 200.0, 99.0, 130.0, 101.0, 100.0, 99.5, 100.5, 100.0]
            .iter()
            .enumerate()
            .map(|(i, &e)| ((i as u32 + 1) * 10, e))
            .chain((10..20).map(|i| (i * 10, 100.0)))
            .collect();
        // 130 at step 40 leaves the 2% band around 100; from step 50 on it stays inside.
        assert_eq!(settling_step(&trace), Some(50));
        // A final level that still moves is not settled.
        let drifting: Vec<(u32, f64)> = (1..30).map(|i| (i * 10, 100.0 * i as f64)).collect();
        assert_eq!(settling_step(&drifting), None);
        assert_eq!(settling_step(&[]), None);
    }

    #[test]
    fn a_layout_is_measured_reproducibly_and_is_better_than_random() {
        let graph = GraphSpec {
            num_nodes: 12,
            edges: (0..12).map(|i| Edge::new(i, (i + 1) % 12)).collect(),
            positions: None,
        };
        let a = measure("ring", &graph, CpuBackend::with_threads(1), FaultSet::NONE).unwrap();
        let b = measure("ring", &graph, CpuBackend::with_threads(1), FaultSet::NONE).unwrap();
        assert_eq!(a, b);
        assert!(a.distance_ratio < 0.9, "{a:?}");
        assert!(a.energy.is_finite() && a.energy > 0.0);
        assert!(a.steps_to_converge.is_some(), "{a:?}");
        // The planted slow force pass scans more cells for the same forces: the same layout.
        let slow = FaultSet::of(&[forcefield::Fault::SlowForcePass]);
        let c = measure("ring", &graph, CpuBackend::with_threads(1), slow).unwrap();
        assert_eq!(a, c);
    }
}
