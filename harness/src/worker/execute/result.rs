//! What a run of a case yields and where it is: [`CaseResult`] (the outcome a reply carries),
//! the pseudo-op names [`INIT_OP`] and [`END_OP`], the [`tolerance`] failures, the [`Breadcrumb`]
//! recorded before each op, and the private [`Stop`] the soak loop's op passes up. A leaf of
//! the folder: the executor's files depend on it, and it on none of them but [`super::wire`].

use forcefield::{Checkpoint, EngineError};
use serde::{Deserialize, Serialize};

use super::wire::{bits3, ResumePoint, WireCheckpoint};
use crate::worker::oracle::Violation;

/// The pseudo-op name of engine construction (the initial graph and parameters).
pub const INIT_OP: &str = "init";
/// The pseudo-op name of the checks made after the last op (capacity invariance).
pub const END_OP: &str = "end";

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

    pub(super) fn violation(op_index: Option<usize>, op: &str, v: Violation) -> Self {
        CaseResult::InvariantViolation {
            op_index,
            op: op.to_string(),
            check: v.check.to_string(),
            detail: v.detail,
        }
    }

    pub(super) fn engine_error(op_index: Option<usize>, op: &str, e: &EngineError) -> Self {
        CaseResult::EngineError {
            op_index,
            op: op.to_string(),
            error: e.to_string(),
            sticky: e.is_sticky(),
        }
    }

    pub(super) fn not_tolerated(op_index: usize, op: &str, failure: &str, detail: String) -> Self {
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

/// Why a run stopped before its end.
pub(super) enum Stop {
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
    /// The result of a stop at the op named `op`; a poisoned run becomes
    /// [`CaseResult::Poisoned`] with its resume point.
    pub(super) fn into_op_result(
        self,
        op: &str,
        rerun: bool,
        first: Option<&[[f32; 3]]>,
    ) -> CaseResult {
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
