/*!
The reference model: what the engine's observable state must be after each operation of a case,
kept in plain data structures and compared with the engine after every op (the `model` oracle).

The generic oracles ([`crate::worker::oracle`]) check the engine against itself: a CSR that matches the
engine's own edge list, SSSP that matches Dijkstra on the engine's own graph. An operation that does
something else than asked, consistently, passes all of them. This module knows what each op means
(the semantics written in the engine's module docs, "What each operation leaves behind") and
shares no code with the engine's graph editing: a node list and an edge list, edited by the
definitions.

What is compared, after every op ([`ReferenceModel::compare`], in this order, each with its own
check name so that a signature says what was wrong):

* `model-counts`: live nodes and edges;
* `model-edges`: the CSR read back from the device, row by row: each row's entries (column and
  weight bits) in edge-list order;
* `model-constraints`: masses, position constraints and per-entry distance targets read back from
  the device, bit for bit;
* `model-positions`, `model-velocities`: every node's position and velocity, bit for bit, after
  every op but `step` (no graph edit may move a node; new nodes start where the docs say). After a
  step the model adopts the engine's positions and velocities: how nodes move is the physics
  reference's business ([`crate::worker::physics`]), not the model's.

A violation is signed `invariant:model-<what>:<op>`.
*/

use forcefield::graph::seeded_position;
use forcefield::{Checkpoint, ConstraintInspection, CsrInspection, Edge, GraphSpec, SimParams};

use crate::case::Op;
use crate::worker::oracle::Violation;

/// The check names of the model oracle.
pub mod checks {
    /// Live node and edge counts.
    pub const COUNTS: &str = "model-counts";
    /// The edge multiset as the device's CSR holds it.
    pub const EDGES: &str = "model-edges";
    /// Masses, position constraints, distance targets.
    pub const CONSTRAINTS: &str = "model-constraints";
    /// Positions of nodes after an op that must not move them, and of new nodes.
    pub const POSITIONS: &str = "model-positions";
    /// Velocities, likewise.
    pub const VELOCITIES: &str = "model-velocities";
}

/// Stiffness and target of a node with no position constraint, and its mass.
const NO_ANCHOR: [f32; 4] = [0.0; 4];
const NEW_MASS: f32 = 1.0;
/// The distance target of an edge with none.
const NO_TARGET: f32 = -1.0;

#[derive(Clone, Debug, PartialEq)]
struct ModelNode {
    position: [f32; 3],
    velocity: [f32; 3],
    mass: f32,
    anchor: [f32; 4],
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ModelEdge {
    u: u32,
    v: u32,
    w: f32,
    target: f32,
}

impl ModelEdge {
    fn joins(&self, a: u32, b: u32) -> bool {
        (self.u == a && self.v == b) || (self.u == b && self.v == a)
    }
}

/// What the engine must hold: nodes in id order, edges in insertion order.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceModel {
    nodes: Vec<ModelNode>,
    edges: Vec<ModelEdge>,
    params: SimParams,
    /// Nodes ever added: seeds the next node's position.
    spawned: u64,
}

/// The engine's observable state, read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Live nodes.
    pub num_nodes: u32,
    /// Live edges.
    pub num_edges: u32,
    /// Positions.
    pub positions: Vec<[f32; 3]>,
    /// Velocities.
    pub velocities: Vec<[f32; 3]>,
    /// The CSR on the device.
    pub csr: CsrInspection,
    /// Attributes and constraints on the device.
    pub constraints: ConstraintInspection,
}

fn violation(check: &'static str, detail: String) -> Violation {
    Violation { check, detail }
}

fn bits3(p: [f32; 3]) -> [u32; 3] {
    p.map(f32::to_bits)
}

fn bits4(p: [f32; 4]) -> [u32; 4] {
    p.map(f32::to_bits)
}

impl ReferenceModel {
    /// The state an engine built from `graph` with `params` must have.
    pub fn new(graph: &GraphSpec, params: SimParams) -> Self {
        let mut model = ReferenceModel {
            nodes: Vec::new(),
            edges: Vec::new(),
            params,
            spawned: 0,
        };
        model.add_nodes(u64::from(graph.num_nodes), graph.positions.as_deref());
        model.add_edges(&graph.edges);
        model
    }

    /// The state of an engine rebuilt from `checkpoint` (a case continued in a new process): the
    /// checkpoint is taken as given.
    pub fn from_checkpoint(c: &Checkpoint) -> Self {
        let nodes = (0..c.num_nodes as usize)
            .map(|i| ModelNode {
                position: c.positions.get(i).copied().unwrap_or([f32::NAN; 3]),
                velocity: c.velocities.get(i).copied().unwrap_or([f32::NAN; 3]),
                mass: c.masses.get(i).copied().unwrap_or(f32::NAN),
                anchor: c.anchors.get(i).copied().unwrap_or([f32::NAN; 4]),
            })
            .collect();
        let edges = c
            .edges
            .iter()
            .enumerate()
            .map(|(k, e)| ModelEdge {
                u: e.u,
                v: e.v,
                w: e.w,
                target: c.edge_targets.get(k).copied().unwrap_or(f32::NAN),
            })
            .collect();
        ReferenceModel {
            nodes,
            edges,
            params: c.params.clone(),
            spawned: c.spawned,
        }
    }

    /// Live nodes.
    #[cfg(test)]
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Live edges.
    #[cfg(test)]
    pub fn num_edges(&self) -> usize {
        self.edges.len()
    }

    fn add_nodes(&mut self, count: u64, positions: Option<&[[f32; 3]]>) {
        let new_n = self.nodes.len() as u64 + count;
        // The documented placement: a cube whose half side grows with the cube root of the count
        // after the op, capped by the viewport; node `s` of all ever added gets hash position `s`.
        let half = (self.params.rest_length.max(1.0) * (new_n.max(1) as f32).cbrt())
            .min(self.params.viewport_bounds);
        for k in 0..count {
            let position = match positions {
                Some(p) => p.get(k as usize).copied().unwrap_or([f32::NAN; 3]),
                None => seeded_position(self.params.seed, (self.spawned + k) as u32, half),
            };
            self.nodes.push(ModelNode {
                position,
                velocity: [0.0; 3],
                mass: NEW_MASS,
                anchor: NO_ANCHOR,
            });
        }
        self.spawned += count;
    }

    fn add_edges(&mut self, edges: &[Edge]) {
        self.edges.extend(edges.iter().map(|e| ModelEdge {
            u: e.u,
            v: e.v,
            w: e.w,
            target: NO_TARGET,
        }));
    }

    /// Applies `op` as its definition says. `step` changes nothing here: see
    /// [`ReferenceModel::observe_step`].
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::AddNodes { count, positions } => self.add_nodes(*count, positions.as_deref()),
            Op::RemoveNodes { ids } => {
                let mut new_id: Vec<Option<u32>> = vec![Some(0); self.nodes.len()];
                for &id in ids {
                    if let Some(slot) = new_id.get_mut(id as usize) {
                        *slot = None;
                    }
                }
                for (next, slot) in new_id.iter_mut().flatten().enumerate() {
                    *slot = next as u32;
                }
                let mut old = 0usize;
                self.nodes.retain(|_| {
                    old += 1;
                    new_id[old - 1].is_some()
                });
                self.edges = self
                    .edges
                    .iter()
                    .filter_map(|e| {
                        let u = new_id.get(e.u as usize).copied().flatten()?;
                        let v = new_id.get(e.v as usize).copied().flatten()?;
                        Some(ModelEdge { u, v, ..*e })
                    })
                    .collect();
            }
            Op::AddEdges { edges } => self.add_edges(edges),
            Op::RemoveEdges { pairs } => self
                .edges
                .retain(|e| !pairs.iter().any(|&(a, b)| e.joins(a, b))),
            Op::SetParams { params } => self.params = params.clone(),
            Op::SetPositionConstraint {
                node,
                target,
                stiffness,
            } => {
                if let Some(n) = self.nodes.get_mut(*node as usize) {
                    n.anchor = [target[0], target[1], target[2], *stiffness];
                }
            }
            Op::SetDistanceConstraint { u, v, distance } => {
                let target = if distance.is_finite() {
                    *distance
                } else {
                    NO_TARGET
                };
                for e in self.edges.iter_mut().filter(|e| e.joins(*u, *v)) {
                    e.target = target;
                }
            }
            Op::ClearConstraints => {
                for n in &mut self.nodes {
                    n.anchor = NO_ANCHOR;
                }
                for e in &mut self.edges {
                    e.target = NO_TARGET;
                }
            }
            Op::Reserve { .. }
            | Op::ShrinkToFit
            | Op::Step { .. }
            | Op::Sssp { .. }
            | Op::ReadPositions
            | Op::Inject { .. } => {}
        }
    }

    /// After a step: the nodes are where the engine says (compared by [`crate::worker::physics`] where it
    /// applies); everything else must be as it was.
    pub fn observe_step(&mut self, positions: &[[f32; 3]], velocities: &[[f32; 3]]) {
        for (k, n) in self.nodes.iter_mut().enumerate() {
            if let (Some(p), Some(v)) = (positions.get(k), velocities.get(k)) {
                n.position = *p;
                n.velocity = *v;
            }
        }
    }

    /// The CSR rows the edge list defines: row `r` lists `(column, weight)` of every edge touching
    /// `r`, in edge order (a self loop twice), with each entry's distance target.
    fn rows(&self) -> Vec<Vec<(u32, f32, f32)>> {
        let mut rows = vec![Vec::new(); self.nodes.len()];
        for e in &self.edges {
            if let Some(row) = rows.get_mut(e.u as usize) {
                row.push((e.v, e.w, e.target));
            }
            if let Some(row) = rows.get_mut(e.v as usize) {
                row.push((e.u, e.w, e.target));
            }
        }
        rows
    }

    /// The `model` oracle after `op`, as both executors run it (the engine's and the one over
    /// the target trait): an op that ran (`accepted`) is applied by its definition, one refused
    /// leaves the model as it was; `seen`, read after the op, must be what the model holds; after
    /// a step of at least one step the model adopts the new positions and velocities.
    pub fn check_after(
        &mut self,
        op: &Op,
        accepted: bool,
        seen: &Observed,
    ) -> Result<(), Violation> {
        if accepted {
            self.apply(op);
        }
        let moved = accepted && matches!(op, Op::Step { count } if *count > 0);
        self.compare(seen, moved)?;
        if moved {
            self.observe_step(&seen.positions, &seen.velocities);
        }
        Ok(())
    }

    /// The `model` oracle: `seen` must be what the model holds. `moved`: the op was a step, so
    /// positions and velocities are not compared.
    pub fn compare(&self, seen: &Observed, moved: bool) -> Result<(), Violation> {
        let (n, m) = (self.nodes.len(), self.edges.len());
        if seen.num_nodes as usize != n || seen.num_edges as usize != m {
            return Err(violation(
                checks::COUNTS,
                format!(
                    "the engine holds {} nodes and {} edges, the model {n} and {m}",
                    seen.num_nodes, seen.num_edges
                ),
            ));
        }
        let rows = self.rows();
        let offsets = &seen.csr.row_offsets;
        for (r, expected) in rows.iter().enumerate() {
            let entries = offsets
                .get(r)
                .zip(offsets.get(r + 1))
                .map(|(&a, &b)| a as usize..b as usize)
                .filter(|e| e.start <= e.end && e.end <= seen.csr.col_indices.len())
                .unwrap_or(0..0);
            let got: Vec<(u32, u32)> = entries
                .clone()
                .map(|k| {
                    let w = seen.csr.weights.get(k).copied().unwrap_or(f32::NAN);
                    (seen.csr.col_indices[k], w.to_bits())
                })
                .collect();
            let want: Vec<(u32, u32)> =
                expected.iter().map(|&(c, w, _)| (c, w.to_bits())).collect();
            if got != want {
                let show = |v: &[(u32, u32)]| -> String {
                    let items: Vec<String> = v
                        .iter()
                        .take(6)
                        .map(|&(c, w)| format!("{c} (w {})", f32::from_bits(w)))
                        .collect();
                    let more = if v.len() > 6 { ", ..." } else { "" };
                    format!("[{}{more}]", items.join(", "))
                };
                return Err(violation(
                    checks::EDGES,
                    format!(
                        "row {r} of the CSR is {}, the model's edges give {}",
                        show(&got),
                        show(&want)
                    ),
                ));
            }
            for (k, &(c, _, target)) in entries.zip(expected) {
                let got = seen.constraints.edge_targets.get(k).copied();
                if got.map(f32::to_bits) != Some(target.to_bits()) {
                    return Err(violation(
                        checks::CONSTRAINTS,
                        format!(
                            "the edge {r} -> {c} (CSR entry {k}) has distance target {got:?}, the model {target}"
                        ),
                    ));
                }
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let mass = seen.constraints.masses.get(i).copied();
            if mass.map(f32::to_bits) != Some(node.mass.to_bits()) {
                return Err(violation(
                    checks::CONSTRAINTS,
                    format!("node {i} has mass {mass:?}, the model {}", node.mass),
                ));
            }
            let anchor = seen.constraints.anchors.get(i).copied();
            if anchor.map(bits4) != Some(bits4(node.anchor)) {
                return Err(violation(
                    checks::CONSTRAINTS,
                    format!(
                        "node {i} has position constraint {anchor:?}, the model {:?}",
                        node.anchor
                    ),
                ));
            }
        }
        if moved {
            return Ok(());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let p = seen.positions.get(i).copied();
            if p.map(bits3) != Some(bits3(node.position)) {
                return Err(violation(
                    checks::POSITIONS,
                    format!(
                        "node {i} is at {p:?}, the model has it at {:?}",
                        node.position
                    ),
                ));
            }
            let v = seen.velocities.get(i).copied();
            if v.map(bits3) != Some(bits3(node.velocity)) {
                return Err(violation(
                    checks::VELOCITIES,
                    format!("node {i} has velocity {v:?}, the model {:?}", node.velocity),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(u: u32, v: u32, w: f32) -> Edge {
        Edge { u, v, w }
    }

    fn graph(n: u32, edges: Vec<Edge>) -> GraphSpec {
        GraphSpec {
            num_nodes: n,
            edges,
            positions: Some((0..n).map(|i| [i as f32, 0.0, 0.0]).collect()),
        }
    }

    /// What an engine that does exactly what the model says would show.
    fn observed_of(m: &ReferenceModel) -> Observed {
        let rows = m.rows();
        let mut row_offsets = vec![0u32];
        let (mut cols, mut weights, mut targets) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            for &(c, w, t) in row {
                cols.push(c);
                weights.push(w);
                targets.push(t);
            }
            row_offsets.push(cols.len() as u32);
        }
        Observed {
            num_nodes: m.nodes.len() as u32,
            num_edges: m.edges.len() as u32,
            positions: m.nodes.iter().map(|n| n.position).collect(),
            velocities: m.nodes.iter().map(|n| n.velocity).collect(),
            csr: CsrInspection {
                row_offsets,
                col_indices: cols,
                weights,
            },
            constraints: ConstraintInspection {
                masses: m.nodes.iter().map(|n| n.mass).collect(),
                anchors: m.nodes.iter().map(|n| n.anchor).collect(),
                edge_targets: targets,
            },
        }
    }

    #[test]
    fn removal_renumbers_survivors_and_drops_their_edges() {
        let mut m = ReferenceModel::new(
            &graph(
                4,
                vec![
                    edge(0, 1, 1.0),
                    edge(1, 2, 2.0),
                    edge(3, 2, 3.0),
                    edge(3, 3, 4.0),
                ],
            ),
            SimParams::default(),
        );
        m.apply(&Op::RemoveNodes { ids: vec![1, 1] });
        assert_eq!(m.num_nodes(), 3);
        let kept: Vec<(u32, u32)> = m.edges.iter().map(|e| (e.u, e.v)).collect();
        assert_eq!(kept, vec![(2, 1), (2, 2)]);
        assert_eq!(m.nodes[1].position, [2.0, 0.0, 0.0]);
        assert_eq!(m.nodes[2].position, [3.0, 0.0, 0.0]);
    }

    #[test]
    fn remove_edges_takes_every_duplicate_in_both_directions() {
        let mut m = ReferenceModel::new(
            &graph(
                3,
                vec![
                    edge(0, 1, 1.0),
                    edge(1, 0, 2.0),
                    edge(0, 1, 3.0),
                    edge(1, 2, 1.0),
                ],
            ),
            SimParams::default(),
        );
        m.apply(&Op::RemoveEdges {
            pairs: vec![(1, 0), (2, 0)],
        });
        assert_eq!(m.num_edges(), 1);
        assert_eq!((m.edges[0].u, m.edges[0].v), (1, 2));
    }

    #[test]
    fn a_faithful_engine_passes_and_each_kind_of_deviation_is_named() {
        let mut m = ReferenceModel::new(
            &graph(3, vec![edge(0, 1, 1.0), edge(0, 1, 1.0), edge(2, 2, 0.5)]),
            SimParams::default(),
        );
        m.apply(&Op::SetDistanceConstraint {
            u: 1,
            v: 0,
            distance: 2.0,
        });
        m.apply(&Op::SetPositionConstraint {
            node: 2,
            target: [1.0, 2.0, 3.0],
            stiffness: 0.5,
        });
        let good = observed_of(&m);
        m.compare(&good, false).unwrap();

        // A duplicate edge lost (the edges kept as a set): counts first.
        let mut deduplicated = m.clone();
        deduplicated.edges.remove(1);
        let seen = observed_of(&deduplicated);
        assert_eq!(m.compare(&seen, false).unwrap_err().check, checks::COUNTS);
        // The same CSR length but a weight swapped: the edges.
        let mut seen = good.clone();
        seen.csr.weights[0] = 7.0;
        assert_eq!(m.compare(&seen, false).unwrap_err().check, checks::EDGES);
        // A target lost.
        let mut seen = good.clone();
        seen.constraints.edge_targets[0] = -1.0;
        assert_eq!(
            m.compare(&seen, false).unwrap_err().check,
            checks::CONSTRAINTS
        );
        // A node moved by one ulp, a velocity not zero.
        let mut seen = good.clone();
        seen.positions[1][2] = f32::from_bits(seen.positions[1][2].to_bits() + 1);
        let e = m.compare(&seen, false).unwrap_err();
        assert_eq!(e.check, checks::POSITIONS);
        assert!(e.detail.starts_with("node 1 is at"), "{e}");
        // ... which is no violation after a step.
        m.compare(&seen, true).unwrap();
        let mut seen = good;
        seen.velocities[0][0] = 0.25;
        assert_eq!(
            m.compare(&seen, false).unwrap_err().check,
            checks::VELOCITIES
        );
    }

    #[test]
    fn seeded_nodes_start_where_the_docs_say() {
        let params = SimParams::default();
        let mut m = ReferenceModel::new(&graph(0, vec![]), params.clone());
        m.apply(&Op::AddNodes {
            count: 2,
            positions: None,
        });
        m.apply(&Op::RemoveNodes { ids: vec![0] });
        m.apply(&Op::AddNodes {
            count: 1,
            positions: None,
        });
        // The third node ever added, in a cube for 2 live nodes.
        let half = (params.rest_length.max(1.0) * 2f32.cbrt()).min(params.viewport_bounds);
        assert_eq!(m.nodes[1].position, seeded_position(params.seed, 2, half));
        assert_eq!(m.nodes[1].velocity, [0.0; 3]);
    }
}
