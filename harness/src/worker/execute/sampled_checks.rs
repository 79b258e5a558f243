//! Which step ops of a case's first run the costly checks sample: `restart-equivalence` and
//! `physics` (each rebuilds an engine from a checkpoint), decided by one rule ([`StepSamples`]).

use forcefield::SimParams;

use crate::case::Op;
use crate::worker::physics;

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
/// each op from the state before it (the target executor over our engine follows it, as the
/// engine executor it replaced did, so a finding's signature kept its site).
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
