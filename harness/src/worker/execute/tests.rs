use super::wire::bits_of;
use super::*;
use crate::case::fixtures::path_case;
use crate::worker::oracle::checks;
use forcefield::{CpuBackend, Edge, EngineConfig, EnvFault, FaultSet, GraphSpec, SimParams};

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
    use crate::case::generate::{case_strategy_with, GenConfig};
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

fn inject(fault: EnvFault) -> Op {
    Op::Inject { fault }
}

#[test]
fn injected_faults_are_tolerated_by_the_clean_engine() {
    let grow = Op::AddNodes {
        count: 20,
        positions: None,
    };
    for fault in [
        EnvFault::FailAlloc { nth: 1 },
        EnvFault::FailAlloc { nth: 5 },
        EnvFault::FailCopy { nth: 1 },
        EnvFault::FailCopy { nth: 3 },
        EnvFault::FailLaunch { nth: 2 },
        EnvFault::LoseContext { nth: 4 },
    ] {
        let mut case = path_case(6);
        case.ops = vec![
            Op::Step { count: 2 },
            inject(fault),
            grow.clone(),
            Op::Step { count: 3 },
            inject(fault),
            Op::ShrinkToFit,
            inject(fault),
            Op::Step { count: 2 },
            inject(fault),
            Op::Sssp { source: 2 },
        ];
        let r = execute(&case, &ExecOptions::default(), &mut |_| {});
        assert_eq!(r, CaseResult::Pass, "{fault:?}");
    }
}

// A poisoned process and its resume points: `worker/engine_case.rs`'s tests.

#[test]
fn wire_checkpoints_keep_every_bit() {
    let mut engine = Engine::new(
        CpuBackend::with_threads(1),
        &GraphSpec {
            num_nodes: 4,
            edges: vec![Edge::new(0, 1)],
            positions: None,
        },
        SimParams::default(),
    )
    .unwrap();
    // Nodes 2 and 3 are unreachable: infinite distances, which plain JSON cannot hold.
    engine.run_sssp(0).unwrap();
    let mut checkpoint = engine.checkpoint().clone();
    assert!(checkpoint.sssp_dist.contains(&f32::INFINITY));
    checkpoint.velocities[1] = [f32::NAN, -0.0, f32::MIN_POSITIVE];
    let text = serde_json::to_string(&WireCheckpoint::from(&checkpoint)).unwrap();
    let back: WireCheckpoint = serde_json::from_str(&text).unwrap();
    let back = back.to_checkpoint();
    assert_eq!(bits3(&back.velocities), bits3(&checkpoint.velocities));
    assert_eq!(bits_of(&back.sssp_dist), bits_of(&checkpoint.sssp_dist));
    checkpoint.velocities[1] = [0.0; 3];
    let mut back = back;
    back.velocities[1] = [0.0; 3];
    assert_eq!(back, checkpoint);
}

#[test]
fn a_long_lived_engine_tolerates_injected_faults_op_by_op() {
    let spec = GraphSpec {
        num_nodes: 5,
        edges: vec![Edge::new(0, 1)],
        positions: None,
    };
    let engine = |faults: FaultSet| {
        Engine::with_config(
            CpuBackend::with_threads(1),
            &spec,
            SimParams::default(),
            EngineConfig::default(),
            faults,
        )
        .unwrap()
    };
    let ops = [
        Op::Step { count: 2 },
        inject(EnvFault::FailAlloc { nth: 1 }),
        Op::AddNodes {
            count: 7,
            positions: None,
        },
        inject(EnvFault::FailCopy { nth: 1 }),
        Op::Step { count: 2 },
        inject(EnvFault::LoseContext { nth: 2 }),
        Op::Step { count: 1 },
    ];
    let mut faulty = engine(FaultSet::NONE);
    let mut plain = engine(FaultSet::NONE);
    for (i, op) in ops.iter().enumerate() {
        apply_and_check(&mut faulty, i, op).unwrap_or_else(|r| panic!("op {i}: {r}"));
        if !matches!(op, Op::Inject { .. }) {
            apply_op(&mut plain, op).unwrap();
        }
    }
    assert_eq!(faulty.injections_fired().total(), 3);
    assert_eq!(
        bits3(&faulty.positions().unwrap()),
        bits3(&plain.positions().unwrap())
    );
    let mut stale = engine(FaultSet::of(&[forcefield::Fault::ResizeFailureStale]));
    apply_and_check(&mut stale, 0, &ops[1]).unwrap();
    match apply_and_check(&mut stale, 1, &ops[2]) {
        Err(CaseResult::FaultNotTolerated { failure, op, .. }) => {
            assert_eq!(
                (failure.as_str(), op.as_str()),
                (tolerance::STATE_CHANGED, "add_nodes")
            )
        }
        other => panic!("{other:?}"),
    }
}
