//! The statistics behind every figure: the median of repeated runs and their spread, whether
//! a run's per-second rates were steady, and a bootstrap interval for the ratio of two
//! brokers' medians (so a ratio whose interval holds 1.0 is reported as no difference).

use serde::{Deserialize, Serialize};

/// Past this coefficient of variation of its per-second rates a run is not steady.
pub const MAX_CV: f64 = 0.10;
/// Past this relative change from the start of the window to its end (the least-squares
/// trend) a run is not steady.
pub const MAX_TREND: f64 = 0.10;
/// Resamples of a bootstrap interval.
pub const RESAMPLES: usize = 2_000;

/// The middle value (the upper middle of an even count), as every loadgen median is taken;
/// `None` without values.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Repeated runs' median and range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        Some(Spread {
            median: median(values.iter().copied())?,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Whether a run's rate held still over its measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Steadiness {
    /// Standard deviation ÷ mean of the per-second rates.
    pub cv: f64,
    /// The least-squares line's change from the first second to the last, ÷ the mean.
    pub trend: f64,
    /// Both within [`MAX_CV`] and [`MAX_TREND`].
    pub steady: bool,
}

impl Steadiness {
    /// Of per-second rates (fewer than two seconds cannot show a drift: steady).
    pub fn of(per_second: &[f64]) -> Steadiness {
        let n = per_second.len() as f64;
        let mean = per_second.iter().sum::<f64>() / n.max(1.0);
        if per_second.len() < 2 || mean <= 0.0 {
            return Steadiness {
                steady: per_second.len() < 2,
                ..Default::default()
            };
        }
        let var = per_second.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let x_mean = (n - 1.0) / 2.0;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, r) in per_second.iter().enumerate() {
            let dx = i as f64 - x_mean;
            sxy += dx * (r - mean);
            sxx += dx * dx;
        }
        let slope = sxy / sxx;
        let cv = var.sqrt() / mean;
        let trend = slope * (n - 1.0) / mean;
        Steadiness {
            cv,
            trend,
            steady: cv <= MAX_CV && trend.abs() <= MAX_TREND,
        }
    }
}

/// A 95% interval of median(`ours`) ÷ median(`theirs`) by the percentile bootstrap: each of
/// [`RESAMPLES`] rounds draws each side's runs again with replacement. The draws come from a
/// fixed-seed generator, so a report computed twice from the same runs says the same.
pub fn ratio_interval(ours: &[f64], theirs: &[f64]) -> Option<(f64, f64)> {
    if ours.is_empty() || theirs.is_empty() {
        return None;
    }
    let mut rng = SplitMix(0x5eed_1234_abcd_0001);
    let mut draw = |v: &[f64]| -> f64 {
        let picked: Vec<f64> = (0..v.len()).map(|_| v[rng.below(v.len())]).collect();
        median(picked).expect("non-empty")
    };
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let (o, t) = (draw(ours), draw(theirs));
            (t > 0.0).then(|| o / t)
        })
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// SplitMix64, written out rather than taken from a crate: the bootstrap needs a few
/// thousand uniform draws from a fixed seed, which is these six lines (and a soak's churn,
/// from a seed of its own, a random channel and lifetime per connection).
pub struct SplitMix(pub u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw from `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(
            median([1.0, 2.0]),
            Some(2.0),
            "the upper middle of an even count"
        );
        assert_eq!(median([]), None);
        let s = Spread::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn a_drift_or_a_swing_is_not_steady() {
        let flat = [100.0, 101.0, 99.0, 100.0, 100.5, 99.5];
        assert!(Steadiness::of(&flat).steady, "{:?}", Steadiness::of(&flat));
        let rising: Vec<f64> = (0..10).map(|i| 100.0 + 3.0 * i as f64).collect();
        let s = Steadiness::of(&rising);
        assert!(!s.steady && s.trend > 0.2, "{s:?}");
        let swinging = [50.0, 150.0, 50.0, 150.0, 50.0, 150.0];
        let s = Steadiness::of(&swinging);
        assert!(!s.steady && s.cv > 0.5, "{s:?}");
        assert!(Steadiness::of(&[42.0]).steady);
        assert!(
            !Steadiness::of(&[0.0, 0.0]).steady,
            "nothing delivered is no rate"
        );
    }

    #[test]
    fn an_interval_holds_one_only_when_the_difference_is_not_measurable() {
        let a = [10.0, 10.2, 9.9, 10.1, 10.0];
        let b = [5.0, 5.1, 4.9, 5.0, 5.05];
        let (lo, hi) = ratio_interval(&a, &b).unwrap();
        assert!(lo > 1.9 && hi < 2.1, "{lo} {hi}");
        let c = [9.0, 11.0, 10.0, 9.5, 10.5];
        let (lo, hi) = ratio_interval(&a, &c).unwrap();
        assert!(lo < 1.0 && hi > 1.0, "{lo} {hi}");
        assert_eq!(
            ratio_interval(&a, &c),
            ratio_interval(&a, &c),
            "the same twice"
        );
        assert_eq!(ratio_interval(&[], &c), None);
    }
}
