/*!
What happened when a worker ran one request: the outcome classes and how a death is classified.

This module is responsible for turning what the supervisor observed (a reply, a wait status, a
deadline passed, a broken channel) together with the captured output into an [`Outcome`], and for
the serializable [`Execution`] record that reports carry. It knows nothing about what a request
means: deciding that a reply is a pass or an invariant violation is the caller's job.
*/

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::breadcrumbs::Breadcrumb;
use super::capture::CapturedOutput;

/// Prefix of the single line a worker's panic hook writes to stderr before aborting; the rest of
/// the line is a JSON [`PanicRecord`].
pub const PANIC_PREFIX: &str = "FORCEFIELD-PANIC ";

/// Prefix of the line Rust's default allocation-failure handler prints before aborting.
const ALLOC_FAILURE_PREFIX: &str = "memory allocation of ";

/// The panic line's JSON body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanicRecord {
    /// The panic message (cut to a bounded length by the worker).
    pub message: String,
    /// `file:line:column` of the panic.
    pub location: String,
}

/// How one execution ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum Outcome {
    /// The worker answered; the payload is the handler's result.
    Reply {
        /// The reply payload.
        payload: serde_json::Value,
    },
    /// The worker panicked (its hook reported the panic, then it aborted).
    Panic {
        /// The panic message.
        message: String,
        /// Where it panicked, `file:line:column`.
        location: String,
    },
    /// The worker was killed by a signal it did not ask for (SIGSEGV, SIGBUS, SIGABRT, SIGFPE,
    /// SIGILL, SIGKILL, ...).
    Signal {
        /// The signal's name, for example `SIGSEGV`.
        signal: String,
    },
    /// The worker exited without replying.
    Exit {
        /// Its exit status.
        code: i32,
    },
    /// The worker did not reply before the deadline and was killed.
    Hang {
        /// Time from sending the request to giving up.
        #[serde(with = "secs")]
        after: Duration,
    },
    /// The worker ran out of a resource (memory, CPU time, file size).
    ResourceExhausted {
        /// What ran out, in the words of whoever noticed.
        detail: String,
    },
    /// The worker broke the protocol (malformed or oversized message, wrong id, closed channel);
    /// it was killed.
    ProtocolError {
        /// What was wrong.
        detail: String,
    },
}

impl Outcome {
    /// The class name, as in the serialized `class` field (`reply`, `panic`, `signal`, `exit`,
    /// `hang`, `resource_exhausted`, `protocol_error`): the first part of a signature.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Reply { .. } => "reply",
            Outcome::Panic { .. } => "panic",
            Outcome::Signal { .. } => "signal",
            Outcome::Exit { .. } => "exit",
            Outcome::Hang { .. } => "hang",
            Outcome::ResourceExhausted { .. } => "resource_exhausted",
            Outcome::ProtocolError { .. } => "protocol_error",
        }
    }

    /// Whether the worker answered. Every other outcome means the worker is gone.
    pub fn is_reply(&self) -> bool {
        matches!(self, Outcome::Reply { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Reply { .. } => write!(f, "reply"),
            Outcome::Panic { message, location } => write!(f, "panic at {location}: {message}"),
            Outcome::Signal { signal } => write!(f, "killed by {signal}"),
            Outcome::Exit { code } => write!(f, "exited with status {code} without replying"),
            Outcome::Hang { after } => {
                write!(f, "hang: no reply after {:.3}s", after.as_secs_f64())
            }
            Outcome::ResourceExhausted { detail } => write!(f, "resource exhausted: {detail}"),
            Outcome::ProtocolError { detail } => write!(f, "protocol error: {detail}"),
        }
    }
}

/// One request run by one worker, as reports keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// The request's id.
    pub request_id: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The worker's last breadcrumb for this request; `None` when the worker never started it
    /// (it died before reading the request).
    pub breadcrumb: Option<Breadcrumb>,
    /// The worker's stderr and stdout during the request, bounded.
    pub stderr: CapturedOutput,
    /// Time from sending the request to the outcome.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// The worker's process id.
    pub worker_pid: u32,
}

/// How a worker process ended, from its wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Death {
    /// It called `exit`.
    Exited { code: i32 },
    /// A signal killed it.
    Signaled { signal: i32 },
}

/// Classifies a worker's death using what it printed last.
pub(crate) fn classify_death(death: Death, output: &CapturedOutput) -> Outcome {
    let signal = match death {
        Death::Exited { code } => return Outcome::Exit { code },
        Death::Signaled { signal } => signal,
    };
    match signal {
        libc::SIGABRT => {
            if let Some(panic) = last_panic(output) {
                return Outcome::Panic {
                    message: panic.message,
                    location: panic.location,
                };
            }
            if let Some(line) = output.lines_starting_with(ALLOC_FAILURE_PREFIX).pop() {
                return Outcome::ResourceExhausted { detail: line };
            }
        }
        libc::SIGXCPU => {
            return Outcome::ResourceExhausted {
                detail: "SIGXCPU: CPU time limit exceeded".into(),
            }
        }
        libc::SIGXFSZ => {
            return Outcome::ResourceExhausted {
                detail: "SIGXFSZ: file size limit exceeded".into(),
            }
        }
        _ => {}
    }
    Outcome::Signal {
        signal: signal_name(signal),
    }
}

/// The last panic line in the output, parsed; a line that is not valid JSON still counts, with the
/// raw text as its message.
fn last_panic(output: &CapturedOutput) -> Option<PanicRecord> {
    let line = output.lines_starting_with(PANIC_PREFIX).pop()?;
    let body = &line[PANIC_PREFIX.len()..];
    Some(serde_json::from_str(body).unwrap_or_else(|_| PanicRecord {
        message: body.to_owned(),
        location: "unknown location".to_owned(),
    }))
}

/// `SIGSEGV` for 11, `signal 42` for numbers without a name.
pub(crate) fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// Durations as seconds (a float) in reports.
mod secs {
    use std::time::Duration;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn output(text: &str) -> CapturedOutput {
        CapturedOutput {
            head: text.to_owned(),
            tail: String::new(),
            dropped_bytes: 0,
            total_bytes: text.len() as u64,
        }
    }

    #[test]
    fn an_abort_after_a_panic_line_is_a_panic() {
        let text = format!(
            "noise\n{PANIC_PREFIX}{{\"message\":\"old\",\"location\":\"a.rs:1:1\"}}\n{PANIC_PREFIX}{{\"message\":\"boom\",\"location\":\"src/x.rs:3:5\"}}\n"
        );
        let outcome = classify_death(
            Death::Signaled {
                signal: libc::SIGABRT,
            },
            &output(&text),
        );
        assert_eq!(
            outcome,
            Outcome::Panic {
                message: "boom".into(),
                location: "src/x.rs:3:5".into()
            }
        );
    }

    #[test]
    fn a_panic_line_does_not_turn_another_death_into_a_panic() {
        let text = format!("{PANIC_PREFIX}{{\"message\":\"boom\",\"location\":\"x.rs:1:1\"}}\n");
        let outcome = classify_death(
            Death::Signaled {
                signal: libc::SIGSEGV,
            },
            &output(&text),
        );
        assert_eq!(
            outcome,
            Outcome::Signal {
                signal: "SIGSEGV".into()
            }
        );
        assert_eq!(
            classify_death(Death::Exited { code: 3 }, &output(&text)),
            Outcome::Exit { code: 3 }
        );
    }

    #[test]
    fn a_bare_abort_is_a_signal() {
        let outcome = classify_death(
            Death::Signaled {
                signal: libc::SIGABRT,
            },
            &output("hello\n"),
        );
        assert_eq!(
            outcome,
            Outcome::Signal {
                signal: "SIGABRT".into()
            }
        );
    }

    #[test]
    fn allocation_failure_and_limits_are_resource_exhaustion() {
        let text = "memory allocation of 4611686018427387904 bytes failed\n";
        let outcome = classify_death(
            Death::Signaled {
                signal: libc::SIGABRT,
            },
            &output(text),
        );
        assert_eq!(
            outcome,
            Outcome::ResourceExhausted {
                detail: text.trim_end().into()
            }
        );
        let outcome = classify_death(
            Death::Signaled {
                signal: libc::SIGXCPU,
            },
            &output(""),
        );
        assert_eq!(outcome.class(), "resource_exhausted");
    }

    #[test]
    fn unnamed_signals_get_a_number() {
        assert_eq!(signal_name(libc::SIGBUS), "SIGBUS");
        assert_eq!(signal_name(200), "signal 200");
    }

    #[test]
    fn an_execution_round_trips_through_json() {
        let execution = Execution {
            request_id: 4,
            outcome: Outcome::Hang {
                after: Duration::from_millis(1500),
            },
            breadcrumb: None,
            stderr: output("x"),
            duration: Duration::from_millis(2000),
            worker_pid: 12,
        };
        let value = serde_json::to_value(&execution).unwrap();
        assert_eq!(value["outcome"], json!({"class": "hang", "after": 1.5}));
        let back: Execution = serde_json::from_value(value).unwrap();
        assert_eq!(back, execution);
    }

    #[test]
    fn class_names_match_the_serialized_tag() {
        let outcomes = [
            Outcome::Reply { payload: json!({}) },
            Outcome::Panic {
                message: "m".into(),
                location: "l".into(),
            },
            Outcome::Signal {
                signal: "SIGILL".into(),
            },
            Outcome::Exit { code: 1 },
            Outcome::Hang {
                after: Duration::ZERO,
            },
            Outcome::ResourceExhausted { detail: "d".into() },
            Outcome::ProtocolError { detail: "d".into() },
        ];
        for outcome in outcomes {
            assert_eq!(
                serde_json::to_value(&outcome).unwrap()["class"],
                outcome.class()
            );
        }
    }
}
