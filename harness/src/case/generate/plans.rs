//! Op plans: ops relative to the state they meet ([`OpPlan`]), the [`Model`] of that state,
//! [`realize`], and drawing plans at random with constraints and injected faults placed between
//! them.

use forcefield::{Edge, EnvFault};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{GenConfig, RESIZE_INJECT_WEIGHT, SMALL_GRID_CAPS};
use super::graphs::{positions_in, spread, EXTREME_WEIGHTS, MAX_STACK};
use super::params::{params_with, random_tweaks, ParamTweak};
use crate::case::{CaseEngine, CaseGraph, Op};

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

impl WeightKind {
    /// Every kind, in the order both generators draw them from.
    pub(super) const ALL: [WeightKind; 3] =
        [WeightKind::One, WeightKind::Uniform, WeightKind::Extreme];
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
    pub(super) nodes: u32,
    pub(super) edges: Vec<(u32, u32)>,
    pub(super) node_cap: u64,
    pub(super) edge_cap: u64,
    pub(super) max_nodes: u32,
    pub(super) max_edges: u32,
    pub(super) max_steps: u32,
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
    pub(super) fn grow(cap: u64, needed: u64) -> u64 {
        forcefield::GrowthPolicy::default().grow(cap as usize, needed as usize) as u64
    }

    pub(super) fn add_nodes(
        &mut self,
        rng: &mut ChaCha8Rng,
        count: u32,
        positioned: bool,
    ) -> Option<Op> {
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

    pub(super) fn add_edges(
        &mut self,
        rng: &mut ChaCha8Rng,
        count: u32,
        weights: WeightKind,
    ) -> Option<Op> {
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

    pub(super) fn remove_nodes(&mut self, rng: &mut ChaCha8Rng, count: u32) -> Option<Op> {
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

    pub(super) fn remove_edges(&mut self, rng: &mut ChaCha8Rng, count: u32) -> Option<Op> {
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

    pub(super) fn position_constraint(&self, rng: &mut ChaCha8Rng) -> Option<Op> {
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

    pub(super) fn distance_constraint(&self, rng: &mut ChaCha8Rng) -> Option<Op> {
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

    pub(super) fn shrink(&mut self) -> Op {
        self.node_cap = self.nodes as u64;
        self.edge_cap = self.edges.len() as u64;
        Op::ShrinkToFit
    }

    pub(super) fn step(&self, count: u32) -> Op {
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
pub(super) fn random_constraint_plans(
    salt: u64,
    count: usize,
    cfg: &GenConfig,
) -> Vec<Option<OpPlan>> {
    let mut rng = ChaCha8Rng::seed_from_u64(salt ^ CONSTRAINT_STREAM);
    let rate = cfg.constraint_rate.clamp(0.0, 1.0);
    (0..count)
        .map(|_| rng.gen_bool(rate).then(|| random_constraint_plan(&mut rng)))
        .collect()
}

/// Separates the constraint generator's stream from the graph's (both are seeded by the graph salt).
pub(super) const CONSTRAINT_STREAM: u64 = 0x636f_6e73_7472_6169;

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
pub(super) fn with_constraints_aligned(
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
pub(super) fn with_constraints(plans: &[OpPlan], constraints: &[Option<OpPlan>]) -> Vec<OpPlan> {
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
pub(super) fn env_fault(kind: u32, nth: u32) -> EnvFault {
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
pub(super) fn inject_probability(plan: &OpPlan, cfg: &GenConfig) -> f64 {
    let rate = cfg.inject_rate.clamp(0.0, 1.0);
    if plan.is_resize() {
        (rate * RESIZE_INJECT_WEIGHT).min(1.0)
    } else {
        rate
    }
}

/// `plans` with each planned fault (`injects[i]`: before plan `i`) in front of its plan.
pub(super) fn with_injects(plans: &[OpPlan], injects: &[Option<EnvFault>]) -> Vec<OpPlan> {
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
pub(super) fn engine_section(cap: Option<u32>, nodes: u32, cfg: &GenConfig) -> Option<CaseEngine> {
    cap.filter(|_| nodes <= cfg.max_small_nodes.max(2))
        .map(|c| CaseEngine {
            max_grid_cells: Some(c as u64),
        })
}

/// A log-uniform grid-cell cap in [`SMALL_GRID_CAPS`] from `u` in [0, 1].
pub(super) fn small_grid_cap(u: f64) -> u32 {
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
            weights: *WeightKind::ALL.choose(rng).unwrap_or(&WeightKind::One),
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
