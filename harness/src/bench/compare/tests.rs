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
                    counts: BTreeMap::new(),
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
    // Uncalibrated times are reported, not gated.
    assert!(c.regressions().is_empty());
    let md = c.markdown();
    assert!(
            md.contains("| s | 99.837 ns | 130.5 ns | +30.7% | <0.001 | 5.0% (default) | slower (not gated: uncalibrated) |"),
            "{md}"
        );
    assert!(md.contains("Result: no regression."), "{md}");
    // Asked to gate them, the same comparison fails, naming the time gate.
    let config = GateConfig {
        gate_uncalibrated_times: true,
        ..GateConfig::default()
    };
    let c = compare(&base, &cur, None, &config, &mut no_rerun);
    assert_eq!(c.regressions().len(), 1);
    let md = c.markdown();
    assert!(
        md.contains("**slower**")
            && md.contains("1 regression(s): s slower (time +30.7%, time gate)"),
        "{md}"
    );
}

fn with_counts(mut e: Entry, tool: &str, counts: &[(&str, u64)]) -> Entry {
    e.counts = Some(crate::bench::history::CountsSource {
        tool: tool.into(),
        measured_at: 0,
    });
    for (id, n) in counts {
        let record = e.benchmarks.entry(id.to_string()).or_insert(BenchRecord {
            samples_ns: vec![],
            iterations: vec![],
            throughput: None,
            measured_at: 0,
            counts: BTreeMap::new(),
        });
        record.counts.insert("instructions".into(), *n);
    }
    e
}

#[test]
fn the_count_gate_fails_on_more_instructions_whatever_the_times_say() {
    // Times within the noise; instructions 3% up on `s`, 0.1% on `f`, and `k` has counts only.
    let base = with_counts(
        entry(
            "base",
            &[("s", around(100.0, 20, 0.0)), ("f", around(50.0, 20, 0.0))],
        ),
        "callgrind",
        &[("s", 1_000_000), ("f", 2_000_000), ("k", 500)],
    );
    let cur = with_counts(
        entry(
            "cur",
            &[("s", around(100.0, 20, 1.0)), ("f", around(50.0, 20, 2.0))],
        ),
        "callgrind",
        &[("s", 1_030_000), ("f", 2_002_000), ("k", 500)],
    );
    let c = compare(&base, &cur, None, &GateConfig::default(), &mut no_rerun);
    let counts: Vec<(&str, Option<Verdict>, Verdict)> = c
        .rows
        .iter()
        .map(|r| (r.id.as_str(), r.count_verdict(), r.verdict()))
        .collect();
    assert_eq!(
        counts,
        [
            ("f", Some(Verdict::Same), Verdict::Same),
            ("k", Some(Verdict::Same), Verdict::Unsure),
            ("s", Some(Verdict::Slower), Verdict::Same),
        ]
    );
    assert_eq!(
        c.regressions(),
        ["s slower (instructions +3.0%, count gate)"]
    );
    let md = c.markdown();
    assert!(
        md.contains("| 1,000,000 | 1,030,000 | +3.0% | **slower** (±0.5%) |"),
        "{md}"
    );
    assert!(
        md.contains("| k | – | – | – | – | – | no times | 500 | 500 |"),
        "{md}"
    );
    // Fewer instructions is faster, not a regression; counts of another tool are not compared.
    let c = compare(&cur, &base, None, &GateConfig::default(), &mut no_rerun);
    assert!(c.regressions().is_empty());
    let other = with_counts(cur.clone(), "ncu", &[]);
    let c = compare(&base, &other, None, &GateConfig::default(), &mut no_rerun);
    assert!(c.rows.iter().all(|r| r.counts.is_none()));
    assert!(c.regressions().is_empty());
    assert!(c.notes.iter().any(|n| n.contains("different tools")));
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
    // Only a gated time is worth re-running.
    let mut must_not_rerun =
        |id: &str| -> Result<Rerun, String> { panic!("{id}: an uncalibrated time is not re-run") };
    let c = compare(
        &base,
        &cur,
        None,
        &GateConfig::default(),
        &mut must_not_rerun,
    );
    assert_eq!(c.rows[0].verdict(), Verdict::Unsure);
    let gated = GateConfig {
        gate_uncalibrated_times: true,
        ..GateConfig::default()
    };
    let c = compare(&base, &cur, None, &gated, &mut rerun);
    assert_eq!(asked, ["u"]);
    assert_eq!(
        c.rows[0].recorded.as_ref().map(|d| d.verdict),
        Some(Verdict::Unsure)
    );
    assert_eq!(c.rows[0].verdict(), Verdict::Slower);
    assert!(c.markdown().contains("re-run interleaved, 2 round(s)"));
    // Without executables it stays unsure, with the reason, and is not a regression.
    let c = compare(&base, &cur, None, &gated, &mut no_rerun);
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
        counts: BTreeMap::new(),
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
    assert!(!c.rows[0].time_gated, "an uncalibrated time is not gated");
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
    let v: Vec<(&str, QualityVerdict)> = c.quality.iter().map(|r| (r.metric, r.verdict)).collect();
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
