use super::wire::bits_of;
use super::*;
use crate::case::CaseGraph;
use forcefield::{CpuBackend, Edge, EngineConfig, EnvFault, FaultSet, SimParams};

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

/// A CPU backend that, like CUDA after a trap, refuses a new context in this process.
struct NoNewContext(CpuBackend);

impl Backend for NoNewContext {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn device_description(&self) -> String {
        self.0.device_description()
    }
    fn alloc(
        &mut self,
        buffer: forcefield::BufferName,
        bytes: usize,
    ) -> Result<forcefield::backend::DeviceAlloc, forcefield::BackendError> {
        self.0.alloc(buffer, bytes)
    }
    fn free(&mut self, alloc: forcefield::backend::DeviceAlloc) {
        self.0.free(alloc)
    }
    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), forcefield::BackendError> {
        self.0.upload(dst, src)
    }
    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), forcefield::BackendError> {
        self.0.download(src, dst)
    }
    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), forcefield::BackendError> {
        self.0.copy(dst, src, bytes)
    }
    fn fill_u32(
        &mut self,
        dst: u64,
        count: usize,
        value: u32,
    ) -> Result<(), forcefield::BackendError> {
        self.0.fill_u32(dst, count, value)
    }
    fn launch(
        &mut self,
        launch: &forcefield::backend::Launch,
    ) -> Result<f64, forcefield::BackendError> {
        self.0.launch(launch)
    }
    fn synchronize(&mut self) -> Result<(), forcefield::BackendError> {
        self.0.synchronize()
    }
    fn bytes_allocated(&self) -> usize {
        self.0.bytes_allocated()
    }
    fn lose_context(&mut self) -> forcefield::BackendError {
        self.0.lose_context()
    }
    fn reset(&mut self) -> Result<(), forcefield::BackendError> {
        let mut e = forcefield::BackendError::new(
            forcefield::error::BackendOp::Init,
            "no new context in a process whose context trapped",
        );
        e.sticky = true;
        Err(e)
    }
}

fn no_new_context() -> Result<NoNewContext, String> {
    Ok(NoNewContext(CpuBackend::with_threads(1)))
}

fn lost_context_case() -> Case {
    let mut case = path_case(8);
    case.ops = vec![
        Op::Step { count: 3 },
        Op::AddNodes {
            count: 9,
            positions: None,
        },
        inject(EnvFault::LoseContext { nth: 5 }),
        Op::Step { count: 4 },
        Op::Sssp { source: 3 },
        Op::Step { count: 2 },
    ];
    case
}

/// Poisoned processes hand over to new ones until the case ends; the resume points travel as
/// JSON, as between workers. Returns the final result and the resume points seen.
fn run_across_processes(case: &Case, opts: &ExecOptions) -> (CaseResult, Vec<ResumePoint>) {
    let mut points = Vec::new();
    let mut r = execute_with(case, opts, &no_new_context, &mut |_| {});
    while let Some(point) = r.resume_point() {
        let text = serde_json::to_string(&r).unwrap();
        let back: CaseResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r, "the result survives JSON");
        points.push(point.clone());
        r = resume_with(case, opts, point, &no_new_context, &mut |_| {});
        assert!(points.len() <= 2, "{r}");
    }
    (r, points)
}

#[test]
fn a_poisoned_process_hands_the_case_to_a_new_one() {
    let case = lost_context_case();
    let opts = ExecOptions::default();
    let first = execute_with(&case, &opts, &no_new_context, &mut |_| {});
    assert_eq!(first.class(), "poisoned");
    // In-process, that is an environment limit with a clear message.
    let verdict = crate::client::signature::classify_result(&first);
    let crate::client::signature::Verdict::Environment { message } = verdict else {
        panic!("{verdict:?}")
    };
    assert!(
        message.contains("op 3 (step)") && message.contains("new process"),
        "{message}"
    );
    // Across processes: the checked run resumes at op 3, then the re-run loses its context too
    // and resumes with the first run's positions; both agree bit for bit at the end.
    let (r, points) = run_across_processes(&case, &opts);
    assert_eq!(r, CaseResult::Pass);
    assert_eq!(points.len(), 2);
    assert_eq!((points[0].rerun, points[0].from_op), (false, 3));
    assert!(points[0].first_positions.is_none());
    assert_eq!((points[1].rerun, points[1].from_op), (true, 3));
    assert_eq!(
        points[1].first_positions.as_ref().map(Vec::len),
        Some(17),
        "the re-run carries the first run's final positions"
    );
    // Where the engine recovers in-process the same case passes without handing over.
    assert_eq!(execute(&case, &opts, &mut |_| {}), CaseResult::Pass);
}

#[test]
fn a_resume_point_that_lies_about_the_state_is_caught() {
    let case = lost_context_case();
    let opts = ExecOptions::default();
    let r = execute_with(&case, &opts, &no_new_context, &mut |_| {});
    let mut point = r.resume_point().unwrap().clone();
    // The checkpoint of another layout: the resumed run ends elsewhere than the re-run.
    let mut checkpoint = point.checkpoint.to_checkpoint();
    checkpoint.positions[0][0] += 0.5;
    point.checkpoint = WireCheckpoint::from(&checkpoint);
    let resumed = resume_with(&case, &opts, &point, &no_new_context, &mut |_| {});
    let resumed = match resumed.resume_point() {
        // The re-run loses its context too; continue it honestly.
        Some(p) => resume_with(&case, &opts, &p.clone(), &no_new_context, &mut |_| {}),
        None => resumed,
    };
    match &resumed {
        CaseResult::InvariantViolation { check, .. } => {
            assert_eq!(check, checks::CAPACITY_INVARIANCE)
        }
        other => panic!("{other}"),
    }
    // A resume point past the case is refused.
    point.from_op = 99;
    assert_eq!(
        resume_with(&case, &opts, &point, &no_new_context, &mut |_| {}).class(),
        "invalid"
    );
}

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
