//! Applying one op to an engine, and the state oracles after it.

use forcefield::{Backend, Engine, EngineError, GraphError};

use super::result::CaseResult;
use crate::case::Op;
use crate::worker::oracle::{self, AfterOp, EngineCheckError};

pub(super) fn check<Bk: Backend>(
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
pub(super) fn check_retrying<Bk: Backend>(
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
pub(super) fn apply<Bk: Backend>(
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
