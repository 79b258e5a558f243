/*!
Crash signatures: what makes two findings "the same bug".

A [`Signature`] is the outcome class, the site (the kernel running when a worker died, else the
operation), and a location where there is one (a panic's source line, an invariant's check name).
Findings are deduplicated by signature, and minimization accepts a smaller case only when it gives the
same signature, so shrinking never drifts to another bug.

A sanitizer finding (a worker under `--sanitize checked` reporting an invalid memory access) is
`sanitizer:<kind>:<kernel>`, with kind `out-of-bounds`, `uninitialized` or `unallocated`; the buffer,
index and capacity are in its summary. It outranks whatever the case result says, since the
engine error or broken invariant that follows an invalid access is only its consequence.
*/

use serde::{Deserialize, Serialize};

use crate::isolate::{Execution, Outcome};
use crate::worker::execute::CaseResult;
use crate::worker::job::JobReply;
use crate::worker::violations::SanitizerFinding;

/// The identity of a finding. Serialized as its display form, `class:detail:site`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Signature {
    /// `signal`, `panic`, `hang`, `invariant`, `engine-error`, `exit`, `resource-exhausted`,
    /// `protocol-error`, `sanitizer`, `fault-not-tolerated`.
    pub class: String,
    /// What the class says more precisely: the signal name, the check name, the exit code.
    pub detail: String,
    /// The kernel running when it happened, else the operation.
    pub site: String,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}:{}", self.class, self.site)
        } else {
            write!(f, "{}:{}:{}", self.class, self.detail, self.site)
        }
    }
}

impl From<Signature> for String {
    fn from(s: Signature) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Signature {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for Signature {
    type Err = String;
    /// Parses the `Display` form (`class:site` or `class:detail:site`). The class is up to the first
    /// `:` and the site after the last (kernel and op names have none); the detail, a panic's
    /// `file:line:column` say, may hold any.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a signature (expected class:detail:site)");
        let (class, rest) = s.split_once(':').ok_or_else(bad)?;
        let (detail, site) = rest.rsplit_once(':').unwrap_or(("", rest));
        if class.is_empty() || site.is_empty() {
            return Err(bad());
        }
        Ok(Signature {
            class: class.to_string(),
            detail: detail.to_string(),
            site: site.to_string(),
        })
    }
}

impl Signature {
    fn new(class: &str, detail: impl Into<String>, site: impl Into<String>) -> Self {
        Signature {
            class: class.to_string(),
            detail: detail.into(),
            site: site.into(),
        }
    }

    /// A file-name-safe id: the display form with anything but `[A-Za-z0-9_.-]` turned into `-`.
    pub fn id(&self) -> String {
        self.to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }
}

/// What one isolated run of a case came to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// The case passed.
    Pass,
    /// The case failed; the signature says how.
    Finding {
        /// The identity of the failure.
        signature: Signature,
        /// A one-line description.
        summary: String,
    },
    /// The case could not be run here (backend unavailable, worker could not start).
    Environment {
        /// Why.
        message: String,
    },
}

impl Verdict {
    /// The signature of a finding.
    pub fn signature(&self) -> Option<&Signature> {
        match self {
            Verdict::Finding { signature, .. } => Some(signature),
            _ => None,
        }
    }
}

/// The site named by a breadcrumb: the kernel if one was running, else the op, else `unknown`.
fn site_of(execution: &Execution) -> String {
    let Some(b) = &execution.breadcrumb else {
        return "startup".to_string();
    };
    b.kernel
        .clone()
        .filter(|k| !k.is_empty())
        .or_else(|| b.op.clone().filter(|o| !o.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The site of a hang: the op the worker was in, never the kernel. A watchdog fires at an arbitrary
/// moment of a loop that does not end, so the kernel running then is chance: one SSSP that never
/// converges would otherwise be `hang:sssp_relax` in one case and `hang:frontier_compact` in the next.
fn hang_site_of(execution: &Execution) -> String {
    let Some(b) = &execution.breadcrumb else {
        return "startup".to_string();
    };
    b.op.clone()
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Classifies a case result reported by a live worker (or by an in-process run).
pub fn classify_result(result: &CaseResult) -> Verdict {
    match result {
        CaseResult::Pass => Verdict::Pass,
        CaseResult::InvariantViolation { op, check, .. } => Verdict::Finding {
            signature: Signature::new("invariant", check.clone(), op.clone()),
            summary: result.to_string(),
        },
        CaseResult::EngineError { op, sticky, .. } => Verdict::Finding {
            signature: Signature::new(
                "engine-error",
                if *sticky { "sticky" } else { "" },
                op.clone(),
            ),
            summary: result.to_string(),
        },
        CaseResult::FaultNotTolerated { op, failure, .. } => Verdict::Finding {
            signature: Signature::new("fault-not-tolerated", failure.clone(), op.clone()),
            summary: result.to_string(),
        },
        // Only an isolated run can go on in a new process; in this one it is an environment limit.
        CaseResult::Poisoned { .. } => Verdict::Environment {
            message: result.to_string(),
        },
        CaseResult::Environment { message } | CaseResult::Invalid { message } => {
            Verdict::Environment {
                message: message.clone(),
            }
        }
    }
}

/// Classifies a worker's reply: its sanitizer finding if it has one, else its case result.
pub(crate) fn classify_reply(reply: &JobReply) -> Verdict {
    match &reply.sanitizer {
        Some(finding) => classify_sanitizer(finding, &reply.result),
        None => classify_result(&reply.result),
    }
}

/// The verdict of a sanitizer finding made while running to `result`: `sanitizer:<kind>:<kernel>`,
/// summarized in compute-sanitizer's words with the op it happened in.
pub(crate) fn classify_sanitizer(finding: &SanitizerFinding, result: &CaseResult) -> Verdict {
    let during = match result {
        CaseResult::EngineError { op_index, op, .. }
        | CaseResult::InvariantViolation { op_index, op, .. } => match op_index {
            Some(i) => format!(" (during op {i}, {op})"),
            None => format!(" (during {op})"),
        },
        _ => String::new(),
    };
    Verdict::Finding {
        signature: Signature::new("sanitizer", finding.kind.clone(), finding.kernel.clone()),
        summary: format!("{}{during}", finding.message),
    }
}

/// Classifies an isolated execution: a reply is judged by its case result, a death by how the
/// worker died and where its breadcrumb was.
pub fn classify(execution: &Execution) -> Verdict {
    let site = site_of(execution);
    let (signature, summary) = match &execution.outcome {
        Outcome::Reply { payload } => {
            // A target worker's failure (its engine died, hung, erred) is signed by the failure.
            if let Some(verdict) = crate::client::target_verdict::classify_target_reply(payload) {
                return verdict;
            }
            return match serde_json::from_value::<JobReply>(payload.clone()) {
                Ok(reply) => classify_reply(&reply),
                Err(e) => Verdict::Finding {
                    signature: Signature::new("protocol-error", "bad-reply", site),
                    summary: format!("the worker's reply is not understood: {e}"),
                },
            };
        }
        Outcome::Signal { signal } => (
            Signature::new("signal", signal.clone(), site.clone()),
            format!("worker killed by {signal} in {site}"),
        ),
        Outcome::Panic { message, location } => (
            Signature::new("panic", location.clone(), site.clone()),
            format!("panic at {location} in {site}: {message}"),
        ),
        Outcome::Hang { after } => (
            Signature::new("hang", "", hang_site_of(execution)),
            format!(
                "no reply after {:.1} s in {site}; killed",
                after.as_secs_f64()
            ),
        ),
        Outcome::Exit { code } => (
            Signature::new("exit", code.to_string(), site.clone()),
            format!("worker exited with code {code} in {site}"),
        ),
        Outcome::ResourceExhausted { detail } => (
            Signature::new("resource-exhausted", "", site.clone()),
            format!("resources exhausted in {site}: {detail}"),
        ),
        Outcome::ProtocolError { detail } => (
            Signature::new("protocol-error", "", site.clone()),
            format!("protocol error in {site}: {detail}"),
        ),
    };
    Verdict::Finding { signature, summary }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip_and_safe_ids() {
        let s: Signature = "signal:SIGSEGV:sort_pairs".parse().unwrap();
        assert_eq!(s.class, "signal");
        assert_eq!(s.detail, "SIGSEGV");
        assert_eq!(s.site, "sort_pairs");
        assert_eq!(s.to_string(), "signal:SIGSEGV:sort_pairs");
        assert_eq!(s.id(), "signal-SIGSEGV-sort_pairs");
        let h: Signature = "hang:force_pass".parse().unwrap();
        assert_eq!(h.detail, "");
        assert_eq!(h.to_string(), "hang:force_pass");
        let p = Signature::new("panic", "src/a.rs:10:5", "step");
        assert_eq!(p.id(), "panic-src-a.rs-10-5-step");
        assert_eq!(p.to_string().parse::<Signature>().unwrap(), p);
        assert!("nonsense".parse::<Signature>().is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"signal:SIGSEGV:sort_pairs\"");
        assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), s);
    }

    /// One SSSP that never ends, killed by the watchdog once in `sssp_relax` and once in
    /// `frontier_compact`: one signature, `hang:sssp`, so one finding; the kernel stays in the
    /// summary.
    #[test]
    fn a_hang_is_signed_by_its_op_whatever_kernel_was_running() {
        use crate::isolate::{Breadcrumb, CapturedOutput};
        let hung_in = |kernel: &str| Execution {
            request_id: 1,
            outcome: Outcome::Hang {
                after: std::time::Duration::from_secs(30),
            },
            breadcrumb: Some(Breadcrumb {
                request_id: 1,
                op_index: Some(4),
                op: Some("sssp".into()),
                kernel: Some(kernel.into()),
                torn: false,
            }),
            stderr: CapturedOutput::default(),
            duration: std::time::Duration::from_secs(30),
            worker_pid: 1,
        };
        let (a, b) = (
            classify(&hung_in("sssp_relax")),
            classify(&hung_in("frontier_compact")),
        );
        assert_eq!(
            a.signature().map(|s| s.to_string()).as_deref(),
            Some("hang:sssp")
        );
        assert_eq!(a.signature(), b.signature());
        let Verdict::Finding { summary, .. } = b else {
            panic!("a finding")
        };
        assert!(summary.contains("frontier_compact"), "{summary}");
        // A signal still names the kernel: a crash happens where it happens.
        let mut crashed = hung_in("sort_pairs");
        crashed.outcome = Outcome::Signal {
            signal: "SIGSEGV".into(),
        };
        assert_eq!(
            classify(&crashed)
                .signature()
                .map(|s| s.to_string())
                .as_deref(),
            Some("signal:SIGSEGV:sort_pairs")
        );
    }

    #[test]
    fn invariant_results_are_findings_named_by_check_and_op() {
        let r = CaseResult::InvariantViolation {
            op_index: Some(3),
            op: "step".into(),
            check: "positions-finite".into(),
            detail: "node 2 is NaN".into(),
        };
        let v = classify_result(&r);
        assert_eq!(
            v.signature().map(|s| s.to_string()).as_deref(),
            Some("invariant:positions-finite:step")
        );
        assert_eq!(classify_result(&CaseResult::Pass), Verdict::Pass);
    }

    #[test]
    fn a_sanitizer_finding_outranks_the_engine_error_it_caused() {
        let finding = SanitizerFinding {
            kind: "out-of-bounds".into(),
            kernel: "sort_pairs".into(),
            buffer: "sorted_keys".into(),
            index: 12,
            len: 12,
            capacity: 12,
            access: "write".into(),
            size: 4,
            more: 0,
            message: "Invalid __global__ write of size 4 bytes: buffer `sorted_keys` index 12 >= capacity 12 (live length 12) in kernel `sort_pairs`".into(),
        };
        let result = CaseResult::EngineError {
            op_index: Some(2),
            op: "step".into(),
            error: "launch failed".into(),
            sticky: false,
        };
        let reply = JobReply {
            result: result.clone(),
            context_lost: false,
            soak: None,
            sanitizer: Some(finding),
        };
        let Verdict::Finding { signature, summary } = classify_reply(&reply) else {
            panic!("a finding")
        };
        assert_eq!(signature.to_string(), "sanitizer:out-of-bounds:sort_pairs");
        assert_eq!(signature.id(), "sanitizer-out-of-bounds-sort_pairs");
        assert_eq!(
            signature.to_string().parse::<Signature>().unwrap(),
            signature
        );
        assert!(
            summary.contains("`sorted_keys` index 12 >= capacity 12")
                && summary.ends_with("(during op 2, step)"),
            "{summary}"
        );
        let plain = JobReply {
            sanitizer: None,
            ..reply
        };
        assert_eq!(
            classify_reply(&plain)
                .signature()
                .map(|s| s.to_string())
                .as_deref(),
            Some("engine-error:step")
        );
    }
}
