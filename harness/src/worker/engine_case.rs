/*!
A case on Forcefield's own engine through the [`Target`](forcefield_target::Target) trait: the
engines a case needs, each an [`EngineTarget`], handed to [`crate::worker::target_case`] with
what the host knows of our engine.

Used by every path that runs our engine on a case: the job handler's case, resume and batch jobs
([`crate::worker::job`]: `run`, `selftest`, `ci`, `repro`, `minimize`, corpus replay) and the
`--target builtin` worker ([`crate::worker::target_job`]). The targets: the one under test, on
the case's backend; the capacity re-run's, growing by [`Case::OTHER_GROWTH`]; the one that
`restart-equivalence` and `physics` restore a checkpoint into, on the case's backend too; and for
a CUDA case the CPU shadow of `differential`. All but the shadow open their backends with the
caller's factory (traced into the breadcrumbs, recording sanitizer violations), so that a crash
is signed by its kernel. Planted faults and engine settings come from the case.
*/

use forcefield::{Backend, CpuBackend, FaultSet, GrowthPolicy};

use crate::case::{BackendKind, Case};
use crate::worker::engine_target::{BackendFactory, EngineTarget};
use crate::worker::execute::result::{Breadcrumb, CaseResult};
use crate::worker::execute::wire::ResumePoint;
use crate::worker::target_case::{
    resume_target_case_with, CaseParams, Rebuild, Semantics, TargetReport, TargetRun,
};

/// How a case is run on our engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EngineCaseOptions {
    /// Re-run under another growth policy and compare the final positions.
    pub capacity_invariance: bool,
    /// Threads of the CUDA case's CPU shadow (0: every core).
    pub threads: usize,
    /// Compare with the reference model after every op (off only to measure what it costs).
    pub reference_model: bool,
    /// Run small cases a second time for `determinism` (target campaigns; the default path
    /// relies on the sampled restart-equivalence check, as it always did).
    pub determinism: bool,
}

/// Runs `case` (or continues it from `resume`) on engines whose backends `backends` makes (one
/// factory per engine target), reporting each op to `on_op` before it runs. A case that does not
/// validate is [`CaseResult::Invalid`], as before any engine is built.
pub(crate) fn run_engine_case(
    case: &Case,
    opts: EngineCaseOptions,
    resume: Option<&ResumePoint>,
    backends: &dyn Fn() -> Box<BackendFactory>,
    on_op: &mut dyn FnMut(Breadcrumb),
) -> (CaseResult, TargetReport) {
    let invalid = |message: String| (CaseResult::Invalid { message }, TargetReport::default());
    if let Err(e) = case.validate() {
        return invalid(e.to_string());
    }
    if let Err(e) = case.graph.to_spec() {
        return invalid(e.to_string());
    }
    let faults = FaultSet::of(&case.faults);
    let config = case.engine_config(GrowthPolicy::default());
    let mut target = EngineTarget::new(faults)
        .with_config(config)
        .with_backends(backends());
    let mut other = EngineTarget::new(faults)
        .with_config(case.engine_config(Case::OTHER_GROWTH))
        .with_backends(backends());
    let threads = opts.threads;
    let mut cpu = EngineTarget::new(faults)
        .with_config(config)
        .with_backends(Box::new(move || {
            let cpu = if threads == 0 {
                CpuBackend::new()
            } else {
                CpuBackend::with_threads(threads)
            };
            Ok(Box::new(cpu) as Box<dyn Backend>)
        }));
    let mut fresh = EngineTarget::new(faults)
        .with_config(config)
        .with_backends(backends());
    let cuda = case.backend == BackendKind::Cuda;
    let how = TargetRun {
        params: CaseParams::Send,
        capacity_rerun: opts
            .capacity_invariance
            .then_some(&mut other as &mut dyn forcefield_target::Target),
        shadow: cuda.then_some(&mut cpu as &mut dyn forcefield_target::Target),
        semantics: Semantics::Forcefield,
        rebuild: Some(Rebuild {
            target: &mut fresh,
            exact: !cuda,
        }),
        skip_determinism: !opts.determinism,
        skip_model: !opts.reference_model,
    };
    resume_target_case_with(&mut target, case, how, resume, on_op)
}

#[cfg(test)]
mod tests {
    use forcefield::backend::{DeviceAlloc, Launch};
    use forcefield::{BackendError, BufferName, EnvFault, Fault, SimParams};

    use super::*;
    use crate::case::fixtures::path_case;
    use crate::case::Op;
    use crate::worker::execute::wire::WireCheckpoint;

    fn options() -> EngineCaseOptions {
        EngineCaseOptions {
            capacity_invariance: true,
            threads: 1,
            reference_model: true,
            determinism: false,
        }
    }

    /// A CPU backend that, like CUDA after a trap, refuses a new context in this process; with
    /// `trap` set its force pass traps too (a sticky error no injected fault caused).
    struct NoNewContext(CpuBackend, bool);

    impl Backend for NoNewContext {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn device_description(&self) -> String {
            self.0.device_description()
        }
        fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
            self.0.alloc(buffer, bytes)
        }
        fn free(&mut self, alloc: DeviceAlloc) {
            self.0.free(alloc)
        }
        fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
            self.0.upload(dst, src)
        }
        fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
            self.0.download(src, dst)
        }
        fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
            self.0.copy(dst, src, bytes)
        }
        fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
            self.0.fill_u32(dst, count, value)
        }
        fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
            if self.1 && launch.kernel_name() == "force_pass" {
                let mut e = BackendError::new(
                    forcefield::error::BackendOp::Launch,
                    "an illegal address in force_pass",
                );
                e.sticky = true;
                return Err(e);
            }
            self.0.launch(launch)
        }
        fn synchronize(&mut self) -> Result<(), BackendError> {
            self.0.synchronize()
        }
        fn bytes_allocated(&self) -> usize {
            self.0.bytes_allocated()
        }
        fn lose_context(&mut self) -> BackendError {
            self.0.lose_context()
        }
        fn reset(&mut self) -> Result<(), BackendError> {
            let mut e = BackendError::new(
                forcefield::error::BackendOp::Init,
                "no new context in a process whose context trapped",
            );
            e.sticky = true;
            Err(e)
        }
    }

    fn no_new_context() -> Box<BackendFactory> {
        Box::new(|| {
            Ok(Box::new(NoNewContext(CpuBackend::with_threads(1), false)) as Box<dyn Backend>)
        })
    }

    fn run(case: &Case, resume: Option<&ResumePoint>) -> CaseResult {
        run_engine_case(case, options(), resume, &no_new_context, &mut |_| {}).0
    }

    /// A sticky error that no injected fault caused is the finding, in the process it happened
    /// in: recovering from it where the device refuses a new context would hand the case to a
    /// new process, which fails the same way, and so on until the case is given up.
    #[test]
    fn a_real_sticky_error_is_the_finding_not_a_hand_over() {
        let mut case = path_case(6);
        case.ops = vec![Op::Step { count: 2 }];
        let traps = || -> Box<BackendFactory> {
            Box::new(|| {
                Ok(Box::new(NoNewContext(CpuBackend::with_threads(1), true)) as Box<dyn Backend>)
            })
        };
        let r = run_engine_case(&case, options(), None, &traps, &mut |_| {}).0;
        assert_eq!(r.class(), "engine-error", "{r}");
        assert!(r.resume_point().is_none(), "{r}");
    }

    fn lost_context_case() -> Case {
        let mut case = path_case(8);
        case.ops = vec![
            Op::Step { count: 3 },
            Op::AddNodes {
                count: 9,
                positions: None,
            },
            Op::Inject {
                fault: EnvFault::LoseContext { nth: 5 },
            },
            Op::Step { count: 4 },
            Op::Sssp { source: 3 },
            Op::Step { count: 2 },
        ];
        case
    }

    /// Poisoned processes hand over to new ones until the case ends; the resume points travel as
    /// JSON, as between workers. The final result and the resume points seen.
    fn run_across_processes(case: &Case) -> (CaseResult, Vec<ResumePoint>) {
        let mut points = Vec::new();
        let mut r = run(case, None);
        while let Some(point) = r.resume_point() {
            let text = serde_json::to_string(&r).expect("a result serializes");
            let back: CaseResult = serde_json::from_str(&text).expect("and reads back");
            assert_eq!(back, r, "the result survives JSON");
            points.push(point.clone());
            r = run(case, Some(point));
            assert!(points.len() <= 2, "{r}");
        }
        (r, points)
    }

    #[test]
    fn a_poisoned_process_hands_the_case_to_a_new_one_through_the_trait() {
        let case = lost_context_case();
        let first = run(&case, None);
        assert_eq!(first.class(), "poisoned", "{first}");
        assert!(
            first.to_string().contains("op 3 (step)"),
            "the op that lost the context: {first}"
        );
        // The checked run resumes at op 3, then the re-run loses its context too and resumes
        // with the first run's positions; both agree bit for bit at the end.
        let (r, points) = run_across_processes(&case);
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
        // Where the engine recovers in this process the same case passes without handing over.
        let cpu = || -> Box<BackendFactory> {
            Box::new(|| Ok(Box::new(CpuBackend::with_threads(1)) as Box<dyn Backend>))
        };
        let (r, _) = run_engine_case(&case, options(), None, &cpu, &mut |_| {});
        assert_eq!(r, CaseResult::Pass);
    }

    #[test]
    fn a_resume_point_that_lies_about_the_state_is_caught() {
        let case = lost_context_case();
        let mut point = run(&case, None)
            .resume_point()
            .expect("a resume point")
            .clone();
        // The checkpoint of another layout: the resumed run ends elsewhere than the re-run.
        let mut checkpoint = point.checkpoint.to_checkpoint();
        checkpoint.positions[0][0] += 0.5;
        point.checkpoint = WireCheckpoint::from(&checkpoint);
        let resumed = run(&case, Some(&point));
        let resumed = match resumed.resume_point() {
            // The re-run loses its context too; continue it honestly.
            Some(p) => run(&case, Some(&p.clone())),
            None => resumed,
        };
        match &resumed {
            CaseResult::InvariantViolation { check, .. } => {
                assert_eq!(check, crate::worker::oracle::checks::CAPACITY_INVARIANCE)
            }
            other => panic!("{other}"),
        }
        // A resume point past the case is refused.
        point.from_op = 99;
        assert_eq!(run(&case, Some(&point)).class(), "invalid");
        // A re-run's resume point without the first run's positions is refused.
        point.from_op = 3;
        point.rerun = true;
        point.first_positions = None;
        assert_eq!(run(&case, Some(&point)).class(), "invalid");
    }

    /// Physics rebuilds from the checkpoint as it is, stale uploaded parameters included, while
    /// restart equivalence rebuilds with the set ones: under `params-not-uploaded` a step op that
    /// only physics samples (restart's samples spent) is still caught, as the engine executor
    /// caught it.
    #[test]
    fn physics_rebuilds_with_the_parameters_the_kernels_hold() {
        let noisy = SimParams {
            feature_flags: SimParams::default().feature_flags
                | forcefield::params::features::THERMAL_NOISE,
            temperature: 0.5,
            ..SimParams::default()
        };
        let quiet = SimParams {
            repel_k: SimParams::default().repel_k * 3.0,
            ..SimParams::default()
        };
        let mut case = path_case(8);
        case.params = Some(noisy.clone());
        // Six step ops that restart equivalence samples (the first two, then one after each
        // set_params) and physics does not (thermal noise), with parameters that do not change.
        for _ in 0..6 {
            case.ops.push(Op::SetParams {
                params: noisy.clone(),
            });
            case.ops.push(Op::Step { count: 1 });
        }
        case.ops.push(Op::SetParams { params: quiet });
        case.ops.push(Op::Step { count: 1 });
        let cpu = || -> Box<BackendFactory> {
            Box::new(|| Ok(Box::new(CpuBackend::with_threads(1)) as Box<dyn Backend>))
        };
        let (clean, _) = run_engine_case(&case, options(), None, &cpu, &mut |_| {});
        assert_eq!(clean, CaseResult::Pass);
        case.faults = vec![Fault::ParamsNotUploaded];
        let (faulty, _) = run_engine_case(&case, options(), None, &cpu, &mut |_| {});
        match &faulty {
            CaseResult::InvariantViolation {
                op_index, check, ..
            } => {
                assert_eq!(check, crate::worker::physics::PHYSICS, "{faulty}");
                assert_eq!(*op_index, Some(13), "{faulty}");
            }
            other => panic!("{other}"),
        }
    }
}
