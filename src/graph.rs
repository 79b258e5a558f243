/*!
The graph as it enters the engine: [`GraphSpec`], a node count, weighted undirected edges and optional
positions, plus the limits every input is checked against.
*/

use serde::{Deserialize, Serialize};

use crate::error::GraphError;

/// Largest node count the engine accepts (a case asking for more is an error, not an OOM).
pub const MAX_NODES: u32 = 1 << 24;
/// Largest undirected edge count the engine accepts.
pub const MAX_EDGES: u32 = 1 << 26;

/// An undirected weighted edge. Self-loops and parallel edges are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// One endpoint.
    pub u: u32,
    /// The other endpoint.
    pub v: u32,
    /// Spring weight and SSSP length (finite, >= 0).
    pub w: f32,
}

impl Edge {
    /// An edge of weight 1.
    pub fn new(u: u32, v: u32) -> Self {
        Edge { u, v, w: 1.0 }
    }
}

/// A graph to lay out.
///
/// ```
/// use forcefield::{Edge, GraphSpec};
/// let g = GraphSpec { num_nodes: 3, edges: vec![Edge::new(0, 1), Edge::new(1, 2)], positions: None };
/// assert!(g.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// Number of nodes; ids are `0..num_nodes`.
    pub num_nodes: u32,
    /// Undirected edges.
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// Initial positions, one per node; seeded random positions when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<[f32; 3]>>,
}

impl GraphSpec {
    /// Checks counts against the limits, endpoints against the node count, weights and positions.
    pub fn validate(&self) -> Result<(), GraphError> {
        check_count("node count", self.num_nodes as u64, MAX_NODES as u64)?;
        check_count("edge count", self.edges.len() as u64, MAX_EDGES as u64)?;
        for e in &self.edges {
            check_edge(e, self.num_nodes)?;
        }
        if let Some(p) = &self.positions {
            check_positions(p, self.num_nodes as usize, 0)?;
        }
        Ok(())
    }
}

pub(crate) fn check_count(what: &'static str, count: u64, limit: u64) -> Result<(), GraphError> {
    if count > limit {
        return Err(GraphError::TooLarge { what, count, limit });
    }
    Ok(())
}

pub(crate) fn check_edge(e: &Edge, num_nodes: u32) -> Result<(), GraphError> {
    for id in [e.u, e.v] {
        if id >= num_nodes {
            return Err(GraphError::NodeOutOfRange {
                id: id as u64,
                num_nodes,
            });
        }
    }
    if !e.w.is_finite() || e.w < 0.0 {
        return Err(GraphError::BadWeight {
            u: e.u,
            v: e.v,
            weight: e.w,
        });
    }
    Ok(())
}

pub(crate) fn check_positions(
    p: &[[f32; 3]],
    expected: usize,
    first_id: u32,
) -> Result<(), GraphError> {
    if p.len() != expected {
        return Err(GraphError::PositionCount {
            given: p.len(),
            expected,
        });
    }
    if let Some(i) = p.iter().position(|q| q.iter().any(|c| !c.is_finite())) {
        return Err(GraphError::BadPosition {
            node: first_id + i as u32,
        });
    }
    Ok(())
}

/// Deterministic initial position of node `id`: uniform in a cube whose side grows with the cube root
/// of the node count, so that density is about the same at every size.
pub fn seeded_position(seed: u64, id: u32, half_side: f32) -> [f32; 3] {
    let mut out = [0.0; 3];
    for (axis, o) in out.iter_mut().enumerate() {
        let h = crate::hash::mix3(seed, id as u64, axis as u64);
        *o = (crate::hash::unit_f32(h) * 2.0 - 1.0) * half_side;
    }
    out
}
