/*!
Forcefield's own engine behind the [`Target`] trait (`--target builtin`): the same path as every
other engine's, through [`crate::worker::target_case`] and its generic checks.

It declares every capability the engine has: parameters (a JSON object of [`SimParams`] fields,
the others at their defaults), capacity, SSSP, constraints, counts and capacities (nodes, edges
and grid cells, as the engine's own bookkeeping has them: a failed growth that leaves one stale
shows), device memory, the grid stage (with its origin and cell size), CSR, checkpoint/restore (a
[`WireCheckpoint`], bit-exact), injected environment faults (and the count of those that fired,
[`Target::injections_fired`], so that a real error while one is armed is not taken for its),
velocities and attributes (masses, position constraints,
distance targets: the engine's constraint inspection), and the buffer registry's records (each
buffer's live length, capacity and allocated bytes). Validation errors are `Rejected` (the engine changes nothing); any other engine error is
`Internal`, after a lost context is recovered so that the layout is as before the op (its kind
[`CONTEXT_LOST`] for a sticky error; [`NO_BACKEND`] when no backend opens here; and
[`PROCESS_POISONED`] when this process can get no new context, and then [`Target::checkpoint`]
still answers, with the state before the op: the host continues the case from it in a fresh
process). Planted faults and engine settings (the grid-cell cap) come from the case
([`crate::worker::engine_case`]); nothing here knows which fault is on. Since its parameters are the
case format's, the host runs it with [`crate::worker::target_case::CaseParams::Send`]: a case's
initial parameters and its `set_params` ops reach it, where another engine gets neither.
*/

use forcefield::{
    Backend, CpuBackend, Edge as EngineEdge, Engine, EngineConfig, EngineError, FaultSet,
    GraphSpec, SimParams,
};
use forcefield_target::{
    Attributes, Buffer, Capabilities, Capability, Counts, Csr, Edge, EnvFault, Graph, GridStage,
    Params, Point, Result, Target, TargetError, TargetInfo,
};

use crate::worker::execute::wire::WireCheckpoint;
use crate::worker::target_case::{CONTEXT_LOST, NO_BACKEND, PROCESS_POISONED};

/// Opens the backend of each engine a target builds (`Err`: why there is none here).
pub type BackendFactory = dyn Fn() -> std::result::Result<Box<dyn Backend>, String>;

/// Forcefield's engine as a target, on the CPU backend (one kernel thread) unless given other
/// backends.
pub struct EngineTarget {
    faults: FaultSet,
    config: EngineConfig,
    make_backend: Box<BackendFactory>,
    engine: Option<Engine<Box<dyn Backend>>>,
}

impl EngineTarget {
    /// An engine target with `faults` planted (none in production: the harness's own runs).
    pub fn new(faults: FaultSet) -> Self {
        EngineTarget {
            faults,
            config: EngineConfig::default(),
            make_backend: Box::new(|| Ok(Box::new(CpuBackend::with_threads(1)))),
            engine: None,
        }
    }

    /// This target, opening each engine's backend with `make` (a worker's: the case's backend,
    /// traced into the breadcrumbs, so that a crash is signed by its kernel as without the trait).
    pub fn with_backends(mut self, make: Box<BackendFactory>) -> Self {
        self.make_backend = make;
        self
    }

    /// This target, building its engines with `config` (a case's grid-cell cap and growth policy).
    pub fn with_config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The geometry of the grid the last step used (origin, cell size, dimensions), as the
    /// engine keeps it on the host; `None` before a step or without a layout.
    pub fn grid_spec(&self) -> Option<forcefield::GridSpec> {
        self.engine.as_ref().and_then(|e| e.grid())
    }

    /// A backend for a new engine; none here is the environment's failure, not a rejection.
    fn backend(&self) -> Result<Box<dyn Backend>> {
        (self.make_backend)().map_err(|e| TargetError::Internal(format!("{NO_BACKEND}: {e}")))
    }

    fn engine(&mut self) -> Result<&mut Engine<Box<dyn Backend>>> {
        self.engine
            .as_mut()
            .ok_or_else(|| TargetError::Rejected("no layout: create one first".into()))
    }

    /// Runs `op` on the engine; a failure is mapped, after a lost context is recovered.
    fn with<T>(
        &mut self,
        op: impl FnOnce(&mut Engine<Box<dyn Backend>>) -> std::result::Result<T, EngineError>,
    ) -> Result<T> {
        let engine = self.engine()?;
        let fired = engine.injections_fired();
        match op(engine) {
            Ok(v) => Ok(v),
            Err(e) => {
                // Only a failure an injected fault caused is recovered from (and, in a poisoned
                // process, continued elsewhere), as the engine executor did: a real sticky error
                // is the finding itself, and recovering from it in a process the device refuses
                // would hand the case from process to process, failing the same way each time.
                if engine.injections_fired() != fired && engine.needs_recovery() {
                    engine.recover().map_err(|r| match r {
                        // The device refuses a new context in this process (CUDA after a real
                        // trap): the host continues the case elsewhere from `checkpoint`, which
                        // still answers with the state before the op.
                        EngineError::ProcessPoisoned(_) => {
                            TargetError::Internal(format!("{PROCESS_POISONED}: {r} (after {e})"))
                        }
                        r => TargetError::Internal(format!("{e}; recovery failed: {r}")),
                    })?;
                }
                if e.is_sticky() {
                    // Recovered here, but the host signs it as the sticky error it was.
                    return Err(TargetError::Internal(format!("{CONTEXT_LOST}: {e}")));
                }
                Err(map_error(e))
            }
        }
    }
}

fn map_error(e: EngineError) -> TargetError {
    match e {
        EngineError::Params(_) | EngineError::Graph(_) => TargetError::Rejected(e.to_string()),
        other => TargetError::Internal(format!("EngineError: {other}")),
    }
}

/// Parameters from their JSON object: the fields given, the others at their defaults. A field
/// unknown to [`SimParams`] or a value of the wrong type is `Rejected`; values the engine refuses
/// are its validation error, `Rejected` too.
fn sim_params(params: &Params) -> Result<SimParams> {
    SimParams::deserialize(serde_json::Value::Object(params.clone()))
        .map_err(|e| TargetError::Rejected(format!("parameters: {e}")))
}

fn count(n: u64, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| TargetError::Rejected(format!("{n} {what} is too many")))
}

fn edges_of(edges: &[Edge]) -> Vec<EngineEdge> {
    edges
        .iter()
        .map(|e| EngineEdge {
            u: e.u,
            v: e.v,
            w: e.w,
        })
        .collect()
}

impl Target for EngineTarget {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            name: "forcefield".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            // The API was cut from this engine: it has every part of it.
            capabilities: Capabilities::from(Capability::ALL),
        }
    }

    fn create(&mut self, graph: &Graph, params: Option<&Params>) -> Result<()> {
        let params = params.map(sim_params).transpose()?.unwrap_or_default();
        let spec = GraphSpec {
            num_nodes: count(graph.num_nodes, "nodes")?,
            edges: edges_of(&graph.edges),
            positions: graph.positions.clone(),
        };
        let engine = Engine::with_config(self.backend()?, &spec, params, self.config, self.faults)
            .map_err(map_error)?;
        self.engine = Some(engine);
        Ok(())
    }

    fn add_nodes(&mut self, n: u64, positions: Option<&[Point]>) -> Result<()> {
        let n = count(n, "nodes")?;
        self.with(|e| e.add_nodes(n, positions).map(|_| ()))
    }

    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        self.with(|e| e.remove_nodes(ids))
    }

    fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
        let edges = edges_of(edges);
        self.with(|e| e.add_edges(&edges))
    }

    fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        self.with(|e| e.remove_edges(pairs).map(|_| ()))
    }

    fn step(&mut self, n: u64) -> Result<()> {
        let n = count(n, "steps")?;
        self.with(|e| e.step(n))
    }

    fn positions(&mut self) -> Result<Vec<Point>> {
        self.with(|e| e.positions())
    }

    fn set_params(&mut self, params: &Params) -> Result<()> {
        let params = sim_params(params)?;
        self.with(|e| e.set_params(params))
    }

    fn reserve(&mut self, nodes: u64, edges: u64) -> Result<()> {
        let (nodes, edges) = (count(nodes, "nodes")?, count(edges, "edges")?);
        self.with(|e| e.reserve(nodes, edges))
    }

    fn shrink_to_fit(&mut self) -> Result<()> {
        self.with(|e| e.shrink_to_fit())
    }

    fn sssp(&mut self, source: u32) -> Result<Vec<f32>> {
        self.with(|e| e.run_sssp(source))
    }

    fn set_position_constraint(&mut self, node: u32, target: Point, stiffness: f32) -> Result<()> {
        self.with(|e| e.set_position_constraint(node, target, stiffness))
    }

    fn set_distance_constraint(&mut self, u: u32, v: u32, distance: f32) -> Result<()> {
        // No edge joining the pair is no change (the trait's and the case format's definition),
        // whatever the engine's own error for it.
        self.with(|e| match e.set_distance_constraint(u, v, distance) {
            Err(EngineError::Graph(forcefield::GraphError::NoSuchEdge { .. })) => Ok(()),
            r => r,
        })
    }

    fn clear_constraints(&mut self) -> Result<()> {
        self.with(|e| e.clear_constraints())
    }

    fn counts(&mut self) -> Result<Counts> {
        let e = self.engine()?;
        Ok(Counts {
            nodes: u64::from(e.num_nodes()),
            edges: u64::from(e.num_edges()),
            node_capacity: Some(e.allocated_nodes() as u64),
            edge_capacity: Some(e.allocated_edges() as u64),
            cell_capacity: Some(e.allocated_cells() as u64),
        })
    }

    fn device_bytes(&mut self) -> Result<u64> {
        Ok(self.engine()?.device_bytes() as u64)
    }

    fn buffers(&mut self) -> Result<Vec<Buffer>> {
        // The registry's records: host data, no device read.
        Ok(self
            .engine()?
            .buffers()
            .map(|b| Buffer {
                name: b.name.as_str().to_string(),
                len: b.len as u64,
                capacity: b.capacity as u64,
                bytes: b.alloc.bytes as u64,
            })
            .collect())
    }

    fn grid(&mut self) -> Result<Option<GridStage>> {
        let inspection = self.with(|e| e.inspect_grid())?;
        Ok(inspection.map(|g| GridStage {
            dims: g.grid.dims,
            sorted_keys: Some(g.sorted_keys),
            keys: g.cell_keys,
            order: g.sorted_nodes,
            cell_start: g.cell_start,
            cell_end: g.cell_end,
            origin: Some(g.grid.origin),
            cell_size: Some(g.grid.cell_size),
        }))
    }

    fn csr(&mut self) -> Result<Csr> {
        let c = self.with(|e| e.inspect_csr())?;
        Ok(Csr {
            row_offsets: c.row_offsets,
            col_indices: c.col_indices,
            weights: c.weights,
        })
    }

    fn checkpoint(&mut self) -> Result<serde_json::Value> {
        // Exactly the engine's, the parameters its kernels hold included (stale ones too: the
        // host's restart check makes the set ones the uploaded ones, its physics check does not,
        // as the engine's own checks always did). A poisoned process's engine has no device to
        // bring it up to date from: its checkpoint is the state before the failed op, which the
        // host resumes from.
        let checkpoint = match self.engine()? {
            e if e.needs_recovery() => e.checkpoint().clone(),
            _ => self.with(|e| e.sync_checkpoint().cloned())?,
        };
        serde_json::to_value(WireCheckpoint::from(&checkpoint))
            .map_err(|e| TargetError::Internal(format!("checkpoint: {e}")))
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let wire = WireCheckpoint::deserialize(state)
            .map_err(|e| TargetError::Rejected(format!("not a checkpoint: {e}")))?;
        // The old layout's memory goes first, as an engine dropped before its successor is
        // built (the host restores into one target again and again, as the engine's own checks
        // built and dropped engines): the CPU backend's freed regions are then reused rather
        // than mapped anew. A restore that fails past this point leaves no layout.
        self.engine = None;
        let engine = Engine::from_checkpoint(
            self.backend()?,
            &wire.to_checkpoint(),
            self.config,
            self.faults,
        )
        .map_err(map_error)?;
        self.engine = Some(engine);
        Ok(())
    }

    fn inject(&mut self, fault: &EnvFault) -> Result<()> {
        let fault = match *fault {
            EnvFault::FailAlloc { nth } => forcefield::EnvFault::FailAlloc { nth },
            EnvFault::FailCopy { nth } => forcefield::EnvFault::FailCopy { nth },
            EnvFault::FailLaunch { nth } => forcefield::EnvFault::FailLaunch { nth },
            EnvFault::LoseContext { nth } => forcefield::EnvFault::LoseContext { nth },
        };
        self.engine()?.inject(fault);
        Ok(())
    }

    fn injections_fired(&mut self) -> Result<u64> {
        // The backend's own count: the one `with` decides recovery by.
        Ok(self.engine()?.injections_fired().total())
    }

    fn velocities(&mut self) -> Result<Vec<Point>> {
        self.with(|e| e.velocities())
    }

    fn attributes(&mut self) -> Result<Attributes> {
        let c = self.with(|e| e.inspect_constraints())?;
        Ok(Attributes {
            masses: c.masses,
            anchors: c.anchors,
            edge_targets: c.edge_targets,
        })
    }
}

use serde::Deserialize as _;
