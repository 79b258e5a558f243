/*!
A case on Forcefield's own engine in this process ([`execute`]), and the vocabulary every run of a
case shares: the [`CaseResult`] a reply carries, the [`Breadcrumb`] recorded before each op, the
[`ResumePoint`] of a poisoned process, and the rules the checks over the target trait follow.

[`execute`] runs the case as a worker does (through [`crate::worker::engine_case`]: our engine
behind the [`forcefield_target::Target`] trait, its checks those of
[`crate::worker::target_case`] with `Semantics::Forcefield`), on the backend the case names. There
is one path for our engine's cases: this one, the job handler's ([`crate::worker::job`]) and
`--target builtin`'s all go through `engine_case`.

# What stays here

* `result.rs`: [`CaseResult`], [`Breadcrumb`], the pseudo-op names, the [`tolerance`] failures,
  and the private `Stop` of the soak loop.
* `wire.rs`: [`WireCheckpoint`] and [`ResumePoint`], checkpoints as bits (JSON has no NaN or
  infinity), the checkpoint format of our engine's target and the resume point of a poisoned
  case. A case whose process lost its CUDA context for good ends in [`CaseResult::Poisoned`]; an
  isolated run continues it in a fresh worker (`Job::Resume`), an in-process run reports it as an
  environment limitation.
* `sampled_checks.rs`: which step ops `restart-equivalence` and `physics` sample
  (`StepSamples`: the first [`RESTART_FIRST_STEPS`](sampled_checks::RESTART_FIRST_STEPS) step ops
  and the first after each change of parameters or capacity, at most
  [`RESTART_MAX_SAMPLES`](sampled_checks::RESTART_MAX_SAMPLES), on at most
  [`RESTART_MAX_NODES`](sampled_checks::RESTART_MAX_NODES) nodes; physics the first
  [`PHYSICS_SAMPLES`](sampled_checks::PHYSICS_SAMPLES) where it applies).
* `apply.rs` ([`apply_op`]: one op on an `Engine`, and the state oracles after it) and
  `fault_tolerance.rs` (the fault-tolerance oracle on an `Engine`: an injected fault that fails an
  op must leave the state as before it, typed, and the op retried succeeds; `MAX_ATTEMPTS`, the
  retry bound the target executor follows too): the soak loop's long-lived engine
  ([`apply_and_check`]).

This module does not catch panics or signals: a crash here is a crash of the calling process, which
is what a debugger wants; isolation is the business of the worker layer. A file imports its
siblings, never this `mod.rs`; the target executor imports the leaf files, never this `mod.rs`
(which runs cases through it): so neither folder has an import cycle through its parent.
*/

use forcefield::{Backend, Engine};

use crate::case::{Case, Op};
use crate::worker::engine_case::{run_engine_case, EngineCaseOptions};
use crate::worker::engine_target::BackendFactory;

mod apply;
pub(crate) mod fault_tolerance;
pub(crate) mod result;
pub(crate) mod sampled_checks;
pub(crate) mod wire;

pub use apply::apply_op;
pub use result::CaseResult;
// The vocabulary of `CaseResult::FaultNotTolerated::failure`.
pub use result::tolerance;
pub(crate) use result::{Breadcrumb, INIT_OP};
pub use wire::{bits3, ResumePoint, WireCheckpoint};

use apply::check_retrying;
use fault_tolerance::{apply_tolerating, State};

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

impl ExecOptions {
    /// The options of a case on our engine behind the target trait: no `determinism` run (the
    /// sampled restart-equivalence check covers what it would, at a fraction of its cost).
    pub(crate) fn engine_case(&self) -> EngineCaseOptions {
        EngineCaseOptions {
            capacity_invariance: self.check_capacity_invariance,
            threads: self.threads,
            reference_model: self.reference_model,
            determinism: false,
        }
    }
}

/// Runs `case` in this process on the backend it names. See the module documentation.
pub fn execute(case: &Case, opts: &ExecOptions, crumbs: &mut dyn FnMut(Breadcrumb)) -> CaseResult {
    let (kind, threads) = (case.backend, opts.threads);
    let backends = move || -> Box<BackendFactory> {
        Box::new(move || crate::worker::job::open_backend(kind, threads))
    };
    run_engine_case(case, opts.engine_case(), None, &backends, crumbs).0
}

/// Applies op `index` of a validated case and runs the oracles that apply after it (a soak loop
/// drives a long-lived engine this way), under the fault-tolerance oracle as a case's run does:
/// an injected fault that fails the op must leave the state as it was, and the op is retried.
/// An `inject` op only arms its fault: checks after it would read the device and could spend an
/// armed copy fault meant for the next op. A process that can no longer get a context ends in
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
    let after = apply_tolerating(engine, index, op, true, Some(before))
        .map_err(|stop| stop.into_op_result(name, false, None))?;
    check_retrying(engine, Some(index), name, after)
}

#[cfg(test)]
mod tests;
