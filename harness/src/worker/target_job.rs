/*!
A worker that hosts another engine: `forcefield worker --target "CMD ARGS"`, or an engine built in
this process ([`TargetSource::Embedded`], [`TargetSource::Builtin`]: Forcefield's own engine).

With a command, the worker keeps one [`ProcessTarget`] (the command, speaking
`forcefield-target/1`) alive across cases and runs each case job on it with
[`crate::worker::target_case`]. When the target dies, hangs or breaks the protocol, the case's
reply says so ([`TargetReport::failure`]) and asks the driver to retire this worker
(`context_lost`); the next worker starts a new target before its hello, so that no case's time
limit pays for a target's start-up. The target is killed when the worker dies (its parent-death
signal), so a worker killed by the driver's watchdog takes its target along.

An in-process target is called through the trait directly, no pipe between: a fresh one per case
(from its factory), so that no state crosses from one case to the next. Its panic is the worker's
panic, its hang the worker's hang: the worker's own isolation (panic line, breadcrumbs, the
driver's watchdog) signs them as it signs Forcefield's engine's.

The reply has [`crate::worker::job::JobReply`]'s fields (`result`, `context_lost`) and one more,
`target` ([`TargetReport`]), which the driver reads first when it is there
([`crate::client::target_verdict`]).
*/

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use forcefield_target::{ProcessOptions, ProcessTarget, Target, TargetError, TargetInfo};
use serde::Serialize;

use crate::isolate::Breadcrumbs;
use forcefield::Backend;

use crate::sanitizers::mode::SanitizeMode;
use crate::worker::engine_case::{run_engine_case, EngineCaseOptions};
use crate::worker::engine_target::{BackendFactory, EngineTarget};
use crate::worker::execute::ResumePoint;
use crate::worker::execute::{Breadcrumb, CaseResult};
use crate::worker::job::{reply_payload, traced_backend, Job};
use crate::worker::target_case::{run_target_case, CaseParams, TargetReport};

/// How long the hosted target may take over one request before it counts as hung. Longer than
/// any campaign's per-case limit, so that the driver's watchdog, which confirms a hang with a
/// longer re-run, normally decides; this bounds a worker run without one.
pub const TARGET_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Builds a fresh in-process target.
pub type TargetFactory = dyn Fn() -> Result<Box<dyn Target>, TargetError> + Send + Sync;

/// The engine this executable embeds ([`register_embedded`]), if any. Process-wide because the
/// embedding binary is both driver and worker: every subcommand, and the worker it re-invokes
/// itself as, must find the same factory without it being threaded through every command.
static EMBEDDED: OnceLock<Arc<TargetFactory>> = OnceLock::new();

/// Makes `factory` this executable's embedded target: from now on a run, repro, minimize, ci or
/// worker without `--target` hunts it. The first registration wins (an embedding `main` calls this
/// once); returns whether this one did.
pub fn register_embedded(factory: Arc<TargetFactory>) -> bool {
    EMBEDDED.set(factory).is_ok()
}

/// The target word that names Forcefield's own engine behind the trait (`--target builtin`).
pub const BUILTIN: &str = "builtin";

/// Which engine a target campaign, replay or worker runs on.
#[derive(Clone)]
pub enum TargetSource {
    /// A program speaking `forcefield-target/1`, its command line as one string.
    Process(String),
    /// The engine this executable embeds ([`register_embedded`]).
    Embedded(Arc<TargetFactory>),
    /// Forcefield's own engine behind the trait ([`BUILTIN`]), planted faults from each case.
    Builtin,
}

impl std::fmt::Debug for TargetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TargetSource {
    /// What `--target FLAG` (or its absence) selects: the word [`BUILTIN`], a command, or without
    /// the flag the embedded engine when this executable has one (`None`: Forcefield's own engine
    /// through its own executor).
    pub fn resolve(flag: Option<&str>) -> Option<TargetSource> {
        match flag {
            Some(BUILTIN) => Some(TargetSource::Builtin),
            Some(command) => Some(TargetSource::Process(command.to_string())),
            None => EMBEDDED.get().cloned().map(TargetSource::Embedded),
        }
    }

    /// The arguments that make a worker of this executable host the same target (the embedded
    /// one is the default of an embedding executable's worker: none).
    pub fn worker_args(&self) -> Vec<String> {
        match self {
            TargetSource::Process(command) => vec!["--target".into(), command.clone()],
            TargetSource::Builtin => vec!["--target".into(), BUILTIN.into()],
            TargetSource::Embedded(_) => Vec::new(),
        }
    }

    /// How the target is named to a user: its command, or `embedded`.
    pub fn describe(&self) -> String {
        match self {
            TargetSource::Process(command) => command.clone(),
            TargetSource::Embedded(_) => "embedded".into(),
            TargetSource::Builtin => BUILTIN.into(),
        }
    }

    /// Whether cases' parameters reach this target: only Forcefield's own engine reads them.
    pub fn case_params(&self) -> CaseParams {
        match self {
            TargetSource::Builtin => CaseParams::Send,
            TargetSource::Process(_) | TargetSource::Embedded(_) => CaseParams::Skip,
        }
    }

    /// Starts (or builds) the target, for its handshake or a conformance check.
    pub fn start(&self, options: ProcessOptions) -> Result<Box<dyn Target>, StartTargetError> {
        match self {
            TargetSource::Process(command) => ProcessTarget::spawn(command, options)
                .map(|t| Box::new(t) as Box<dyn Target>)
                .map_err(StartTargetError::Spawn),
            TargetSource::Embedded(factory) => factory().map_err(StartTargetError::Build),
            TargetSource::Builtin => Ok(Box::new(EngineTarget::new(forcefield::FaultSet::NONE))),
        }
    }

    /// The target's handshake: who it is and what it declares.
    pub fn info(&self) -> Result<TargetInfo, StartTargetError> {
        Ok(self.start(ProcessOptions::default())?.info())
    }
}

/// Why a target could not be started or built.
#[derive(Debug, thiserror::Error)]
pub enum StartTargetError {
    /// The command did not start or failed its handshake.
    #[error(transparent)]
    Spawn(#[from] forcefield_target::SpawnError),
    /// The in-process factory refused.
    #[error("the embedded target could not be built: {0}")]
    Build(TargetError),
}

/// A target worker's reply.
#[derive(Debug, Serialize)]
pub struct TargetJobReply {
    /// What happened, as a case result (a target failure reads as an engine error).
    pub result: CaseResult,
    /// Whether the target process is gone (it died, hung or broke the protocol): the driver then
    /// retires this worker, whose successor starts a new target.
    pub context_lost: bool,
    /// What only a target run reports.
    pub target: TargetReport,
}

/// The state a target worker keeps between requests.
pub struct TargetHandler {
    source: TargetSource,
    options: ProcessOptions,
    /// The hosted process, kept across cases (in-process targets are built per case).
    process: Option<ProcessTarget>,
}

impl TargetHandler {
    /// A handler hosting `source`. A command is started now: before the worker's hello, so that
    /// the target's start-up (an interpreter, its imports) counts against the worker's start-up
    /// limit rather than a case's. One that fails to start is tried again by the first case,
    /// which reports why.
    pub fn new(source: TargetSource) -> Self {
        let options = ProcessOptions {
            timeout: TARGET_REQUEST_TIMEOUT,
            die_with_parent: true,
            ..ProcessOptions::default()
        };
        let process = match &source {
            TargetSource::Process(command) => ProcessTarget::spawn(command, options.clone()).ok(),
            TargetSource::Embedded(_) | TargetSource::Builtin => None,
        };
        TargetHandler {
            source,
            options,
            process,
        }
    }

    /// Handles one request payload (a case job, or a resumption: see [`TargetHandler::case`]);
    /// always returns a reply payload.
    pub fn handle_raw(
        &mut self,
        payload: &serde_json::value::RawValue,
        crumbs: &Arc<Breadcrumbs>,
    ) -> serde_json::Value {
        let started = std::time::Instant::now();
        let reply = match serde_json::from_str::<Job>(payload.get()) {
            Ok(Job::Case {
                case,
                capacity_invariance,
            }) => self.case(&case, capacity_invariance, None, crumbs),
            Ok(Job::Resume {
                case,
                capacity_invariance,
                resume,
            }) => self.case(&case, capacity_invariance, Some(&resume), crumbs),
            Ok(Job::SoakStart { .. } | Job::SoakOps { .. }) => plain(CaseResult::Invalid {
                message: "a target worker runs cases, not soak sessions".into(),
            }),
            // Its one target process answers one request at a time (`run` refuses
            // --cases-per-worker above 1 with --target).
            Ok(Job::Batch { .. }) => plain(CaseResult::Invalid {
                message: "a target worker runs one case at a time, not batches".into(),
            }),
            Err(e) => plain(CaseResult::Invalid {
                message: format!("not a job: {e}"),
            }),
        };
        reply_payload(&reply, started)
    }

    /// One case; `capacity_invariance`: with the capacity re-run where the host can configure a
    /// second target to grow otherwise (Forcefield's engine; the driver asks for it only there).
    /// `resume`: where Forcefield's engine continues a case whose process was poisoned; another
    /// target has no poisoned context to resume from, and runs the whole case again.
    fn case(
        &mut self,
        case: &crate::case::Case,
        capacity_invariance: bool,
        resume: Option<&ResumePoint>,
        crumbs: &Arc<Breadcrumbs>,
    ) -> TargetJobReply {
        let mut on_op =
            |b: Breadcrumb| crumbs.set_op(b.op_index.map_or(u64::MAX, |i| i as u64), b.op);
        let (result, report) = match &self.source {
            TargetSource::Process(command) => {
                let target = match self.process.as_mut() {
                    Some(t) => t,
                    None => match ProcessTarget::spawn(command, self.options.clone()) {
                        Ok(t) => self.process.insert(t),
                        Err(e) => {
                            return plain(CaseResult::Environment {
                                message: e.to_string(),
                            })
                        }
                    },
                };
                run_target_case(target, case, &mut on_op)
            }
            TargetSource::Builtin => {
                // The case's backends, traced into the breadcrumbs as the engine worker traces
                // them, so that a crash is signed by its kernel.
                let traced = || -> Box<BackendFactory> {
                    let (kind, crumbs) = (case.backend, Arc::clone(crumbs));
                    Box::new(move || {
                        traced_backend(kind, 1, SanitizeMode::Off, &crumbs)
                            .map(|b| Box::new(b) as Box<dyn Backend>)
                    })
                };
                let opts = EngineCaseOptions {
                    capacity_invariance,
                    threads: 1,
                    reference_model: true,
                    determinism: true,
                };
                run_engine_case(case, opts, resume, &traced, &mut on_op)
            }
            in_process => match in_process.start(self.options.clone()) {
                Ok(mut target) => run_target_case(target.as_mut(), case, &mut on_op),
                Err(e) => {
                    return plain(CaseResult::Environment {
                        message: e.to_string(),
                    })
                }
            },
        };
        let gone = report.failure.as_ref().is_some_and(|f| f.process_gone());
        if gone {
            self.process = None;
        }
        // Our engine's lost context: this process cannot serve another case.
        let poisoned = matches!(
            &result,
            CaseResult::EngineError { sticky: true, .. } | CaseResult::Poisoned { .. }
        );
        TargetJobReply {
            result,
            // The target is gone: the driver retires this worker, and the next one starts a new
            // target before its hello, outside the next case's time limit.
            context_lost: gone || poisoned,
            target: report,
        }
    }
}

fn plain(result: CaseResult) -> TargetJobReply {
    TargetJobReply {
        result,
        context_lost: false,
        target: TargetReport::default(),
    }
}
