//! The JSON files that evaluation and FID stages write and the report reads. They are
//! small, versioned and self-describing, so a user can also read them with `histodiff cat`.

use serde::{Deserialize, Serialize};
use std::path::Path;

pub const EVALUATION_FORMAT: &str = "histodiff/evaluation";
pub const FID_FORMAT: &str = "histodiff/fid";
pub const PREDICTIONS_FORMAT: &str = "histodiff/predictions";

/// A classifier's predictions on a test set, written by the classifier-training kinds
/// and read by `histodiffusion/evaluate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predictions {
    pub format: String,
    pub classes: Vec<String>,
    /// True label of each test image, in test-set order.
    pub truth: Vec<i64>,
    pub predicted: Vec<i64>,
    /// Test image sources (manifest items), for error analysis.
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub train_real: Option<u64>,
    #[serde(default)]
    pub train_synthetic: Option<u64>,
}

impl Predictions {
    /// The confusion matrix (rows = truth), refusing labels outside the classes.
    pub fn confusion(&self) -> Result<Vec<Vec<u64>>, String> {
        let k = self.classes.len();
        if self.truth.len() != self.predicted.len() {
            return Err(format!(
                "{} true labels but {} predictions",
                self.truth.len(),
                self.predicted.len()
            ));
        }
        let mut m = vec![vec![0u64; k]; k];
        for (i, (&t, &p)) in self.truth.iter().zip(&self.predicted).enumerate() {
            let (t, p) = (
                usize::try_from(t).ok().filter(|&t| t < k),
                usize::try_from(p).ok().filter(|&p| p < k),
            );
            match (t, p) {
                (Some(t), Some(p)) => m[t][p] += 1,
                _ => {
                    return Err(format!(
                        "test image {i}: label or prediction outside 0..{k}"
                    ))
                }
            }
        }
        Ok(m)
    }
}

/// Precision, recall (sensitivity), specificity and F1 averaged over classes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub f1: f64,
}

/// Metrics of one trained classifier on the test set, from the global confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub format: String,
    pub classes: Vec<String>,
    /// confusion[true][predicted].
    pub confusion: Vec<Vec<u64>>,
    pub n_test: u64,
    pub accuracy: f64,
    /// Support-weighted averages (the paper's numbers behave like these, SPEC §8.3).
    pub weighted: Averages,
    pub macro_avg: Averages,
    /// Real and synthetic images the classifier was trained on, when known.
    #[serde(default)]
    pub train_real: Option<u64>,
    #[serde(default)]
    pub train_synthetic: Option<u64>,
}

impl Evaluation {
    /// Every metric from a confusion matrix (rows = truth, columns = prediction).
    pub fn from_confusion(classes: Vec<String>, confusion: Vec<Vec<u64>>) -> Self {
        let k = confusion.len();
        let n: u64 = confusion.iter().flatten().sum();
        let support: Vec<u64> = confusion.iter().map(|r| r.iter().sum()).collect();
        let predicted: Vec<u64> = (0..k)
            .map(|p| confusion.iter().map(|r| r[p]).sum())
            .collect();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let per_class: Vec<Averages> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let (fp, fneg) = (predicted[c] - tp, support[c] - tp);
                let tn = n - tp - fp - fneg;
                let (precision, sensitivity) = (ratio(tp, tp + fp), ratio(tp, tp + fneg));
                let f1 = if precision + sensitivity == 0.0 {
                    0.0
                } else {
                    2.0 * precision * sensitivity / (precision + sensitivity)
                };
                Averages {
                    precision,
                    sensitivity,
                    specificity: ratio(tn, tn + fp),
                    f1,
                }
            })
            .collect();
        let average = |w: &dyn Fn(usize) -> f64| {
            let total: f64 = (0..k).map(w).sum::<f64>().max(f64::MIN_POSITIVE);
            let mean = |f: &dyn Fn(&Averages) -> f64| {
                (0..k).map(|c| w(c) * f(&per_class[c])).sum::<f64>() / total
            };
            Averages {
                precision: mean(&|a| a.precision),
                sensitivity: mean(&|a| a.sensitivity),
                specificity: mean(&|a| a.specificity),
                f1: mean(&|a| a.f1),
            }
        };
        let trace: u64 = (0..k).map(|c| confusion[c][c]).sum();
        Evaluation {
            format: EVALUATION_FORMAT.into(),
            weighted: average(&|c| support[c] as f64),
            macro_avg: average(&|_| 1.0),
            accuracy: ratio(trace, n),
            n_test: n,
            classes,
            confusion,
            train_real: None,
            train_synthetic: None,
        }
    }
}

/// The FID of a synthetic set against real images, or why it was not computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FidResult {
    pub format: String,
    /// None when not computed (e.g. no Inception weights were given).
    pub fid: Option<f64>,
    pub status: String,
    #[serde(default)]
    pub n_real: u64,
    #[serde(default)]
    pub n_synthetic: u64,
}

impl FidResult {
    pub fn not_computed(reason: impl Into<String>) -> Self {
        FidResult {
            format: FID_FORMAT.into(),
            fid: None,
            status: format!("not computed: {}", reason.into()),
            n_real: 0,
            n_synthetic: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct ResultError {
    pub file: String,
    pub reason: String,
}

/// Reads a JSON result file of type `T`, checking its `format` tag.
pub fn read<T: serde::de::DeserializeOwned>(path: &Path, format: &str) -> Result<T, ResultError> {
    let err = |reason: String| ResultError {
        file: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let found = value
        .get("format")
        .and_then(|f| f.as_str())
        .unwrap_or("none");
    if found != format {
        return Err(err(format!(
            "a `{found}` file where a `{format}` file was expected"
        )));
    }
    serde_json::from_value(value).map_err(|e| err(e.to_string()))
}

/// Writes a result as pretty JSON.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), ResultError> {
    let text = serde_json::to_string_pretty(value).expect("results serialise");
    std::fs::write(path, text).map_err(|e| ResultError {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}
