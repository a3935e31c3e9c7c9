//! Uncertainty of an evaluation: percentile bootstrap intervals (seeded) for a mean and for a
//! paired difference of means, and McNemar's exact test for two classifiers on the same samples.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Resamples of every bootstrap interval.
pub const RESAMPLES: usize = 10_000;

/// A mean and its 95% percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The `q`-quantile (0..=1) of `sorted` (ascending), interpolating linearly between order
/// statistics as numpy's default `percentile` does.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q * (sorted.len() - 1) as f64;
    let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (rank - below as f64)
}

/// The mean of `values` with its 95% interval from `resamples` seeded bootstrap resamples
/// (each draws `values.len()` indices with replacement). `values` must not be empty.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Estimate {
    assert!(!values.is_empty(), "a bootstrap needs at least one value");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = values.len();
    let mut means: Vec<f64> =
        (0..resamples).map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    Estimate { mean: mean(values), low: percentile(&means, 0.025), high: percentile(&means, 0.975) }
}

/// The mean of the paired differences `a[i] − b[i]` (the same samples scored two ways) with
/// its 95% bootstrap interval: samples are resampled as pairs.
pub fn paired_difference(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Estimate {
    assert_eq!(a.len(), b.len(), "paired values come in pairs");
    let differences: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    bootstrap_mean(&differences, resamples, seed)
}

/// McNemar's exact test: two-sided p-value of `b` samples right only under the first method
/// and `c` right only under the second, under H0 that either is equally likely
/// (min(1, 2·P[Binomial(b + c, ½) ≤ min(b, c)]), as scipy's `binomtest(b, b + c).pvalue`).
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // P[X = i] = C(n, i) / 2^n, summed in log space so large n does not overflow.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0; // ln C(n, 0)
    let mut tail = 0.0;
    for i in 0..=b.min(c) {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_the_binomial_by_hand() {
        // b = 1, c = 5: 2·(C(6,0) + C(6,1))/2^6 = 2·7/64.
        assert!((mcnemar_exact(1, 5) - 14.0 / 64.0).abs() < 1e-12);
        assert!((mcnemar_exact(5, 1) - 14.0 / 64.0).abs() < 1e-12);
        // Equal counts: the whole distribution, capped at 1.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b = 0, c = 10: 2/1024.
        assert!((mcnemar_exact(0, 10) - 2.0 / 1024.0).abs() < 1e-15);
    }

    /// Against scipy's `binomtest` and numpy's `percentile` (testdata/reference/golden_stats.py).
    #[test]
    fn mcnemar_and_percentiles_match_scipy_and_numpy() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden/stats.json");
        let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for case in golden["mcnemar"].as_array().unwrap() {
            let (b, c, p) = (case["b"].as_u64().unwrap(), case["c"].as_u64().unwrap(), case["p"].as_f64().unwrap());
            assert!(
                (mcnemar_exact(b, c) - p).abs() <= 1e-12 * p.max(1e-300) + 1e-15,
                "b {b} c {c}: {} vs scipy {p}",
                mcnemar_exact(b, c)
            );
        }
        let percentiles = &golden["percentile"];
        let mut values: Vec<f64> = serde_json::from_value(percentiles["values"].clone()).unwrap();
        values.sort_by(f64::total_cmp);
        for (q, want) in percentiles["q"].as_array().unwrap().iter().zip(percentiles["result"].as_array().unwrap()) {
            let got = percentile(&values, q.as_f64().unwrap() / 100.0);
            assert!((got - want.as_f64().unwrap()).abs() < 1e-12, "percentile {q}: {got} vs numpy {want}");
        }
    }

    #[test]
    fn percentiles_interpolate_as_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        // numpy.percentile([1,2,3,4], 2.5) = 1.075, 97.5 → 3.925.
        assert!((percentile(&sorted, 0.025) - 1.075).abs() < 1e-12);
        assert!((percentile(&sorted, 0.975) - 3.925).abs() < 1e-12);
    }

    /// For a large sample of 0/1 outcomes the bootstrap interval of the mean approaches the
    /// normal one, p ± 1.96·√(p(1−p)/n).
    #[test]
    fn the_bootstrap_interval_of_a_proportion_matches_the_textbook_one() {
        let n = 2000;
        let values: Vec<f64> = (0..n).map(|i| if i % 5 < 3 { 1.0 } else { 0.0 }).collect();
        let e = bootstrap_mean(&values, RESAMPLES, 7);
        let half = 1.96 * (0.6f64 * 0.4 / n as f64).sqrt();
        assert!((e.mean - 0.6).abs() < 1e-12);
        assert!((e.low - (0.6 - half)).abs() < 0.003, "low {} vs {}", e.low, 0.6 - half);
        assert!((e.high - (0.6 + half)).abs() < 0.003, "high {} vs {}", e.high, 0.6 + half);
        assert_eq!(bootstrap_mean(&values, RESAMPLES, 7), e, "seeded: the same interval twice");
    }

    /// One value repeated has no spread; a paired difference of identical scorings is zero.
    #[test]
    fn degenerate_samples_have_degenerate_intervals() {
        let e = bootstrap_mean(&[0.25; 10], 100, 1);
        assert_eq!((e.mean, e.low, e.high), (0.25, 0.25, 0.25));
        let d = paired_difference(&[1.0, 0.0, 1.0], &[1.0, 0.0, 1.0], 100, 1);
        assert_eq!((d.mean, d.low, d.high), (0.0, 0.0, 0.0));
    }
}
