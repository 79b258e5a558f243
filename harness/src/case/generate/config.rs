//! The sizes and probabilities of generation ([`GenConfig`]) and its constants: a leaf of the
//! folder, read by every generator file and importing none of them.

use forcefield::Fault;

use crate::case::BackendKind;

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
