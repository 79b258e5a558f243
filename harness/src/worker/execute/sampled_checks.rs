//! The checks a run makes on sampled step ops or against a second engine: `restart-equivalence`,
//! `physics` and the CPU shadow of a CUDA case (`differential`).

use forcefield::{Backend, Checkpoint, Engine, EngineError, SimParams};

use super::apply::engine_stop;
use super::fault_tolerance::with_read_retry;
use super::result::{CaseResult, Stop};
use super::runner::Runner;
use crate::case::{BackendKind, Op};
use crate::worker::oracle::{self, checks, Violation};
use crate::worker::physics;
use crate::worker::shadow::{self, ShadowStop};

/// Step ops of a run always checked for restart equivalence.
pub const RESTART_FIRST_STEPS: usize = 2;
/// Most step ops of a run checked for restart equivalence.
pub const RESTART_MAX_SAMPLES: usize = 6;
/// Most live nodes of an engine whose step ops are checked for restart equivalence.
pub const RESTART_MAX_NODES: u32 = 1024;
/// Step ops of a run checked by the physics reference (each costs an engine rebuilt from the
/// checkpoint and one step).
pub const PHYSICS_SAMPLES: usize = 2;

/// Which step ops of a checked run a costly check samples: the first `first` of them, and the first
/// after each change that makes one due ([`Samples::due`]), at most `max` in all. Both sampled
/// checks follow it; physics has no due samples, so its rule is the first `PHYSICS_SAMPLES`.
#[derive(Clone, Copy)]
struct SamplingRule {
    first: usize,
    max: usize,
}

const RESTART_RULE: SamplingRule = SamplingRule {
    first: RESTART_FIRST_STEPS,
    max: RESTART_MAX_SAMPLES,
};
const PHYSICS_RULE: SamplingRule = SamplingRule {
    first: PHYSICS_SAMPLES,
    max: PHYSICS_SAMPLES,
};

/// How far a run is through one sampled check's samples.
#[derive(Default)]
struct Samples {
    /// Step ops sampled so far.
    taken: usize,
    /// Whether the next step op is wanted whatever the count (after a params or capacity change).
    due: bool,
}

impl Samples {
    /// Whether the step op at hand is sampled under `rule`; counts it when it is.
    fn take(&mut self, rule: SamplingRule) -> bool {
        let wanted = self.taken < rule.first || self.due;
        if !wanted || self.taken >= rule.max {
            return false;
        }
        self.taken += 1;
        self.due = false;
        true
    }
}

/// Which step ops of a checked run `restart-equivalence` and `physics` sample, decided before
/// each op from the state before it. One rule for both executors (the engine executor's runner
/// and the target executor over our engine), so the two sample the same step ops and a finding's
/// signature does not depend on the path.
#[derive(Default)]
pub(crate) struct StepSamples {
    restart: Samples,
    physics: Samples,
}

/// The sampled checks a step op gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sampled {
    /// `restart-equivalence`: a fresh engine from the state before the op, stepped as the op.
    pub(crate) restart: bool,
    /// `physics`: a fresh engine from the state before the op, stepped once.
    pub(crate) physics: bool,
}

impl StepSamples {
    /// What `op` is sampled for, before it is applied to an engine of `nodes` live nodes under
    /// `params`: a step op of at least one step; restart equivalence on at most
    /// [`RESTART_MAX_NODES`] nodes, the first [`RESTART_FIRST_STEPS`] such ops and the first after
    /// each change ([`StepSamples::after`]), at most [`RESTART_MAX_SAMPLES`]; physics where
    /// [`physics::applies`], the first [`PHYSICS_SAMPLES`].
    pub(crate) fn before(&mut self, op: &Op, nodes: u32, params: &SimParams) -> Sampled {
        if !matches!(op, Op::Step { count } if *count > 0) {
            return Sampled::default();
        }
        Sampled {
            restart: nodes <= RESTART_MAX_NODES && self.restart.take(RESTART_RULE),
            physics: physics::applies(params, nodes) && self.physics.take(PHYSICS_RULE),
        }
    }

    /// After `op` was applied: a change of parameters or capacity makes the next step op due for
    /// restart equivalence.
    pub(crate) fn after(&mut self, op: &Op) {
        if matches!(
            op,
            Op::SetParams { .. }
                | Op::Reserve { .. }
                | Op::ShrinkToFit
                | Op::AddNodes { .. }
                | Op::AddEdges { .. }
        ) {
            self.restart.due = true;
        }
    }
}

/// The checkpoint a restart is rebuilt from: the host's parameters as the uploaded ones (an
/// engine whose kernels kept stale parameters then steps otherwise than its rebuild).
pub(crate) fn restart_checkpoint(checkpoint: &Checkpoint) -> Checkpoint {
    let mut checkpoint = checkpoint.clone();
    checkpoint.uploaded = checkpoint.params.clone();
    checkpoint
}

impl<'a, Bk: Backend> Runner<'a, Bk> {
    /// `physics`: an engine rebuilt from the state before step op `index` takes one step, which
    /// must be the force law's within the tolerance [`crate::worker::physics`] derives.
    pub(super) fn check_physics(
        &self,
        checkpoint: &Checkpoint,
        index: usize,
        name: &str,
    ) -> Result<(), Stop> {
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
    pub(super) fn check_restart(
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

    /// `differential` ([`shadow::follow_and_compare`], the rule the target executor follows
    /// too): the CPU shadow applies `op`; after a step op the positions must agree.
    pub(super) fn check_shadow(
        &mut self,
        engine: &mut Engine<Bk>,
        index: usize,
        op: &Op,
    ) -> Result<(), Stop> {
        let Some(shadow) = self.shadow.as_mut() else {
            return Ok(());
        };
        let name = op.name();
        let device = || with_read_retry(engine, |e| e.positions());
        shadow::follow_and_compare(shadow, op, device).map_err(|stop| match stop {
            ShadowStop::Violation(v) => CaseResult::violation(Some(index), name, v).into(),
            ShadowStop::Device(e) => engine_stop(index, name, &e),
        })
    }
}

/// The engine executor's CPU shadow: an engine that applies the ops as the run does.
impl<Bk: Backend> shadow::Shadow for Engine<Bk> {
    type Error = EngineError;

    fn follow(&mut self, op: &Op) -> Result<(), Self::Error> {
        super::apply::apply_op(self, op).map(|_| ())
    }

    fn positions(&mut self) -> Result<Vec<[f32; 3]>, Self::Error> {
        Engine::positions(self)
    }
}

pub(super) fn restart_violation(detail: String) -> Violation {
    Violation {
        check: checks::RESTART_EQUIVALENCE,
        detail,
    }
}

/// The shadow's own failure (building it) at `op`, as a `differential` violation.
pub(super) fn differential(op_index: Option<usize>, op: &str, detail: String) -> Stop {
    CaseResult::violation(op_index, op, shadow::shadow_failure(detail)).into()
}
