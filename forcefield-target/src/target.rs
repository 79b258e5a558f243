/*!
The [`Target`] trait: the operations of a `forcefield-case/1` operation log, as any layout engine can
offer them, and the optional read-backs ([`Capability`]) that let more oracles run.

A target holds one layout at a time. [`Target::create`] replaces it; the edits, [`Target::step`] and
the read-backs act on it. What each operation must leave behind is the case format's definition
(ids are `0..n`; removal keeps the survivors' order and renumbers them carrying their positions; the
edges are a multiset; no operation but `step` moves a node); the conformance check
([`crate::check`]) tests the parts every target must get right.
*/

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire;

/// A target's parameters: a JSON object whose fields the target defines (a field left out takes the
/// target's default, not its current value). Unknown fields should be [`TargetError::Rejected`].
pub type Params = serde_json::Map<String, serde_json::Value>;

/// One position, `[x, y, z]` (a 2-D engine reports `z = 0`).
pub type Point = [f32; 3];

/// An undirected weighted edge (self loops and parallel edges allowed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// One end.
    pub u: u32,
    /// The other end.
    pub v: u32,
    /// Spring weight and SSSP length (finite, at least 0); 1 when left out.
    #[serde(default = "unit_weight")]
    pub w: f32,
}

const fn unit_weight() -> f32 {
    1.0
}

impl Edge {
    /// An edge of weight 1.
    pub const fn new(u: u32, v: u32) -> Self {
        Edge { u, v, w: 1.0 }
    }

    /// Whether the edge joins `a` and `b`, in either direction: the edges a
    /// [`Target::remove_edges`] pair `(a, b)` removes.
    ///
    /// ```
    /// use forcefield_target::Edge;
    /// assert!(Edge::new(1, 2).joins(2, 1));
    /// assert!(!Edge::new(1, 2).joins(1, 3));
    /// ```
    pub fn joins(&self, a: u32, b: u32) -> bool {
        (self.u, self.v) == (a, b) || (self.u, self.v) == (b, a)
    }
}

/// The graph a layout is created from: nodes `0..num_nodes`, edges, and optional positions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    /// Number of nodes (64-bit, so that an absurd count is rejected by the target, not by parsing).
    pub num_nodes: u64,
    /// The edges.
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// One position per node; the target seeds its own when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "wire::optional_points"
    )]
    pub positions: Option<Vec<Point>>,
}

/// An environment fault a target may simulate ([`Capability::Inject`]): the `nth` next matching
/// device call fails, as the device would make it fail. The JSON shape is the case format's
/// (`{"kind": "fail-copy", "nth": 2}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EnvFault {
    /// The `nth` next device allocation fails.
    FailAlloc {
        /// Which one, counting from 1.
        nth: u32,
    },
    /// The `nth` next host-device copy fails.
    FailCopy {
        /// Which one, counting from 1.
        nth: u32,
    },
    /// The `nth` next kernel launch fails, the context intact.
    FailLaunch {
        /// Which one, counting from 1.
        nth: u32,
    },
    /// The `nth` next kernel launch loses the context.
    LoseContext {
        /// Which one, counting from 1.
        nth: u32,
    },
}

/// Live counts and, where the target manages capacity, capacities ([`Capability::Counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Live nodes.
    pub nodes: u64,
    /// Live undirected edges.
    pub edges: u64,
    /// Nodes the target has room for without growing, if it has such a notion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_capacity: Option<u64>,
    /// Undirected edges the target has room for without growing, if it has such a notion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_capacity: Option<u64>,
    /// Cells of the uniform grid ([`Capability::Grid`]) the target has room for without growing,
    /// if it has such a notion: the capacity its own bookkeeping says it has, which a failed
    /// growth must leave as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_capacity: Option<u64>,
}

/// One device buffer as the target's allocator records it ([`Capability::Buffers`]): what its
/// live part and its allocation are, so that a driver can check that every live count fits its
/// allocation and that the allocations account for all the device memory in use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buffer {
    /// The target's name for it (stable across calls).
    pub name: String,
    /// Live elements.
    pub len: u64,
    /// Allocated elements.
    pub capacity: u64,
    /// Bytes of device memory its allocation holds.
    pub bytes: u64,
}

/// The uniform-grid stage of the last step ([`Capability::Grid`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridStage {
    /// Cells per axis.
    pub dims: [u32; 3],
    /// Cell key of each node.
    pub keys: Vec<u32>,
    /// Node ids in cell order (after the sort).
    pub order: Vec<u32>,
    /// First slot of each cell in `order`.
    pub cell_start: Vec<u32>,
    /// One past the last slot of each cell in `order`.
    pub cell_end: Vec<u32>,
    /// The grid's lowest corner, where the target reports it (a reference force law needs it to
    /// tell which cells are neighbours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Point>,
    /// The edge of a cell, where the target reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_size: Option<f32>,
    /// The keys as the sort left them beside `order`, where the target keeps them (a sort that
    /// moves keys and values apart shows only here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorted_keys: Option<Vec<u32>>,
}

/// Per-node and per-edge attributes that steer a step ([`Capability::Attributes`]): what a
/// reference model compares after every op, since no op but the one that sets them may change
/// them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attributes {
    /// Mass of each node, in id order.
    pub masses: Vec<f32>,
    /// Position constraint of each node: target `x, y, z` and stiffness (0: none).
    pub anchors: Vec<[f32; 4]>,
    /// Distance target of each CSR entry, in the order of [`Target::csr`] (negative: none).
    pub edge_targets: Vec<f32>,
}

/// The edges in compressed sparse rows, as the target uses them ([`Capability::Csr`]): an
/// undirected edge is two entries, a self loop too.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Csr {
    /// `nodes + 1` row offsets.
    pub row_offsets: Vec<u32>,
    /// Column of each entry.
    pub col_indices: Vec<u32>,
    /// Weight of each entry.
    pub weights: Vec<f32>,
}

/// An optional part of the API a target declares in its handshake. A driver never calls an
/// operation whose capability is not declared, and an oracle that needs one is skipped (and listed
/// as skipped) when it is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `set_params`, and parameters at `create`.
    Params,
    /// `reserve` and `shrink_to_fit`.
    Capacity,
    /// `sssp`: shortest path lengths from a node.
    Sssp,
    /// `set_position_constraint`, `set_distance_constraint`, `clear_constraints`.
    Constraints,
    /// `counts`: live counts and capacities.
    Counts,
    /// `device_bytes`: device memory in use.
    DeviceMemory,
    /// `grid`: the uniform-grid stage of the last step.
    Grid,
    /// `csr`: the edges as the target stores them.
    Csr,
    /// `checkpoint` and `restore`.
    Checkpoint,
    /// `inject`: simulated environment faults.
    Inject,
    /// `velocities`: every node's velocity.
    Velocities,
    /// `attributes`: masses, position constraints and distance targets as stored.
    Attributes,
    /// `buffers`: every device buffer's live length, allocation and bytes.
    Buffers,
}

impl Capability {
    /// Every capability, in declaration order.
    pub const ALL: [Capability; 13] = [
        Capability::Params,
        Capability::Capacity,
        Capability::Sssp,
        Capability::Constraints,
        Capability::Counts,
        Capability::DeviceMemory,
        Capability::Grid,
        Capability::Csr,
        Capability::Checkpoint,
        Capability::Inject,
        Capability::Velocities,
        Capability::Attributes,
        Capability::Buffers,
    ];

    /// The name in a handshake (`"device-memory"`).
    pub const fn name(self) -> &'static str {
        match self {
            Capability::Params => "params",
            Capability::Capacity => "capacity",
            Capability::Sssp => "sssp",
            Capability::Constraints => "constraints",
            Capability::Counts => "counts",
            Capability::DeviceMemory => "device-memory",
            Capability::Grid => "grid",
            Capability::Csr => "csr",
            Capability::Checkpoint => "checkpoint",
            Capability::Inject => "inject",
            Capability::Velocities => "velocities",
            Capability::Attributes => "attributes",
            Capability::Buffers => "buffers",
        }
    }

    /// The capability of a handshake name, if this version knows it.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of capabilities a target declares.
///
/// ```
/// use forcefield_target::{Capabilities, Capability};
/// let caps = Capabilities::from([Capability::Sssp, Capability::Counts]);
/// assert!(caps.has(Capability::Sssp));
/// assert!(!caps.has(Capability::Grid));
/// assert_eq!(caps.to_string(), "sssp, counts");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(BTreeSet<Capability>);

impl Capabilities {
    /// No optional capability: only the required operations.
    pub fn none() -> Self {
        Capabilities::default()
    }

    /// Whether `c` is declared.
    pub fn has(&self, c: Capability) -> bool {
        self.0.contains(&c)
    }

    /// The declared capabilities, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        self.0.iter().copied()
    }

    /// The handshake names.
    pub fn names(&self) -> Vec<String> {
        self.iter().map(|c| c.name().to_string()).collect()
    }
}

impl<const N: usize> From<[Capability; N]> for Capabilities {
    fn from(caps: [Capability; N]) -> Self {
        Capabilities(caps.into_iter().collect())
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        Capabilities(iter.into_iter().collect())
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Capability::name).collect();
        f.write_str(&names.join(", "))
    }
}

/// Who a target is: what its handshake says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    /// The engine's name (`"fa2"`).
    pub name: String,
    /// The engine's version, free text.
    pub version: String,
    /// The optional operations it offers.
    pub capabilities: Capabilities,
}

/// How a process target ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it (`"SIGSEGV"`).
    Signal(String),
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitKind::Code(c) => write!(f, "exited with code {c}"),
            ExitKind::Signal(s) => write!(f, "was killed by {s}"),
        }
    }
}

/// A target process that died while a request was pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Death {
    /// The operation it was serving.
    pub op: String,
    /// How it ended.
    pub exit: ExitKind,
    /// Its last lines on stderr, oldest first.
    pub stderr_tail: Vec<String>,
}

impl fmt::Display for Death {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the target {} during `{}`", self.exit, self.op)?;
        if let Some(last) = self.stderr_tail.last() {
            write!(f, " (last stderr line: {last})")?;
        }
        Ok(())
    }
}

/// Why an operation failed.
///
/// `Rejected` and `Unsupported` are answers a correct target gives; the other variants are defects
/// of the target (see [`TargetError::is_defect`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The target refused bad input cleanly (an id out of range, a negative weight), changing
    /// nothing: not a defect.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The target does not offer this operation (its capability is not declared).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The target failed on input it should handle: a defect (an exception, a failed assertion).
    #[error("internal error: {0}")]
    Internal(String),
    /// The target process died while serving a request.
    #[error("{0}")]
    Died(Death),
    /// The target process did not answer in time; its process group was killed.
    #[error("the target did not answer `{op}` within {timeout:?} (killed)")]
    Hung {
        /// The operation it was serving.
        op: String,
        /// How long the driver waited.
        timeout: Duration,
    },
    /// The target broke the protocol (a reply that is not JSON, a wrong id, a wrong shape).
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl TargetError {
    /// Whether this error shows a defect of the target (anything but `Rejected` and
    /// `Unsupported`).
    pub fn is_defect(&self) -> bool {
        !matches!(self, TargetError::Rejected(_) | TargetError::Unsupported(_))
    }

    /// The `Unsupported` error of operation `op`, as the default methods return it.
    pub fn unsupported(op: &str) -> Self {
        TargetError::Unsupported(format!("this target does not offer `{op}`"))
    }
}

/// What a [`Target`]'s operations return.
pub type Result<T, E = TargetError> = std::result::Result<T, E>;

/// A layout engine Forcefield can hunt: the operations of a `forcefield-case/1` log.
///
/// The required methods are what every force layout can do. The optional ones return
/// [`TargetError::Unsupported`] unless overridden; a target overrides those of the capabilities it
/// declares in [`Target::info`]. Counts are 64-bit so that a target, not the caller's integer type,
/// refuses an absurd request (with [`TargetError::Rejected`]).
///
/// ```
/// use forcefield_target::{Capabilities, Edge, Graph, Point, Result, Target, TargetError, TargetInfo};
///
/// /// Nodes on a line; each step pulls every node halfway to the origin.
/// #[derive(Default)]
/// struct Shrinker { xs: Vec<f32>, edges: Vec<Edge> }
///
/// impl Target for Shrinker {
///     fn info(&self) -> TargetInfo {
///         TargetInfo { name: "shrinker".into(), version: "1".into(), capabilities: Capabilities::none() }
///     }
///     fn create(&mut self, graph: &Graph, _params: Option<&forcefield_target::Params>) -> Result<()> {
///         let n = usize::try_from(graph.num_nodes).map_err(|_| TargetError::Rejected("too many".into()))?;
///         self.xs = match &graph.positions {
///             Some(p) => p.iter().map(|p| p[0]).collect(),
///             None => (0..n).map(|i| i as f32).collect(),
///         };
///         self.edges = graph.edges.clone();
///         Ok(())
///     }
///     fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()> {
///         let start = self.xs.len();
///         for i in 0..count as usize {
///             self.xs.push(positions.map_or((start + i) as f32, |p| p[i][0]));
///         }
///         Ok(())
///     }
///     fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
///         let mut i = 0;
///         self.xs.retain(|_| { i += 1; !ids.contains(&(i - 1)) });
///         Ok(())
///     }
///     fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
///         self.edges.extend_from_slice(edges);
///         Ok(())
///     }
///     fn remove_edges(&mut self, _pairs: &[(u32, u32)]) -> Result<()> { Ok(()) }
///     fn step(&mut self, count: u64) -> Result<()> {
///         for _ in 0..count { self.xs.iter_mut().for_each(|x| *x *= 0.5); }
///         Ok(())
///     }
///     fn positions(&mut self) -> Result<Vec<Point>> {
///         Ok(self.xs.iter().map(|&x| [x, 0.0, 0.0]).collect())
///     }
/// }
///
/// let mut t = Shrinker::default();
/// t.create(&Graph { num_nodes: 3, ..Graph::default() }, None)?;
/// t.step(1)?;
/// assert_eq!(t.positions()?, vec![[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 0.0, 0.0]]);
/// assert!(matches!(t.sssp(0), Err(TargetError::Unsupported(_))));
/// # Ok::<(), TargetError>(())
/// ```
pub trait Target {
    /// Name, version and declared capabilities (the handshake's content).
    fn info(&self) -> TargetInfo;

    /// Replaces the layout with one of `graph`, under `params` (the target's defaults when
    /// `None`; a target without [`Capability::Params`] gets `None` only).
    fn create(&mut self, graph: &Graph, params: Option<&Params>) -> Result<()>;

    /// Adds `count` nodes with ids `n..n + count`, at `positions` (one per new node) or at
    /// positions the target seeds.
    fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()>;

    /// Removes nodes (duplicates allowed); the survivors keep their order and are renumbered from
    /// 0, carrying their positions; edges touching a removed node go.
    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()>;

    /// Adds undirected edges.
    fn add_edges(&mut self, edges: &[Edge]) -> Result<()>;

    /// Removes every edge joining each pair, in either direction.
    fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<()>;

    /// Runs `count` layout steps.
    fn step(&mut self, count: u64) -> Result<()>;

    /// Every node's position, in id order.
    fn positions(&mut self) -> Result<Vec<Point>>;

    /// Replaces the parameters ([`Capability::Params`]).
    fn set_params(&mut self, params: &Params) -> Result<()> {
        let _ = params;
        Err(TargetError::unsupported("set_params"))
    }

    /// Makes room for at least this many nodes and edges; nothing observable changes
    /// ([`Capability::Capacity`]).
    fn reserve(&mut self, nodes: u64, edges: u64) -> Result<()> {
        let _ = (nodes, edges);
        Err(TargetError::unsupported("reserve"))
    }

    /// Shrinks capacities to the live counts; nothing observable changes
    /// ([`Capability::Capacity`]).
    fn shrink_to_fit(&mut self) -> Result<()> {
        Err(TargetError::unsupported("shrink_to_fit"))
    }

    /// Shortest path lengths from `source` along edge weights, `f32::INFINITY` where unreachable
    /// ([`Capability::Sssp`]).
    fn sssp(&mut self, source: u32) -> Result<Vec<f32>> {
        let _ = source;
        Err(TargetError::unsupported("sssp"))
    }

    /// Pulls `node` toward `target` with `stiffness` (0 removes it) ([`Capability::Constraints`]).
    fn set_position_constraint(&mut self, node: u32, target: Point, stiffness: f32) -> Result<()> {
        let _ = (node, target, stiffness);
        Err(TargetError::unsupported("set_position_constraint"))
    }

    /// Holds every edge joining `u` and `v` at `distance` (negative removes it; no edge: no
    /// change) ([`Capability::Constraints`]).
    fn set_distance_constraint(&mut self, u: u32, v: u32, distance: f32) -> Result<()> {
        let _ = (u, v, distance);
        Err(TargetError::unsupported("set_distance_constraint"))
    }

    /// Removes every constraint ([`Capability::Constraints`]).
    fn clear_constraints(&mut self) -> Result<()> {
        Err(TargetError::unsupported("clear_constraints"))
    }

    /// Live counts and capacities ([`Capability::Counts`]).
    fn counts(&mut self) -> Result<Counts> {
        Err(TargetError::unsupported("counts"))
    }

    /// Bytes of device memory in use ([`Capability::DeviceMemory`]).
    fn device_bytes(&mut self) -> Result<u64> {
        Err(TargetError::unsupported("device_bytes"))
    }

    /// Every device buffer the target holds, as its allocator records them
    /// ([`Capability::Buffers`]).
    fn buffers(&mut self) -> Result<Vec<Buffer>> {
        Err(TargetError::unsupported("buffers"))
    }

    /// The grid stage of the last step, `None` when no step ran since the last node edit
    /// ([`Capability::Grid`]).
    fn grid(&mut self) -> Result<Option<GridStage>> {
        Err(TargetError::unsupported("grid"))
    }

    /// The edges as stored ([`Capability::Csr`]).
    fn csr(&mut self) -> Result<Csr> {
        Err(TargetError::unsupported("csr"))
    }

    /// The whole layout state, in a JSON form of the target's choosing, such that `restore` of it
    /// (in this process or a fresh one) continues bit for bit ([`Capability::Checkpoint`]).
    fn checkpoint(&mut self) -> Result<serde_json::Value> {
        Err(TargetError::unsupported("checkpoint"))
    }

    /// Replaces the layout with a `checkpoint`'s ([`Capability::Checkpoint`]).
    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let _ = state;
        Err(TargetError::unsupported("restore"))
    }

    /// Arms a simulated environment fault; an operation it fails must return an error and leave
    /// the layout as before ([`Capability::Inject`]).
    fn inject(&mut self, fault: &EnvFault) -> Result<()> {
        let _ = fault;
        Err(TargetError::unsupported("inject"))
    }

    /// How many injected faults have fired so far, of every kind: a count that grows by one each
    /// time a fault armed by [`Target::inject`] fails a call (it may start again from 0 at
    /// `create` and `restore`). Optional within [`Capability::Inject`]: the driver reads it
    /// before and after an op that fails while a fault is armed, so that a failure no injected
    /// fault caused is a finding rather than taken for the fault's. `Unsupported` (the default):
    /// the target cannot tell, and an `Internal` error while a fault is armed is the fault's.
    fn injections_fired(&mut self) -> Result<u64> {
        Err(TargetError::unsupported("injections_fired"))
    }

    /// Every node's velocity, in id order ([`Capability::Velocities`]).
    fn velocities(&mut self) -> Result<Vec<Point>> {
        Err(TargetError::unsupported("velocities"))
    }

    /// Masses, position constraints and distance targets as stored
    /// ([`Capability::Attributes`]).
    fn attributes(&mut self) -> Result<Attributes> {
        Err(TargetError::unsupported("attributes"))
    }
}

impl<T: Target + ?Sized> Target for Box<T> {
    fn info(&self) -> TargetInfo {
        (**self).info()
    }
    fn create(&mut self, graph: &Graph, params: Option<&Params>) -> Result<()> {
        (**self).create(graph, params)
    }
    fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()> {
        (**self).add_nodes(count, positions)
    }
    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        (**self).remove_nodes(ids)
    }
    fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
        (**self).add_edges(edges)
    }
    fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        (**self).remove_edges(pairs)
    }
    fn step(&mut self, count: u64) -> Result<()> {
        (**self).step(count)
    }
    fn positions(&mut self) -> Result<Vec<Point>> {
        (**self).positions()
    }
    fn set_params(&mut self, params: &Params) -> Result<()> {
        (**self).set_params(params)
    }
    fn reserve(&mut self, nodes: u64, edges: u64) -> Result<()> {
        (**self).reserve(nodes, edges)
    }
    fn shrink_to_fit(&mut self) -> Result<()> {
        (**self).shrink_to_fit()
    }
    fn sssp(&mut self, source: u32) -> Result<Vec<f32>> {
        (**self).sssp(source)
    }
    fn set_position_constraint(&mut self, node: u32, target: Point, stiffness: f32) -> Result<()> {
        (**self).set_position_constraint(node, target, stiffness)
    }
    fn set_distance_constraint(&mut self, u: u32, v: u32, distance: f32) -> Result<()> {
        (**self).set_distance_constraint(u, v, distance)
    }
    fn clear_constraints(&mut self) -> Result<()> {
        (**self).clear_constraints()
    }
    fn counts(&mut self) -> Result<Counts> {
        (**self).counts()
    }
    fn device_bytes(&mut self) -> Result<u64> {
        (**self).device_bytes()
    }
    fn buffers(&mut self) -> Result<Vec<Buffer>> {
        (**self).buffers()
    }
    fn grid(&mut self) -> Result<Option<GridStage>> {
        (**self).grid()
    }
    fn csr(&mut self) -> Result<Csr> {
        (**self).csr()
    }
    fn checkpoint(&mut self) -> Result<serde_json::Value> {
        (**self).checkpoint()
    }
    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        (**self).restore(state)
    }
    fn inject(&mut self, fault: &EnvFault) -> Result<()> {
        (**self).inject(fault)
    }
    fn injections_fired(&mut self) -> Result<u64> {
        (**self).injections_fired()
    }
    fn velocities(&mut self) -> Result<Vec<Point>> {
        (**self).velocities()
    }
    fn attributes(&mut self) -> Result<Attributes> {
        (**self).attributes()
    }
}
