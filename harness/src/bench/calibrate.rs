/*!
Calibration of the gate on measured noise: per-benchmark thresholds from A/A pairs, and what the
gate would do with them.

An A/A pair is two entries of the same build ([`crate::bench::fingerprint::Build::identity`]) on
the same machine: whatever differs between them is noise. For each benchmark, [`calibrate`] takes
the largest relative change of the median over every A/A pair and sets the threshold to
`margin × that` (at least `floor`). Compare then calls a change a regression only when it exceeds
this threshold *and* the rank test is significant.

[`evaluate`] measures the gate honestly, out of sample: for each consecutive A/A pair it derives
thresholds from the pairs that share no entry with it (leave-pair-out), then counts

* false alarms: A/A comparisons judged slower or faster (a compare run that would have failed),
* the smallest slowdown caught reliably: the smallest of [`SLOWDOWN_GRID`] that, multiplied into
  the current side's real samples, is judged slower in every evaluated pair.
*/

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use super::history::Entry;
use super::stats::{decide, median, Verdict};

/// The `format` of thresholds files.
pub const FORMAT: &str = "forcefield-bench-thresholds/1";
/// Threshold multiple of the largest A/A change. Measured on 29 entries of a loaded two-core
/// machine, out of sample: 1.5 gave 8 false alarms in 275 comparisons (2.9%), 2.0 gave none, and
/// both caught the same smallest slowdowns (50% to 200%).
pub const DEFAULT_MARGIN: f64 = 2.0;
/// Smallest threshold calibration gives.
pub const DEFAULT_FLOOR: f64 = 0.01;
/// Threshold of a benchmark without calibration.
pub const UNCALIBRATED_THRESHOLD: f64 = 0.05;
/// Slowdowns tried by [`evaluate`], as relative changes.
pub const SLOWDOWN_GRID: [f64; 12] = [
    0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20, 0.30, 0.50, 1.0, 2.0,
];

/// One benchmark's calibrated threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchThreshold {
    /// The relative change of the median beyond which the gate may call a difference.
    pub threshold: f64,
    /// A/A pairs it was derived from.
    pub pairs: usize,
    /// The largest relative change of the median among them.
    pub max_aa_change: f64,
}

/// Calibrated thresholds of one machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Always [`FORMAT`].
    pub format: String,
    /// The machine they hold for; compare ignores them elsewhere.
    pub fingerprint: Fingerprint,
    /// Entry ids they were derived from.
    pub entries: Vec<String>,
    /// Multiple of the largest A/A change.
    pub margin: f64,
    /// Smallest threshold.
    pub floor: f64,
    /// Per benchmark id: thresholds of the time gate.
    pub benchmarks: BTreeMap<String, BenchThreshold>,
    /// Per benchmark id: thresholds of the count gate (instructions), for benchmarks with counts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, BenchThreshold>,
}

impl Thresholds {
    /// The time threshold of `id`, if calibrated.
    pub fn get(&self, id: &str) -> Option<f64> {
        self.benchmarks.get(id).map(|t| t.threshold)
    }

    /// The count threshold of `id`, if calibrated.
    pub fn count_threshold(&self, id: &str) -> Option<f64> {
        self.counts.get(id).map(|t| t.threshold)
    }
}

/// Smallest count threshold calibration gives: counts of one build repeat exactly, and a change
/// below this is not worth a failed build.
pub const COUNT_FLOOR: f64 = 0.002;

/// Groups of entry indices that are A/A repeats: the same build on the machine `fingerprint`,
/// groups of two or more, in history order.
pub fn aa_groups(entries: &[Entry], fingerprint: &Fingerprint) -> Vec<Vec<usize>> {
    let mut by_build: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if &e.fingerprint == fingerprint {
            by_build.entry(e.build.identity()).or_default().push(i);
        }
    }
    let mut groups: Vec<Vec<usize>> = by_build.into_values().filter(|g| g.len() >= 2).collect();
    groups.sort();
    groups
}

/// Every unordered pair within each group.
fn all_pairs(groups: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for g in groups {
        for a in 0..g.len() {
            for b in a + 1..g.len() {
                pairs.push((g[a], g[b]));
            }
        }
    }
    pairs
}

/// What a threshold is calibrated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Medians of the time samples.
    Time,
    /// Instruction counts.
    Count,
}

/// Relative change of `id` from entry `a` to entry `b` (median time, or instructions), when both
/// have it.
fn relative_change(entries: &[Entry], a: usize, b: usize, id: &str, gate: Gate) -> Option<f64> {
    let value = |e: usize| -> Option<f64> {
        let record = entries[e].benchmarks.get(id)?;
        match gate {
            Gate::Time => median(&record.samples_ns),
            Gate::Count => record
                .counts
                .get(super::counts::GATED_METRIC)
                .map(|&c| c as f64),
        }
    };
    let (va, vb) = (value(a)?, value(b)?);
    (va > 0.0).then(|| vb / va - 1.0)
}

fn thresholds_from_pairs(
    entries: &[Entry],
    pairs: &[(usize, usize)],
    margin: f64,
    floor: f64,
) -> BTreeMap<String, BenchThreshold> {
    gate_thresholds(entries, pairs, margin, floor, Gate::Time)
}

fn gate_thresholds(
    entries: &[Entry],
    pairs: &[(usize, usize)],
    margin: f64,
    floor: f64,
    gate: Gate,
) -> BTreeMap<String, BenchThreshold> {
    let ids: BTreeSet<&String> = pairs
        .iter()
        .flat_map(|&(a, b)| {
            entries[a]
                .benchmarks
                .keys()
                .chain(entries[b].benchmarks.keys())
        })
        .collect();
    let mut out = BTreeMap::new();
    for id in ids {
        let changes: Vec<f64> = pairs
            .iter()
            .filter_map(|&(a, b)| relative_change(entries, a, b, id, gate))
            .map(f64::abs)
            .collect();
        if changes.is_empty() {
            continue;
        }
        let max = changes.iter().copied().fold(0.0, f64::max);
        out.insert(
            id.clone(),
            BenchThreshold {
                threshold: (margin * max).max(floor),
                pairs: changes.len(),
                max_aa_change: max,
            },
        );
    }
    out
}

/// Thresholds from every A/A pair of `groups`.
pub fn calibrate(
    entries: &[Entry],
    groups: &[Vec<usize>],
    fingerprint: &Fingerprint,
    margin: f64,
    floor: f64,
) -> Thresholds {
    let pairs = all_pairs(groups);
    let used: BTreeSet<usize> = groups.iter().flatten().copied().collect();
    Thresholds {
        format: FORMAT.to_string(),
        fingerprint: fingerprint.clone(),
        entries: used.iter().map(|&i| entries[i].id.clone()).collect(),
        margin,
        floor,
        benchmarks: thresholds_from_pairs(entries, &pairs, margin, floor),
        counts: gate_thresholds(entries, &pairs, margin, COUNT_FLOOR, Gate::Count),
    }
}

/// What the gate does on A/A pairs of one benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalRow {
    /// Benchmark id.
    pub id: String,
    /// The calibrated threshold (all pairs).
    pub threshold: f64,
    /// Largest A/A change of the median.
    pub max_aa_change: f64,
    /// Consecutive A/A comparisons evaluated.
    pub comparisons: usize,
    /// Of those, judged slower or faster.
    pub false_alarms: usize,
    /// Of those, judged unsure.
    pub unsure: usize,
    /// Smallest slowdown of [`SLOWDOWN_GRID`] judged slower in every comparison.
    pub min_caught: Option<f64>,
}

/// What the count gate does on A/A pairs of one benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct CountEval {
    /// Benchmark id.
    pub id: String,
    /// The calibrated count threshold (all pairs).
    pub threshold: f64,
    /// Largest A/A change of the instructions.
    pub max_aa_change: f64,
    /// Consecutive A/A comparisons evaluated.
    pub comparisons: usize,
    /// Of those, judged slower or faster.
    pub false_alarms: usize,
    /// Smallest slowdown of [`SLOWDOWN_GRID`] judged slower in every comparison.
    pub min_caught: Option<f64>,
}

/// The gate's out-of-sample behaviour on A/A pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Per benchmark.
    pub rows: Vec<EvalRow>,
    /// Consecutive A/A compare runs evaluated.
    pub runs: usize,
    /// Of those, runs in which some benchmark was judged slower (the gate would have failed).
    pub failing_runs: usize,
    /// Whether thresholds could be derived leaving each evaluated pair out (false: too few
    /// entries, so the evaluation reused the pair's own entries and is optimistic).
    pub out_of_sample: bool,
    /// The count gate, per benchmark with counts.
    pub count_rows: Vec<CountEval>,
    /// A/A compare runs in which the count gate judged some benchmark slower.
    pub count_failing_runs: usize,
}

impl Evaluation {
    /// False alarms over all benchmark comparisons.
    pub fn false_alarm_rate(&self) -> (usize, usize) {
        (
            self.rows.iter().map(|r| r.false_alarms).sum(),
            self.rows.iter().map(|r| r.comparisons).sum(),
        )
    }

    /// The markdown table and summary lines.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let (fa, total) = self.false_alarm_rate();
        let _ = writeln!(
            s,
            "| benchmark | A/A max change | threshold | A/A comparisons | false alarms | unsure | smallest slowdown caught |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {:.1}% | {:.1}% | {} | {} | {} | {} |",
                r.id,
                r.max_aa_change * 100.0,
                r.threshold * 100.0,
                r.comparisons,
                r.false_alarms,
                r.unsure,
                r.min_caught
                    .map_or("> 200%".to_string(), |m| format!("{:.1}%", m * 100.0))
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "False alarms: {fa} of {total} benchmark comparisons ({:.1}%); {} of {} A/A compare runs would have failed{}.",
            if total > 0 { fa as f64 * 100.0 / total as f64 } else { 0.0 },
            self.failing_runs,
            self.runs,
            if self.out_of_sample {
                " (thresholds derived leaving each evaluated pair's entries out)"
            } else {
                " (too few entries to leave pairs out: in-sample, optimistic)"
            }
        );
        let mut caught: Vec<f64> = self.rows.iter().filter_map(|r| r.min_caught).collect();
        caught.sort_by(f64::total_cmp);
        if let (Some(lo), Some(hi)) = (caught.first(), caught.last()) {
            let _ = writeln!(
                s,
                "Smallest slowdown caught in every comparison: {:.1}% to {:.1}% depending on the benchmark (median {:.1}%).",
                lo * 100.0,
                hi * 100.0,
                median(&caught).unwrap_or(*lo) * 100.0
            );
        }
        if !self.count_rows.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "### Count gate (instructions)");
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "| benchmark | A/A max change | threshold | A/A comparisons | false alarms | smallest slowdown caught |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
            for r in &self.count_rows {
                let _ = writeln!(
                    s,
                    "| {} | {:.3}% | {:.1}% | {} | {} | {} |",
                    r.id,
                    r.max_aa_change * 100.0,
                    r.threshold * 100.0,
                    r.comparisons,
                    r.false_alarms,
                    r.min_caught
                        .map_or("> 200%".to_string(), |m| format!("{:.1}%", m * 100.0))
                );
            }
            let fa: usize = self.count_rows.iter().map(|r| r.false_alarms).sum();
            let total: usize = self.count_rows.iter().map(|r| r.comparisons).sum();
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "Count gate false alarms: {fa} of {total} benchmark comparisons; {} of {} A/A compare runs would have failed on counts.",
                self.count_failing_runs, self.runs
            );
        }
        s
    }
}

/// The count gate on the consecutive A/A pairs, with thresholds left out as for times.
fn evaluate_counts(
    entries: &[Entry],
    pairs: &[(usize, usize)],
    consecutive: &[(usize, usize)],
    margin: f64,
) -> (Vec<CountEval>, usize) {
    let full = gate_thresholds(entries, pairs, margin, COUNT_FLOOR, Gate::Count);
    let loo: Vec<BTreeMap<String, BenchThreshold>> = consecutive
        .iter()
        .map(|&(a, b)| {
            let rest: Vec<(usize, usize)> = pairs
                .iter()
                .copied()
                .filter(|&(x, y)| x != a && x != b && y != a && y != b)
                .collect();
            if rest.is_empty() {
                full.clone()
            } else {
                gate_thresholds(entries, &rest, margin, COUNT_FLOOR, Gate::Count)
            }
        })
        .collect();
    let mut failing = vec![false; consecutive.len()];
    let mut rows = Vec::new();
    for (id, t) in &full {
        let mut row = CountEval {
            id: id.clone(),
            threshold: t.threshold,
            max_aa_change: t.max_aa_change,
            comparisons: 0,
            false_alarms: 0,
            min_caught: None,
        };
        let count = |e: usize| {
            entries[e]
                .benchmarks
                .get(id)
                .and_then(|r| r.counts.get(super::counts::GATED_METRIC))
                .copied()
        };
        let mut evaluated = Vec::new();
        for (k, &(a, b)) in consecutive.iter().enumerate() {
            let (Some(x), Some(y)) = (count(a), count(b)) else {
                continue;
            };
            let threshold = loo[k].get(id).map_or(t.threshold, |l| l.threshold);
            row.comparisons += 1;
            let (_, verdict) = super::compare::decide_counts(x, y, threshold);
            if verdict != Verdict::Same {
                row.false_alarms += 1;
                failing[k] |= verdict == Verdict::Slower;
            }
            evaluated.push((x, y, threshold));
        }
        if !evaluated.is_empty() {
            row.min_caught = SLOWDOWN_GRID.iter().copied().find(|&s| {
                evaluated.iter().all(|&(x, y, threshold)| {
                    let slowed = (y as f64 * (1.0 + s)).round() as u64;
                    super::compare::decide_counts(x, slowed, threshold).1 == Verdict::Slower
                })
            });
        }
        rows.push(row);
    }
    (rows, failing.iter().filter(|&&f| f).count())
}

/// Evaluates the gate on the consecutive pairs of each group, out of sample where possible.
pub fn evaluate(
    entries: &[Entry],
    groups: &[Vec<usize>],
    margin: f64,
    floor: f64,
    alpha: f64,
) -> Evaluation {
    let pairs = all_pairs(groups);
    let full = thresholds_from_pairs(entries, &pairs, margin, floor);
    let consecutive: Vec<(usize, usize)> = groups
        .iter()
        .flat_map(|g| g.windows(2).map(|w| (w[0], w[1])))
        .collect();
    let mut out_of_sample = true;
    let loo: Vec<BTreeMap<String, BenchThreshold>> = consecutive
        .iter()
        .map(|&(a, b)| {
            let rest: Vec<(usize, usize)> = pairs
                .iter()
                .copied()
                .filter(|&(x, y)| x != a && x != b && y != a && y != b)
                .collect();
            if rest.is_empty() {
                out_of_sample = false;
                full.clone()
            } else {
                thresholds_from_pairs(entries, &rest, margin, floor)
            }
        })
        .collect();
    let mut failing = vec![false; consecutive.len()];
    let mut rows = Vec::new();
    for (id, t) in &full {
        let mut row = EvalRow {
            id: id.clone(),
            threshold: t.threshold,
            max_aa_change: t.max_aa_change,
            comparisons: 0,
            false_alarms: 0,
            unsure: 0,
            min_caught: None,
        };
        let mut evaluated: Vec<(&[f64], &[f64], f64)> = Vec::new();
        for (k, &(a, b)) in consecutive.iter().enumerate() {
            let (Some(x), Some(y)) = (entries[a].benchmarks.get(id), entries[b].benchmarks.get(id))
            else {
                continue;
            };
            let threshold = loo[k].get(id).map_or(t.threshold, |l| l.threshold);
            let d = decide(&x.samples_ns, &y.samples_ns, threshold, alpha);
            row.comparisons += 1;
            match d.verdict {
                Verdict::Slower | Verdict::Faster => {
                    row.false_alarms += 1;
                    if d.verdict == Verdict::Slower {
                        failing[k] = true;
                    }
                }
                Verdict::Unsure => row.unsure += 1,
                Verdict::Same => {}
            }
            evaluated.push((&x.samples_ns, &y.samples_ns, threshold));
        }
        if !evaluated.is_empty() {
            row.min_caught = SLOWDOWN_GRID.iter().copied().find(|&s| {
                evaluated.iter().all(|(x, y, threshold)| {
                    let slowed: Vec<f64> = y.iter().map(|v| v * (1.0 + s)).collect();
                    decide(x, &slowed, *threshold, alpha).verdict == Verdict::Slower
                })
            });
        }
        rows.push(row);
    }
    let (count_rows, count_failing_runs) = evaluate_counts(entries, &pairs, &consecutive, margin);
    Evaluation {
        rows,
        runs: consecutive.len(),
        failing_runs: failing.iter().filter(|&&f| f).count(),
        out_of_sample,
        count_rows,
        count_failing_runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fingerprint::{Build, GpuFingerprint};
    use crate::bench::history::{BenchRecord, FORMAT as ENTRY_FORMAT};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn machine() -> Fingerprint {
        Fingerprint {
            cpu_model: "cpu".into(),
            cpu_cores: 2,
            gpu: GpuFingerprint::none(),
            rustc: "rustc".into(),
        }
    }

    /// An entry of build `commit` with benchmark `b` around `center` (spread 4%), plus drift.
    fn entry(i: usize, commit: &str, center: f64, seed: u64) -> Entry {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let samples = (0..20)
            .map(|_| center * (1.0 + 0.04 * (rng.gen::<f64>() - 0.5)))
            .collect();
        let mut benchmarks = BTreeMap::new();
        benchmarks.insert(
            "b".to_string(),
            BenchRecord {
                samples_ns: samples,
                iterations: vec![1.0; 20],
                throughput: None,
                measured_at: i as u64,
                counts: BTreeMap::new(),
            },
        );
        Entry {
            format: ENTRY_FORMAT.into(),
            id: format!("e{i}"),
            recorded_at: i as u64,
            fingerprint: machine(),
            build: Build {
                commit: commit.into(),
                dirty: false,
                diff_hash: None,
                faults: vec![],
                label: None,
                executables: vec![],
            },
            benchmarks,
            quality: vec![],
            counts: None,
        }
    }

    #[test]
    fn groups_are_same_build_same_machine() {
        let mut entries: Vec<Entry> = (0..5).map(|i| entry(i, "a", 100.0, i as u64)).collect();
        entries[2].build.commit = "b".into();
        entries[4].fingerprint.cpu_cores = 8;
        assert_eq!(aa_groups(&entries, &machine()), vec![vec![0, 1, 3]]);
    }

    #[test]
    fn thresholds_follow_the_largest_a_a_drift() {
        // Medians drift by up to 4% between runs of the same build.
        let centers = [100.0, 104.0, 101.0, 102.0];
        let entries: Vec<Entry> = centers
            .iter()
            .enumerate()
            .map(|(i, &c)| entry(i, "a", c, i as u64))
            .collect();
        let groups = aa_groups(&entries, &machine());
        let t = calibrate(&entries, &groups, &machine(), 1.5, 0.01);
        let b = &t.benchmarks["b"];
        assert_eq!(b.pairs, 6);
        assert!(b.max_aa_change > 0.03 && b.max_aa_change < 0.05, "{b:?}");
        assert!((b.threshold - 1.5 * b.max_aa_change).abs() < 1e-12);
        assert_eq!(t.entries, ["e0", "e1", "e2", "e3"]);
    }

    #[test]
    fn evaluation_counts_no_false_alarms_on_quiet_a_a_runs_and_finds_the_catchable_slowdown() {
        let entries: Vec<Entry> = (0..6)
            .map(|i| entry(i, "a", 100.0, 10 + i as u64))
            .collect();
        let groups = aa_groups(&entries, &machine());
        let ev = evaluate(&entries, &groups, 1.5, 0.01, 0.01);
        assert!(ev.out_of_sample);
        assert_eq!(ev.runs, 5);
        assert_eq!(ev.failing_runs, 0);
        let row = &ev.rows[0];
        assert_eq!((row.comparisons, row.false_alarms), (5, 0));
        // A 4% spread calibrates a threshold of a few percent: 10% is caught, 1% is not.
        let caught = row.min_caught.unwrap();
        assert!(caught > 0.01 && caught <= 0.10, "{row:?}");
        assert!(ev.markdown().contains("False alarms: 0 of 5"));
    }

    #[test]
    fn a_threshold_below_the_drift_shows_false_alarms() {
        // Every run drifts 6% from the last while calibration is forced tiny by margin 0.
        let entries: Vec<Entry> = (0..4)
            .map(|i| entry(i, "a", 100.0 * 1.06f64.powi(i as i32), i as u64))
            .collect();
        let groups = aa_groups(&entries, &machine());
        let ev = evaluate(&entries, &groups, 0.0, 0.0, 0.01);
        assert_eq!(ev.rows[0].false_alarms, 3);
        assert_eq!(ev.failing_runs, 3);
    }
}
