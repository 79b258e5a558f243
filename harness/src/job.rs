/*!
What a worker is asked to do, and the handler that does it.

The driver sends a [`Job`] as the payload of a worker request; the worker answers with a [`JobReply`].
Two kinds of job: a whole case on a fresh engine, or a soak session — one long-lived engine, like a
server's, fed chunks of operations. The handler writes the current operation and kernel into the
worker's breadcrumbs, so that if a kernel kills the process the driver knows where it was.
*/

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use forcefield::backend::Backend;
use forcefield::{CpuBackend, CudaBackend, Engine, EngineConfig, FaultSet};

use crate::case::{BackendKind, Case, Op};
use crate::execute::{self, Breadcrumb, CaseResult, ExecOptions};
use crate::isolate::Breadcrumbs;
use crate::traced_backend::TracedBackend;

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
pub struct SoakStats {
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
}

/// A worker's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobReply {
    /// What happened.
    pub result: CaseResult,
    /// Whether the device context is lost: the driver retires this worker.
    pub context_lost: bool,
    /// Soak measurements, for soak jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakStats>,
}

/// Opens the backend a case asks for.
pub fn open_backend(kind: BackendKind, threads: usize) -> Result<Box<dyn Backend>, String> {
    match kind {
        BackendKind::Cpu => Ok(Box::new(if threads == 0 {
            CpuBackend::new()
        } else {
            CpuBackend::with_threads(threads)
        })),
        BackendKind::Cuda => CudaBackend::new(0)
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .map_err(|e| format!("no usable CUDA device: {e}")),
    }
}

type Hook = Box<dyn FnMut(&'static str) + Send>;
type SoakEngine = Engine<TracedBackend<Hook>>;

/// The state a worker keeps between requests.
pub struct Handler {
    threads: usize,
    soak: Option<(SoakEngine, u64)>,
}

impl Handler {
    /// A handler whose CPU kernels use `threads` threads (0: every core).
    pub fn new(threads: usize) -> Self {
        Handler {
            threads,
            soak: None,
        }
    }

    /// Handles one request payload; always returns a reply payload.
    pub fn handle(
        &mut self,
        payload: &serde_json::Value,
        crumbs: &Arc<Breadcrumbs>,
    ) -> serde_json::Value {
        let reply = match serde_json::from_value::<Job>(payload.clone()) {
            Ok(job) => self.run(job, crumbs),
            Err(e) => JobReply {
                result: CaseResult::Invalid {
                    message: format!("not a job: {e}"),
                },
                context_lost: false,
                soak: None,
            },
        };
        serde_json::to_value(&reply).unwrap_or_else(|e| {
            serde_json::json!({"result": {"result": "invalid", "message": e.to_string()}, "context_lost": false})
        })
    }

    fn traced(
        &self,
        kind: BackendKind,
        crumbs: &Arc<Breadcrumbs>,
    ) -> Result<TracedBackend<Hook>, String> {
        let inner = open_backend(kind, self.threads)?;
        let crumbs = Arc::clone(crumbs);
        let hook: Hook = Box::new(move |kernel| crumbs.set_kernel(kernel));
        Ok(TracedBackend::new(inner, hook))
    }

    fn run(&mut self, job: Job, crumbs: &Arc<Breadcrumbs>) -> JobReply {
        match job {
            Job::Case {
                case,
                capacity_invariance,
            } => {
                let opts = ExecOptions {
                    check_capacity_invariance: capacity_invariance,
                    threads: self.threads,
                };
                let mut on_op =
                    |b: Breadcrumb| crumbs.set_op(b.op_index.map_or(u64::MAX, |i| i as u64), b.op);
                let make = || self.traced(case.backend, crumbs);
                let result = execute::execute_with(&case, &opts, &make, &mut on_op);
                let context_lost = matches!(&result, CaseResult::EngineError { sticky: true, .. });
                JobReply {
                    result,
                    context_lost,
                    soak: None,
                }
            }
            Job::SoakStart { case } => {
                self.soak = None;
                crumbs.set_op(u64::MAX, execute::INIT_OP);
                let result = (|| {
                    let spec = case.graph.to_spec().map_err(|e| CaseResult::Invalid {
                        message: e.to_string(),
                    })?;
                    let backend = self
                        .traced(case.backend, crumbs)
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
        let context_lost = matches!(&result, CaseResult::EngineError { sticky: true, .. });
        let soak = self.soak.as_ref().map(|(engine, steps)| SoakStats {
            steps: *steps,
            step_seconds,
            request_steps,
            device_bytes: engine.device_bytes() as u64,
            rss_bytes: resident_bytes(),
        });
        JobReply {
            result,
            context_lost,
            soak,
        }
    }
}

/// Resident set size of this process (Linux `/proc/self/statm`), 0 where unknown.
pub fn resident_bytes() -> u64 {
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
