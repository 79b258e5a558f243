/*!
The report of `forcefield ci`: one [`CiReport`] holding the corpus replay and the campaign, and its
three renderings — JUnit XML for CI systems ([`CiReport::junit`]), markdown for people
([`CiReport::markdown`]) and JSON for programs (the report itself, serialized).

This module only describes and renders; it runs nothing. The verdict of the gate is decided here,
in one place ([`CiReport::decide`]), so that the exit code, the JUnit file and the markdown always
agree:

* **fail** — a corpus entry broke its expectation, or the campaign found a signature that no `open`
  corpus entry holds (a *new* finding);
* **environment** — otherwise, something could not run here (a worker, a backend);
* **pass** — otherwise.

In JUnit, suite `corpus` has one test case per entry file (a failure when its expectation broke,
skipped when its backend is missing here), and suite `campaign` one per distinct signature (a
failure when new) plus `generated cases`, which passes and carries the campaign's numbers. Test
names are stable from run to run (file names, signatures), so CI systems can track them.
*/

use std::path::PathBuf;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use crate::case::Expectation;
use crate::client::signature::{Signature, Verdict};
use crate::hunt::campaign::{Finding, Summary};
use crate::hunt::corpus::{ReplayResult, ReplayStatus};

/// The format string of the JSON report.
pub const CI_FORMAT: &str = "forcefield-ci/1";

/// Name of the JUnit suite of corpus entries.
pub const CORPUS_SUITE: &str = "corpus";
/// Name of the JUnit suite of the campaign.
pub const CAMPAIGN_SUITE: &str = "campaign";
/// Name of the JUnit test case that summarizes the campaign's generated cases.
pub const CASES_TEST: &str = "generated cases";

/// The verdict of a `ci` run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CiResult {
    /// Every expectation met, no new finding.
    Pass,
    /// A broken expectation or a new finding.
    Fail,
    /// Nothing failed, but something could not run here.
    Environment,
}

/// A distinct signature the campaign found, and whether the corpus already knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CampaignFinding {
    /// The signature.
    pub signature: Signature,
    /// The corpus entry that holds this signature open; absent for a new finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_in: Option<String>,
    /// Where its minimized (else first) case was written, with `--out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_file: Option<PathBuf>,
    /// The command that adds it to the corpus (new findings written with `--out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_command: Option<String>,
}

impl CampaignFinding {
    /// Whether no corpus entry holds this signature open.
    pub fn is_new(&self) -> bool {
        self.known_in.is_none()
    }
}

/// Everything a `ci` run found; serialized as the `--json` report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CiReport {
    /// Always [`CI_FORMAT`].
    pub format: String,
    /// The verdict ([`CiReport::decide`]).
    pub result: CiResult,
    /// The regression directory replayed.
    pub corpus: PathBuf,
    /// One result per corpus entry, in file-name order.
    pub replay: Vec<ReplayResult>,
    /// The campaign.
    pub campaign: Summary,
    /// One per distinct signature of the campaign, in the order of `campaign.findings`.
    pub findings: Vec<CampaignFinding>,
}

/// Escapes text for a markdown table cell: one line, no column breaks.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

fn expectation_text(e: &Expectation) -> String {
    match e {
        Expectation::Pass => "pass".into(),
        Expectation::Open { signature } => format!("open `{signature}`"),
    }
}

fn verdict_text(v: Option<&Verdict>) -> String {
    match v {
        None => "-".into(),
        Some(Verdict::Pass) => "pass".into(),
        Some(Verdict::Finding { signature, .. }) => format!("`{signature}`"),
        Some(Verdict::Environment { .. }) => "could not run".into(),
    }
}

fn status_text(r: &ReplayResult) -> String {
    match &r.status {
        ReplayStatus::Met => match r.expected {
            Expectation::Pass => "ok".into(),
            Expectation::Open { .. } => "ok (still open)".into(),
        },
        ReplayStatus::Broken { reason } => format!("**broken**: {reason}"),
        ReplayStatus::Skipped { reason } => format!("skipped: {reason}"),
        ReplayStatus::Environment { message } => format!("**could not run**: {message}"),
    }
}

impl CiReport {
    /// A report with its verdict decided.
    pub fn new(
        corpus: PathBuf,
        replay: Vec<ReplayResult>,
        campaign: Summary,
        findings: Vec<CampaignFinding>,
    ) -> Self {
        let mut report = CiReport {
            format: CI_FORMAT.to_string(),
            result: CiResult::Pass,
            corpus,
            replay,
            campaign,
            findings,
        };
        report.result = report.decide();
        report
    }

    /// Entries whose expectation broke.
    pub fn broken(&self) -> impl Iterator<Item = &ReplayResult> {
        self.replay.iter().filter(|r| r.status.is_broken())
    }

    /// Findings no corpus entry holds open.
    pub fn new_findings(&self) -> impl Iterator<Item = &CampaignFinding> {
        self.findings.iter().filter(|f| f.is_new())
    }

    /// Why nothing could run, when the campaign could not: every case it tried was an environment
    /// error (or it tried none and has one to report).
    pub fn campaign_environment_error(&self) -> Option<&str> {
        let s = &self.campaign;
        let none_ran = (s.cases > 0 && s.cases == s.environment_errors)
            || (s.cases == 0 && s.environment_message.is_some());
        if none_ran {
            Some(
                s.environment_message
                    .as_deref()
                    .unwrap_or("no case could run"),
            )
        } else {
            None
        }
    }

    /// The first entry that could not run here.
    pub fn replay_environment_error(&self) -> Option<(&str, &str)> {
        self.replay.iter().find_map(|r| match &r.status {
            ReplayStatus::Environment { message } => Some((r.entry.as_str(), message.as_str())),
            _ => None,
        })
    }

    /// The verdict: fail on a broken expectation or a new finding, else environment when
    /// something could not run, else pass.
    pub fn decide(&self) -> CiResult {
        if self.broken().next().is_some() || self.new_findings().next().is_some() {
            CiResult::Fail
        } else if self.replay_environment_error().is_some()
            || self.campaign_environment_error().is_some()
        {
            CiResult::Environment
        } else {
            CiResult::Pass
        }
    }

    fn finding_details(&self, f: &CampaignFinding) -> Option<&Finding> {
        self.campaign
            .findings
            .iter()
            .find(|d| d.signature == f.signature)
    }

    /// The JUnit report: suites `corpus` and `campaign` (see the module documentation).
    pub fn junit(&self) -> quick_junit::Report {
        let mut report = quick_junit::Report::new("forcefield ci");
        report.add_test_suite(self.corpus_suite());
        report.add_test_suite(self.campaign_suite());
        let total: f64 = self.replay.iter().map(|r| r.seconds).sum::<f64>() + self.campaign.seconds;
        report.set_time(seconds(total));
        report
    }

    /// The JUnit report as XML.
    pub fn junit_xml(&self) -> Result<String, quick_junit::SerializeError> {
        self.junit().to_string()
    }

    fn corpus_suite(&self) -> TestSuite {
        let mut suite = TestSuite::new(CORPUS_SUITE);
        suite.add_property(Property::new(
            "directory",
            self.corpus.display().to_string(),
        ));
        for r in &self.replay {
            let status = match &r.status {
                ReplayStatus::Met => TestCaseStatus::success(),
                ReplayStatus::Broken { reason } => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(reason.as_str())
                        .set_type("broken-expectation");
                    s.set_description(format!(
                        "entry: {}\nexpected: {}\ngot: {}\n{reason}",
                        r.path.display(),
                        expectation_text(&r.expected),
                        verdict_text(r.verdict.as_ref()),
                    ));
                    s
                }
                ReplayStatus::Skipped { reason } => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(reason.as_str());
                    s
                }
                ReplayStatus::Environment { message } => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message(message.as_str()).set_type("environment");
                    s
                }
            };
            let mut case = TestCase::new(r.entry.as_str(), status);
            case.set_classname(CORPUS_SUITE)
                .set_time(seconds(r.seconds))
                .add_property(Property::new("expected", expectation_text(&r.expected)));
            if let Some(Verdict::Finding { summary, .. }) = &r.verdict {
                case.set_system_out(summary.as_str());
            }
            suite.add_test_case(case);
        }
        suite.set_time(seconds(self.replay.iter().map(|r| r.seconds).sum()));
        suite
    }

    fn campaign_suite(&self) -> TestSuite {
        let s = &self.campaign;
        let mut suite = TestSuite::new(CAMPAIGN_SUITE);
        for (name, value) in [
            ("backend", s.backend.name().to_string()),
            ("seed", s.seed.to_string()),
            (
                "faults",
                if s.faults.is_empty() {
                    "none".to_string()
                } else {
                    s.faults
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
        ] {
            suite.add_property(Property::new(name, value));
        }
        let cases_status = match self.campaign_environment_error() {
            Some(message) => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                st.set_message(message).set_type("environment");
                st
            }
            None => TestCaseStatus::success(),
        };
        let mut cases = TestCase::new(CASES_TEST, cases_status);
        cases
            .set_classname(CAMPAIGN_SUITE)
            .set_time(seconds(s.seconds))
            .set_system_out(format!(
                "{} cases in {:.1} s ({:.1}/s){}; {} distinct finding(s), {} new; {} environment error(s)",
                s.cases,
                s.seconds,
                s.cases_per_second(),
                if s.interrupted { ", interrupted" } else { "" },
                self.findings.len(),
                self.new_findings().count(),
                s.environment_errors,
            ));
        for (name, value) in [
            ("cases", s.cases.to_string()),
            ("environment_errors", s.environment_errors.to_string()),
            ("interrupted", s.interrupted.to_string()),
        ] {
            cases.add_property(Property::new(name, value));
        }
        suite.add_test_case(cases);
        for f in &self.findings {
            let details = self.finding_details(f);
            let summary = details.map_or("", |d| d.summary.as_str());
            let status = if f.is_new() {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(format!("new finding: {summary}"))
                    .set_type("new-finding");
                let mut text = format!("signature: {}\n", f.signature);
                if let Some(d) = details {
                    text.push_str(&format!(
                        "occurrences: {}\nfirst case: {} ({}), after {:.2} s\n",
                        d.count, d.first_case, d.case_size, d.seconds_to_first
                    ));
                    if let Some(m) = &d.minimization {
                        text.push_str(&format!("minimized: {}\n", m.after));
                    }
                }
                if let Some(file) = &f.case_file {
                    text.push_str(&format!("case: {}\n", file.display()));
                }
                if let Some(cmd) = &f.add_command {
                    text.push_str(&format!("add it to the corpus: {cmd}\n"));
                }
                st.set_description(text);
                st
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(f.signature.to_string(), status);
            case.set_classname(CAMPAIGN_SUITE);
            if let Some(entry) = &f.known_in {
                case.set_system_out(format!("known, open in corpus entry {entry}: {summary}"));
            }
            if let Some(d) = details {
                case.add_property(Property::new("count", d.count.to_string()));
            }
            suite.add_test_case(case);
        }
        suite.set_time(seconds(s.seconds));
        suite
    }

    /// The markdown summary printed on stdout: the verdict, a table of corpus replay results, a
    /// table of campaign findings, and the commands that add new findings to the corpus.
    pub fn markdown(&self) -> String {
        let broken = self.broken().count();
        let new = self.new_findings().count();
        let mut s = String::from("# forcefield ci\n\n");
        s.push_str(&match self.result {
            CiResult::Pass => "**Result: pass**".to_string(),
            CiResult::Fail => {
                format!("**Result: FAIL** ({broken} broken expectation(s), {new} new finding(s))")
            }
            CiResult::Environment => {
                "**Result: could not run everything here** (environment)".to_string()
            }
        });
        s.push_str("\n\n");

        let met = self
            .replay
            .iter()
            .filter(|r| r.status == ReplayStatus::Met)
            .count();
        s.push_str(&format!(
            "## Corpus replay\n\n{} entries in `{}`: {met} met, {broken} broken\n",
            self.replay.len(),
            self.corpus.display()
        ));
        if !self.replay.is_empty() {
            s.push_str("\n| entry | expected | got | result |\n|---|---|---|---|\n");
            for r in &self.replay {
                s.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    cell(&r.entry),
                    cell(&expectation_text(&r.expected)),
                    cell(&verdict_text(r.verdict.as_ref())),
                    cell(&status_text(r)),
                ));
            }
        }

        let c = &self.campaign;
        s.push_str(&format!(
            "\n## Campaign\n\n{} cases in {:.1} s ({:.1}/s) on {}, seed {}{}{}: {} distinct finding(s), {new} new\n",
            c.cases,
            c.seconds,
            c.cases_per_second(),
            match &c.target {
                Some(t) => format!("target {}", t.name),
                None => c.backend.name().to_string(),
            },
            c.seed,
            if c.faults.is_empty() {
                String::new()
            } else {
                format!(
                    ", planted faults {}",
                    c.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
                )
            },
            if c.interrupted { " (interrupted)" } else { "" },
            self.findings.len(),
        ));
        if let Some(target) = &c.target {
            s.push_str(&target.markdown());
        }
        if let Some(message) = self.campaign_environment_error() {
            s.push_str(&format!(
                "\nThe campaign could not run: {}\n",
                cell(message)
            ));
        }
        if !self.findings.is_empty() {
            s.push_str(
                "\n| signature | status | count | first (s) | case | minimized |\n|---|---|---|---|---|---|\n",
            );
            for f in &self.findings {
                let d = self.finding_details(f);
                let status = match &f.known_in {
                    Some(entry) => format!("known (`{}`)", cell(entry)),
                    None => "**new**".to_string(),
                };
                s.push_str(&format!(
                    "| `{}` | {status} | {} | {} | {} | {} |\n",
                    cell(&f.signature.to_string()),
                    d.map_or("-".into(), |d| d.count.to_string()),
                    d.map_or("-".into(), |d| format!("{:.2}", d.seconds_to_first)),
                    d.map_or("-".into(), |d| d.case_size.to_string()),
                    d.and_then(|d| d.minimization.as_ref())
                        .map_or("-".into(), |m| m.after.to_string()),
                ));
            }
        }
        let commands: Vec<&str> = self
            .new_findings()
            .filter_map(|f| f.add_command.as_deref())
            .collect();
        if !commands.is_empty() {
            s.push_str(
                "\nTo keep the new findings as open regressions (then commit the files):\n\n",
            );
            for cmd in commands {
                s.push_str(&format!("    {cmd}\n"));
            }
        } else if new > 0 {
            s.push_str(
                "\nRun again with `--out DIR` to write the new findings' minimized cases.\n",
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::minimize::CaseSize;
    use crate::case::BackendKind;
    use crate::hunt::campaign::{Shard, SUMMARY_FORMAT};

    fn summary(findings: Vec<Finding>) -> Summary {
        Summary {
            format: SUMMARY_FORMAT.into(),
            backend: BackendKind::Cpu,
            seed: 7,
            shards: vec![Shard::default()],
            faults: vec![],
            cases: 100,
            environment_errors: 0,
            seconds: 2.0,
            interrupted: false,
            findings,
            environment_message: None,
            injections: Default::default(),
            slowest: Vec::new(),
            wall: None,
            watchdog: None,
            time: None,
            target: None,
        }
    }

    fn finding(sig: &str) -> Finding {
        Finding {
            signature: sig.parse().unwrap(),
            summary: format!("{sig} happened"),
            count: 3,
            first_case: 4,
            seconds_to_first: 0.5,
            case_size: CaseSize {
                nodes: 5,
                edges: 6,
                ops: 7,
            },
            minimization: None,
            seconds_to_minimized: None,
            aliases: Vec::new(),
            status: Default::default(),
            case: None,
            minimized: None,
            execution: None,
        }
    }

    fn replay(entry: &str, status: ReplayStatus) -> ReplayResult {
        ReplayResult {
            entry: entry.into(),
            path: PathBuf::from("corpora/regressions").join(entry),
            expected: Expectation::Pass,
            verdict: Some(Verdict::Pass),
            status,
            seconds: 0.1,
        }
    }

    fn suite<'r>(r: &'r quick_junit::Report, name: &str) -> &'r TestSuite {
        r.test_suites
            .iter()
            .find(|s| s.name.as_str() == name)
            .unwrap()
    }

    #[test]
    fn a_clean_run_passes_with_every_test_case_present() {
        let report = CiReport::new(
            "corpora/regressions".into(),
            vec![replay("a.json", ReplayStatus::Met)],
            summary(vec![finding("signal:SIGSEGV:sort_pairs")]),
            vec![CampaignFinding {
                signature: "signal:SIGSEGV:sort_pairs".parse().unwrap(),
                known_in: Some("signal-SIGSEGV-sort_pairs.json".into()),
                case_file: None,
                add_command: None,
            }],
        );
        assert_eq!(report.result, CiResult::Pass);
        let xml = report.junit_xml().unwrap();
        let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        assert_eq!((parsed.tests, parsed.failures, parsed.errors), (3, 0, 0));
        let corpus = suite(&parsed, CORPUS_SUITE);
        assert_eq!(corpus.test_cases[0].name.as_str(), "a.json");
        let campaign = suite(&parsed, CAMPAIGN_SUITE);
        let names: Vec<&str> = campaign
            .test_cases
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, [CASES_TEST, "signal:SIGSEGV:sort_pairs"]);
        assert!(report.markdown().contains("**Result: pass**"));
    }

    #[test]
    fn broken_entries_and_new_findings_fail_with_messages() {
        let report = CiReport::new(
            "c/regressions".into(),
            vec![
                replay(
                    "a.json",
                    ReplayStatus::Broken {
                        reason: "expected pass, got x|y".into(),
                    },
                ),
                replay(
                    "b.json",
                    ReplayStatus::Skipped {
                        reason: "no CUDA".into(),
                    },
                ),
            ],
            summary(vec![finding("hang:force_pass")]),
            vec![CampaignFinding {
                signature: "hang:force_pass".parse().unwrap(),
                known_in: None,
                case_file: Some("out/findings/hang-force_pass/minimized.json".into()),
                add_command: Some("cp a b".into()),
            }],
        );
        assert_eq!(report.result, CiResult::Fail);
        let parsed =
            quick_junit::Report::deserialize_from_str(&report.junit_xml().unwrap()).unwrap();
        assert_eq!((parsed.failures, parsed.skipped), (2, 1));
        let corpus = suite(&parsed, CORPUS_SUITE);
        match &corpus.test_cases[0].status {
            TestCaseStatus::NonSuccess { message, kind, .. } => {
                assert_eq!(*kind, NonSuccessKind::Failure);
                assert_eq!(
                    message.as_ref().map(|m| m.as_str()),
                    Some("expected pass, got x|y")
                );
            }
            other => panic!("{other:?}"),
        }
        let md = report.markdown();
        assert!(md.contains("**Result: FAIL** (1 broken expectation(s), 1 new finding(s))"));
        assert!(md.contains("expected pass, got x\\|y"), "{md}");
        assert!(md.contains("| `hang:force_pass` | **new** | 3 |"), "{md}");
        assert!(md.contains("    cp a b\n"), "{md}");
    }

    #[test]
    fn an_unrunnable_campaign_is_an_environment_result() {
        let mut s = summary(vec![]);
        s.cases = 4;
        s.environment_errors = 4;
        s.environment_message = Some("no CUDA".into());
        let report = CiReport::new("c".into(), vec![], s, vec![]);
        assert_eq!(report.result, CiResult::Environment);
        let parsed =
            quick_junit::Report::deserialize_from_str(&report.junit_xml().unwrap()).unwrap();
        assert_eq!(parsed.errors, 1);
    }
}
