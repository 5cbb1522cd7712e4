//! Progress display for `histodiff run`: one indicatif bar per running stage (step/total,
//! loss, ETA) when stderr is a terminal, plain lines otherwise (logs, CI).

use histodiff_engine::scheduler::observer::{InstanceOutcome, Observer, RunEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

/// Shows run events on stderr.
pub struct Progress {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
}

impl Progress {
    pub fn new() -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            (multi, Mutex::new(HashMap::new()))
        });
        Progress { bars }
    }

    fn line(&self, text: String) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn bar_event(&self, event: &RunEvent) {
        let Some((multi, bars)) = &self.bars else {
            return;
        };
        let Ok(mut bars) = bars.lock() else { return };
        match event {
            RunEvent::Started { instance, .. } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style());
                bar.set_prefix(instance.clone());
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                bars.insert(instance.clone(), bar);
            }
            RunEvent::Progress {
                instance,
                step,
                total,
                loss,
            } => {
                if let Some(bar) = bars.get(instance) {
                    bar.set_length(*total);
                    bar.set_position(*step);
                    bar.set_message(loss.map(|l| format!("loss {l:.4}")).unwrap_or_default());
                }
            }
            RunEvent::Finished { instance, .. } => {
                if let Some(bar) = bars.remove(instance) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
            }
            _ => {}
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Observer for Progress {
    fn on(&self, event: RunEvent) {
        self.bar_event(&event);
        match event {
            RunEvent::Started {
                instance,
                key,
                attempt,
            } => {
                let retry = if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                self.line(format!("run     {instance} [{}]{retry}", key.short()));
            }
            RunEvent::Waiting { instance, key } => self.line(format!(
                "wait    {instance} [{}]: another run holds it",
                key.short()
            )),
            RunEvent::Progress {
                instance,
                step,
                total,
                loss,
            } if self.bars.is_none() => {
                let loss = loss.map(|l| format!(" loss {l:.4}")).unwrap_or_default();
                self.line(format!("        {instance} {step}/{total}{loss}"));
            }
            RunEvent::Log { instance, message } => {
                tracing::info!(target: "worker", "{instance}: {message}")
            }
            RunEvent::Finished { instance, outcome } => match outcome {
                InstanceOutcome::Cached => tracing::debug!("cached {instance}"),
                InstanceOutcome::Done => self.line(format!("done    {instance}")),
                InstanceOutcome::Failed(e) => self.line(format!("FAILED  {instance}: {e}")),
                InstanceOutcome::Interrupted => self.line(format!(
                    "stopped {instance} (checkpointed; run again to resume)"
                )),
                InstanceOutcome::Skipped(why) => self.line(format!("skipped {instance}: {why}")),
            },
            _ => {}
        }
    }
}
