/*!
The verdict of a target worker's reply (`forcefield worker --target`): when the hosted engine
failed — an `Internal` error, a death by signal or exit code, a Rust panic, a hang, a broken
protocol — the reply's `target.failure` says how and during which op, and the finding is signed
`class:detail:op` like a worker's own death (`signal:SIGSEGV:step`, `engine-error:ValueError:step`).
A check that failed is an ordinary case result (`invariant:<check>:<op>`).
*/

use serde::Deserialize;

use crate::client::signature::{Signature, Verdict};
use crate::worker::target_case::TargetReport;

/// The verdict of a reply carrying a target failure; `None` for any other reply (then the reply's
/// case result decides).
pub fn classify_target_reply(payload: &serde_json::Value) -> Option<Verdict> {
    #[derive(Deserialize)]
    struct WithTarget {
        target: TargetReport,
    }
    let reply = WithTarget::deserialize(payload).ok()?;
    let failure = reply.target.failure?;
    let at = match failure.op_index {
        Some(i) => format!("op {i} ({})", failure.op),
        None => failure.op.clone(),
    };
    Some(Verdict::Finding {
        signature: Signature {
            class: failure.class,
            detail: failure.detail,
            site: failure.op,
        },
        summary: format!("{at}: {}", failure.message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::target_case::TargetFailure;

    #[test]
    fn a_failure_is_signed_by_class_detail_and_op_and_other_replies_are_left_alone() {
        let report = TargetReport {
            failure: Some(TargetFailure {
                class: "signal".into(),
                detail: "SIGSEGV".into(),
                op_index: Some(3),
                op: "step".into(),
                message: "the target was killed by SIGSEGV during `step`".into(),
            }),
            ..TargetReport::default()
        };
        let payload = serde_json::json!({"result": {"result": "pass"}, "context_lost": false,
            "target": report});
        let Some(Verdict::Finding { signature, summary }) = classify_target_reply(&payload) else {
            panic!("a finding")
        };
        assert_eq!(signature.to_string(), "signal:SIGSEGV:step");
        assert!(summary.starts_with("op 3 (step): "), "{summary}");
        let clean = serde_json::json!({"result": {"result": "pass"}, "context_lost": false,
            "target": TargetReport::default()});
        assert_eq!(classify_target_reply(&clean), None);
        let engine = serde_json::json!({"result": {"result": "pass"}, "context_lost": false});
        assert_eq!(classify_target_reply(&engine), None);
    }
}
