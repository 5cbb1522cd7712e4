//! `histodiffusion/evaluate`: accuracy, F1, sensitivity and specificity (weighted and
//! macro) from the global confusion matrix of a classifier's test-set predictions
//! (SPEC §8.3; the official per-batch averaging is not reproduced on purpose). Writes
//! `evaluation.json`, which `report/table` gathers. The evaluation also says which row of
//! the report it is: the model `variant` (a parameter) and, when the `selection` input is
//! wired to the select instance the classifier was trained on, what that selection did.

use super::declare::kind;
use super::invalid;
use super::params::default;
use crate::metrics::classification::{ConfusionMatrix, MetricsError};
use crate::report::results::{
    read, write, Evaluation, Predictions, SelectionSummary, EVALUATION_FORMAT, FULL_VARIANT,
    PREDICTIONS_FORMAT, SELECTION_FORMAT,
};
use histodiff_engine::stage::{StageContext, StageError};

kind! {
    /// accuracy, F1, sensitivity, specificity and confusion matrix on the test set
    Evaluate("histodiffusion/evaluate", version: 2) -> [evaluation] {
        /// model variant of this row: full, or the ablations no-finetune and no-pretrain (the
        /// report prints the paper's numbers for these three)
        variant: String = default(FULL_VARIANT),
    }
    inputs {
        /// test-set predictions of a trained classifier (train-classifier's `predictions`)
        predictions: One,
        /// the `selection` output of the select instance the classifier's synthetic images
        /// came from (for the report's `filled` column)
        selection: Optional,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let input = ctx.input("predictions")?;
    let path = if input.path.is_dir() {
        input.path.join("predictions.json")
    } else {
        input.path.clone()
    };
    let predictions: Predictions = read(&path, PREDICTIONS_FORMAT).map_err(invalid)?;
    let mut evaluation = evaluate(&predictions)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", path.display())))?;
    evaluation.variant = variant(&p.variant)?;
    evaluation.selection = selection(ctx, &predictions)?;
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

fn variant(given: &str) -> Result<String, StageError> {
    let variant = given.trim();
    if variant.is_empty() {
        return Err(StageError::Invalid(
            "histodiffusion/evaluate: param `variant` is empty; use full, no-finetune, no-pretrain or a name of your own".into(),
        ));
    }
    Ok(variant.to_string())
}

/// The optional `selection` input, checked against the classifier it claims to describe:
/// a selection of another size than the classifier's synthetic training images is
/// wired to the wrong select instance, and its counts would mislabel the row.
fn selection(
    ctx: &StageContext,
    predictions: &Predictions,
) -> Result<Option<SelectionSummary>, StageError> {
    let Some(input) = ctx.inputs("selection").first() else {
        return Ok(None);
    };
    let summary: SelectionSummary = read(&input.path, SELECTION_FORMAT).map_err(invalid)?;
    match predictions.train_synthetic {
        Some(n) if n != summary.count => Err(StageError::Invalid(format!(
            "histodiffusion/evaluate: input `selection` ({}) chose {} images, but the classifier was trained on {n} synthetic images; wire the select instance it was trained on",
            input.producer, summary.count
        ))),
        _ => Ok(Some(summary)),
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
        variant: FULL_VARIANT.into(),
        selection: None,
    })
}
