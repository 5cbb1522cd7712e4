//! Fréchet Inception Distance as pytorch-fid computes it (SPEC §8.4):
//! FID = ‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2·Tr((Σ₁Σ₂)^{1/2}), with μ, Σ the mean and unbiased
//! covariance of pool3 features, all in f64. pytorch-fid takes scipy's `sqrtm` of the
//! non-symmetric product Σ₁Σ₂; only its trace is needed, and Σ₁Σ₂ has the eigenvalues of
//! the symmetric PSD matrix A = Σ₁^{1/2} Σ₂ Σ₁^{1/2}, so Tr((Σ₁Σ₂)^{1/2}) = Σᵢ √λᵢ(A), computed
//! with two symmetric eigendecompositions (stable where sqrtm of the product is not).
//! If that is not finite, pytorch-fid's fallback is used: add ε·I to both covariances.

use tch::{Device, Kind, Tensor};

/// pytorch-fid's default ε for the singular-product fallback.
pub const DEFAULT_EPS: f64 = 1e-6;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FidError {
    #[error("features must be (N, D) with N ≥ 2, got shape {0:?}")]
    Shape(Vec<i64>),
    #[error("statistics differ in dimension: {0} vs {1}")]
    Dimension(i64, i64),
    #[error("Fréchet distance is not finite even with ε·I added to the covariances")]
    NotFinite,
}

/// Mean (D) and unbiased covariance (D × D) of a feature set, in f64 on the CPU.
#[derive(Debug)]
pub struct FeatureStats {
    pub mu: Tensor,
    pub sigma: Tensor,
    /// Number of feature vectors.
    pub count: i64,
}

impl FeatureStats {
    /// `np.mean(act, axis=0)`, `np.cov(act, rowvar=False)` of features (N, D).
    pub fn from_features(features: &Tensor) -> Result<Self, FidError> {
        let size = features.size();
        if size.len() != 2 || size[0] < 2 {
            return Err(FidError::Shape(size));
        }
        let x = features.to_device(Device::Cpu).to_kind(Kind::Double);
        let mu = x.mean_dim(0, false, Kind::Double);
        let centred = &x - &mu;
        let sigma = centred.transpose(0, 1).matmul(&centred) / (size[0] - 1) as f64;
        Ok(Self {
            mu,
            sigma,
            count: size[0],
        })
    }

    pub fn dim(&self) -> i64 {
        self.mu.size()[0]
    }
}

/// Sums features batch by batch so large sets need not be held in memory at once;
/// centred on the first batch's mean to keep f64 cancellation small.
#[derive(Debug, Default)]
pub struct StatsAccumulator {
    shift: Option<Tensor>,
    sum: Option<Tensor>,
    outer: Option<Tensor>,
    count: i64,
}

impl StatsAccumulator {
    /// Adds features (B, D).
    pub fn add(&mut self, features: &Tensor) -> Result<(), FidError> {
        let size = features.size();
        if size.len() != 2 || self.shift.as_ref().is_some_and(|s| s.size()[0] != size[1]) {
            return Err(FidError::Shape(size));
        }
        let x = features.to_device(Device::Cpu).to_kind(Kind::Double);
        let shift = self
            .shift
            .get_or_insert_with(|| x.mean_dim(0, false, Kind::Double));
        let centred = &x - &*shift;
        let sum = centred.sum_dim_intlist(0, false, Kind::Double);
        let outer = centred.transpose(0, 1).matmul(&centred);
        self.sum = Some(match self.sum.take() {
            Some(s) => s + sum,
            None => sum,
        });
        self.outer = Some(match self.outer.take() {
            Some(o) => o + outer,
            None => outer,
        });
        self.count += size[0];
        Ok(())
    }

    /// Mean and unbiased covariance of everything added.
    pub fn finish(self) -> Result<FeatureStats, FidError> {
        let (Some(shift), Some(sum), Some(outer)) = (self.shift, self.sum, self.outer) else {
            return Err(FidError::Shape(vec![0]));
        };
        let n = self.count;
        if n < 2 {
            return Err(FidError::Shape(vec![n]));
        }
        let mean_c = sum / n as f64;
        let sigma = (outer - mean_c.outer(&mean_c) * n as f64) / (n - 1) as f64;
        Ok(FeatureStats {
            mu: mean_c + shift,
            sigma,
            count: n,
        })
    }
}

/// FID between two feature distributions (pytorch-fid `calculate_frechet_distance`).
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats, eps: f64) -> Result<f64, FidError> {
    if a.dim() != b.dim() {
        return Err(FidError::Dimension(a.dim(), b.dim()));
    }
    let diff = &a.mu - &b.mu;
    let mean_term = diff.dot(&diff).double_value(&[]);
    let traces = a.sigma.trace().double_value(&[]) + b.sigma.trace().double_value(&[]);
    let mut tr_covmean = trace_sqrt_product(&a.sigma, &b.sigma);
    if !tr_covmean.is_finite() {
        let offset = Tensor::eye(a.dim(), (Kind::Double, Device::Cpu)) * eps;
        tr_covmean = trace_sqrt_product(&(&a.sigma + &offset), &(&b.sigma + &offset));
    }
    let fid = mean_term + traces - 2.0 * tr_covmean;
    if fid.is_finite() {
        Ok(fid)
    } else {
        Err(FidError::NotFinite)
    }
}

/// Tr((Σ₁Σ₂)^{1/2}) = Σ √λ(Σ₁^{1/2} Σ₂ Σ₁^{1/2}); eigenvalues below 0 are rounding noise of a
/// PSD matrix and count as 0.
pub fn trace_sqrt_product(s1: &Tensor, s2: &Tensor) -> f64 {
    let root1 = psd_sqrt(s1);
    let inner = root1.matmul(s2).matmul(&root1);
    // Symmetrise: the product is symmetric in exact arithmetic only.
    let inner = (&inner + inner.transpose(0, 1)) * 0.5;
    match inner.f_linalg_eigvalsh("L") {
        Ok(eig) => eig
            .clamp_min(0.0)
            .sqrt()
            .sum(Kind::Double)
            .double_value(&[]),
        Err(_) => f64::NAN,
    }
}

/// Symmetric square root V·diag(√max(λ, 0))·Vᵀ of a symmetric PSD matrix.
fn psd_sqrt(s: &Tensor) -> Tensor {
    let sym = (s + s.transpose(0, 1)) * 0.5;
    match sym.f_linalg_eigh("L") {
        Ok((values, vectors)) => {
            let roots = values.clamp_min(0.0).sqrt();
            (&vectors * roots.unsqueeze(0)).matmul(&vectors.transpose(0, 1))
        }
        Err(_) => s.full_like(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic, non-degenerate features without torch's global generator (other
    /// tests reseed it concurrently).
    fn features(n: i64, d: i64) -> Tensor {
        let i = Tensor::arange(n * d, (Kind::Double, Device::Cpu)).reshape([n, d]);
        // The classic shader hash: pseudo-random, full rank (sums of sines would be rank 2).
        ((&i * 12.9898).sin() * 43758.5453).frac()
    }

    #[test]
    fn identical_sets_have_zero_distance() {
        let x = features(200, 8);
        let s = FeatureStats::from_features(&x).unwrap();
        let fid = frechet_distance(&s, &s, DEFAULT_EPS).unwrap();
        assert!(fid.abs() < 1e-10, "fid {fid}");
    }

    #[test]
    fn accumulator_matches_two_pass_statistics() {
        let x = features(300, 6) * 3.0 + 100.0;
        let whole = FeatureStats::from_features(&x).unwrap();
        let mut acc = StatsAccumulator::default();
        for chunk in x.split(70, 0) {
            acc.add(&chunk).unwrap();
        }
        let streamed = acc.finish().unwrap();
        let err = (&whole.sigma - &streamed.sigma)
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 1e-9, "covariance error {err}");
        let err = (&whole.mu - &streamed.mu).abs().max().double_value(&[]);
        assert!(err < 1e-12, "mean error {err}");
        assert_eq!(streamed.count, 300);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let one = Tensor::zeros([1, 4], (Kind::Float, Device::Cpu));
        assert!(FeatureStats::from_features(&one).is_err());
    }
}
