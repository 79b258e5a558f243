/*!
A target campaign's totals for its summary: which engine, which generic checks ran and which were
skipped for want of a capability, and how many ops the target was never sent (by reason) or
refused, summed over every case's reply ([`crate::worker::target_case::TargetReport`]).
*/

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::isolate::{Execution, Outcome};
use crate::worker::target_case::TargetReport;

/// The `target` section of a target campaign's `summary.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetTotals {
    /// The target's name and version, as its handshake gives them.
    pub name: String,
    /// The checks skipped for want of a capability, each with what it needs
    /// (`sssp-dijkstra (needs sssp)`).
    #[serde(default)]
    pub checks_skipped: Vec<String>,
    /// The checks that ran at least once in the campaign.
    #[serde(default)]
    pub checks_run: BTreeSet<String>,
    /// Ops of the cases not sent to the target, by reason, over every case that replied.
    #[serde(default)]
    pub skipped_ops: BTreeMap<String, u64>,
    /// Ops the target refused (`Rejected`), over every case that replied.
    #[serde(default)]
    pub rejected_ops: u64,
}

impl TargetTotals {
    /// Adds what a case's reply reports, when the worker replied with a target report.
    pub fn add_execution(&mut self, execution: Option<&Execution>) {
        let Some(Outcome::Reply { payload }) = execution.map(|e| &e.outcome) else {
            return;
        };
        let Some(report) = payload
            .get("target")
            .and_then(|t| TargetReport::deserialize(t).ok())
        else {
            return;
        };
        self.add_report(&report);
    }

    /// Adds one case's report.
    pub fn add_report(&mut self, report: &TargetReport) {
        self.checks_run.extend(report.checks_run.iter().cloned());
        for (reason, n) in &report.skipped_ops {
            let total = self.skipped_ops.entry(reason.clone()).or_default();
            *total = total.saturating_add(*n);
        }
        self.rejected_ops = self.rejected_ops.saturating_add(report.rejected_ops);
    }

    /// Adds another shard's totals (`forcefield merge`).
    pub fn merge(&mut self, other: &TargetTotals) {
        self.checks_run.extend(other.checks_run.iter().cloned());
        for (reason, n) in &other.skipped_ops {
            let total = self.skipped_ops.entry(reason.clone()).or_default();
            *total = total.saturating_add(*n);
        }
        self.rejected_ops = self.rejected_ops.saturating_add(other.rejected_ops);
        // A check one shard ran is not skipped in the whole.
        self.checks_skipped
            .retain(|c| !other.checks_run.iter().any(|r| c.starts_with(r.as_str())));
    }

    /// The summary's lines about the target.
    pub fn markdown(&self) -> String {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let ops: Vec<String> = self
            .skipped_ops
            .iter()
            .map(|(reason, n)| format!("{reason}: {n}"))
            .collect();
        format!(
            "target checks run: {}; skipped for want of a capability: {}\n\
             target ops not sent: {}; refused: {}\n",
            list(self.checks_run.iter().cloned().collect()),
            list(self.checks_skipped.clone()),
            list(ops),
            self.rejected_ops
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_summed_and_checks_gathered() {
        let mut totals = TargetTotals {
            name: "numpy-layout 1.0".into(),
            checks_skipped: vec!["sssp-dijkstra (needs sssp)".into()],
            ..TargetTotals::default()
        };
        let report = |checks: &[&str], sssp: u64, rejected: u64| TargetReport {
            checks_run: checks.iter().map(|c| c.to_string()).collect(),
            skipped_ops: [("sssp (needs sssp)".to_string(), sssp)].into(),
            rejected_ops: rejected,
            ..TargetReport::default()
        };
        totals.add_report(&report(&["positions-finite"], 2, 1));
        totals.add_report(&report(&["positions-finite", "determinism"], 3, 0));
        assert_eq!(
            totals.checks_run,
            ["determinism", "positions-finite"].map(String::from).into()
        );
        assert_eq!(totals.skipped_ops["sssp (needs sssp)"], 5);
        assert_eq!(totals.rejected_ops, 1);
        assert_eq!(
            totals.markdown(),
            "target checks run: determinism, positions-finite; skipped for want of a capability: \
             sssp-dijkstra (needs sssp)\ntarget ops not sent: sssp (needs sssp): 5; refused: 1\n"
        );
        // A shard that ran a check the other skipped: it ran in the whole.
        let mut other = totals.clone();
        other.checks_run.insert("sssp-dijkstra".into());
        other.checks_skipped.clear();
        totals.merge(&other);
        assert!(totals.checks_skipped.is_empty());
        assert_eq!(totals.skipped_ops["sssp (needs sssp)"], 10);
    }
}
