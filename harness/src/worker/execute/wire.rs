//! The checkpoint and resume point of a poisoned case as they cross the worker protocol: every
//! `f32` as its bits, so that JSON carries NaN, infinities and exact values.

use forcefield::{Checkpoint, Edge, SimParams};
use serde::{Deserialize, Serialize};

/// An engine checkpoint in a form that survives JSON bit for bit: every `f32` as its bits (JSON has
/// no NaN or infinity, and SSSP distances of unreachable nodes are infinite).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireCheckpoint {
    num_nodes: u32,
    allocated_nodes: usize,
    allocated_edges: usize,
    allocated_cells: usize,
    /// `(u, v, weight bits)`.
    edges: Vec<(u32, u32, u32)>,
    edge_targets: Vec<u32>,
    masses: Vec<u32>,
    anchors: Vec<[u32; 4]>,
    positions: Vec<[u32; 3]>,
    velocities: Vec<[u32; 3]>,
    sssp_dist: Vec<u32>,
    params: SimParams,
    uploaded: SimParams,
    spawned: u64,
    iteration: u32,
    constraints_since: u32,
}

pub(super) fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

pub(super) fn floats_of(v: &[u32]) -> Vec<f32> {
    v.iter().map(|&b| f32::from_bits(b)).collect()
}

/// Positions or velocities as bits.
pub fn bits3(v: &[[f32; 3]]) -> Vec<[u32; 3]> {
    v.iter().map(|p| p.map(f32::to_bits)).collect()
}

/// Positions or velocities from bits.
pub fn floats3(v: &[[u32; 3]]) -> Vec<[f32; 3]> {
    v.iter().map(|p| p.map(f32::from_bits)).collect()
}

impl From<&Checkpoint> for WireCheckpoint {
    fn from(c: &Checkpoint) -> Self {
        WireCheckpoint {
            num_nodes: c.num_nodes,
            allocated_nodes: c.allocated_nodes,
            allocated_edges: c.allocated_edges,
            allocated_cells: c.allocated_cells,
            edges: c.edges.iter().map(|e| (e.u, e.v, e.w.to_bits())).collect(),
            edge_targets: bits_of(&c.edge_targets),
            masses: bits_of(&c.masses),
            anchors: c.anchors.iter().map(|a| a.map(f32::to_bits)).collect(),
            positions: bits3(&c.positions),
            velocities: bits3(&c.velocities),
            sssp_dist: bits_of(&c.sssp_dist),
            params: c.params.clone(),
            uploaded: c.uploaded.clone(),
            spawned: c.spawned,
            iteration: c.iteration,
            constraints_since: c.constraints_since,
        }
    }
}

impl WireCheckpoint {
    /// The checkpoint, exactly as it was taken.
    pub fn to_checkpoint(&self) -> Checkpoint {
        // A struct literal without `..`: a field added to `Checkpoint` must be added here too.
        Checkpoint {
            num_nodes: self.num_nodes,
            allocated_nodes: self.allocated_nodes,
            allocated_edges: self.allocated_edges,
            allocated_cells: self.allocated_cells,
            edges: self
                .edges
                .iter()
                .map(|&(u, v, w)| Edge {
                    u,
                    v,
                    w: f32::from_bits(w),
                })
                .collect(),
            edge_targets: floats_of(&self.edge_targets),
            masses: floats_of(&self.masses),
            anchors: self.anchors.iter().map(|a| a.map(f32::from_bits)).collect(),
            positions: floats3(&self.positions),
            velocities: floats3(&self.velocities),
            sssp_dist: floats_of(&self.sssp_dist),
            params: self.params.clone(),
            uploaded: self.uploaded.clone(),
            spawned: self.spawned,
            iteration: self.iteration,
            constraints_since: self.constraints_since,
        }
    }
}

/// Where a case continues after its process was poisoned: rebuild the engine from `checkpoint` in a
/// new process, retry op `from_op`, and go on from there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumePoint {
    /// Whether the capacity-invariance re-run (rather than the checked run) continues.
    pub rerun: bool,
    /// The op to retry first.
    pub from_op: usize,
    /// The state after the last completed op.
    pub checkpoint: WireCheckpoint,
    /// Final positions of the checked run (as bits), when the re-run continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_positions: Option<Vec<[u32; 3]>>,
}
