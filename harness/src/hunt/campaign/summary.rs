//! What a campaign reports: its [`Finding`]s and their status, the slowest cases, and the
//! [`Summary`] (`forcefield-summary/1`) with the time split of its threads.

use std::collections::BTreeMap;

use forcefield::Fault;
use serde::{Deserialize, Serialize};

use super::config::Shard;
use crate::case::minimize::{CaseSize, MinimizeReport};
use crate::case::{BackendKind, Case};
use crate::client::signature::Signature;
use crate::hunt::time_split::TimeSplit;
use crate::hunt::watchdog::WatchdogReport;
use crate::isolate::Execution;

/// One distinct finding of a campaign.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// Its identity.
    pub signature: Signature,
    /// One line on the first occurrence.
    pub summary: String,
    /// Occurrences.
    pub count: u64,
    /// Index of the first case that showed it.
    pub first_case: u64,
    /// Seconds from the campaign's start to the first occurrence.
    pub seconds_to_first: f64,
    /// Size of the first case.
    pub case_size: CaseSize,
    /// Minimization, when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimization: Option<MinimizeReport>,
    /// Seconds from the campaign's start until the finding was minimized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_minimized: Option<f64>,
    /// Other signatures of the same bug, merged into this finding after minimization
    /// ([`crate::hunt::dedup`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Signature>,
    /// Whether it reproduced and how far its minimization got.
    #[serde(flatten)]
    pub status: FindingStatus,
    /// The first failing case.
    #[serde(skip)]
    pub case: Option<Case>,
    /// Its minimized form.
    #[serde(skip)]
    pub minimized: Option<Case>,
    /// The first failing execution (stderr, breadcrumb).
    #[serde(skip)]
    pub execution: Option<Execution>,
}

/// How a finding stood up to re-running, and whether its minimization finished.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingStatus {
    /// Whether its minimization ran to its end within the campaign. `false` when it was not
    /// minimized (`--no-minimize`, never reproduced) or was cut short by the budget or a stop:
    /// `forcefield minimize findings/<id>/case.json` goes on from there.
    #[serde(default)]
    pub minimized: bool,
    /// Re-runs of its first case before minimization that gave the same signature, e.g. `0/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproduced: Option<Reproduction>,
    /// It did not reproduce every time (a worker killed from outside, a race): kept, and not
    /// minimized at length.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flaky: bool,
}

/// How many of a finding's re-runs gave its signature again, written `R/T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Reproduction {
    /// Re-runs with the same signature.
    pub reproduced: u32,
    /// Re-runs.
    pub tries: u32,
}

impl Reproduction {
    /// Whether some re-run did not give the signature.
    pub fn flaky(&self) -> bool {
        self.reproduced < self.tries
    }
}

impl std::fmt::Display for Reproduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.reproduced, self.tries)
    }
}

impl From<Reproduction> for String {
    fn from(r: Reproduction) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for Reproduction {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a reproduction rate (expected R/T, e.g. 0/3)");
        let (r, t) = s.split_once('/').ok_or_else(bad)?;
        let (reproduced, tries) = (
            r.parse::<u32>().map_err(|_| bad())?,
            t.parse::<u32>().map_err(|_| bad())?,
        );
        if reproduced > tries {
            return Err(bad());
        }
        Ok(Reproduction { reproduced, tries })
    }
}

/// A campaign's wall clock against its budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WallClock {
    /// The `--time` budget in seconds (none with `--cases`).
    pub budget: Option<f64>,
    /// The per-case watchdog in seconds: a case or minimization run started before the budget
    /// ran out may end this much after it.
    pub case_timeout: f64,
    /// Seconds from the start to the end, minimization included (the summary's `seconds` counts
    /// the cases only: the rate line's time).
    pub seconds: f64,
}

/// The summary of a campaign (`summary.json`), mergeable across shards.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Always `forcefield-summary/1`.
    pub format: String,
    /// Backend.
    pub backend: BackendKind,
    /// Campaign seed.
    pub seed: u64,
    /// Shards this summary covers.
    pub shards: Vec<Shard>,
    /// Planted faults.
    pub faults: Vec<Fault>,
    /// Cases run.
    pub cases: u64,
    /// Cases that could not run here.
    pub environment_errors: u64,
    /// Seconds of running cases (the rate line's time; minimization after the cases is in `wall`).
    pub seconds: f64,
    /// Whether a stop (Ctrl-C, SIGTERM, SIGHUP, a write error) cut it short, or it has not ended:
    /// summaries written while a campaign runs say `true` until the last one.
    pub interrupted: bool,
    /// Distinct findings, by signature.
    pub findings: Vec<Finding>,
    /// The first environment error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_message: Option<String>,
    /// Injected faults (`inject` ops) in the cases run, by kind (`fail-alloc`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub injections: BTreeMap<String, u64>,
    /// The slowest cases run, slowest first (at most [`SLOWEST_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest: Vec<SlowCase>,
    /// The wall clock against the budget (campaigns written since durable output directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<WallClock>,
    /// How the per-case limits were set, and what the watchdog did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<WatchdogReport>,
    /// Where the time went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeSplit>,
    /// Against a target: its checks and skipped ops over the campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::hunt::target_totals::TargetTotals>,
}

/// One of a campaign's slowest cases: what to look at when choosing `--case-timeout`, or when a
/// generator change makes cases slow rather than interesting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowCase {
    /// The case's index in the campaign (its seed is `case_seed(seed, case)`).
    pub case: u64,
    /// Wall-clock seconds from sending it to a worker to its verdict, resumes included.
    pub seconds: f64,
    /// Its size.
    pub size: CaseSize,
}

/// How many of the slowest cases a summary keeps.
pub const SLOWEST_KEPT: usize = 5;

/// Adds `case` to `slowest`, keeping the [`SLOWEST_KEPT`] slowest, slowest first (ties: lower
/// index first, so that merged shards give the same list in any order).
pub fn keep_slowest(slowest: &mut Vec<SlowCase>, case: SlowCase) {
    slowest.push(case);
    slowest.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.case.cmp(&b.case)));
    slowest.truncate(SLOWEST_KEPT);
}

impl Summary {
    /// Cases per second.
    pub fn cases_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.cases as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// A markdown table of the findings.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} cases in {:.1} s ({:.1}/s) on {}, seed {}{}: {} distinct finding(s)\n",
            self.cases,
            self.seconds,
            self.cases_per_second(),
            match &self.target {
                Some(t) => format!("target {}", t.name),
                None => self.backend.name().to_string(),
            },
            self.seed,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            self.findings.len()
        );
        if let Some(target) = &self.target {
            s.push_str(&target.markdown());
        }
        if !self.injections.is_empty() {
            let kinds: Vec<String> = self
                .injections
                .iter()
                .map(|(kind, n)| format!("{kind}: {n}"))
                .collect();
            s.push_str(&format!("injections: {{{}}}\n", kinds.join(", ")));
        }
        if let Some(slow) = self.slowest.first() {
            s.push_str(&format!(
                "slowest case: #{} in {:.1} s ({})\n",
                slow.case, slow.seconds, slow.size
            ));
        }
        if let Some(watchdog) = &self.watchdog {
            s.push_str(&watchdog.line());
            s.push('\n');
        }
        if let Some(time) = &self.time {
            s.push_str(&time.lines());
        }
        if !self.findings.is_empty() {
            s.push_str(
                "\n| signature | count | first (s) | case | minimized |\n|---|---|---|---|---|\n",
            );
            for f in &self.findings {
                let mut min = f
                    .minimization
                    .as_ref()
                    .map_or("-".to_string(), |m| m.after.to_string());
                if f.minimization.is_some() && !f.status.minimized {
                    min.push_str(" (cut short)");
                }
                if let (true, Some(r)) = (f.status.flaky, f.status.reproduced) {
                    min = format!("{min}; flaky: reproduced {r}");
                }
                s.push_str(&format!(
                    "| `{}` | {} | {:.2} | {} | {} |\n",
                    f.signature, f.count, f.seconds_to_first, f.case_size, min
                ));
            }
        }
        s
    }
}

/// The summary format string.
pub const SUMMARY_FORMAT: &str = "forcefield-summary/1";
