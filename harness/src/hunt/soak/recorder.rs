//! The flight recorder's size against the case limits, so that a life is retired before its
//! recorder could not be loaded as a case.

use crate::case::{Case, Op, MAX_CASE_EDGES, MAX_CASE_NODES, MAX_CASE_OPS, MAX_CASE_STEPS};

/// What a life's flight recorder holds against the case limits that [`Case::validate`] enforces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecorderTally {
    /// Operations.
    pub ops: u64,
    /// Steps in all.
    pub steps: u64,
    /// Nodes created in all (start graph plus every `add_nodes`).
    pub nodes_created: u64,
    /// Edges created in all (start graph plus every `add_edges`).
    pub edges_created: u64,
}

impl RecorderTally {
    /// The tally of a start case (its ops are ignored: a life starts with none).
    pub fn of_start(case: &Case) -> Self {
        RecorderTally {
            ops: 0,
            steps: 0,
            nodes_created: case.graph.num_nodes,
            edges_created: case.graph.edges.len() as u64,
        }
    }

    pub(super) fn with(&self, chunk: &[Op]) -> Self {
        let mut t = self.clone();
        for op in chunk {
            t.ops += 1;
            match op {
                Op::Step { count } => t.steps += count,
                Op::AddNodes { count, .. } => t.nodes_created += count,
                Op::AddEdges { edges } => t.edges_created += edges.len() as u64,
                _ => {}
            }
        }
        t
    }

    /// Whether the recorder with `chunk` appended is still a loadable case. Live counts need no
    /// check here: the stream's model keeps them far below the limits.
    pub fn admits(&self, chunk: &[Op]) -> bool {
        let t = self.with(chunk);
        t.ops <= MAX_CASE_OPS as u64
            && t.steps <= MAX_CASE_STEPS
            && t.nodes_created <= 4 * MAX_CASE_NODES
            && t.edges_created <= MAX_CASE_EDGES
    }

    /// Appends `chunk`.
    pub fn add(&mut self, chunk: &[Op]) {
        *self = self.with(chunk);
    }
}
