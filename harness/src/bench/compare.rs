/*!
Comparing two history entries: which baseline, whether the two may be compared at all, the gate's
verdict per benchmark, the layout-quality changes, and the markdown table users and CI read.

* [`default_baseline`]: the newest earlier entry with the same fingerprint; when there is none it
  says, per skipped entry, why not.
* [`compare`]: for every benchmark both entries hold, [`crate::bench::stats::decide`] with the
  calibrated threshold of that benchmark (or [`UNCALIBRATED_THRESHOLD`]). An unsure result is
  handed to a re-runner, which measures both builds again, alternating between them, and the
  verdict is taken on those interleaved samples; a re-runner that cannot (executables not kept)
  leaves the verdict unsure and says why.
* Quality metrics differing by more than a relative tolerance are "better" or "worse"; worse is a
  regression like a slower benchmark.

[`Comparison::regressions`] lists what makes `forcefield bench compare` exit 1.
*/

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::calibrate::{Thresholds, UNCALIBRATED_THRESHOLD};
use super::history::Entry;
use super::quality;
use super::stats::{decide, median, Decision, Verdict};

/// Settings of the gate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateConfig {
    /// Significance level of the rank test.
    pub alpha: f64,
    /// Threshold of benchmarks without calibration.
    pub uncalibrated_threshold: f64,
    /// Relative change of a quality metric reported as a change.
    pub quality_tolerance: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            alpha: super::stats::DEFAULT_ALPHA,
            uncalibrated_threshold: UNCALIBRATED_THRESHOLD,
            quality_tolerance: quality::DEFAULT_TOLERANCE,
        }
    }
}

/// The outcome of looking for a default baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaselineChoice {
    /// The index of the baseline.
    Found(usize),
    /// No earlier entry is comparable; why, per skipped entry (newest first, at most five).
    NoneComparable(Vec<String>),
}

/// The newest entry before `current` whose fingerprint equals the current one's.
pub fn default_baseline(entries: &[Entry], current: usize) -> BaselineChoice {
    let mut reasons = Vec::new();
    for i in (0..current).rev() {
        let diff = entries[i]
            .fingerprint
            .differences(&entries[current].fingerprint);
        if diff.is_empty() {
            return BaselineChoice::Found(i);
        }
        if reasons.len() < 5 {
            reasons.push(format!("{}: {}", entries[i].id, diff.join(", ")));
        }
    }
    BaselineChoice::NoneComparable(reasons)
}

/// What an interleaved re-run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Rerun {
    /// Baseline build's samples (ns per iteration), all rounds.
    pub baseline: Vec<f64>,
    /// Current build's samples, all rounds.
    pub current: Vec<f64>,
    /// Rounds of alternation.
    pub rounds: usize,
}

/// Re-measures benchmark `id` on both builds, alternating; `Err` says why it cannot.
pub type Rerunner<'a> = dyn FnMut(&str) -> Result<Rerun, String> + 'a;

/// Where a benchmark's threshold came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdSource {
    /// Calibrated on A/A runs of this machine.
    Calibrated,
    /// The default for uncalibrated benchmarks.
    Default,
}

/// One benchmark's row.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// Benchmark id.
    pub id: String,
    /// The decision on the recorded samples.
    pub recorded: Decision,
    /// The decision on interleaved re-run samples, when an unsure result was re-run.
    pub rerun: Option<Decision>,
    /// Where the threshold came from.
    pub source: ThresholdSource,
    /// Why the verdict is what it is, when that needs saying.
    pub note: Option<String>,
}

impl BenchRow {
    /// The final verdict: the re-run's when there was one.
    pub fn verdict(&self) -> Verdict {
        self.rerun.as_ref().unwrap_or(&self.recorded).verdict
    }
}

/// Direction of a quality change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QualityVerdict {
    /// Within the tolerance.
    Same,
    /// Lower (every metric is lower-is-better).
    Better,
    /// Higher: a regression.
    Worse,
}

impl QualityVerdict {
    /// The word printed in tables.
    pub fn word(self) -> &'static str {
        match self {
            QualityVerdict::Same => "same",
            QualityVerdict::Better => "better",
            QualityVerdict::Worse => "worse",
        }
    }
}

/// One quality metric of one graph.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityRow {
    /// The graph.
    pub graph: String,
    /// The metric.
    pub metric: &'static str,
    /// Baseline value (`None`: not converged / not measured).
    pub baseline: Option<f64>,
    /// Current value.
    pub current: Option<f64>,
    /// The verdict.
    pub verdict: QualityVerdict,
}

/// The comparison of two entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Baseline entry, as named in tables.
    pub baseline: String,
    /// Current entry.
    pub current: String,
    /// One row per common benchmark, by id.
    pub rows: Vec<BenchRow>,
    /// One row per common graph and metric.
    pub quality: Vec<QualityRow>,
    /// Benchmarks only the baseline has.
    pub only_in_baseline: Vec<String>,
    /// Benchmarks only the current entry has.
    pub only_in_current: Vec<String>,
    /// Ratios of each peer's median to forcefield's on the same graph, in the current entry:
    /// (graph, peer, ratio).
    pub peer_ratios: Vec<(String, String, f64)>,
    /// Notes printed under the tables.
    pub notes: Vec<String>,
}

impl Comparison {
    /// What makes the comparison fail: slower benchmarks and worse quality, one line each.
    pub fn regressions(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.verdict() == Verdict::Slower)
            .map(|r| {
                let d = r.rerun.as_ref().unwrap_or(&r.recorded);
                format!("{} slower ({})", r.id, percent(d.change))
            })
            .collect();
        out.extend(
            self.quality
                .iter()
                .filter(|q| q.verdict == QualityVerdict::Worse)
                .map(|q| format!("{} {} worse", q.graph, q.metric)),
        );
        out
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Benchmarks: {} vs baseline {}",
            self.current, self.baseline
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| benchmark | baseline | current | change | p | threshold | verdict |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|");
        for r in &self.rows {
            let d = r.rerun.as_ref().unwrap_or(&r.recorded);
            let source = match r.source {
                ThresholdSource::Calibrated => "",
                ThresholdSource::Default => " (default)",
            };
            let verdict = match (&r.rerun, r.verdict()) {
                (Some(_), v) => format!("**{v}** (re-run)"),
                (None, Verdict::Slower) => "**slower**".to_string(),
                (None, v) => v.to_string(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1}%{source} | {verdict} |",
                r.id,
                format_ns(d.baseline_median),
                format_ns(d.current_median),
                percent(d.change),
                format_p(d.p),
                d.threshold * 100.0,
            );
        }
        if !self.quality.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "## Layout quality (lower is better)");
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "| graph | metric | baseline | current | change | verdict |"
            );
            let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
            for q in &self.quality {
                let change = match (q.baseline, q.current) {
                    (Some(b), Some(c)) if b != 0.0 => percent(c / b - 1.0),
                    _ => "".to_string(),
                };
                let value = |v: Option<f64>| v.map_or("not converged".to_string(), format_value);
                let verdict = match q.verdict {
                    QualityVerdict::Worse => "**worse**".to_string(),
                    v => v.word().to_string(),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {change} | {verdict} |",
                    q.graph,
                    q.metric,
                    value(q.baseline),
                    value(q.current)
                );
            }
        }
        if !self.peer_ratios.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "## Peers (current entry, same graph, same run)");
            let _ = writeln!(s);
            let _ = writeln!(s, "| graph | peer | peer time / forcefield time |");
            let _ = writeln!(s, "|---|---|---:|");
            for (graph, peer, ratio) in &self.peer_ratios {
                let _ = writeln!(s, "| {graph} | {peer} | {ratio:.2}x |");
            }
        }
        let mut notes = self.notes.clone();
        for r in &self.rows {
            if let Some(note) = &r.note {
                notes.push(format!("{}: {note}", r.id));
            }
        }
        if !self.only_in_baseline.is_empty() {
            notes.push(format!(
                "only in the baseline (not compared): {}",
                self.only_in_baseline.join(", ")
            ));
        }
        if !self.only_in_current.is_empty() {
            notes.push(format!(
                "only in the current entry (not compared): {}",
                self.only_in_current.join(", ")
            ));
        }
        if !notes.is_empty() {
            let _ = writeln!(s);
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        let regressions = self.regressions();
        let _ = writeln!(s);
        if regressions.is_empty() {
            let _ = writeln!(s, "Result: no regression.");
        } else {
            let _ = writeln!(
                s,
                "Result: {} regression(s): {}.",
                regressions.len(),
                regressions.join("; ")
            );
        }
        s
    }
}

/// `+12.3%`, `-0.4%`.
pub fn percent(change: f64) -> String {
    if change.is_finite() {
        format!("{:+.1}%", change * 100.0)
    } else {
        "n/a".to_string()
    }
}

fn format_p(p: f64) -> String {
    if p < 0.001 {
        "<0.001".to_string()
    } else {
        format!("{p:.3}")
    }
}

fn format_value(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

/// A duration in nanoseconds with a unit that keeps 3-4 significant digits.
pub fn format_ns(ns: f64) -> String {
    if !ns.is_finite() {
        return "n/a".to_string();
    }
    let (value, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    if value >= 100.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.3} {unit}")
    }
}

/// Compares entry `current` with entry `baseline`. `rerun` is asked about every unsure result.
pub fn compare(
    baseline: &Entry,
    current: &Entry,
    thresholds: Option<&Thresholds>,
    config: &GateConfig,
    rerun: &mut Rerunner<'_>,
) -> Comparison {
    let mut notes = Vec::new();
    let thresholds = match thresholds {
        Some(t) if t.fingerprint == current.fingerprint => Some(t),
        Some(t) => {
            notes.push(format!(
                "calibrated thresholds ignored: they are for another machine ({})",
                t.fingerprint.differences(&current.fingerprint).join(", ")
            ));
            None
        }
        None => {
            notes.push(format!(
                "no calibration: every threshold is the default {:.0}% (run `forcefield bench calibrate` on A/A entries)",
                config.uncalibrated_threshold * 100.0
            ));
            None
        }
    };
    let base_ids: BTreeSet<&String> = baseline.benchmarks.keys().collect();
    let cur_ids: BTreeSet<&String> = current.benchmarks.keys().collect();
    let mut rows = Vec::new();
    for id in base_ids.intersection(&cur_ids) {
        let (b, c) = (&baseline.benchmarks[*id], &current.benchmarks[*id]);
        let (threshold, source) = match thresholds.and_then(|t| t.get(id)) {
            Some(t) => (t, ThresholdSource::Calibrated),
            None => (config.uncalibrated_threshold, ThresholdSource::Default),
        };
        let recorded = decide(&b.samples_ns, &c.samples_ns, threshold, config.alpha);
        let mut row = BenchRow {
            id: (*id).clone(),
            recorded,
            rerun: None,
            source,
            note: None,
        };
        if b.samples_ns == c.samples_ns {
            row.recorded.verdict = Verdict::Unsure;
            row.note = Some(
                "identical samples: the same criterion results were recorded twice, nothing was re-measured"
                    .to_string(),
            );
        } else if row.recorded.verdict == Verdict::Unsure {
            match rerun(id) {
                Ok(r) => {
                    let d = decide(&r.baseline, &r.current, threshold, config.alpha);
                    row.note = Some(format!(
                        "unsure on the recorded samples (p = {}); re-run interleaved, {} round(s) per build: {}",
                        format_p(row.recorded.p),
                        r.rounds,
                        d.verdict
                    ));
                    row.rerun = Some(d);
                }
                Err(why) => {
                    row.note = Some(format!("unsure, not re-run: {why}"));
                }
            }
        }
        rows.push(row);
    }
    let only_in_baseline = base_ids
        .difference(&cur_ids)
        .map(|s| (*s).clone())
        .collect();
    let only_in_current = cur_ids
        .difference(&base_ids)
        .map(|s| (*s).clone())
        .collect();
    let quality = compare_quality(baseline, current, config.quality_tolerance);
    if baseline.build.faults != current.build.faults {
        notes.push(format!(
            "planted faults differ: baseline [{}], current [{}]",
            baseline.build.faults.join(", "),
            current.build.faults.join(", ")
        ));
    }
    Comparison {
        baseline: baseline.display_name(),
        current: current.display_name(),
        rows,
        quality,
        only_in_baseline,
        only_in_current,
        peer_ratios: peer_ratios(current),
        notes,
    }
}

fn compare_quality(baseline: &Entry, current: &Entry, tolerance: f64) -> Vec<QualityRow> {
    let mut rows = Vec::new();
    for c in &current.quality {
        let Some(b) = baseline.quality.iter().find(|b| b.graph == c.graph) else {
            continue;
        };
        for ((metric, bv), (_, cv)) in quality::metrics(b).into_iter().zip(quality::metrics(c)) {
            let verdict = match (bv, cv) {
                (Some(x), Some(y)) => {
                    let scale = x.abs().max(f64::MIN_POSITIVE);
                    if (y - x).abs() <= tolerance * scale || (x.is_nan() && y.is_nan()) {
                        QualityVerdict::Same
                    } else if y < x {
                        QualityVerdict::Better
                    } else {
                        QualityVerdict::Worse
                    }
                }
                (None, None) => QualityVerdict::Same,
                // Converging where the baseline did not is better; the reverse is worse.
                (None, Some(_)) => QualityVerdict::Better,
                (Some(_), None) => QualityVerdict::Worse,
            };
            rows.push(QualityRow {
                graph: c.graph.clone(),
                metric,
                baseline: bv,
                current: cv,
                verdict,
            });
        }
    }
    rows
}

/// `peer/<graph>/<impl>` benchmarks: each implementation's median over `forcefield`'s.
pub fn peer_ratios(entry: &Entry) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for (id, record) in &entry.benchmarks {
        let mut parts = id.splitn(3, '/');
        let (Some("peer"), Some(graph), Some(peer)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if peer == "forcefield" {
            continue;
        }
        let Some(ours) = entry.benchmarks.get(&format!("peer/{graph}/forcefield")) else {
            continue;
        };
        if let (Some(p), Some(f)) = (median(&record.samples_ns), median(&ours.samples_ns)) {
            if f > 0.0 {
                out.push((graph.to_string(), peer.to_string(), p / f));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::history::BenchRecord;
    use crate::bench::quality::QualityRecord;
    use std::collections::BTreeMap;

    fn entry(id: &str, benches: &[(&str, Vec<f64>)]) -> Entry {
        let mut e = crate::bench::history::tests::entry(id, "c", None);
        e.benchmarks = benches
            .iter()
            .map(|(id, s)| {
                (
                    id.to_string(),
                    BenchRecord {
                        samples_ns: s.clone(),
                        iterations: vec![1.0; s.len()],
                        throughput: None,
                        measured_at: 0,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>();
        e
    }

    fn around(center: f64, n: usize, phase: f64) -> Vec<f64> {
        (0..n)
            .map(|i| center * (1.0 + 0.03 * ((i as f64 * 1.7 + phase).sin())))
            .collect()
    }

    fn no_rerun(_: &str) -> Result<Rerun, String> {
        Err("not kept".into())
    }

    #[test]
    fn default_baseline_skips_other_machines_and_says_why() {
        let mut entries = vec![entry("a", &[]), entry("b", &[]), entry("c", &[])];
        entries[1].fingerprint.cpu_cores = 64;
        assert_eq!(default_baseline(&entries, 2), BaselineChoice::Found(0));
        entries[0].fingerprint.gpu.name = "H100".into();
        match default_baseline(&entries, 2) {
            BaselineChoice::NoneComparable(reasons) => {
                assert_eq!(reasons.len(), 2);
                assert!(
                    reasons[0].starts_with("b: CPU cores `64` vs `2`"),
                    "{reasons:?}"
                );
                assert!(reasons[1].contains("GPU `H100` vs `none`"), "{reasons:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_slowdown_is_a_regression_and_a_a_is_not() {
        let base = entry(
            "base",
            &[("s", around(100.0, 20, 0.0)), ("f", around(50.0, 20, 0.0))],
        );
        let cur = entry(
            "cur",
            &[("s", around(130.0, 20, 1.0)), ("f", around(50.0, 20, 2.0))],
        );
        let c = compare(&base, &cur, None, &GateConfig::default(), &mut no_rerun);
        let verdicts: Vec<(&str, Verdict)> = c
            .rows
            .iter()
            .map(|r| (r.id.as_str(), r.verdict()))
            .collect();
        assert_eq!(verdicts, [("f", Verdict::Same), ("s", Verdict::Slower)]);
        assert_eq!(c.regressions().len(), 1);
        let md = c.markdown();
        assert!(
            md.contains("| s | 99.837 ns | 130.5 ns | +30.7% | <0.001 | 5.0% (default) |"),
            "{md}"
        );
        assert!(
            md.contains("**slower**") && md.contains("1 regression(s): s slower (+30"),
            "{md}"
        );
    }

    #[test]
    fn unsure_results_are_re_run_and_decided_on_the_interleaved_samples() {
        // Three wildly spread samples: unsure on the record.
        let base = entry("base", &[("u", vec![50.0, 100.0, 200.0])]);
        let cur = entry("cur", &[("u", vec![40.0, 120.0, 190.0])]);
        let mut asked = Vec::new();
        let mut rerun = |id: &str| {
            asked.push(id.to_string());
            Ok(Rerun {
                baseline: around(100.0, 20, 0.0),
                current: around(140.0, 20, 0.5),
                rounds: 2,
            })
        };
        let c = compare(&base, &cur, None, &GateConfig::default(), &mut rerun);
        assert_eq!(asked, ["u"]);
        assert_eq!(c.rows[0].recorded.verdict, Verdict::Unsure);
        assert_eq!(c.rows[0].verdict(), Verdict::Slower);
        assert!(c.markdown().contains("re-run interleaved, 2 round(s)"));
        // Without executables it stays unsure, with the reason, and is not a regression.
        let c = compare(&base, &cur, None, &GateConfig::default(), &mut no_rerun);
        assert_eq!(c.rows[0].verdict(), Verdict::Unsure);
        assert!(c.regressions().is_empty());
        assert!(c.markdown().contains("unsure, not re-run: not kept"));
    }

    #[test]
    fn identical_samples_are_flagged_not_passed() {
        let base = entry("base", &[("s", around(100.0, 20, 0.0))]);
        let cur = entry("cur", &[("s", around(100.0, 20, 0.0))]);
        let c = compare(&base, &cur, None, &GateConfig::default(), &mut no_rerun);
        assert_eq!(c.rows[0].verdict(), Verdict::Unsure);
        assert!(c.markdown().contains("recorded twice"));
    }

    #[test]
    fn calibrated_thresholds_apply_only_on_their_machine() {
        let base = entry("base", &[("s", around(100.0, 20, 0.0))]);
        let cur = entry("cur", &[("s", around(108.0, 20, 1.0))]);
        let mut t = Thresholds {
            format: crate::bench::calibrate::FORMAT.into(),
            fingerprint: cur.fingerprint.clone(),
            entries: vec![],
            margin: 1.5,
            floor: 0.01,
            benchmarks: BTreeMap::new(),
        };
        t.benchmarks.insert(
            "s".into(),
            crate::bench::calibrate::BenchThreshold {
                threshold: 0.12,
                pairs: 3,
                max_aa_change: 0.08,
            },
        );
        let c = compare(&base, &cur, Some(&t), &GateConfig::default(), &mut no_rerun);
        assert_eq!(
            c.rows[0].verdict(),
            Verdict::Same,
            "8% is within a 12% noise threshold"
        );
        assert_eq!(c.rows[0].source, ThresholdSource::Calibrated);
        t.fingerprint.cpu_model = "other".into();
        let c = compare(&base, &cur, Some(&t), &GateConfig::default(), &mut no_rerun);
        assert_eq!(
            c.rows[0].verdict(),
            Verdict::Slower,
            "the default 5% applies"
        );
        assert!(c.notes[0].contains("another machine"));
    }

    #[test]
    fn quality_changes_beyond_the_tolerance_are_reported_and_worse_fails() {
        let q = |energy: f64, ratio: f64, steps: Option<u32>| QualityRecord {
            graph: "karate".into(),
            nodes: 34,
            edges: 78,
            steps: 300,
            energy,
            distance_ratio: ratio,
            steps_to_converge: steps,
        };
        let mut base = entry("base", &[]);
        let mut cur = entry("cur", &[]);
        base.quality = vec![q(100.0, 0.5, Some(200))];
        cur.quality = vec![q(100.5, 0.6, None)];
        let c = compare(&base, &cur, None, &GateConfig::default(), &mut no_rerun);
        let v: Vec<(&str, QualityVerdict)> =
            c.quality.iter().map(|r| (r.metric, r.verdict)).collect();
        assert_eq!(
            v,
            [
                ("energy", QualityVerdict::Same),
                ("distance_ratio", QualityVerdict::Worse),
                ("steps_to_converge", QualityVerdict::Worse)
            ]
        );
        assert_eq!(c.regressions().len(), 2);
        assert!(c.markdown().contains("not converged"));
    }

    #[test]
    fn peer_ratios_divide_by_forcefield_on_the_same_graph() {
        let e = entry(
            "e",
            &[
                ("peer/power/forcefield", vec![10.0; 5]),
                ("peer/power/fa2", vec![25.0; 5]),
                ("peer/other/fa2", vec![1.0; 5]),
            ],
        );
        assert_eq!(
            peer_ratios(&e),
            vec![("power".to_string(), "fa2".to_string(), 2.5)]
        );
    }

    #[test]
    fn durations_keep_their_significant_digits() {
        assert_eq!(format_ns(1_571_310.0), "1.571 ms");
        assert_eq!(format_ns(184_610_000.0), "184.6 ms");
        assert_eq!(format_ns(12.0), "12.000 ns");
        assert_eq!(format_ns(2.5e9), "2.500 s");
    }
}
