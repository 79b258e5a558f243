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
  sampled: the first [`RESTART_FIRST_STEPS`](sampled_checks::RESTART_FIRST_STEPS) step ops of a run, and the first step op after each
  op that changed parameters or capacity, at most [`RESTART_MAX_SAMPLES`](sampled_checks::RESTART_MAX_SAMPLES) per run, and only while
  the engine holds at most [`RESTART_MAX_NODES`](sampled_checks::RESTART_MAX_NODES) nodes (what a restart can get wrong shows on small
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

When `recover()` answers [`EngineError::ProcessPoisoned`](forcefield::EngineError::ProcessPoisoned) (CUDA after a real `__trap()`), the case
cannot go on in this process: the result is [`CaseResult::Poisoned`], carrying a [`ResumePoint`]
(the checkpoint, bit for bit, and the op to retry). An isolated run continues it in a fresh worker
([`resume_with`]); an in-process run reports it as an environment limitation.

This module does not catch panics or signals: a crash here is a crash of the calling process, which is
what a debugger wants; isolation is the business of the worker layer.

# Files

`result.rs` ([`CaseResult`], [`Breadcrumb`], the pseudo-op names, and the private `Stop` and `Run`
the others pass up), `runner.rs` (one run op by op), `apply.rs` (one op and the state oracles after
it), `fault_tolerance.rs`, `sampled_checks.rs` (restart, physics and the CUDA shadow, the step ops
the first two sample decided by one rule), `wire.rs` (checkpoints as bits). A file imports its
siblings, never this `mod.rs`, which holds the entry points and the re-exports: so the folder has
no import cycle through its parent.
*/

use forcefield::{Backend, Engine, GraphSpec};

use crate::case::{Case, Op};
use crate::worker::oracle::{self, checks};

mod apply;
pub(crate) mod fault_tolerance;
pub(crate) mod result;
mod runner;
pub(crate) mod sampled_checks;
pub(crate) mod wire;

pub use apply::apply_op;
pub use result::CaseResult;
// The vocabulary of `CaseResult::FaultNotTolerated::failure`.
pub use result::tolerance;
pub(crate) use result::{Breadcrumb, END_OP, INIT_OP};
pub(crate) use wire::floats3;
pub use wire::{bits3, ResumePoint, WireCheckpoint};

use apply::check_retrying;
use fault_tolerance::{apply_tolerating, Armed, State};
use result::{Run, Stop};
use runner::Runner;

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

/// Runs `case` in this process on the backend it names. See the module documentation.
pub fn execute(case: &Case, opts: &ExecOptions, crumbs: &mut dyn FnMut(Breadcrumb)) -> CaseResult {
    let threads = opts.threads;
    let make = move || crate::worker::job::open_backend(case.backend, threads);
    execute_with(case, opts, &make, crumbs)
}

/// Runs `case` in this process on backends made by `make_backend` (called once per engine; an `Err`
/// is an environment result: the backend is unavailable here).
pub(crate) fn execute_with<Bk: Backend>(
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
pub(crate) fn resume_with<Bk: Backend>(
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
pub(crate) fn apply_and_check<Bk: Backend>(
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
