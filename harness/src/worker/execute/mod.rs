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

use forcefield::{Backend, Checkpoint, Engine, EngineError, GraphSpec};
use serde::{Deserialize, Serialize};

use crate::case::{Case, Op};
use crate::worker::oracle::{self, checks, Violation};

mod apply;
mod fault_tolerance;
mod runner;
mod sampled_checks;
mod wire;

pub use apply::apply_op;
pub use wire::{bits3, floats3, ResumePoint, WireCheckpoint};

use apply::check_retrying;
use fault_tolerance::{apply_tolerating, Armed, State};
use runner::Runner;

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

#[cfg(test)]
mod tests;
