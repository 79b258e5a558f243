//! The fault-tolerance oracle on an `Engine` (the soak loop's): the state an operation must leave
//! as it was when an injected fault fails it, and the op applied under that check; and the retry
//! bound the target executor's fault tolerance follows too.

use forcefield::{Backend, Checkpoint, Engine, EngineError};

use super::apply::apply;
use super::result::{tolerance, CaseResult, Stop};
use super::wire::bits3;
use crate::case::Op;
use crate::worker::oracle::{AfterOp, EngineCheckError};

/// Most attempts of one op while injected faults keep failing it (at most one fault of each of the
/// four kinds can be armed, so five attempts always suffice for a tolerant engine).
pub(crate) const MAX_ATTEMPTS: usize = 5;

/// What the fault-tolerance guarantee names, as bits.
#[derive(Debug, PartialEq)]
pub(super) struct State {
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
    pub(super) fn of_checkpoint(c: &Checkpoint) -> Self {
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
    pub(super) fn read<Bk: Backend>(engine: &mut Engine<Bk>) -> Result<Self, EngineError> {
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
    pub(super) fn difference(&self, before: &State) -> Option<String> {
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
pub(super) fn with_read_retry<Bk: Backend, T>(
    engine: &mut Engine<Bk>,
    read: impl Fn(&mut Engine<Bk>) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let fired = engine.injections_fired();
    match read(engine) {
        Err(_) if engine.injections_fired() != fired => read(engine),
        r => r,
    }
}

/// Applies `op` under the fault-tolerance oracle: a failure while an injected fault fired must be
/// typed, leave the state as `before` the op (after recovery, which disarms every fault), and the
/// retried op must succeed.
pub(super) fn apply_tolerating<Bk: Backend>(
    engine: &mut Engine<Bk>,
    index: usize,
    op: &Op,
    checked: bool,
    before: Option<State>,
) -> Result<AfterOp, Stop> {
    let name = op.name();
    let not_tolerated = |failure: &str, detail: String| -> Stop {
        CaseResult::not_tolerated(index, name, failure, detail).into()
    };
    let mut attempts = 0;
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
                Ok(()) => {}
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
