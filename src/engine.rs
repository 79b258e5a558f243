/*!
The engine: the graph state on a backend, its mutations, the step pipeline and SSSP.

State lives in device buffers of the [`BufferRegistry`]; the host keeps what mutations need (the
edge list, masses, constraints) and a [`Checkpoint`] of the state after the last completed operation.
Every change of capacity goes through `Engine::resize`, which grows or shrinks every buffer of a size
class together.

**Fault tolerance.** Every public operation is a transaction: when the backend fails part-way (an
allocation, a copy, a launch; see [`crate::inject`]), the resizes the operation completed are undone,
the state is restored from the checkpoint and the error returned, so the engine is exactly as it was
before the operation. After a lost context (or a restore that itself failed) the engine refuses work
until [`Engine::recover`], which starts the backend over and restores the checkpoint.

# What each operation leaves behind

The observable state is: the live counts; per node (by id `0..num_nodes`) its position, velocity,
mass and position constraint; the edge list (a multiset of undirected edges `(u, v, w)` in
insertion order, each with its distance-constraint target) and the CSR built from it; the
parameters; the SSSP distances. Capacity is not observable (see ARCHITECTURE.md). The harness keeps
a reference model of exactly this (`forcefield-harness`, `model.rs`) and compares after every op.

* **Node ids** are always `0..num_nodes`. `add_nodes(k)` gives the new nodes ids `n..n+k`.
  `remove_nodes(ids)` (duplicates allowed) removes those nodes; the survivors keep their relative
  order and are renumbered `0..`, so survivor `old` gets id `old - |{removed ids < old}|`; their
  positions, velocities, masses and position constraints move with them, unchanged bit for bit.
  Edges with a removed endpoint are dropped (with their distance targets); the others are renumbered
  and keep their order. SSSP distances are reset to infinity for every node.
* **New nodes** start with velocity 0, mass 1, no position constraint, SSSP distance infinity, at
  the given positions, or else at `seeded_position(params.seed, s, half)` where `s` counts every
  node ever added before it (removed ones included; never reset) and `half` is
  `min(max(rest_length, 1) * cbrt(num_nodes after the op), viewport_bounds)`.
* **Edges** are a multiset: `add_edges` appends every edge as given, duplicates and self loops
  included (a self loop `(u, u)` is two CSR entries of row `u`, both to `u`); an edge is undirected,
  and `(u, v)` is stored as written, not normalized. The CSR holds each edge twice, `u -> v` and
  `v -> u`, and row `r` lists its entries in edge-list order (`u -> v` before `v -> u` for a loop).
  New edges have no distance target. `remove_edges(pairs)` removes every edge that joins a pair, in
  either direction, all duplicates of it; a pair with no edge removes nothing and is not an error.
  It returns the number of edges removed.
* **A graph edit moves nothing**: `add_edges`, `remove_edges`, the constraint ops, `set_params`,
  `reserve`, `shrink_to_fit`, `run_sssp` and reading state leave every position and velocity bit
  for bit as it was; `add_nodes` and `remove_nodes` change only what is said above. Only `step`
  moves nodes.
* **Constraints**: a position constraint `(target, stiffness)` per node (stiffness 0: none); a
  distance target per edge (negative: none). `set_distance_constraint(u, v, d)` sets the target of
  every edge joining `u` and `v` (either direction) to `d` (a non-finite `d` stores -1), and fails
  with `NoSuchEdge`, changing nothing, when no edge joins them. `clear_constraints` resets all of
  them. Constraints of removed nodes and edges go with them. Setting a constraint restarts the ramp
  (`constraint_ramp_frames`); clearing does not.
* **`set_params`** replaces every parameter (validated first; a failed validation changes nothing);
  it changes no count, position, velocity, edge or constraint. The new values reach the kernels at
  the next step.
* **`reserve` and `shrink_to_fit`** change capacity only: counts, ids, positions, velocities,
  edges, constraints and parameters stay as they were. `reserve` never shrinks.
* **`step(k)`** advances `iteration` by `k` and moves positions and velocities by the force law
  (ARCHITECTURE.md); it changes no count, edge or constraint.
*/

use std::ops::Range;

use crate::backend::{
    grid_for_bounds, Backend, BoundsReduceArgs, BuildGridArgs, CellBoundsArgs, DeviceSpan,
    ForcePassArgs, FrontierCompactArgs, GatherPositionsArgs, GridInputs, GridParamsArgs, GridSpec,
    IntegrateArgs, Launch, SortArgs, Span3, SsspRelaxArgs, GRID_WORDS, KERNEL_DISTANCE_TARGETS,
};
use crate::buffer::{BufferInfo, BufferName as B, BufferRegistry, GrowthPolicy, SizeClass};
use crate::error::{BackendError, EngineError, GraphError, Result};
use crate::faults::{Fault, FaultSet};
use crate::graph::{check_count, check_edge, check_positions, seeded_position, Edge, GraphSpec};
use crate::graph::{MAX_EDGES, MAX_NODES};
use crate::inject::{EnvFault, InjectingBackend, InjectionCounts};
use crate::params::{check_force_lanes, force_lanes_for, force_lanes_from_env, SimParams};
use crate::perf_log::{KernelLog, KernelRecord};

/// Default cap on the total number of grid cells.
pub const DEFAULT_MAX_GRID_CELLS: usize = 1 << 21;

pub use crate::backend::AUTO_NODES_PER_CELL;

/// When the host [`Checkpoint`] is brought up to date with the device after a step or an SSSP.
///
/// A step or SSSP that fails on the device is undone on the device (see [`Engine::step`]), whatever
/// the cadence; the cadence decides only how far back [`Engine::recover`] goes after a *lost
/// context*, and what a step costs: bringing the checkpoint up to date downloads positions,
/// velocities and SSSP distances (24 bytes a node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CheckpointCadence {
    /// After every operation (the default): a lost context costs at most the failed operation.
    #[default]
    EveryOperation,
    /// After a step call once at least this many steps ran since the last update: a lost context
    /// goes back at most that many steps (plus the SSSP runs since).
    EverySteps(std::num::NonZeroU32),
    /// Only when needed: before a graph edit, in [`Engine::sync_checkpoint`] and in
    /// [`Engine::recover`] while the context still answers. A lost context goes back to the last
    /// of these.
    OnDemand,
}

/// Settings of an engine that are not simulation parameters. None of them may change a layout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineConfig {
    /// How capacity grows.
    pub growth: GrowthPolicy,
    /// Cap on total grid cells; the cell edge grows to respect it.
    pub max_grid_cells: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            growth: GrowthPolicy::default(),
            max_grid_cells: DEFAULT_MAX_GRID_CELLS,
        }
    }
}

/// What the grid stage of the last step produced, read back for oracles.
#[derive(Clone, Debug, PartialEq)]
pub struct GridInspection {
    /// The grid of the last step.
    pub grid: GridSpec,
    /// Cell key per node (before sorting).
    pub cell_keys: Vec<u32>,
    /// Keys after the sort.
    pub sorted_keys: Vec<u32>,
    /// Node ids after the sort.
    pub sorted_nodes: Vec<u32>,
    /// Per-cell start slot.
    pub cell_start: Vec<u32>,
    /// Per-cell end slot.
    pub cell_end: Vec<u32>,
}

/// The CSR structure as uploaded.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrInspection {
    /// n + 1 row offsets.
    pub row_offsets: Vec<u32>,
    /// Column of each entry.
    pub col_indices: Vec<u32>,
    /// Weight of each entry.
    pub weights: Vec<f32>,
}

/// Node attributes and constraints as uploaded.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstraintInspection {
    /// Mass per node.
    pub masses: Vec<f32>,
    /// Position constraint per node: target x, y, z and stiffness (0: none).
    pub anchors: Vec<[f32; 4]>,
    /// Distance target per CSR entry, in CSR order (negative: none).
    pub edge_targets: Vec<f32>,
}

/// A layout engine on backend `Bk`.
///
/// ```
/// use forcefield::{CpuBackend, Edge, Engine, GraphSpec, SimParams};
/// let graph = GraphSpec { num_nodes: 3, edges: vec![Edge::new(0, 1), Edge::new(1, 2)], positions: None };
/// let mut engine = Engine::new(CpuBackend::new(), &graph, SimParams::default()).unwrap();
/// engine.add_nodes(2, None).unwrap();          // grows capacity by 1.5x or to fit
/// engine.step(10).unwrap();
/// let pos = engine.positions().unwrap();
/// assert_eq!(pos.len(), 5);
/// assert!(pos.iter().flatten().all(|c| c.is_finite()));
/// ```
pub struct Engine<Bk: Backend> {
    backend: InjectingBackend<Bk>,
    buffers: BufferRegistry,
    config: EngineConfig,
    params: SimParams,
    /// The parameters the kernels see.
    uploaded: SimParams,
    faults: FaultSet,
    num_nodes: u32,
    allocated_nodes: usize,
    allocated_edges: usize,
    allocated_cells: usize,
    edges: Vec<Edge>,
    /// Distance-constraint target per undirected edge (< 0: none).
    edge_targets: Vec<f32>,
    masses: Vec<f32>,
    /// Position constraint per node: target x, y, z and stiffness (0: none).
    anchors: Vec<[f32; 4]>,
    spawned: u64,
    iteration: u32,
    constraints_since: u32,
    grid: Option<GridSpec>,
    lost: Option<BackendError>,
    log: KernelLog,
    /// The state after the last completed operation.
    checkpoint: Checkpoint,
    /// Resizes completed by the running operation, as (class, capacity before), to undo on failure.
    journal: Vec<(SizeClass, usize)>,
    in_operation: bool,
    /// Device data (positions, velocities, SSSP distances) changed since the checkpoint.
    device_dirty: bool,
    /// Host data (graph, attributes, params, counters) changed since the checkpoint.
    host_dirty: bool,
    /// Buffer exchanges made by the running operation, undone in reverse on failure.
    swaps: Vec<(B, B)>,
    /// When the checkpoint follows a step or SSSP.
    cadence: CheckpointCadence,
    /// A step or SSSP completed that the checkpoint does not hold yet.
    checkpoint_behind: bool,
    /// Steps completed since the checkpoint was last brought up to date.
    steps_since_sync: u64,
    /// Whether every launch is waited for and timed into the kernel log.
    kernel_timing: bool,
    /// Some CSR entry on the device may have a distance target (`KERNEL_DISTANCE_TARGETS`): set
    /// before an upload of the CSR that carries one, cleared only after an upload without one
    /// succeeded, so the force pass never skips a target the device holds.
    distance_targets_on_device: bool,
    /// Threads a node in the force pass fixed by the caller or the environment; `None` follows the
    /// live node count (`params::force_lanes_for`).
    force_lanes_override: Option<u32>,
}

/// Everything needed to rebuild an engine's state on fresh device memory: taken after every
/// completed operation, restored by a failed operation and by [`Engine::recover`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Live nodes.
    pub num_nodes: u32,
    /// Node capacity.
    pub allocated_nodes: usize,
    /// Edge capacity.
    pub allocated_edges: usize,
    /// Cell capacity.
    pub allocated_cells: usize,
    /// Live edges.
    pub edges: Vec<Edge>,
    /// Distance-constraint target per edge.
    pub edge_targets: Vec<f32>,
    /// Node masses.
    pub masses: Vec<f32>,
    /// Position constraints.
    pub anchors: Vec<[f32; 4]>,
    /// Positions.
    pub positions: Vec<[f32; 3]>,
    /// Velocities.
    pub velocities: Vec<[f32; 3]>,
    /// SSSP distances (what the force pass stretches rest lengths with).
    pub sssp_dist: Vec<f32>,
    /// The parameters.
    pub params: SimParams,
    /// The parameters the kernels see.
    pub uploaded: SimParams,
    /// Nodes ever spawned (seeds new positions).
    pub spawned: u64,
    /// Steps taken.
    pub iteration: u32,
    /// Iteration at which constraints last changed.
    pub constraints_since: u32,
}

impl<Bk: Backend> std::fmt::Debug for Engine<Bk> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.backend.name())
            .field("num_nodes", &self.num_nodes)
            .field("num_edges", &self.edges.len())
            .field("allocated_nodes", &self.allocated_nodes)
            .field("allocated_edges", &self.allocated_edges)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Keeps the elements of `v` whose entry in `keep` is true.
fn retain_by_mask<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut it = keep.iter();
    v.retain(|_| *it.next().unwrap_or(&false));
}

const POS_IN: [B; 3] = [B::PosInX, B::PosInY, B::PosInZ];
const POS_OUT: [B; 3] = [B::PosOutX, B::PosOutY, B::PosOutZ];
const VEL_IN: [B; 3] = [B::VelInX, B::VelInY, B::VelInZ];
const VEL_OUT: [B; 3] = [B::VelOutX, B::VelOutY, B::VelOutZ];
const POS_SPARE: [B; 3] = [B::PosSpareX, B::PosSpareY, B::PosSpareZ];
const VEL_SPARE: [B; 3] = [B::VelSpareX, B::VelSpareY, B::VelSpareZ];
const FORCE: [B; 3] = [B::ForceX, B::ForceY, B::ForceZ];
const ANCHOR: [B; 3] = [B::AnchorX, B::AnchorY, B::AnchorZ];
const SORTED_POS: [B; 3] = [B::SortedPosX, B::SortedPosY, B::SortedPosZ];

impl<Bk: Backend> Engine<Bk> {
    /// An engine holding `graph`, with capacity equal to its counts.
    pub fn new(backend: Bk, graph: &GraphSpec, params: SimParams) -> Result<Self> {
        Self::with_config(
            backend,
            graph,
            params,
            EngineConfig::default(),
            FaultSet::NONE,
        )
    }

    /// An engine with explicit settings and planted faults (faults need the `faults` feature).
    pub fn with_config(
        backend: Bk,
        graph: &GraphSpec,
        params: SimParams,
        config: EngineConfig,
        faults: FaultSet,
    ) -> Result<Self> {
        params.validate()?;
        graph.validate()?;
        let mut log = KernelLog::new();
        log.set_relock_on_anomaly(faults.contains(Fault::LoggerRelock));
        let mut backend = InjectingBackend::with_nothing_armed(backend);
        backend.set_faults(faults);
        let mut engine = Engine {
            backend,
            buffers: BufferRegistry::default(),
            config,
            iteration: params.iteration,
            constraints_since: params.iteration,
            uploaded: params.clone(),
            params,
            faults,
            num_nodes: 0,
            allocated_nodes: 0,
            allocated_edges: 0,
            allocated_cells: 0,
            edges: Vec::new(),
            edge_targets: Vec::new(),
            masses: Vec::new(),
            anchors: Vec::new(),
            spawned: 0,
            grid: None,
            lost: None,
            log,
            checkpoint: Checkpoint::default(),
            journal: Vec::new(),
            in_operation: false,
            device_dirty: true,
            host_dirty: true,
            swaps: Vec::new(),
            cadence: CheckpointCadence::default(),
            checkpoint_behind: false,
            steps_since_sync: 0,
            kernel_timing: true,
            distance_targets_on_device: false,
            force_lanes_override: force_lanes_from_env()?,
        };
        // The first allocation is exactly the initial counts, as in the original engine.
        engine.resize(SizeClass::Node, graph.num_nodes as usize)?;
        engine.resize(SizeClass::Edge, graph.edges.len())?;
        engine.resize(SizeClass::Cell, 0)?;
        engine.resize(SizeClass::Fixed, 0)?;
        engine.add_nodes(graph.num_nodes, graph.positions.as_deref())?;
        engine.add_edges(&graph.edges)?;
        engine.commit()?;
        Ok(engine)
    }

    /// An engine holding exactly the state of `checkpoint`, with its capacities: how work continues
    /// in a new process after a lost context poisoned the old one. (With `uploaded` set to `params`,
    /// it is also how the harness checks that an engine's state determines its future.)
    pub fn from_checkpoint(
        backend: Bk,
        checkpoint: &Checkpoint,
        config: EngineConfig,
        faults: FaultSet,
    ) -> Result<Self> {
        let graph = GraphSpec {
            num_nodes: 0,
            edges: Vec::new(),
            positions: None,
        };
        let mut engine =
            Self::with_config(backend, &graph, checkpoint.params.clone(), config, faults)?;
        engine.checkpoint = checkpoint.clone();
        engine.rebuild_from_checkpoint()?;
        Ok(engine)
    }

    // ---- accessors -------------------------------------------------------------------------

    /// The force pass's threads a node for the live graph: the override of
    /// [`Engine::set_force_lanes`] or of `FORCEFIELD_FORCE_LANES`, else
    /// [`crate::params::force_lanes_for`] of the live node count.
    pub fn force_lanes(&self) -> u32 {
        self.force_lanes_override
            .unwrap_or_else(|| force_lanes_for(self.num_nodes))
    }

    /// Fixes the force pass's threads a node (`None`: the rule of
    /// [`crate::params::force_lanes_for`]), for measuring the rule and for tests that compare sum
    /// orders. A lane count that is not a power of two in 1..=32 is refused and changes nothing.
    /// The lanes change the order of each node's force sum, so the bits of a layout.
    pub fn set_force_lanes(&mut self, lanes: Option<u32>) -> Result<()> {
        if let Some(l) = lanes {
            check_force_lanes(l)?;
        }
        self.force_lanes_override = lanes;
        Ok(())
    }

    /// Live nodes.
    pub fn num_nodes(&self) -> u32 {
        self.num_nodes
    }
    /// Live undirected edges.
    pub fn num_edges(&self) -> u32 {
        self.edges.len() as u32
    }
    /// Node capacity.
    pub fn allocated_nodes(&self) -> usize {
        self.allocated_nodes
    }
    /// Edge capacity (undirected edges).
    pub fn allocated_edges(&self) -> usize {
        self.allocated_edges
    }
    /// Cell capacity.
    pub fn allocated_cells(&self) -> usize {
        self.allocated_cells
    }
    /// Steps taken (starting from `params.iteration`).
    pub fn iteration(&self) -> u32 {
        self.iteration
    }
    /// The current parameters.
    pub fn params(&self) -> &SimParams {
        &self.params
    }
    /// The live edges.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }
    /// The active planted faults.
    pub fn faults(&self) -> FaultSet {
        self.faults
    }
    /// The kernel performance log.
    pub fn kernel_log(&self) -> &KernelLog {
        &self.log
    }
    /// Every registered buffer.
    pub fn buffers(&self) -> impl Iterator<Item = &BufferInfo> {
        self.buffers.iter()
    }
    /// The backend.
    pub fn backend(&self) -> &Bk {
        self.backend.inner()
    }
    /// Bytes of device memory held by the backend.
    pub fn device_bytes(&self) -> usize {
        self.backend.bytes_allocated()
    }
    /// The grid of the last step, if no node was added or removed since.
    pub fn grid(&self) -> Option<GridSpec> {
        self.grid
    }
    /// The sticky error that lost the context, if any.
    pub fn lost_context(&self) -> Option<&BackendError> {
        self.lost.as_ref()
    }
    /// Whether the engine refuses work until [`Engine::recover`].
    pub fn needs_recovery(&self) -> bool {
        self.lost.is_some()
    }
    /// The state the checkpoint was last brought up to date with: after the last completed
    /// operation under [`CheckpointCadence::EveryOperation`] (the default), otherwise possibly
    /// earlier (see [`Engine::sync_checkpoint`]).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Brings the checkpoint up to date with the state after the last completed operation (a
    /// download when a step or SSSP ran since the last update) and returns it. On failure the
    /// engine and the old checkpoint are unchanged (a lost context marks the engine as needing
    /// recovery, as any operation does).
    pub fn sync_checkpoint(&mut self) -> Result<&Checkpoint> {
        self.guard()?;
        if self.checkpoint_behind {
            self.commit()?;
        }
        Ok(&self.checkpoint)
    }

    /// When the checkpoint follows steps and SSSP runs.
    pub fn checkpoint_cadence(&self) -> CheckpointCadence {
        self.cadence
    }

    /// Sets when the checkpoint follows steps and SSSP runs. Changes no state and no layout.
    pub fn set_checkpoint_cadence(&mut self, cadence: CheckpointCadence) {
        self.cadence = cadence;
    }

    /// Whether each kernel is waited for and its device time recorded in the kernel log (the
    /// default), or only queued, with one wait at the end of the step call. Off, a CUDA step costs
    /// no host round trip per kernel, the kernel log records nothing, and a kernel's failure is
    /// reported by the wait (the operation still fails and is undone as a whole). Changes no
    /// layout.
    pub fn set_kernel_timing(&mut self, on: bool) {
        self.kernel_timing = on;
        self.backend.set_kernel_timing(on);
    }
    /// Bytes of the buffers in the registry; equal to [`Engine::device_bytes`] unless memory leaks.
    pub fn registry_bytes(&self) -> usize {
        self.buffers.bytes()
    }
    /// Injected faults that fired so far.
    pub fn injections_fired(&self) -> InjectionCounts {
        self.backend.fired()
    }

    // ---- backend plumbing ------------------------------------------------------------------

    fn guard(&self) -> Result<()> {
        match &self.lost {
            Some(e) => Err(EngineError::ContextLost(e.clone())),
            None => Ok(()),
        }
    }

    /// Turns a backend result into an engine result, remembering sticky errors.
    fn be<T>(&mut self, r: std::result::Result<T, BackendError>) -> Result<T> {
        r.map_err(|e| {
            if e.sticky {
                self.lost = Some(e.clone());
            }
            EngineError::Backend(e)
        })
    }

    fn span(&self, name: B) -> Result<DeviceSpan> {
        self.buffers.span(name)
    }

    fn span3(&self, names: [B; 3]) -> Result<Span3> {
        Ok([
            self.span(names[0])?,
            self.span(names[1])?,
            self.span(names[2])?,
        ])
    }

    fn upload_f32(&mut self, name: B, offset: usize, data: &[f32]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let addr = self.span(name)?.addr + (offset * 4) as u64;
        let r = self.backend.upload(addr, &f32_bytes(data));
        self.be(r)
    }

    fn upload_u32(&mut self, name: B, offset: usize, data: &[u32]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let addr = self.span(name)?.addr + (offset * 4) as u64;
        let r = self.backend.upload(addr, &u32_bytes(data));
        self.be(r)
    }

    fn download_raw(&mut self, name: B, count: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; count * 4];
        if count > 0 {
            let addr = self.span(name)?.addr;
            let r = self.backend.download(addr, &mut bytes);
            self.be(r)?;
        }
        Ok(bytes)
    }

    fn download_f32(&mut self, name: B, count: usize) -> Result<Vec<f32>> {
        let b = self.download_raw(name, count)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn download_u32(&mut self, name: B, count: usize) -> Result<Vec<u32>> {
        let b = self.download_raw(name, count)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn fill(&mut self, name: B, offset: usize, count: usize, value: u32) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let addr = self.span(name)?.addr + (offset * 4) as u64;
        let r = self.backend.fill_u32(addr, count, value);
        self.be(r)
    }

    fn launch(&mut self, launch: Launch) -> Result<()> {
        self.guard()?;
        let r = self.backend.launch(&launch);
        let seconds = self.be(r)?;
        if !self.kernel_timing {
            return Ok(());
        }
        self.log.record(KernelRecord {
            kernel: launch.kernel_name(),
            duration_us: seconds * 1e6,
            num_nodes: self.num_nodes,
            num_edges: self.edges.len() as u32,
            iteration: self.iteration,
            anomaly: false,
        });
        Ok(())
    }

    // ---- capacity --------------------------------------------------------------------------

    /// The one place capacity changes: every buffer of `class` is reallocated to capacity `cap`
    /// together, the live prefix copied. On failure nothing changes.
    fn resize(&mut self, class: SizeClass, cap: usize) -> Result<()> {
        self.guard()?;
        let before = self.capacity(class);
        let growing_nodes = class == SizeClass::Node
            && cap > self.allocated_nodes
            && self.buffers.get(B::SortedKeys).is_ok();
        // Planted `sort-count-unclamped`: growth forgets the sort's scratch buffers.
        let forget_sort = growing_nodes && self.faults.contains(Fault::SortCountUnclamped);
        // Planted `analytics-not-resized`: growth forgets the SSSP buffers.
        let forget_sssp = growing_nodes && self.faults.contains(Fault::AnalyticsNotResized);
        let select = |n: B| {
            !(forget_sort && matches!(n, B::SortedKeys | B::SortedNodes)
                || forget_sssp
                    && matches!(
                        n,
                        B::SsspDist | B::SsspSpare | B::SsspFrontier | B::SsspFlags
                    ))
        };
        let leak = self.faults.contains(Fault::LeakOnResize);
        let r = self
            .buffers
            .resize_names(&mut self.backend, class, cap, select, leak);
        // Planted `resize-failure-stale`: on failure the capacity field is updated although the
        // new buffers were never installed.
        if r.is_err() && self.faults.contains(Fault::ResizeFailureStale) {
            self.set_capacity(class, cap);
        }
        self.be(r)?;
        if self.in_operation {
            self.journal.push((class, before));
        }
        if matches!(class, SizeClass::Node | SizeClass::Cell) {
            // Scratch buffers are not carried over: the grid stage's data is gone.
            self.grid = None;
        }
        let live = match class {
            SizeClass::Node => {
                self.allocated_nodes = cap;
                self.num_nodes as usize
            }
            SizeClass::Edge => {
                self.allocated_edges = cap;
                self.edges.len()
            }
            SizeClass::Cell => {
                self.allocated_cells = cap;
                self.grid.map_or(0, |g| g.num_cells())
            }
            SizeClass::Fixed => 0,
        };
        self.buffers.set_live(class, live);
        Ok(())
    }

    /// The capacity of `class` (0 for fixed buffers).
    fn capacity(&self, class: SizeClass) -> usize {
        match class {
            SizeClass::Node => self.allocated_nodes,
            SizeClass::Edge => self.allocated_edges,
            SizeClass::Cell => self.allocated_cells,
            SizeClass::Fixed => 0,
        }
    }

    fn set_capacity(&mut self, class: SizeClass, cap: usize) {
        match class {
            SizeClass::Node => self.allocated_nodes = cap,
            SizeClass::Edge => self.allocated_edges = cap,
            SizeClass::Cell => self.allocated_cells = cap,
            SizeClass::Fixed => {}
        }
    }

    fn ensure_capacity(&mut self, class: SizeClass, needed: usize) -> Result<()> {
        if class == SizeClass::Fixed {
            return Ok(());
        }
        let current = self.capacity(class);
        if needed > current {
            let cap = self.config.growth.grow(current, needed);
            self.resize(class, cap)?;
        }
        Ok(())
    }

    /// Makes room for at least `nodes` nodes and `edges` edges without further reallocation.
    fn reserve_op(&mut self, nodes: u32, edges: u32) -> Result<()> {
        check_count("reserved node count", nodes as u64, MAX_NODES as u64)?;
        check_count("reserved edge count", edges as u64, MAX_EDGES as u64)?;
        if nodes as usize > self.allocated_nodes {
            self.resize(SizeClass::Node, nodes as usize)?;
        }
        if edges as usize > self.allocated_edges {
            self.resize(SizeClass::Edge, edges as usize)?;
        }
        Ok(())
    }

    /// Shrinks every size class to its live count.
    fn shrink_to_fit_op(&mut self) -> Result<()> {
        self.resize(SizeClass::Node, self.num_nodes as usize)?;
        self.resize(SizeClass::Edge, self.edges.len())?;
        let cells = self.grid.map_or(0, |g| g.num_cells());
        self.resize(SizeClass::Cell, cells)
    }

    // ---- graph mutations -------------------------------------------------------------------

    /// Adds `count` nodes, at `positions` or at seeded random positions; returns their ids.
    fn add_nodes_op(&mut self, count: u32, positions: Option<&[[f32; 3]]>) -> Result<Range<u32>> {
        self.guard()?;
        self.device_dirty = true;
        self.host_dirty = true;
        let n = self.num_nodes;
        let new_n = n as u64 + count as u64;
        check_count("node count", new_n, MAX_NODES as u64)?;
        if let Some(p) = positions {
            check_positions(p, count as usize, n)?;
        }
        let new_n = new_n as u32;
        self.ensure_capacity(SizeClass::Node, new_n as usize)?;
        let pos: Vec<[f32; 3]> = match positions {
            Some(p) => p.to_vec(),
            None => {
                let half = self.params.rest_length.max(1.0) * (new_n.max(1) as f32).cbrt();
                let half = half.min(self.params.viewport_bounds);
                (0..count as u64)
                    .map(|k| seeded_position(self.params.seed, (self.spawned + k) as u32, half))
                    .collect()
            }
        };
        let (o, c) = (n as usize, count as usize);
        for (axis, name) in POS_IN.into_iter().enumerate() {
            let column: Vec<f32> = pos.iter().map(|p| p[axis]).collect();
            self.upload_f32(name, o, &column)?;
        }
        for name in VEL_IN {
            self.fill(name, o, c, 0)?;
        }
        self.upload_f32(B::Mass, o, &vec![1.0; c])?;
        for name in [B::AnchorX, B::AnchorY, B::AnchorZ, B::AnchorK] {
            self.fill(name, o, c, 0)?;
        }
        self.fill(B::SsspDist, o, c, f32::INFINITY.to_bits())?;
        self.num_nodes = new_n;
        self.spawned += count as u64;
        self.masses.resize(new_n as usize, 1.0);
        self.anchors.resize(new_n as usize, [0.0; 4]);
        self.buffers.set_live(SizeClass::Node, new_n as usize);
        self.grid = None;
        // Planted `copy-length-mismatch`: the row offsets are built for the old node count.
        let rows = if self.faults.contains(Fault::CopyLengthMismatch) && count > 0 {
            n
        } else {
            new_n
        };
        self.upload_csr_rows(rows as usize)?;
        Ok(n..new_n)
    }

    /// Removes nodes; the remaining ones keep their order and are renumbered `0..`; edges touching a
    /// removed node are dropped.
    fn remove_nodes_op(&mut self, ids: &[u32]) -> Result<()> {
        self.guard()?;
        self.device_dirty = true;
        self.host_dirty = true;
        let n = self.num_nodes as usize;
        let mut keep = vec![true; n];
        for &id in ids {
            if id as usize >= n {
                return Err(GraphError::NodeOutOfRange {
                    id: id as u64,
                    num_nodes: self.num_nodes,
                }
                .into());
            }
            keep[id as usize] = false;
        }
        let mut new_id = vec![u32::MAX; n];
        let mut next = 0u32;
        for (old, k) in keep.iter().enumerate() {
            if *k {
                new_id[old] = next;
                next += 1;
            }
        }
        // Planted `remove-nodes-velocities-stale`: only the positions are compacted.
        let stale_velocities = self.faults.contains(Fault::RemoveNodesVelocitiesStale);
        for name in POS_IN.into_iter().chain(VEL_IN) {
            if stale_velocities && VEL_IN.contains(&name) {
                continue;
            }
            let column = self.download_f32(name, n)?;
            let kept: Vec<f32> = column
                .into_iter()
                .zip(&keep)
                .filter_map(|(x, k)| k.then_some(x))
                .collect();
            self.upload_f32(name, 0, &kept)?;
        }
        retain_by_mask(&mut self.masses, &keep);
        retain_by_mask(&mut self.anchors, &keep);
        let mut edges = Vec::with_capacity(self.edges.len());
        let mut targets = Vec::with_capacity(self.edges.len());
        for (e, t) in self.edges.iter().zip(&self.edge_targets) {
            let (u, v) = (new_id[e.u as usize], new_id[e.v as usize]);
            if u != u32::MAX && v != u32::MAX {
                edges.push(Edge { u, v, w: e.w });
                targets.push(*t);
            }
        }
        self.edges = edges;
        self.edge_targets = targets;
        self.num_nodes = next;
        self.buffers.set_live(SizeClass::Node, next as usize);
        self.buffers.set_live(SizeClass::Edge, self.edges.len());
        self.upload_node_attributes()?;
        self.fill(B::SsspDist, 0, next as usize, f32::INFINITY.to_bits())?;
        self.grid = None;
        self.upload_csr()
    }

    /// Adds undirected edges.
    fn add_edges_op(&mut self, edges: &[Edge]) -> Result<()> {
        self.guard()?;
        self.host_dirty = true;
        let m = self.edges.len() as u64 + edges.len() as u64;
        check_count("edge count", m, MAX_EDGES as u64)?;
        for e in edges {
            check_edge(e, self.num_nodes)?;
        }
        self.ensure_capacity(SizeClass::Edge, m as usize)?;
        for e in edges {
            // Planted `add-edges-deduplicated`: an edge between two nodes already joined is skipped.
            if self.faults.contains(Fault::AddEdgesDeduplicated) && self.joined(e.u, e.v) {
                continue;
            }
            self.edges.push(*e);
        }
        self.edge_targets.resize(self.edges.len(), -1.0);
        self.buffers.set_live(SizeClass::Edge, self.edges.len());
        self.upload_csr()
    }

    /// Whether an edge joins `u` and `v` (in either direction).
    fn joined(&self, u: u32, v: u32) -> bool {
        self.edges
            .iter()
            .any(|e| (e.u, e.v) == (u, v) || (e.u, e.v) == (v, u))
    }

    /// Removes every edge between each pair (in either direction); returns how many were removed.
    fn remove_edges_op(&mut self, pairs: &[(u32, u32)]) -> Result<usize> {
        self.guard()?;
        self.host_dirty = true;
        for &(u, v) in pairs {
            for id in [u, v] {
                if id >= self.num_nodes {
                    return Err(GraphError::NodeOutOfRange {
                        id: id as u64,
                        num_nodes: self.num_nodes,
                    }
                    .into());
                }
            }
        }
        let hit = |e: &Edge| {
            pairs
                .iter()
                .any(|&(u, v)| (e.u, e.v) == (u, v) || (e.u, e.v) == (v, u))
        };
        let before = self.edges.len();
        let (edges, targets): (Vec<Edge>, Vec<f32>) = self
            .edges
            .iter()
            .zip(&self.edge_targets)
            .filter(|(e, _)| !hit(e))
            .map(|(e, t)| (*e, *t))
            .unzip();
        self.edges = edges;
        self.edge_targets = targets;
        self.buffers.set_live(SizeClass::Edge, self.edges.len());
        self.upload_csr()?;
        Ok(before - self.edges.len())
    }

    /// Replaces the parameters.
    fn set_params_op(&mut self, params: SimParams) -> Result<()> {
        params.validate()?;
        self.host_dirty = true;
        // Planted `params-not-uploaded`: the kernels keep the parameters they had.
        if !self.faults.contains(Fault::ParamsNotUploaded) {
            self.uploaded = params.clone();
        }
        self.params = params;
        Ok(())
    }

    /// Pulls `node` toward `target` with `stiffness` (0 removes the constraint). Constraint forces
    /// ramp in over `constraint_ramp_frames`.
    fn set_position_constraint_op(
        &mut self,
        node: u32,
        target: [f32; 3],
        stiffness: f32,
    ) -> Result<()> {
        self.guard()?;
        if node >= self.num_nodes {
            return Err(GraphError::NodeOutOfRange {
                id: node as u64,
                num_nodes: self.num_nodes,
            }
            .into());
        }
        if target.iter().any(|c| !c.is_finite()) || !stiffness.is_finite() || stiffness < 0.0 {
            return Err(GraphError::BadPosition { node }.into());
        }
        self.host_dirty = true;
        self.anchors[node as usize] = [target[0], target[1], target[2], stiffness];
        self.constraints_since = self.iteration;
        self.upload_node_attributes()
    }

    /// Holds every edge between `u` and `v` at `distance` (negative removes the constraint).
    fn set_distance_constraint_op(&mut self, u: u32, v: u32, distance: f32) -> Result<()> {
        self.guard()?;
        self.host_dirty = true;
        let mut found = false;
        for (e, t) in self.edges.iter().zip(self.edge_targets.iter_mut()) {
            if (e.u, e.v) == (u, v) || (e.u, e.v) == (v, u) {
                *t = if distance.is_finite() { distance } else { -1.0 };
                found = true;
            }
        }
        if !found {
            return Err(GraphError::NoSuchEdge { u, v }.into());
        }
        self.constraints_since = self.iteration;
        self.upload_csr()
    }

    /// Removes every constraint.
    fn clear_constraints_op(&mut self) -> Result<()> {
        self.guard()?;
        self.host_dirty = true;
        self.anchors.iter_mut().for_each(|a| *a = [0.0; 4]);
        self.edge_targets.iter_mut().for_each(|t| *t = -1.0);
        self.upload_node_attributes()?;
        self.upload_csr()
    }

    fn upload_node_attributes(&mut self) -> Result<()> {
        let masses = self.masses.clone();
        self.upload_f32(B::Mass, 0, &masses)?;
        for (k, name) in [B::AnchorX, B::AnchorY, B::AnchorZ, B::AnchorK]
            .into_iter()
            .enumerate()
        {
            let column: Vec<f32> = self.anchors.iter().map(|a| a[k]).collect();
            self.upload_f32(name, 0, &column)?;
        }
        Ok(())
    }

    /// Builds the CSR (each edge in both directions, rows in edge order) and uploads it.
    fn upload_csr(&mut self) -> Result<()> {
        self.upload_csr_rows(self.num_nodes as usize)
    }

    /// [`Self::upload_csr`] with `n` rows (the node count, except in a planted fault).
    fn upload_csr_rows(&mut self, n: usize) -> Result<()> {
        let mut row_offsets = vec![0u32; n + 1];
        for e in &self.edges {
            row_offsets[e.u as usize + 1] += 1;
            row_offsets[e.v as usize + 1] += 1;
        }
        for i in 0..n {
            row_offsets[i + 1] += row_offsets[i];
        }
        let entries = 2 * self.edges.len();
        let mut fill = row_offsets.clone();
        let mut cols = vec![0u32; entries];
        let mut weights = vec![0f32; entries];
        let mut targets = vec![-1f32; entries];
        for (e, t) in self.edges.iter().zip(&self.edge_targets) {
            for (a, b) in [(e.u, e.v), (e.v, e.u)] {
                let slot = fill[a as usize] as usize;
                fill[a as usize] += 1;
                cols[slot] = b;
                weights[slot] = e.w;
                targets[slot] = *t;
            }
        }
        // The kernels skip a target only when it is below zero (NaN is not).
        let any_target = targets.iter().any(|t| t.is_nan() || *t >= 0.0);
        self.distance_targets_on_device |= any_target;
        self.upload_u32(B::RowOffsets, 0, &row_offsets)?;
        self.upload_u32(B::ColIndices, 0, &cols)?;
        self.upload_f32(B::Weights, 0, &weights)?;
        self.upload_f32(B::EdgeTarget, 0, &targets)?;
        self.distance_targets_on_device = any_target;
        Ok(())
    }

    // ---- the step pipeline -----------------------------------------------------------------

    /// Runs `count` steps.
    ///
    /// The state before the call stays untouched in the `*_in` buffers until the call's last
    /// action: the first step writes the `*_out` buffers, later steps alternate between `*_out` and
    /// `*_spare`, and only then are the `*_in` buffers exchanged with the last step's output. A step
    /// that fails therefore leaves the pre-call state in place with no copy at all, and the swap is
    /// recorded so that a failure after it (in the checkpoint's download) can undo it.
    fn step_op(&mut self, count: u32) -> Result<()> {
        self.device_dirty = true;
        let (mut read, mut write) = ((POS_IN, VEL_IN), (POS_OUT, VEL_OUT));
        let mut stepped = false;
        for _ in 0..count {
            if self.step_once(read, write)? {
                stepped = true;
                read = write;
                write = if write.0 == POS_OUT {
                    (POS_SPARE, VEL_SPARE)
                } else {
                    (POS_OUT, VEL_OUT)
                };
            }
        }
        if !self.kernel_timing {
            // Untimed launches were only queued: their failure must show before the exchange.
            let r = self.backend.synchronize();
            self.be(r)?;
        }
        if stepped {
            // The grid of the last step, for `grid()` and the oracles: one read per call, after the
            // synchronization the call makes anyway, instead of one bounding box per step.
            let words = self.download_u32(B::Grid, GRID_WORDS)?;
            let grid = GridSpec::from_words(&words);
            self.grid = Some(grid);
            // Steps ran over the cap's cells; what is live is the last grid's.
            let cells = grid.num_cells().min(self.allocated_cells);
            self.buffers.set_live(SizeClass::Cell, cells);
            for k in 0..3 {
                self.swap_buffers(POS_IN[k], read.0[k]);
                self.swap_buffers(VEL_IN[k], read.1[k]);
            }
        }
        self.steps_since_sync = self.steps_since_sync.saturating_add(count as u64);
        Ok(())
    }

    /// Exchanges two buffers' allocations and records the exchange for a roll-back.
    fn swap_buffers(&mut self, a: B, b: B) {
        self.buffers.swap(a, b);
        if self.in_operation {
            self.swaps.push((a, b));
        }
    }

    /// What sizes the grid besides the bounding box, for the `grid_params` kernel.
    fn grid_inputs(&self) -> GridInputs {
        GridInputs {
            cell_size: self.uploaded.grid_cell_size,
            cutoff: self.uploaded.repulsion_cutoff,
            num_nodes: self.num_nodes,
            // Planted `grid-cap-unclamped`: the dimensions ignore the cap (the cell buffers do not).
            max_cells: if self.faults.contains(Fault::GridCapUnclamped) {
                f64::INFINITY
            } else {
                self.cell_cap() as f64
            },
        }
    }

    /// The cell capacity every step uses: the configured cap, whatever the positions are, so that
    /// no step needs the grid's dimensions on the host.
    fn cell_cap(&self) -> usize {
        self.config.max_grid_cells.clamp(1, u32::MAX as usize)
    }

    /// Grid dimensions from the bounding box, as the `grid_params` kernel computes them on the
    /// device: the cell edge from params (or auto), grown until the total cell count respects the cap.
    pub fn grid_for_bounds(&self, lo: [f32; 3], hi: [f32; 3]) -> GridSpec {
        grid_for_bounds(lo, hi, &self.grid_inputs())
    }

    fn constraint_ramp(&self) -> f32 {
        let frames = self.uploaded.constraint_ramp_frames;
        if frames == 0 {
            return 1.0;
        }
        let since = self.iteration.saturating_sub(self.constraints_since) + 1;
        (since as f32 / frames as f32).min(1.0)
    }

    /// One step from the `read` (positions, velocities) buffers into the `write` ones; returns
    /// whether anything was written (an empty graph only counts the iteration).
    fn step_once(&mut self, read: ([B; 3], [B; 3]), write: ([B; 3], [B; 3])) -> Result<bool> {
        self.guard()?;
        let n = self.num_nodes;
        if n > 0 {
            let pos = self.span3(read.0)?;
            let bounds = self.span(B::Bounds)?;
            // 1. bounding box, on the device.
            self.launch(Launch::BoundsReduce(BoundsReduceArgs {
                pos,
                bounds,
                num_nodes: n,
            }))?;
            // 2. grid dimensions, on the device too: no step reads anything back. The cell buffers
            // have the cap's size whatever the positions are.
            let grid = self.span(B::Grid)?;
            self.launch(Launch::GridParams(GridParamsArgs {
                bounds,
                grid,
                inputs: self.grid_inputs(),
            }))?;
            let cap = self.cell_cap();
            self.ensure_capacity(SizeClass::Cell, cap)?;
            self.buffers.set_live(SizeClass::Cell, cap);
            // 3. cell key per node, identity values.
            self.launch(Launch::BuildGrid(BuildGridArgs {
                pos,
                cell_keys: self.span(B::CellKeys)?,
                node_order: self.span(B::NodeOrder)?,
                grid,
                num_nodes: n,
            }))?;
            // Planted `sort-values-stale`: the values are last step's permutation, not the identity.
            if self.faults.contains(Fault::SortValuesStale) {
                let (dst, src) = (
                    self.span(B::NodeOrder)?.addr,
                    self.span(B::SortedNodes)?.addr,
                );
                let r = self.backend.copy(dst, src, n as usize * 4);
                self.be(r)?;
            }
            // 4. key-value sort over num_nodes.
            self.launch(Launch::SortPairs(SortArgs {
                keys_in: self.span(B::CellKeys)?,
                values_in: self.span(B::NodeOrder)?,
                keys_out: self.span(B::SortedKeys)?,
                values_out: self.span(B::SortedNodes)?,
                cell_counts: self.span(B::CellCounts)?,
                grid,
                num_items: n,
                max_cells: cap as u32,
            }))?;
            // 4b. positions into sorted order, for contiguous reads in the force pass.
            self.launch(Launch::GatherPositions(GatherPositionsArgs {
                pos,
                sorted_nodes: self.span(B::SortedNodes)?,
                sorted_pos: self.span3(SORTED_POS)?,
                num_nodes: n,
            }))?;
            // 5. cell bounds: every cell of the grid cleared, then launched over nodes.
            self.launch(Launch::CellBounds(CellBoundsArgs {
                sorted_keys: self.span(B::SortedKeys)?,
                cell_start: self.span(B::CellStart)?,
                cell_end: self.span(B::CellEnd)?,
                grid,
                num_items: n,
                max_cells: cap as u32,
                // Planted `cell-bounds-over-cells`: one thread per cell instead of per node.
                over_cells: u32::from(self.faults.contains(Fault::CellBoundsOverCells)),
            }))?;
            // 6. forces.
            let mut params = self
                .uploaded
                .kernel_params(self.iteration, self.constraint_ramp());
            if self.distance_targets_on_device {
                params.feature_flags |= KERNEL_DISTANCE_TARGETS;
            }
            params.force_lanes = self.force_lanes();
            // Planted `no-softening`.
            if self.faults.contains(Fault::NoSoftening) {
                params.softening_eps = 0.0;
            }
            // Planted `repulsion-overscaled`: a wrong force law, finite and deterministic.
            if self.faults.contains(Fault::RepulsionOverscaled) {
                params.repel_k *= 1.5;
            }
            // Planted `slow-force-pass-<n>pct`: dummy work per 1000 candidates (measured to add
            // about n% of the force pass's instructions).
            params.slow_extra_work = [
                (Fault::SlowForcePass1, 55),
                (Fault::SlowForcePass3, 170),
                (Fault::SlowForcePass10, 565),
            ]
            .iter()
            .filter(|(f, _)| self.faults.contains(*f))
            .map(|(_, w)| w)
            .sum();
            self.launch(Launch::ForcePass(ForcePassArgs {
                pos,
                force: self.span3(FORCE)?,
                sorted_nodes: self.span(B::SortedNodes)?,
                sorted_pos: self.span3(SORTED_POS)?,
                cell_start: self.span(B::CellStart)?,
                cell_end: self.span(B::CellEnd)?,
                row_offsets: self.span(B::RowOffsets)?,
                col_indices: self.span(B::ColIndices)?,
                weights: self.span(B::Weights)?,
                edge_target: self.span(B::EdgeTarget)?,
                anchor: self.span3(ANCHOR)?,
                anchor_k: self.span(B::AnchorK)?,
                sssp_dist: self.span(B::SsspDist)?,
                grid,
                params,
                num_nodes: n,
                // Planted `slow-force-pass`: 125 cells scanned instead of 27.
                stencil_radius: if self.faults.contains(Fault::SlowForcePass) {
                    2
                } else {
                    1
                },
            }))?;
            // 7. integrate.
            self.launch(Launch::Integrate(IntegrateArgs {
                pos_in: pos,
                vel_in: self.span3(read.1)?,
                force: self.span3(FORCE)?,
                mass: self.span(B::Mass)?,
                pos_out: self.span3(write.0)?,
                vel_out: self.span3(write.1)?,
                params,
                num_nodes: n,
            }))?;
        }
        self.iteration = self.iteration.wrapping_add(1);
        Ok(n > 0)
    }

    // ---- analytics -------------------------------------------------------------------------

    /// Single-source shortest paths by edge weight from `source` (frontier relaxation with frontier
    /// compaction). Unreachable nodes get `f32::INFINITY`. The distances stay on the device and, with
    /// [`crate::params::features::SSSP_REST_LENGTH`], stretch spring rest lengths.
    fn run_sssp_op(&mut self, source: u32) -> Result<Vec<f32>> {
        self.guard()?;
        self.device_dirty = true;
        let n = self.num_nodes;
        if source >= n {
            return Err(GraphError::NodeOutOfRange {
                id: source as u64,
                num_nodes: n,
            }
            .into());
        }
        // The distances are computed in the spare buffer and exchanged with the live ones at the
        // end, so that a failure part-way leaves the distances of before in place.
        self.fill(B::SsspSpare, 0, n as usize, f32::INFINITY.to_bits())?;
        self.upload_f32(B::SsspSpare, source as usize, &[0.0])?;
        self.fill(B::SsspFlags, 0, n as usize, 0)?;
        // Planted `frontier-undersized`: a one-element buffer is swapped in as the frontier.
        let frontier = if self.faults.contains(Fault::FrontierUndersized) {
            B::FrontierSpare
        } else {
            B::SsspFrontier
        };
        self.upload_u32(frontier, 0, &[source])?;
        let mut len = 1u32;
        while len > 0 {
            self.launch(Launch::SsspRelax(SsspRelaxArgs {
                row_offsets: self.span(B::RowOffsets)?,
                col_indices: self.span(B::ColIndices)?,
                weights: self.span(B::Weights)?,
                dist: self.span(B::SsspSpare)?,
                frontier: self.span(frontier)?,
                flags: self.span(B::SsspFlags)?,
                frontier_len: len,
            }))?;
            self.launch(Launch::FrontierCompact(FrontierCompactArgs {
                flags: self.span(B::SsspFlags)?,
                frontier: self.span(frontier)?,
                frontier_len: self.span(B::FrontierLen)?,
                num_nodes: n,
            }))?;
            len = self.download_u32(B::FrontierLen, 1)?[0];
        }
        self.swap_buffers(B::SsspDist, B::SsspSpare);
        self.download_f32(B::SsspDist, n as usize)
    }

    // ---- the public operations: each a transaction ----------------------------------------

    /// Makes room for at least `nodes` nodes and `edges` edges without further reallocation. Never
    /// shrinks; changes nothing observable (counts, ids, positions, velocities, edges, constraints).
    pub fn reserve(&mut self, nodes: u32, edges: u32) -> Result<()> {
        self.transaction(|e| e.reserve_op(nodes, edges))
    }

    /// Shrinks every size class to its live count; changes nothing observable.
    pub fn shrink_to_fit(&mut self) -> Result<()> {
        self.transaction(|e| e.shrink_to_fit_op())
    }

    /// Adds `count` nodes, at `positions` or at seeded random positions; returns their ids
    /// (`num_nodes..num_nodes + count`). New nodes have velocity 0, mass 1, no constraint; seeded
    /// positions depend on the seed and on how many nodes were ever added (module docs). Existing
    /// nodes are untouched.
    pub fn add_nodes(&mut self, count: u32, positions: Option<&[[f32; 3]]>) -> Result<Range<u32>> {
        self.transaction(|e| e.add_nodes_op(count, positions))
    }

    /// Removes nodes (duplicate ids allowed); the remaining ones keep their order and are renumbered
    /// `0..`, carrying their positions, velocities, masses and position constraints unchanged; edges
    /// touching a removed node are dropped, the rest renumbered in order; SSSP distances reset.
    pub fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        self.transaction(|e| e.remove_nodes_op(ids))
    }

    /// Appends undirected edges as given (duplicates and self loops kept: the edges are a multiset),
    /// without distance targets. Moves no node.
    pub fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
        self.transaction(|e| e.add_edges_op(edges))
    }

    /// Removes every edge between each pair (in either direction, every duplicate); returns how many
    /// were removed. A pair with no edge removes nothing. Moves no node.
    pub fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<usize> {
        self.transaction(|e| e.remove_edges_op(pairs))
    }

    /// Replaces every parameter (after validation); changes no count, node, edge or constraint.
    pub fn set_params(&mut self, params: SimParams) -> Result<()> {
        self.transaction(|e| e.set_params_op(params))
    }

    /// Pulls `node` toward `target` with `stiffness` (0 removes the constraint). Constraint forces
    /// ramp in over `constraint_ramp_frames`, counted from this op. Moves no node.
    pub fn set_position_constraint(
        &mut self,
        node: u32,
        target: [f32; 3],
        stiffness: f32,
    ) -> Result<()> {
        self.transaction(|e| e.set_position_constraint_op(node, target, stiffness))
    }

    /// Holds every edge between `u` and `v` (either direction) at `distance` (negative removes the
    /// constraint; non-finite is stored as -1); `NoSuchEdge`, changing nothing, when none joins them.
    pub fn set_distance_constraint(&mut self, u: u32, v: u32, distance: f32) -> Result<()> {
        self.transaction(|e| e.set_distance_constraint_op(u, v, distance))
    }

    /// Removes every position and distance constraint. Moves no node.
    pub fn clear_constraints(&mut self) -> Result<()> {
        self.transaction(|e| e.clear_constraints_op())
    }

    /// Runs `count` steps.
    ///
    /// On failure the state is as before the call, restored without any transfer: the steps write
    /// only buffers other than the live ones, which are exchanged last (see `step_op`). Costs the
    /// kernels of `count` steps and, when the [`CheckpointCadence`] asks for it, one download of
    /// positions, velocities and SSSP distances.
    pub fn step(&mut self, count: u32) -> Result<()> {
        self.device_transaction(|e| e.step_op(count))
    }

    /// Single-source shortest paths by edge weight from `source` (frontier relaxation with frontier
    /// compaction). Unreachable nodes get `f32::INFINITY`. The distances stay on the device and, with
    /// [`crate::params::features::SSSP_REST_LENGTH`], stretch spring rest lengths.
    ///
    /// On failure the distances of before are still in place (the run writes a spare buffer that
    /// is exchanged with the live one last).
    pub fn run_sssp(&mut self, source: u32) -> Result<Vec<f32>> {
        self.device_transaction(|e| e.run_sssp_op(source))
    }

    // ---- transactions, checkpoints and recovery ---------------------------------------------

    /// Arms an injected environment fault: the next matching backend call fails (see
    /// [`crate::inject`]).
    pub fn inject(&mut self, fault: EnvFault) {
        self.backend.arm(fault);
    }

    /// Runs `op` as a transaction: on success the checkpoint is brought up to date; on a backend
    /// failure the engine is put back as it was before (or, if that fails too, marked as needing
    /// recovery) and the error returned. Errors of validation change nothing, so they need no undo.
    fn transaction<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.guard()?;
        if self.checkpoint_behind {
            // A graph edit is undone from the checkpoint, so it must hold the state of now.
            if let Err(e) = self.commit() {
                if self.lost.is_some() {
                    self.restore_host_fields();
                }
                return Err(e);
            }
        }
        self.journal.clear();
        self.swaps.clear();
        self.in_operation = true;
        let result = op(self).and_then(|v| self.commit().map(|()| v));
        self.in_operation = false;
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                if matches!(e, EngineError::Backend(_) | EngineError::ContextLost(_)) {
                    self.roll_back();
                }
                self.journal.clear();
                Err(e)
            }
        }
    }

    /// Runs a step or SSSP `op` as a transaction whose failure is undone on the device: the buffer
    /// exchanges it made are reversed (the live buffers were never written), its resizes undone,
    /// and the iteration counter restored. The checkpoint is brought up to date when the cadence
    /// asks for it. After a lost context the engine goes back to the checkpoint in `recover`.
    fn device_transaction<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.guard()?;
        self.journal.clear();
        self.swaps.clear();
        let (iteration, steps_since_sync) = (self.iteration, self.steps_since_sync);
        self.in_operation = true;
        let result = op(self).and_then(|v| self.commit_by_cadence().map(|()| v));
        self.in_operation = false;
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                if matches!(e, EngineError::Backend(_) | EngineError::ContextLost(_)) {
                    self.roll_back_on_device(iteration, steps_since_sync);
                }
                self.journal.clear();
                self.swaps.clear();
                Err(e)
            }
        }
    }

    /// After a step or SSSP: the checkpoint follows now if the cadence says so.
    fn commit_by_cadence(&mut self) -> Result<()> {
        let due = match self.cadence {
            CheckpointCadence::EveryOperation => true,
            CheckpointCadence::EverySteps(k) => self.steps_since_sync >= u64::from(k.get()),
            CheckpointCadence::OnDemand => false,
        };
        if due {
            self.commit()
        } else {
            self.checkpoint_behind = true;
            Ok(())
        }
    }

    /// Undoes a failed step or SSSP without any transfer (see [`Engine::device_transaction`]).
    fn roll_back_on_device(&mut self, iteration: u32, steps_since_sync: u64) {
        let swaps = std::mem::take(&mut self.swaps);
        let journal = std::mem::take(&mut self.journal);
        if self.lost.is_some() {
            // The device is gone; `recover` rebuilds from the checkpoint.
            self.restore_host_fields();
            return;
        }
        for (a, b) in swaps.into_iter().rev() {
            self.buffers.swap(a, b);
        }
        self.iteration = iteration;
        self.steps_since_sync = steps_since_sync;
        // The grid stage's buffers are scratch: whatever they hold now is not the last step's.
        self.grid = None;
        let undo = || -> Result<()> {
            for (class, cap) in journal.into_iter().rev() {
                self.resize(class, cap)?;
            }
            Ok(())
        };
        if let Err(e) = undo() {
            self.lost = Some(match e {
                EngineError::Backend(b) | EngineError::ContextLost(b) => b,
                other => BackendError::new(crate::error::BackendOp::Init, other.to_string()),
            });
            self.restore_host_fields();
        }
    }

    /// Brings the checkpoint up to date with what changed.
    fn commit(&mut self) -> Result<()> {
        if self.device_dirty {
            // Everything is read before anything is replaced: a failed read must leave the old
            // checkpoint whole, since the roll-back restores from it.
            let n = self.num_nodes as usize;
            let positions = self.read3_raw(POS_IN)?;
            let velocities = self.read3_raw(VEL_IN)?;
            let sssp_dist = self.download_f32(B::SsspDist, n)?;
            self.checkpoint.positions = positions;
            self.checkpoint.velocities = velocities;
            self.checkpoint.sssp_dist = sssp_dist;
            self.device_dirty = false;
        }
        if self.host_dirty {
            let c = &mut self.checkpoint;
            c.num_nodes = self.num_nodes;
            c.edges = self.edges.clone();
            c.edge_targets = self.edge_targets.clone();
            c.masses = self.masses.clone();
            c.anchors = self.anchors.clone();
            c.params = self.params.clone();
            c.uploaded = self.uploaded.clone();
            c.spawned = self.spawned;
            c.constraints_since = self.constraints_since;
            self.host_dirty = false;
        }
        self.checkpoint.iteration = self.iteration;
        self.checkpoint.allocated_nodes = self.allocated_nodes;
        self.checkpoint.allocated_edges = self.allocated_edges;
        self.checkpoint.allocated_cells = self.allocated_cells;
        self.checkpoint_behind = false;
        self.steps_since_sync = 0;
        Ok(())
    }

    /// Undoes a failed operation: its completed resizes in reverse, then the checkpoint's data.
    fn roll_back(&mut self) {
        let journal = std::mem::take(&mut self.journal);
        self.restore_host_fields();
        if self.lost.is_some() {
            // The device is gone; `recover` rebuilds from the checkpoint.
            return;
        }
        let restore = || -> Result<()> {
            for (class, cap) in journal.into_iter().rev() {
                self.resize(class, cap)?;
            }
            self.upload_checkpoint_data()
        };
        if let Err(e) = restore() {
            // The engine cannot be trusted until recovered.
            self.lost = Some(match e {
                EngineError::Backend(b) | EngineError::ContextLost(b) => b,
                other => BackendError::new(crate::error::BackendOp::Init, other.to_string()),
            });
        }
    }

    /// The host side of the checkpoint: counts, graph, attributes, params, counters.
    fn restore_host_fields(&mut self) {
        let c = &self.checkpoint;
        self.num_nodes = c.num_nodes;
        self.edges = c.edges.clone();
        self.edge_targets = c.edge_targets.clone();
        self.masses = c.masses.clone();
        self.anchors = c.anchors.clone();
        self.params = c.params.clone();
        self.uploaded = c.uploaded.clone();
        self.spawned = c.spawned;
        self.iteration = c.iteration;
        self.constraints_since = c.constraints_since;
        // The grid stage's buffers are scratch: whatever they hold now is not the last step's.
        self.grid = None;
        self.host_dirty = false;
        self.device_dirty = false;
        self.checkpoint_behind = false;
        self.steps_since_sync = 0;
    }

    /// The device side of the checkpoint: positions, velocities, distances, attributes, CSR.
    fn upload_checkpoint_data(&mut self) -> Result<()> {
        self.buffers
            .set_live(SizeClass::Node, self.num_nodes as usize);
        self.buffers.set_live(SizeClass::Edge, self.edges.len());
        let c = std::mem::take(&mut self.checkpoint);
        let r = (|| {
            for axis in 0..3 {
                let p: Vec<f32> = c.positions.iter().map(|p| p[axis]).collect();
                let v: Vec<f32> = c.velocities.iter().map(|v| v[axis]).collect();
                self.upload_f32(POS_IN[axis], 0, &p)?;
                self.upload_f32(VEL_IN[axis], 0, &v)?;
            }
            self.upload_f32(B::SsspDist, 0, &c.sssp_dist)?;
            self.upload_node_attributes()?;
            self.upload_csr()
        })();
        self.checkpoint = c;
        r
    }

    /// Reallocates every buffer at the checkpoint's capacities and restores its state.
    fn rebuild_from_checkpoint(&mut self) -> Result<()> {
        let (nodes, edges, cells) = (
            self.checkpoint.allocated_nodes,
            self.checkpoint.allocated_edges,
            self.checkpoint.allocated_cells,
        );
        self.restore_host_fields();
        self.resize(SizeClass::Node, nodes)?;
        self.resize(SizeClass::Edge, edges)?;
        self.resize(SizeClass::Cell, cells)?;
        self.resize(SizeClass::Fixed, 0)?;
        self.upload_checkpoint_data()
    }

    /// Starts the backend over (a new CUDA context, fresh CPU memory) and restores the checkpoint:
    /// the state after the last completed operation. Faults armed but not fired are dropped. Works
    /// whether or not the context was lost; fails with the backend's error when no new context can
    /// be had (CUDA refuses one in a process whose context trapped on some drivers: then only a new
    /// process can continue, from [`Engine::checkpoint`]).
    pub fn recover(&mut self) -> Result<()> {
        self.backend.disarm();
        if self.lost.is_none() && self.checkpoint_behind {
            // The device still answers: go back no further than the last completed operation.
            // A lost context here leaves the older checkpoint to rebuild from.
            if let Err(e) = self.commit() {
                if self.lost.is_none() {
                    return Err(e);
                }
            }
        }
        self.journal.clear();
        self.buffers.forget_all();
        if let Err(e) = self.backend.reset() {
            self.lost = Some(e.clone());
            return Err(if e.sticky {
                EngineError::ProcessPoisoned(e)
            } else {
                EngineError::Backend(e)
            });
        }
        self.lost = None;
        self.allocated_nodes = 0;
        self.allocated_edges = 0;
        self.allocated_cells = 0;
        if let Err(e) = self.rebuild_from_checkpoint() {
            if self.lost.is_none() {
                if let EngineError::Backend(b) = &e {
                    self.lost = Some(b.clone());
                }
            }
            return Err(e);
        }
        Ok(())
    }

    // ---- reading state ---------------------------------------------------------------------

    /// Current positions, one `[x, y, z]` per node.
    pub fn positions(&mut self) -> Result<Vec<[f32; 3]>> {
        self.read3(POS_IN)
    }

    /// Current velocities.
    pub fn velocities(&mut self) -> Result<Vec<[f32; 3]>> {
        self.read3(VEL_IN)
    }

    fn read3(&mut self, names: [B; 3]) -> Result<Vec<[f32; 3]>> {
        self.guard()?;
        self.read3_raw(names)
    }

    fn read3_raw(&mut self, names: [B; 3]) -> Result<Vec<[f32; 3]>> {
        let n = self.num_nodes as usize;
        let x = self.download_f32(names[0], n)?;
        let y = self.download_f32(names[1], n)?;
        let z = self.download_f32(names[2], n)?;
        Ok((0..n).map(|i| [x[i], y[i], z[i]]).collect())
    }

    /// The grid stage of the last step, if no node was added or removed since.
    pub fn inspect_grid(&mut self) -> Result<Option<GridInspection>> {
        self.guard()?;
        let Some(grid) = self.grid else {
            return Ok(None);
        };
        let n = self.num_nodes as usize;
        let cells = grid.num_cells();
        Ok(Some(GridInspection {
            grid,
            cell_keys: self.download_u32(B::CellKeys, n)?,
            sorted_keys: self.download_u32(B::SortedKeys, n)?,
            sorted_nodes: self.download_u32(B::SortedNodes, n)?,
            cell_start: self.download_u32(B::CellStart, cells)?,
            cell_end: self.download_u32(B::CellEnd, cells)?,
        }))
    }

    /// The CSR as it is on the device.
    pub fn inspect_csr(&mut self) -> Result<CsrInspection> {
        self.guard()?;
        let n = self.num_nodes as usize;
        let entries = 2 * self.edges.len();
        Ok(CsrInspection {
            row_offsets: self.download_u32(B::RowOffsets, n + 1)?,
            col_indices: self.download_u32(B::ColIndices, entries)?,
            weights: self.download_f32(B::Weights, entries)?,
        })
    }

    /// The per-node attributes and per-CSR-entry distance targets as they are on the device.
    pub fn inspect_constraints(&mut self) -> Result<ConstraintInspection> {
        self.guard()?;
        let n = self.num_nodes as usize;
        let entries = 2 * self.edges.len();
        let mass = self.download_f32(B::Mass, n)?;
        let mut columns = Vec::with_capacity(4);
        for name in [B::AnchorX, B::AnchorY, B::AnchorZ, B::AnchorK] {
            columns.push(self.download_f32(name, n)?);
        }
        Ok(ConstraintInspection {
            masses: mass,
            anchors: (0..n)
                .map(|i| [columns[0][i], columns[1][i], columns[2][i], columns[3][i]])
                .collect(),
            edge_targets: self.download_f32(B::EdgeTarget, entries)?,
        })
    }
}

impl<Bk: Backend> Drop for Engine<Bk> {
    fn drop(&mut self) {
        if self.lost.is_some() {
            self.buffers.forget_all();
        } else {
            self.buffers.free_all(&mut self.backend);
        }
    }
}
