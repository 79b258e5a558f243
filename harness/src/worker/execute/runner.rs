//! One run of a case, op by op: building (or rebuilding) the engine, the per-op oracle
//! schedule and the `model` oracle. The sampled checks (restart, physics, the CUDA shadow) are in
//! `sampled_checks`.

use forcefield::{
    Backend, Checkpoint, CpuBackend, Engine, EngineConfig, EngineError, FaultSet, GraphSpec,
    GrowthPolicy,
};

use super::apply::{check, check_retrying};
use super::fault_tolerance::{apply_tolerating, with_read_retry, Armed, State};
use super::result::{tolerance, Breadcrumb, CaseResult, Run, Stop, END_OP, INIT_OP};
use super::sampled_checks::{differential, restart_checkpoint, Sampled, StepSamples};
use crate::case::{BackendKind, Case, Op};
use crate::worker::model::{Observed, ReferenceModel};
use crate::worker::oracle::AfterOp;

/// The CPU backend with `threads` threads (0: every core), as the executor opens it.
pub(super) fn cpu_backend(threads: usize) -> CpuBackend {
    if threads == 0 {
        CpuBackend::new()
    } else {
        CpuBackend::with_threads(threads)
    }
}

/// One run of a case and the state its checks keep between ops.
pub(super) struct Runner<'a, Bk: Backend> {
    pub(super) case: &'a Case,
    pub(super) make: &'a dyn Fn() -> Result<Bk, String>,
    pub(super) threads: usize,
    pub(super) which: Run,
    pub(super) config: EngineConfig,
    pub(super) faults: FaultSet,
    pub(super) armed: Armed,
    /// The CPU engine a CUDA case is compared with (checked run only).
    pub(super) shadow: Option<Engine<CpuBackend>>,
    /// Which step ops restart equivalence and the physics reference sample (checked run only).
    pub(super) samples: StepSamples,
    /// Whether to run the model oracle (checked run only).
    pub(super) use_model: bool,
    /// What the engine must hold (checked run with `use_model`).
    pub(super) model: Option<ReferenceModel>,
}

impl<'a, Bk: Backend> Runner<'a, Bk> {
    pub(super) fn new(
        case: &'a Case,
        make: &'a dyn Fn() -> Result<Bk, String>,
        threads: usize,
        which: Run,
    ) -> Self {
        let growth = match which {
            Run::Checked => GrowthPolicy::default(),
            Run::OtherCapacity => Case::OTHER_GROWTH,
        };
        Runner {
            case,
            make,
            threads,
            which,
            config: case.engine_config(growth),
            faults: FaultSet::of(&case.faults),
            armed: Armed::default(),
            shadow: None,
            samples: StepSamples::default(),
            use_model: false,
            model: None,
        }
    }

    pub(super) fn checked(&self) -> bool {
        self.which == Run::Checked
    }

    pub(super) fn backend(&self) -> Result<Bk, CaseResult> {
        (self.make)().map_err(|message| CaseResult::Environment { message })
    }

    /// Runs the ops (from op `from.0` on an engine rebuilt from `from.1`, or all of them on a new
    /// engine); the final positions, or why it stopped.
    pub(super) fn run(
        &mut self,
        spec: &GraphSpec,
        from: Option<(usize, Checkpoint)>,
        crumbs: &mut dyn FnMut(Breadcrumb),
    ) -> Result<Vec<[f32; 3]>, Stop> {
        let rerun = self.which == Run::OtherCapacity;
        crumbs(Breadcrumb {
            op_index: None,
            op: INIT_OP,
            rerun,
        });
        let (mut engine, start) = match &from {
            None => (self.build(spec)?, 0),
            Some((index, checkpoint)) => (self.rebuild(*index, checkpoint)?, *index),
        };
        let case = self.case;
        for (index, op) in case.ops.iter().enumerate().skip(start) {
            let name = op.name();
            crumbs(Breadcrumb {
                op_index: Some(index),
                op: name,
                rerun,
            });
            if let Op::Inject { fault } = op {
                self.armed.arm(fault, &engine.injections_fired());
                engine.inject(*fault);
                continue;
            }
            let sampled = if self.checked() {
                self.samples.before(op, engine.num_nodes(), engine.params())
            } else {
                Sampled::default()
            };
            let restart = sampled
                .restart
                .then(|| restart_checkpoint(engine.checkpoint()));
            let physics = sampled.physics.then(|| engine.checkpoint().clone());
            let retrying = from.is_some() && index == start;
            let after = self.apply_tolerant(&mut engine, index, op, retrying)?;
            if self.checked() {
                check_retrying(&mut engine, Some(index), name, after)?;
                self.check_model(&mut engine, Some(index), op)?;
                if let (Some(checkpoint), Op::Step { count }) = (restart, op) {
                    self.check_restart(&mut engine, &checkpoint, *count, index, name)?;
                }
                self.check_shadow(&mut engine, index, op)?;
                if let Some(checkpoint) = physics {
                    self.check_physics(&checkpoint, index, name)?;
                }
            }
            self.samples.after(op);
        }
        with_read_retry(&mut engine, |e| e.positions())
            .map_err(|e| CaseResult::engine_error(None, END_OP, &e).into())
    }

    /// A new engine holding the case's graph (and, in a checked CUDA run, its CPU shadow).
    pub(super) fn build(&mut self, spec: &GraphSpec) -> Result<Engine<Bk>, Stop> {
        let fail_init = |e: EngineError| Stop::from(CaseResult::engine_error(None, INIT_OP, &e));
        let mut engine = Engine::with_config(
            self.backend()?,
            spec,
            self.case.initial_params(),
            self.config,
            self.faults,
        )
        .map_err(fail_init)?;
        if self.which == Run::OtherCapacity {
            // Below the case limits, which are below u32::MAX.
            let (nodes, edges) = self.case.capacity_rerun_reserve();
            let to_u32 = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
            engine
                .reserve(to_u32(nodes), to_u32(edges))
                .map_err(fail_init)?;
        }
        if self.checked() {
            if self.case.backend == BackendKind::Cuda {
                let shadow = Engine::with_config(
                    cpu_backend(self.threads),
                    spec,
                    self.case.initial_params(),
                    self.config,
                    self.faults,
                )
                .map_err(|e| differential(None, INIT_OP, format!("the CPU engine fails: {e}")))?;
                self.shadow = Some(shadow);
            }
            check(&mut engine, None, INIT_OP, AfterOp::Other)?;
            if self.use_model {
                self.model = Some(ReferenceModel::new(spec, self.case.initial_params()));
            }
            self.check_model(&mut engine, None, &Op::ReadPositions)?;
        }
        Ok(engine)
    }

    /// The `model` oracle after `op` (index `None`: construction): the model applies the op by its
    /// definition, and the engine's observable state must be the model's.
    pub(super) fn check_model(
        &mut self,
        engine: &mut Engine<Bk>,
        index: Option<usize>,
        op: &Op,
    ) -> Result<(), Stop> {
        let Some(model) = self.model.as_mut() else {
            return Ok(());
        };
        let name = index.map_or(INIT_OP, |_| op.name());
        let seen = with_read_retry(engine, Observed::read)
            .map_err(|e| CaseResult::engine_error(index, name, &e))?;
        model
            .check_after(op, true, &seen)
            .map_err(|v| CaseResult::violation(index, name, v).into())
    }

    /// The engine of a poisoned process, rebuilt from its checkpoint in this one: its state must be
    /// the checkpoint's (the "state before the op" of the op about to be retried).
    pub(super) fn rebuild(
        &mut self,
        index: usize,
        checkpoint: &Checkpoint,
    ) -> Result<Engine<Bk>, Stop> {
        let name = self.case.ops.get(index).map_or("unknown", Op::name);
        let mut engine =
            Engine::from_checkpoint(self.backend()?, checkpoint, self.config, self.faults)
                .map_err(|e| {
                    CaseResult::not_tolerated(
                        index,
                        name,
                        tolerance::NO_RECOVERY,
                        format!("cannot rebuild the engine from its checkpoint: {e}"),
                    )
                })?;
        let now = State::read(&mut engine).map_err(|e| {
            CaseResult::not_tolerated(index, name, tolerance::UNREADABLE, e.to_string())
        })?;
        if let Some(d) = now.difference(&State::of_checkpoint(checkpoint)) {
            return Err(CaseResult::not_tolerated(
                index,
                name,
                tolerance::STATE_CHANGED,
                format!("the engine rebuilt from the checkpoint differs from it: {d}"),
            )
            .into());
        }
        if self.checked() && self.case.backend == BackendKind::Cuda {
            let shadow = Engine::from_checkpoint(
                cpu_backend(self.threads),
                checkpoint,
                self.config,
                self.faults,
            )
            .map_err(|e| differential(Some(index), name, format!("the CPU engine fails: {e}")))?;
            self.shadow = Some(shadow);
        }
        if self.checked() && self.use_model {
            self.model = Some(ReferenceModel::from_checkpoint(checkpoint));
        }
        Ok(engine)
    }

    /// [`apply_tolerating`] with the state before the op taken when a fault is armed.
    /// `retrying`: the op already failed in a poisoned process, so this is its retry.
    pub(super) fn apply_tolerant(
        &mut self,
        engine: &mut Engine<Bk>,
        index: usize,
        op: &Op,
        retrying: bool,
    ) -> Result<AfterOp, Stop> {
        // Taken from the checkpoint (no device read, so no armed copy fault fires for it).
        let before = self
            .armed
            .any_pending(&engine.injections_fired())
            .then(|| State::of_checkpoint(engine.checkpoint()));
        let checked = self.checked();
        apply_tolerating(
            engine,
            index,
            op,
            checked,
            before,
            retrying,
            &mut self.armed,
        )
    }
}
