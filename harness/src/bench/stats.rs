/*!
The statistics behind the benchmark gate: order statistics, the Mann–Whitney U test, a bootstrap
interval of the ratio of medians, and [`decide`], which turns two sets of samples and a noise
threshold into a [`Verdict`].

Benchmark times are skewed (a slow outlier is common, a fast one is not) and two runs on a busy
machine differ by drift that no within-run spread predicts, so the gate uses a rank test (no
normality assumed) for "is there a difference at all" and a threshold calibrated on same-build runs
([`crate::bench::calibrate`]) for "is the difference larger than this machine's noise". A result is
a regression only when both say so.

Everything here is pure and deterministic: the bootstrap draws from a seeded generator, so the same
samples always give the same verdict.
*/

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Samples per side below which no verdict but [`Verdict::Unsure`] is given.
pub const MIN_SAMPLES: usize = 3;
/// Significance level of the rank test.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Resamples of the bootstrap interval.
const BOOTSTRAP_RESAMPLES: usize = 500;
/// Seed of the bootstrap, fixed so that verdicts are reproducible.
const BOOTSTRAP_SEED: u64 = 0x0b00_75ed;

/// The median of `samples`; `None` when empty or when a sample is not finite.
pub fn median(samples: &[f64]) -> Option<f64> {
    quantile(samples, 0.5)
}

/// The `q`-quantile of `samples` (linear interpolation between order statistics, `q` in [0, 1]);
/// `None` when empty or when a sample is not finite.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() || samples.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(quantile_sorted(&sorted, q))
}

fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// The outcome of a two-sided Mann–Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: pairs (x, y) with x > y, ties counting one half.
    pub u: f64,
    /// The normal approximation's z (with tie and continuity corrections).
    pub z: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// The Mann–Whitney U test of `x` against `y`, with the normal approximation (tie-corrected
/// variance, continuity correction). Returns p = 1 when either side is empty or every value ties.
pub fn mann_whitney(x: &[f64], y: &[f64]) -> MannWhitney {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return MannWhitney {
            u: 0.0,
            z: 0.0,
            p: 1.0,
        };
    }
    // Rank the pooled samples, ties sharing their mean rank.
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pooled.len();
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        // Ranks i+1 ..= j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_x += mean_rank * pooled[i..j].iter().filter(|p| p.1).count() as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let total = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    if variance <= 0.0 {
        return MannWhitney { u, z: 0.0, p: 1.0 };
    }
    let diff = u - mean;
    let corrected = (diff.abs() - 0.5).max(0.0) * diff.signum();
    let z = corrected / variance.sqrt();
    let p = erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0);
    MannWhitney { u, z, p }
}

/// The complementary error function, with a fractional error below 1.2e-7 everywhere (Numerical
/// Recipes' Chebyshev fit), which is ample for p-values compared with 0.01.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// A 95% bootstrap interval of `median(y) / median(x) - 1` (percentile method, seeded).
pub fn median_change_interval(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    if x.is_empty() || y.is_empty() {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut changes = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut bx = vec![0.0; x.len()];
    let mut by = vec![0.0; y.len()];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for v in bx.iter_mut() {
            *v = x[rng.gen_range(0..x.len())];
        }
        for v in by.iter_mut() {
            *v = y[rng.gen_range(0..y.len())];
        }
        let (mx, my) = (median(&bx)?, median(&by)?);
        if mx > 0.0 {
            changes.push(my / mx - 1.0);
        }
    }
    if changes.is_empty() {
        return None;
    }
    changes.sort_by(f64::total_cmp);
    Some((
        quantile_sorted(&changes, 0.025),
        quantile_sorted(&changes, 0.975),
    ))
}

/// What the gate says about one benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Faster beyond the noise threshold, and the rank test agrees.
    Faster,
    /// Slower beyond the noise threshold, and the rank test agrees: a regression.
    Slower,
    /// The change of the median is within the noise threshold.
    Same,
    /// The median moved beyond the threshold but the rank test cannot tell it from noise (or
    /// there are too few samples).
    Unsure,
}

impl Verdict {
    /// The word printed in tables.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::Same => "same",
            Verdict::Unsure => "unsure",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// The gate's decision on one benchmark, with the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Median of the baseline samples (same unit as the samples).
    pub baseline_median: f64,
    /// Median of the current samples.
    pub current_median: f64,
    /// `current_median / baseline_median - 1`.
    pub change: f64,
    /// Two-sided p-value of the rank test.
    pub p: f64,
    /// 95% bootstrap interval of the change, when it could be computed.
    pub interval: Option<(f64, f64)>,
    /// The relative change the verdict needed to exceed.
    pub threshold: f64,
    /// The verdict.
    pub verdict: Verdict,
}

/// Decides whether `current` differs from `baseline`: [`Verdict::Same`] when the medians differ by
/// at most `threshold` (relative), otherwise [`Verdict::Slower`] or [`Verdict::Faster`] when the
/// rank test's p is below `alpha`, otherwise [`Verdict::Unsure`].
pub fn decide(baseline: &[f64], current: &[f64], threshold: f64, alpha: f64) -> Decision {
    let bm = median(baseline).unwrap_or(f64::NAN);
    let cm = median(current).unwrap_or(f64::NAN);
    let change = if bm > 0.0 { cm / bm - 1.0 } else { f64::NAN };
    let test = mann_whitney(baseline, current);
    let enough = baseline.len() >= MIN_SAMPLES && current.len() >= MIN_SAMPLES;
    let verdict = if !enough || !change.is_finite() {
        Verdict::Unsure
    } else if change.abs() <= threshold {
        Verdict::Same
    } else if test.p < alpha {
        if change > 0.0 {
            Verdict::Slower
        } else {
            Verdict::Faster
        }
    } else {
        Verdict::Unsure
    };
    Decision {
        baseline_median: bm,
        current_median: cm,
        change,
        p: test.p,
        interval: median_change_interval(baseline, current),
        threshold,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples around `center` with a seeded multiplicative noise of about `spread`.
    fn noisy(center: f64, spread: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| center * (1.0 + spread * (rng.gen::<f64>() - 0.5) * 2.0))
            .collect()
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(quantile(&[0.0, 10.0], 0.25), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-7);
        assert!((erfc(3.0) - 2.209_049_7e-5).abs() < 1e-9);
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_example() {
        // x = 1, 2, 3; y = 4, 5, 6: U_x = 0, mean 4.5, var = 9 * 7 / 12 = 5.25.
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert_eq!(r.u, 0.0);
        let z = (4.5f64 - 0.5) / 5.25f64.sqrt();
        assert!((r.z + z).abs() < 1e-12, "z {}", r.z);
        let p = erfc(z / std::f64::consts::SQRT_2);
        assert!((r.p - p).abs() < 1e-12);
        // Swapping the sides mirrors U and keeps p.
        let s = mann_whitney(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]);
        assert_eq!(s.u, 9.0);
        assert!((s.p - r.p).abs() < 1e-12);
    }

    #[test]
    fn mann_whitney_handles_ties_and_identical_samples() {
        let same = mann_whitney(&[1.0; 5], &[1.0; 5]);
        assert_eq!(same.p, 1.0);
        let tied = mann_whitney(&[1.0, 1.0, 2.0, 2.0], &[1.0, 2.0, 2.0, 3.0]);
        assert!(tied.p > 0.3 && tied.p <= 1.0, "p {}", tied.p);
    }

    #[test]
    fn a_twenty_percent_slowdown_over_noisy_samples_is_slower() {
        let base = noisy(100.0, 0.08, 30, 1);
        let cur = noisy(120.0, 0.08, 30, 2);
        let d = decide(&base, &cur, 0.05, DEFAULT_ALPHA);
        assert_eq!(d.verdict, Verdict::Slower, "{d:?}");
        assert!((d.change - 0.2).abs() < 0.06, "{d:?}");
        let (lo, hi) = d.interval.unwrap();
        assert!(
            lo > 0.1 && hi < 0.3 && lo < d.change && d.change < hi,
            "{d:?}"
        );
        let back = decide(&cur, &base, 0.05, DEFAULT_ALPHA);
        assert_eq!(back.verdict, Verdict::Faster, "{back:?}");
    }

    #[test]
    fn a_a_samples_are_same_across_many_seeds() {
        let mut false_alarms = 0;
        for seed in 0..50 {
            let a = noisy(100.0, 0.04, 30, seed);
            let b = noisy(100.0, 0.04, 30, seed + 1000);
            let d = decide(&a, &b, 0.05, DEFAULT_ALPHA);
            assert_eq!(d.verdict, Verdict::Same, "seed {seed}: {d:?}");
            // Noisier samples may be unsure; a false slower or faster needs both the rank test
            // (about 1% of A/A pairs at alpha 0.01) and a median change beyond the threshold.
            let a = noisy(100.0, 0.2, 10, seed);
            let b = noisy(100.0, 0.2, 10, seed + 1000);
            let d = decide(&a, &b, 0.05, DEFAULT_ALPHA);
            if matches!(d.verdict, Verdict::Slower | Verdict::Faster) {
                false_alarms += 1;
            }
        }
        assert!(
            false_alarms <= 2,
            "{false_alarms} false alarms in 50 A/A pairs"
        );
    }

    #[test]
    fn a_change_within_the_threshold_is_same_even_when_significant() {
        // Tight samples 3% apart: the rank test sees it, the 5% threshold says it is noise.
        let base = noisy(100.0, 0.002, 30, 3);
        let cur = noisy(103.0, 0.002, 30, 4);
        let d = decide(&base, &cur, 0.05, DEFAULT_ALPHA);
        assert!(d.p < 1e-6);
        assert_eq!(d.verdict, Verdict::Same);
        // With a 1% threshold the same samples are slower.
        assert_eq!(
            decide(&base, &cur, 0.01, DEFAULT_ALPHA).verdict,
            Verdict::Slower
        );
    }

    #[test]
    fn a_large_change_the_test_cannot_confirm_is_unsure() {
        // Three wildly spread samples each: medians 10% apart, far from significant.
        let d = decide(&[50.0, 100.0, 200.0], &[40.0, 110.0, 190.0], 0.05, 0.01);
        assert!(d.change > 0.05);
        assert_eq!(d.verdict, Verdict::Unsure, "{d:?}");
        // Too few samples is never a verdict.
        assert_eq!(
            decide(&[1.0, 1.0], &[2.0, 2.0], 0.05, 0.01).verdict,
            Verdict::Unsure
        );
    }
}
