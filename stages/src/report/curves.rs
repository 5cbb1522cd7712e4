//! Training-loss curves: the `history.csv` of each trained model, read back and drawn as
//! one labelled chart (step on x, loss on y, one line per model named in the legend).

use histodiff_plot::{LineChart, Series};
use std::path::Path;

/// Reads `step,loss` lines (with a header) of a training history file.
pub fn read_history(path: &Path) -> Result<Vec<(f64, f64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let mut it = line.split(',').map(str::trim).map(str::parse::<f64>);
            match (it.next(), it.next()) {
                (Some(Ok(s)), Some(Ok(v))) => Ok((s, v)),
                _ => Err(format!(
                    "{}: line {} is not `step,loss`",
                    path.display(),
                    i + 2
                )),
            }
        })
        .collect()
}

/// The loss chart of `(model, history)` pairs. When every model is an instance of one
/// stage (`train[ratio=0.5]`, `train[ratio=1.0]`, …) the title names the stage and the
/// legend only the coordinates that tell the lines apart, so long names are not cut.
pub fn loss_chart(series: &[(String, Vec<(f64, f64)>)]) -> LineChart {
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    let (stage, legend) = legend_names(&names);
    LineChart {
        title: match stage {
            Some(stage) => format!("Training loss of {stage}"),
            None => "Training loss".into(),
        },
        x_label: "optimiser step".into(),
        y_label: "training loss (cross-entropy)".into(),
        series: series
            .iter()
            .zip(legend)
            .map(|((_, points), name)| Series {
                name,
                points: points.clone(),
                error: None,
            })
            .collect(),
        x_log: false,
    }
}

/// `(Some(stage), coordinates)` when every name is `stage[coordinates]` with one stage
/// name and there are at least two; else `(None, names)`.
pub fn legend_names(names: &[&str]) -> (Option<String>, Vec<String>) {
    let split = |n: &str| {
        let (stage, rest) = n.split_once('[')?;
        Some((
            stage.to_string(),
            rest.strip_suffix(']')?.replace(',', ", "),
        ))
    };
    let parts: Option<Vec<(String, String)>> = names.iter().map(|n| split(n)).collect();
    match parts {
        Some(parts) if parts.len() > 1 && parts.iter().all(|p| p.0 == parts[0].0) => (
            Some(parts[0].0.clone()),
            parts.into_iter().map(|p| p.1).collect(),
        ),
        _ => (None, names.iter().map(|n| n.to_string()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_of_one_stage_are_named_by_their_coordinates() {
        let (stage, legend) = legend_names(&["train[ratio=0.5,seed=1]", "train[ratio=1.0,seed=1]"]);
        assert_eq!(stage.as_deref(), Some("train"));
        assert_eq!(legend, ["ratio=0.5, seed=1", "ratio=1.0, seed=1"]);
    }

    #[test]
    fn different_stages_keep_their_full_names() {
        let names = ["baseline", "train[ratio=1.0]"];
        assert_eq!(
            legend_names(&names),
            (None, vec![names[0].into(), names[1].into()])
        );
        let one = ["train[ratio=1.0]"];
        assert_eq!(legend_names(&one), (None, vec![one[0].into()]));
    }
}
