/*!
The in-process executor: runs one [`Case`] against a fresh engine and classifies what happens.

[`execute`] validates the case, builds the engine of its backend with its planted faults, applies each
op, and runs the oracles ([`crate::oracle`]) after the construction and after every op. Before each op
it hands a [`Breadcrumb`] to a callback, so that an isolation layer can record where a worker was when
it died. With [`ExecOptions::check_capacity_invariance`] the case is run a second time with another
growth policy and an early `reserve`, and the final positions must agree bit for bit.

This module does not catch panics or signals: a crash here is a crash of the calling process, which is
what a debugger wants; isolation is the business of the worker layer.
*/

use forcefield::{Backend, Engine, EngineConfig, EngineError, FaultSet, GraphSpec, GrowthPolicy};
use serde::{Deserialize, Serialize};

use crate::case::{Case, Op, MAX_CASE_EDGES, MAX_CASE_NODES};
use crate::oracle::{self, checks, AfterOp, EngineCheckError, Violation};

/// The pseudo-op name of engine construction (the initial graph and parameters).
pub const INIT_OP: &str = "init";
/// The pseudo-op name of the checks made after the last op (capacity invariance).
pub const END_OP: &str = "end";

/// How to execute a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecOptions {
    /// Run the case a second time under another growth policy and compare the final positions.
    pub check_capacity_invariance: bool,
    /// Threads of the CPU backend's data-parallel kernels (0: every core).
    pub threads: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            check_capacity_invariance: true,
            threads: 1,
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
        /// The check's stable name (see [`crate::oracle::checks`]).
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

    /// The outcome class: `pass`, `invariant-violation`, `engine-error`, `environment`, `invalid`.
    pub fn class(&self) -> &'static str {
        match self {
            CaseResult::Pass => "pass",
            CaseResult::InvariantViolation { .. } => "invariant-violation",
            CaseResult::EngineError { .. } => "engine-error",
            CaseResult::Environment { .. } => "environment",
            CaseResult::Invalid { .. } => "invalid",
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
            CaseResult::Environment { message } => write!(f, "environment: {message}"),
            CaseResult::Invalid { message } => write!(f, "invalid case: {message}"),
        }
    }
}

/// Runs `case` in this process on the backend it names. See the module documentation.
pub fn execute(case: &Case, opts: &ExecOptions, crumbs: &mut dyn FnMut(Breadcrumb)) -> CaseResult {
    let threads = opts.threads;
    let make = move || crate::job::open_backend(case.backend, threads);
    execute_with(case, opts, &make, crumbs)
}

/// Runs `case` in this process on backends made by `make_backend` (called once per run; an `Err` is
/// an environment result: the backend is unavailable here).
pub fn execute_with<Bk: Backend>(
    case: &Case,
    opts: &ExecOptions,
    make_backend: &dyn Fn() -> Result<Bk, String>,
    crumbs: &mut dyn FnMut(Breadcrumb),
) -> CaseResult {
    if let Err(e) = case.validate() {
        return CaseResult::Invalid {
            message: e.to_string(),
        };
    }
    let spec = match case.graph.to_spec() {
        Ok(s) => s,
        Err(e) => {
            return CaseResult::Invalid {
                message: e.to_string(),
            }
        }
    };
    execute_on(case, &spec, opts, make_backend, crumbs)
}

/// Applies op `index` of a validated case and runs the oracles that apply after it (a soak loop
/// drives a long-lived engine this way).
pub fn apply_and_check<Bk: Backend>(
    engine: &mut Engine<Bk>,
    index: usize,
    op: &Op,
) -> Result<(), CaseResult> {
    let name = op.name();
    let after = apply(engine, op, true).map_err(|e| match e {
        EngineCheckError::Engine(e) => CaseResult::engine_error(Some(index), name, &e),
        EngineCheckError::Violation(v) => CaseResult::violation(Some(index), name, v),
    })?;
    check(engine, Some(index), name, after)
}

/// Which of the two runs of a case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Default growth policy, every oracle after every op.
    Checked,
    /// Growth factor 3 and an early reserve, no oracles: only the final positions are compared.
    OtherCapacity,
}

fn execute_on<Bk: Backend>(
    case: &Case,
    spec: &GraphSpec,
    opts: &ExecOptions,
    make_backend: &dyn Fn() -> Result<Bk, String>,
    crumbs: &mut dyn FnMut(Breadcrumb),
) -> CaseResult {
    let first = match run(case, spec, make_backend, Run::Checked, crumbs) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !opts.check_capacity_invariance {
        return CaseResult::Pass;
    }
    let second = match run(case, spec, make_backend, Run::OtherCapacity, crumbs) {
        Ok(p) => p,
        Err(CaseResult::EngineError {
            op_index,
            op,
            error,
            ..
        }) => {
            let detail = format!("fails only under the other growth policy: {error}");
            return CaseResult::InvariantViolation {
                op_index,
                op,
                check: checks::CAPACITY_INVARIANCE.to_string(),
                detail,
            };
        }
        Err(r) => return r,
    };
    match oracle::check_capacity_invariance(&first, &second) {
        Ok(()) => CaseResult::Pass,
        Err(v) => CaseResult::violation(None, END_OP, v),
    }
}

/// One run of the case; the final positions, or the failing result.
fn run<Bk: Backend>(
    case: &Case,
    spec: &GraphSpec,
    make_backend: &dyn Fn() -> Result<Bk, String>,
    which: Run,
    crumbs: &mut dyn FnMut(Breadcrumb),
) -> Result<Vec<[f32; 3]>, CaseResult> {
    let rerun = which == Run::OtherCapacity;
    let checked = which == Run::Checked;
    crumbs(Breadcrumb {
        op_index: None,
        op: INIT_OP,
        rerun,
    });
    let config = if rerun {
        EngineConfig {
            growth: GrowthPolicy { factor: 3.0 },
            ..EngineConfig::default()
        }
    } else {
        EngineConfig::default()
    };
    let fail_init = |e: EngineError| CaseResult::engine_error(None, INIT_OP, &e);
    let backend = make_backend().map_err(|message| CaseResult::Environment { message })?;
    let mut engine = Engine::with_config(
        backend,
        spec,
        case.initial_params(),
        config,
        FaultSet::of(&case.faults),
    )
    .map_err(fail_init)?;
    if rerun {
        // Capacity that no op of the checked run had, so that every later growth happens at other
        // counts than before.
        let nodes = (spec.num_nodes as u64 * 3 / 2 + 3).min(MAX_CASE_NODES) as u32;
        let edges = (spec.edges.len() as u64 * 3 / 2 + 3).min(MAX_CASE_EDGES) as u32;
        engine.reserve(nodes, edges).map_err(fail_init)?;
    }
    if checked {
        check(&mut engine, None, INIT_OP, AfterOp::Other)?;
    }
    for (index, op) in case.ops.iter().enumerate() {
        let name = op.name();
        crumbs(Breadcrumb {
            op_index: Some(index),
            op: name,
            rerun,
        });
        let fail = |e: EngineError| CaseResult::engine_error(Some(index), name, &e);
        let after = apply(&mut engine, op, checked).map_err(|e| match e {
            EngineCheckError::Engine(e) => fail(e),
            EngineCheckError::Violation(v) => CaseResult::violation(Some(index), name, v),
        })?;
        if checked {
            check(&mut engine, Some(index), name, after)?;
        }
    }
    engine
        .positions()
        .map_err(|e| CaseResult::engine_error(None, END_OP, &e))
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
/// (for tools that drive an engine from ops themselves, such as a soak loop).
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
    }
    Ok(AfterOp::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::CaseGraph;
    use forcefield::Edge;

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
        use crate::generate::{case_strategy_with, GenConfig};
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
}
