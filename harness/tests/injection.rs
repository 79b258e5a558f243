/*!
Injected environment faults in cases, end to end: `inject` ops in case files, the fault-tolerance
oracle of the executor, minimization that keeps the fault, and the cross-process resume of a case
whose process was poisoned (with the CPU standing in for CUDA: a checkpoint serialized mid-case and
continued in a new engine must give bitwise the uninterrupted layout).
*/

use std::sync::Arc;
use std::time::Duration;

use forcefield::{CpuBackend, Engine, EnvFault, Fault, FaultSet, SimParams};
use forcefield_harness::case::fixtures::resizing_case;
use forcefield_harness::case::generate::{case_strategy_with, GenConfig};
use forcefield_harness::case::minimize::{minimize, MinimizeLimits};
use forcefield_harness::case::{Case, Op};
use forcefield_harness::client::signature::{classify_result, Signature};
use forcefield_harness::hunt::campaign::run_isolated;
use forcefield_harness::isolate::{Breadcrumbs, SupervisorConfig, WorkerCommand, WorkerSlot};
use forcefield_harness::worker::execute::{
    apply_op, bits3, execute, CaseResult, ExecOptions, ResumePoint, WireCheckpoint,
};
use forcefield_harness::worker::job::{resume_payload, Handler, Job};
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

fn signature(r: &CaseResult) -> Option<String> {
    classify_result(r).signature().map(Signature::to_string)
}

#[test]
fn case_files_with_inject_ops_pass_on_the_clean_engine() {
    let kinds = [
        EnvFault::FailAlloc { nth: 1 },
        EnvFault::FailAlloc { nth: 4 },
        EnvFault::FailCopy { nth: 2 },
        EnvFault::FailLaunch { nth: 3 },
        EnvFault::LoseContext { nth: 1 },
    ];
    for fault in kinds {
        let c = resizing_case(&[], &[fault; 4]);
        assert_eq!(
            c.ops.iter().filter(|o| o.name() == "inject").count(),
            4,
            "{fault:?}"
        );
        let r = execute(&c, &ExecOptions::default(), &mut |_| {});
        assert_eq!(r, CaseResult::Pass, "{fault:?}");
    }
    // Several kinds armed at once, all firing inside one op.
    let c = resizing_case(&[], &[EnvFault::FailAlloc { nth: 2 }]);
    let mut ops = vec![
        Op::Inject {
            fault: EnvFault::FailCopy { nth: 1 },
        },
        Op::Inject {
            fault: EnvFault::FailLaunch { nth: 1 },
        },
    ];
    ops.extend(c.ops.iter().cloned());
    let c = Case { ops, ..c };
    assert_eq!(
        execute(&c, &ExecOptions::default(), &mut |_| {}),
        CaseResult::Pass
    );
}

/// The planted `resize-failure-stale` with an allocation failure injected before a growth.
fn stale_resize_case() -> Case {
    resizing_case(
        &[Fault::ResizeFailureStale],
        &[EnvFault::FailAlloc { nth: 1 }],
    )
}

#[test]
fn a_stale_capacity_after_a_failed_resize_is_not_tolerated() {
    let r = execute(&stale_resize_case(), &ExecOptions::default(), &mut |_| {});
    assert_eq!(r.class(), "fault-not-tolerated", "{r}");
    assert_eq!(
        signature(&r).as_deref(),
        Some("fault-not-tolerated:state-changed:add_nodes")
    );
    let CaseResult::FaultNotTolerated {
        op_index, detail, ..
    } = &r
    else {
        unreachable!()
    };
    assert_eq!(*op_index, 2);
    assert!(detail.contains("capacity"), "{detail}");
    // Without the injected failure the planted defect never runs; without the defect the failure
    // is tolerated.
    let quiet = resizing_case(&[Fault::ResizeFailureStale], &[]);
    assert!(execute(&quiet, &ExecOptions::default(), &mut |_| {}).is_pass());
    let clean = resizing_case(&[], &[EnvFault::FailAlloc { nth: 1 }]);
    assert!(execute(&clean, &ExecOptions::default(), &mut |_| {}).is_pass());
}

#[test]
fn an_error_with_no_injected_fault_firing_stays_an_engine_error() {
    // The copy fault is armed far beyond the case's copies: nothing fires, nothing is expected.
    let c = resizing_case(&[], &[EnvFault::FailCopy { nth: 64 }]);
    assert!(execute(&c, &ExecOptions::default(), &mut |_| {}).is_pass());
}

#[test]
fn minimization_keeps_the_inject_op() {
    let original = stale_resize_case();
    let want = signature(&execute(&original, &ExecOptions::default(), &mut |_| {}));
    let mut test = |c: &Case| signature(&execute(c, &ExecOptions::default(), &mut |_| {})) == want;
    let (small, report) = minimize(&original, MinimizeLimits::default(), &mut test);
    assert!(test(&small));
    assert!(report.after.ops < report.before.ops, "{report:?}");
    let names: Vec<&str> = small.ops.iter().map(Op::name).collect();
    let inject = names.iter().position(|n| *n == "inject");
    let grow = names.iter().rposition(|n| *n == "add_nodes");
    assert!(
        matches!((inject, grow), (Some(i), Some(g)) if i < g),
        "the fault and the growth it fails stay, in order: {names:?}"
    );
}

#[test]
fn an_isolated_worker_reports_the_same_signature() {
    let mut slot = WorkerSlot::new(
        WorkerCommand::new(BIN).arg("worker"),
        SupervisorConfig::default(),
    );
    let (verdict, _) = run_isolated(
        &mut slot,
        &stale_resize_case(),
        true,
        Duration::from_secs(60),
    );
    slot.shutdown();
    assert_eq!(
        verdict.signature().map(Signature::to_string).as_deref(),
        Some("fault-not-tolerated:state-changed:add_nodes")
    );
}

/// `resize-failure-stale` where the growth that fails is the grid cells' (the first step's): the
/// failed step leaves a cell capacity its buffers do not have. The state check after the failure
/// sees it through the `counts` read-back's cell capacity, as the engine's own check saw its
/// capacities, before the retry runs on it (which the CPU's guard pages stop with a SIGSEGV in
/// the sort: `signal:SIGSEGV:sort_pairs` when the check did not see cells). Run in a worker, so
/// that such a crash is a verdict, not the end of this test process.
#[test]
fn a_stale_cell_capacity_after_a_failed_step_is_not_tolerated() {
    let case = Case::from_json(
        r#"{ "format": "forcefield-case/1", "faults": ["resize-failure-stale"],
             "graph": { "num_nodes": 24, "edges": [ { "u": 0, "v": 1, "w": 1.0 }, { "u": 1, "v": 2, "w": 1.0 } ] },
             "ops": [ { "op": "inject", "fault": { "kind": "fail-alloc", "nth": 1 } },
                      { "op": "step", "count": 3 } ] }"#,
    )
    .expect("a valid case");
    let mut slot = WorkerSlot::new(
        WorkerCommand::new(BIN).arg("worker"),
        SupervisorConfig::default(),
    );
    let (verdict, _) = run_isolated(&mut slot, &case, true, Duration::from_secs(60));
    slot.shutdown();
    assert_eq!(
        verdict.signature().map(Signature::to_string).as_deref(),
        Some("fault-not-tolerated:state-changed:step"),
        "{verdict:?}"
    );
    // Without the planted defect the failed step is tolerated.
    let clean = Case {
        faults: vec![],
        ..case
    };
    assert!(execute(&clean, &ExecOptions::default(), &mut |_| {}).is_pass());
}

#[test]
fn generated_cases_with_injections_pass_on_the_clean_engine() {
    let cfg = GenConfig {
        inject_rate: 0.4,
        ..GenConfig::small()
    };
    let mut runner = TestRunner::new(Config {
        cases: 120,
        rng_seed: RngSeed::Fixed(3),
        failure_persistence: None,
        ..Config::default()
    });
    let injected = std::cell::Cell::new(0usize);
    let opts = ExecOptions::default();
    runner
        .run(&case_strategy_with(cfg), |c| {
            injected.set(injected.get() + c.ops.iter().filter(|o| o.name() == "inject").count());
            let r = execute(&c, &opts, &mut |_| {});
            proptest::prop_assert!(r.is_pass(), "{r}\n{}", c.to_json().unwrap_or_default());
            Ok(())
        })
        .unwrap();
    let injected = injected.get();
    assert!(injected > 100, "only {injected} inject ops generated");
}

/// Runs `ops` on a CPU engine built for `case`.
fn engine_after(case: &Case, ops: &[Op]) -> Engine<CpuBackend> {
    let spec = case.graph.to_spec().unwrap();
    let mut engine = Engine::with_config(
        CpuBackend::with_threads(1),
        &spec,
        case.initial_params(),
        case.engine_config(Default::default()),
        FaultSet::NONE,
    )
    .unwrap();
    for op in ops {
        apply_op(&mut engine, op).unwrap();
    }
    engine
}

#[test]
fn a_checkpoint_serialized_mid_case_resumes_bitwise_in_a_new_engine() {
    let c = resizing_case(&[], &[]);
    let uninterrupted = engine_after(&c, &c.ops).positions().unwrap();
    for split in 1..c.ops.len() {
        let (head, tail) = c.ops.split_at(split);
        let first = engine_after(&c, head);
        // Through JSON, as between worker processes.
        let text = serde_json::to_string(&WireCheckpoint::from(first.checkpoint())).unwrap();
        drop(first);
        let checkpoint = serde_json::from_str::<WireCheckpoint>(&text)
            .unwrap()
            .to_checkpoint();
        let mut second = Engine::from_checkpoint(
            CpuBackend::with_threads(1),
            &checkpoint,
            c.engine_config(Default::default()),
            FaultSet::NONE,
        )
        .unwrap();
        for op in tail {
            apply_op(&mut second, op).unwrap();
        }
        assert_eq!(
            bits3(&second.positions().unwrap()),
            bits3(&uninterrupted),
            "resumed before op {split}"
        );
    }
}

#[test]
fn a_worker_handler_continues_a_case_from_a_resume_point() {
    let c = resizing_case(&[], &[]);
    let from_op = 3;
    let engine = engine_after(&c, &c.ops[..from_op]);
    let resume = ResumePoint {
        rerun: false,
        from_op,
        checkpoint: WireCheckpoint::from(engine.checkpoint()),
        first_positions: None,
    };
    drop(engine);
    // The reply of a poisoned worker asks the driver for exactly this job.
    let poisoned_reply = json!({
        "result": serde_json::to_value(CaseResult::Poisoned {
            op_index: from_op,
            op: "step".into(),
            error: "no new context".into(),
            resume: Box::new(resume.clone()),
        }).unwrap(),
        "context_lost": true,
    });
    let job = resume_payload(&c, true, &poisoned_reply).expect("a resume job");
    let payload = serde_json::to_value(job).unwrap();
    match serde_json::from_value::<Job>(payload.clone()).unwrap() {
        Job::Resume {
            case,
            capacity_invariance,
            resume: r,
        } => {
            assert_eq!(case, c);
            assert!(capacity_invariance);
            assert_eq!(*r, resume);
        }
        other => panic!("{other:?}"),
    }
    assert!(resume_payload(
        &c,
        true,
        &json!({"result": {"result": "pass"}, "context_lost": false})
    )
    .is_none());
    let crumbs = Arc::new(Breadcrumbs::in_process());
    let reply = Handler::new(1).handle(&payload, &crumbs);
    assert_eq!(reply["result"], json!({"result": "pass"}), "{reply}");
    // A resume point whose state is not the case's: the resumed run ends away from the re-run.
    let mut checkpoint = resume.checkpoint.to_checkpoint();
    checkpoint.params = SimParams {
        repel_k: 77.0,
        ..checkpoint.params
    };
    checkpoint.uploaded = checkpoint.params.clone();
    let wrong = ResumePoint {
        checkpoint: WireCheckpoint::from(&checkpoint),
        ..resume
    };
    let job = Job::Resume {
        case: c.clone(),
        capacity_invariance: true,
        resume: Box::new(wrong),
    };
    let reply = Handler::new(1).handle(&serde_json::to_value(job).unwrap(), &crumbs);
    assert_eq!(
        reply["result"]["check"],
        json!("capacity-invariance"),
        "{reply}"
    );
}
