//! Classification metrics on the full confusion matrix (SPEC §8.3, §12): accuracy, and per
//! class precision, recall (sensitivity), specificity and F1 with macro and weighted
//! averages. Definitions follow scikit-learn (`precision_recall_fscore_support`) and
//! imbalanced-learn (`specificity_score`) with zero_division = 0: a ratio whose
//! denominator is 0 counts as 0. F1 is 2·TP/(2·TP + FP + FN), sklearn's form.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("label {label} at position {index} is outside 0..{num_classes}")]
    Label {
        label: i64,
        index: usize,
        num_classes: usize,
    },
    #[error("{truth} true labels but {predicted} predictions")]
    Length { truth: usize, predicted: usize },
}

/// Counts of (true class, predicted class) pairs: rows are true classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    num_classes: usize,
    counts: Vec<u64>,
}

/// One class, one-vs-rest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// True samples of the class (n_c).
    pub support: u64,
    pub precision: f64,
    /// Sensitivity.
    pub recall: f64,
    pub specificity: f64,
    pub f1: f64,
}

/// An average of the per-class metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    /// Sensitivity (written as `sensitivity`, the paper's word, in evaluation files).
    #[serde(rename = "sensitivity", alias = "recall")]
    pub recall: f64,
    pub specificity: f64,
    pub f1: f64,
}

/// Everything the evaluate stage reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub accuracy: f64,
    /// Unweighted mean over classes (official `eval.py` average).
    pub macro_avg: Averages,
    /// Support-weighted mean (matches the published numbers, SPEC §8.3).
    pub weighted_avg: Averages,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: ConfusionMatrix,
}

impl ConfusionMatrix {
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            counts: vec![0; num_classes * num_classes],
        }
    }

    /// Builds the matrix from paired labels in 0..num_classes.
    pub fn from_labels(
        truth: &[i64],
        predicted: &[i64],
        num_classes: usize,
    ) -> Result<Self, MetricsError> {
        let mut matrix = Self::new(num_classes);
        matrix.add(truth, predicted)?;
        Ok(matrix)
    }

    /// Adds a batch of pairs (all checked before any is counted).
    pub fn add(&mut self, truth: &[i64], predicted: &[i64]) -> Result<(), MetricsError> {
        if truth.len() != predicted.len() {
            return Err(MetricsError::Length {
                truth: truth.len(),
                predicted: predicted.len(),
            });
        }
        let n = self.num_classes;
        let check = |index: usize, label: i64| {
            if label < 0 || label as usize >= n {
                Err(MetricsError::Label {
                    label,
                    index,
                    num_classes: n,
                })
            } else {
                Ok(label as usize)
            }
        };
        let pairs: Vec<(usize, usize)> = truth
            .iter()
            .zip(predicted)
            .enumerate()
            .map(|(i, (&t, &p))| Ok((check(i, t)?, check(i, p)?)))
            .collect::<Result<_, _>>()?;
        for (t, p) in pairs {
            self.counts[t * n + p] += 1;
        }
        Ok(())
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Samples of true class `t` predicted as `p`.
    pub fn count(&self, t: usize, p: usize) -> u64 {
        self.counts[t * self.num_classes + p]
    }

    /// Rows (true class) of counts.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.num_classes.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (# correct) / N; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.num_classes).map(|c| self.count(c, c)).sum();
        ratio(correct, self.total())
    }

    /// One-vs-rest metrics of class `c`.
    pub fn class_metrics(&self, c: usize) -> ClassMetrics {
        let n = self.num_classes;
        let tp = self.count(c, c);
        let support: u64 = (0..n).map(|p| self.count(c, p)).sum();
        let predicted: u64 = (0..n).map(|t| self.count(t, c)).sum();
        let (fn_, fp) = (support - tp, predicted - tp);
        let tn = self.total() - tp - fn_ - fp;
        ClassMetrics {
            support,
            precision: ratio(tp, predicted),
            recall: ratio(tp, support),
            specificity: ratio(tn, tn + fp),
            f1: ratio(2 * tp, support + predicted),
        }
    }

    /// Accuracy, per-class metrics and both averages.
    pub fn report(&self) -> ClassificationReport {
        let per_class: Vec<ClassMetrics> = (0..self.num_classes)
            .map(|c| self.class_metrics(c))
            .collect();
        ClassificationReport {
            accuracy: self.accuracy(),
            macro_avg: average(&per_class, |_| 1.0),
            weighted_avg: average(&per_class, |m| m.support as f64),
            per_class,
            confusion: self.clone(),
        }
    }
}

/// a / b with 0 for b = 0 (zero_division = 0).
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Weighted mean of each metric, as `np.average(values, weights)`; 0 if all weights are 0.
fn average(per_class: &[ClassMetrics], weight: impl Fn(&ClassMetrics) -> f64) -> Averages {
    let total: f64 = per_class.iter().map(&weight).sum();
    let mean = |metric: fn(&ClassMetrics) -> f64| {
        if total == 0.0 {
            return 0.0;
        }
        per_class.iter().map(|m| weight(m) * metric(m)).sum::<f64>() / total
    };
    Averages {
        precision: mean(|m| m.precision),
        recall: mean(|m| m.recall),
        specificity: mean(|m| m.specificity),
        f1: mean(|m| m.f1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_recall_equals_accuracy() {
        let m = ConfusionMatrix::from_labels(&[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 0, 2], 3).unwrap();
        let r = m.report();
        assert!((r.weighted_avg.recall - r.accuracy).abs() < 1e-15);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn bad_labels_are_errors() {
        assert_eq!(
            ConfusionMatrix::from_labels(&[0, 3], &[0, 0], 3),
            Err(MetricsError::Label {
                label: 3,
                index: 1,
                num_classes: 3
            })
        );
        assert!(ConfusionMatrix::from_labels(&[0], &[0, 1], 3).is_err());
    }
}
