/*!
Case generation: random graphs of many families, extreme-but-valid parameters, and operation lists
weighted toward resize sequences — the raw material of a campaign.

Both generators here, [`generate_case`] (driven by a seeded `rand` generator, for campaigns) and
[`case_strategy`] (a `proptest` strategy, for shrinking), are built from the same blocks:

* a [`Family`] and a node count give the initial graph ([`generate_graph`]);
* a list of [`ParamTweak`]s, applied to the defaults, gives the parameters;
* a list of [`OpPlan`]s gives the operations. A plan is an op *relative to the state it meets*
  ("add more nodes than the capacity has room for", "remove 3 random nodes"); [`realize`] turns the
  plans into concrete [`Op`]s while tracking the live counts and the capacity the engine will have, so
  that every generated case is valid whatever the plans are. That is what lets `proptest` delete and
  shrink plans freely.

Two more choices are drawn after all of those, so that they never change the rest of a case:

* an engine grid-cell cap ([`GenConfig::small_grid_cap_probability`], for initial graphs of at most
  `max_small_nodes` nodes): a small cap (8..=4096 cells, log-uniform) makes the grid stage coarsen
  its cells, where grid-size bugs live;
* injected environment faults ([`GenConfig::inject_rate`], 0 by default): an `inject` op (an
  allocation, copy or launch failure or a lost context, `nth` 1..=6) before a plan, four times as
  likely before a resize (growth past capacity, `reserve`, `shrink_to_fit`, a resize cycle).

Every case produced here passes [`Case::validate`].
*/

use forcefield::params::features;
use forcefield::{Edge, EnvFault, Fault, SimParams};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::case::{BackendKind, Case, CaseEngine, CaseGraph, Op};

/// Sizes and probabilities of generation.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Most graphs have 2..=this many nodes.
    pub max_small_nodes: u32,
    /// The occasional large graph has up to this many nodes.
    pub max_large_nodes: u32,
    /// Probability of a large graph.
    pub large_probability: f64,
    /// Most plans per case (a plan may give more than one op).
    pub max_plans: usize,
    /// Most steps per `step` op.
    pub max_step_count: u32,
    /// Growth stops at this many live nodes.
    pub max_live_nodes: u32,
    /// Growth stops at this many live edges.
    pub max_live_edges: u32,
    /// Probability that the initial parameters carry extreme tweaks.
    pub extreme_params_probability: f64,
    /// Planted faults written into every case.
    pub faults: Vec<Fault>,
    /// Backend written into every case.
    pub backend: BackendKind,
    /// Probability of an `inject` op before a plan (times [`RESIZE_INJECT_WEIGHT`] before a
    /// resize); 0 generates none.
    pub inject_rate: f64,
    /// Probability that a case caps the engine's grid at a small number of cells.
    pub small_grid_cap_probability: f64,
    /// Probability of a constraint op (set a position or distance constraint, clear them all)
    /// before a plan; 0 generates none.
    pub constraint_rate: f64,
}

/// How much likelier an injected fault is before a resize plan than before any other.
pub const RESIZE_INJECT_WEIGHT: f64 = 4.0;
/// The `inject_rate` that `forcefield run --inject` uses.
pub const DEFAULT_INJECT_RATE: f64 = 0.1;
/// Smallest and largest generated grid-cell caps.
pub const SMALL_GRID_CAPS: (u32, u32) = (8, 4096);

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            max_small_nodes: 64,
            max_large_nodes: 3000,
            large_probability: 0.03,
            max_plans: 16,
            max_step_count: 20,
            max_live_nodes: 6000,
            max_live_edges: 24_000,
            extreme_params_probability: 0.2,
            faults: Vec::new(),
            backend: BackendKind::Cpu,
            inject_rate: 0.0,
            small_grid_cap_probability: 0.15,
            constraint_rate: 0.15,
        }
    }
}

impl GenConfig {
    /// Small cases only: for tests that must run quickly in debug builds.
    pub fn small() -> Self {
        GenConfig {
            max_small_nodes: 24,
            max_large_nodes: 24,
            large_probability: 0.0,
            max_plans: 10,
            max_step_count: 4,
            max_live_nodes: 96,
            max_live_edges: 384,
            ..GenConfig::default()
        }
    }
}

// ---- graphs -----------------------------------------------------------------------------------

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

const EXTREME_WEIGHTS: [f32; 4] = [0.0, 1e-6, 1.0, 1e6];

fn weight<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    if rng.gen_bool(0.8) {
        1.0
    } else {
        rng.gen_range(0.1f32..10.0)
    }
}

fn random_pairs<R: Rng + ?Sized>(rng: &mut R, n: u32, m: usize, allow_loops: bool) -> Vec<Edge> {
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
fn gnp<R: Rng + ?Sized>(rng: &mut R, nodes: std::ops::Range<u32>, p: f64) -> Vec<Edge> {
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
fn bounded_cost(cfg: &GenConfig, nodes: u32, wide: bool) -> (GenConfig, u32) {
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
fn spread(count: u32) -> f32 {
    4.0 * (count.max(1) as f32).cbrt()
}

fn positions_in<R: Rng + ?Sized>(rng: &mut R, count: u32, half: f32) -> Vec<[f32; 3]> {
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

// ---- parameters --------------------------------------------------------------------------------

/// One extreme-but-valid change to the default parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamTweak {
    /// `grid_cell_size` 1e-3 (the cell cap then decides).
    TinyCellSize,
    /// `grid_cell_size` 1e5: one cell.
    HugeCellSize,
    /// `repel_k` 1e6.
    HugeRepelK,
    /// `viewport_bounds` 0.5.
    TinyViewport,
    /// `viewport_bounds` 1e6.
    HugeViewport,
    /// `repulsion_cutoff` 1e-3.
    TinyCutoff,
    /// `repulsion_cutoff` 1e4: every pair repels.
    HugeCutoff,
    /// `repulsion_softening_epsilon` 1e-6.
    TinySoftening,
    /// `repulsion_softening_epsilon` at the smallest value validation accepts, so small that
    /// it no longer keeps coincident nodes finite in `f32`.
    MinimalSoftening,
    /// `dt` 1e-4.
    TinyDt,
    /// `dt` 2.
    LargeDt,
    /// `damping` and `cooling_rate` 0.
    NoDamping,
    /// `damping` and `cooling_rate` 1 (no velocity loss).
    FullDamping,
    /// `max_force` 1e-3.
    TinyMaxForce,
    /// `max_force` 1e9.
    HugeMaxForce,
    /// `max_velocity` 1e-3.
    TinyMaxVelocity,
    /// `max_velocity` 1e6.
    HugeMaxVelocity,
    /// `spring_k` 100.
    StiffSprings,
    /// `rest_length` 0.
    ZeroRestLength,
    /// `rest_length` 1e3.
    LongRestLength,
    /// `center_gravity_k` 10.
    StrongGravity,
    /// `feature_flags` set to these bits (masked to the known ones).
    Features(u32),
    /// Thermal noise on, at this temperature.
    Noise(f32),
    /// `separation_radius`.
    Separation(f32),
    /// SSSP rest-length stretching on, with this `sssp_alpha`.
    SsspStretch(f32),
    /// `warmup_iterations` 0.
    NoWarmup,
    /// `iteration` a few steps before `u32::MAX`, so that the step counter wraps.
    IterationNearWrap,
    /// `seed`.
    Seed(u64),
}

impl ParamTweak {
    /// Applies the tweak.
    pub fn apply(self, p: &mut SimParams) {
        match self {
            ParamTweak::TinyCellSize => p.grid_cell_size = 1e-3,
            ParamTweak::HugeCellSize => p.grid_cell_size = 1e5,
            ParamTweak::HugeRepelK => p.repel_k = 1e6,
            ParamTweak::TinyViewport => p.viewport_bounds = 0.5,
            ParamTweak::HugeViewport => p.viewport_bounds = 1e6,
            ParamTweak::TinyCutoff => p.repulsion_cutoff = 1e-3,
            ParamTweak::HugeCutoff => p.repulsion_cutoff = 1e4,
            ParamTweak::TinySoftening => p.repulsion_softening_epsilon = 1e-6,
            ParamTweak::MinimalSoftening => {
                p.repulsion_softening_epsilon = forcefield::params::MIN_SOFTENING
            }
            ParamTweak::TinyDt => p.dt = 1e-4,
            ParamTweak::LargeDt => p.dt = 2.0,
            ParamTweak::NoDamping => {
                p.damping = 0.0;
                p.cooling_rate = 0.0;
            }
            ParamTweak::FullDamping => {
                p.damping = 1.0;
                p.cooling_rate = 1.0;
            }
            ParamTweak::TinyMaxForce => p.max_force = 1e-3,
            ParamTweak::HugeMaxForce => p.max_force = 1e9,
            ParamTweak::TinyMaxVelocity => p.max_velocity = 1e-3,
            ParamTweak::HugeMaxVelocity => p.max_velocity = 1e6,
            ParamTweak::StiffSprings => p.spring_k = 100.0,
            ParamTweak::ZeroRestLength => p.rest_length = 0.0,
            ParamTweak::LongRestLength => p.rest_length = 1e3,
            ParamTweak::StrongGravity => p.center_gravity_k = 10.0,
            ParamTweak::Features(bits) => p.feature_flags = bits & features::ALL,
            ParamTweak::Noise(t) => {
                p.feature_flags |= features::THERMAL_NOISE;
                p.temperature = t.abs();
            }
            ParamTweak::Separation(r) => p.separation_radius = r.abs(),
            ParamTweak::SsspStretch(a) => {
                p.feature_flags |= features::SSSP_REST_LENGTH;
                p.sssp_alpha = a.abs();
            }
            ParamTweak::NoWarmup => p.warmup_iterations = 0,
            ParamTweak::IterationNearWrap => p.iteration = u32::MAX - 3,
            ParamTweak::Seed(s) => p.seed = s,
        }
    }

    fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        use ParamTweak::*;
        const FIXED: [ParamTweak; 22] = [
            TinyCellSize,
            HugeCellSize,
            HugeRepelK,
            TinyViewport,
            HugeViewport,
            TinyCutoff,
            HugeCutoff,
            TinySoftening,
            MinimalSoftening,
            TinyDt,
            LargeDt,
            NoDamping,
            FullDamping,
            TinyMaxForce,
            HugeMaxForce,
            TinyMaxVelocity,
            HugeMaxVelocity,
            StiffSprings,
            ZeroRestLength,
            LongRestLength,
            StrongGravity,
            NoWarmup,
        ];
        match rng.gen_range(0..30) {
            0 => Features(rng.gen_range(0..=features::ALL)),
            1 => Noise(rng.gen_range(0.0..10.0)),
            2 => Separation(rng.gen_range(0.0..5.0)),
            3 => SsspStretch(rng.gen_range(0.0..2.0)),
            4 => IterationNearWrap,
            5..=7 => Seed(rng.gen()),
            k => FIXED[(k - 8) % FIXED.len()],
        }
    }
}

/// The default parameters with `tweaks` applied in order. Always valid.
pub fn params_with(tweaks: &[ParamTweak]) -> SimParams {
    let mut p = SimParams::default();
    for t in tweaks {
        t.apply(&mut p);
    }
    p
}

fn random_tweaks<R: Rng + ?Sized>(rng: &mut R, probability: f64) -> Vec<ParamTweak> {
    if !rng.gen_bool(probability.clamp(0.0, 1.0)) {
        return Vec::new();
    }
    (0..rng.gen_range(1..=4))
        .map(|_| ParamTweak::random(rng))
        .collect()
}

// ---- operations --------------------------------------------------------------------------------

/// Edge weights of generated edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// 1.
    One,
    /// Uniform in [0.1, 10).
    Uniform,
    /// 0, 1e-6, 1 or 1e6 at random.
    Extreme,
}

/// An operation relative to the state it meets; [`realize`] makes it concrete. `salt` seeds the
/// choices (which nodes, which positions).
#[derive(Clone, Debug, PartialEq)]
pub enum OpPlan {
    /// `step` `count` times.
    Step {
        /// Steps (at least 1).
        count: u32,
    },
    /// `add_nodes` more than the node capacity has room for: forces growth.
    GrowPastCapacity {
        /// Nodes beyond the first that does not fit.
        extra: u32,
        /// Give explicit positions.
        positioned: bool,
        /// Choices.
        salt: u64,
    },
    /// `add_nodes` a few.
    AddNodes {
        /// Nodes.
        count: u32,
        /// Give explicit positions.
        positioned: bool,
        /// Choices.
        salt: u64,
    },
    /// `remove_nodes` of up to `count` random live nodes.
    RemoveNodes {
        /// Nodes.
        count: u32,
        /// Choices.
        salt: u64,
    },
    /// `add_edges` between random live nodes (self-loops and repeats possible).
    AddEdges {
        /// Edges.
        count: u32,
        /// Their weights.
        weights: WeightKind,
        /// Choices.
        salt: u64,
    },
    /// `add_edges` more than the edge capacity has room for.
    GrowEdgesPastCapacity {
        /// Edges beyond the first that does not fit.
        extra: u32,
        /// Choices.
        salt: u64,
    },
    /// `remove_edges` of up to `count` live edges.
    RemoveEdges {
        /// Pairs.
        count: u32,
        /// Choices.
        salt: u64,
    },
    /// `shrink_to_fit`.
    ShrinkToFit,
    /// `reserve` beyond the live counts.
    Reserve {
        /// Nodes beyond the live count.
        extra_nodes: u32,
        /// Edges beyond the live count.
        extra_edges: u32,
    },
    /// `shrink_to_fit`, growth past capacity, then `steps` steps.
    ResizeCycle {
        /// Nodes beyond the first that does not fit.
        extra: u32,
        /// Steps after the growth.
        steps: u32,
    },
    /// `sssp` from a random live node.
    Sssp {
        /// Choices.
        salt: u64,
    },
    /// `set_params` with the defaults tweaked.
    SetParams {
        /// The tweaks.
        tweaks: Vec<ParamTweak>,
    },
    /// `read_positions`.
    ReadPositions,
    /// `inject` of an environment fault.
    Inject {
        /// The fault.
        fault: EnvFault,
    },
    /// `set_position_constraint` on a random live node.
    PositionConstraint {
        /// Choices.
        salt: u64,
    },
    /// `set_distance_constraint` on a live edge (now and then on a pair with none, or a negative
    /// distance, which removes it).
    DistanceConstraint {
        /// Choices.
        salt: u64,
    },
    /// `clear_constraints`.
    ClearConstraints,
}

impl OpPlan {
    /// Whether the plan resizes (the place injected allocation failures matter most).
    pub fn is_resize(&self) -> bool {
        matches!(
            self,
            OpPlan::GrowPastCapacity { .. }
                | OpPlan::GrowEdgesPastCapacity { .. }
                | OpPlan::ResizeCycle { .. }
                | OpPlan::ShrinkToFit
                | OpPlan::Reserve { .. }
        )
    }
}

/// What realization needs to know of the engine to come: live counts and the capacities the engine
/// will have under its default growth policy.
#[derive(Clone, Debug)]
pub struct Model {
    nodes: u32,
    edges: Vec<(u32, u32)>,
    node_cap: u64,
    edge_cap: u64,
    max_nodes: u32,
    max_edges: u32,
    max_steps: u32,
}

impl Model {
    /// The state right after the engine is built from `graph`; growth is limited as `cfg` says.
    pub fn new(graph: &CaseGraph, cfg: &GenConfig) -> Self {
        Model {
            nodes: graph.num_nodes as u32,
            edges: graph.edges.iter().map(|e| (e.u, e.v)).collect(),
            node_cap: graph.num_nodes,
            edge_cap: graph.edges.len() as u64,
            max_nodes: cfg.max_live_nodes.max(graph.num_nodes as u32),
            max_edges: cfg.max_live_edges.max(graph.edges.len() as u32),
            max_steps: cfg.max_step_count.max(1),
        }
    }

    /// The engine's own default growth rule, so that the model cannot drift from it.
    fn grow(cap: u64, needed: u64) -> u64 {
        forcefield::GrowthPolicy::default().grow(cap as usize, needed as usize) as u64
    }

    fn add_nodes(&mut self, rng: &mut ChaCha8Rng, count: u32, positioned: bool) -> Option<Op> {
        let count = count.min(self.max_nodes.saturating_sub(self.nodes));
        if count == 0 {
            return None;
        }
        let positions = positioned.then(|| {
            // Spread as if the new nodes joined the ones already there.
            let half = spread(self.nodes + count).max(8.0);
            if rng.gen_bool(0.3) {
                // A stack on the origin, possibly on an existing node's seeded spot; past
                // `MAX_STACK` the rest are spread out.
                let stacked = count.min(MAX_STACK);
                let mut p = vec![[0.0; 3]; stacked as usize];
                p.extend(positions_in(rng, count - stacked, half));
                p
            } else {
                positions_in(rng, count, half)
            }
        });
        let needed = self.nodes as u64 + count as u64;
        if needed > self.node_cap {
            self.node_cap = Self::grow(self.node_cap, needed);
        }
        self.nodes += count;
        Some(Op::AddNodes {
            count: count as u64,
            positions,
        })
    }

    fn add_edges(&mut self, rng: &mut ChaCha8Rng, count: u32, weights: WeightKind) -> Option<Op> {
        let room = self.max_edges.saturating_sub(self.edges.len() as u32);
        let count = count.min(room);
        if count == 0 || self.nodes == 0 {
            return None;
        }
        let edges: Vec<Edge> = (0..count)
            .map(|_| {
                let u = rng.gen_range(0..self.nodes);
                let v = if rng.gen_bool(0.05) {
                    u
                } else {
                    rng.gen_range(0..self.nodes)
                };
                let w = match weights {
                    WeightKind::One => 1.0,
                    WeightKind::Uniform => rng.gen_range(0.1..10.0),
                    WeightKind::Extreme => *EXTREME_WEIGHTS.choose(rng).unwrap_or(&1.0),
                };
                Edge { u, v, w }
            })
            .collect();
        let needed = (self.edges.len() + edges.len()) as u64;
        if needed > self.edge_cap {
            self.edge_cap = Self::grow(self.edge_cap, needed);
        }
        self.edges.extend(edges.iter().map(|e| (e.u, e.v)));
        Some(Op::AddEdges { edges })
    }

    fn remove_nodes(&mut self, rng: &mut ChaCha8Rng, count: u32) -> Option<Op> {
        if self.nodes == 0 || count == 0 {
            return None;
        }
        let ids: Vec<u32> = (0..count.min(self.nodes))
            .map(|_| rng.gen_range(0..self.nodes))
            .collect();
        let mut keep = vec![true; self.nodes as usize];
        for &id in &ids {
            keep[id as usize] = false;
        }
        let mut new_id = vec![u32::MAX; keep.len()];
        let mut next = 0;
        for (old, k) in keep.iter().enumerate() {
            if *k {
                new_id[old] = next;
                next += 1;
            }
        }
        self.edges = self
            .edges
            .iter()
            .filter_map(|&(u, v)| {
                let (u, v) = (new_id[u as usize], new_id[v as usize]);
                (u != u32::MAX && v != u32::MAX).then_some((u, v))
            })
            .collect();
        self.nodes = next;
        Some(Op::RemoveNodes { ids })
    }

    fn remove_edges(&mut self, rng: &mut ChaCha8Rng, count: u32) -> Option<Op> {
        if self.nodes == 0 || count == 0 {
            return None;
        }
        let pairs: Vec<(u32, u32)> = (0..count)
            .map(|_| match self.edges.choose(rng) {
                Some(&p) if rng.gen_bool(0.9) => p,
                _ => (rng.gen_range(0..self.nodes), rng.gen_range(0..self.nodes)),
            })
            .collect();
        self.edges.retain(|&(u, v)| {
            !pairs
                .iter()
                .any(|&(a, b)| (u, v) == (a, b) || (u, v) == (b, a))
        });
        Some(Op::RemoveEdges { pairs })
    }

    fn position_constraint(&self, rng: &mut ChaCha8Rng) -> Option<Op> {
        if self.nodes == 0 {
            return None;
        }
        let half = spread(self.nodes).max(8.0);
        let stiffness = if rng.gen_bool(0.1) {
            0.0
        } else {
            rng.gen_range(0.01..2.0)
        };
        Some(Op::SetPositionConstraint {
            node: rng.gen_range(0..self.nodes),
            target: [0; 3].map(|_: i32| rng.gen_range(-half..half)),
            stiffness,
        })
    }

    fn distance_constraint(&self, rng: &mut ChaCha8Rng) -> Option<Op> {
        if self.nodes == 0 {
            return None;
        }
        let (u, v) = match self.edges.choose(rng) {
            Some(&(u, v)) if rng.gen_bool(0.9) => {
                if rng.gen_bool(0.5) {
                    (u, v)
                } else {
                    (v, u)
                }
            }
            _ => (rng.gen_range(0..self.nodes), rng.gen_range(0..self.nodes)),
        };
        let distance = if rng.gen_bool(0.1) {
            -1.0
        } else {
            rng.gen_range(0.1..10.0)
        };
        Some(Op::SetDistanceConstraint { u, v, distance })
    }

    fn shrink(&mut self) -> Op {
        self.node_cap = self.nodes as u64;
        self.edge_cap = self.edges.len() as u64;
        Op::ShrinkToFit
    }

    fn step(&self, count: u32) -> Op {
        Op::Step {
            count: count.clamp(1, self.max_steps) as u64,
        }
    }
}

/// Turns one plan into ops against `model`, updating it; plans that do not apply to the current
/// state (removing from an empty graph, growth past the limits) give no op.
pub fn realize(plan: &OpPlan, model: &mut Model) -> Vec<Op> {
    let rng_of = |salt: u64| ChaCha8Rng::seed_from_u64(salt);
    let past = |model: &Model, extra: u32| {
        let room = model.node_cap.saturating_sub(model.nodes as u64);
        (room + 1 + extra as u64).min(u32::MAX as u64) as u32
    };
    match plan {
        OpPlan::Step { count } => vec![model.step(*count)],
        OpPlan::GrowPastCapacity {
            extra,
            positioned,
            salt,
        } => {
            let count = past(model, *extra);
            model
                .add_nodes(&mut rng_of(*salt), count, *positioned)
                .into_iter()
                .collect()
        }
        OpPlan::AddNodes {
            count,
            positioned,
            salt,
        } => model
            .add_nodes(&mut rng_of(*salt), *count, *positioned)
            .into_iter()
            .collect(),
        OpPlan::RemoveNodes { count, salt } => model
            .remove_nodes(&mut rng_of(*salt), *count)
            .into_iter()
            .collect(),
        OpPlan::AddEdges {
            count,
            weights,
            salt,
        } => model
            .add_edges(&mut rng_of(*salt), *count, *weights)
            .into_iter()
            .collect(),
        OpPlan::GrowEdgesPastCapacity { extra, salt } => {
            let room = model.edge_cap.saturating_sub(model.edges.len() as u64);
            let count = (room + 1 + *extra as u64).min(u32::MAX as u64) as u32;
            model
                .add_edges(&mut rng_of(*salt), count, WeightKind::One)
                .into_iter()
                .collect()
        }
        OpPlan::RemoveEdges { count, salt } => model
            .remove_edges(&mut rng_of(*salt), *count)
            .into_iter()
            .collect(),
        OpPlan::ShrinkToFit => vec![model.shrink()],
        OpPlan::Reserve {
            extra_nodes,
            extra_edges,
        } => {
            let nodes = (model.nodes + extra_nodes).min(model.max_nodes) as u64;
            let edges = (model.edges.len() as u32 + extra_edges).min(model.max_edges) as u64;
            model.node_cap = model.node_cap.max(nodes);
            model.edge_cap = model.edge_cap.max(edges);
            vec![Op::Reserve { nodes, edges }]
        }
        OpPlan::ResizeCycle { extra, steps } => {
            let mut ops = vec![model.shrink()];
            let count = past(model, *extra);
            ops.extend(model.add_nodes(&mut rng_of(*extra as u64), count, false));
            ops.push(model.step(*steps));
            ops
        }
        OpPlan::Sssp { salt } => {
            if model.nodes == 0 {
                return Vec::new();
            }
            vec![Op::Sssp {
                source: (*salt % model.nodes as u64) as u32,
            }]
        }
        OpPlan::SetParams { tweaks } => vec![Op::SetParams {
            params: params_with(tweaks),
        }],
        OpPlan::ReadPositions => vec![Op::ReadPositions],
        OpPlan::Inject { fault } => vec![Op::Inject { fault: *fault }],
        OpPlan::PositionConstraint { salt } => model
            .position_constraint(&mut rng_of(*salt))
            .into_iter()
            .collect(),
        OpPlan::DistanceConstraint { salt } => model
            .distance_constraint(&mut rng_of(*salt))
            .into_iter()
            .collect(),
        OpPlan::ClearConstraints => vec![Op::ClearConstraints],
    }
}

/// Constraint plans for `count` plan slots, drawn from a generator of their own seeded by `salt`.
fn random_constraint_plans(salt: u64, count: usize, cfg: &GenConfig) -> Vec<Option<OpPlan>> {
    let mut rng = ChaCha8Rng::seed_from_u64(salt ^ CONSTRAINT_STREAM);
    let rate = cfg.constraint_rate.clamp(0.0, 1.0);
    (0..count)
        .map(|_| rng.gen_bool(rate).then(|| random_constraint_plan(&mut rng)))
        .collect()
}

/// Separates the constraint generator's stream from the graph's (both are seeded by the graph salt).
const CONSTRAINT_STREAM: u64 = 0x636f_6e73_7472_6169;

/// A random constraint plan: mostly setting one, now and then clearing them all.
pub fn random_constraint_plan<R: Rng + ?Sized>(rng: &mut R) -> OpPlan {
    match rng.gen_range(0..10) {
        0..=4 => OpPlan::DistanceConstraint { salt: rng.gen() },
        5..=8 => OpPlan::PositionConstraint { salt: rng.gen() },
        _ => OpPlan::ClearConstraints,
    }
}

/// `injects` (one per original plan) realigned to the plans after [`with_constraints`]: a
/// constraint op gets no injected fault before it, so each fault stays right before its plan.
fn with_constraints_aligned(
    injects: &[Option<EnvFault>],
    constraints: &[Option<OpPlan>],
) -> Vec<Option<EnvFault>> {
    let mut out = Vec::with_capacity(injects.len() + constraints.len());
    for (i, inject) in injects.iter().enumerate() {
        if let Some(Some(_)) = constraints.get(i) {
            out.push(None);
        }
        out.push(*inject);
    }
    out
}

/// `plans` with each planned constraint op (`constraints[i]`: before plan `i`) in front of it.
fn with_constraints(plans: &[OpPlan], constraints: &[Option<OpPlan>]) -> Vec<OpPlan> {
    let mut out = Vec::with_capacity(plans.len() + constraints.len());
    for (i, plan) in plans.iter().enumerate() {
        if let Some(Some(c)) = constraints.get(i) {
            out.push(c.clone());
        }
        out.push(plan.clone());
    }
    out
}

/// The injected fault of kind `kind` (0: allocation, 1: copy, 2: launch, else a lost context)
/// failing the `nth` next matching call.
fn env_fault(kind: u32, nth: u32) -> EnvFault {
    match kind {
        0 => EnvFault::FailAlloc { nth },
        1 => EnvFault::FailCopy { nth },
        2 => EnvFault::FailLaunch { nth },
        _ => EnvFault::LoseContext { nth },
    }
}

/// A random injected fault: allocation failures likeliest (resizes are where they hurt), `nth`
/// in 1..=6.
pub fn random_env_fault<R: Rng + ?Sized>(rng: &mut R) -> EnvFault {
    let kind = match rng.gen_range(0..20) {
        0..=6 => 0,
        7..=11 => 1,
        12..=16 => 2,
        _ => 3,
    };
    env_fault(kind, rng.gen_range(1..=6))
}

/// The probability of an injected fault before `plan`.
fn inject_probability(plan: &OpPlan, cfg: &GenConfig) -> f64 {
    let rate = cfg.inject_rate.clamp(0.0, 1.0);
    if plan.is_resize() {
        (rate * RESIZE_INJECT_WEIGHT).min(1.0)
    } else {
        rate
    }
}

/// `plans` with each planned fault (`injects[i]`: before plan `i`) in front of its plan.
fn with_injects(plans: &[OpPlan], injects: &[Option<EnvFault>]) -> Vec<OpPlan> {
    let mut out = Vec::with_capacity(plans.len() + injects.len());
    for (i, plan) in plans.iter().enumerate() {
        if let Some(Some(fault)) = injects.get(i) {
            out.push(OpPlan::Inject { fault: *fault });
        }
        out.push(plan.clone());
    }
    out
}

/// The engine section of a case of `nodes` initial nodes with grid-cell cap `cap`, if any. Only
/// small graphs get a small cap: coarse cells make the force pass quadratic within a cell, and a
/// large graph in a few cells would spend the case's deadline on it.
fn engine_section(cap: Option<u32>, nodes: u32, cfg: &GenConfig) -> Option<CaseEngine> {
    cap.filter(|_| nodes <= cfg.max_small_nodes.max(2))
        .map(|c| CaseEngine {
            max_grid_cells: Some(c as u64),
        })
}

/// A log-uniform grid-cell cap in [`SMALL_GRID_CAPS`] from `u` in [0, 1].
fn small_grid_cap(u: f64) -> u32 {
    let (lo, hi) = (SMALL_GRID_CAPS.0 as f64, SMALL_GRID_CAPS.1 as f64);
    (lo * (hi / lo).powf(u.clamp(0.0, 1.0)))
        .round()
        .clamp(lo, hi) as u32
}

/// A random op plan, weighted toward resizes as the case generator draws them.
pub fn random_plan<R: Rng + ?Sized>(rng: &mut R, cfg: &GenConfig) -> OpPlan {
    let small = |rng: &mut R| rng.gen_range(0..8u32);
    // Weights: resize sequences and steps dominate, as crashes live there.
    match rng.gen_range(0..100) {
        0..=21 => OpPlan::Step {
            count: rng.gen_range(1..=cfg.max_step_count.max(1)),
        },
        22..=35 => OpPlan::GrowPastCapacity {
            extra: small(rng),
            positioned: rng.gen_bool(0.2),
            salt: rng.gen(),
        },
        36..=45 => OpPlan::ResizeCycle {
            extra: small(rng),
            steps: rng.gen_range(1..=3),
        },
        46..=53 => OpPlan::ShrinkToFit,
        54..=61 => OpPlan::RemoveNodes {
            count: rng.gen_range(1..=4),
            salt: rng.gen(),
        },
        62..=67 => OpPlan::AddNodes {
            count: rng.gen_range(1..=4),
            positioned: rng.gen_bool(0.3),
            salt: rng.gen(),
        },
        68..=74 => OpPlan::AddEdges {
            count: rng.gen_range(1..=8),
            weights: *[WeightKind::One, WeightKind::Uniform, WeightKind::Extreme]
                .choose(rng)
                .unwrap_or(&WeightKind::One),
            salt: rng.gen(),
        },
        75..=79 => OpPlan::GrowEdgesPastCapacity {
            extra: small(rng),
            salt: rng.gen(),
        },
        80..=84 => OpPlan::RemoveEdges {
            count: rng.gen_range(1..=3),
            salt: rng.gen(),
        },
        85..=88 => OpPlan::Reserve {
            extra_nodes: rng.gen_range(0..64),
            extra_edges: rng.gen_range(0..64),
        },
        89..=93 => OpPlan::Sssp { salt: rng.gen() },
        94..=96 => OpPlan::SetParams {
            tweaks: random_tweaks(rng, 0.7),
        },
        _ => OpPlan::ReadPositions,
    }
}

/// Builds a case from its blocks: the graph of `family` with `nodes` nodes (choices seeded by
/// `graph_salt`), the defaults with `tweaks` (none: no `params` in the file), and `plans` realized
/// in order.
pub fn build_case(
    family: Family,
    nodes: u32,
    graph_salt: u64,
    tweaks: &[ParamTweak],
    plans: &[OpPlan],
    cfg: &GenConfig,
) -> Case {
    let graph = generate_graph(&mut ChaCha8Rng::seed_from_u64(graph_salt), family, nodes);
    let mut model = Model::new(&graph, cfg);
    let ops = plans.iter().flat_map(|p| realize(p, &mut model)).collect();
    let mut case = Case::new(graph);
    case.params = (!tweaks.is_empty()).then(|| params_with(tweaks));
    case.ops = ops;
    case.faults = cfg.faults.clone();
    case.backend = cfg.backend;
    case
}

/// A random case: a graph of a random family (2..=`max_small_nodes` nodes mostly, occasionally up to
/// `max_large_nodes`), possibly extreme parameters, and up to `max_plans` plans weighted toward resize
/// sequences.
pub fn generate_case<R: Rng + ?Sized>(rng: &mut R, cfg: &GenConfig) -> Case {
    let family = *Family::ALL.choose(rng).unwrap_or(&Family::Path);
    let small_max = cfg.max_small_nodes.max(2);
    let nodes = if cfg.max_large_nodes > small_max && rng.gen_bool(cfg.large_probability) {
        rng.gen_range(small_max..=cfg.max_large_nodes)
    } else {
        rng.gen_range(2..=small_max)
    };
    let graph_salt = rng.gen();
    let tweaks = random_tweaks(rng, cfg.extreme_params_probability);
    let plans: Vec<OpPlan> = (0..rng.gen_range(1..=cfg.max_plans.max(1)))
        .map(|_| random_plan(rng, cfg))
        .collect();
    // Drawn after everything else, so that a case is otherwise the one the same seed always gave.
    let grid_cap = rng
        .gen_bool(cfg.small_grid_cap_probability.clamp(0.0, 1.0))
        .then(|| small_grid_cap(rng.gen()));
    let injects: Vec<Option<EnvFault>> = plans
        .iter()
        .map(|p| {
            rng.gen_bool(inject_probability(p, cfg))
                .then(|| random_env_fault(rng))
        })
        .collect();
    // From their own generator, so that `rng` draws what it drew before constraint ops existed and
    // a seed's case differs from its old one only by these ops (they change no count, so the rest
    // realizes alike).
    let constraints = random_constraint_plans(graph_salt, plans.len(), cfg);
    let plans = with_constraints(&plans, &constraints);
    let injects = with_constraints_aligned(&injects, &constraints);
    let engine = engine_section(grid_cap, nodes, cfg);
    let wide = wide_neighbourhoods(&tweaks, &plans, engine.is_some());
    let (bounded, nodes) = bounded_cost(cfg, nodes, wide);
    let mut case = build_case(
        family,
        nodes,
        graph_salt,
        &tweaks,
        &with_injects(&plans, &injects),
        &bounded,
    );
    case.engine = engine;
    case
}

/// [`generate_case`] from a fresh `ChaCha8Rng` seeded with `seed`, recorded in the case.
pub fn generate_case_from_seed(seed: u64, cfg: &GenConfig) -> Case {
    let mut case = generate_case(&mut ChaCha8Rng::seed_from_u64(seed), cfg);
    case.seed = seed;
    case
}

// ---- proptest strategies -----------------------------------------------------------------------

/// A [`ParamTweak`].
pub fn tweak_strategy() -> BoxedStrategy<ParamTweak> {
    use ParamTweak::*;
    let fixed = prop::sample::select(vec![
        TinyCellSize,
        HugeCellSize,
        HugeRepelK,
        TinyViewport,
        HugeViewport,
        TinyCutoff,
        HugeCutoff,
        TinySoftening,
        MinimalSoftening,
        TinyDt,
        LargeDt,
        NoDamping,
        FullDamping,
        TinyMaxForce,
        HugeMaxForce,
        TinyMaxVelocity,
        HugeMaxVelocity,
        StiffSprings,
        ZeroRestLength,
        LongRestLength,
        StrongGravity,
        NoWarmup,
        IterationNearWrap,
    ]);
    prop_oneof![
        8 => fixed,
        1 => (0..=features::ALL).prop_map(Features),
        1 => (0.0f32..10.0).prop_map(Noise),
        1 => (0.0f32..5.0).prop_map(Separation),
        1 => (0.0f32..2.0).prop_map(SsspStretch),
        1 => any::<u64>().prop_map(Seed),
    ]
    .boxed()
}

/// An [`OpPlan`], weighted toward resize sequences as [`generate_case`] is.
pub fn plan_strategy(cfg: &GenConfig) -> BoxedStrategy<OpPlan> {
    let steps = 1..=cfg.max_step_count.max(1);
    let weights = prop::sample::select(vec![
        WeightKind::One,
        WeightKind::Uniform,
        WeightKind::Extreme,
    ]);
    prop_oneof![
        22 => steps.prop_map(|count| OpPlan::Step { count }),
        14 => (0..8u32, any::<bool>(), any::<u64>()).prop_map(|(extra, positioned, salt)| {
            OpPlan::GrowPastCapacity { extra, positioned, salt }
        }),
        10 => (0..8u32, 1..=3u32).prop_map(|(extra, steps)| OpPlan::ResizeCycle { extra, steps }),
        8 => Just(OpPlan::ShrinkToFit),
        8 => (1..=4u32, any::<u64>()).prop_map(|(count, salt)| OpPlan::RemoveNodes { count, salt }),
        6 => (1..=4u32, any::<bool>(), any::<u64>()).prop_map(|(count, positioned, salt)| {
            OpPlan::AddNodes { count, positioned, salt }
        }),
        7 => (1..=8u32, weights, any::<u64>()).prop_map(|(count, weights, salt)| {
            OpPlan::AddEdges { count, weights, salt }
        }),
        5 => (0..8u32, any::<u64>())
            .prop_map(|(extra, salt)| OpPlan::GrowEdgesPastCapacity { extra, salt }),
        5 => (1..=3u32, any::<u64>()).prop_map(|(count, salt)| OpPlan::RemoveEdges { count, salt }),
        4 => (0..64u32, 0..64u32).prop_map(|(extra_nodes, extra_edges)| OpPlan::Reserve {
            extra_nodes,
            extra_edges
        }),
        5 => any::<u64>().prop_map(|salt| OpPlan::Sssp { salt }),
        3 => prop::collection::vec(tweak_strategy(), 0..4)
            .prop_map(|tweaks| OpPlan::SetParams { tweaks }),
        3 => Just(OpPlan::ReadPositions),
    ]
    .boxed()
}

/// An injected fault as [`random_env_fault`] draws them (shrinking toward an allocation failure of
/// the next allocation).
pub fn env_fault_strategy() -> BoxedStrategy<EnvFault> {
    (
        prop_oneof![7 => Just(0u32), 5 => Just(1u32), 5 => Just(2u32), 3 => Just(3u32)],
        1..=6u32,
    )
        .prop_map(|(kind, nth)| env_fault(kind, nth))
        .boxed()
}

/// `Some` of `inner` with probability `p` (clamped to [0, 1]), shrinking toward `None`.
fn maybe<T: std::fmt::Debug + Clone + 'static>(
    p: f64,
    inner: BoxedStrategy<T>,
) -> BoxedStrategy<Option<T>> {
    if p <= 0.0 || p.is_nan() {
        Just(None).boxed()
    } else if p >= 1.0 {
        inner.prop_map(Some).boxed()
    } else {
        prop::option::weighted(p, inner).boxed()
    }
}

/// A constraint plan, shrinking toward clearing them all.
pub fn constraint_plan_strategy() -> BoxedStrategy<OpPlan> {
    prop_oneof![
        1 => Just(OpPlan::ClearConstraints),
        4 => any::<u64>().prop_map(|salt| OpPlan::PositionConstraint { salt }),
        5 => any::<u64>().prop_map(|salt| OpPlan::DistanceConstraint { salt }),
    ]
    .boxed()
}

/// Whole cases with the default configuration; see [`case_strategy_with`].
pub fn case_strategy() -> BoxedStrategy<Case> {
    case_strategy_with(GenConfig::default())
}

/// Whole cases from the same blocks as [`generate_case`]: shrinking removes plans and tweaks, lowers
/// counts and moves the family toward the simplest, and every shrunk case is still valid.
pub fn case_strategy_with(cfg: GenConfig) -> BoxedStrategy<Case> {
    let small_max = cfg.max_small_nodes.max(2);
    let nodes = if cfg.max_large_nodes > small_max && cfg.large_probability > 0.0 {
        prop_oneof![19 => 0..=small_max, 1 => small_max..=cfg.max_large_nodes].boxed()
    } else {
        (0..=small_max).boxed()
    };
    let tweaks = prop_oneof![
        4 => Just(Vec::new()),
        1 => prop::collection::vec(tweak_strategy(), 1..=4),
    ];
    let max_plans = cfg.max_plans.max(1);
    // Per plan slot: a fault before an ordinary plan, and one before a resize; which applies
    // depends on the plan. Both shrink toward none.
    let inject_slot = (
        maybe(cfg.inject_rate, env_fault_strategy()),
        maybe(cfg.inject_rate * RESIZE_INJECT_WEIGHT, env_fault_strategy()),
    );
    let grid_cap = maybe(
        cfg.small_grid_cap_probability,
        (0.0f64..=1.0).prop_map(small_grid_cap).boxed(),
    );
    let constraint_slot = maybe(cfg.constraint_rate, constraint_plan_strategy());
    // The grid cap, the constraints and the faults come after the other parts, so that they leave
    // those as the same seed always drew them; the faults come last, so that a case with them is
    // the case without them plus `inject` ops.
    (
        prop::sample::select(Family::ALL.to_vec()),
        nodes,
        any::<u64>(),
        tweaks,
        prop::collection::vec(plan_strategy(&cfg), 0..=max_plans),
        grid_cap,
        prop::collection::vec(constraint_slot, max_plans..=max_plans),
        prop::collection::vec(inject_slot, max_plans..=max_plans),
    )
        .prop_map(
            move |(family, nodes, salt, tweaks, plans, grid_cap, constraint_slots, slots)| {
                let injects: Vec<Option<EnvFault>> = plans
                    .iter()
                    .zip(&slots)
                    .map(|(plan, (other, resize))| if plan.is_resize() { *resize } else { *other })
                    .collect();
                let constraints = &constraint_slots[..plans.len().min(constraint_slots.len())];
                let injects = with_constraints_aligned(&injects, constraints);
                let plans = with_constraints(&plans, constraints);
                let plans = with_injects(&plans, &injects);
                let engine = engine_section(grid_cap, nodes, &cfg);
                let wide = wide_neighbourhoods(&tweaks, &plans, engine.is_some());
                let (bounded, nodes) = bounded_cost(&cfg, nodes, wide);
                let mut case = build_case(family, nodes, salt, &tweaks, &plans, &bounded);
                case.engine = engine;
                case
            },
        )
        .boxed()
}

#[cfg(test)]
mod tests;
