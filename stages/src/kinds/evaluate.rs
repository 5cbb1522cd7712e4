//! `histodiffusion/evaluate`: accuracy, F1, sensitivity and specificity (weighted and
//! macro) from the global confusion matrix of a classifier's test-set predictions
//! (SPEC §8.3; the official per-batch averaging is not reproduced on purpose). Writes
//! `evaluation.json`, which `report/table` gathers.

use super::schema::{invalid, slot};
use crate::metrics::classification::{ConfusionMatrix, MetricsError};
use crate::report::results::{
    read, write, Evaluation, Predictions, EVALUATION_FORMAT, PREDICTIONS_FORMAT,
};
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};

pub struct Evaluate;

impl Stage for Evaluate {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "histodiffusion/evaluate".into(),
            version: 1,
            params: vec![],
            inputs: vec![slot(
                "predictions",
                true,
                false,
                "test-set predictions of a trained classifier (train-classifier's `predictions`)",
            )],
            outputs: vec!["evaluation".into()],
            resumable: false,
            doc: "accuracy, F1, sensitivity, specificity and confusion matrix on the test set"
                .into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let input = ctx.input("predictions")?;
        let path = if input.path.is_dir() {
            input.path.join("predictions.json")
        } else {
            input.path.clone()
        };
        let predictions: Predictions = read(&path, PREDICTIONS_FORMAT).map_err(invalid)?;
        let evaluation = evaluate(&predictions)
            .map_err(|e| StageError::Invalid(format!("{}: {e}", path.display())))?;
        for (name, value) in [
            ("accuracy", evaluation.accuracy),
            ("f1_weighted", evaluation.weighted.f1),
            ("sensitivity_weighted", evaluation.weighted.recall),
            ("specificity_weighted", evaluation.weighted.specificity),
            ("f1_macro", evaluation.macro_avg.f1),
        ] {
            ctx.metric(name, None, value);
        }
        ctx.log(format!(
            "accuracy {:.4} on {} test images",
            evaluation.accuracy, evaluation.n_test
        ));
        write(&ctx.output_path("evaluation"), &evaluation).map_err(invalid)?;
        Ok(())
    }
}

/// The evaluation of `predictions`: every number from the scikit-learn-tested
/// [`ConfusionMatrix`] (tests/parity_metrics.rs).
pub fn evaluate(predictions: &Predictions) -> Result<Evaluation, MetricsError> {
    let matrix = ConfusionMatrix::from_labels(
        &predictions.truth,
        &predictions.predicted,
        predictions.classes.len(),
    )?;
    let report = matrix.report();
    Ok(Evaluation {
        format: EVALUATION_FORMAT.into(),
        classes: predictions.classes.clone(),
        confusion: matrix.rows(),
        n_test: matrix.total(),
        accuracy: report.accuracy,
        weighted: report.weighted_avg,
        macro_avg: report.macro_avg,
        train_real: predictions.train_real,
        train_synthetic: predictions.train_synthetic,
    })
}
