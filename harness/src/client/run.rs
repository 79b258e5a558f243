/*!
Running one case in a worker and reading the answer: the payload that asks for it
([`case_payload`]), the resumption loop when a worker's process was poisoned (a lost CUDA context:
the reply says where to resume and a fresh worker continues), and the verdict
([`crate::client::signature::classify`]). Campaigns, the corpus, the soak driver and `repro` all
run cases through [`run_isolated`].
*/

use std::time::Duration;

use crate::case::Case;
use crate::client::signature::{classify, Verdict};
use crate::isolate::{Execution, Outcome, WorkerSlot};
use crate::worker::job::{resume_payload, Job};

/// The payload asking a worker to run `case`.
pub fn case_payload(case: &Case, capacity_invariance: bool) -> Job {
    Job::Case {
        case: case.clone(),
        capacity_invariance,
    }
}

/// Runs `case` once in `slot` and classifies the execution.
pub fn run_isolated(
    slot: &mut WorkerSlot,
    case: &Case,
    capacity_invariance: bool,
    deadline: Duration,
) -> (Verdict, Option<Execution>) {
    let mut payload = case_payload(case, capacity_invariance);
    // A worker whose process was poisoned (a lost CUDA context) answers with where to resume; it
    // is retired, and the slot's next worker continues the case from there. Each resume consumes
    // an injected lost context, so a case has at most as many as it has `inject` ops (twice: both
    // runs); the bound only guards against a worker that keeps asking.
    for _ in 0..=2 * case.ops.len() {
        let execution = match slot.run(payload, deadline) {
            Ok(execution) => execution,
            Err(e) => {
                let message = format!("cannot start a worker: {e}");
                return (Verdict::Environment { message }, None);
            }
        };
        let next = match &execution.outcome {
            Outcome::Reply { payload } => resume_payload(case, capacity_invariance, payload),
            _ => None,
        };
        match next {
            Some(next) => payload = next,
            None => return (classify(&execution), Some(execution)),
        }
    }
    let message = "the case kept losing its process past its number of ops".to_string();
    (Verdict::Environment { message }, None)
}
