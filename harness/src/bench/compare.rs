/*!
Comparing two history entries: which baseline, whether the two may be compared at all, the gate's
verdict per benchmark, the layout-quality changes, and the markdown table users and CI read.

* [`default_baseline`]: the newest earlier entry with the same fingerprint; when there is none it
  says, per skipped entry, why not.
* [`compare`]: for every benchmark both entries hold, two verdicts, each saying which gate it
  came from:
  - the **count gate**, when both entries hold counts of the same tool: the relative change of
    the instructions against a tight threshold ([`DEFAULT_COUNT_THRESHOLD`], or a calibrated one).
    Counts of a deterministic operation do not depend on the machine's load, so no statistics are
    needed and the threshold can be small;
  - the **time gate**: [`crate::bench::stats::decide`] on the samples with the calibrated threshold
    of that benchmark. Without a calibration a time verdict is reported but never fails the
    comparison: on a shared machine the default threshold ([`UNCALIBRATED_THRESHOLD`]) is inside
    the A/A noise, and `record; record; compare` of one build must pass. An unsure calibrated
    result is handed to a re-runner, which measures both builds again, alternating between them,
    and the verdict is taken on those interleaved samples; a re-runner that cannot (executables
    not kept) leaves the verdict unsure and says why.
* Quality metrics differing by more than a relative tolerance are "better" or "worse"; worse is a
  regression like a slower benchmark.

[`Comparison::regressions`] lists what makes `forcefield bench compare` exit 1.
*/

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::calibrate::{Thresholds, UNCALIBRATED_THRESHOLD};
use super::counts::GATED_METRIC;
use super::history::Entry;
use super::quality;
use super::stats::{decide, median, Decision, Verdict};

/// Relative change of the instructions beyond which the count gate calls a difference, when the
/// benchmark's counts are not calibrated. Counts of one build barely move (measured over 20 A/A
/// records: every kernel identical, a step within 0.0005%, the harness's generated cases, which
/// hash and allocate, within 0.29%), so the threshold only has to stay clear of those.
pub const DEFAULT_COUNT_THRESHOLD: f64 = 0.005;

/// Settings of the gate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateConfig {
    /// Significance level of the rank test.
    pub alpha: f64,
    /// Threshold of times without calibration (reported, not gated, unless
    /// `gate_uncalibrated_times`).
    pub uncalibrated_threshold: f64,
    /// Whether an uncalibrated time verdict fails the comparison.
    pub gate_uncalibrated_times: bool,
    /// Threshold of the count gate for benchmarks without a calibrated one.
    pub count_threshold: f64,
    /// Relative change of a quality metric reported as a change.
    pub quality_tolerance: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            alpha: super::stats::DEFAULT_ALPHA,
            uncalibrated_threshold: UNCALIBRATED_THRESHOLD,
            gate_uncalibrated_times: false,
            count_threshold: DEFAULT_COUNT_THRESHOLD,
            quality_tolerance: quality::DEFAULT_TOLERANCE,
        }
    }
}

/// The count gate's decision on one benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct CountDecision {
    /// The metric judged ([`GATED_METRIC`]).
    pub metric: String,
    /// Baseline count.
    pub baseline: u64,
    /// Current count.
    pub current: u64,
    /// `current / baseline - 1`.
    pub change: f64,
    /// The relative change the verdict needed to exceed.
    pub threshold: f64,
    /// Where the threshold came from.
    pub source: ThresholdSource,
    /// Same, slower or faster (never unsure: a count is not a sample of a distribution).
    pub verdict: Verdict,
}

/// The count gate on one pair of counts.
pub fn decide_counts(baseline: u64, current: u64, threshold: f64) -> (f64, Verdict) {
    if baseline == 0 {
        let verdict = if current == 0 {
            Verdict::Same
        } else {
            Verdict::Slower
        };
        return (if current == 0 { 0.0 } else { f64::INFINITY }, verdict);
    }
    let change = current as f64 / baseline as f64 - 1.0;
    let verdict = if change.abs() <= threshold {
        Verdict::Same
    } else if change > 0.0 {
        Verdict::Slower
    } else {
        Verdict::Faster
    };
    (change, verdict)
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
    /// The time decision on the recorded samples (`None` when either entry holds counts only).
    pub recorded: Option<Decision>,
    /// The decision on interleaved re-run samples, when an unsure result was re-run.
    pub rerun: Option<Decision>,
    /// Where the time threshold came from.
    pub source: ThresholdSource,
    /// Whether the time verdict may fail the comparison (calibrated, or asked for).
    pub time_gated: bool,
    /// The count gate's decision, when both entries hold comparable counts.
    pub counts: Option<CountDecision>,
    /// Why the verdict is what it is, when that needs saying.
    pub note: Option<String>,
}

impl BenchRow {
    /// The final time decision: the re-run's when there was one.
    pub fn time_decision(&self) -> Option<&Decision> {
        self.rerun.as_ref().or(self.recorded.as_ref())
    }

    /// The final time verdict (`Unsure` without times).
    #[cfg(test)]
    pub fn verdict(&self) -> Verdict {
        self.time_decision().map_or(Verdict::Unsure, |d| d.verdict)
    }

    /// The count verdict, when counts were compared.
    #[cfg(test)]
    pub fn count_verdict(&self) -> Option<Verdict> {
        self.counts.as_ref().map(|c| c.verdict)
    }

    /// Why the row fails the comparison, naming the gate; `None` when it does not.
    pub fn regression(&self) -> Option<String> {
        let mut why = Vec::new();
        if let Some(c) = self
            .counts
            .as_ref()
            .filter(|c| c.verdict == Verdict::Slower)
        {
            why.push(format!("{} {}, count gate", c.metric, percent(c.change)));
        }
        if let Some(d) = self
            .time_decision()
            .filter(|d| self.time_gated && d.verdict == Verdict::Slower)
        {
            why.push(format!("time {}, time gate", percent(d.change)));
        }
        (!why.is_empty()).then(|| format!("{} slower ({})", self.id, why.join("; ")))
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
        let mut out: Vec<String> = self.rows.iter().filter_map(BenchRow::regression).collect();
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
            "| benchmark | time: baseline | current | change | p | threshold | time verdict | instructions: baseline | current | change | count verdict |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|");
        for r in &self.rows {
            let time = match r.time_decision() {
                Some(d) => {
                    let source = match r.source {
                        ThresholdSource::Calibrated => "",
                        ThresholdSource::Default => " (default)",
                    };
                    let verdict = match (d.verdict, r.time_gated) {
                        (Verdict::Slower, true) => "**slower**".to_string(),
                        (v @ (Verdict::Slower | Verdict::Faster), false) => {
                            format!("{v} (not gated: uncalibrated)")
                        }
                        (v, _) => v.to_string(),
                    };
                    let verdict = if r.rerun.is_some() {
                        format!("{verdict} (re-run)")
                    } else {
                        verdict
                    };
                    format!(
                        "{} | {} | {} | {} | {:.1}%{source} | {verdict}",
                        format_ns(d.baseline_median),
                        format_ns(d.current_median),
                        percent(d.change),
                        format_p(d.p),
                        d.threshold * 100.0,
                    )
                }
                None => "– | – | – | – | – | no times".to_string(),
            };
            let counts = match &r.counts {
                Some(c) => {
                    let verdict = match c.verdict {
                        Verdict::Slower => "**slower**".to_string(),
                        v => v.to_string(),
                    };
                    format!(
                        "{} | {} | {} | {verdict} (±{:.1}%)",
                        format_count(c.baseline),
                        format_count(c.current),
                        percent(c.change),
                        c.threshold * 100.0
                    )
                }
                None => "– | – | – | no counts".to_string(),
            };
            let _ = writeln!(s, "| {} | {time} | {counts} |", r.id);
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Count gate: instructions (deterministic), fails beyond its threshold. Time gate: rank test and calibrated threshold; uncalibrated times are reported, not gated."
        );
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

/// A count with thousands separators: `12,345,678`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
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
                "no calibration: times are reported against the default {:.0}% but not gated (run `forcefield bench calibrate` on A/A entries to gate them)",
                config.uncalibrated_threshold * 100.0
            ));
            None
        }
    };
    let counts_comparable = match (&baseline.counts, &current.counts) {
        (Some(b), Some(c)) if b.tool == c.tool => true,
        (Some(b), Some(c)) => {
            notes.push(format!(
                "counts not compared: taken by different tools (`{}` vs `{}`)",
                b.tool, c.tool
            ));
            false
        }
        _ => false,
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
        let time_gated = source == ThresholdSource::Calibrated || config.gate_uncalibrated_times;
        let counts = counts_comparable
            .then(|| {
                let (bc, cc) = (b.counts.get(GATED_METRIC)?, c.counts.get(GATED_METRIC)?);
                let (count_threshold, source) = match thresholds.and_then(|t| t.count_threshold(id))
                {
                    Some(t) => (t, ThresholdSource::Calibrated),
                    None => (config.count_threshold, ThresholdSource::Default),
                };
                let (change, verdict) = decide_counts(*bc, *cc, count_threshold);
                Some(CountDecision {
                    metric: GATED_METRIC.to_string(),
                    baseline: *bc,
                    current: *cc,
                    change,
                    threshold: count_threshold,
                    source,
                    verdict,
                })
            })
            .flatten();
        let has_times = !b.samples_ns.is_empty() && !c.samples_ns.is_empty();
        let recorded =
            has_times.then(|| decide(&b.samples_ns, &c.samples_ns, threshold, config.alpha));
        let mut row = BenchRow {
            id: (*id).clone(),
            recorded,
            rerun: None,
            source,
            time_gated,
            counts,
            note: None,
        };
        let unsure = row.recorded.as_ref().map(|d| d.verdict) == Some(Verdict::Unsure);
        if has_times && b.samples_ns == c.samples_ns {
            if let Some(d) = row.recorded.as_mut() {
                d.verdict = Verdict::Unsure;
            }
            row.note = Some(
                "identical samples: the same criterion results were recorded twice, nothing was re-measured"
                    .to_string(),
            );
        } else if unsure && time_gated {
            // Only a verdict that can fail the comparison is worth re-measuring.
            match rerun(id) {
                Ok(r) => {
                    let d = decide(&r.baseline, &r.current, threshold, config.alpha);
                    row.note = Some(format!(
                        "unsure on the recorded samples (p = {}); re-run interleaved, {} round(s) per build: {}",
                        format_p(row.recorded.as_ref().map_or(1.0, |d| d.p)),
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
mod tests;
