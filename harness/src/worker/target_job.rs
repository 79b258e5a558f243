/*!
A worker that hosts another engine: `forcefield worker --target "CMD ARGS"`.

The worker keeps one [`ProcessTarget`] (the command, speaking `forcefield-target/1`) alive across
cases and runs each case job on it with [`crate::worker::target_case`]. When the target dies,
hangs or breaks the protocol, the case's reply says so ([`TargetReport::failure`]) and asks the
driver to retire this worker (`context_lost`); the next worker starts a new target before its
hello, so that no case's time limit pays for a target's start-up. The target is killed when the worker dies (its parent-death
signal), so a worker killed by the driver's watchdog takes its target along.

The reply has [`crate::worker::job::JobReply`]'s fields (`result`, `context_lost`) and one more,
`target` ([`TargetReport`]), which the driver reads first when it is there
([`crate::client::target_verdict`]).
*/

use std::sync::Arc;
use std::time::Duration;

use forcefield_target::{ProcessOptions, ProcessTarget};
use serde::Serialize;

use crate::isolate::Breadcrumbs;
use crate::worker::execute::{Breadcrumb, CaseResult};
use crate::worker::job::{reply_payload, Job};
use crate::worker::target_case::{run_target_case, TargetReport};

/// How long the hosted target may take over one request before it counts as hung. Longer than
/// any campaign's per-case limit, so that the driver's watchdog, which confirms a hang with a
/// longer re-run, normally decides; this bounds a worker run without one.
pub const TARGET_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

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
    command: String,
    options: ProcessOptions,
    target: Option<ProcessTarget>,
}

impl TargetHandler {
    /// A handler hosting `command`, started now: before the worker's hello, so that the target's
    /// start-up (an interpreter, its imports) counts against the worker's start-up limit rather
    /// than a case's. One that fails to start is tried again by the first case, which reports why.
    pub fn new(command: &str) -> Self {
        let options = ProcessOptions {
            timeout: TARGET_REQUEST_TIMEOUT,
            die_with_parent: true,
            ..ProcessOptions::default()
        };
        TargetHandler {
            command: command.to_string(),
            target: ProcessTarget::spawn(command, options.clone()).ok(),
            options,
        }
    }

    /// Handles one request payload (a case job; a resumption is run as the whole case again,
    /// since a target has no poisoned context to resume from); always returns a reply payload.
    pub fn handle_raw(
        &mut self,
        payload: &serde_json::value::RawValue,
        crumbs: &Arc<Breadcrumbs>,
    ) -> serde_json::Value {
        let started = std::time::Instant::now();
        let reply = match serde_json::from_str::<Job>(payload.get()) {
            Ok(Job::Case { case, .. } | Job::Resume { case, .. }) => self.case(&case, crumbs),
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

    fn case(&mut self, case: &crate::case::Case, crumbs: &Arc<Breadcrumbs>) -> TargetJobReply {
        let target = match self.target.as_mut() {
            Some(t) => t,
            None => match ProcessTarget::spawn(&self.command, self.options.clone()) {
                Ok(t) => self.target.insert(t),
                Err(e) => {
                    return plain(CaseResult::Environment {
                        message: e.to_string(),
                    })
                }
            },
        };
        let mut on_op =
            |b: Breadcrumb| crumbs.set_op(b.op_index.map_or(u64::MAX, |i| i as u64), b.op);
        let (result, report) = run_target_case(target, case, &mut on_op);
        let gone = report.failure.as_ref().is_some_and(|f| f.process_gone());
        if gone {
            self.target = None;
        }
        TargetJobReply {
            result,
            // The target is gone: the driver retires this worker, and the next one starts a new
            // target before its hello, outside the next case's time limit.
            context_lost: gone,
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
