//! The bookkeeping of findings while a campaign runs: the [`Tally`] of cases, findings (one per
//! signature) and injections, the output directory's [`Writer`], and the minimizer's events applied
//! to both.

use std::collections::BTreeMap;
use std::time::Instant;

use super::config::CampaignConfig;
use super::minimizer::MinimizerEvent;
use super::slots::Outcome;
use super::summary::{
    keep_slowest, Finding, FindingStatus, SlowCase, Summary, WallClock, SUMMARY_FORMAT,
};
use crate::case::minimize::CaseSize;
use crate::client::signature::{Signature, Verdict};
use crate::hunt::campaign_dir::{CampaignDir, OutDirError, Record};
use crate::hunt::time_split::TimeSplit;
use crate::hunt::watchdog::WatchdogReport;

/// What a campaign has seen so far.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) findings: BTreeMap<Signature, Finding>,
    pub(super) cases: u64,
    pub(super) environment_errors: u64,
    pub(super) environment_message: Option<String>,
    pub(super) injections: BTreeMap<String, u64>,
    pub(super) slowest: Vec<SlowCase>,
    /// Where the case threads' time went.
    pub(super) time: Option<TimeSplit>,
    /// How the case limits were set, filled in at the end.
    pub(super) watchdog: Option<WatchdogReport>,
    /// Against a target: its totals so far.
    pub(super) target: Option<crate::hunt::target_totals::TargetTotals>,
}

impl Tally {
    /// Counts `outcome`; returns the finding when it is a new one.
    pub(super) fn add(&mut self, outcome: Outcome, seconds: f64) -> Option<&Finding> {
        self.cases += 1;
        keep_slowest(
            &mut self.slowest,
            SlowCase {
                case: outcome.index,
                seconds: outcome.seconds,
                size: CaseSize::of(&outcome.case),
            },
        );
        if let Some(target) = self.target.as_mut() {
            target.add_execution(outcome.execution.as_ref());
        }
        for op in &outcome.case.ops {
            if let crate::case::Op::Inject { fault } = op {
                *self.injections.entry(fault.kind().to_string()).or_default() += 1;
            }
        }
        match outcome.verdict {
            Verdict::Pass => None,
            Verdict::Environment { message } => {
                self.environment_errors += 1;
                self.environment_message.get_or_insert(message);
                None
            }
            Verdict::Finding { signature, summary } => {
                let new = !self.findings.contains_key(&signature);
                let entry = self
                    .findings
                    .entry(signature.clone())
                    .or_insert_with(|| Finding {
                        signature,
                        summary,
                        count: 0,
                        first_case: outcome.index,
                        seconds_to_first: seconds,
                        case_size: CaseSize::of(&outcome.case),
                        minimization: None,
                        seconds_to_minimized: None,
                        aliases: Vec::new(),
                        status: FindingStatus::default(),
                        case: Some(outcome.case),
                        minimized: None,
                        execution: outcome.execution,
                    });
                entry.count += 1;
                new.then_some(&*entry)
            }
        }
    }

    /// The counters as a journal record.
    pub(super) fn progress(&self, seconds: f64) -> Record {
        Record::Progress {
            seconds,
            cases: self.cases,
            environment_errors: self.environment_errors,
            environment_message: self.environment_message.clone(),
            counts: self
                .findings
                .iter()
                .map(|(s, f)| (s.clone(), f.count))
                .collect(),
            injections: self.injections.clone(),
            slowest: self.slowest.clone(),
            target: self.target.clone(),
        }
    }

    pub(super) fn summary(
        &self,
        config: &CampaignConfig,
        seconds: f64,
        interrupted: bool,
        wall: WallClock,
    ) -> Summary {
        Summary {
            format: SUMMARY_FORMAT.to_string(),
            backend: config.backend,
            seed: config.seed,
            shards: vec![config.shard],
            faults: config.faults.clone(),
            cases: self.cases,
            environment_errors: self.environment_errors,
            seconds,
            interrupted,
            findings: self.findings.values().cloned().collect(),
            environment_message: self.environment_message.clone(),
            injections: self.injections.clone(),
            slowest: self.slowest.clone(),
            wall: Some(wall),
            watchdog: self.watchdog.clone(),
            time: self.time.clone(),
            target: self.target.clone(),
        }
    }
}

/// The output directory while the campaign runs: the first write error is kept and ends all
/// writing (and the campaign), so what is on disk stays whole.
pub(super) struct Writer<'a> {
    pub(super) out: Option<&'a mut CampaignDir>,
    pub(super) error: Option<OutDirError>,
}

impl Writer<'_> {
    pub(super) fn with(&mut self, f: impl FnOnce(&mut CampaignDir) -> Result<(), OutDirError>) {
        if self.error.is_some() {
            return;
        }
        if let Some(out) = self.out.as_deref_mut() {
            if let Err(e) = f(out) {
                self.error = Some(e);
            }
        }
    }
}

/// Applies a minimizer's event to the tally and records it; whether anything changed.
pub(super) fn apply(
    tally: &mut Tally,
    writer: &mut Writer<'_>,
    event: MinimizerEvent,
    seed: u64,
    start: &Instant,
) -> bool {
    match event {
        MinimizerEvent::Reproduced {
            signature,
            reproduced,
        } => {
            let Some(f) = tally.findings.get_mut(&signature) else {
                return false;
            };
            f.status.reproduced = Some(reproduced);
            f.status.flaky = reproduced.flaky();
            if f.status.flaky {
                eprintln!("{signature}: flaky, reproduced {reproduced}");
            }
            writer.with(|out| {
                out.append(&Record::Reproduced {
                    signature,
                    reproduced,
                })
            });
        }
        MinimizerEvent::Minimized {
            signature,
            case,
            report,
            complete,
        } => {
            // A forced stop killed the last candidate: what was accepted before still holds.
            let Some(f) = tally.findings.get_mut(&signature) else {
                return false;
            };
            eprintln!(
                "minimized {signature}: {} -> {} in {:.1} s ({} runs{})",
                report.before,
                report.after,
                report.seconds,
                report.runs,
                if complete { "" } else { ", cut short" }
            );
            let at = start.elapsed().as_secs_f64();
            f.minimized = Some(*case);
            f.minimization = Some(report.clone());
            f.seconds_to_minimized = Some(at);
            f.status.minimized = complete;
            let f = &*f;
            writer.with(|out| {
                out.write_finding(f, seed)?;
                out.append(&Record::Minimized {
                    signature,
                    minimization: report,
                    seconds_to_minimized: at,
                    complete,
                })
            });
        }
    }
    true
}
