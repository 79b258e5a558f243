//! Initial graphs: the [`Family`] of a generated graph, its edges and positions, and the bounds
//! that keep a generated case's cost in proportion to what it tests.

use forcefield::Edge;
use rand::seq::SliceRandom;
use rand::Rng;

use super::config::GenConfig;
use super::params::ParamTweak;
use super::plans::OpPlan;
use crate::case::CaseGraph;

/// A family of initial graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// No nodes at all.
    Empty,
    /// One node, no edges.
    SingleNode,
    /// A path.
    Path,
    /// A star around node 0.
    Star,
    /// Every pair (at most 24 nodes).
    Complete,
    /// A 3-D grid with edges to the six neighbours.
    Lattice,
    /// Erdős–Rényi: each pair with the same probability (mean degree 1..4).
    ErdosRenyi,
    /// Barabási–Albert preferential attachment.
    BarabasiAlbert,
    /// Stochastic block model: dense blocks, sparse between.
    StochasticBlock,
    /// A path with self-loops.
    SelfLoops,
    /// Random edges, each repeated with different weights.
    MultiEdges,
    /// A few connected nodes and many isolated ones.
    IsolatedNodes,
    /// Nodes stacked on a few identical positions.
    CoincidentPositions,
    /// Random edges of weight 0, 1e-6, 1 and 1e6.
    ExtremeWeights,
}

impl Family {
    /// Every family, simplest first (the order `proptest` shrinks toward).
    pub const ALL: &'static [Family] = &[
        Family::Empty,
        Family::SingleNode,
        Family::Path,
        Family::Star,
        Family::Complete,
        Family::Lattice,
        Family::ErdosRenyi,
        Family::BarabasiAlbert,
        Family::StochasticBlock,
        Family::SelfLoops,
        Family::MultiEdges,
        Family::IsolatedNodes,
        Family::CoincidentPositions,
        Family::ExtremeWeights,
    ];
}

pub(super) const EXTREME_WEIGHTS: [f32; 4] = [0.0, 1e-6, 1.0, 1e6];

pub(super) fn weight<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    if rng.gen_bool(0.8) {
        1.0
    } else {
        rng.gen_range(0.1f32..10.0)
    }
}

pub(super) fn random_pairs<R: Rng + ?Sized>(
    rng: &mut R,
    n: u32,
    m: usize,
    allow_loops: bool,
) -> Vec<Edge> {
    let mut out = Vec::with_capacity(m);
    if n == 0 || (n == 1 && !allow_loops) {
        return out;
    }
    while out.len() < m {
        let (u, v) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if u != v || allow_loops {
            out.push(Edge {
                u,
                v,
                w: weight(rng),
            });
        }
    }
    out
}

/// Each pair with probability `p`, by iterating pairs when small and by sampling when large.
pub(super) fn gnp<R: Rng + ?Sized>(rng: &mut R, nodes: std::ops::Range<u32>, p: f64) -> Vec<Edge> {
    let n = nodes.len() as u64;
    let mut out = Vec::new();
    if n < 2 {
        return out;
    }
    if n <= 256 {
        for u in nodes.clone() {
            for v in u + 1..nodes.end {
                if rng.gen_bool(p) {
                    out.push(Edge {
                        u,
                        v,
                        w: weight(rng),
                    });
                }
            }
        }
    } else {
        let m = (p * (n * (n - 1) / 2) as f64).round() as usize;
        for _ in 0..m {
            let u = rng.gen_range(nodes.clone());
            let v = rng.gen_range(nodes.clone());
            if u != v {
                out.push(Edge {
                    u,
                    v,
                    w: weight(rng),
                });
            }
        }
    }
    out
}

/// The most nodes a generated case stacks on one position. Every node of a stack is in every
/// other's neighbourhood, so a stack of `k` costs `k²` repulsion terms per step: a few thousand
/// stacked nodes make a case that runs for tens of seconds (and looks like a hang to the
/// watchdog) without exercising anything a stack of 64 does not.
pub const MAX_STACK: u32 = 64;

/// The most live nodes of a case whose force-pass neighbourhoods are not bounded by the density
/// ([`wide_neighbourhoods`]). There every node may be in every other's neighbourhood, so a step
/// costs `n²` repulsion candidates: 6,000 nodes in one cell made a case of 30 s on the CPU (a false
/// hang under load) that tests nothing 512 nodes in one cell do not.
pub const MAX_WIDE_NEIGHBOURHOOD_NODES: u32 = 512;

/// Whether a case's cells may hold all its nodes at once: a huge cell size, a cutoff so large that
/// the automatic cell size (at least `cutoff / 64`) spans the generated layouts, or a grid-cell
/// cap (a few cells for the whole layout), set initially or by a later `set_params`.
pub fn wide_neighbourhoods(tweaks: &[ParamTweak], plans: &[OpPlan], grid_cap: bool) -> bool {
    let wide = |t: &[ParamTweak]| {
        t.iter()
            .any(|t| matches!(t, ParamTweak::HugeCellSize | ParamTweak::HugeCutoff))
    };
    grid_cap
        || wide(tweaks)
        || plans
            .iter()
            .any(|p| matches!(p, OpPlan::SetParams { tweaks } if wide(tweaks)))
}

/// `cfg` and the initial node count `nodes`, lowered to [`MAX_WIDE_NEIGHBOURHOOD_NODES`] live
/// nodes when the case's neighbourhoods are wide: the generator's bound on a case's cost.
pub(super) fn bounded_cost(cfg: &GenConfig, nodes: u32, wide: bool) -> (GenConfig, u32) {
    if !wide {
        return (cfg.clone(), nodes);
    }
    let most = MAX_WIDE_NEIGHBOURHOOD_NODES;
    (
        GenConfig {
            max_live_nodes: cfg.max_live_nodes.min(most),
            ..cfg.clone()
        },
        nodes.min(most),
    )
}

/// Half the side of a box that holds `count` randomly placed nodes at one per 512 cubic units (the
/// density the engine's own seeding gives), so that the force pass's neighbourhoods, and with
/// them the cost of a step, do not grow with the number of nodes.
pub(super) fn spread(count: u32) -> f32 {
    4.0 * (count.max(1) as f32).cbrt()
}

pub(super) fn positions_in<R: Rng + ?Sized>(rng: &mut R, count: u32, half: f32) -> Vec<[f32; 3]> {
    (0..count)
        .map(|_| {
            [
                rng.gen_range(-half..=half),
                rng.gen_range(-half..=half),
                rng.gen_range(-half..=half),
            ]
        })
        .collect()
}

/// A graph of `family` with about `n` nodes (exactly `n` unless the family fixes the count).
pub fn generate_graph<R: Rng + ?Sized>(rng: &mut R, family: Family, n: u32) -> CaseGraph {
    let mut positions = None;
    let (num_nodes, edges) = match family {
        Family::Empty => (0, Vec::new()),
        Family::SingleNode => (1, Vec::new()),
        Family::Path => (n, (1..n).map(|i| Edge::new(i - 1, i)).collect()),
        Family::Star => (n, (1..n).map(|i| Edge::new(0, i)).collect()),
        Family::Complete => {
            let n = n.min(24);
            let mut e = Vec::new();
            for u in 0..n {
                for v in u + 1..n {
                    e.push(Edge::new(u, v));
                }
            }
            (n, e)
        }
        Family::Lattice => {
            let a = ((n as f64).cbrt().ceil() as u32).max(1);
            let b = (((n as f64) / a as f64).sqrt().ceil() as u32).max(1);
            let id = |x: u32, y: u32, z: u32| x + a * (y + b * z);
            let mut e = Vec::new();
            for i in 0..n {
                let (x, y, z) = (i % a, (i / a) % b, i / (a * b));
                for (dx, dy, dz) in [(1, 0, 0), (0, 1, 0), (0, 0, 1)] {
                    let (nx, ny, nz) = (x + dx, y + dy, z + dz);
                    if nx < a && ny < b {
                        let j = id(nx, ny, nz);
                        if j < n {
                            e.push(Edge::new(i, j));
                        }
                    }
                }
            }
            (n, e)
        }
        Family::ErdosRenyi => {
            let degree = rng.gen_range(1.0..4.0);
            let p = (degree / (n.max(2) - 1) as f64).min(1.0);
            (n, gnp(rng, 0..n, p))
        }
        Family::BarabasiAlbert => {
            let k = rng.gen_range(1..=3u32);
            let mut e = Vec::new();
            // Each endpoint of every edge, so that picking uniformly picks by degree.
            let mut ends: Vec<u32> = Vec::new();
            for v in 1..n {
                for _ in 0..k.min(v) {
                    let u = if ends.is_empty() {
                        0
                    } else {
                        ends[rng.gen_range(0..ends.len())]
                    };
                    e.push(Edge {
                        u,
                        v,
                        w: weight(rng),
                    });
                    ends.extend([u, v]);
                }
            }
            (n, e)
        }
        Family::StochasticBlock => {
            let blocks = rng.gen_range(2..=5u32).min(n.max(1));
            let size = n.div_ceil(blocks.max(1)).max(1);
            let mut e = Vec::new();
            let mut start = 0;
            while start < n {
                let end = (start + size).min(n);
                let p_in = (3.0 / (end - start).max(2) as f64).min(0.6);
                e.extend(gnp(rng, start..end, p_in));
                start = end;
            }
            let between = (n as usize / 8).max(1);
            e.extend(random_pairs(rng, n, between, false));
            (n, e)
        }
        Family::SelfLoops => {
            let mut e: Vec<Edge> = (1..n).map(|i| Edge::new(i - 1, i)).collect();
            for _ in 0..(n / 3).max(1) {
                if n > 0 {
                    let u = rng.gen_range(0..n);
                    e.push(Edge {
                        u,
                        v: u,
                        w: weight(rng),
                    });
                }
            }
            (n, e)
        }
        Family::MultiEdges => {
            let mut e = Vec::new();
            for base in random_pairs(rng, n, (n as usize / 2).max(1), true) {
                for _ in 0..rng.gen_range(2..=4) {
                    e.push(Edge {
                        w: weight(rng),
                        ..base
                    });
                }
            }
            (n, e)
        }
        Family::IsolatedNodes => {
            let connected = (n / 4).max(2).min(n);
            (n, gnp(rng, 0..connected, 0.5))
        }
        Family::CoincidentPositions => {
            let count = rng.gen_range(1..=3).max(n.div_ceil(MAX_STACK));
            let mut spots = positions_in(rng, count, spread(n).max(5.0));
            if rng.gen_bool(0.5) {
                // The origin, where f32 resolves the smallest distances.
                spots[0] = [0.0; 3];
            }
            let jitter = rng.gen_bool(0.5);
            positions = Some(
                (0..n)
                    .map(|i| {
                        // Round-robin over the spots: at most `MAX_STACK` on each.
                        let mut p = spots[i as usize % spots.len()];
                        if jitter && rng.gen_bool(0.5) {
                            // Nearly coincident: off by 1e-30 .. 1e-3 along one axis.
                            let axis = rng.gen_range(0..3);
                            let offset = 10f32.powi(rng.gen_range(-30..=-3));
                            p[axis] += if rng.gen_bool(0.5) { offset } else { -offset };
                        }
                        p
                    })
                    .collect(),
            );
            (n, (1..n).map(|i| Edge::new(i - 1, i)).collect())
        }
        Family::ExtremeWeights => {
            let mut e = random_pairs(rng, n, n as usize, false);
            for edge in &mut e {
                edge.w = *EXTREME_WEIGHTS.choose(rng).unwrap_or(&1.0);
            }
            (n, e)
        }
    };
    if positions.is_none() && num_nodes > 0 && rng.gen_bool(0.2) {
        positions = Some(positions_in(rng, num_nodes, spread(num_nodes)));
    }
    CaseGraph {
        num_nodes: num_nodes as u64,
        edges,
        positions,
    }
}
