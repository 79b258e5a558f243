/*!
The in-process executor: runs one [`Case`] against a fresh engine and classifies what happens.

[`execute`] validates the case, builds the engine of its backend with its planted faults and engine
settings, applies each op, and runs the oracles ([`crate::worker::oracle`]) after the construction and after
every op. Before each op it hands a [`Breadcrumb`] to a callback, so that an isolation layer can
record where a worker was when it died. With [`ExecOptions::check_capacity_invariance`] the case is
run a second time with another growth policy and an early `reserve` (same grid-cell cap, same
injected faults), and the final positions must agree bit for bit.

# Checks beyond the state invariants

* `restart-equivalence`: before a sampled `step` op, the engine's checkpoint is cloned, its
  `uploaded` parameters set to the host's `params`, and a fresh engine built from it on a backend of
  the same kind; stepped the same count, it must reach bitwise the same positions and velocities (on
  CUDA within the differential tolerance). Each step op costs a whole extra engine, so only some are
  sampled: the first [`RESTART_FIRST_STEPS`] step ops of a run, and the first step op after each
  op that changed parameters or capacity, at most [`RESTART_MAX_SAMPLES`] per run, and only while
  the engine holds at most [`RESTART_MAX_NODES`] nodes (what a restart can get wrong shows on small
  graphs too, and large ones would double the time of cases that are slow already).
* `differential` (CUDA cases): a CPU shadow engine runs the same ops (not the injected faults); after
  every step op the positions must agree within [`oracle::DIFFERENTIAL_TOLERANCE`].

# Injected faults

An `inject` op arms a fault in the engine ([`Engine::inject`]). When an op then fails with an engine
error while an injected fault fired during it, that is expected, and the fault-tolerance oracle
checks that (a) the error is a typed backend or lost-context error, (b) the state read back (counts,
capacities, positions, velocities, edges, iteration) equals the state before the op — after
`recover()` when the engine needs recovery — and (c) the op, retried, succeeds. A violation is a
[`CaseResult::FaultNotTolerated`] whose `failure` is one of [`tolerance`]. Reads made by the oracles
may hit an armed copy fault themselves; such a read is retried once. An engine error while no
injected fault fired stays an `engine-error`.

When `recover()` answers [`EngineError::ProcessPoisoned`] (CUDA after a real `__trap()`), the case
cannot go on in this process: the result is [`CaseResult::Poisoned`], carrying a [`ResumePoint`]
(the checkpoint, bit for bit, and the op to retry). An isolated run continues it in a fresh worker
([`resume_with`]); an in-process run reports it as an environment limitation.

This module does not catch panics or signals: a crash here is a crash of the calling process, which is
what a debugger wants; isolation is the business of the worker layer.
*/

use forcefield::{
    Backend, Checkpoint, CpuBackend, Edge, Engine, EngineConfig, EngineError, EnvFault, FaultSet,
    GraphError, GraphSpec, GrowthPolicy, InjectionCounts, SimParams,
};
use serde::{Deserialize, Serialize};

use crate::case::{BackendKind, Case, Op, MAX_CASE_EDGES, MAX_CASE_NODES};
use crate::worker::model::{Observed, ReferenceModel};
use crate::worker::oracle::{self, checks, AfterOp, EngineCheckError, Violation};
use crate::worker::physics;

/// The pseudo-op name of engine construction (the initial graph and parameters).
pub const INIT_OP: &str = "init";
/// The pseudo-op name of the checks made after the last op (capacity invariance).
pub const END_OP: &str = "end";

/// Step ops of a run always checked for restart equivalence.
pub const RESTART_FIRST_STEPS: usize = 2;
/// Most step ops of a run checked for restart equivalence.
pub const RESTART_MAX_SAMPLES: usize = 6;
/// Most live nodes of an engine whose step ops are checked for restart equivalence.
pub const RESTART_MAX_NODES: u32 = 1024;
/// Step ops of a run checked by the physics reference (each costs an engine rebuilt from the
/// checkpoint and one step).
pub const PHYSICS_SAMPLES: usize = 2;
/// Most attempts of one op while injected faults keep failing it (at most one fault of each of the
/// four kinds can be armed, so five attempts always suffice for a tolerant engine).
const MAX_ATTEMPTS: usize = 5;

/// How an injected fault was not tolerated: the `detail` of a `fault-not-tolerated` signature.
pub mod tolerance {
    /// The op failed with an error that is not a backend or lost-context error.
    pub const UNTYPED_ERROR: &str = "untyped-error";
    /// `recover()` failed (for a reason other than a poisoned process).
    pub const NO_RECOVERY: &str = "no-recovery";
    /// The state after the failed op (and recovery) differs from the state before it.
    pub const STATE_CHANGED: &str = "state-changed";
    /// The state could not be read back after the failed op.
    pub const UNREADABLE: &str = "unreadable";
    /// The op, retried, failed again with no injected fault firing.
    pub const RETRY_FAILED: &str = "retry-failed";
}

/// How to execute a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecOptions {
    /// Run the case a second time under another growth policy and compare the final positions.
    pub check_capacity_invariance: bool,
    /// Threads of the CPU backend's data-parallel kernels (0: every core).
    pub threads: usize,
    /// Compare the engine with the reference model after every op of the checked run (the
    /// `model` oracle, [`crate::worker::model`]). Off only to measure what it costs.
    pub reference_model: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            check_capacity_invariance: true,
            threads: 1,
            reference_model: true,
        }
    }
}

/// Where execution is: recorded before every op, so that a death can be attributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breadcrumb {
    /// Index of the op about to run; `None` for engine construction.
    pub op_index: Option<usize>,
    /// The op's name ([`INIT_OP`] for construction).
    pub op: &'static str,
    /// Whether this is the capacity-invariance re-run.
    pub rerun: bool,
}

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

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn floats_of(v: &[u32]) -> Vec<f32> {
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

/// The outcome of executing a case in-process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum CaseResult {
    /// Every op ran and every check held.
    Pass,
    /// A check failed after an op.
    InvariantViolation {
        /// The op after which it failed (`None`: after construction or at the end).
        op_index: Option<usize>,
        /// The op's name.
        op: String,
        /// The check's stable name (see [`crate::worker::oracle::checks`]).
        check: String,
        /// What was wrong.
        detail: String,
    },
    /// The engine returned an error for an op of a valid case.
    EngineError {
        /// The op (`None`: construction).
        op_index: Option<usize>,
        /// The op's name.
        op: String,
        /// The error's message.
        error: String,
        /// Whether it lost the device context.
        sticky: bool,
    },
    /// An injected fault fired during an op and the engine did not tolerate it.
    FaultNotTolerated {
        /// The op.
        op_index: usize,
        /// The op's name.
        op: String,
        /// How it was not tolerated: one of [`tolerance`].
        failure: String,
        /// What exactly was wrong.
        detail: String,
    },
    /// The device refused a new context in this process after a lost context: the case must
    /// continue in a new process from `resume`.
    Poisoned {
        /// The op during which the context was lost.
        op_index: usize,
        /// The op's name.
        op: String,
        /// The error `recover()` gave.
        error: String,
        /// Where to continue.
        resume: Box<ResumePoint>,
    },
    /// The case cannot run here (its backend is unavailable).
    Environment {
        /// Why.
        message: String,
    },
    /// The case is not valid (only for cases built in code: files are validated on load).
    Invalid {
        /// The validation error.
        message: String,
    },
}

impl CaseResult {
    /// Whether the case passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, CaseResult::Pass)
    }

    /// The outcome class: `pass`, `invariant-violation`, `engine-error`, `fault-not-tolerated`,
    /// `poisoned`, `environment`, `invalid`.
    pub fn class(&self) -> &'static str {
        match self {
            CaseResult::Pass => "pass",
            CaseResult::InvariantViolation { .. } => "invariant-violation",
            CaseResult::EngineError { .. } => "engine-error",
            CaseResult::FaultNotTolerated { .. } => "fault-not-tolerated",
            CaseResult::Poisoned { .. } => "poisoned",
            CaseResult::Environment { .. } => "environment",
            CaseResult::Invalid { .. } => "invalid",
        }
    }

    /// The resume point of a poisoned run.
    pub fn resume_point(&self) -> Option<&ResumePoint> {
        match self {
            CaseResult::Poisoned { resume, .. } => Some(resume),
            _ => None,
        }
    }

    fn violation(op_index: Option<usize>, op: &str, v: Violation) -> Self {
        CaseResult::InvariantViolation {
            op_index,
            op: op.to_string(),
            check: v.check.to_string(),
            detail: v.detail,
        }
    }

    fn engine_error(op_index: Option<usize>, op: &str, e: &EngineError) -> Self {
        CaseResult::EngineError {
            op_index,
            op: op.to_string(),
            error: e.to_string(),
            sticky: e.is_sticky(),
        }
    }

    fn not_tolerated(op_index: usize, op: &str, failure: &str, detail: String) -> Self {
        CaseResult::FaultNotTolerated {
            op_index,
            op: op.to_string(),
            failure: failure.to_string(),
            detail,
        }
    }
}

impl std::fmt::Display for CaseResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |i: &Option<usize>, op: &str| match i {
            Some(i) => format!("op {i} ({op})"),
            None => op.to_string(),
        };
        match self {
            CaseResult::Pass => f.write_str("pass"),
            CaseResult::InvariantViolation {
                op_index,
                op,
                check,
                detail,
            } => write!(
                f,
                "invariant violation after {}: {check}: {detail}",
                at(op_index, op)
            ),
            CaseResult::EngineError {
                op_index,
                op,
                error,
                sticky,
            } => write!(
                f,
                "engine error{} in {}: {error}",
                if *sticky { " (sticky)" } else { "" },
                at(op_index, op)
            ),
            CaseResult::FaultNotTolerated {
                op_index,
                op,
                failure,
                detail,
            } => write!(
                f,
                "injected fault not tolerated in op {op_index} ({op}): {failure}: {detail}"
            ),
            CaseResult::Poisoned {
                op_index,
                op,
                error,
                ..
            } => write!(
                f,
                "the device refused a new context in this process after a lost context in op \
                 {op_index} ({op}): {error}; the case can only continue in a new process (an \
                 isolated run does that; run it without --in-process)"
            ),
            CaseResult::Environment { message } => write!(f, "environment: {message}"),
            CaseResult::Invalid { message } => write!(f, "invalid case: {message}"),
        }
    }
}

/// Runs `case` in this process on the backend it names. See the module documentation.
pub fn execute(case: &Case, opts: &ExecOptions, crumbs: &mut dyn FnMut(Breadcrumb)) -> CaseResult {
    let threads = opts.threads;
    let make = move || crate::worker::job::open_backend(case.backend, threads);
    execute_with(case, opts, &make, crumbs)
}

/// Runs `case` in this process on backends made by `make_backend` (called once per engine; an `Err`
/// is an environment result: the backend is unavailable here).
pub fn execute_with<Bk: Backend>(
    case: &Case,
    opts: &ExecOptions,
    make_backend: &dyn Fn() -> Result<Bk, String>,
    crumbs: &mut dyn FnMut(Breadcrumb),
) -> CaseResult {
    match validated_spec(case) {
        Ok(spec) => execute_from(case, &spec, opts, make_backend, crumbs, None),
        Err(r) => r,
    }
}

/// Continues `case` from `resume` (a [`CaseResult::Poisoned`] of an earlier process) on backends
/// made by `make_backend`: the engine is rebuilt from the checkpoint, its state checked against it,
/// the op that lost the context retried, and the case run to its end as [`execute_with`] would.
pub fn resume_with<Bk: Backend>(
    case: &Case,
    opts: &ExecOptions,
    resume: &ResumePoint,
    make_backend: &dyn Fn() -> Result<Bk, String>,
    crumbs: &mut dyn FnMut(Breadcrumb),
) -> CaseResult {
    if resume.from_op >= case.ops.len() {
        return CaseResult::Invalid {
            message: format!(
                "resume point at op {} of a case of {} ops",
                resume.from_op,
                case.ops.len()
            ),
        };
    }
    match validated_spec(case) {
        Ok(spec) => execute_from(case, &spec, opts, make_backend, crumbs, Some(resume)),
        Err(r) => r,
    }
}

fn validated_spec(case: &Case) -> Result<GraphSpec, CaseResult> {
    case.validate().map_err(|e| CaseResult::Invalid {
        message: e.to_string(),
    })?;
    case.graph.to_spec().map_err(|e| CaseResult::Invalid {
        message: e.to_string(),
    })
}

/// Applies op `index` of a validated case and runs the oracles that apply after it (a soak loop
/// drives a long-lived engine this way), under the fault-tolerance oracle as [`execute`] does: an
/// injected fault that fails the op must leave the state as it was, and the op is retried. An
/// `inject` op only arms its fault: checks after it would read the device and could spend an armed
/// copy fault meant for the next op. A process that can no longer get a context ends in
/// [`CaseResult::Poisoned`].
pub fn apply_and_check<Bk: Backend>(
    engine: &mut Engine<Bk>,
    index: usize,
    op: &Op,
) -> Result<(), CaseResult> {
    if let Op::Inject { fault } = op {
        engine.inject(*fault);
        return Ok(());
    }
    let name = op.name();
    // Without the record of what is armed, the state before every op.
    let before = State::of_checkpoint(engine.checkpoint());
    let mut armed = Armed::default();
    let after = apply_tolerating(engine, index, op, true, Some(before), false, &mut armed)
        .map_err(|stop| stop.into_op_result(name, false, None))?;
    check_retrying(engine, Some(index), name, after)
}

/// Which of the two runs of a case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Default growth policy, every oracle after every op.
    Checked,
    /// Growth factor 3 and an early reserve, no oracles: only the final positions are compared.
    OtherCapacity,
}

/// Why a run stopped before its end.
enum Stop {
    /// With this result.
    Result(CaseResult),
    /// The process is poisoned during op `op_index`; continue from `checkpoint`.
    Poisoned {
        op_index: usize,
        error: String,
        checkpoint: Box<Checkpoint>,
    },
}

impl From<CaseResult> for Stop {
    fn from(r: CaseResult) -> Self {
        Stop::Result(r)
    }
}

impl Stop {
    /// The case result; a poisoned run becomes [`CaseResult::Poisoned`] with its resume point.
    fn into_result(self, case: &Case, rerun: bool, first: Option<&[[f32; 3]]>) -> CaseResult {
        let op = match &self {
            Stop::Poisoned { op_index, .. } => case.ops.get(*op_index).map_or("unknown", Op::name),
            Stop::Result(_) => "unknown",
        };
        self.into_op_result(op, rerun, first)
    }

    /// [`Stop::into_result`] when the op that stopped is named `op`.
    fn into_op_result(self, op: &str, rerun: bool, first: Option<&[[f32; 3]]>) -> CaseResult {
        match self {
            Stop::Result(r) => r,
            Stop::Poisoned {
                op_index,
                error,
                checkpoint,
            } => CaseResult::Poisoned {
                op_index,
                op: op.to_string(),
                error,
                resume: Box::new(ResumePoint {
                    rerun,
                    from_op: op_index,
                    checkpoint: WireCheckpoint::from(&*checkpoint),
                    first_positions: first.map(bits3),
                }),
            },
        }
    }
}

fn execute_from<Bk: Backend>(
    case: &Case,
    spec: &GraphSpec,
    opts: &ExecOptions,
    make_backend: &dyn Fn() -> Result<Bk, String>,
    crumbs: &mut dyn FnMut(Breadcrumb),
    resume: Option<&ResumePoint>,
) -> CaseResult {
    let from = |p: &ResumePoint| (p.from_op, p.checkpoint.to_checkpoint());
    let (first, rerun_from) = match resume {
        Some(p) if p.rerun => {
            let Some(first) = &p.first_positions else {
                return CaseResult::Invalid {
                    message: "the resume point of a re-run lacks the first run's positions".into(),
                };
            };
            (floats3(first), Some(from(p)))
        }
        _ => {
            let mut runner = Runner::new(case, make_backend, opts.threads, Run::Checked);
            runner.use_model = opts.reference_model;
            match runner.run(spec, resume.map(from), crumbs) {
                Ok(p) => (p, None),
                Err(stop) => return stop.into_result(case, false, None),
            }
        }
    };
    if !opts.check_capacity_invariance {
        return CaseResult::Pass;
    }
    let mut runner = Runner::new(case, make_backend, opts.threads, Run::OtherCapacity);
    let second = match runner.run(spec, rerun_from, crumbs) {
        Ok(p) => p,
        Err(Stop::Result(CaseResult::EngineError {
            op_index,
            op,
            error,
            ..
        })) => {
            let detail = format!("fails only under the other growth policy: {error}");
            return CaseResult::InvariantViolation {
                op_index,
                op,
                check: checks::CAPACITY_INVARIANCE.to_string(),
                detail,
            };
        }
        Err(stop) => return stop.into_result(case, true, Some(first.as_slice())),
    };
    match oracle::check_capacity_invariance(&first, &second) {
        Ok(()) => CaseResult::Pass,
        Err(v) => CaseResult::violation(None, END_OP, v),
    }
}

/// Injected faults armed by the case and not fired yet, as the fired count of their kind when they
/// were armed (the engine replaces a fault of a kind already armed, and so does this).
#[derive(Default)]
struct Armed {
    at: [Option<u64>; 4],
}

fn kind_slot(fault: &EnvFault) -> usize {
    match fault {
        EnvFault::FailAlloc { .. } => 0,
        EnvFault::FailCopy { .. } => 1,
        EnvFault::FailLaunch { .. } => 2,
        EnvFault::LoseContext { .. } => 3,
    }
}

fn fired_by_kind(c: &InjectionCounts) -> [u64; 4] {
    [c.alloc, c.copy, c.launch, c.context]
}

impl Armed {
    fn arm(&mut self, fault: &EnvFault, fired: &InjectionCounts) {
        let k = kind_slot(fault);
        self.at[k] = Some(fired_by_kind(fired)[k]);
    }

    fn any_pending(&self, fired: &InjectionCounts) -> bool {
        let now = fired_by_kind(fired);
        self.at.iter().zip(now).any(|(at, n)| *at == Some(n))
    }

    /// A recovery drops every armed fault.
    fn clear(&mut self) {
        self.at = [None; 4];
    }
}

/// What the fault-tolerance guarantee names, as bits.
#[derive(Debug, PartialEq)]
struct State {
    nodes: u32,
    edges: Vec<(u32, u32, u32)>,
    /// Node, edge and cell capacity.
    allocated: (usize, usize, usize),
    positions: Vec<[u32; 3]>,
    velocities: Vec<[u32; 3]>,
    iteration: u32,
}

impl State {
    /// The state a checkpoint holds: the state after the last completed op.
    fn of_checkpoint(c: &Checkpoint) -> Self {
        State {
            nodes: c.num_nodes,
            edges: c.edges.iter().map(|e| (e.u, e.v, e.w.to_bits())).collect(),
            allocated: (c.allocated_nodes, c.allocated_edges, c.allocated_cells),
            positions: bits3(&c.positions),
            velocities: bits3(&c.velocities),
            iteration: c.iteration,
        }
    }

    /// The engine's state, positions and velocities read back from the device.
    fn read<Bk: Backend>(engine: &mut Engine<Bk>) -> Result<Self, EngineError> {
        Ok(State {
            nodes: engine.num_nodes(),
            edges: engine
                .edges()
                .iter()
                .map(|e| (e.u, e.v, e.w.to_bits()))
                .collect(),
            allocated: (
                engine.allocated_nodes(),
                engine.allocated_edges(),
                engine.allocated_cells(),
            ),
            positions: bits3(&with_read_retry(engine, |e| e.positions())?),
            velocities: bits3(&with_read_retry(engine, |e| e.velocities())?),
            iteration: engine.iteration(),
        })
    }

    /// The first difference from `before`, in words.
    fn difference(&self, before: &State) -> Option<String> {
        if self.nodes != before.nodes {
            return Some(format!(
                "{} nodes before, {} after",
                before.nodes, self.nodes
            ));
        }
        if self.allocated != before.allocated {
            return Some(format!(
                "capacity (nodes, edges, cells) {:?} before, {:?} after",
                before.allocated, self.allocated
            ));
        }
        if self.edges != before.edges {
            return Some(format!(
                "{} edges before, {} after (or the same number, different)",
                before.edges.len(),
                self.edges.len()
            ));
        }
        if self.iteration != before.iteration {
            return Some(format!(
                "iteration {} before, {} after",
                before.iteration, self.iteration
            ));
        }
        for (what, a, b) in [
            ("position", &before.positions, &self.positions),
            ("velocity", &before.velocities, &self.velocities),
        ] {
            if a.len() != b.len() {
                return Some(format!("{} {what}s before, {} after", a.len(), b.len()));
            }
            if let Some(i) = a.iter().zip(b).position(|(p, q)| p != q) {
                return Some(format!(
                    "node {i} {what} {:?} before, {:?} after",
                    a[i].map(f32::from_bits),
                    b[i].map(f32::from_bits)
                ));
            }
        }
        None
    }
}

/// Runs `read`; when it fails while an injected fault fired (an armed copy fault hit the read, not
/// the op under test), runs it once more.
fn with_read_retry<Bk: Backend, T>(
    engine: &mut Engine<Bk>,
    read: impl Fn(&mut Engine<Bk>) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let fired = engine.injections_fired();
    match read(engine) {
        Err(_) if engine.injections_fired() != fired => read(engine),
        r => r,
    }
}

/// The CPU backend with `threads` threads (0: every core), as the executor opens it.
fn cpu_backend(threads: usize) -> CpuBackend {
    if threads == 0 {
        CpuBackend::new()
    } else {
        CpuBackend::with_threads(threads)
    }
}

/// One run of a case and the state its checks keep between ops.
struct Runner<'a, Bk: Backend> {
    case: &'a Case,
    make: &'a dyn Fn() -> Result<Bk, String>,
    threads: usize,
    which: Run,
    config: EngineConfig,
    faults: FaultSet,
    armed: Armed,
    /// The CPU engine a CUDA case is compared with (checked run only).
    shadow: Option<Engine<CpuBackend>>,
    /// Step ops checked for restart equivalence so far.
    restart_samples: usize,
    /// Whether parameters or capacity changed since the last sampled step op.
    restart_due: bool,
    /// Step ops checked by the physics reference so far.
    physics_samples: usize,
    /// Whether to run the model oracle (checked run only).
    use_model: bool,
    /// What the engine must hold (checked run with `use_model`).
    model: Option<ReferenceModel>,
}

impl<'a, Bk: Backend> Runner<'a, Bk> {
    fn new(
        case: &'a Case,
        make: &'a dyn Fn() -> Result<Bk, String>,
        threads: usize,
        which: Run,
    ) -> Self {
        let growth = match which {
            Run::Checked => GrowthPolicy::default(),
            Run::OtherCapacity => GrowthPolicy { factor: 3.0 },
        };
        Runner {
            case,
            make,
            threads,
            which,
            config: case.engine_config(growth),
            faults: FaultSet::of(&case.faults),
            armed: Armed::default(),
            shadow: None,
            restart_samples: 0,
            restart_due: false,
            physics_samples: 0,
            use_model: false,
            model: None,
        }
    }

    fn checked(&self) -> bool {
        self.which == Run::Checked
    }

    fn backend(&self) -> Result<Bk, CaseResult> {
        (self.make)().map_err(|message| CaseResult::Environment { message })
    }

    /// Runs the ops (from op `from.0` on an engine rebuilt from `from.1`, or all of them on a new
    /// engine); the final positions, or why it stopped.
    fn run(
        &mut self,
        spec: &GraphSpec,
        from: Option<(usize, Checkpoint)>,
        crumbs: &mut dyn FnMut(Breadcrumb),
    ) -> Result<Vec<[f32; 3]>, Stop> {
        let rerun = self.which == Run::OtherCapacity;
        crumbs(Breadcrumb {
            op_index: None,
            op: INIT_OP,
            rerun,
        });
        let (mut engine, start) = match &from {
            None => (self.build(spec)?, 0),
            Some((index, checkpoint)) => (self.rebuild(*index, checkpoint)?, *index),
        };
        let case = self.case;
        for (index, op) in case.ops.iter().enumerate().skip(start) {
            let name = op.name();
            crumbs(Breadcrumb {
                op_index: Some(index),
                op: name,
                rerun,
            });
            if let Op::Inject { fault } = op {
                self.armed.arm(fault, &engine.injections_fired());
                engine.inject(*fault);
                continue;
            }
            let restart = self.restart_checkpoint(&engine, op);
            let physics = self.physics_checkpoint(&engine, op);
            let retrying = from.is_some() && index == start;
            let after = self.apply_tolerant(&mut engine, index, op, retrying)?;
            if self.checked() {
                check_retrying(&mut engine, Some(index), name, after)?;
                self.check_model(&mut engine, Some(index), op)?;
                if let (Some(checkpoint), Op::Step { count }) = (restart, op) {
                    self.check_restart(&mut engine, &checkpoint, *count, index, name)?;
                }
                self.check_shadow(&mut engine, index, op)?;
                if let Some(checkpoint) = physics {
                    self.check_physics(&checkpoint, index, name)?;
                }
            }
            if matches!(
                op,
                Op::SetParams { .. }
                    | Op::Reserve { .. }
                    | Op::ShrinkToFit
                    | Op::AddNodes { .. }
                    | Op::AddEdges { .. }
            ) {
                self.restart_due = true;
            }
        }
        with_read_retry(&mut engine, |e| e.positions())
            .map_err(|e| CaseResult::engine_error(None, END_OP, &e).into())
    }

    /// A new engine holding the case's graph (and, in a checked CUDA run, its CPU shadow).
    fn build(&mut self, spec: &GraphSpec) -> Result<Engine<Bk>, Stop> {
        let fail_init = |e: EngineError| Stop::from(CaseResult::engine_error(None, INIT_OP, &e));
        let mut engine = Engine::with_config(
            self.backend()?,
            spec,
            self.case.initial_params(),
            self.config,
            self.faults,
        )
        .map_err(fail_init)?;
        if self.which == Run::OtherCapacity {
            // Capacity that no op of the checked run had, so that every later growth happens at
            // other counts than before.
            let nodes = (spec.num_nodes as u64 * 3 / 2 + 3).min(MAX_CASE_NODES) as u32;
            let edges = (spec.edges.len() as u64 * 3 / 2 + 3).min(MAX_CASE_EDGES) as u32;
            engine.reserve(nodes, edges).map_err(fail_init)?;
        }
        if self.checked() {
            if self.case.backend == BackendKind::Cuda {
                let shadow = Engine::with_config(
                    cpu_backend(self.threads),
                    spec,
                    self.case.initial_params(),
                    self.config,
                    self.faults,
                )
                .map_err(|e| differential(None, INIT_OP, format!("the CPU engine fails: {e}")))?;
                self.shadow = Some(shadow);
            }
            check(&mut engine, None, INIT_OP, AfterOp::Other)?;
            if self.use_model {
                self.model = Some(ReferenceModel::new(spec, self.case.initial_params()));
            }
            self.check_model(&mut engine, None, &Op::ReadPositions)?;
        }
        Ok(engine)
    }

    /// The `model` oracle after `op` (index `None`: construction): the model applies the op by its
    /// definition, and the engine's observable state must be the model's.
    fn check_model(
        &mut self,
        engine: &mut Engine<Bk>,
        index: Option<usize>,
        op: &Op,
    ) -> Result<(), Stop> {
        let Some(model) = self.model.as_mut() else {
            return Ok(());
        };
        let name = index.map_or(INIT_OP, |_| op.name());
        model.apply(op);
        let seen = with_read_retry(engine, Observed::read)
            .map_err(|e| CaseResult::engine_error(index, name, &e))?;
        let moved = matches!(op, Op::Step { count } if *count > 0);
        model
            .compare(&seen, moved)
            .map_err(|v| CaseResult::violation(index, name, v))?;
        if moved {
            model.observe_step(&seen.positions, &seen.velocities);
        }
        Ok(())
    }

    /// The engine of a poisoned process, rebuilt from its checkpoint in this one: its state must be
    /// the checkpoint's (the "state before the op" of the op about to be retried).
    fn rebuild(&mut self, index: usize, checkpoint: &Checkpoint) -> Result<Engine<Bk>, Stop> {
        let name = self.case.ops.get(index).map_or("unknown", Op::name);
        let mut engine =
            Engine::from_checkpoint(self.backend()?, checkpoint, self.config, self.faults)
                .map_err(|e| {
                    CaseResult::not_tolerated(
                        index,
                        name,
                        tolerance::NO_RECOVERY,
                        format!("cannot rebuild the engine from its checkpoint: {e}"),
                    )
                })?;
        let now = State::read(&mut engine).map_err(|e| {
            CaseResult::not_tolerated(index, name, tolerance::UNREADABLE, e.to_string())
        })?;
        if let Some(d) = now.difference(&State::of_checkpoint(checkpoint)) {
            return Err(CaseResult::not_tolerated(
                index,
                name,
                tolerance::STATE_CHANGED,
                format!("the engine rebuilt from the checkpoint differs from it: {d}"),
            )
            .into());
        }
        if self.checked() && self.case.backend == BackendKind::Cuda {
            let shadow = Engine::from_checkpoint(
                cpu_backend(self.threads),
                checkpoint,
                self.config,
                self.faults,
            )
            .map_err(|e| differential(Some(index), name, format!("the CPU engine fails: {e}")))?;
            self.shadow = Some(shadow);
        }
        if self.checked() && self.use_model {
            self.model = Some(ReferenceModel::from_checkpoint(checkpoint));
        }
        Ok(engine)
    }

    /// [`apply_tolerating`] with the state before the op taken when a fault is armed.
    /// `retrying`: the op already failed in a poisoned process, so this is its retry.
    fn apply_tolerant(
        &mut self,
        engine: &mut Engine<Bk>,
        index: usize,
        op: &Op,
        retrying: bool,
    ) -> Result<AfterOp, Stop> {
        // Taken from the checkpoint (no device read, so no armed copy fault fires for it).
        let before = self
            .armed
            .any_pending(&engine.injections_fired())
            .then(|| State::of_checkpoint(engine.checkpoint()));
        let checked = self.checked();
        apply_tolerating(
            engine,
            index,
            op,
            checked,
            before,
            retrying,
            &mut self.armed,
        )
    }

    /// The checkpoint to rebuild an engine from before a step op sampled for restart equivalence,
    /// with the host's parameters as the uploaded ones.
    fn restart_checkpoint(&mut self, engine: &Engine<Bk>, op: &Op) -> Option<Checkpoint> {
        if !self.checked()
            || !matches!(op, Op::Step { count } if *count > 0)
            || engine.num_nodes() > RESTART_MAX_NODES
        {
            return None;
        }
        let wanted = self.restart_samples < RESTART_FIRST_STEPS || self.restart_due;
        if !wanted || self.restart_samples >= RESTART_MAX_SAMPLES {
            return None;
        }
        self.restart_samples += 1;
        self.restart_due = false;
        let mut checkpoint = engine.checkpoint().clone();
        checkpoint.uploaded = checkpoint.params.clone();
        Some(checkpoint)
    }

    /// The state before a step op that the physics reference checks: the first
    /// [`PHYSICS_SAMPLES`] step ops of a checked run on at most [`physics::PHYSICS_MAX_NODES`] nodes.
    fn physics_checkpoint(&mut self, engine: &Engine<Bk>, op: &Op) -> Option<Checkpoint> {
        if !self.checked()
            || !matches!(op, Op::Step { count } if *count > 0)
            || self.physics_samples >= PHYSICS_SAMPLES
            || !physics::applies(engine.params(), engine.num_nodes())
        {
            return None;
        }
        self.physics_samples += 1;
        Some(engine.checkpoint().clone())
    }

    /// `physics`: an engine rebuilt from the state before step op `index` takes one step, which
    /// must be the force law's within the tolerance [`crate::worker::physics`] derives.
    fn check_physics(&self, checkpoint: &Checkpoint, index: usize, name: &str) -> Result<(), Stop> {
        let violation = |detail: String| {
            Stop::from(CaseResult::violation(
                Some(index),
                name,
                Violation {
                    check: physics::PHYSICS,
                    detail,
                },
            ))
        };
        let mut fresh =
            Engine::from_checkpoint(self.backend()?, checkpoint, self.config, self.faults)
                .map_err(|e| violation(format!("cannot rebuild from the checkpoint: {e}")))?;
        fresh
            .step(1)
            .map_err(|e| violation(format!("the engine rebuilt from the checkpoint fails: {e}")))?;
        let Some(grid) = fresh.grid() else {
            return Err(violation("a step of a non-empty graph left no grid".into()));
        };
        let after = fresh
            .positions()
            .map_err(|e| violation(format!("reading the rebuilt engine fails: {e}")))?;
        physics::check_step(checkpoint, &grid, &after)
            .map_err(|v| CaseResult::violation(Some(index), name, v).into())
    }

    /// `restart-equivalence` after step op `index` of `count` steps.
    fn check_restart(
        &self,
        engine: &mut Engine<Bk>,
        checkpoint: &Checkpoint,
        count: u64,
        index: usize,
        name: &str,
    ) -> Result<(), Stop> {
        let violation = |d: String| {
            Stop::from(CaseResult::violation(
                Some(index),
                name,
                restart_violation(d),
            ))
        };
        let mut fresh =
            Engine::from_checkpoint(self.backend()?, checkpoint, self.config, self.faults)
                .map_err(|e| violation(format!("cannot rebuild from the checkpoint: {e}")))?;
        fresh
            .step(u32::try_from(count).unwrap_or(u32::MAX))
            .map_err(|e| violation(format!("the engine rebuilt from the checkpoint fails: {e}")))?;
        let read = |e: &mut Engine<Bk>| -> Result<_, EngineError> {
            Ok((
                with_read_retry(e, |e| e.positions())?,
                with_read_retry(e, |e| e.velocities())?,
            ))
        };
        let (pos, vel) = read(engine).map_err(|e| engine_stop(index, name, &e))?;
        let (fresh_pos, fresh_vel) = read(&mut fresh).map_err(|e| {
            violation(format!(
                "reading the engine rebuilt from the checkpoint fails: {e}"
            ))
        })?;
        oracle::check_restart_equivalence(
            (&pos, &vel),
            (&fresh_pos, &fresh_vel),
            self.case.backend == BackendKind::Cpu,
        )
        .map_err(|v| CaseResult::violation(Some(index), name, v).into())
    }

    /// `differential`: the CPU shadow applies `op` too; after a step op the positions must agree.
    fn check_shadow(&mut self, engine: &mut Engine<Bk>, index: usize, op: &Op) -> Result<(), Stop> {
        let Some(shadow) = self.shadow.as_mut() else {
            return Ok(());
        };
        let name = op.name();
        apply_op(shadow, op).map_err(|e| {
            differential(
                Some(index),
                name,
                format!("the CPU engine fails where the device passed: {e}"),
            )
        })?;
        if !matches!(op, Op::Step { .. }) {
            return Ok(());
        }
        let cpu = shadow
            .positions()
            .map_err(|e| differential(Some(index), name, format!("the CPU engine fails: {e}")))?;
        let device =
            with_read_retry(engine, |e| e.positions()).map_err(|e| engine_stop(index, name, &e))?;
        oracle::check_differential(&cpu, &device)
            .map_err(|v| CaseResult::violation(Some(index), name, v).into())
    }
}

/// Applies `op` under the fault-tolerance oracle: a failure while an injected fault fired must be
/// typed, leave the state as `before` the op (after recovery, which clears `armed`), and the
/// retried op must succeed. `retrying`: the op already failed in a poisoned process.
fn apply_tolerating<Bk: Backend>(
    engine: &mut Engine<Bk>,
    index: usize,
    op: &Op,
    checked: bool,
    before: Option<State>,
    retrying: bool,
    armed: &mut Armed,
) -> Result<AfterOp, Stop> {
    let name = op.name();
    let not_tolerated = |failure: &str, detail: String| -> Stop {
        CaseResult::not_tolerated(index, name, failure, detail).into()
    };
    let mut attempts = usize::from(retrying);
    loop {
        let fired = engine.injections_fired();
        let error = match apply(engine, op, checked) {
            Ok(after) => return Ok(after),
            Err(EngineCheckError::Violation(v)) => {
                return Err(CaseResult::violation(Some(index), name, v).into())
            }
            Err(EngineCheckError::Engine(e)) => e,
        };
        if engine.injections_fired() == fired {
            if attempts > 0 {
                return Err(not_tolerated(
                    tolerance::RETRY_FAILED,
                    format!("the retried op failed with no injected fault firing: {error}"),
                ));
            }
            return Err(CaseResult::engine_error(Some(index), name, &error).into());
        }
        attempts += 1;
        if attempts > MAX_ATTEMPTS {
            return Err(not_tolerated(
                tolerance::RETRY_FAILED,
                format!("still failing after {MAX_ATTEMPTS} attempts: {error}"),
            ));
        }
        if !matches!(error, EngineError::Backend(_) | EngineError::ContextLost(_)) {
            return Err(not_tolerated(
                tolerance::UNTYPED_ERROR,
                format!("the injected failure came back as: {error}"),
            ));
        }
        if engine.needs_recovery() {
            match engine.recover() {
                Ok(()) => armed.clear(),
                Err(EngineError::ProcessPoisoned(e)) => {
                    return Err(Stop::Poisoned {
                        op_index: index,
                        error: e.to_string(),
                        checkpoint: Box::new(engine.checkpoint().clone()),
                    })
                }
                Err(e) => {
                    return Err(not_tolerated(
                        tolerance::NO_RECOVERY,
                        format!("after `{error}`, recover() failed: {e}"),
                    ))
                }
            }
        }
        let fallback;
        let before = match &before {
            Some(b) => b,
            // Not reached (a fault that fires was pending), but the checkpoint is the same.
            None => {
                fallback = State::of_checkpoint(engine.checkpoint());
                &fallback
            }
        };
        let now = State::read(engine).map_err(|e| {
            not_tolerated(
                tolerance::UNREADABLE,
                format!("after `{error}`, reading the state failed: {e}"),
            )
        })?;
        if let Some(d) = now.difference(before) {
            return Err(not_tolerated(
                tolerance::STATE_CHANGED,
                format!("after `{error}`: {d}"),
            ));
        }
    }
}

fn restart_violation(detail: String) -> Violation {
    Violation {
        check: checks::RESTART_EQUIVALENCE,
        detail,
    }
}

fn differential(op_index: Option<usize>, op: &str, detail: String) -> Stop {
    CaseResult::InvariantViolation {
        op_index,
        op: op.to_string(),
        check: checks::DIFFERENTIAL.to_string(),
        detail,
    }
    .into()
}

fn engine_stop(index: usize, name: &str, e: &EngineError) -> Stop {
    CaseResult::engine_error(Some(index), name, e).into()
}

fn check<Bk: Backend>(
    engine: &mut Engine<Bk>,
    op_index: Option<usize>,
    op: &str,
    after: AfterOp,
) -> Result<(), CaseResult> {
    oracle::check_engine(engine, after).map_err(|e| match e {
        EngineCheckError::Violation(v) => CaseResult::violation(op_index, op, v),
        EngineCheckError::Engine(e) => CaseResult::engine_error(op_index, op, &e),
    })
}

/// [`check`], once more when its reads failed because an armed copy fault fired in them.
fn check_retrying<Bk: Backend>(
    engine: &mut Engine<Bk>,
    op_index: Option<usize>,
    op: &str,
    after: AfterOp,
) -> Result<(), CaseResult> {
    let fired = engine.injections_fired();
    match check(engine, op_index, op, after) {
        Err(CaseResult::EngineError { .. }) if engine.injections_fired() != fired => {
            check(engine, op_index, op, after)
        }
        r => r,
    }
}

/// Applies one op; for `sssp` in a checked run, also compares the distances with Dijkstra.
fn apply<Bk: Backend>(
    engine: &mut Engine<Bk>,
    op: &Op,
    checked: bool,
) -> Result<AfterOp, EngineCheckError> {
    if let (Op::Sssp { source }, true) = (op, checked) {
        let distances = engine.run_sssp(*source)?;
        oracle::check_sssp(engine.num_nodes(), engine.edges(), *source, &distances)?;
        return Ok(AfterOp::Other);
    }
    Ok(apply_op(engine, op)?)
}

/// Applies one op of a validated case to `engine`, with no checks, and says what kind of op it was
/// (for tools that drive an engine from ops themselves, such as a soak loop). `inject` arms its
/// fault.
pub fn apply_op<Bk: Backend>(engine: &mut Engine<Bk>, op: &Op) -> Result<AfterOp, EngineError> {
    // Counts were validated against the harness caps, which are below u32::MAX.
    let to_u32 = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
    match op {
        Op::AddNodes { count, positions } => {
            engine.add_nodes(to_u32(*count), positions.as_deref())?;
        }
        Op::RemoveNodes { ids } => engine.remove_nodes(ids)?,
        Op::AddEdges { edges } => engine.add_edges(edges)?,
        Op::RemoveEdges { pairs } => {
            engine.remove_edges(pairs)?;
        }
        Op::SetParams { params } => engine.set_params(params.clone())?,
        Op::Reserve { nodes, edges } => {
            engine.reserve(to_u32(*nodes), to_u32(*edges))?;
            return Ok(AfterOp::Resize);
        }
        Op::ShrinkToFit => {
            engine.shrink_to_fit()?;
            return Ok(AfterOp::Resize);
        }
        Op::Step { count } => {
            engine.step(to_u32(*count))?;
            if *count > 0 {
                return Ok(AfterOp::Step);
            }
        }
        Op::Sssp { source } => {
            engine.run_sssp(*source)?;
        }
        Op::ReadPositions => {
            engine.positions()?;
        }
        Op::Inject { fault } => engine.inject(*fault),
        Op::SetPositionConstraint {
            node,
            target,
            stiffness,
        } => engine.set_position_constraint(*node, *target, *stiffness)?,
        Op::SetDistanceConstraint { u, v, distance } => {
            match engine.set_distance_constraint(*u, *v, *distance) {
                // The case format defines a pair with no edge as a no-op; whether the engine and
                // the reference model agree that no edge joins them is the model oracle's business.
                Err(EngineError::Graph(GraphError::NoSuchEdge { .. })) => {}
                r => r?,
            }
        }
        Op::ClearConstraints => engine.clear_constraints()?,
    }
    Ok(AfterOp::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::CaseGraph;

    fn path_case(n: u64) -> Case {
        let edges = (1..n as u32).map(|i| Edge::new(i - 1, i)).collect();
        Case::new(CaseGraph {
            num_nodes: n,
            edges,
            positions: None,
        })
    }

    #[test]
    fn a_resize_sequence_passes_and_leaves_breadcrumbs() {
        let mut case = path_case(6);
        case.ops = vec![
            Op::Step { count: 3 },
            Op::AddNodes {
                count: 20,
                positions: None,
            },
            Op::AddEdges {
                edges: vec![Edge::new(0, 25), Edge::new(7, 7)],
            },
            Op::Step { count: 2 },
            Op::RemoveNodes { ids: vec![0, 3, 3] },
            Op::ShrinkToFit,
            Op::Step { count: 2 },
            Op::Reserve {
                nodes: 100,
                edges: 40,
            },
            Op::Sssp { source: 1 },
            Op::RemoveEdges {
                pairs: vec![(0, 1)],
            },
            Op::ReadPositions,
        ];
        let mut seen = Vec::new();
        let r = execute(&case, &ExecOptions::default(), &mut |b| seen.push(b));
        assert_eq!(r, CaseResult::Pass);
        // Construction and 11 ops, twice (the capacity-invariance re-run).
        assert_eq!(seen.len(), 24);
        assert_eq!(
            seen[0],
            Breadcrumb {
                op_index: None,
                op: INIT_OP,
                rerun: false
            }
        );
        assert_eq!(seen[5].op_index, Some(4));
        assert_eq!(seen[5].op, "remove_nodes");
        assert!(seen[12].rerun && seen[12].op_index.is_none());
    }

    #[test]
    fn cuda_is_an_environment_result_without_a_device() {
        if forcefield::CudaBackend::is_available() {
            println!("skipped: a CUDA device is present");
            return;
        }
        let mut case = path_case(2);
        case.backend = crate::case::BackendKind::Cuda;
        let r = execute(&case, &ExecOptions::default(), &mut |_| {});
        assert_eq!(r.class(), "environment");
    }

    #[test]
    fn an_invalid_case_built_in_code_is_not_run() {
        let mut case = path_case(2);
        case.ops = vec![Op::Sssp { source: 5 }];
        let mut crumbs = 0;
        let r = execute(&case, &ExecOptions::default(), &mut |_| crumbs += 1);
        assert_eq!(r.class(), "invalid");
        assert_eq!(crumbs, 0);
    }

    /// The clean engine passes every generated case: the oracles raise no false alarms, and any
    /// failure here is an engine bug (proptest prints the shrunk case).
    #[test]
    fn generated_cases_pass_on_the_clean_engine() {
        use crate::case::generate::{case_strategy_with, GenConfig};
        use proptest::test_runner::{Config, RngSeed, TestRunner};
        // A fixed seed keeps the run time and the cases of this test the same on every run;
        // campaigns are where new cases come from.
        let mut runner = TestRunner::new(Config {
            cases: 200,
            rng_seed: RngSeed::Fixed(1),
            failure_persistence: None,
            ..Config::default()
        });
        let opts = ExecOptions::default();
        runner
            .run(&case_strategy_with(GenConfig::small()), |case| {
                let r = execute(&case, &opts, &mut |_| {});
                proptest::prop_assert!(r.is_pass(), "{r}\n{}", case.to_json().unwrap_or_default());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn results_round_trip_through_json() {
        let r = CaseResult::InvariantViolation {
            op_index: Some(3),
            op: "step".into(),
            check: checks::SORT_PERMUTATION.into(),
            detail: "node 0 appears twice".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""result":"invariant-violation""#), "{text}");
        assert_eq!(serde_json::from_str::<CaseResult>(&text).unwrap(), r);
        assert_eq!(
            r.to_string(),
            "invariant violation after op 3 (step): sort-permutation: node 0 appears twice"
        );
    }

    fn inject(fault: EnvFault) -> Op {
        Op::Inject { fault }
    }

    #[test]
    fn injected_faults_are_tolerated_by_the_clean_engine() {
        let grow = Op::AddNodes {
            count: 20,
            positions: None,
        };
        for fault in [
            EnvFault::FailAlloc { nth: 1 },
            EnvFault::FailAlloc { nth: 5 },
            EnvFault::FailCopy { nth: 1 },
            EnvFault::FailCopy { nth: 3 },
            EnvFault::FailLaunch { nth: 2 },
            EnvFault::LoseContext { nth: 4 },
        ] {
            let mut case = path_case(6);
            case.ops = vec![
                Op::Step { count: 2 },
                inject(fault),
                grow.clone(),
                Op::Step { count: 3 },
                inject(fault),
                Op::ShrinkToFit,
                inject(fault),
                Op::Step { count: 2 },
                inject(fault),
                Op::Sssp { source: 2 },
            ];
            let r = execute(&case, &ExecOptions::default(), &mut |_| {});
            assert_eq!(r, CaseResult::Pass, "{fault:?}");
        }
    }

    /// A CPU backend that, like CUDA after a trap, refuses a new context in this process.
    struct NoNewContext(CpuBackend);

    impl Backend for NoNewContext {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn device_description(&self) -> String {
            self.0.device_description()
        }
        fn alloc(
            &mut self,
            buffer: forcefield::BufferName,
            bytes: usize,
        ) -> Result<forcefield::backend::DeviceAlloc, forcefield::BackendError> {
            self.0.alloc(buffer, bytes)
        }
        fn free(&mut self, alloc: forcefield::backend::DeviceAlloc) {
            self.0.free(alloc)
        }
        fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), forcefield::BackendError> {
            self.0.upload(dst, src)
        }
        fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), forcefield::BackendError> {
            self.0.download(src, dst)
        }
        fn copy(
            &mut self,
            dst: u64,
            src: u64,
            bytes: usize,
        ) -> Result<(), forcefield::BackendError> {
            self.0.copy(dst, src, bytes)
        }
        fn fill_u32(
            &mut self,
            dst: u64,
            count: usize,
            value: u32,
        ) -> Result<(), forcefield::BackendError> {
            self.0.fill_u32(dst, count, value)
        }
        fn launch(
            &mut self,
            launch: &forcefield::backend::Launch,
        ) -> Result<f64, forcefield::BackendError> {
            self.0.launch(launch)
        }
        fn synchronize(&mut self) -> Result<(), forcefield::BackendError> {
            self.0.synchronize()
        }
        fn bytes_allocated(&self) -> usize {
            self.0.bytes_allocated()
        }
        fn lose_context(&mut self) -> forcefield::BackendError {
            self.0.lose_context()
        }
        fn reset(&mut self) -> Result<(), forcefield::BackendError> {
            let mut e = forcefield::BackendError::new(
                forcefield::error::BackendOp::Init,
                "no new context in a process whose context trapped",
            );
            e.sticky = true;
            Err(e)
        }
    }

    fn no_new_context() -> Result<NoNewContext, String> {
        Ok(NoNewContext(CpuBackend::with_threads(1)))
    }

    fn lost_context_case() -> Case {
        let mut case = path_case(8);
        case.ops = vec![
            Op::Step { count: 3 },
            Op::AddNodes {
                count: 9,
                positions: None,
            },
            inject(EnvFault::LoseContext { nth: 5 }),
            Op::Step { count: 4 },
            Op::Sssp { source: 3 },
            Op::Step { count: 2 },
        ];
        case
    }

    /// Poisoned processes hand over to new ones until the case ends; the resume points travel as
    /// JSON, as between workers. Returns the final result and the resume points seen.
    fn run_across_processes(case: &Case, opts: &ExecOptions) -> (CaseResult, Vec<ResumePoint>) {
        let mut points = Vec::new();
        let mut r = execute_with(case, opts, &no_new_context, &mut |_| {});
        while let Some(point) = r.resume_point() {
            let text = serde_json::to_string(&r).unwrap();
            let back: CaseResult = serde_json::from_str(&text).unwrap();
            assert_eq!(back, r, "the result survives JSON");
            points.push(point.clone());
            r = resume_with(case, opts, point, &no_new_context, &mut |_| {});
            assert!(points.len() <= 2, "{r}");
        }
        (r, points)
    }

    #[test]
    fn a_poisoned_process_hands_the_case_to_a_new_one() {
        let case = lost_context_case();
        let opts = ExecOptions::default();
        let first = execute_with(&case, &opts, &no_new_context, &mut |_| {});
        assert_eq!(first.class(), "poisoned");
        // In-process, that is an environment limit with a clear message.
        let verdict = crate::client::signature::classify_result(&first);
        let crate::client::signature::Verdict::Environment { message } = verdict else {
            panic!("{verdict:?}")
        };
        assert!(
            message.contains("op 3 (step)") && message.contains("new process"),
            "{message}"
        );
        // Across processes: the checked run resumes at op 3, then the re-run loses its context too
        // and resumes with the first run's positions; both agree bit for bit at the end.
        let (r, points) = run_across_processes(&case, &opts);
        assert_eq!(r, CaseResult::Pass);
        assert_eq!(points.len(), 2);
        assert_eq!((points[0].rerun, points[0].from_op), (false, 3));
        assert!(points[0].first_positions.is_none());
        assert_eq!((points[1].rerun, points[1].from_op), (true, 3));
        assert_eq!(
            points[1].first_positions.as_ref().map(Vec::len),
            Some(17),
            "the re-run carries the first run's final positions"
        );
        // Where the engine recovers in-process the same case passes without handing over.
        assert_eq!(execute(&case, &opts, &mut |_| {}), CaseResult::Pass);
    }

    #[test]
    fn a_resume_point_that_lies_about_the_state_is_caught() {
        let case = lost_context_case();
        let opts = ExecOptions::default();
        let r = execute_with(&case, &opts, &no_new_context, &mut |_| {});
        let mut point = r.resume_point().unwrap().clone();
        // The checkpoint of another layout: the resumed run ends elsewhere than the re-run.
        let mut checkpoint = point.checkpoint.to_checkpoint();
        checkpoint.positions[0][0] += 0.5;
        point.checkpoint = WireCheckpoint::from(&checkpoint);
        let resumed = resume_with(&case, &opts, &point, &no_new_context, &mut |_| {});
        let resumed = match resumed.resume_point() {
            // The re-run loses its context too; continue it honestly.
            Some(p) => resume_with(&case, &opts, &p.clone(), &no_new_context, &mut |_| {}),
            None => resumed,
        };
        match &resumed {
            CaseResult::InvariantViolation { check, .. } => {
                assert_eq!(check, checks::CAPACITY_INVARIANCE)
            }
            other => panic!("{other}"),
        }
        // A resume point past the case is refused.
        point.from_op = 99;
        assert_eq!(
            resume_with(&case, &opts, &point, &no_new_context, &mut |_| {}).class(),
            "invalid"
        );
    }

    #[test]
    fn wire_checkpoints_keep_every_bit() {
        let mut engine = Engine::new(
            CpuBackend::with_threads(1),
            &GraphSpec {
                num_nodes: 4,
                edges: vec![Edge::new(0, 1)],
                positions: None,
            },
            SimParams::default(),
        )
        .unwrap();
        // Nodes 2 and 3 are unreachable: infinite distances, which plain JSON cannot hold.
        engine.run_sssp(0).unwrap();
        let mut checkpoint = engine.checkpoint().clone();
        assert!(checkpoint.sssp_dist.contains(&f32::INFINITY));
        checkpoint.velocities[1] = [f32::NAN, -0.0, f32::MIN_POSITIVE];
        let text = serde_json::to_string(&WireCheckpoint::from(&checkpoint)).unwrap();
        let back: WireCheckpoint = serde_json::from_str(&text).unwrap();
        let back = back.to_checkpoint();
        assert_eq!(bits3(&back.velocities), bits3(&checkpoint.velocities));
        assert_eq!(bits_of(&back.sssp_dist), bits_of(&checkpoint.sssp_dist));
        checkpoint.velocities[1] = [0.0; 3];
        let mut back = back;
        back.velocities[1] = [0.0; 3];
        assert_eq!(back, checkpoint);
    }

    #[test]
    fn a_long_lived_engine_tolerates_injected_faults_op_by_op() {
        let spec = GraphSpec {
            num_nodes: 5,
            edges: vec![Edge::new(0, 1)],
            positions: None,
        };
        let engine = |faults: FaultSet| {
            Engine::with_config(
                CpuBackend::with_threads(1),
                &spec,
                SimParams::default(),
                EngineConfig::default(),
                faults,
            )
            .unwrap()
        };
        let ops = [
            Op::Step { count: 2 },
            inject(EnvFault::FailAlloc { nth: 1 }),
            Op::AddNodes {
                count: 7,
                positions: None,
            },
            inject(EnvFault::FailCopy { nth: 1 }),
            Op::Step { count: 2 },
            inject(EnvFault::LoseContext { nth: 2 }),
            Op::Step { count: 1 },
        ];
        let mut faulty = engine(FaultSet::NONE);
        let mut plain = engine(FaultSet::NONE);
        for (i, op) in ops.iter().enumerate() {
            apply_and_check(&mut faulty, i, op).unwrap_or_else(|r| panic!("op {i}: {r}"));
            if !matches!(op, Op::Inject { .. }) {
                apply_op(&mut plain, op).unwrap();
            }
        }
        assert_eq!(faulty.injections_fired().total(), 3);
        assert_eq!(
            bits3(&faulty.positions().unwrap()),
            bits3(&plain.positions().unwrap())
        );
        let mut stale = engine(FaultSet::of(&[forcefield::Fault::ResizeFailureStale]));
        apply_and_check(&mut stale, 0, &ops[1]).unwrap();
        match apply_and_check(&mut stale, 1, &ops[2]) {
            Err(CaseResult::FaultNotTolerated { failure, op, .. }) => {
                assert_eq!(
                    (failure.as_str(), op.as_str()),
                    (tolerance::STATE_CHANGED, "add_nodes")
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
