//! `export tensorboard RUN DEST`: the run's metrics as TensorBoard event files, one run
//! directory per execution of the run that recorded metrics (cache hits record none):
//! `DEST/<instance, file-system safe>/events.out.tfevents.<secs>.<host>.histodiff`.
//!
//! Rules (docs/cli.md): each metric is a scalar tagged with its name, at its step, as
//! an f32 `simple_value`. A final metric (step NULL) goes at the execution's last step
//! (0 if it recorded no step), under its name, unless the execution logged the same name
//! at that step: equal there, it is not repeated (the trainers report their last values
//! again as final ones); different, it is tagged `<name>/final`. The store keeps no time
//! per metric, so an event's wall time is interpolated: the execution's start plus its
//! duration times step / last step.

use super::event_file;
use super::write_file;
use crate::commands::run_graph::RunGraph;
use crate::exit::{CliError, Coded, STORE};
use histodiff_engine::store::{ExecStatus, ExecutionRecord, Store};
use std::collections::BTreeMap;
use std::path::Path;

/// The events of one execution.
pub struct RunLog {
    /// Directory name under DEST.
    pub dir: String,
    record: ExecutionRecord,
    /// Step → (tag, value), steps ascending.
    steps: BTreeMap<u64, Vec<(String, f32)>>,
}

/// Reads the metrics of every execution of the run that recorded any.
pub async fn collect(store: &dyn Store, graph: &RunGraph) -> Result<Vec<RunLog>, CliError> {
    let mut logs = Vec::new();
    for e in &graph.executions {
        if e.record.status == ExecStatus::Cached {
            continue;
        }
        let metrics = store.metrics(e.record.id).await.code(STORE)?;
        if metrics.is_empty() {
            continue;
        }
        logs.push(RunLog {
            dir: safe_name(&e.record.instance),
            record: e.record.clone(),
            steps: events(&metrics),
        });
    }
    disambiguate(&mut logs);
    Ok(logs)
}

/// Groups metrics by step, placing the final ones by the rules above.
fn events(metrics: &[(String, Option<u64>, f64)]) -> BTreeMap<u64, Vec<(String, f32)>> {
    let mut steps: BTreeMap<u64, Vec<(String, f32)>> = BTreeMap::new();
    let mut at_last: BTreeMap<&str, f64> = BTreeMap::new();
    let last = metrics.iter().filter_map(|m| m.1).max().unwrap_or(0);
    for (name, step, value) in metrics {
        if let Some(step) = step {
            steps
                .entry(*step)
                .or_default()
                .push((name.clone(), *value as f32));
            if *step == last {
                at_last.insert(name, *value);
            }
        }
    }
    for (name, _, value) in metrics.iter().filter(|m| m.1.is_none()) {
        let tag = match at_last.get(name.as_str()) {
            Some(logged) if logged == value => continue,
            Some(_) => format!("{name}/final"),
            None => name.clone(),
        };
        steps.entry(last).or_default().push((tag, *value as f32));
    }
    steps
}

/// A directory name: letters, digits and `._=,+-` kept, anything else `_`; never empty,
/// never starting with `.` (no hidden or parent directories).
pub fn safe_name(instance: &str) -> String {
    let name: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=,+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        format!("_{name}")
    } else {
        name
    }
}

/// Names shared by several logs (retries of an instance, or instances that map to the
/// same safe name) get `-execution-<id>` appended, all of them.
fn disambiguate(logs: &mut [RunLog]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for log in logs.iter() {
        *counts.entry(log.dir.clone()).or_default() += 1;
    }
    for log in logs.iter_mut() {
        if counts[&log.dir] > 1 {
            log.dir = format!("{}-execution-{}", log.dir, log.record.id);
        }
    }
}

/// Writes one event file per log under `dir`; returns a summary line.
pub fn write(logs: &[RunLog], graph: &RunGraph, dir: &Path) -> Result<String, CliError> {
    let mut scalars = 0;
    for log in logs {
        let r = &log.record;
        let start = r.started.unwrap_or(graph.run.started);
        let end = r.finished.unwrap_or(start).max(start);
        let last = log.steps.keys().next_back().copied().unwrap_or(0);
        let wall = |step: u64| {
            let fraction = if last == 0 {
                1.0
            } else {
                step as f64 / last as f64
            };
            (start as f64 + (end - start) as f64 * fraction) / 1000.0
        };
        let mut bytes = event_file::record(&event_file::file_version_event(start as f64 / 1000.0));
        for (step, values) in &log.steps {
            bytes.extend(event_file::record(&event_file::scalars_event(
                wall(*step),
                *step,
                values,
            )));
            scalars += values.len();
        }
        let host = r.host.as_deref().unwrap_or(&graph.run.host);
        let file = format!(
            "events.out.tfevents.{}.{}.histodiff",
            start / 1000,
            safe_name(host)
        );
        write_file(&dir.join(&log.dir).join(file), &bytes)?;
    }
    Ok(format!("{} event files ({scalars} scalars)", logs.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_metrics_go_at_the_last_step_without_repeating_it() {
        let m = |name: &str, step: Option<u64>, value: f64| (name.to_string(), step, value);
        let metrics = [
            m("loss", Some(1), 0.5),
            m("loss", Some(2), 0.25),
            m("loss", None, 0.25),
            m("accuracy", Some(2), 0.5),
            m("accuracy", None, 0.75),
            m("fid", None, 12.0),
        ];
        let steps = events(&metrics);
        assert_eq!(steps[&1], vec![("loss".to_string(), 0.5)]);
        let at_2: Vec<(&str, f32)> = steps[&2].iter().map(|(t, v)| (t.as_str(), *v)).collect();
        assert_eq!(
            at_2,
            [
                ("loss", 0.25),
                ("accuracy", 0.5),
                ("accuracy/final", 0.75),
                ("fid", 12.0)
            ]
        );
    }

    #[test]
    fn instance_names_become_safe_directory_names() {
        assert_eq!(
            safe_name("select[method=centroid,ratio=0.5]"),
            "select_method=centroid,ratio=0.5_"
        );
        assert_eq!(safe_name("../x"), "_.._x");
        assert_eq!(safe_name(""), "_");
    }
}
