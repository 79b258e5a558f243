//! The `differential` check of a CUDA case: a CPU shadow engine follows every op the device
//! accepted but `inject` (injected faults are the device's), and after a step its positions must
//! agree with the device's within [`oracle::DIFFERENTIAL_TOLERANCE`]. The shadow is a target
//! driven by the case's ops (`target_case.rs`: Forcefield's CPU engine behind the trait, beside a
//! CUDA case's engine); the [`Shadow`] trait keeps this file free of the executor.

use std::fmt::Display;

use crate::case::Op;
use crate::worker::oracle::{self, checks, Violation};

/// A CPU engine that follows a device's ops.
pub(crate) trait Shadow {
    /// Its errors, shown in the violation's detail.
    type Error: Display;
    /// Applies an op the device accepted.
    fn follow(&mut self, op: &Op) -> Result<(), Self::Error>;
    /// Its positions.
    fn positions(&mut self) -> Result<Vec<[f32; 3]>, Self::Error>;
}

/// Why the shadow check stopped a run.
pub(crate) enum ShadowStop<E> {
    /// `differential`: the shadow failed, or disagrees after a step.
    Violation(Violation),
    /// Reading the device's positions failed (the device's error, not the check's).
    Device(E),
}

/// `differential` after `op`, which the device accepted: `shadow` follows it, and after a step
/// its positions must agree with `device`'s.
pub(crate) fn follow_and_compare<S: Shadow + ?Sized, E>(
    shadow: &mut S,
    op: &Op,
    device: impl FnOnce() -> Result<Vec<[f32; 3]>, E>,
) -> Result<(), ShadowStop<E>> {
    if matches!(op, Op::Inject { .. }) {
        return Ok(());
    }
    shadow
        .follow(op)
        .map_err(|e| violation(format!("the CPU engine fails where the device passed: {e}")))?;
    if !matches!(op, Op::Step { .. }) {
        return Ok(());
    }
    let cpu = shadow
        .positions()
        .map_err(|e| violation(format!("the CPU engine fails: {e}")))?;
    let device = device().map_err(ShadowStop::Device)?;
    oracle::check_differential(&cpu, &device).map_err(ShadowStop::Violation)
}

/// The shadow's own failure (building it, following an op), as a `differential` violation.
pub(crate) fn shadow_failure(detail: String) -> Violation {
    Violation {
        check: checks::DIFFERENTIAL,
        detail,
    }
}

fn violation<E>(detail: String) -> ShadowStop<E> {
    ShadowStop::Violation(shadow_failure(detail))
}
