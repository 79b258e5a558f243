/*!
Running a `forcefield-case/1` case on any engine behind the [`Target`] trait, with the generic
checks that need nothing of the engine but what it declares.

This is the executor of every case: another engine's (`forcefield run --target`) and Forcefield's
own ([`crate::worker::engine_case`]), and it sees only the trait. Each op of the case goes through
the trait; an op whose capability the target does not declare is skipped and counted.
A case's parameters (its initial ones and its `set_params` ops) are Forcefield's own, which no
other engine reads: they reach only a target run with [`CaseParams::Send`] (Forcefield's engine,
[`crate::worker::engine_target`]); for any other, `set_params` is skipped and `create` gets none.
After every op that ran, the checks of [`TARGET_CHECKS`] whose capability the target has:

| check | needs | what must hold |
|---|---|---|
| `positions-finite` | — | every coordinate is finite |
| `positions-count` | — | one position per live node (the count the accepted ops leave) |
| `rejected-unchanged` | — | an op the target refuses (`Rejected`) leaves positions and counts as they were |
| `determinism` | — | a second run of the case from `create` gives the same bits after every op (sampled: small cases) |
| `sssp-dijkstra` | `sssp` | distances equal a Dijkstra over the edges the ops left, bit for bit |
| `checkpoint-round-trip` | `checkpoint` | after a step, `restore` of a checkpoint gives back the positions, and a step from it the same positions as from the original (first [`CHECKPOINT_SAMPLES`] step ops) |
| `counts-consistent` | `counts` | the reported counts are the live ones, capacities at least the counts |
| `grid-stage` | `grid` | after a step, the grid stage's keys are one per node and below the cell count, its order a permutation of the nodes sorted by key, its cell ranges exactly each key's run |
| `csr-edges` | `csr` | after create and every edit, the CSR holds exactly the edge multiset the ops left, both directions |
| `device-memory` | `device-memory` | after `shrink_to_fit`, no more device memory than after an earlier `shrink_to_fit` at the same live counts (a leak shows as more) |
| `counts-within-capacity` | `counts`, `buffers` | before the other state checks of the first run, the live counts are within the capacities and every buffer's live length within its allocation |
| `memory-accounting` | `device-memory`, `buffers` | likewise, the device memory in use is exactly the bytes of the buffers' allocations (a leak shows at once) |
| `differential` | — | when the host gives a shadow target (Forcefield's CPU engine beside a CUDA case's), the shadow applies every accepted op but `inject`, and after each step the positions agree within [`oracle::DIFFERENTIAL_TOLERANCE`] |
| `positions-in-bounds` | — | Forcefield's engine only: after a step, every coordinate within the viewport of the parameters the ops left |
| `restart-equivalence` | `checkpoint`, `velocities` | Forcefield's engine only, with a target to rebuild on: a checkpoint taken before a sampled step op, restored there and stepped as the op, gives the target's positions and velocities |
| `capacity-invariance` | `capacity` | when the host asks for it, a re-run with an early `reserve` (on a target it may configure to grow otherwise) ends at the same bits; an error only there is a violation |

A target's `Internal` error, its death (signal, exit code, a Rust panic read from its stderr), a
hang it was killed for and a broken protocol are failures too ([`TargetFailure`]), signed like a
worker's: class, detail, and the op as the site.

The executor knows nothing of processes: the target may be a [`forcefield_target::ProcessTarget`]
(as in a worker, [`crate::worker::target_job`]) or a Rust value in this process.

Forcefield's own engine runs every case through this file too ([`crate::worker::engine_case`]:
`run`, `selftest`, `ci`, `repro`, `minimize`, the corpus replay, `--target builtin`), with
[`Semantics::Forcefield`]: our engine's own checks, in a fixed order, with fixed sampling and
signatures, which the self-test's snapshot and the corpus's expectations pin.
*/

use std::collections::{BTreeMap, BTreeSet};

use forcefield_target::{
    Capabilities, Capability, Csr, Death, ExitKind, Graph, Point, Target, TargetError,
};
use serde::{Deserialize, Serialize};

use crate::case::{Case, Op};
// Leaf files of `worker/execute/`, not its `mod.rs` (which runs cases through this file).
use crate::worker::engine_target::EngineTarget;
use crate::worker::execute::fault_tolerance::MAX_ATTEMPTS;
use crate::worker::execute::result::{tolerance, Breadcrumb, CaseResult, END_OP, INIT_OP};
use crate::worker::execute::sampled_checks::{Sampled, StepSamples};
use crate::worker::execute::wire::{bits3, ResumePoint, WireCheckpoint};
use crate::worker::model::{Observed, ReferenceModel};
use crate::worker::oracle::{self, Violation};
use crate::worker::physics;
use crate::worker::shadow::{self, ShadowStop};

/// The stable names of the target checks (they end up in signatures).
pub mod checks {
    /// Every coordinate is finite.
    pub const POSITIONS_FINITE: &str = crate::worker::oracle::checks::POSITIONS_FINITE;
    /// One position per live node.
    pub const POSITIONS_COUNT: &str = "positions-count";
    /// A refused op changes nothing.
    pub const REJECTED_UNCHANGED: &str = "rejected-unchanged";
    /// A second run gives the same bits.
    pub const DETERMINISM: &str = "determinism";
    /// SSSP equals Dijkstra, bit for bit.
    pub const SSSP_DIJKSTRA: &str = crate::worker::oracle::checks::SSSP_DIJKSTRA;
    /// `restore` of a checkpoint continues bit for bit.
    pub const CHECKPOINT_ROUND_TRIP: &str = "checkpoint-round-trip";
    /// Reported counts and capacities agree with the live counts.
    pub const COUNTS_CONSISTENT: &str = "counts-consistent";
    /// The grid stage is a sort of the nodes by cell key with matching cell ranges.
    pub const GRID_STAGE: &str = "grid-stage";
    /// The CSR holds the live edge multiset.
    pub const CSR_EDGES: &str = "csr-edges";
    /// Device memory after `shrink_to_fit` does not grow at the same counts.
    pub const DEVICE_MEMORY: &str = "device-memory";
    /// Live counts within capacities, every buffer's length within its allocation.
    pub const COUNTS_WITHIN_CAPACITY: &str = crate::worker::oracle::checks::COUNTS_WITHIN_CAPACITY;
    /// The device holds exactly the bytes of the buffers' allocations.
    pub const MEMORY_ACCOUNTING: &str = crate::worker::oracle::checks::MEMORY_ACCOUNTING;
    /// A re-run under other capacities ends at the same bits.
    pub const CAPACITY_INVARIANCE: &str = crate::worker::oracle::checks::CAPACITY_INVARIANCE;
    /// Positions agree with a shadow target's after every step (our engine's CUDA cases).
    pub const DIFFERENTIAL: &str = crate::worker::oracle::checks::DIFFERENTIAL;
    /// The reference model's checks (`model-counts`, `model-edges`, `model-constraints`,
    /// `model-positions`, `model-velocities`), as one entry of the plan.
    pub const MODEL: &str = "model";
    /// One step from a checkpoint is the documented force law's (our engine's).
    pub const PHYSICS: &str = crate::worker::physics::PHYSICS;
    /// Every coordinate within the viewport after a step (our engine clamps to it).
    pub const POSITIONS_IN_BOUNDS: &str = crate::worker::oracle::checks::POSITIONS_IN_BOUNDS;
    /// A target rebuilt from the checkpoint before a step op reaches the same state.
    pub const RESTART_EQUIVALENCE: &str = crate::worker::oracle::checks::RESTART_EQUIVALENCE;
}

/// The kind (the leading word of an `Internal` error's message) with which Forcefield's engine
/// says that this process can get no new device context (CUDA after a real trap): with
/// [`Semantics::Forcefield`] the run then ends in [`CaseResult::Poisoned`], its [`ResumePoint`]
/// read through [`Target::checkpoint`], and a fresh process continues the case
/// ([`resume_target_case_with`]).
pub const PROCESS_POISONED: &str = "ProcessPoisoned";
/// The kind of Forcefield's engine's sticky error (a lost context): an engine error it signs
/// `engine-error:sticky`, and whose worker is retired.
pub const CONTEXT_LOST: &str = "ContextLost";
/// The kind of Forcefield's engine's error when no backend opens here (no CUDA device): the case
/// cannot run here, a [`CaseResult::Environment`] (the rest of the message says why), not a
/// finding.
pub const NO_BACKEND: &str = "NoBackend";

/// The environment result of an error that says no backend opens here ([`NO_BACKEND`]).
fn no_backend(e: &TargetError) -> Option<CaseResult> {
    let TargetError::Internal(m) = e else {
        return None;
    };
    let why = m.strip_prefix(NO_BACKEND)?.strip_prefix(": ")?;
    Some(CaseResult::Environment {
        message: why.to_string(),
    })
}

/// One generic check and the capabilities it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetCheck {
    /// Its stable name ([`checks`]).
    pub name: &'static str,
    /// The capabilities without which it cannot run (none: every target).
    pub needs: &'static [Capability],
    /// Whether it runs only where the host knows the target to be Forcefield's engine (a second
    /// engine to re-run on, or [`Semantics::Forcefield`]).
    pub forcefield_only: bool,
}

/// Every check of a target campaign.
pub const TARGET_CHECKS: [TargetCheck; 17] = [
    TargetCheck {
        name: checks::POSITIONS_FINITE,
        needs: &[],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::POSITIONS_COUNT,
        needs: &[],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::REJECTED_UNCHANGED,
        needs: &[],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::DETERMINISM,
        needs: &[],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::SSSP_DIJKSTRA,
        needs: &[Capability::Sssp],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::CHECKPOINT_ROUND_TRIP,
        needs: &[Capability::Checkpoint],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::COUNTS_CONSISTENT,
        needs: &[Capability::Counts],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::GRID_STAGE,
        needs: &[Capability::Grid],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::CSR_EDGES,
        needs: &[Capability::Csr],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::DEVICE_MEMORY,
        needs: &[Capability::DeviceMemory],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::COUNTS_WITHIN_CAPACITY,
        needs: &[Capability::Counts, Capability::Buffers],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::MEMORY_ACCOUNTING,
        needs: &[Capability::DeviceMemory, Capability::Buffers],
        forcefield_only: false,
    },
    TargetCheck {
        name: checks::CAPACITY_INVARIANCE,
        needs: &[Capability::Capacity],
        forcefield_only: true,
    },
    TargetCheck {
        name: checks::MODEL,
        needs: &[
            Capability::Counts,
            Capability::Csr,
            Capability::Velocities,
            Capability::Attributes,
        ],
        forcefield_only: true,
    },
    TargetCheck {
        name: checks::PHYSICS,
        needs: &[Capability::Checkpoint, Capability::Grid],
        forcefield_only: true,
    },
    TargetCheck {
        name: checks::POSITIONS_IN_BOUNDS,
        needs: &[],
        forcefield_only: true,
    },
    TargetCheck {
        name: checks::RESTART_EQUIVALENCE,
        needs: &[Capability::Checkpoint, Capability::Velocities],
        forcefield_only: true,
    },
];

/// The checks a target with `caps` gets, and those skipped for want of a capability.
pub fn plan_checks(caps: &Capabilities) -> (Vec<TargetCheck>, Vec<TargetCheck>) {
    TARGET_CHECKS
        .iter()
        .partition(|c| c.needs.iter().all(|&need| caps.has(need)))
}

/// Step ops after which the checkpoint round trip runs, per run.
pub const CHECKPOINT_SAMPLES: usize = 2;
/// A case is run twice for `determinism` when it adds at most this many nodes in all...
pub const DETERMINISM_MAX_NODES: u64 = 512;
/// ... and takes at most this many steps in all: the second run doubles the case's cost, so only
/// cheap cases pay it (and a minimized case, being smaller, is still sampled).
pub const DETERMINISM_MAX_STEPS: u64 = 400;

/// Whether a case's parameters reach the target: they are [`forcefield::SimParams`], whose fields
/// only Forcefield's engine reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaseParams {
    /// Neither `create` nor `set_params` gets them (any engine but Forcefield's).
    #[default]
    Skip,
    /// `create` gets the case's initial parameters and every `set_params` op is sent, as a JSON
    /// object of `SimParams` fields (the target must declare [`Capability::Params`]).
    Send,
}

impl CaseParams {
    /// Whether a target with `caps` gets the case's parameters.
    fn sent(self, caps: &Capabilities) -> bool {
        self == CaseParams::Send && caps.has(Capability::Params)
    }
}

/// What the host knows of a target beyond its capabilities: whose semantics it has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Semantics {
    /// Only the case format's: the generic checks (any engine but Forcefield's).
    #[default]
    CaseFormat,
    /// Forcefield's engine's: where a new node starts, its mass, what a constraint stores, the
    /// force law, and a checkpoint that is a [`WireCheckpoint`]. In the first run our engine's
    /// own oracles run, by their names and in a fixed order: `positions-in-bounds` after a
    /// step, the grid's sort and cell-range checks after a step or resize, `csr-valid` after
    /// every op, the reference model ([`ReferenceModel`], `model-*`, in place of
    /// `counts-consistent`) after `create` and every op; with [`TargetRun::rebuild`],
    /// `restart-equivalence` and the physics reference ([`physics::check_step`]) on the step ops
    /// that [`StepSamples`] picks. A refusal or own error of an op is an engine error
    /// (`engine-error:<op>`).
    Forcefield,
}

/// Why an op of a case is not sent to a target, when it is not.
pub fn skip_reason(op: &Op, caps: &Capabilities, params: CaseParams) -> Option<&'static str> {
    let needs = |c: Capability, reason: &'static str| (!caps.has(c)).then_some(reason);
    match op {
        Op::SetParams { .. } => {
            (!params.sent(caps)).then_some("set_params (Forcefield's own parameters)")
        }
        Op::Reserve { .. } => needs(Capability::Capacity, "reserve (needs capacity)"),
        Op::ShrinkToFit => needs(Capability::Capacity, "shrink_to_fit (needs capacity)"),
        Op::Sssp { .. } => needs(Capability::Sssp, "sssp (needs sssp)"),
        Op::Inject { .. } => needs(Capability::Inject, "inject (needs inject)"),
        Op::SetPositionConstraint { .. } => needs(
            Capability::Constraints,
            "set_position_constraint (needs constraints)",
        ),
        Op::SetDistanceConstraint { .. } => needs(
            Capability::Constraints,
            "set_distance_constraint (needs constraints)",
        ),
        Op::ClearConstraints => needs(
            Capability::Constraints,
            "clear_constraints (needs constraints)",
        ),
        Op::AddNodes { .. }
        | Op::RemoveNodes { .. }
        | Op::AddEdges { .. }
        | Op::RemoveEdges { .. }
        | Op::Step { .. }
        | Op::ReadPositions => None,
    }
}

/// A defect of the target shown by an error rather than by a check: its `Internal` error, its
/// death, a hang, a protocol violation. Signed `class:detail:op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFailure {
    /// `engine-error` (an `Internal` error), `signal`, `exit`, `panic`, `hang`, `protocol-error`.
    pub class: String,
    /// The signal's name, the exit code, the panic's `file:line:column`, the error's kind (a
    /// leading exception type such as `ValueError`), or empty.
    pub detail: String,
    /// The op's index in the case (`None`: `create`).
    pub op_index: Option<usize>,
    /// The op's name, the site of the signature.
    pub op: String,
    /// One line: what happened.
    pub message: String,
}

impl TargetFailure {
    /// The failure of `error` during op `op`.
    pub fn of(error: &TargetError, op_index: Option<usize>, op: &str) -> Self {
        let (class, detail) = match error {
            TargetError::Internal(m) => ("engine-error", error_kind(m)),
            TargetError::Unsupported(_) => ("engine-error", "unsupported".to_string()),
            TargetError::Rejected(_) => ("engine-error", "rejected".to_string()),
            TargetError::Died(death) => death_class(death),
            TargetError::Hung { .. } => ("hang", String::new()),
            TargetError::Protocol(_) => ("protocol-error", String::new()),
        };
        TargetFailure {
            class: class.to_string(),
            detail,
            op_index,
            op: op.to_string(),
            message: one_line(&error.to_string()),
        }
    }

    /// Whether the target process is gone (it died, hung or broke the protocol): a host starts a
    /// new one for the next case.
    pub fn process_gone(&self) -> bool {
        self.class != "engine-error"
    }
}

/// A stable kind for an error message: a leading identifier followed by `(` or `:` (an exception
/// type, `ValueError('...')`), else `internal`. Messages carry numbers that change from case to
/// case; the kind does not, so minimization keeps to one bug.
fn error_kind(message: &str) -> String {
    let ident: String = message
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        .collect();
    let next = message[ident.len()..].chars().next();
    if !ident.is_empty() && matches!(next, Some('(' | ':')) && ident.len() <= 64 {
        ident
    } else {
        "internal".to_string()
    }
}

/// Whether an `Internal` error's message says the process is poisoned ([`PROCESS_POISONED`]).
fn is_poisoned(message: &str) -> bool {
    error_kind(message) == PROCESS_POISONED
}

/// How a death is signed: by its signal, by a Rust panic's location when its stderr says so, else
/// by its exit code.
fn death_class(death: &Death) -> (&'static str, String) {
    match &death.exit {
        ExitKind::Signal(signal) => ("signal", signal.clone()),
        ExitKind::Code(code) => match death.stderr_tail.iter().find_map(|l| panic_location(l)) {
            Some(location) => ("panic", location),
            None => ("exit", code.to_string()),
        },
    }
}

/// `file:line:column` of a Rust panic line (`thread 'main' panicked at src/a.rs:3:5:`), the file
/// cut to its last three components so that the build machine's paths stay out of signatures.
fn panic_location(line: &str) -> Option<String> {
    let rest = line.split("panicked at ").nth(1)?;
    let location = rest.trim_end().trim_end_matches(':');
    let location = location.split_whitespace().next()?.trim_end_matches(':');
    let parts: Vec<&str> = location.split('/').collect();
    let keep = parts.len().saturating_sub(3);
    Some(parts[keep..].join("/"))
}

fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = line.chars().take(500).collect();
    if cut.len() < line.len() {
        cut.push_str(" ...");
    }
    cut
}

/// What a target run reports beside its case result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetReport {
    /// The target's defect, when an error rather than a check showed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<TargetFailure>,
    /// Ops not sent, by reason ([`skip_reason`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_ops: BTreeMap<String, u64>,
    /// Ops the target refused (`Rejected`).
    #[serde(default)]
    pub rejected_ops: u64,
    /// The checks that ran at least once.
    #[serde(default)]
    pub checks_run: BTreeSet<String>,
}

/// How a case is run on a target, beyond the case: what the host knows of the target.
#[derive(Default)]
pub struct TargetRun<'a> {
    /// Whether the case's parameters are sent.
    pub params: CaseParams,
    /// The target of the `capacity-invariance` re-run (`None`: no re-run), fresh, and configured
    /// by the host to grow otherwise where it can (Forcefield's engine: growth factor 3): the case
    /// is run on it again, with [`Case::capacity_rerun_reserve`] reserved right after `create`,
    /// and must end at the first run's bits. Skipped when it lacks [`Capability::Capacity`].
    pub capacity_rerun: Option<&'a mut dyn Target>,
    /// The target of the `differential` check (`None`: none): a reference the host trusts
    /// (Forcefield's CPU engine beside a CUDA case's engine), fed the same ops in the first run.
    pub shadow: Option<&'a mut dyn Target>,
    /// Whose semantics the target has: Forcefield's gets the reference model and the physics
    /// reference too.
    pub semantics: Semantics,
    /// A second target of the same engine, which the checks that rebuild from a checkpoint
    /// restore into, a fresh engine built from one (`None`: none). With it and
    /// [`Semantics::Forcefield`], `restart-equivalence` and `physics` sample the step ops that
    /// [`StepSamples`] picks, from the state before the op, and
    /// `checkpoint-round-trip` (a restore into the target under test) does not run.
    pub rebuild: Option<Rebuild<'a>>,
    /// No `determinism` run (Forcefield's engine on the harness's default path: the sampled
    /// restart-equivalence check covers what a second run would, at a fraction of its cost).
    pub skip_determinism: bool,
    /// No reference model even where [`Semantics::Forcefield`] would run it (only to measure what
    /// it costs a campaign).
    pub skip_model: bool,
}

/// The target the checks that rebuild from a checkpoint use, and how they compare.
pub struct Rebuild<'a> {
    /// A fresh target of the same engine and backend, configured as the one under test.
    /// Forcefield's engine (the rebuild reads the grid's geometry as the engine keeps it, with
    /// no read-back of the whole grid stage).
    pub target: &'a mut EngineTarget,
    /// Whether restart equivalence compares bit for bit (the CPU backend), else within
    /// [`oracle::DIFFERENTIAL_TOLERANCE`] (CUDA).
    pub exact: bool,
}

/// Runs `case` on `target` (the first run, then the determinism run when sampled), reporting each
/// op to `on_op` before it is sent. The case's parameters are not sent ([`CaseParams::Skip`]) and
/// there is no capacity re-run.
pub fn run_target_case(
    target: &mut dyn Target,
    case: &Case,
    on_op: &mut dyn FnMut(Breadcrumb),
) -> (CaseResult, TargetReport) {
    run_target_case_with(target, case, TargetRun::default(), on_op)
}

/// [`run_target_case`] as `how` says: the case's parameters sent, a capacity re-run (after the
/// first run, before the determinism run).
pub fn run_target_case_with(
    target: &mut dyn Target,
    case: &Case,
    how: TargetRun<'_>,
    on_op: &mut dyn FnMut(Breadcrumb),
) -> (CaseResult, TargetReport) {
    resume_target_case_with(target, case, how, None, on_op)
}

/// [`run_target_case_with`], continuing from `resume` when given: the case of a process that
/// was poisoned ([`CaseResult::Poisoned`]), in a fresh process. The run that
/// lost its process (the first, or the capacity re-run, whose comparison then takes the first
/// run's positions from the resume point) goes on from the checkpoint restored into its
/// target, whose state must be the checkpoint's; op `from_op` is retried and the rest run with
/// the checks as before. A resumed case has no `determinism` run (the first run's trace is gone).
pub fn resume_target_case_with(
    target: &mut dyn Target,
    case: &Case,
    how: TargetRun<'_>,
    resume: Option<&ResumePoint>,
    on_op: &mut dyn FnMut(Breadcrumb),
) -> (CaseResult, TargetReport) {
    let TargetRun {
        params,
        capacity_rerun,
        mut shadow,
        semantics,
        mut rebuild,
        skip_determinism,
        skip_model,
    } = how;
    let mut report = TargetReport::default();
    if let Some(r) = resume {
        if r.from_op >= case.ops.len() {
            let message = format!(
                "resume point at op {} of a case of {} ops",
                r.from_op,
                case.ops.len()
            );
            return (CaseResult::Invalid { message }, report);
        }
    }
    let caps = target.info().capabilities;
    let trace = match resume {
        Some(r) if r.rerun => {
            let Some(first) = &r.first_positions else {
                let message = "the resume point of a re-run lacks the first run's positions";
                let result = CaseResult::Invalid {
                    message: message.into(),
                };
                return (result, report);
            };
            vec![(None, first.clone())]
        }
        _ => {
            let mut run = Run::new(target, &caps, params, &mut report, None);
            run.semantics = semantics;
            run.resumable = semantics == Semantics::Forcefield;
            run.skip_model = skip_model;
            run.resume = resume;
            // Reborrowed for the first run only, its object's lifetime shortened to the run's.
            run.shadow = shadow.as_mut().map(|s| &mut **s as &mut dyn Target);
            run.sim_params = case.initial_params();
            if let Some(r) = rebuild.as_mut() {
                run.rebuild = Some(&mut *r.target);
                run.restart_exact = r.exact;
            }
            match run.go(case, on_op) {
                Ok(trace) => trace,
                Err(stop) => return stop.into_result(case, report),
            }
        }
    };
    if let (Some(other), Some((_, last))) = (capacity_rerun, trace.last()) {
        let resumable = semantics == Semantics::Forcefield;
        let rerun_resume = resume.filter(|r| r.rerun);
        let rerun = RerunFrom {
            resumable,
            resume: rerun_resume,
        };
        if let Err(stop) =
            capacity_rerun_check(other, case, params, &mut report, last, rerun, on_op)
        {
            return stop.into_result(case, report);
        }
    }
    if skip_determinism || resume.is_some() || !determinism_sampled(case) {
        return (CaseResult::Pass, report);
    }
    let second = Run::new(target, &caps, params, &mut report, Some(&trace)).go(case, on_op);
    match second {
        Ok(_) => {
            report.checks_run.insert(checks::DETERMINISM.to_string());
            (CaseResult::Pass, report)
        }
        Err(stop) => stop.into_result(case, report),
    }
}

/// How the capacity re-run starts: whether a poisoned process ends it with a resume point, and
/// the resume point it continues from.
#[derive(Clone, Copy, Default)]
struct RerunFrom<'a> {
    resumable: bool,
    resume: Option<&'a ResumePoint>,
}

/// `capacity-invariance`: the case again on `other` with an early reserve, no checks on the way,
/// its final positions against the first run's `first` ([`oracle::check_capacity_invariance`]).
/// An engine error only there is a violation of the check at its op; a death stays a failure.
fn capacity_rerun_check(
    other: &mut dyn Target,
    case: &Case,
    params: CaseParams,
    report: &mut TargetReport,
    first: &Bits,
    from: RerunFrom<'_>,
    on_op: &mut dyn FnMut(Breadcrumb),
) -> Result<(), Stop> {
    let caps = other.info().capabilities;
    if !caps.has(Capability::Capacity) {
        return Ok(());
    }
    let mut run = Run::new(other, &caps, params, report, None);
    run.rerun = true;
    run.resumable = from.resumable;
    run.resume = from.resume;
    let second = match run.go(case, on_op) {
        Ok(trace) => trace,
        // Its resume point carries the first run's positions, to compare with at the end.
        Err(Stop::Poisoned(mut poisoned)) => {
            poisoned.rerun = true;
            poisoned.first = Some(first.clone());
            return Err(Stop::Poisoned(poisoned));
        }
        Err(Stop::Failure(f)) if !f.process_gone() => {
            return Err(Stop::Check {
                op_index: f.op_index,
                op: f.op,
                violation: Violation {
                    check: checks::CAPACITY_INVARIANCE,
                    detail: format!("fails only under the other growth policy: {}", f.message),
                },
            })
        }
        Err(stop) => return Err(stop),
    };
    // A create refused in the re-run leaves nothing to compare.
    let Some((_, second)) = second.last() else {
        return Ok(());
    };
    if !report.checks_run.contains(checks::CAPACITY_INVARIANCE) {
        report
            .checks_run
            .insert(checks::CAPACITY_INVARIANCE.to_string());
    }
    let floats = |b: &Bits| -> Vec<Point> { b.iter().map(|p| p.map(f32::from_bits)).collect() };
    oracle::check_capacity_invariance(&floats(first), &floats(second))
        .map_err(|v| check_failed(None, END_OP, v))
}

/// Whether the case is small enough to be run twice for `determinism`.
pub fn determinism_sampled(case: &Case) -> bool {
    let mut nodes = case.graph.num_nodes;
    let mut steps = 0u64;
    for op in &case.ops {
        match op {
            Op::AddNodes { count, .. } => nodes = nodes.saturating_add(*count),
            Op::Step { count } => steps = steps.saturating_add(*count),
            _ => {}
        }
    }
    nodes <= DETERMINISM_MAX_NODES && steps <= DETERMINISM_MAX_STEPS
}

/// Why a run stopped early.
enum Stop {
    /// A check failed.
    Check {
        op_index: Option<usize>,
        op: String,
        violation: Violation,
    },
    /// The target failed.
    Failure(TargetFailure),
    /// A result of our engine's vocabulary (an injected fault not tolerated, an engine error).
    Result(CaseResult),
    /// The process can get no new device context: the case continues elsewhere.
    Poisoned(Box<Poisoned>),
}

/// Where a run whose process was poisoned stopped, and the state to continue from.
struct Poisoned {
    /// The op during which the context was lost (the one to retry).
    op_index: usize,
    /// What the target said.
    error: String,
    /// The target's checkpoint: the state before the op.
    checkpoint: WireCheckpoint,
    /// Whether the capacity re-run (rather than the first run) stopped.
    rerun: bool,
    /// The first run's final positions, when the re-run stopped.
    first: Option<Bits>,
}

impl Stop {
    fn into_result(self, case: &Case, mut report: TargetReport) -> (CaseResult, TargetReport) {
        match self {
            Stop::Poisoned(p) => {
                let op = case.ops.get(p.op_index).map_or("unknown", Op::name);
                let result = CaseResult::Poisoned {
                    op_index: p.op_index,
                    op: op.to_string(),
                    error: p.error,
                    resume: Box::new(ResumePoint {
                        rerun: p.rerun,
                        from_op: p.op_index,
                        checkpoint: p.checkpoint,
                        first_positions: p.first,
                    }),
                };
                (result, report)
            }
            Stop::Check {
                op_index,
                op,
                violation,
            } => (
                CaseResult::InvariantViolation {
                    op_index,
                    op,
                    check: violation.check.to_string(),
                    detail: violation.detail,
                },
                report,
            ),
            Stop::Failure(failure) => {
                // Readers of the plain reply see an engine error; the driver signs it by the
                // failure.
                let result = CaseResult::EngineError {
                    op_index: failure.op_index,
                    op: failure.op.clone(),
                    error: failure.message.clone(),
                    // A lost device context (our engine says so by the error's kind) retires
                    // the worker as a dead target process does.
                    sticky: failure.process_gone()
                        || matches!(failure.detail.as_str(), CONTEXT_LOST | PROCESS_POISONED),
                };
                report.failure = Some(failure);
                (result, report)
            }
            Stop::Result(result) => (result, report),
        }
    }
}

/// Positions as bits, so that comparisons see `-0.0` and NaN payloads.
type Bits = Vec<[u32; 3]>;

fn floats(b: &Bits) -> Vec<Point> {
    b.iter().map(|p| p.map(f32::from_bits)).collect()
}

fn bits(p: &[Point]) -> Bits {
    p.iter()
        .map(|q| [q[0].to_bits(), q[1].to_bits(), q[2].to_bits()])
        .collect()
}

/// The first node whose bits differ, described, if any.
fn first_difference(a: &Bits, b: &Bits) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} positions, then {}", a.len(), b.len()));
    }
    let i = a.iter().zip(b).position(|(x, y)| x != y)?;
    let f = |x: [u32; 3]| x.map(f32::from_bits);
    Some(format!("node {i} at {:?}, then at {:?}", f(a[i]), f(b[i])))
}

/// The positions after each op that ran (index `None`: after `create`), in order.
type Trace = Vec<(Option<usize>, Bits)>;

/// One run of a case.
struct Run<'a> {
    target: &'a mut dyn Target,
    caps: &'a Capabilities,
    /// Whether the case's parameters are sent ([`CaseParams::sent`]).
    params: CaseParams,
    report: &'a mut TargetReport,
    /// The first run's trace, in the determinism run.
    expect: Option<&'a Trace>,
    trace: Trace,
    /// The live count the accepted ops leave.
    nodes: u64,
    /// The edge multiset the accepted ops leave, in insertion order.
    edges: Vec<forcefield::Edge>,
    /// Positions after the last op, and counts and velocities when the target reports them.
    positions: Bits,
    velocities: Option<Bits>,
    counts: Option<forcefield_target::Counts>,
    /// An injected fault is armed: an `Internal` error is then the fault's, and must change
    /// nothing, unless the target's own count says that no injected fault fired during the op
    /// ([`Target::injections_fired`]).
    armed: bool,
    /// Whether the target answers [`Target::injections_fired`] (until it answers `Unsupported`).
    counts_injections: bool,
    /// Whether the last op failed with an `Internal` error while a fault was armed and, by the
    /// target's count, no injected fault fired: a real failure, not the fault's.
    unfired_error: bool,
    /// The op whose checks are running (the checks after `create`: [`INIT_OP`]), whose engine
    /// error a check's read-back reports ([`Run::must`]).
    checking: Option<&'static str>,
    checkpoints: usize,
    /// Device bytes after `shrink_to_fit`, by live (nodes, edges).
    shrunk_bytes: BTreeMap<(u64, u64), u64>,
    /// The capacity re-run: an early reserve, no checks, the final positions as the one trace
    /// entry.
    rerun: bool,
    /// The `differential` check's shadow target (first run only).
    shadow: Option<&'a mut dyn Target>,
    /// Whose semantics the target has (first run only: the references run there).
    semantics: Semantics,
    /// What the target must hold ([`Semantics::Forcefield`] with the read-backs the model needs).
    model: Option<ReferenceModel>,
    /// Which step ops restart equivalence and physics sample.
    samples: StepSamples,
    /// The parameters the accepted ops leave (what decides whether physics applies).
    sim_params: forcefield::SimParams,
    /// The target the checks that rebuild from a checkpoint restore into (first run only).
    rebuild: Option<&'a mut EngineTarget>,
    /// Whether restart equivalence compares bit for bit (a CPU engine).
    restart_exact: bool,
    /// Whether `observe` follows an accepted step of at least one step on a non-empty layout.
    after_step: bool,
    /// Whether a poisoned process ends the run with a resume point ([`PROCESS_POISONED`]).
    resumable: bool,
    /// Where the run continues from, in a fresh process (first run or capacity re-run).
    resume: Option<&'a ResumePoint>,
    /// Whether the op at hand retries the op that lost the previous process.
    retrying: bool,
    /// No reference model ([`TargetRun::skip_model`]).
    skip_model: bool,
    /// Whether the capacity re-run read the state before the op at hand (from the checkpoint),
    /// so that fault tolerance compares with it.
    state_before_op: bool,
}

/// What sending an op came to: an `sssp` op's source and distances, when it was accepted.
pub(crate) type Sent = Result<Option<(u32, Vec<f32>)>, TargetError>;

/// What an op's call came to, when the run goes on.
enum Answer<T> {
    Done(T),
    Refused(String),
}

impl<'a> Run<'a> {
    fn new(
        target: &'a mut dyn Target,
        caps: &'a Capabilities,
        params: CaseParams,
        report: &'a mut TargetReport,
        expect: Option<&'a Trace>,
    ) -> Self {
        Run {
            target,
            caps,
            params,
            report,
            expect,
            trace: Vec::new(),
            nodes: 0,
            edges: Vec::new(),
            positions: Vec::new(),
            velocities: None,
            counts: None,
            armed: false,
            counts_injections: true,
            unfired_error: false,
            checking: None,
            checkpoints: 0,
            shrunk_bytes: BTreeMap::new(),
            rerun: false,
            shadow: None,
            semantics: Semantics::CaseFormat,
            model: None,
            samples: StepSamples::default(),
            sim_params: forcefield::SimParams::default(),
            rebuild: None,
            restart_exact: true,
            after_step: false,
            resumable: false,
            resume: None,
            retrying: false,
            skip_model: false,
            state_before_op: false,
        }
    }

    /// Whether this is the case's first run, the one whose skipped and refused ops are counted.
    fn first_run(&self) -> bool {
        self.expect.is_none() && !self.rerun
    }

    fn ran(&mut self, check: &str) {
        if !self.report.checks_run.contains(check) {
            self.report.checks_run.insert(check.to_string());
        }
    }

    /// An op's answer: a refusal goes on (and is checked), anything else but success stops.
    fn answer<T>(
        &mut self,
        at: Option<usize>,
        op: &'static str,
        r: Result<T, TargetError>,
    ) -> Result<Answer<T>, Stop> {
        if let (true, Err(e)) = (self.resumable, &r) {
            if let Some(environment) = no_backend(e) {
                return Err(Stop::Result(environment));
            }
        }
        match r {
            Ok(v) => Ok(Answer::Done(v)),
            Err(TargetError::Internal(m)) if self.armed && !self.unfired_error => {
                Ok(Answer::Refused(m))
            }
            // The op that lost the previous process, retried with no injected fault armed.
            Err(e @ (TargetError::Rejected(_) | TargetError::Internal(_))) if self.retrying => {
                Err(Stop::Result(CaseResult::FaultNotTolerated {
                    op_index: at.unwrap_or(0),
                    op: op.to_string(),
                    failure: tolerance::RETRY_FAILED.to_string(),
                    detail: format!(
                        "the retried op failed with no injected fault firing: {}",
                        one_line(&e.to_string())
                    ),
                }))
            }
            // The ops of a validated case are valid for our engine: its refusal, as any error
            // of its own that no injected fault caused, is an engine error, signed
            // `engine-error:<op>` (no refusal to check for changes), or
            // `engine-error:sticky:<op>` when it lost the device context.
            Err(e @ (TargetError::Rejected(_) | TargetError::Internal(_)))
                if self.semantics == Semantics::Forcefield =>
            {
                let sticky = match &e {
                    TargetError::Internal(m) => {
                        matches!(error_kind(m).as_str(), CONTEXT_LOST | PROCESS_POISONED)
                    }
                    _ => false,
                };
                Err(Stop::Result(CaseResult::EngineError {
                    op_index: at,
                    op: op.to_string(),
                    error: one_line(&e.to_string()),
                    sticky,
                }))
            }
            Err(TargetError::Rejected(m)) => Ok(Answer::Refused(m)),
            Err(e) => Err(Stop::Failure(TargetFailure::of(&e, at, op))),
        }
    }

    /// A call made by a check (positions, counts, checkpoint): any error stops the run.
    ///
    /// An engine error (`Internal`) that a check's call reports is signed by the op whose checks
    /// are running ([`Run::checking`]), not by the call (`op`): an engine that runs an op's work
    /// asynchronously (CUDA: kernels are queued, and a fault in one shows at the next
    /// synchronization) reports its failure at whichever read comes first, and which one that is
    /// is the order of the checks, not anything the engine did; the op that launched the work
    /// owns the error, as the engine's own checks signed it when they ran beside the op. A death,
    /// a hang or a broken reply stays the call's: the target was serving that request.
    fn must<T>(
        &mut self,
        at: Option<usize>,
        op: &'static str,
        r: Result<T, TargetError>,
    ) -> Result<T, Stop> {
        r.map_err(|e| {
            let site = match (&e, self.checking) {
                (TargetError::Internal(_), Some(checked)) => checked,
                _ => op,
            };
            Stop::Failure(TargetFailure::of(&e, at, site))
        })
    }

    fn go(mut self, case: &Case, on_op: &mut dyn FnMut(Breadcrumb)) -> Result<Trace, Stop> {
        on_op(Breadcrumb {
            op_index: None,
            op: INIT_OP,
            rerun: !self.first_run(),
        });
        let start = match self.resume {
            Some(resume) => {
                self.restored(case, resume)?;
                resume.from_op
            }
            None => {
                if !self.created(case)? {
                    return Ok(self.trace);
                }
                0
            }
        };
        for (index, op) in case.ops.iter().enumerate().skip(start) {
            if let Some(reason) = skip_reason(op, self.caps, self.params) {
                // Counted once, in the first run.
                if self.first_run() {
                    *self
                        .report
                        .skipped_ops
                        .entry(reason.to_string())
                        .or_default() += 1;
                }
                continue;
            }
            on_op(Breadcrumb {
                op_index: Some(index),
                op: op.name(),
                rerun: !self.first_run(),
            });
            self.retrying = self.resume.is_some() && index == start;
            self.op(index, op)?;
            self.retrying = false;
        }
        if self.rerun {
            let last = bits(&self.read_back(None, END_OP, |t| t.positions())?);
            self.trace.push((None, last));
        }
        Ok(self.trace)
    }

    /// The target continuing a poisoned process's run: `resume`'s checkpoint restored into it
    /// (and into the shadow), its state checked against the checkpoint
    /// (`fault-not-tolerated:no-recovery` when it cannot be restored,
    /// `fault-not-tolerated:state-changed` when it holds another state), and the run's model of
    /// the layout, the reference model and the parameters taken from the checkpoint.
    fn restored(&mut self, case: &Case, resume: &ResumePoint) -> Result<(), Stop> {
        let index = resume.from_op;
        let name = case.ops.get(index).map_or("unknown", Op::name);
        let not_tolerated = |failure: &str, detail: String| {
            Stop::Result(CaseResult::FaultNotTolerated {
                op_index: index,
                op: name.to_string(),
                failure: failure.to_string(),
                detail,
            })
        };
        let checkpoint = resume.checkpoint.to_checkpoint();
        let state = serde_json::to_value(&resume.checkpoint)
            .map_err(|e| not_tolerated(tolerance::NO_RECOVERY, e.to_string()))?;
        self.target.restore(&state).map_err(|e| {
            not_tolerated(
                tolerance::NO_RECOVERY,
                format!("cannot rebuild the engine from its checkpoint: {e}"),
            )
        })?;
        let unreadable = |e: TargetError| not_tolerated(tolerance::UNREADABLE, e.to_string());
        let positions = bits(&self.target.positions().map_err(unreadable)?);
        let velocities = if self.caps.has(Capability::Velocities) {
            Some(bits(&self.target.velocities().map_err(unreadable)?))
        } else {
            None
        };
        let counts = if self.caps.has(Capability::Counts) {
            Some(self.target.counts().map_err(unreadable)?)
        } else {
            None
        };
        let expected = checkpoint_counts(&checkpoint);
        let differs = if counts.is_some_and(|c| c != expected) {
            Some(format!(
                "counts and capacities {expected:?} in the checkpoint, {counts:?} rebuilt"
            ))
        } else if let Some(what) = first_difference(&bits3(&checkpoint.positions), &positions) {
            Some(format!("positions: {what}"))
        } else {
            velocities.as_ref().and_then(|v| {
                first_difference(&bits3(&checkpoint.velocities), v)
                    .map(|what| format!("velocities: {what}"))
            })
        };
        if let Some(d) = differs {
            return Err(not_tolerated(
                tolerance::STATE_CHANGED,
                format!("the engine rebuilt from the checkpoint differs from it: {d}"),
            ));
        }
        if let Some(shadow) = self.shadow.as_mut() {
            shadow.restore(&state).map_err(|e| {
                shadow_failed(Some(index), name, format!("the CPU engine fails: {e}"))
            })?;
        }
        if self.first_run() && self.model_runs() {
            self.model = Some(ReferenceModel::from_checkpoint(&checkpoint));
        }
        self.nodes = u64::from(checkpoint.num_nodes);
        self.edges = checkpoint.edges.clone();
        self.sim_params = checkpoint.params.clone();
        self.positions = positions;
        self.velocities = velocities;
        self.counts = counts;
        Ok(())
    }

    /// Whether the reference model runs on this target: Forcefield's engine with the read-backs
    /// the model needs.
    fn model_runs(&self) -> bool {
        let model_reads = [
            Capability::Counts,
            Capability::Csr,
            Capability::Velocities,
            Capability::Attributes,
        ];
        !self.skip_model
            && self.semantics == Semantics::Forcefield
            && model_reads.iter().all(|&c| self.caps.has(c))
    }

    /// `create` and the checks after it; `false` when the target refused the graph (nothing to
    /// run the ops on).
    fn created(&mut self, case: &Case) -> Result<bool, Stop> {
        let graph = Graph {
            num_nodes: case.graph.num_nodes,
            edges: case.graph.edges.iter().map(to_target_edge).collect(),
            positions: case.graph.positions.clone(),
        };
        // A case's parameters are Forcefield's: unless they are sent, the target starts from its
        // own defaults.
        let params = match &case.params {
            Some(p) if self.params.sent(self.caps) => Some(params_object(p)),
            _ => None,
        };
        let created = self.target.create(&graph, params.as_ref());
        if let (Some(shadow), Ok(())) = (self.shadow.as_mut(), &created) {
            shadow
                .create(&graph, params.as_ref())
                .map_err(|e| shadow_failed(None, INIT_OP, format!("the CPU engine fails: {e}")))?;
        }
        match self.answer(None, INIT_OP, created)? {
            Answer::Done(()) => {}
            // A target that cannot hold the graph has nothing to run the ops on.
            Answer::Refused(_) => {
                self.report.rejected_ops += 1;
                return Ok(false);
            }
        }
        self.nodes = case.graph.num_nodes;
        self.edges = case.graph.edges.clone();
        if self.first_run() && self.model_runs() {
            // A graph the target accepted is within the engine's limits.
            self.model = case
                .graph
                .to_spec()
                .ok()
                .map(|spec| ReferenceModel::new(&spec, case.initial_params()));
        }
        if self.rerun {
            let (nodes, edges) = case.capacity_rerun_reserve();
            let reserved = self.target.reserve(nodes, edges);
            self.must(None, INIT_OP, reserved)?;
        } else {
            // The order of our engine's own checks: the state checks, then the model.
            self.checking = Some(INIT_OP);
            self.observe(None, INIT_OP)?;
            self.capability_checks(None, INIT_OP, None)?;
            self.check_model(None, INIT_OP, &Op::ReadPositions, true)?;
        }
        Ok(true)
    }

    /// Sends `op` to the target; an `sssp` op's distances come back with its source. An accepted
    /// `inject` arms the fault-tolerance rules.
    fn send(&mut self, op: &Op) -> Sent {
        let sent = send_op(&mut *self.target, op);
        if sent.is_ok() && matches!(op, Op::Inject { .. }) {
            self.armed = true;
        }
        sent
    }

    /// `op` under the fault-tolerance guarantee: while an injected fault is armed, an
    /// `Internal` error is the fault's (unless the target's count says that none fired during
    /// the op: then it is returned as the op's own failure); the state must then be as
    /// before the op (positions, counts and capacities, velocities where reported:
    /// `fault-not-tolerated:state-changed`), and the op is sent again, at most
    /// [`MAX_ATTEMPTS`] times in all (`fault-not-tolerated:retry-failed`), as one armed fault of
    /// each kind fails at most one attempt.
    fn send_tolerating(
        &mut self,
        at: Option<usize>,
        name: &'static str,
        op: &Op,
    ) -> Result<Sent, Stop> {
        let mut attempts = 0;
        loop {
            let fired_before = self.injections_fired_before(op);
            let called = self.send(op);
            self.unfired_error = false;
            let message = match &called {
                Err(TargetError::Internal(m)) if self.resumable && is_poisoned(m) => {
                    return Err(self.poisoned(at, name, m));
                }
                Err(TargetError::Internal(m)) if self.armed && !matches!(op, Op::Inject { .. }) => {
                    if !self.injection_fired_since(fired_before) {
                        // The target counts its injected faults, and none fired during the op:
                        // the failure is its own, whatever is armed (a real error is the
                        // finding, not a fault to retry until it gives up).
                        self.unfired_error = true;
                        return Ok(called);
                    }
                    m.clone()
                }
                _ => return Ok(called),
            };
            attempts += 1;
            let not_tolerated = |failure: &str, detail: String| {
                Stop::Result(CaseResult::FaultNotTolerated {
                    op_index: at.unwrap_or(0),
                    op: name.to_string(),
                    failure: failure.to_string(),
                    detail,
                })
            };
            // The capacity re-run compares only where it read the state before the op.
            if !self.rerun || self.state_before_op {
                if let Some(what) = self.changed_since_observed(at, name)? {
                    return Err(not_tolerated(
                        tolerance::STATE_CHANGED,
                        format!("after `{}`: {what}", one_line(&message)),
                    ));
                }
            }
            if attempts >= MAX_ATTEMPTS {
                return Err(not_tolerated(
                    tolerance::RETRY_FAILED,
                    format!(
                        "still failing after {MAX_ATTEMPTS} attempts: {}",
                        one_line(&message)
                    ),
                ));
            }
        }
    }

    /// The target's count of fired injected faults before `op` is sent, while a fault is armed
    /// and the target answers [`Target::injections_fired`] (`None`: it is not asked, or cannot
    /// tell).
    fn injections_fired_before(&mut self, op: &Op) -> Option<u64> {
        if !self.armed || !self.counts_injections || matches!(op, Op::Inject { .. }) {
            return None;
        }
        match self.target.injections_fired() {
            Ok(n) => Some(n),
            Err(TargetError::Unsupported(_)) => {
                self.counts_injections = false;
                None
            }
            Err(_) => None,
        }
    }

    /// Whether an injected fault fired since the target's count was `before`: by the count where
    /// the target gives one both times, else (the target cannot tell) whenever a fault is armed,
    /// since the failure may be the fault's.
    fn injection_fired_since(&mut self, before: Option<u64>) -> bool {
        let Some(before) = before else {
            return true;
        };
        match self.target.injections_fired() {
            Ok(now) => now != before,
            Err(_) => true,
        }
    }

    /// In the capacity re-run of Forcefield's engine (which observes nothing after its ops),
    /// while an injected fault is armed: the state before `op` from the target's checkpoint (a
    /// host copy: no device read an armed copy fault could hit), as the state the op must leave
    /// as it was if the fault fails it.
    fn rerun_state_before(&mut self, at: Option<usize>, op: &Op) -> Result<bool, Stop> {
        if !self.rerun
            || !self.armed
            || !self.resumable
            || matches!(op, Op::Inject { .. })
            || !self.caps.has(Capability::Checkpoint)
        {
            return Ok(false);
        }
        let read = self.target.checkpoint();
        let state = self.must(at, "checkpoint", read)?;
        let Ok(wire) = WireCheckpoint::deserialize(&state) else {
            return Ok(false);
        };
        let c = wire.to_checkpoint();
        self.positions = bits3(&c.positions);
        self.velocities = self
            .caps
            .has(Capability::Velocities)
            .then(|| bits3(&c.velocities));
        self.counts = self
            .caps
            .has(Capability::Counts)
            .then(|| checkpoint_counts(&c));
        Ok(true)
    }

    /// The stop of a run whose process can get no new device context during op `at`: the
    /// target's checkpoint (the state before the op) as the resume point.
    fn poisoned(&mut self, at: Option<usize>, name: &'static str, message: &str) -> Stop {
        let checkpoint = self
            .target
            .checkpoint()
            .and_then(|state| {
                WireCheckpoint::deserialize(&state)
                    .map_err(|e| TargetError::Protocol(format!("not a checkpoint: {e}")))
            })
            .map_err(|e| Stop::Failure(TargetFailure::of(&e, at, name)));
        match checkpoint {
            Ok(checkpoint) => Stop::Poisoned(Box::new(Poisoned {
                op_index: at.unwrap_or(0),
                error: one_line(message),
                checkpoint,
                rerun: false,
                first: None,
            })),
            Err(stop) => stop,
        }
    }

    /// What differs from the state `observe` last read (positions, counts and capacities, and
    /// velocities where the target reports them), if anything.
    fn changed_since_observed(
        &mut self,
        at: Option<usize>,
        name: &'static str,
    ) -> Result<Option<String>, Stop> {
        let now = bits(&self.read_back(at, name, |t| t.positions())?);
        if let Some(what) = first_difference(&self.positions, &now) {
            return Ok(Some(format!("positions: {what}")));
        }
        if self.caps.has(Capability::Counts) {
            let counts = self.read_back(at, name, |t| t.counts())?;
            if Some(counts) != self.counts {
                return Ok(Some(format!(
                    "counts and capacities {:?} before, {counts:?} after",
                    self.counts
                )));
            }
        }
        let now = self.velocity_bits(at, name)?;
        if let (Some(before), Some(now)) = (&self.velocities, now) {
            if let Some(what) = first_difference(before, &now) {
                return Ok(Some(format!("velocities: {what}")));
            }
        }
        Ok(None)
    }

    fn op(&mut self, index: usize, op: &Op) -> Result<(), Stop> {
        let at = Some(index);
        let name = op.name();
        self.checking = None;
        let sampled = self.sample_before(at, op)?;
        self.state_before_op = self.rerun_state_before(at, op)?;
        let (called, distances) = match self.send_tolerating(at, name, op)? {
            Ok(distances) => (Ok(()), distances),
            Err(e) => (Err(e), None),
        };
        match self.answer(at, name, called)? {
            // The capacity re-run only follows the ops; its final positions are compared.
            Answer::Done(()) if self.rerun => self.apply(op),
            Answer::Refused(_) if self.rerun => {}
            // An accepted `inject` only arms its fault: the checks' reads would meet the armed
            // fault (an allocation or a copy) and spend it on themselves, so the op it was meant
            // for would never see it.
            Answer::Done(()) if matches!(op, Op::Inject { .. }) => {}
            Answer::Done(()) => {
                self.checking = Some(name);
                self.apply(op);
                self.after_step = self.nodes > 0 && matches!(op, Op::Step { count } if *count > 0);
                // The checks' order: SSSP's distances, the state checks, the model.
                if let Some((source, d)) = distances {
                    self.ran(checks::SSSP_DIJKSTRA);
                    let n = u32::try_from(self.nodes).unwrap_or(u32::MAX);
                    oracle::check_sssp(n, &self.edges, source, &d)
                        .map_err(|violation| check_failed(at, name, violation))?;
                }
                let observed = self.observe(at, name);
                self.after_step = false;
                observed?;
                self.capability_checks(at, name, Some(op))?;
                self.check_model(at, name, op, true)?;
                // Then restart equivalence, the shadow, physics.
                if let (Some((sampled, state)), Op::Step { count }) = (&sampled, op) {
                    if sampled.restart {
                        self.check_restart(at, name, state, *count)?;
                    }
                }
                self.check_shadow(at, name, op)?;
                // A target rebuilt elsewhere is checked there; restoring this one would replace
                // the engine under test.
                if matches!(op, Op::Step { .. }) && self.rebuild.is_none() {
                    self.checkpoint_round_trip(at, name)?;
                }
                if let Some((Sampled { physics: true, .. }, state)) = &sampled {
                    self.check_physics(at, name, state)?;
                }
                self.samples.after(op);
                if let Op::SetParams { params } = op {
                    self.sim_params = params.clone();
                }
            }
            Answer::Refused(message) => {
                self.checking = Some(name);
                self.report.rejected_ops += u64::from(self.first_run());
                let before = (self.positions.clone(), self.counts);
                // Compared before `observe`, whose count check would otherwise speak first.
                let after = bits(&self.read_back(at, name, |t| t.positions())?);
                self.ran(checks::REJECTED_UNCHANGED);
                let mut changed = first_difference(&before.0, &after);
                if changed.is_none() {
                    self.observe(at, name)?;
                }
                if changed.is_none() && before.1 != self.counts {
                    changed = Some(format!("counts {:?}, then {:?}", before.1, self.counts));
                }
                if let Some(what) = changed {
                    return Err(check_failed(
                        at,
                        name,
                        Violation {
                            check: checks::REJECTED_UNCHANGED,
                            detail: format!("refused ({}) but changed: {what}", one_line(&message)),
                        },
                    ));
                }
                // Nothing the model holds may have changed either (velocities, attributes, CSR).
                self.check_model(at, name, op, false)?;
            }
        }
        Ok(())
    }

    /// Applies an accepted op to the live count and the edge multiset, as the case format defines
    /// them.
    fn apply(&mut self, op: &Op) {
        match op {
            Op::AddNodes { count, .. } => self.nodes += count,
            Op::RemoveNodes { ids } => {
                let n = usize::try_from(self.nodes).unwrap_or(usize::MAX);
                let mut gone = vec![false; n];
                for &i in ids {
                    if let Some(g) = gone.get_mut(i as usize) {
                        *g = true;
                    }
                }
                let mut renumber = vec![u32::MAX; n];
                let mut next = 0u32;
                for (slot, &g) in renumber.iter_mut().zip(&gone) {
                    if !g {
                        *slot = next;
                        next += 1;
                    }
                }
                self.nodes = u64::from(next);
                self.edges = self
                    .edges
                    .iter()
                    .filter_map(|e| {
                        let (u, v) = (*renumber.get(e.u as usize)?, *renumber.get(e.v as usize)?);
                        (u != u32::MAX && v != u32::MAX).then_some(forcefield::Edge {
                            u,
                            v,
                            w: e.w,
                        })
                    })
                    .collect();
            }
            Op::AddEdges { edges } => self.edges.extend_from_slice(edges),
            Op::RemoveEdges { pairs } => self.edges.retain(|e| {
                !pairs
                    .iter()
                    .any(|&(a, b)| (e.u, e.v) == (a, b) || (e.u, e.v) == (b, a))
            }),
            _ => {}
        }
    }

    /// Reads positions (and counts) after an op and runs the state checks on them.
    fn observe(&mut self, at: Option<usize>, op: &'static str) -> Result<(), Stop> {
        // First: a buffer past its allocation makes every later read suspect.
        let early_counts = self.registry_checks(at, op)?;
        let positions = self.read_back(at, op, |t| t.positions())?;
        self.ran(checks::POSITIONS_COUNT);
        if positions.len() as u64 != self.nodes {
            return Err(check_failed(
                at,
                op,
                Violation {
                    check: checks::POSITIONS_COUNT,
                    detail: format!(
                        "{} positions for {} live nodes",
                        positions.len(),
                        self.nodes
                    ),
                },
            ));
        }
        self.ran(checks::POSITIONS_FINITE);
        oracle::check_positions_finite(&positions).map_err(|v| check_failed(at, op, v))?;
        // Our engine clamps a step's positions to its viewport: checked after a step, with the
        // parameters the accepted ops left.
        if self.after_step && self.first_run() && self.semantics == Semantics::Forcefield {
            self.ran(checks::POSITIONS_IN_BOUNDS);
            oracle::check_positions_in_bounds(&positions, self.sim_params.viewport_bounds)
                .map_err(|v| check_failed(at, op, v))?;
        }
        self.positions = bits(&positions);
        self.velocities = self.velocity_bits(at, op)?;
        if self.caps.has(Capability::Counts) {
            let counts = match early_counts {
                Some(counts) => counts,
                None => {
                    let read = self.target.counts();
                    self.must(at, op, read)?
                }
            };
            self.counts = Some(counts);
            // Where the reference model runs, it compares the counts with what the ops leave
            // (`model-counts`).
            let modelled = self.model.is_some();
            if !modelled {
                self.ran(checks::COUNTS_CONSISTENT);
            }
            let live_edges = self.edges.len() as u64;
            let wrong = if modelled {
                None
            } else if counts.nodes != self.nodes || counts.edges != live_edges {
                Some(format!(
                    "counts say {} nodes and {} edges; the ops leave {} and {live_edges}",
                    counts.nodes, counts.edges, self.nodes
                ))
            } else if counts.node_capacity.is_some_and(|c| c < counts.nodes) {
                Some(format!(
                    "{} nodes in a capacity of {:?}",
                    counts.nodes, counts.node_capacity
                ))
            } else if counts.edge_capacity.is_some_and(|c| c < counts.edges) {
                Some(format!(
                    "{} edges in a capacity of {:?}",
                    counts.edges, counts.edge_capacity
                ))
            } else {
                None
            };
            if let Some(detail) = wrong {
                return Err(check_failed(
                    at,
                    op,
                    Violation {
                        check: checks::COUNTS_CONSISTENT,
                        detail,
                    },
                ));
            }
        }
        if let Some(expect) = self.expect {
            let k = self.trace.len();
            let first = expect.get(k).filter(|(i, _)| *i == at);
            let differs = match first {
                Some((_, b)) => first_difference(b, &self.positions),
                None => Some("the first run did not reach this op".to_string()),
            };
            if let Some(what) = differs {
                return Err(check_failed(
                    at,
                    op,
                    Violation {
                        check: checks::DETERMINISM,
                        detail: format!("a second run from create differs: {what}"),
                    },
                ));
            }
        }
        self.trace.push((at, self.positions.clone()));
        Ok(())
    }

    /// The registry oracles over the `buffers` read-back, in the first run:
    /// `counts-within-capacity` (with `counts`: the live counts within the capacities, every
    /// buffer's live length within its allocation) and `memory-accounting` (with
    /// `device-memory`: the device holds exactly the bytes the buffers' allocations hold). The
    /// counts read, for `observe` to use rather than read them again.
    fn registry_checks(
        &mut self,
        at: Option<usize>,
        op: &'static str,
    ) -> Result<Option<forcefield_target::Counts>, Stop> {
        if !self.first_run() || !self.caps.has(Capability::Buffers) {
            return Ok(None);
        }
        let buffers = self.read_back(at, op, |t| t.buffers())?;
        let counts = if self.caps.has(Capability::Counts) {
            let counts = self.read_back(at, op, |t| t.counts())?;
            self.ran(checks::COUNTS_WITHIN_CAPACITY);
            let report = oracle::CapacityReport {
                num_nodes: counts.nodes,
                num_edges: counts.edges,
                // A target without a notion of capacity has nothing to exceed.
                allocated_nodes: counts.node_capacity.unwrap_or(u64::MAX),
                allocated_edges: counts.edge_capacity.unwrap_or(u64::MAX),
                buffers: buffers
                    .iter()
                    .map(|b| (b.name.clone(), b.len, b.capacity))
                    .collect(),
            };
            oracle::check_counts(&report).map_err(|v| check_failed(at, op, v))?;
            Some(counts)
        } else {
            None
        };
        if self.caps.has(Capability::DeviceMemory) {
            let device = self.read_back(at, op, |t| t.device_bytes())?;
            self.ran(checks::MEMORY_ACCOUNTING);
            let registered = buffers.iter().map(|b| b.bytes).sum::<u64>();
            let to_usize = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
            oracle::check_memory_accounting(to_usize(device), to_usize(registered))
                .map_err(|v| check_failed(at, op, v))?;
        }
        Ok(counts)
    }

    /// Our engine's grid and CSR oracles (those of [`oracle::check_engine`]), for our engine
    /// ([`Semantics::Forcefield`], first run), signed by their own names: the grid stage's
    /// `sort-sorted`, `sort-permutation`, `sort-pairs` and `cell-ranges` after a step or a resize
    /// while a grid is held, `csr-valid` after every op against the live edge multiset.
    fn engine_state_checks(
        &mut self,
        at: Option<usize>,
        name: &'static str,
        op: Option<&Op>,
    ) -> Result<(), Stop> {
        let grid_kept = match op {
            Some(Op::Step { count }) => *count > 0,
            Some(Op::Reserve { .. } | Op::ShrinkToFit) => true,
            _ => false,
        };
        if self.caps.has(Capability::Grid) && grid_kept {
            if let Some(stage) = self.read_back(at, "grid", |t| t.grid())? {
                self.ran(checks::GRID_STAGE);
                let inspection = grid_inspection(&stage);
                oracle::check_grid(&inspection).map_err(|v| check_failed(at, name, v))?;
            }
        }
        // The CSR is checked against the edges the ops leave, which the host knows: where the
        // engine's count says otherwise, which edges it holds is the reference model's to judge
        // (`model-counts`), not this check's.
        let same_edges = self
            .counts
            .is_none_or(|c| c.nodes == self.nodes && c.edges == self.edges.len() as u64);
        if self.caps.has(Capability::Csr) && same_edges {
            let csr = self.read_back(at, "csr", |t| t.csr())?;
            self.ran(checks::CSR_EDGES);
            self.check_csr(csr).map_err(|v| check_failed(at, name, v))?;
        }
        Ok(())
    }

    /// The checks of the read-back capabilities after an accepted op (`None`: `create`):
    /// `grid-stage` after a step, `csr-edges` after create and every edit, `device-memory` after
    /// `shrink_to_fit`.
    fn capability_checks(
        &mut self,
        at: Option<usize>,
        name: &'static str,
        op: Option<&Op>,
    ) -> Result<(), Stop> {
        let fail = |check: &'static str, detail: String| {
            Err(check_failed(at, name, Violation { check, detail }))
        };
        if self.first_run() && self.semantics == Semantics::Forcefield {
            return self.engine_state_checks(at, name, op);
        }
        if self.caps.has(Capability::Grid) && matches!(op, Some(Op::Step { .. })) {
            let r = self.target.grid();
            if let Some(stage) = self.must(at, "grid", r)? {
                self.ran(checks::GRID_STAGE);
                if let Err(v) = check_grid_stage(&stage, self.nodes) {
                    return fail(checks::GRID_STAGE, format!("{}: {}", v.check, v.detail));
                }
            }
        }
        let edit = matches!(
            op,
            None | Some(
                Op::AddNodes { .. }
                    | Op::RemoveNodes { .. }
                    | Op::AddEdges { .. }
                    | Op::RemoveEdges { .. }
            )
        );
        if self.caps.has(Capability::Csr) && edit {
            let r = self.target.csr();
            let csr = self.must(at, "csr", r)?;
            self.ran(checks::CSR_EDGES);
            if let Err(v) = self.check_csr(csr) {
                return fail(checks::CSR_EDGES, v.detail);
            }
        }
        if self.caps.has(Capability::DeviceMemory) && matches!(op, Some(Op::ShrinkToFit)) {
            let r = self.target.device_bytes();
            let bytes = self.must(at, "device_bytes", r)?;
            self.ran(checks::DEVICE_MEMORY);
            let key = (self.nodes, self.edges.len() as u64);
            match self.shrunk_bytes.get(&key) {
                Some(&before) if bytes > before => {
                    return fail(
                        checks::DEVICE_MEMORY,
                        format!(
                            "{bytes} device bytes after shrink_to_fit at {} nodes and {} edges, \
                             {before} after an earlier one at the same counts",
                            key.0, key.1
                        ),
                    )
                }
                _ => {
                    self.shrunk_bytes.insert(key, bytes);
                }
            }
        }
        Ok(())
    }

    /// `differential` ([`shadow::follow_and_compare`]): the shadow
    /// follows `op`, and after a step its positions must agree with the target's (read by
    /// `observe`).
    fn check_shadow(&mut self, at: Option<usize>, name: &'static str, op: &Op) -> Result<(), Stop> {
        if self.shadow.is_none() {
            return Ok(());
        }
        if matches!(op, Op::Step { .. }) {
            self.ran(checks::DIFFERENTIAL);
        }
        let Some(shadow) = self.shadow.as_mut() else {
            return Ok(());
        };
        let positions = &self.positions;
        let device = || Ok::<_, std::convert::Infallible>(floats(positions));
        match shadow::follow_and_compare(&mut **shadow, op, device) {
            Ok(()) => {}
            Err(ShadowStop::Violation(v)) => return Err(check_failed(at, name, v)),
            Err(ShadowStop::Device(never)) => match never {},
        }
        Ok(())
    }

    /// A read-back a check makes (velocities, CSR, attributes, a checkpoint); when it fails while
    /// an injected fault is armed (an armed copy fault hit the read, not the op under test), once
    /// more.
    fn read_back<T>(
        &mut self,
        at: Option<usize>,
        op: &'static str,
        read: impl Fn(&mut dyn Target) -> Result<T, TargetError>,
    ) -> Result<T, Stop> {
        let r = match read(&mut *self.target) {
            Err(TargetError::Internal(_)) if self.armed => read(&mut *self.target),
            r => r,
        };
        self.must(at, op, r)
    }

    /// `csr-edges`: the target's CSR against the edges the ops left.
    fn check_csr(&self, csr: Csr) -> Result<(), Violation> {
        let n = u32::try_from(self.nodes).unwrap_or(u32::MAX);
        oracle::check_csr(&csr_inspection(csr), n, &self.edges)
    }

    /// What the reference model compares, read through the trait: the counts, positions and
    /// velocities `observe` just read, the CSR and the attributes.
    fn observed(&mut self, at: Option<usize>) -> Result<Observed, Stop> {
        let velocities = self.velocities.as_ref().map(floats).unwrap_or_default();
        let csr = self.read_back(at, "csr", |t| t.csr())?;
        let attributes = self.read_back(at, "attributes", |t| t.attributes())?;
        let counts = self.counts.unwrap_or_default();
        let to_u32 = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        Ok(Observed {
            num_nodes: to_u32(counts.nodes),
            num_edges: to_u32(counts.edges),
            positions: floats(&self.positions),
            velocities,
            csr: csr_inspection(csr),
            constraints: forcefield::ConstraintInspection {
                masses: attributes.masses,
                anchors: attributes.anchors,
                edge_targets: attributes.edge_targets,
            },
        })
    }

    /// The reference model after `op` (read by `observe` first): an accepted op (`applied`) is
    /// applied to the model by its definition, a refused one must leave the model's state as it
    /// was; the target's state must then be the model's ([`ReferenceModel::compare`]).
    fn check_model(
        &mut self,
        at: Option<usize>,
        name: &'static str,
        op: &Op,
        applied: bool,
    ) -> Result<(), Stop> {
        if self.model.is_none() {
            return Ok(());
        }
        let seen = self.observed(at)?;
        self.ran(checks::MODEL);
        let Some(model) = self.model.as_mut() else {
            return Ok(());
        };
        model
            .check_after(op, applied, &seen)
            .map_err(|v| check_failed(at, name, v))
    }

    /// The state before `op` when the step-op sampling rule ([`StepSamples`]) samples it for
    /// `restart-equivalence` or `physics`: first run, [`Semantics::Forcefield`], a target to
    /// rebuild on. Read before the op is sent: a checkpoint of our engine is its host copy (no
    /// device read an armed fault could hit).
    fn sample_before(
        &mut self,
        at: Option<usize>,
        op: &Op,
    ) -> Result<Option<(Sampled, serde_json::Value)>, Stop> {
        if !self.first_run()
            || self.rebuild.is_none()
            || self.semantics != Semantics::Forcefield
            || !self.caps.has(Capability::Checkpoint)
        {
            return Ok(None);
        }
        let nodes = u32::try_from(self.nodes).unwrap_or(u32::MAX);
        let sampled = self.samples.before(op, nodes, &self.sim_params);
        if sampled == Sampled::default() {
            return Ok(None);
        }
        let state = self.read_back(at, "checkpoint", |t| t.checkpoint())?;
        Ok(Some((sampled, state)))
    }

    /// The target to rebuild on, with `state` restored into it and stepped `count` times; its
    /// failure is the check's (`fail`), a death of the target process its own.
    fn rebuilt(
        &mut self,
        at: Option<usize>,
        name: &'static str,
        state: &serde_json::Value,
        count: u64,
        fail: &dyn Fn(String) -> Stop,
    ) -> Result<&mut EngineTarget, Stop> {
        let Some(fresh) = self.rebuild.as_mut() else {
            return Err(fail("no target to rebuild on".into()));
        };
        let defect = |e: TargetError| -> Stop {
            if e.is_defect() && !matches!(e, TargetError::Internal(_)) {
                Stop::Failure(TargetFailure::of(&e, at, name))
            } else {
                fail(format!("{e}"))
            }
        };
        fresh.restore(state).map_err(|e| {
            // No backend here for the rebuild: the case cannot run here, as without one at all.
            if let Some(environment) = no_backend(&e) {
                return Stop::Result(environment);
            }
            match e {
                e @ (TargetError::Rejected(_) | TargetError::Internal(_)) => {
                    fail(format!("cannot rebuild from the checkpoint: {e}"))
                }
                e => defect(e),
            }
        })?;
        fresh.step(count).map_err(|e| match e {
            e @ (TargetError::Rejected(_) | TargetError::Internal(_)) => {
                fail(format!("the engine rebuilt from the checkpoint fails: {e}"))
            }
            e => defect(e),
        })?;
        Ok(&mut **fresh)
    }

    /// `restart-equivalence` after a sampled step op of `count` steps: the target to rebuild on,
    /// restored from the state before the op and stepped as many times, must hold the target's
    /// positions and velocities (bit for bit on the CPU, within the differential tolerance on
    /// CUDA).
    fn check_restart(
        &mut self,
        at: Option<usize>,
        name: &'static str,
        state: &serde_json::Value,
        count: u64,
    ) -> Result<(), Stop> {
        self.ran(checks::RESTART_EQUIVALENCE);
        let fail = |detail: String| {
            check_failed(
                at,
                name,
                Violation {
                    check: checks::RESTART_EQUIVALENCE,
                    detail,
                },
            )
        };
        let exact = self.restart_exact;
        // Rebuilt with the parameters set as the uploaded ones (in the
        // checkpoint's JSON form: Forcefield's checkpoint is a `WireCheckpoint`), as the engine's
        // restart check always built it: an engine whose kernels kept stale parameters then
        // steps otherwise than its rebuild. (Physics rebuilds from the checkpoint as it is.)
        let mut state = state.clone();
        let set = state.get("params").cloned();
        match (set, state.get_mut("uploaded")) {
            (Some(set), Some(uploaded)) => *uploaded = set,
            _ => return Err(fail("the checkpoint is not Forcefield's".into())),
        }
        let fresh = self.rebuilt(at, name, &state, count, &fail)?;
        let read = |t: &mut dyn Target| -> Result<_, TargetError> {
            Ok((t.positions()?, t.velocities()?))
        };
        let (fresh_pos, fresh_vel) = read(fresh).map_err(|e| {
            fail(format!(
                "reading the engine rebuilt from the checkpoint fails: {e}"
            ))
        })?;
        let pos = floats(&self.positions);
        let vel = self.velocities.as_ref().map(floats).unwrap_or_default();
        oracle::check_restart_equivalence((&pos, &vel), (&fresh_pos, &fresh_vel), exact)
            .map_err(|v| check_failed(at, name, v))
    }

    /// `physics` after a sampled step op: the target to rebuild on, restored from the state
    /// before the op, takes one step, which must be the force law's from that state within the
    /// tolerance [`physics::check_step`] derives, with the grid that step used.
    fn check_physics(
        &mut self,
        at: Option<usize>,
        name: &'static str,
        state: &serde_json::Value,
    ) -> Result<(), Stop> {
        let fail = |detail: String| {
            check_failed(
                at,
                name,
                Violation {
                    check: checks::PHYSICS,
                    detail,
                },
            )
        };
        let before = WireCheckpoint::deserialize(state)
            .map_err(|e| fail(format!("the checkpoint is not Forcefield's: {e}")))?
            .to_checkpoint();
        self.ran(checks::PHYSICS);
        let fresh = self.rebuilt(at, name, state, 1, &fail)?;
        // The geometry alone, as the engine holds it: the whole grid stage's read-back (cell
        // ranges over every cell of the capacity) would cost more than the check.
        let Some(grid) = fresh.grid_spec() else {
            return Err(fail("a step of a non-empty graph left no grid".into()));
        };
        let after = fresh
            .positions()
            .map_err(|e| fail(format!("reading the rebuilt engine fails: {e}")))?;
        physics::check_step(&before, &grid, &after).map_err(|v| check_failed(at, name, v))
    }

    /// The velocities as bits, where the target reports them.
    fn velocity_bits(&mut self, at: Option<usize>, op: &'static str) -> Result<Option<Bits>, Stop> {
        if !self.caps.has(Capability::Velocities) {
            return Ok(None);
        }
        Ok(Some(bits(&self.read_back(at, op, |t| t.velocities())?)))
    }

    /// `checkpoint-round-trip` after one of the first step ops: checkpoint, step, restore, step
    /// again: the restored positions are those checkpointed and the two steps agree. The layout
    /// is restored to the checkpoint at the end, so the case goes on as if nothing happened.
    fn checkpoint_round_trip(&mut self, at: Option<usize>, op: &'static str) -> Result<(), Stop> {
        // Its extra steps would meet an armed injected fault that belongs to the case's ops.
        if !self.caps.has(Capability::Checkpoint)
            || self.checkpoints >= CHECKPOINT_SAMPLES
            || self.armed
        {
            return Ok(());
        }
        self.checkpoints += 1;
        self.ran(checks::CHECKPOINT_ROUND_TRIP);
        let fail = |detail: String| {
            check_failed(
                at,
                op,
                Violation {
                    check: checks::CHECKPOINT_ROUND_TRIP,
                    detail,
                },
            )
        };
        let r = self.target.checkpoint();
        let state = self.must(at, "checkpoint", r)?;
        let r = self.target.step(1);
        self.must(at, op, r)?;
        let r = self.target.positions();
        let stepped = bits(&self.must(at, op, r)?);
        let stepped_velocities = self.velocity_bits(at, op)?;
        let r = self.target.restore(&state);
        match self.answer(at, "restore", r)? {
            Answer::Done(()) => {}
            Answer::Refused(m) => {
                return Err(fail(format!("restore refused its own checkpoint: {m}")))
            }
        }
        let r = self.target.positions();
        let restored = bits(&self.must(at, "restore", r)?);
        if let Some(what) = first_difference(&self.positions, &restored) {
            return Err(fail(format!(
                "restore gives other positions than checkpointed: {what}"
            )));
        }
        let r = self.target.step(1);
        self.must(at, op, r)?;
        let r = self.target.positions();
        let again = bits(&self.must(at, op, r)?);
        if let Some(what) = first_difference(&stepped, &again) {
            return Err(fail(format!(
                "a step from the restored checkpoint differs from one from the original: {what}"
            )));
        }
        // Velocities are state too (a restart that loses them moves the nodes otherwise later).
        let again_velocities = self.velocity_bits(at, op)?;
        if let (Some(a), Some(b)) = (&stepped_velocities, &again_velocities) {
            if let Some(what) = first_difference(a, b) {
                return Err(fail(format!(
                    "velocities after a step from the restored checkpoint differ from those after one from the original: {what}"
                )));
            }
        }
        let r = self.target.restore(&state);
        self.must(at, "restore", r)
    }
}

/// `grid-stage` over a target's grid stage of `nodes` live nodes: the engine oracles' sort and
/// cell-range checks, with the sorted keys read through the order.
/// The counts and capacities our engine's `counts` reports in the state a checkpoint holds.
fn checkpoint_counts(c: &forcefield::Checkpoint) -> forcefield_target::Counts {
    forcefield_target::Counts {
        nodes: u64::from(c.num_nodes),
        edges: c.edges.len() as u64,
        node_capacity: Some(c.allocated_nodes as u64),
        edge_capacity: Some(c.allocated_edges as u64),
        cell_capacity: Some(c.allocated_cells as u64),
    }
}

fn check_grid_stage(stage: &forcefield_target::GridStage, nodes: u64) -> oracle::CheckResult {
    let v = |detail: String| {
        Err(Violation {
            check: checks::GRID_STAGE,
            detail,
        })
    };
    if stage.keys.len() as u64 != nodes {
        return v(format!("{} cell keys for {nodes} nodes", stage.keys.len()));
    }
    let inspection = grid_inspection(stage);
    oracle::check_sort_permutation(&inspection)?;
    oracle::check_sort_sorted(&inspection)?;
    oracle::check_cell_ranges(&inspection)
}

/// A target's grid stage as the engine oracles read one: the sorted keys as the target reports
/// them, else read through the order.
fn grid_inspection(stage: &forcefield_target::GridStage) -> forcefield::GridInspection {
    forcefield::GridInspection {
        grid: forcefield::GridSpec {
            origin: stage.origin.unwrap_or([0.0; 3]),
            cell_size: stage.cell_size.unwrap_or(1.0),
            dims: stage.dims,
        },
        cell_keys: stage.keys.clone(),
        sorted_keys: stage.sorted_keys.clone().unwrap_or_else(|| {
            stage
                .order
                .iter()
                .map(|&n| stage.keys.get(n as usize).copied().unwrap_or(u32::MAX))
                .collect()
        }),
        sorted_nodes: stage.order.clone(),
        cell_start: stage.cell_start.clone(),
        cell_end: stage.cell_end.clone(),
    }
}

/// Parameters as the JSON object a target's `set_params` takes: every field of `SimParams` (a
/// field the case left out is its default there too). Non-finite values, which JSON lacks, become
/// `null`, which the engine refuses as it would refuse the values.
fn params_object(params: &forcefield::SimParams) -> forcefield_target::Params {
    match serde_json::to_value(params) {
        Ok(serde_json::Value::Object(fields)) => fields,
        // `SimParams` is a struct of numbers: it always serializes to an object.
        _ => forcefield_target::Params::new(),
    }
}

/// A shadow's own failure: a `differential` violation.
fn shadow_failed(op_index: Option<usize>, op: &str, detail: String) -> Stop {
    check_failed(op_index, op, shadow::shadow_failure(detail))
}

/// The shadow of this executor: a target sent the ops as the target under test is.
impl shadow::Shadow for dyn Target + '_ {
    type Error = TargetError;

    fn follow(&mut self, op: &Op) -> Result<(), Self::Error> {
        send_op(self, op).map(|_| ())
    }

    fn positions(&mut self) -> Result<Vec<[f32; 3]>, Self::Error> {
        Target::positions(self)
    }
}

/// Sends an op of a case to `target` through the trait; an `sssp` op's distances come back with
/// its source. `read_positions` needs no call: the checks read positions after every op.
pub(crate) fn send_op(target: &mut dyn Target, op: &Op) -> Sent {
    let mut distances = None;
    let called: Result<(), TargetError> = match op {
        Op::AddNodes { count, positions } => target.add_nodes(*count, positions.as_deref()),
        Op::RemoveNodes { ids } => target.remove_nodes(ids),
        Op::AddEdges { edges } => {
            let edges: Vec<_> = edges.iter().map(to_target_edge).collect();
            target.add_edges(&edges)
        }
        Op::RemoveEdges { pairs } => target.remove_edges(pairs),
        Op::Step { count } => target.step(*count),
        Op::ReadPositions => Ok(()),
        Op::Reserve { nodes, edges } => target.reserve(*nodes, *edges),
        Op::ShrinkToFit => target.shrink_to_fit(),
        Op::Sssp { source } => target.sssp(*source).map(|d| {
            distances = Some((*source, d));
        }),
        Op::SetPositionConstraint {
            node,
            target: at,
            stiffness,
        } => target.set_position_constraint(*node, *at, *stiffness),
        Op::SetDistanceConstraint { u, v, distance } => {
            target.set_distance_constraint(*u, *v, *distance)
        }
        Op::ClearConstraints => target.clear_constraints(),
        Op::Inject { fault } => target.inject(&to_target_fault(fault)),
        // Sent only under `CaseParams::Send` (see `skip_reason`).
        Op::SetParams { params } => target.set_params(&params_object(params)),
    };
    called.map(|()| distances)
}

fn check_failed(op_index: Option<usize>, op: &str, violation: Violation) -> Stop {
    Stop::Check {
        op_index,
        op: op.to_string(),
        violation,
    }
}

/// A target's CSR as the oracles read the engine's.
fn csr_inspection(csr: Csr) -> forcefield::CsrInspection {
    forcefield::CsrInspection {
        row_offsets: csr.row_offsets,
        col_indices: csr.col_indices,
        weights: csr.weights,
    }
}

fn to_target_edge(e: &forcefield::Edge) -> forcefield_target::Edge {
    forcefield_target::Edge {
        u: e.u,
        v: e.v,
        w: e.w,
    }
}

fn to_target_fault(f: &forcefield::EnvFault) -> forcefield_target::EnvFault {
    use forcefield_target::EnvFault as T;
    match *f {
        forcefield::EnvFault::FailAlloc { nth } => T::FailAlloc { nth },
        forcefield::EnvFault::FailCopy { nth } => T::FailCopy { nth },
        forcefield::EnvFault::FailLaunch { nth } => T::FailLaunch { nth },
        forcefield::EnvFault::LoseContext { nth } => T::LoseContext { nth },
    }
}

#[cfg(test)]
mod tests;
