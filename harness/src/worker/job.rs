/*!
What a worker is asked to do, and the handler that does it.

The driver sends a [`Job`] as the payload of a worker request; the worker answers with a [`JobReply`].
Two kinds of job: a whole case on a fresh engine, or a soak session — one long-lived engine, like a
server's, fed chunks of operations. The handler writes the current operation and kernel into the
worker's breadcrumbs, so that if a kernel kills the process the driver knows where it was.

Under `--sanitize checked` the handler opens backends in their checked mode and records the first
memory violation any backend call reports ([`crate::worker::violations::Recorded`]); the reply carries it
as a [`SanitizerFinding`], whatever the case result says.
*/

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use forcefield::backend::Backend;
use forcefield::{CpuBackend, CudaBackend, Engine, EngineConfig, FaultSet};

use crate::case::{BackendKind, Case, Op};
use crate::isolate::Breadcrumbs;
use crate::sanitizers::mode::SanitizeMode;
use crate::worker::engine_case::run_engine_case;
use crate::worker::engine_target::BackendFactory;
use crate::worker::execute::{self, Breadcrumb, CaseResult, ExecOptions, ResumePoint};
use crate::worker::traced_backend::{Trace, TracedBackend};
use crate::worker::violations::{Recorded, SanitizerFinding, ViolationLog};

/// Set (to anything) in a campaign's environment, the workers skip the model oracle: only to
/// measure what it costs.
pub(crate) const NO_MODEL_ENV: &str = "FORCEFIELD_NO_MODEL";

/// A request to a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "kebab-case")]
pub enum Job {
    /// Run a case on a fresh engine, with the oracles after every op.
    Case {
        /// The case.
        case: Case,
        /// Also re-run under another growth policy and compare.
        #[serde(default)]
        capacity_invariance: bool,
    },
    /// Continue a case whose previous worker was poisoned (see [`crate::worker::execute::ResumePoint`]): an
    /// engine rebuilt from the checkpoint retries op `resume.from_op` and runs the rest.
    Resume {
        /// The case.
        case: Case,
        /// Also re-run under another growth policy and compare.
        #[serde(default)]
        capacity_invariance: bool,
        /// Where to continue.
        resume: Box<ResumePoint>,
    },
    /// Run several cases at once, each on its own thread and engine; the reply is a
    /// [`BatchReply`]. The breadcrumbs of such a worker do not say which case a kernel belonged
    /// to, so when it dies the driver re-runs the unanswered cases alone.
    Batch {
        /// The cases, answered in this order.
        cases: Vec<Case>,
        /// Also re-run each under another growth policy and compare.
        #[serde(default)]
        capacity_invariance: bool,
    },
    /// Start a soak session: an engine holding the case's graph, params and faults (ops ignored).
    SoakStart {
        /// The initial state.
        case: Case,
    },
    /// Apply ops to the soak session's engine, checking invariants after each.
    SoakOps {
        /// The ops.
        ops: Vec<Op>,
    },
}

/// Measurements a soak session reports with every reply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SoakStats {
    /// Steps completed by this session's engine.
    pub steps: u64,
    /// Seconds spent in `step` during this request.
    pub step_seconds: f64,
    /// Steps taken during this request.
    pub request_steps: u64,
    /// Device bytes held by the engine.
    pub device_bytes: u64,
    /// Resident memory of the worker process, in bytes.
    pub rss_bytes: u64,
    /// Injected faults fired in this session's engine since it started, by kind: the soak driver
    /// counts each request's share, recovered when the request passed.
    #[serde(default)]
    pub injections: forcefield::InjectionCounts,
}

/// A worker's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobReply {
    /// What happened.
    pub result: CaseResult,
    /// Whether the device context is lost: the driver retires this worker.
    pub context_lost: bool,
    /// Soak measurements, for soak jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakStats>,
    /// The first invalid memory access a checked backend reported during the request: a sanitizer
    /// finding, whatever `result` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitizer: Option<SanitizerFinding>,
}

/// The reply field (beside [`JobReply`]'s) with the seconds the worker spent on the request, from
/// reading it to its reply.
pub(crate) const WORKER_SECONDS: &str = "worker_seconds";

/// The reply field (beside [`JobReply`]'s) with the seconds of a case's capacity re-run, part of
/// [`WORKER_SECONDS`]; absent from older workers' replies and when there was none.
pub(crate) const CAPACITY_RERUN_SECONDS: &str = "capacity_rerun_seconds";

/// The answer to a [`Job::Batch`]: one reply per case, in the request's order, each as a single
/// case's reply (a [`JobReply`] with its own [`WORKER_SECONDS`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct BatchReply {
    /// The cases' replies.
    pub batch: Vec<serde_json::Value>,
    /// Whether any case lost the device context: the driver retires this worker.
    pub context_lost: bool,
}

/// Opens the backend a case asks for, unchecked.
pub(crate) fn open_backend(kind: BackendKind, threads: usize) -> Result<Box<dyn Backend>, String> {
    open_backend_with(kind, threads, SanitizeMode::Off)
}

/// Opens the backend a case asks for, in its checked mode under `--sanitize checked`.
pub(crate) fn open_backend_with(
    kind: BackendKind,
    threads: usize,
    mode: SanitizeMode,
) -> Result<Box<dyn Backend>, String> {
    match kind {
        BackendKind::Cpu => {
            let cpu = if threads == 0 {
                CpuBackend::new()
            } else {
                CpuBackend::with_threads(threads)
            };
            Ok(Box::new(cpu.with_checked(mode.is_checked())))
        }
        BackendKind::Cuda => open_cuda(mode),
    }
}

/// Opens the CUDA backend for a sanitize mode: the checked build (bounds-checked kernels, red zones,
/// poisoned fresh memory) for `checked`, the plain one otherwise (compute-sanitizer tools watch it
/// from outside the process).
pub(crate) fn open_cuda(mode: SanitizeMode) -> Result<Box<dyn Backend>, String> {
    CudaBackend::with_checked(0, mode.is_checked())
        .map(|b| Box::new(b) as Box<dyn Backend>)
        .map_err(|e| format!("no usable CUDA device: {e}"))
}

/// The backends of a case's engines: the case's kind, the CPU kernels' threads (0: every core),
/// the sanitize mode, and the breadcrumbs the running kernel is written into (none in this
/// process).
#[derive(Clone)]
pub(crate) struct CaseBackends {
    pub kind: BackendKind,
    pub threads: usize,
    pub sanitize: SanitizeMode,
    pub crumbs: Option<Arc<Breadcrumbs>>,
}

impl CaseBackends {
    /// One engine's backend.
    fn open(&self) -> Result<Box<dyn Backend>, String> {
        match &self.crumbs {
            Some(crumbs) => traced_backend(self.kind, self.threads, self.sanitize, crumbs)
                .map(|b| Box::new(b) as Box<dyn Backend>),
            None => open_backend_with(self.kind, self.threads, self.sanitize),
        }
    }
}

/// Runs a whole case on fresh engines with `backends` (as a worker does, or in this process),
/// continuing from `resume` when given (a [`Job::Resume`]): our engine behind the target trait
/// ([`crate::worker::engine_case`], the one path of our engine's cases), the first memory
/// violation of its backends recorded into the reply.
pub(crate) fn run_case(
    case: &Case,
    opts: &ExecOptions,
    backends: &CaseBackends,
    resume: Option<&ResumePoint>,
    on_op: &mut dyn FnMut(Breadcrumb),
) -> JobReply {
    let log = ViolationLog::default();
    let factory = || -> Box<BackendFactory> {
        let (backends, log) = (backends.clone(), log.clone());
        Box::new(move || {
            backends
                .open()
                .map(|b| Box::new(Recorded::new(b, log.clone())) as Box<dyn Backend>)
        })
    };
    let (result, _) = run_engine_case(case, opts.engine_case(), resume, &factory, on_op);
    // A poisoned process cannot serve another case either.
    let context_lost = matches!(
        &result,
        CaseResult::EngineError { sticky: true, .. } | CaseResult::Poisoned { .. }
    );
    JobReply {
        result,
        context_lost,
        soak: None,
        sanitizer: log.take(),
    }
}

/// The payload that continues `case` in a fresh worker when `reply` says its worker was poisoned
/// (a [`CaseResult::Poisoned`] result); `None` for any other reply.
pub fn resume_payload(
    case: &Case,
    capacity_invariance: bool,
    reply: &serde_json::Value,
) -> Option<Job> {
    let reply = JobReply::deserialize(reply).ok()?;
    let resume = reply.result.resume_point()?.clone();
    Some(Job::Resume {
        case: case.clone(),
        capacity_invariance,
        resume: Box::new(resume),
    })
}

/// One case's reply as a value: the [`JobReply`] with its [`WORKER_SECONDS`] and, when it had
/// one, its [`CAPACITY_RERUN_SECONDS`].
fn case_reply_value(reply: &JobReply, seconds: f64, rerun: Option<f64>) -> serde_json::Value {
    let mut value = serde_json::to_value(reply).unwrap_or_else(|e| {
        serde_json::json!({"result": {"result": "invalid", "message": e.to_string()}, "context_lost": false})
    });
    if let Some(object) = value.as_object_mut() {
        object.insert(WORKER_SECONDS.to_string(), serde_json::json!(seconds));
        if let Some(rerun) = rerun {
            object.insert(CAPACITY_RERUN_SECONDS.to_string(), serde_json::json!(rerun));
        }
    }
    value
}

type Hook = Box<dyn FnMut(&'static str) + Send>;

/// [`Handler::case_job`] for a whole case, and the seconds of its capacity re-run (from its
/// first breadcrumb to the end), if it had one.
fn timed_case_job(
    case: &Case,
    capacity_invariance: bool,
    threads: usize,
    sanitize: SanitizeMode,
    crumbs: &Arc<Breadcrumbs>,
) -> (JobReply, Option<f64>) {
    let opts = ExecOptions {
        check_capacity_invariance: capacity_invariance,
        threads,
        reference_model: std::env::var_os(NO_MODEL_ENV).is_none(),
    };
    let mut rerun_started = None;
    let mut on_op = |b: Breadcrumb| {
        if b.rerun && rerun_started.is_none() {
            rerun_started = Some(std::time::Instant::now());
        }
        crumbs.set_op(b.op_index.map_or(u64::MAX, |i| i as u64), b.op);
    };
    let backends = CaseBackends {
        kind: case.backend,
        threads,
        sanitize,
        crumbs: Some(Arc::clone(crumbs)),
    };
    let reply = run_case(case, &opts, &backends, None, &mut on_op);
    (reply, rerun_started.map(|t| t.elapsed().as_secs_f64()))
}

/// A backend of `kind` that writes the running kernel into `crumbs`.
pub(crate) fn traced_backend(
    kind: BackendKind,
    threads: usize,
    sanitize: SanitizeMode,
    crumbs: &Arc<Breadcrumbs>,
) -> Result<TracedBackend<Hook>, String> {
    let inner = open_backend_with(kind, threads, sanitize)?;
    let crumbs = Arc::clone(crumbs);
    let hook: Hook = Box::new(move |kernel| crumbs.set_kernel(kernel));
    Ok(TracedBackend::new(inner, Trace(hook)))
}

/// A reply as the payload sent back, with the seconds since `started` under [`WORKER_SECONDS`]
/// (the driver subtracts them from its round trip to see what isolation costs). A reply that does
/// not serialize is answered as an invalid case, never left unanswered.
pub(crate) fn reply_payload(
    reply: &impl Serialize,
    started: std::time::Instant,
) -> serde_json::Value {
    let mut value = serde_json::to_value(reply).unwrap_or_else(|e| {
        serde_json::json!({"result": {"result": "invalid", "message": e.to_string()}, "context_lost": false})
    });
    if let Some(object) = value.as_object_mut() {
        object.insert(
            WORKER_SECONDS.to_string(),
            serde_json::json!(started.elapsed().as_secs_f64()),
        );
    }
    value
}

type SoakEngine = Engine<Recorded<TracedBackend<Hook>>>;

/// The state a worker keeps between requests.
pub struct Handler {
    threads: usize,
    sanitize: SanitizeMode,
    soak: Option<(SoakEngine, u64)>,
    /// Where the soak engine's backend records violations.
    soak_log: ViolationLog,
}

impl Handler {
    /// A handler whose CPU kernels use `threads` threads (0: every core).
    pub fn new(threads: usize) -> Self {
        Handler {
            threads,
            sanitize: SanitizeMode::Off,
            soak: None,
            soak_log: ViolationLog::default(),
        }
    }

    /// This handler, opening backends for `mode` (`checked`: in their checked mode).
    pub fn with_sanitize(mut self, mode: SanitizeMode) -> Self {
        self.sanitize = mode;
        self
    }

    /// Handles one request payload; always returns a reply payload.
    pub fn handle(
        &mut self,
        payload: &serde_json::Value,
        crumbs: &Arc<Breadcrumbs>,
    ) -> serde_json::Value {
        self.reply(Job::deserialize(payload), crumbs)
    }

    /// [`Handler::handle`] for a payload as raw JSON text, as a worker receives it. A case job's
    /// case is parsed straight from the text: serde buffers the whole content of an internally
    /// tagged enum before it reads the variant, which for a case of millions of edges would cost
    /// several times the case in memory.
    pub fn handle_raw(
        &mut self,
        payload: &serde_json::value::RawValue,
        crumbs: &Arc<Breadcrumbs>,
    ) -> serde_json::Value {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(borrow)]
            job: std::borrow::Cow<'a, str>,
        }
        #[derive(Deserialize)]
        struct CaseJob {
            case: Case,
            #[serde(default)]
            capacity_invariance: bool,
        }
        let text = payload.get();
        let is_case = serde_json::from_str::<Kind<'_>>(text).is_ok_and(|k| k.job == "case");
        let job = if is_case {
            serde_json::from_str::<CaseJob>(text).map(|j| Job::Case {
                case: j.case,
                capacity_invariance: j.capacity_invariance,
            })
        } else {
            serde_json::from_str::<Job>(text)
        };
        self.reply(job, crumbs)
    }

    fn reply(
        &mut self,
        job: Result<Job, serde_json::Error>,
        crumbs: &Arc<Breadcrumbs>,
    ) -> serde_json::Value {
        let started = std::time::Instant::now();
        let reply = match job {
            Ok(Job::Batch {
                cases,
                capacity_invariance,
            }) => {
                let mut value = self.batch_job(&cases, capacity_invariance, crumbs);
                if let Some(object) = value.as_object_mut() {
                    object.insert(
                        WORKER_SECONDS.to_string(),
                        serde_json::json!(started.elapsed().as_secs_f64()),
                    );
                }
                return value;
            }
            // Timed apart from `run`, so that its reply says what its capacity re-run took.
            Ok(Job::Case {
                case,
                capacity_invariance,
            }) => {
                let (reply, rerun) = timed_case_job(
                    &case,
                    capacity_invariance,
                    self.threads,
                    self.sanitize,
                    crumbs,
                );
                return case_reply_value(&reply, started.elapsed().as_secs_f64(), rerun);
            }
            Ok(job) => self.run(job, crumbs),
            Err(e) => JobReply {
                result: CaseResult::Invalid {
                    message: format!("not a job: {e}"),
                },
                context_lost: false,
                soak: None,
                sanitizer: None,
            },
        };
        reply_payload(&reply, started)
    }

    /// The cases of a batch, each on a thread of its own with its own engines, answered together
    /// in their order. A case that kills the process (a signal, an abort, a deadlock the driver
    /// kills) takes the whole batch with it; the driver then runs each unanswered case alone.
    fn batch_job(
        &self,
        cases: &[Case],
        capacity_invariance: bool,
        crumbs: &Arc<Breadcrumbs>,
    ) -> serde_json::Value {
        let (threads, sanitize) = (self.threads, self.sanitize);
        let replies: Vec<serde_json::Value> = std::thread::scope(|scope| {
            let threads: Vec<_> = cases
                .iter()
                .map(|case| {
                    scope.spawn(move || {
                        let started = std::time::Instant::now();
                        let (reply, rerun) =
                            timed_case_job(case, capacity_invariance, threads, sanitize, crumbs);
                        case_reply_value(&reply, started.elapsed().as_secs_f64(), rerun)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| {
                    // A panic aborts the worker (its panic hook) before a join could see it.
                    thread.join().unwrap_or_else(|_| {
                        serde_json::json!({
                            "result": {"result": "environment", "message": "a case thread panicked"},
                            "context_lost": true,
                        })
                    })
                })
                .collect()
        });
        let context_lost = replies
            .iter()
            .any(|r| r.get("context_lost") == Some(&serde_json::Value::Bool(true)));
        serde_json::to_value(BatchReply {
            batch: replies,
            context_lost,
        })
        .unwrap_or_else(|e| {
            serde_json::json!({"result": {"result": "invalid", "message": e.to_string()}, "context_lost": false})
        })
    }

    fn traced(
        &self,
        kind: BackendKind,
        crumbs: &Arc<Breadcrumbs>,
    ) -> Result<TracedBackend<Hook>, String> {
        traced_backend(kind, self.threads, self.sanitize, crumbs)
    }

    /// A whole case, or its continuation from `resume`, on fresh traced backends.
    fn case_job(
        &self,
        case: &Case,
        capacity_invariance: bool,
        resume: Option<&ResumePoint>,
        crumbs: &Arc<Breadcrumbs>,
    ) -> JobReply {
        let opts = ExecOptions {
            check_capacity_invariance: capacity_invariance,
            threads: self.threads,
            // A measurement switch (what the model oracle costs a campaign), inherited by workers.
            reference_model: std::env::var_os(NO_MODEL_ENV).is_none(),
        };
        let mut on_op =
            |b: Breadcrumb| crumbs.set_op(b.op_index.map_or(u64::MAX, |i| i as u64), b.op);
        let backends = CaseBackends {
            kind: case.backend,
            threads: self.threads,
            sanitize: self.sanitize,
            crumbs: Some(Arc::clone(crumbs)),
        };
        run_case(case, &opts, &backends, resume, &mut on_op)
    }

    fn run(&mut self, job: Job, crumbs: &Arc<Breadcrumbs>) -> JobReply {
        match job {
            Job::Case {
                case,
                capacity_invariance,
            } => self.case_job(&case, capacity_invariance, None, crumbs),
            Job::Resume {
                case,
                capacity_invariance,
                resume,
            } => self.case_job(&case, capacity_invariance, Some(&resume), crumbs),
            // Answered by `batch_job` before a single reply is built.
            Job::Batch { .. } => JobReply {
                result: CaseResult::Invalid {
                    message: "a batch inside a batch".to_string(),
                },
                context_lost: false,
                soak: None,
                sanitizer: None,
            },
            Job::SoakStart { case } => {
                self.soak = None;
                self.soak_log = ViolationLog::default();
                crumbs.set_op(u64::MAX, execute::INIT_OP);
                let result = (|| {
                    let spec = case.graph.to_spec().map_err(|e| CaseResult::Invalid {
                        message: e.to_string(),
                    })?;
                    let backend = self
                        .traced(case.backend, crumbs)
                        .map(|b| Recorded::new(b, self.soak_log.clone()))
                        .map_err(|message| CaseResult::Environment { message })?;
                    Engine::with_config(
                        backend,
                        &spec,
                        case.initial_params(),
                        EngineConfig::default(),
                        FaultSet::of(&case.faults),
                    )
                    .map_err(|e| CaseResult::EngineError {
                        op_index: None,
                        op: execute::INIT_OP.to_string(),
                        error: e.to_string(),
                        sticky: e.is_sticky(),
                    })
                })();
                match result {
                    Ok(engine) => {
                        self.soak = Some((engine, 0));
                        self.soak_reply(CaseResult::Pass, 0.0, 0)
                    }
                    Err(result) => JobReply {
                        result,
                        context_lost: false,
                        soak: None,
                        sanitizer: self.soak_log.take(),
                    },
                }
            }
            Job::SoakOps { ops } => {
                let Some((engine, steps)) = self.soak.as_mut() else {
                    return JobReply {
                        result: CaseResult::Invalid {
                            message: "soak-ops before soak-start".to_string(),
                        },
                        context_lost: false,
                        soak: None,
                        sanitizer: None,
                    };
                };
                let mut step_seconds = 0.0;
                let mut request_steps = 0;
                let mut result = CaseResult::Pass;
                for (index, op) in ops.iter().enumerate() {
                    crumbs.set_op(index as u64, op.name());
                    let start = std::time::Instant::now();
                    let r = execute::apply_and_check(engine, index, op);
                    if let Op::Step { count } = op {
                        step_seconds += start.elapsed().as_secs_f64();
                        request_steps += count;
                        *steps += count;
                    }
                    if let Err(failure) = r {
                        result = failure;
                        break;
                    }
                }
                self.soak_reply(result, step_seconds, request_steps)
            }
        }
    }

    fn soak_reply(&self, result: CaseResult, step_seconds: f64, request_steps: u64) -> JobReply {
        // A poisoned process (CUDA after an injected lost context) cannot serve an engine again.
        let context_lost = matches!(
            &result,
            CaseResult::EngineError { sticky: true, .. } | CaseResult::Poisoned { .. }
        );
        let soak = self.soak.as_ref().map(|(engine, steps)| SoakStats {
            steps: *steps,
            step_seconds,
            request_steps,
            device_bytes: engine.device_bytes() as u64,
            rss_bytes: resident_bytes(),
            injections: engine.injections_fired(),
        });
        JobReply {
            result,
            context_lost,
            soak,
            sanitizer: self.soak_log.take(),
        }
    }
}

/// Resident set size of this process (Linux `/proc/self/statm`), 0 where unknown.
pub(crate) fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages * forcefield::backend::cpu::memory::page_size() as u64
}
