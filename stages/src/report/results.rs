//! The JSON files that evaluation and FID stages write and the report reads. They are
//! small, versioned and self-describing, so a user can also read them with `histodiff cat`.
//! This module only reads and writes them: the numbers come from `metrics`.

use crate::metrics::classification::Averages;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const EVALUATION_FORMAT: &str = "histodiff/evaluation";
pub const FID_FORMAT: &str = "histodiff/fid";
pub const PREDICTIONS_FORMAT: &str = "histodiff/predictions";
pub const SELECTION_FORMAT: &str = "histodiff/selection";
/// The model variant of a row that names none: the paper's main Table 1.
pub const FULL_VARIANT: &str = "full";

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

/// Metrics of one trained classifier on the test set, from the global confusion matrix
/// (computed by `metrics::classification`, written by `histodiffusion/evaluate`).
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
    /// The model variant the row belongs to (`full`, or an ablation such as
    /// `no-finetune`), named by evaluate's `variant` parameter.
    #[serde(default = "full_variant")]
    pub variant: String,
    /// The selection the classifier's synthetic images came from, when evaluate was
    /// given it (absent for a baseline trained on real images only).
    #[serde(default)]
    pub selection: Option<SelectionSummary>,
}

fn full_variant() -> String {
    FULL_VARIANT.into()
}

/// What one `histodiffusion/select` run chose (its `selection` output), per class in
/// label order. `filled` makes `shortfall: fill` visible downstream: those images failed
/// the nearest-centroid filter and are in the set only to meet the quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionSummary {
    pub format: String,
    /// `random` or `centroid`.
    pub method: String,
    pub ratio: f64,
    pub classes: Vec<String>,
    /// Candidates of each class in the pool.
    pub pool: Vec<u64>,
    /// Images selected of each class (N_c = round(ratio·n_c)).
    pub quotas: Vec<u64>,
    /// Of those, images the nearest-centroid filter rejected (always 0 for `random`).
    pub filled: Vec<u64>,
    pub filled_total: u64,
    pub count: u64,
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
