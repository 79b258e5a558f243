/*!
Several cases in one worker request: the payload ([`Job::Batch`]), and the reading of its answer
into one verdict per case.

A batch's worker runs its cases side by side, each on its own thread and engine, and answers them
together. When it dies (a signal, an abort, a hang the watchdog killed, a lost context) its
breadcrumbs say where *a* thread was, not which case that kernel belonged to, so nothing of the
death is attributed to any case: [`BatchRun::Died`] tells the caller to run every case of the batch
alone ([`crate::client::run::run_isolated`]), where the solo run's death and breadcrumbs decide the
outcome and signature. A case answered with a resume point (a poisoned CUDA process) is re-run
alone too: resumption is solo.

The cases of a CUDA batch share their worker's one context, and a context is lost for all its users
at once: when one case traps (a planted illegal address, an injected lost context), the others in
flight fail with sticky errors, or cannot open their backend, through no fault of their own. So in
a batch whose process did not stay intact — it lost its context, or a case could not open a backend
— only the passes are the cases' own; every other case is re-run alone, and the worker is retired.
Measured before this rule on an H100: a 20-second clean `--inject` campaign in batches of 8 reported
11 findings and its worker thread stopped at an "init failed" environment error.
*/

use std::time::Duration;

use crate::case::Case;
use crate::client::signature::{classify, Verdict};
use crate::isolate::{Execution, Outcome, WorkerSlot};
use crate::worker::job::{BatchReply, Job, JobReply, CAPACITY_RERUN_SECONDS, WORKER_SECONDS};

/// The payload asking a worker to run `cases` side by side.
pub(crate) fn batch_payload(cases: &[Case], capacity_invariance: bool) -> Job {
    Job::Batch {
        cases: cases.to_vec(),
        capacity_invariance,
    }
}

/// One case's answer within a batch.
#[derive(Clone, Debug)]
pub struct BatchCase {
    /// Its verdict.
    pub verdict: Verdict,
    /// The batch's execution with this case's reply as its outcome (no breadcrumb: a batch's
    /// breadcrumbs name no case; stderr is the whole batch's).
    pub execution: Execution,
    /// Seconds the worker spent on this case, on its thread.
    pub worker_seconds: Option<f64>,
    /// Of those, the capacity re-run's.
    pub capacity_rerun_seconds: Option<f64>,
}

/// What came of a batch.
#[derive(Clone, Debug)]
pub enum BatchRun {
    /// The worker answered: per case, in the request's order, its answer, or `None` when it must
    /// be re-run alone (its process was poisoned, its reply is not understood, or it did not pass
    /// in a batch whose process did not stay intact).
    Answered {
        /// The cases' answers.
        cases: Vec<Option<BatchCase>>,
        /// The worker's seconds on the whole request.
        worker_seconds: Option<f64>,
    },
    /// The worker died or hung before answering: every case must be re-run alone.
    Died {
        /// How.
        execution: Execution,
    },
    /// No worker could be started.
    Environment {
        /// Why.
        message: String,
    },
}

/// Runs `cases` side by side in one request of `slot`'s worker, under `deadline` for the whole.
pub fn run_batch(
    slot: &mut WorkerSlot,
    cases: &[Case],
    capacity_invariance: bool,
    deadline: Duration,
) -> BatchRun {
    let execution = match slot.run(batch_payload(cases, capacity_invariance), deadline) {
        Ok(execution) => execution,
        Err(e) => {
            return BatchRun::Environment {
                message: format!("cannot start a worker: {e}"),
            }
        }
    };
    let reply = match &execution.outcome {
        Outcome::Reply { payload } => serde_json::from_value::<BatchReply>(payload.clone())
            .ok()
            .filter(|r| r.batch.len() == cases.len())
            .map(|r| (r, reply_seconds(payload, WORKER_SECONDS))),
        _ => None,
    };
    // A reply that is not a whole batch is a death of the protocol: nothing in it is trusted.
    let Some((reply, worker_seconds)) = reply else {
        return BatchRun::Died { execution };
    };
    let decoded: Vec<Option<BatchCase>> = reply
        .batch
        .into_iter()
        .map(|payload| decode_case(&execution, payload))
        .collect();
    let (cases, intact) = keep_own_answers(reply.context_lost, decoded);
    if !intact {
        // Its context is gone or going (the slot already retires a worker that says so).
        slot.shutdown();
    }
    BatchRun::Answered {
        cases,
        worker_seconds,
    }
}

/// The answers of a batch that are their cases' own, and whether the batch's process stayed intact:
/// when it lost its context (`context_lost`) or a case could not open a backend, only the passes
/// are kept; every other case must run alone (`None`).
fn keep_own_answers(
    context_lost: bool,
    mut cases: Vec<Option<BatchCase>>,
) -> (Vec<Option<BatchCase>>, bool) {
    let environment = |case: &Option<BatchCase>| matches!(case, Some(c) if matches!(c.verdict, Verdict::Environment { .. }));
    let intact = !context_lost && !cases.iter().any(environment);
    if !intact {
        for case in &mut cases {
            if case.as_ref().is_some_and(|c| c.verdict != Verdict::Pass) {
                *case = None;
            }
        }
    }
    (cases, intact)
}

/// One case's reply of a batch, classified as a solo reply would be; `None` when it must run alone.
fn decode_case(batch: &Execution, payload: serde_json::Value) -> Option<BatchCase> {
    let reply = serde_json::from_value::<JobReply>(payload.clone()).ok()?;
    if reply.result.resume_point().is_some() {
        return None;
    }
    let worker_seconds = reply_seconds(&payload, WORKER_SECONDS);
    let capacity_rerun_seconds = reply_seconds(&payload, CAPACITY_RERUN_SECONDS);
    let execution = Execution {
        request_id: batch.request_id,
        outcome: Outcome::Reply { payload },
        breadcrumb: None,
        stderr: batch.stderr.clone(),
        duration: worker_seconds.map_or(batch.duration, Duration::from_secs_f64),
        worker_pid: batch.worker_pid,
    };
    Some(BatchCase {
        verdict: classify(&execution),
        execution,
        worker_seconds,
        capacity_rerun_seconds,
    })
}

/// A seconds field of a reply payload.
fn reply_seconds(payload: &serde_json::Value, field: &str) -> Option<f64> {
    payload.get(field).and_then(serde_json::Value::as_f64)
}

/// The seconds a worker reported spending on the request of `execution` (its
/// [`WORKER_SECONDS`]), if it replied.
pub(crate) fn worker_seconds(execution: &Execution) -> Option<f64> {
    match &execution.outcome {
        Outcome::Reply { payload } => reply_seconds(payload, WORKER_SECONDS),
        _ => None,
    }
}

/// The seconds of the capacity re-run a worker reported for the case of `execution`, if it
/// replied and there was one.
pub(crate) fn capacity_rerun_seconds(execution: &Execution) -> Option<f64> {
    match &execution.outcome {
        Outcome::Reply { payload } => reply_seconds(payload, CAPACITY_RERUN_SECONDS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::signature::Signature;

    fn answer(verdict: Verdict) -> Option<BatchCase> {
        Some(BatchCase {
            verdict,
            execution: Execution {
                request_id: 1,
                outcome: Outcome::Reply {
                    payload: serde_json::json!({}),
                },
                breadcrumb: None,
                stderr: Default::default(),
                duration: Duration::ZERO,
                worker_pid: 1,
            },
            worker_seconds: None,
            capacity_rerun_seconds: None,
        })
    }

    fn finding() -> Verdict {
        Verdict::Finding {
            signature: Signature {
                class: "engine-error".into(),
                detail: "sticky".into(),
                site: "step".into(),
            },
            summary: String::new(),
        }
    }

    fn kinds(cases: &[Option<BatchCase>]) -> Vec<&'static str> {
        cases
            .iter()
            .map(|c| match c.as_ref().map(|c| &c.verdict) {
                None => "alone",
                Some(Verdict::Pass) => "pass",
                Some(Verdict::Finding { .. }) => "finding",
                Some(Verdict::Environment { .. }) => "environment",
            })
            .collect()
    }

    fn batch() -> Vec<Option<BatchCase>> {
        vec![
            answer(Verdict::Pass),
            answer(finding()),
            None,
            answer(Verdict::Pass),
        ]
    }

    #[test]
    fn an_intact_batch_keeps_every_answer() {
        let (cases, intact) = keep_own_answers(false, batch());
        assert!(intact);
        assert_eq!(kinds(&cases), ["pass", "finding", "alone", "pass"]);
    }

    #[test]
    fn a_batch_that_lost_its_context_keeps_only_its_passes() {
        let (cases, intact) = keep_own_answers(true, batch());
        assert!(!intact);
        assert_eq!(kinds(&cases), ["pass", "alone", "alone", "pass"]);
    }

    #[test]
    fn a_case_that_could_not_open_a_backend_makes_the_batch_suspect() {
        let mut cases = batch();
        cases.push(answer(Verdict::Environment {
            message: "init failed: CUDA_ERROR_ILLEGAL_ADDRESS (sticky)".into(),
        }));
        let (cases, intact) = keep_own_answers(false, cases);
        assert!(!intact);
        assert_eq!(kinds(&cases), ["pass", "alone", "alone", "pass", "alone"]);
    }
}
