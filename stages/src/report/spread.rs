//! Mean and spread of one metric over the runs of a setting (one run per seed), and when a
//! difference between two settings is smaller than that spread.
//!
//! The spread is the sample standard deviation (n − 1 in the denominator, as numpy's
//! `std(ddof=1)`): with a handful of seeds it is the honest estimate of run-to-run noise.

/// n, mean and sample standard deviation of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    /// None with a single run: one value says nothing about the noise.
    pub std: Option<f64>,
}

impl Spread {
    /// None when there is no value at all.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        Some(Spread { n, mean, std })
    }

    /// `0.812` for one run, `0.812 ± 0.013` for several.
    pub fn text(&self) -> String {
        match self.std {
            Some(s) => format!("{:.3} ± {s:.3}", self.mean),
            None => format!("{:.3}", self.mean),
        }
    }
}

/// Whether `a` and `b` differ by less than the larger of their spreads, i.e. the
/// difference could be seed noise. Unknown (false) unless both have a spread.
pub fn within_spread(a: &Spread, b: &Spread) -> bool {
    match (a.std, b.std) {
        (Some(sa), Some(sb)) => (a.mean - b.mean).abs() < sa.max(sb),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_std_as_numpy_ddof_1() {
        // numpy: np.std([0.8, 0.82, 0.86], ddof=1) = 0.030550504633038905
        let s = Spread::of(&[0.8, 0.82, 0.86]).unwrap();
        assert!((s.mean - 0.826_666_666_666_666_7).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.030_550_504_633_038_912).abs() < 1e-12);
        assert_eq!(s.text(), "0.827 ± 0.031");
    }

    #[test]
    fn one_run_has_no_spread_and_nothing_is_within_it() {
        let one = Spread::of(&[0.9]).unwrap();
        assert_eq!((one.std, one.text().as_str()), (None, "0.900"));
        assert!(!within_spread(&one, &one));
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn a_difference_below_the_larger_spread_is_flagged() {
        let a = Spread::of(&[0.80, 0.84]).unwrap(); // mean 0.82, std 0.028
        let b = Spread::of(&[0.83, 0.83]).unwrap(); // mean 0.83, std 0
        let c = Spread::of(&[0.90, 0.90]).unwrap();
        assert!(within_spread(&a, &b));
        assert!(!within_spread(&a, &c));
    }
}
