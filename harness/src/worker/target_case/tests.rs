//! The target executor against small in-process targets, each with one defect the generic checks
//! must find (and a clean one they must pass).

use forcefield_target::{
    Buffer, Capabilities, Capability, Counts, Death, Edge, ExitKind, Graph, Params, Point, Result,
    Target, TargetError, TargetInfo,
};

use super::*;
use crate::case::fixtures::resizing_case;
use crate::case::Case;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bug {
    None,
    /// `step` fails with an exception once there are more than 4 nodes.
    InternalOnBigStep,
    /// `remove_nodes` keeps the removed nodes' positions.
    StaleRemove,
    /// `step` depends on how many steps the process ever took.
    Nondeterministic,
    /// A refused `add_nodes` still adds one node.
    RejectButChange,
    /// `counts` reports one edge too many.
    WrongCounts,
    /// `step` puts node 0 at infinity.
    Infinite,
    /// `step` moves nodes by an amount that depends on the reserved capacity.
    CapacityShows,
    /// Its positions buffer reports one element more than its allocation holds once there are
    /// more than 4 nodes.
    BufferOverrun,
}

/// Nodes on a line pulled halfway to the origin by each step.
struct Line {
    points: Vec<Point>,
    edges: Vec<Edge>,
    bug: Bug,
    steps_ever: u64,
    /// Whether it declares the capacity capability.
    capacity: bool,
    reserved: u64,
}

impl Line {
    fn new(bug: Bug) -> Self {
        Line {
            points: Vec::new(),
            edges: Vec::new(),
            bug,
            steps_ever: 0,
            capacity: false,
            reserved: 0,
        }
    }

    /// This target, declaring the capacity capability.
    fn with_capacity(mut self) -> Self {
        self.capacity = true;
        self
    }
}

const LIMIT: usize = 100;

impl Target for Line {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            name: "line".into(),
            version: "1".into(),
            capabilities: match (self.capacity, self.bug == Bug::BufferOverrun) {
                (true, _) => Capabilities::from([Capability::Counts, Capability::Capacity]),
                (false, true) => Capabilities::from([Capability::Counts, Capability::Buffers]),
                (false, false) => Capabilities::from([Capability::Counts]),
            },
        }
    }
    fn reserve(&mut self, nodes: u64, _edges: u64) -> Result<()> {
        self.reserved = self.reserved.max(nodes);
        Ok(())
    }
    fn shrink_to_fit(&mut self) -> Result<()> {
        self.reserved = self.points.len() as u64;
        Ok(())
    }
    fn create(&mut self, graph: &Graph, _params: Option<&Params>) -> Result<()> {
        let n = graph.num_nodes as usize;
        self.points = match &graph.positions {
            Some(p) => p.clone(),
            None => (0..n).map(|i| [i as f32, 0.0, 0.0]).collect(),
        };
        self.edges = graph.edges.clone();
        Ok(())
    }
    fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()> {
        if self.points.len() + count as usize > LIMIT {
            if self.bug == Bug::RejectButChange {
                self.points.push([0.0; 3]);
            }
            return Err(TargetError::Rejected("too many nodes".into()));
        }
        let start = self.points.len();
        for i in 0..count as usize {
            let p = positions.map_or([(start + i) as f32, 0.0, 0.0], |p| p[i]);
            self.points.push(p);
        }
        Ok(())
    }
    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        if self.bug == Bug::StaleRemove {
            return Ok(());
        }
        let mut i = 0;
        self.points.retain(|_| {
            i += 1;
            !ids.contains(&(i - 1))
        });
        let gone = |x: u32| ids.contains(&x);
        // Duplicates count once.
        let mut distinct = ids.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let renumber = |x: u32| x - distinct.iter().filter(|&&g| g < x).count() as u32;
        self.edges = self
            .edges
            .iter()
            .filter(|e| !gone(e.u) && !gone(e.v))
            .map(|e| Edge {
                u: renumber(e.u),
                v: renumber(e.v),
                w: e.w,
            })
            .collect();
        Ok(())
    }
    fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
        self.edges.extend_from_slice(edges);
        Ok(())
    }
    fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        self.edges
            .retain(|e| !pairs.iter().any(|&(a, b)| e.joins(a, b)));
        Ok(())
    }
    fn step(&mut self, count: u64) -> Result<()> {
        if self.bug == Bug::InternalOnBigStep && self.points.len() > 4 {
            return Err(TargetError::Internal(format!(
                "ValueError('shapes ({},3) (4,3)')",
                self.points.len()
            )));
        }
        for _ in 0..count {
            self.steps_ever += 1;
            let drift = if self.bug == Bug::Nondeterministic {
                self.steps_ever as f32 * 1e-3
            } else {
                0.0
            };
            let shows = if self.bug == Bug::CapacityShows {
                self.reserved as f32 * 1e-3
            } else {
                0.0
            };
            for p in &mut self.points {
                p[0] = p[0] * 0.5 + drift + shows;
            }
        }
        if self.bug == Bug::Infinite {
            if let Some(p) = self.points.first_mut() {
                p[1] = f32::INFINITY;
            }
        }
        Ok(())
    }
    fn positions(&mut self) -> Result<Vec<Point>> {
        Ok(self.points.clone())
    }
    fn buffers(&mut self) -> Result<Vec<Buffer>> {
        let len = self.points.len() as u64;
        let capacity = if len > 4 { len - 1 } else { len };
        Ok(vec![Buffer {
            name: "positions".into(),
            len,
            capacity,
            bytes: 12 * capacity,
        }])
    }
    fn counts(&mut self) -> Result<Counts> {
        Ok(Counts {
            nodes: self.points.len() as u64,
            edges: self.edges.len() as u64 + u64::from(self.bug == Bug::WrongCounts),
            node_capacity: None,
            edge_capacity: None,
            cell_capacity: None,
        })
    }
}

/// Adds and removes nodes and edges, steps, and has ops the line target lacks (SSSP, params).
fn case() -> Case {
    Case::from_json(
        r#"{ "format": "forcefield-case/1",
             "graph": { "num_nodes": 3, "edges": [ { "u": 0, "v": 1, "w": 1.0 } ] },
             "ops": [ { "op": "step", "count": 2 },
                      { "op": "add_nodes", "count": 3 },
                      { "op": "add_edges", "edges": [ { "u": 4, "v": 5, "w": 2.0 }, { "u": 1, "v": 4, "w": 1.0 } ] },
                      { "op": "sssp", "source": 0 },
                      { "op": "set_params", "params": {} },
                      { "op": "remove_nodes", "ids": [1, 1] },
                      { "op": "remove_edges", "pairs": [[3, 4]] },
                      { "op": "step", "count": 3 },
                      { "op": "add_nodes", "count": 200 },
                      { "op": "read_positions" } ] }"#,
    )
    .expect("a valid case")
}

fn run(bug: Bug) -> (CaseResult, TargetReport) {
    let mut target = Line::new(bug);
    run_target_case(&mut target, &case(), &mut |_| {})
}

fn check_of(result: &CaseResult) -> (String, String) {
    match result {
        CaseResult::InvariantViolation { check, op, .. } => (check.clone(), op.clone()),
        other => panic!("expected a broken check, got {other}"),
    }
}

#[test]
fn a_clean_target_passes_with_skipped_ops_counted_and_checks_listed() {
    let (result, report) = run(Bug::None);
    assert_eq!(result, CaseResult::Pass);
    assert_eq!(report.failure, None);
    assert_eq!(report.skipped_ops.get("sssp (needs sssp)"), Some(&1));
    assert_eq!(
        report
            .skipped_ops
            .get("set_params (Forcefield's own parameters)"),
        Some(&1)
    );
    // The 200 nodes over the target's limit: refused, once (not again in the determinism run).
    assert_eq!(report.rejected_ops, 1);
    for check in [
        checks::POSITIONS_FINITE,
        checks::POSITIONS_COUNT,
        checks::REJECTED_UNCHANGED,
        checks::DETERMINISM,
        checks::COUNTS_CONSISTENT,
    ] {
        assert!(report.checks_run.contains(check), "{check}: {report:?}");
    }
    let (run_checks, skipped) = plan_checks(&Capabilities::from([Capability::Counts]));
    assert!(run_checks
        .iter()
        .any(|c| c.name == checks::COUNTS_CONSISTENT));
    let skipped: Vec<_> = skipped.iter().map(|c| c.name).collect();
    assert_eq!(
        skipped,
        [
            checks::SSSP_DIJKSTRA,
            checks::CHECKPOINT_ROUND_TRIP,
            checks::GRID_STAGE,
            checks::CSR_EDGES,
            checks::DEVICE_MEMORY,
            checks::COUNTS_WITHIN_CAPACITY,
            checks::MEMORY_ACCOUNTING,
            checks::CAPACITY_INVARIANCE,
            checks::MODEL,
            checks::PHYSICS,
            checks::RESTART_EQUIVALENCE
        ]
    );
}

#[test]
fn each_defect_is_found_by_its_generic_check_at_its_op() {
    assert_eq!(
        check_of(&run(Bug::StaleRemove).0),
        ("positions-count".into(), "remove_nodes".into())
    );
    assert_eq!(
        check_of(&run(Bug::Nondeterministic).0),
        ("determinism".into(), "step".into())
    );
    assert_eq!(
        check_of(&run(Bug::RejectButChange).0),
        ("rejected-unchanged".into(), "add_nodes".into())
    );
    assert_eq!(
        check_of(&run(Bug::WrongCounts).0),
        ("counts-consistent".into(), "init".into())
    );
    assert_eq!(
        check_of(&run(Bug::Infinite).0),
        ("positions-finite".into(), "step".into())
    );
    assert_eq!(
        check_of(&run(Bug::BufferOverrun).0),
        ("counts-within-capacity".into(), "add_nodes".into())
    );
}

#[test]
fn an_internal_error_is_a_failure_signed_by_its_kind_and_op() {
    let (result, report) = run(Bug::InternalOnBigStep);
    let failure = report.failure.expect("a failure");
    assert_eq!(
        (failure.class.as_str(), failure.detail.as_str()),
        ("engine-error", "ValueError")
    );
    assert_eq!((failure.op_index, failure.op.as_str()), (Some(7), "step"));
    assert!(!failure.process_gone());
    assert!(matches!(
        result,
        CaseResult::EngineError {
            op_index: Some(7),
            ..
        }
    ));
}

#[test]
fn deaths_are_signed_by_signal_panic_location_or_exit_code() {
    let died = |exit: ExitKind, tail: &[&str]| {
        TargetFailure::of(
            &TargetError::Died(Death {
                op: "step".into(),
                exit,
                stderr_tail: tail.iter().map(|s| s.to_string()).collect(),
            }),
            Some(2),
            "step",
        )
    };
    let segv = died(ExitKind::Signal("SIGSEGV".into()), &[]);
    assert_eq!(
        (segv.class.as_str(), segv.detail.as_str()),
        ("signal", "SIGSEGV")
    );
    assert!(segv.process_gone());
    let panic = died(
        ExitKind::Code(101),
        &[
            "thread 'main' panicked at /home/u/.cargo/registry/src/x/fa2-0.3.0/src/layout.rs:81:22:",
            "index out of bounds",
        ],
    );
    assert_eq!(
        (panic.class.as_str(), panic.detail.as_str()),
        ("panic", "fa2-0.3.0/src/layout.rs:81:22")
    );
    let exit = died(ExitKind::Code(3), &["bye"]);
    assert_eq!((exit.class.as_str(), exit.detail.as_str()), ("exit", "3"));
    let hung = TargetFailure::of(
        &TargetError::Hung {
            op: "step".into(),
            timeout: std::time::Duration::from_secs(1),
        },
        Some(0),
        "step",
    );
    assert_eq!((hung.class.as_str(), hung.op.as_str()), ("hang", "step"));
    assert_eq!(error_kind("KeyError: 'u'"), "KeyError");
    assert_eq!(error_kind("the buffer is 3 long"), "internal");
}

/// A small graph whose layout depends on its parameters: initial ones, then a `set_params` that
/// changes the springs and the repulsion before more steps.
fn params_case() -> Case {
    Case::from_json(
        r#"{ "format": "forcefield-case/1",
             "params": { "spring_k": 0.5 },
             "graph": { "num_nodes": 6, "edges": [ { "u": 0, "v": 1, "w": 1.0 }, { "u": 1, "v": 2, "w": 2.0 },
                                                    { "u": 3, "v": 4, "w": 1.0 }, { "u": 4, "v": 5, "w": 1.0 } ] },
             "ops": [ { "op": "step", "count": 3 },
                      { "op": "set_params", "params": { "spring_k": 2.0, "repel_k": 3.0 } },
                      { "op": "step", "count": 4 } ] }"#,
    )
    .expect("a valid case")
}

/// The positions Forcefield's engine reaches on `case` applying every op, parameters included.
fn engine_positions(case: &Case) -> Vec<[u32; 3]> {
    let spec = case.graph.to_spec().expect("a valid graph");
    let mut engine = forcefield::Engine::with_config(
        forcefield::CpuBackend::with_threads(1),
        &spec,
        case.initial_params(),
        case.engine_config(forcefield::GrowthPolicy::default()),
        forcefield::FaultSet::NONE,
    )
    .expect("an engine");
    for op in &case.ops {
        crate::worker::execute::apply_op(&mut engine, op).expect("the op runs");
    }
    crate::worker::execute::bits3(&engine.positions().expect("positions"))
}

#[test]
fn the_builtin_target_gets_the_case_parameters_only_when_they_are_sent() {
    use crate::worker::engine_target::EngineTarget;
    let case = params_case();
    let expected = engine_positions(&case);
    let final_positions = |params: CaseParams| {
        let mut target = EngineTarget::new(forcefield::FaultSet::NONE)
            .with_config(case.engine_config(forcefield::GrowthPolicy::default()));
        let how = TargetRun {
            params,
            ..TargetRun::default()
        };
        let (result, report) = run_target_case_with(&mut target, &case, how, &mut |_| {});
        assert_eq!(result, CaseResult::Pass, "{report:?}");
        // The target holds the layout of the last run (the determinism run, the same ops).
        (bits(&target.positions().expect("positions")), report)
    };
    let (sent, report) = final_positions(CaseParams::Send);
    assert_eq!(sent, expected, "the target's layout is the engine's own");
    assert!(report.skipped_ops.is_empty(), "{report:?}");
    let (skipped, report) = final_positions(CaseParams::Skip);
    assert_ne!(skipped, expected, "the parameters change the layout");
    assert_eq!(
        report
            .skipped_ops
            .get("set_params (Forcefield's own parameters)"),
        Some(&1)
    );
}

#[test]
fn the_builtin_target_refuses_bad_parameters() {
    use crate::worker::engine_target::EngineTarget;
    let mut target = EngineTarget::new(forcefield::FaultSet::NONE);
    target
        .create(
            &Graph {
                num_nodes: 4,
                ..Graph::default()
            },
            None,
        )
        .expect("created");
    let object = |json: &str| -> Params { serde_json::from_str(json).expect("a JSON object") };
    for bad in [
        r#"{"repel_k": 3.4e38}"#,
        r#"{"no_such_field": 1}"#,
        r#"{"dt": "x"}"#,
    ] {
        assert!(
            matches!(
                target.set_params(&object(bad)),
                Err(TargetError::Rejected(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        target.create(
            &Graph {
                num_nodes: 2,
                ..Graph::default()
            },
            Some(&object(r#"{"dt": -1}"#))
        ),
        Err(TargetError::Rejected(_))
    ));
    target
        .set_params(&object(r#"{"spring_k": 2}"#))
        .expect("accepted");
    // A target without the params capability never gets them, whatever the host says.
    let mut line = Line::new(Bug::None);
    let (result, report) = run_target_case_with(
        &mut line,
        &params_case(),
        TargetRun {
            params: CaseParams::Send,
            ..TargetRun::default()
        },
        &mut |_| {},
    );
    assert_eq!(result, CaseResult::Pass);
    assert_eq!(report.skipped_ops.len(), 1, "{report:?}");
}

#[test]
fn the_capacity_rerun_compares_final_bits_when_both_targets_manage_capacity() {
    let rerun = |bug: Bug| {
        let mut first = Line::new(bug).with_capacity();
        let mut other = Line::new(bug).with_capacity();
        let how = TargetRun {
            capacity_rerun: Some(&mut other),
            ..TargetRun::default()
        };
        run_target_case_with(&mut first, &case(), how, &mut |_| {})
    };
    let (result, report) = rerun(Bug::None);
    assert_eq!(result, CaseResult::Pass, "{report:?}");
    assert!(report.checks_run.contains(checks::CAPACITY_INVARIANCE));
    // Counted once, in the first run, whatever the re-run skips or refuses.
    assert_eq!(report.rejected_ops, 1);
    let (result, _) = rerun(Bug::CapacityShows);
    assert_eq!(
        check_of(&result),
        ("capacity-invariance".into(), "end".into())
    );
    // Without the capability on the re-run's target there is nothing to compare.
    let mut first = Line::new(Bug::CapacityShows).with_capacity();
    let mut other = Line::new(Bug::CapacityShows);
    let how = TargetRun {
        capacity_rerun: Some(&mut other),
        ..TargetRun::default()
    };
    let (result, report) = run_target_case_with(&mut first, &case(), how, &mut |_| {});
    assert_eq!(result, CaseResult::Pass);
    assert!(!report.checks_run.contains(checks::CAPACITY_INVARIANCE));
}

#[test]
fn the_builtin_target_passes_the_capacity_rerun_under_the_other_growth_policy() {
    use crate::worker::engine_target::EngineTarget;
    let case = params_case();
    let mut first = EngineTarget::new(forcefield::FaultSet::NONE)
        .with_config(case.engine_config(forcefield::GrowthPolicy::default()));
    let mut other = EngineTarget::new(forcefield::FaultSet::NONE)
        .with_config(case.engine_config(Case::OTHER_GROWTH));
    let how = TargetRun {
        params: CaseParams::Send,
        capacity_rerun: Some(&mut other),
        ..TargetRun::default()
    };
    let (result, report) = run_target_case_with(&mut first, &case, how, &mut |_| {});
    assert_eq!(result, CaseResult::Pass, "{report:?}");
    assert!(report.checks_run.contains(checks::CAPACITY_INVARIANCE));
}

#[test]
fn the_shadow_must_agree_after_every_step() {
    let with_shadow = |bug: Bug, shadow_bug: Bug| {
        let mut target = Line::new(bug);
        let mut shadow = Line::new(shadow_bug);
        let how = TargetRun {
            shadow: Some(&mut shadow),
            ..TargetRun::default()
        };
        run_target_case_with(&mut target, &case(), how, &mut |_| {})
    };
    let (result, report) = with_shadow(Bug::None, Bug::None);
    assert_eq!(result, CaseResult::Pass, "{report:?}");
    assert!(report.checks_run.contains(checks::DIFFERENTIAL));
    // The target drifts from its shadow from the first step on.
    let (result, _) = with_shadow(Bug::Nondeterministic, Bug::None);
    assert_eq!(check_of(&result), ("differential".into(), "step".into()));
    // The shadow failing where the target passed is the same check's violation.
    let (result, _) = with_shadow(Bug::None, Bug::InternalOnBigStep);
    match result {
        CaseResult::InvariantViolation {
            check, op, detail, ..
        } => {
            assert_eq!((check.as_str(), op.as_str()), ("differential", "step"));
            assert!(detail.contains("fails where the device passed"), "{detail}");
        }
        other => panic!("expected a differential violation, got {other}"),
    }
}

/// The reference model and the physics reference over the trait: with Forcefield's semantics
/// they find the two planted faults no generic check sees (consistent state, restarts and both
/// growth policies reproduce them), on our engine as the builtin target; without, they do not
/// run and the same cases pass.
#[test]
fn the_model_and_physics_find_what_the_generic_checks_cannot() {
    use crate::worker::engine_target::EngineTarget;
    use forcefield::Fault;
    let removal = Case::from_json(
        r#"{ "format": "forcefield-case/1",
             "graph": { "num_nodes": 3, "edges": [ { "u": 0, "v": 1, "w": 1.0 } ] },
             "ops": [ { "op": "step", "count": 3 },
                      { "op": "remove_nodes", "ids": [0] } ] }"#,
    )
    .expect("a valid case");
    let run = |case: &Case, fault: Option<Fault>, semantics: Semantics| {
        let faults = forcefield::FaultSet::of(fault.as_slice());
        let config = case.engine_config(forcefield::GrowthPolicy::default());
        let mut target = EngineTarget::new(faults).with_config(config);
        let mut fresh = EngineTarget::new(faults).with_config(config);
        let how = TargetRun {
            params: CaseParams::Send,
            semantics,
            rebuild: Some(Rebuild {
                target: &mut fresh,
                exact: true,
            }),
            ..TargetRun::default()
        };
        run_target_case_with(&mut target, case, how, &mut |_| {})
    };
    for (fault, case, signature) in [
        (
            Fault::RemoveNodesVelocitiesStale,
            &removal,
            ("model-velocities", "remove_nodes"),
        ),
        (
            Fault::RepulsionOverscaled,
            &params_case(),
            ("physics", "step"),
        ),
    ] {
        let (clean, report) = run(case, None, Semantics::Forcefield);
        assert_eq!(clean, CaseResult::Pass, "{report:?}");
        for check in [checks::MODEL, checks::PHYSICS, checks::RESTART_EQUIVALENCE] {
            assert!(report.checks_run.contains(check), "{check}: {report:?}");
        }
        let (found, _) = run(case, Some(fault), Semantics::Forcefield);
        assert_eq!(
            check_of(&found),
            (signature.0.to_string(), signature.1.to_string()),
            "{fault:?}"
        );
        let (unseen, report) = run(case, Some(fault), Semantics::CaseFormat);
        assert_eq!(unseen, CaseResult::Pass, "{fault:?}: {report:?}");
        assert!(!report.checks_run.contains(checks::MODEL));
        assert!(!report.checks_run.contains(checks::PHYSICS));
    }
}

/// Our engine as the builtin target runs it: the case's faults and grid cap, its parameters,
/// Forcefield's semantics, and the capacity re-run on a second engine growing otherwise.
fn run_builtin(case: &Case) -> (CaseResult, TargetReport) {
    use crate::worker::engine_target::EngineTarget;
    let faults = forcefield::FaultSet::of(&case.faults);
    let mut target = EngineTarget::new(faults)
        .with_config(case.engine_config(forcefield::GrowthPolicy::default()));
    let mut other = EngineTarget::new(faults).with_config(case.engine_config(Case::OTHER_GROWTH));
    let mut fresh = EngineTarget::new(faults)
        .with_config(case.engine_config(forcefield::GrowthPolicy::default()));
    let how = TargetRun {
        params: CaseParams::Send,
        capacity_rerun: Some(&mut other),
        semantics: Semantics::Forcefield,
        rebuild: Some(Rebuild {
            target: &mut fresh,
            exact: true,
        }),
        ..TargetRun::default()
    };
    run_target_case_with(&mut target, case, how, &mut |_| {})
}

/// Fault tolerance over the trait, as the engine executor has it: an op an injected fault fails
/// leaves the state as it was and is sent again, so a clean engine passes every kind of injected
/// fault (in both growth policies' runs, which then reach the same bits), and a stale capacity
/// after a failed resize is `fault-not-tolerated:state-changed` at the op that grew.
#[test]
fn an_injected_failure_is_retried_and_must_change_nothing() {
    use forcefield::{EnvFault, Fault};
    for fault in [
        EnvFault::FailAlloc { nth: 1 },
        EnvFault::FailAlloc { nth: 4 },
        EnvFault::FailCopy { nth: 2 },
        EnvFault::FailLaunch { nth: 3 },
        EnvFault::LoseContext { nth: 1 },
    ] {
        let (result, report) = run_builtin(&resizing_case(&[], &[fault; 4]));
        assert_eq!(result, CaseResult::Pass, "{fault:?}: {report:?}");
        assert!(report.checks_run.contains(checks::CAPACITY_INVARIANCE));
        assert!(report.checks_run.contains(checks::MODEL));
    }
    let stale = resizing_case(
        &[Fault::ResizeFailureStale],
        &[EnvFault::FailAlloc { nth: 1 }],
    );
    match run_builtin(&stale).0 {
        CaseResult::FaultNotTolerated {
            op_index,
            op,
            failure,
            detail,
        } => {
            assert_eq!((op_index, op.as_str()), (2, "add_nodes"));
            assert_eq!(failure, tolerance::STATE_CHANGED);
            assert!(detail.contains("capacities"), "{detail}");
        }
        other => panic!("expected a fault not tolerated, got {other}"),
    }
    // Without the injected failure the planted defect never runs.
    let quiet = resizing_case(&[Fault::ResizeFailureStale], &[]);
    assert_eq!(run_builtin(&quiet).0, CaseResult::Pass);
}

/// The registry oracles over the `buffers` read-back sign a defect where the engine executor
/// does: a leak on resize is `memory-accounting` at the first op that resizes, on both paths.
#[test]
fn the_registry_oracles_sign_a_leak_as_the_engine_executor_does() {
    use crate::worker::execute::{execute, ExecOptions};
    use forcefield::Fault;
    let leaky = resizing_case(&[Fault::LeakOnResize], &[]);
    let through_trait = run_builtin(&leaky);
    let executor = execute(&leaky, &ExecOptions::default(), &mut |_| {});
    let at = |r: &CaseResult| match r {
        CaseResult::InvariantViolation {
            op_index,
            op,
            check,
            ..
        } => (*op_index, op.clone(), check.clone()),
        other => panic!("expected a broken check, got {other}"),
    };
    assert_eq!(at(&through_trait.0), at(&executor));
    assert_eq!(at(&executor).2, checks::MEMORY_ACCOUNTING);
    let (clean, report) = run_builtin(&resizing_case(&[], &[]));
    assert_eq!(clean, CaseResult::Pass);
    for check in [checks::COUNTS_WITHIN_CAPACITY, checks::MEMORY_ACCOUNTING] {
        assert!(report.checks_run.contains(check), "{check}: {report:?}");
    }
}

/// What the engine executor calls an engine error is one over the trait too: with Forcefield's
/// semantics a refusal of an op of a validated case (which our engine never refuses: validation
/// knows its limits) ends the case as an `EngineError` at the op, not as a refusal to check; a
/// distance constraint on a pair no edge joins is no change on both paths, as the case format
/// defines it.
#[test]
fn our_engines_refusal_is_the_executors_engine_error() {
    use crate::worker::execute::{execute, ExecOptions};
    let mut line = Line::new(Bug::None);
    let how = TargetRun {
        semantics: Semantics::Forcefield,
        ..TargetRun::default()
    };
    let (result, report) = run_target_case_with(&mut line, &case(), how, &mut |_| {});
    match result {
        CaseResult::EngineError {
            op_index,
            op,
            sticky,
            ..
        } => assert_eq!(
            (op_index, op.as_str(), sticky),
            (Some(8), "add_nodes", false)
        ),
        other => panic!("expected an engine error, got {other}"),
    }
    assert_eq!(report.failure, None);
    assert_eq!(report.rejected_ops, 0);
    let no_edge = Case::from_json(
        r#"{ "format": "forcefield-case/1",
             "graph": { "num_nodes": 3, "edges": [ { "u": 0, "v": 1, "w": 1.0 } ] },
             "ops": [ { "op": "set_distance_constraint", "u": 0, "v": 2, "distance": 1.0 },
                      { "op": "step", "count": 2 } ] }"#,
    )
    .expect("a valid case");
    assert_eq!(
        execute(&no_edge, &ExecOptions::default(), &mut |_| {}),
        CaseResult::Pass
    );
    assert_eq!(run_builtin(&no_edge).0, CaseResult::Pass);
}

/// What a [`Quirky`] target does beside the line target's layout.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Quirk {
    /// Declares `grid`; a step of more than 4 nodes answers, and the failure of its work shows
    /// at the next read-back that reaches the device, the grid's (as a CUDA kernel's fault shows
    /// at the next synchronization).
    AsyncStepFailure,
    /// Declares `inject`, whose fault is armed but never fires; `add_nodes` to more than 4 nodes
    /// fails with an error of its own. `counts`: whether it answers `injections_fired`.
    RealErrorWhileArmed { counts: bool },
}

/// The line target with a [`Quirk`].
struct Quirky {
    line: Line,
    quirk: Quirk,
    /// A failure of the last step's work, not reported yet.
    pending: bool,
}

impl Quirky {
    fn new(quirk: Quirk) -> Self {
        Quirky {
            line: Line::new(Bug::None),
            quirk,
            pending: false,
        }
    }
}

impl Target for Quirky {
    fn info(&self) -> TargetInfo {
        let extra = match self.quirk {
            Quirk::AsyncStepFailure => Capability::Grid,
            Quirk::RealErrorWhileArmed { .. } => Capability::Inject,
        };
        TargetInfo {
            name: "quirky".into(),
            version: "1".into(),
            capabilities: Capabilities::from([Capability::Counts, extra]),
        }
    }
    fn create(&mut self, graph: &Graph, params: Option<&Params>) -> Result<()> {
        self.pending = false;
        self.line.create(graph, params)
    }
    fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()> {
        let grown = self.line.points.len() as u64 + count;
        if matches!(self.quirk, Quirk::RealErrorWhileArmed { .. }) && grown > 4 {
            return Err(TargetError::Internal(format!(
                "CudaError: an illegal address growing to {grown} nodes"
            )));
        }
        self.line.add_nodes(count, positions)
    }
    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        self.line.remove_nodes(ids)
    }
    fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
        self.line.add_edges(edges)
    }
    fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        self.line.remove_edges(pairs)
    }
    fn step(&mut self, count: u64) -> Result<()> {
        self.line.step(count)?;
        self.pending |= self.quirk == Quirk::AsyncStepFailure && self.line.points.len() > 4;
        Ok(())
    }
    fn positions(&mut self) -> Result<Vec<Point>> {
        // A host copy: it reaches no device, so it reports nothing pending.
        self.line.positions()
    }
    fn counts(&mut self) -> Result<Counts> {
        self.line.counts()
    }
    fn grid(&mut self) -> Result<Option<forcefield_target::GridStage>> {
        if self.pending {
            return Err(TargetError::Internal(
                "CudaError: an illegal memory access was encountered".into(),
            ));
        }
        Ok(None)
    }
    fn inject(&mut self, _fault: &forcefield_target::EnvFault) -> Result<()> {
        Ok(())
    }
    fn injections_fired(&mut self) -> Result<u64> {
        match self.quirk {
            Quirk::RealErrorWhileArmed { counts: true } => Ok(0),
            _ => Err(TargetError::unsupported("injections_fired")),
        }
    }
}

/// An error the work of an op raises asynchronously, reported by the first read-back the checks
/// make after it (here the grid's, after `step`), is the op's: signed by the op that launched the
/// work, for any target, as our engine's own checks signed it (`engine-error:step`, not
/// `engine-error:grid`, for CUDA's `sort-count-unclamped`).
#[test]
fn an_asynchronous_error_reported_by_a_read_back_is_the_ops() {
    let mut target = Quirky::new(Quirk::AsyncStepFailure);
    let (result, report) = run_target_case(&mut target, &case(), &mut |_| {});
    let failure = report.failure.expect("a failure");
    assert_eq!(
        (failure.class.as_str(), failure.detail.as_str()),
        ("engine-error", "CudaError")
    );
    assert_eq!((failure.op_index, failure.op.as_str()), (Some(7), "step"));
    assert!(
        matches!(&result, CaseResult::EngineError { op_index: Some(7), op, .. } if op == "step"),
        "{result}"
    );
    // With our engine's semantics (its own grid checks read the grid stage after a step).
    let mut target = Quirky::new(Quirk::AsyncStepFailure);
    let how = TargetRun {
        semantics: Semantics::Forcefield,
        ..TargetRun::default()
    };
    let (result, _) = run_target_case_with(&mut target, &case(), how, &mut |_| {});
    let signature = crate::client::signature::classify_result(&result)
        .signature()
        .map(ToString::to_string);
    assert_eq!(signature.as_deref(), Some("engine-error:step"), "{result}");
}

/// Graph of 3 nodes; an injected fault armed that never fires; a growth to 6 nodes.
fn armed_growth_case() -> Case {
    Case::from_json(
        r#"{ "format": "forcefield-case/1",
             "graph": { "num_nodes": 3, "edges": [ { "u": 0, "v": 1, "w": 1.0 } ] },
             "ops": [ { "op": "inject", "fault": { "kind": "fail-copy", "nth": 64 } },
                      { "op": "step", "count": 1 },
                      { "op": "add_nodes", "count": 3 },
                      { "op": "step", "count": 1 } ] }"#,
    )
    .expect("a valid case")
}

/// A real error while an injected fault is armed but has not fired is the finding, not a
/// failure of the fault to retry until it gives up, where the target counts the faults that
/// fired (`injections_fired`, as our engine does: `engine-error:add_nodes` for CUDA's
/// `analytics-not-resized`, not `fault-not-tolerated:retry-failed:add_nodes`); a target that
/// cannot tell keeps the rule that an error while a fault is armed is the fault's.
#[test]
fn a_real_error_while_a_fault_is_armed_but_unfired_is_the_finding() {
    let case = armed_growth_case();
    let mut target = Quirky::new(Quirk::RealErrorWhileArmed { counts: true });
    let (result, report) = run_target_case(&mut target, &case, &mut |_| {});
    let failure = report.failure.expect("a failure");
    assert_eq!(
        (failure.class.as_str(), failure.detail.as_str()),
        ("engine-error", "CudaError")
    );
    assert_eq!(
        (failure.op_index, failure.op.as_str()),
        (Some(2), "add_nodes")
    );
    assert_eq!(report.rejected_ops, 0, "{result}");
    // With our engine's semantics: the engine error at the op.
    let mut target = Quirky::new(Quirk::RealErrorWhileArmed { counts: true });
    let how = TargetRun {
        semantics: Semantics::Forcefield,
        ..TargetRun::default()
    };
    let (result, _) = run_target_case_with(&mut target, &case, how, &mut |_| {});
    let signature = crate::client::signature::classify_result(&result)
        .signature()
        .map(ToString::to_string);
    assert_eq!(
        signature.as_deref(),
        Some("engine-error:add_nodes"),
        "{result}"
    );
    // A target that cannot tell: the armed fault's, retried until it gives up.
    let mut target = Quirky::new(Quirk::RealErrorWhileArmed { counts: false });
    let (result, _) = run_target_case(&mut target, &case, &mut |_| {});
    match result {
        CaseResult::FaultNotTolerated {
            op_index,
            op,
            failure,
            ..
        } => assert_eq!(
            (op_index, op.as_str(), failure.as_str()),
            (2, "add_nodes", tolerance::RETRY_FAILED)
        ),
        other => panic!("expected a fault not tolerated, got {other}"),
    }
}

/// Our engine counts the injected faults that fired, through the trait: an armed fault that
/// fires during an op moves the count, one that never fires does not.
#[test]
fn the_builtin_target_counts_the_injected_faults_that_fired() {
    use crate::worker::engine_target::EngineTarget;
    let mut target = EngineTarget::new(forcefield::FaultSet::default());
    let graph = Graph {
        num_nodes: 4,
        ..Graph::default()
    };
    target.create(&graph, None).expect("a layout");
    assert_eq!(target.injections_fired(), Ok(0));
    target
        .inject(&forcefield_target::EnvFault::FailAlloc { nth: 1 })
        .expect("armed");
    assert!(
        target.add_nodes(600, None).is_err(),
        "the growth's allocation fails"
    );
    assert_eq!(target.injections_fired(), Ok(1));
    target.add_nodes(600, None).expect("the fault fired once");
    target
        .inject(&forcefield_target::EnvFault::FailCopy { nth: 10_000 })
        .expect("armed");
    target.step(1).expect("a step");
    assert_eq!(
        target.injections_fired(),
        Ok(1),
        "the late fault did not fire"
    );
}
