/*!
Case files: the versioned JSON operation log every Forcefield tool reads and writes.

A [`Case`] is an initial graph, parameters, planted faults and a list of [`Op`]s to apply to a fresh
engine, with an optional [`Expectation`] and [`Provenance`] for corpus entries. Production systems can
record such logs; generators ([`crate::case::generate`]) and minimizers produce them; the executor
([`crate::worker::execute`]) runs them.

This module is responsible for the format (`"format": "forcefield-case/1"`) and for validating a case
*completely before anything runs*: the format string, every count against the engine's limits and the
harness's own tighter ones, every node id against the node count the ops before it leave, every
parameter set. A case that asks for 10^12 nodes is a one-line error, not an out-of-memory kill. Errors
name where they are: `op 3 (remove_nodes): node id 9 out of range (5 nodes)`.

The folder holds everything that makes or reduces cases without running them: generation from a
seed ([`generate`]), proptest shrinking of a generated case ([`shrink`]), the reduction passes
([`minimize`]) and delta debugging ([`ddmin`]). **Architecture Invariant:** this layer imports
only `isolate` and the base files: a case knows nothing of workers, oracles or campaigns, and the
minimizer judges candidates through the caller's closure.

# Operations

`add_nodes {count, positions?}`, `remove_nodes {ids}`, `add_edges {edges}`, `remove_edges {pairs}`,
`set_params {params}`, `reserve {nodes, edges}`, `shrink_to_fit`, `step {count}`, `sssp {source}`,
`read_positions`, and `inject {fault}`: an injected environment fault, armed before the next ops,
such as `{"op": "inject", "fault": {"kind": "fail-copy", "nth": 2}}` (the 2nd copy from now on
fails). Kinds: `fail-alloc`, `fail-copy`, `fail-launch`, `lose-context` (a real `__trap()` on CUDA);
`nth` counts the matching backend calls from 1 and must lie in 1..=64. The fault is part of the log, so
it replays exactly and minimizes like any other op; what the executor expects of the engine when it
fires is in [`crate::worker::execute`].

# Engine settings

An optional `"engine": {"max_grid_cells": N}` section sets the engine's cap on grid cells (default
2^21, accepted 1..=2^22). Settings never change a layout, only how the engine gets there; a small cap
makes the grid stage coarsen the cells, which is where grid-size bugs live.

```
use forcefield_harness::case::Case;
let case = Case::from_json(r#"{
    "format": "forcefield-case/1",
    "graph": { "num_nodes": 3, "edges": [ { "u": 0, "v": 1, "w": 1.0 } ] },
    "ops": [ { "op": "add_nodes", "count": 2 }, { "op": "remove_nodes", "ids": [1] },
             { "op": "step", "count": 10 } ]
}"#).unwrap();
assert_eq!(case.size(), (5, 1, 3));
let err = Case::from_json(r#"{ "format": "forcefield-case/1", "graph": { "num_nodes": 3 },
    "ops": [ { "op": "remove_nodes", "ids": [0] }, { "op": "sssp", "source": 2 } ] }"#).unwrap_err();
assert_eq!(err.to_string(), "op 1 (sssp): node id 2 out of range (2 nodes)");
```
*/

pub mod ddmin;
pub mod fixtures;
pub mod generate;
pub mod minimize;
pub(crate) mod shrink;

use std::collections::BTreeSet;
use std::fmt;

use forcefield::engine::DEFAULT_MAX_GRID_CELLS;
use forcefield::graph::{MAX_EDGES, MAX_NODES};
use forcefield::{Edge, EngineConfig, EnvFault, Fault, GraphSpec, GrowthPolicy, SimParams};
use serde::{Deserialize, Serialize};

/// The format string of this version of the case format.
pub const FORMAT: &str = "forcefield-case/1";

/// Harness cap on live nodes at any point of a case (tighter than the engine's [`MAX_NODES`], so that
/// a case stays runnable in a worker's memory).
pub(crate) const MAX_CASE_NODES: u64 = crate::input::MAX_INPUT_NODES as u64;
/// Harness cap on the undirected edges a case creates in all (initial graph plus every `add_edges`).
pub(crate) const MAX_CASE_EDGES: u64 = crate::input::MAX_INPUT_EDGES as u64;
/// Harness cap on the steps a case takes in all.
pub(crate) const MAX_CASE_STEPS: u64 = 1_000_000;
/// Harness cap on the number of operations.
pub(crate) const MAX_CASE_OPS: usize = 100_000;
/// Largest case file accepted, in bytes.
pub(crate) const MAX_CASE_BYTES: usize = 256 << 20;
/// Largest `nth` of an injected fault: beyond it a fault would rarely fire within a case.
pub(crate) const MAX_INJECT_NTH: u32 = 64;
/// Largest grid-cell cap a case may set (twice the engine's default).
pub(crate) const MAX_CASE_GRID_CELLS: u64 = 2 * DEFAULT_MAX_GRID_CELLS as u64;

/// Which engine backend a case runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The CPU backend (always available).
    #[default]
    Cpu,
    /// The CUDA backend (needs a device).
    Cuda,
}

impl BackendKind {
    /// The name used in case files and on command lines.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(BackendKind::Cpu),
            "cuda" => Ok(BackendKind::Cuda),
            _ => Err(format!("unknown backend `{s}` (known: cpu, cuda)")),
        }
    }
}

/// The initial graph of a case. Like [`GraphSpec`], but the node count is read as a 64-bit number so
/// that an absurd count is reported as too large rather than as a parse error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseGraph {
    /// Number of nodes; ids are `0..num_nodes`.
    pub num_nodes: u64,
    /// Undirected weighted edges (self-loops and parallel edges allowed).
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// Initial positions, one per node; seeded random positions when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<[f32; 3]>>,
}

impl CaseGraph {
    /// The engine's graph. Fails only on a graph that [`Case::validate`] rejects.
    pub fn to_spec(&self) -> Result<GraphSpec, CaseError> {
        let num_nodes = u32::try_from(self.num_nodes).map_err(|_| {
            CaseError::invalid(
                Location::Graph,
                format!(
                    "node count {} exceeds the limit of {MAX_NODES}",
                    self.num_nodes
                ),
            )
        })?;
        Ok(GraphSpec {
            num_nodes,
            edges: self.edges.clone(),
            positions: self.positions.clone(),
        })
    }
}

impl From<&GraphSpec> for CaseGraph {
    fn from(g: &GraphSpec) -> Self {
        CaseGraph {
            num_nodes: g.num_nodes as u64,
            edges: g.edges.clone(),
            positions: g.positions.clone(),
        }
    }
}

/// One operation of a case, applied to the engine in order.
///
/// In JSON an object tagged by `"op"`, e.g. `{"op": "step", "count": 10}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Adds `count` nodes, at `positions` (one per new node) or at seeded positions.
    AddNodes {
        /// Nodes to add.
        count: u64,
        /// Their positions; seeded when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        positions: Option<Vec<[f32; 3]>>,
    },
    /// Removes nodes; the rest keep their order and are renumbered from 0, as the engine does.
    RemoveNodes {
        /// Ids to remove (duplicates allowed).
        ids: Vec<u32>,
    },
    /// Adds undirected edges.
    AddEdges {
        /// The edges.
        edges: Vec<Edge>,
    },
    /// Removes every edge between each pair, in either direction.
    RemoveEdges {
        /// `[u, v]` pairs.
        pairs: Vec<(u32, u32)>,
    },
    /// Replaces the parameters (fields left out take their defaults, not their current values).
    SetParams {
        /// The new parameters.
        params: SimParams,
    },
    /// Reserves capacity for at least this many nodes and edges.
    Reserve {
        /// Node capacity.
        #[serde(default)]
        nodes: u64,
        /// Edge capacity.
        #[serde(default)]
        edges: u64,
    },
    /// Shrinks every capacity to the live counts.
    ShrinkToFit,
    /// Runs `count` steps.
    Step {
        /// Steps.
        count: u64,
    },
    /// Runs SSSP from `source`.
    Sssp {
        /// Source node.
        source: u32,
    },
    /// Reads the positions back.
    ReadPositions,
    /// Arms an injected environment fault: the `nth` next matching backend call fails.
    Inject {
        /// The fault, e.g. `{"kind": "fail-alloc", "nth": 2}`.
        fault: EnvFault,
    },
    /// Pulls `node` toward `target` with `stiffness` (0 removes the constraint).
    SetPositionConstraint {
        /// The node.
        node: u32,
        /// Where it is pulled, `[x, y, z]`.
        target: [f32; 3],
        /// Spring constant toward the target (finite, at least 0).
        stiffness: f32,
    },
    /// Holds every edge between `u` and `v` (either direction) at `distance` (negative removes
    /// the constraint). When no edge joins them the op changes nothing.
    SetDistanceConstraint {
        /// One end.
        u: u32,
        /// The other end.
        v: u32,
        /// Target length.
        distance: f32,
    },
    /// Removes every position and distance constraint.
    ClearConstraints,
}

impl Op {
    /// The op's tag, as written in case files (`"add_nodes"`, ...).
    pub const fn name(&self) -> &'static str {
        match self {
            Op::AddNodes { .. } => "add_nodes",
            Op::RemoveNodes { .. } => "remove_nodes",
            Op::AddEdges { .. } => "add_edges",
            Op::RemoveEdges { .. } => "remove_edges",
            Op::SetParams { .. } => "set_params",
            Op::Reserve { .. } => "reserve",
            Op::ShrinkToFit => "shrink_to_fit",
            Op::Step { .. } => "step",
            Op::Sssp { .. } => "sssp",
            Op::ReadPositions => "read_positions",
            Op::Inject { .. } => "inject",
            Op::SetPositionConstraint { .. } => "set_position_constraint",
            Op::SetDistanceConstraint { .. } => "set_distance_constraint",
            Op::ClearConstraints => "clear_constraints",
        }
    }
}

/// Engine settings of a case: how the engine works, never what layout it computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseEngine {
    /// Cap on the total number of grid cells (the engine's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grid_cells: Option<u64>,
}

/// What running a case is expected to give.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// The case passes every check.
    Pass,
    /// A known bug, still open: the case fails with this signature.
    Open {
        /// The signature it fails with, e.g. `signal:SIGSEGV:sort_pairs`.
        signature: String,
    },
}

/// Where a case came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The command or system that found it.
    #[serde(default)]
    pub found_by: String,
    /// The campaign seed, when generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// When it was found (ISO 8601 date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A case: a graph, parameters, faults and operations. See the module documentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Always [`FORMAT`].
    pub format: String,
    /// The seed the case was generated from (0 when written by hand). The layout's own seed is
    /// `params.seed`.
    #[serde(default)]
    pub seed: u64,
    /// The backend to run on.
    #[serde(default)]
    pub backend: BackendKind,
    /// Planted faults to switch on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// Initial parameters; defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<SimParams>,
    /// Engine settings; the engine's defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<CaseEngine>,
    /// The initial graph.
    pub graph: CaseGraph,
    /// Operations, in order.
    #[serde(default)]
    pub ops: Vec<Op>,
    /// The expected outcome (corpus entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expectation>,
    /// Where the case came from (corpus entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// Which part of a case an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The case as a whole.
    Case,
    /// The initial graph.
    Graph,
    /// The initial parameters.
    Params,
    /// The engine settings.
    Engine,
    /// An operation: its index in `ops` and its name.
    Op {
        /// Index in `ops`.
        index: usize,
        /// The op's name.
        name: &'static str,
    },
    /// The expectation.
    Expect,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Case => f.write_str("case"),
            Location::Graph => f.write_str("graph"),
            Location::Params => f.write_str("params"),
            Location::Engine => f.write_str("engine"),
            Location::Op { index, name } => write!(f, "op {index} ({name})"),
            Location::Expect => f.write_str("expect"),
        }
    }
}

/// Why a case was rejected. Every message is one line.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CaseError {
    /// The text is larger than [`MAX_CASE_BYTES`].
    #[error("case is {bytes} bytes, more than the limit of {limit}")]
    TooBig {
        /// Size of the text.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or JSON of the wrong shape (serde's message, with line and column).
    #[error("not a valid case: {}", crate::input::escape_control(.0))]
    Parse(String),
    /// A `format` other than [`FORMAT`].
    #[error(
        "unsupported case format `{}` (expected `{FORMAT}`)",
        crate::input::escape_control(found)
    )]
    Format {
        /// The format found (empty when missing).
        found: String,
    },
    /// Well-formed, but invalid: a count over a limit, an id out of range, a bad parameter.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// Serializing failed (not expected for a valid case).
    #[error("cannot write case: {0}")]
    Serialize(String),
}

impl CaseError {
    fn invalid(at: Location, message: impl Into<String>) -> Self {
        CaseError::Invalid {
            at,
            message: message.into(),
        }
    }

    /// The index of the op at fault, when the error is about one.
    pub fn op_index(&self) -> Option<usize> {
        match self {
            CaseError::Invalid {
                at: Location::Op { index, .. },
                ..
            } => Some(*index),
            _ => None,
        }
    }
}

/// Reads only the format string, so that a case of another version is reported as such rather than
/// by whichever of its fields this version does not know.
#[derive(Deserialize)]
struct FormatProbe {
    format: Option<String>,
}

fn check_limit(at: &Location, what: &str, count: u64, limit: u64) -> Result<(), CaseError> {
    if count > limit {
        return Err(CaseError::invalid(
            at.clone(),
            format!("{what} {count} exceeds the limit of {limit}"),
        ));
    }
    Ok(())
}

fn check_edges(at: &Location, edges: &[Edge], num_nodes: u64) -> Result<(), CaseError> {
    for e in edges {
        for id in [e.u, e.v] {
            check_node(at, id, num_nodes)?;
        }
        if !e.w.is_finite() || e.w < 0.0 {
            return Err(CaseError::invalid(
                at.clone(),
                format!(
                    "edge {}-{} has invalid weight {} (weights must be finite and >= 0)",
                    e.u, e.v, e.w
                ),
            ));
        }
    }
    Ok(())
}

fn check_node(at: &Location, id: u32, num_nodes: u64) -> Result<(), CaseError> {
    if id as u64 >= num_nodes {
        return Err(CaseError::invalid(
            at.clone(),
            format!("node id {id} out of range ({num_nodes} nodes)"),
        ));
    }
    Ok(())
}

fn check_positions(at: &Location, p: &[[f32; 3]], expected: u64) -> Result<(), CaseError> {
    if p.len() as u64 != expected {
        return Err(CaseError::invalid(
            at.clone(),
            format!("{} positions given for {expected} nodes", p.len()),
        ));
    }
    if let Some(i) = p.iter().position(|q| q.iter().any(|c| !c.is_finite())) {
        return Err(CaseError::invalid(
            at.clone(),
            format!("position {i} is not finite"),
        ));
    }
    Ok(())
}

fn check_params(at: &Location, p: &SimParams) -> Result<(), CaseError> {
    p.validate()
        .map_err(|e| CaseError::invalid(at.clone(), e.to_string()))
}

/// The running state of a case as validation walks its ops: counts only, so that validation costs
/// time proportional to the size of the file.
struct Tally {
    nodes: u64,
    peak_nodes: u64,
    edges_created: u64,
    nodes_created: u64,
    steps: u64,
}

impl Case {
    /// A case of `graph` with default parameters and no ops.
    pub fn new(graph: CaseGraph) -> Self {
        Case {
            format: FORMAT.to_string(),
            seed: 0,
            backend: BackendKind::Cpu,
            faults: Vec::new(),
            params: None,
            engine: None,
            graph,
            ops: Vec::new(),
            expect: None,
            provenance: None,
        }
    }

    /// Parses and validates a case. Nothing about it is trusted until this returns `Ok`.
    pub fn from_json(text: &str) -> Result<Case, CaseError> {
        if text.len() > MAX_CASE_BYTES {
            return Err(CaseError::TooBig {
                bytes: text.len(),
                limit: MAX_CASE_BYTES,
            });
        }
        let probe: FormatProbe =
            serde_json::from_str(text).map_err(|e| CaseError::Parse(e.to_string()))?;
        match probe.format.as_deref() {
            Some(FORMAT) => {}
            other => {
                return Err(CaseError::Format {
                    found: other.unwrap_or_default().to_string(),
                })
            }
        }
        let case: Case = serde_json::from_str(text).map_err(|e| CaseError::Parse(e.to_string()))?;
        case.validate()?;
        Ok(case)
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Result<String, CaseError> {
        serde_json::to_string(self).map_err(|e| CaseError::Serialize(e.to_string()))
    }

    /// Indented JSON, for files people read.
    pub fn to_json_pretty(&self) -> Result<String, CaseError> {
        serde_json::to_string_pretty(self).map_err(|e| CaseError::Serialize(e.to_string()))
    }

    /// The initial parameters (defaults when the case names none).
    pub fn initial_params(&self) -> SimParams {
        self.params.clone().unwrap_or_default()
    }

    /// The engine settings of this case under `growth`: its grid-cell cap, or the default.
    pub fn engine_config(&self, growth: GrowthPolicy) -> EngineConfig {
        let default = EngineConfig::default();
        let cells = self
            .engine
            .and_then(|e| e.max_grid_cells)
            .map_or(default.max_grid_cells, |c| {
                usize::try_from(c).unwrap_or(default.max_grid_cells)
            });
        EngineConfig {
            growth,
            max_grid_cells: cells,
        }
    }

    /// The growth policy of a case's capacity re-run: another factor than the default's, so that
    /// every growth happens at other counts.
    pub(crate) const OTHER_GROWTH: GrowthPolicy = GrowthPolicy { factor: 3.0 };

    /// The capacity the capacity re-run reserves right after construction, `(nodes, edges)`:
    /// capacity that no op of the checked run had, so that every later growth happens at other
    /// counts than before. Both executors (the engine's own and the one over the target trait)
    /// reserve this.
    pub(crate) fn capacity_rerun_reserve(&self) -> (u64, u64) {
        let nodes = (self.graph.num_nodes.saturating_mul(3) / 2 + 3).min(MAX_CASE_NODES);
        let edges = ((self.graph.edges.len() as u64).saturating_mul(3) / 2 + 3).min(MAX_CASE_EDGES);
        (nodes, edges)
    }

    /// Whether the case injects a lost context (`{"op": "inject", "fault": {"kind":
    /// "lose-context", ...}}`): on CUDA it ends its process's context, and the context of every
    /// case beside it, on purpose, so campaigns run it alone.
    pub fn injects_lost_context(&self) -> bool {
        self.ops.iter().any(|op| {
            matches!(
                op,
                Op::Inject {
                    fault: EnvFault::LoseContext { .. }
                }
            )
        })
    }

    /// `(nodes, edges, ops)`: nodes and edges the case creates in all (initial graph plus every
    /// `add_nodes`/`add_edges`) and its number of operations — the size minimization reports.
    pub fn size(&self) -> (u64, u64, usize) {
        let mut nodes = self.graph.num_nodes;
        let mut edges = self.graph.edges.len() as u64;
        for op in &self.ops {
            match op {
                Op::AddNodes { count, .. } => nodes = nodes.saturating_add(*count),
                Op::AddEdges { edges: e } => edges = edges.saturating_add(e.len() as u64),
                _ => {}
            }
        }
        (nodes, edges, self.ops.len())
    }

    /// The live node count before each op (`counts[i]` is the count op `i` sees) and after the last,
    /// for a valid case.
    pub fn node_counts(&self) -> Vec<u64> {
        let mut n = self.graph.num_nodes;
        let mut out = Vec::with_capacity(self.ops.len() + 1);
        for op in &self.ops {
            out.push(n);
            n = apply_to_count(op, n);
        }
        out.push(n);
        out
    }

    /// Checks everything: format, limits, every id against the node count the ops before it leave,
    /// every parameter set, positions, weights. The first problem is returned.
    pub fn validate(&self) -> Result<(), CaseError> {
        if self.format != FORMAT {
            return Err(CaseError::Format {
                found: self.format.clone(),
            });
        }
        let case_nodes = MAX_CASE_NODES.min(MAX_NODES as u64);
        let case_edges = MAX_CASE_EDGES.min(MAX_EDGES as u64);
        let g = &self.graph;
        let at = Location::Graph;
        check_limit(&at, "node count", g.num_nodes, case_nodes)?;
        check_limit(&at, "edge count", g.edges.len() as u64, case_edges)?;
        check_edges(&at, &g.edges, g.num_nodes)?;
        if let Some(p) = &g.positions {
            check_positions(&at, p, g.num_nodes)?;
        }
        if let Some(p) = &self.params {
            check_params(&Location::Params, p)?;
        }
        if let Some(cells) = self.engine.and_then(|e| e.max_grid_cells) {
            if cells == 0 || cells > MAX_CASE_GRID_CELLS {
                return Err(CaseError::invalid(
                    Location::Engine,
                    format!("max_grid_cells {cells} is outside 1..={MAX_CASE_GRID_CELLS}"),
                ));
            }
        }
        check_limit(
            &Location::Case,
            "operation count",
            self.ops.len() as u64,
            MAX_CASE_OPS as u64,
        )?;
        let mut t = Tally {
            nodes: g.num_nodes,
            peak_nodes: g.num_nodes,
            edges_created: g.edges.len() as u64,
            nodes_created: g.num_nodes,
            steps: 0,
        };
        for (index, op) in self.ops.iter().enumerate() {
            let at = Location::Op {
                index,
                name: op.name(),
            };
            validate_op(&at, op, &mut t, case_nodes, case_edges)?;
        }
        if let Some(Expectation::Open { signature }) = &self.expect {
            if signature.trim().is_empty() {
                return Err(CaseError::invalid(
                    Location::Expect,
                    "an open expectation needs a signature",
                ));
            }
        }
        Ok(())
    }
}

/// The node count after `op`, starting from `n` (the op assumed valid).
fn apply_to_count(op: &Op, n: u64) -> u64 {
    match op {
        Op::AddNodes { count, .. } => n.saturating_add(*count),
        Op::RemoveNodes { ids } => {
            let distinct: BTreeSet<u32> = ids.iter().copied().filter(|&i| (i as u64) < n).collect();
            n - distinct.len() as u64
        }
        _ => n,
    }
}

fn validate_op(
    at: &Location,
    op: &Op,
    t: &mut Tally,
    case_nodes: u64,
    case_edges: u64,
) -> Result<(), CaseError> {
    match op {
        Op::AddNodes { count, positions } => {
            check_limit(at, "added node count", *count, case_nodes)?;
            let live = t.nodes + count;
            check_limit(at, "live node count", live, case_nodes)?;
            // Bounds the work of add/remove cycles that never exceed the live cap.
            t.nodes_created += count;
            check_limit(at, "nodes created in all", t.nodes_created, 4 * case_nodes)?;
            if let Some(p) = positions {
                check_positions(at, p, *count)?;
            }
            t.nodes = live;
            t.peak_nodes = t.peak_nodes.max(live);
        }
        Op::RemoveNodes { ids } => {
            for &id in ids {
                check_node(at, id, t.nodes)?;
            }
            t.nodes = apply_to_count(op, t.nodes);
        }
        Op::AddEdges { edges } => {
            check_edges(at, edges, t.nodes)?;
            t.edges_created += edges.len() as u64;
            check_limit(at, "edges created in all", t.edges_created, case_edges)?;
        }
        Op::RemoveEdges { pairs } => {
            for &(u, v) in pairs {
                check_node(at, u, t.nodes)?;
                check_node(at, v, t.nodes)?;
            }
        }
        Op::SetParams { params } => check_params(at, params)?,
        Op::Reserve { nodes, edges } => {
            check_limit(at, "reserved node count", *nodes, case_nodes)?;
            check_limit(at, "reserved edge count", *edges, case_edges)?;
        }
        Op::ShrinkToFit | Op::ReadPositions | Op::ClearConstraints => {}
        Op::SetPositionConstraint {
            node,
            target,
            stiffness,
        } => {
            check_node(at, *node, t.nodes)?;
            if target.iter().any(|c| !c.is_finite()) {
                return Err(CaseError::invalid(
                    at.clone(),
                    format!("target {target:?} is not finite"),
                ));
            }
            if !stiffness.is_finite() || *stiffness < 0.0 {
                return Err(CaseError::invalid(
                    at.clone(),
                    format!("stiffness {stiffness} is not a finite number >= 0"),
                ));
            }
        }
        Op::SetDistanceConstraint { u, v, distance } => {
            check_node(at, *u, t.nodes)?;
            check_node(at, *v, t.nodes)?;
            if !distance.is_finite() {
                return Err(CaseError::invalid(
                    at.clone(),
                    format!("distance {distance} is not finite"),
                ));
            }
        }
        Op::Step { count } => {
            check_limit(at, "step count", *count, MAX_CASE_STEPS)?;
            t.steps += count;
            check_limit(at, "total step count", t.steps, MAX_CASE_STEPS)?;
        }
        Op::Sssp { source } => check_node(at, *source, t.nodes)?,
        Op::Inject { fault } => {
            let nth = match *fault {
                EnvFault::FailAlloc { nth }
                | EnvFault::FailCopy { nth }
                | EnvFault::FailLaunch { nth }
                | EnvFault::LoseContext { nth } => nth,
            };
            if !(1..=MAX_INJECT_NTH).contains(&nth) {
                return Err(CaseError::invalid(
                    at.clone(),
                    format!(
                        "{} fault has nth {nth}, outside 1..={MAX_INJECT_NTH}",
                        fault.kind()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
