//! The op stream of a soak: engine lives and chunks of ops, a pure function of the seed (see the
//! parent module).

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use forcefield::Fault;

use crate::case::generate::{
    generate_case_from_seed, random_plan, realize, GenConfig, Model, OpPlan,
};
use crate::case::{BackendKind, Case, CaseGraph, Op};

/// Live nodes above this fraction of `max_nodes` make a drain (half the nodes removed, then
/// shrink to fit) possible in the next chunk.
pub(super) const DRAIN_HIGH_WATER: f64 = 0.75;
/// Probability of a drain in a chunk that starts above the high-water mark.
pub(super) const DRAIN_PROBABILITY: f64 = 0.3;
/// Most random plans in a chunk (at least one).
pub(super) const MAX_PLANS_PER_CHUNK: u32 = 4;

/// The deterministic stream of engine lives and chunks of one soak.
pub struct OpStream {
    rng: ChaCha8Rng,
    gen: GenConfig,
    chunk_steps: u64,
    model: Model,
    nodes: u64,
}

impl OpStream {
    /// The stream of `seed`; `max_nodes` bounds live nodes (edges: four times as many).
    pub fn new(
        seed: u64,
        backend: BackendKind,
        faults: &[Fault],
        max_nodes: u32,
        chunk_steps: u64,
    ) -> Self {
        let max_nodes = max_nodes.max(2);
        let gen = GenConfig {
            max_small_nodes: 64.min(max_nodes),
            max_large_nodes: 64.min(max_nodes),
            large_probability: 0.0,
            max_live_nodes: max_nodes,
            max_live_edges: max_nodes.saturating_mul(4),
            faults: faults.to_vec(),
            backend,
            ..GenConfig::default()
        };
        let model = Model::new(&CaseGraph::default(), &gen);
        OpStream {
            rng: ChaCha8Rng::seed_from_u64(seed),
            gen,
            chunk_steps: chunk_steps.max(1),
            model,
            nodes: 0,
        }
    }

    /// The start of a new engine life: a graph of a random family with its parameters and the
    /// faults, no ops. Chunks from now on apply to it.
    pub fn start(&mut self) -> Case {
        let mut case = generate_case_from_seed(self.rng.gen(), &self.gen);
        case.ops.clear();
        self.model = Model::new(&case.graph, &self.gen);
        self.nodes = case.graph.num_nodes;
        case
    }

    /// Live nodes after the ops given so far in this life.
    pub fn nodes(&self) -> u64 {
        self.nodes
    }

    /// The next chunk: a few mutations and resizes, then `chunk_steps` steps.
    pub fn chunk(&mut self) -> Vec<Op> {
        let mut plans = Vec::new();
        let high_water = f64::from(self.gen.max_live_nodes) * DRAIN_HIGH_WATER;
        if self.nodes as f64 > high_water && self.rng.gen_bool(DRAIN_PROBABILITY) {
            // A server dropping a batch of nodes and trimming its memory; the growth that follows
            // goes past the shrunk capacity again.
            plans.push(OpPlan::RemoveNodes {
                count: (self.nodes / 2) as u32,
                salt: self.rng.gen(),
            });
            plans.push(OpPlan::ShrinkToFit);
        }
        for _ in 0..self.rng.gen_range(1..=MAX_PLANS_PER_CHUNK) {
            plans.push(random_plan(&mut self.rng, &self.gen));
        }
        let mut ops: Vec<Op> = plans
            .iter()
            .flat_map(|p| realize(p, &mut self.model))
            .collect();
        ops.push(Op::Step {
            count: self.chunk_steps,
        });
        for op in &ops {
            self.nodes = nodes_after(op, self.nodes);
        }
        ops
    }
}

/// The live node count after `op` (a valid op), starting from `nodes`; duplicates and ids out of
/// range remove nothing, as in the engine.
pub(super) fn nodes_after(op: &Op, nodes: u64) -> u64 {
    match op {
        Op::AddNodes { count, .. } => nodes.saturating_add(*count),
        Op::RemoveNodes { ids } => {
            let distinct: BTreeSet<u32> = ids
                .iter()
                .copied()
                .filter(|&i| u64::from(i) < nodes)
                .collect();
            nodes - distinct.len() as u64
        }
        _ => nodes,
    }
}
