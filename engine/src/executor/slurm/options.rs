//! `settings.slurm` of a pipeline file, checked, and its translation (with an execution's
//! [`Allocation`]) into `sbatch` options.
//!
//! ```yaml
//! settings:
//!   executor: slurm
//!   slurm: { partition: gpu, account: lab, qos: normal, gpu_type: a100,
//!            extra: ["--constraint=ib"], signal: 300, resubmits: 3, poll: 5 }
//! ```

use super::super::Allocation;
use std::collections::BTreeMap;
use std::time::Duration;

/// Keys `settings.slurm` accepts.
pub const KEYS: &[&str] = &[
    "partition",
    "account",
    "qos",
    "gpu_type",
    "extra",
    "signal",
    "resubmits",
    "poll",
];

/// How jobs are submitted and watched.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--gres=gpu:TYPE:N` instead of `--gres=gpu:N`.
    pub gpu_type: Option<String>,
    /// Passed to `sbatch` as they are, after ours (so they may override).
    pub extra: Vec<String>,
    /// Seconds before the time limit at which the batch shell gets SIGUSR1 (the worker
    /// checkpoints and exits 75; the executor resubmits).
    pub signal_secs: u64,
    /// How many times a job that ended resumable (exit 75, preempted, node failure) is
    /// submitted again before the execution is reported interrupted.
    pub resubmits: u32,
    /// How often `squeue` is asked (the job's exit file is looked at more often).
    pub poll: Duration,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            account: None,
            qos: None,
            gpu_type: None,
            extra: Vec::new(),
            signal_secs: 300,
            resubmits: 3,
            poll: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptionsError {
    #[error("settings.slurm: unknown key `{key}` (known: {known})")]
    UnknownKey { key: String, known: String },
    #[error("settings.slurm.{key}: expected {expected}, found {found}")]
    Type {
        key: String,
        expected: &'static str,
        found: String,
    },
}

impl SlurmOptions {
    /// Reads `settings.slurm`; unknown keys and wrong types are errors naming the key.
    pub fn from_settings(raw: &BTreeMap<String, serde_json::Value>) -> Result<Self, OptionsError> {
        let mut o = SlurmOptions::default();
        for (key, value) in raw {
            match key.as_str() {
                "partition" => o.partition = Some(string(key, value)?),
                "account" => o.account = Some(string(key, value)?),
                "qos" => o.qos = Some(string(key, value)?),
                "gpu_type" => o.gpu_type = Some(string(key, value)?),
                "extra" => o.extra = strings(key, value)?,
                "signal" => o.signal_secs = unsigned(key, value)?,
                "resubmits" => o.resubmits = unsigned(key, value)? as u32,
                "poll" => o.poll = Duration::from_secs_f64(seconds(key, value)?),
                _ => {
                    return Err(OptionsError::UnknownKey {
                        key: key.clone(),
                        known: KEYS.join(", "),
                    })
                }
            }
        }
        Ok(o)
    }

    /// `sbatch` options for one execution (the script path is appended by the caller):
    /// the job's stdout (worker events) goes to `events`, its stderr appends to `log`.
    pub fn sbatch_args(
        &self,
        alloc: &Allocation,
        name: &str,
        events: &str,
        log: &str,
    ) -> Vec<String> {
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name={name}"),
            format!("--output={events}"),
            format!("--error={log}"),
            "--open-mode=append".to_string(),
            format!("--cpus-per-task={}", alloc.threads.max(1)),
        ];
        push_opt(&mut args, "--partition", &self.partition);
        push_opt(&mut args, "--account", &self.account);
        push_opt(&mut args, "--qos", &self.qos);
        if !alloc.gpus.is_empty() {
            let n = alloc.gpus.len();
            args.push(match &self.gpu_type {
                Some(t) => format!("--gres=gpu:{t}:{n}"),
                None => format!("--gres=gpu:{n}"),
            });
        }
        if let Some(bytes) = alloc.memory {
            args.push(format!("--mem={}M", bytes.div_ceil(1 << 20).max(1)));
        }
        if let Some(secs) = alloc.time {
            args.push(format!("--time={}", slurm_time(secs)));
        }
        args.push(format!("--signal=B:USR1@{}", self.signal_for(alloc.time)));
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The warning time, at most half the time limit so a short job still does work.
    fn signal_for(&self, time: Option<u64>) -> u64 {
        let secs = match time {
            Some(t) => self.signal_secs.min(t / 2),
            None => self.signal_secs,
        };
        secs.clamp(1, 65535)
    }
}

/// Seconds as Slurm's `D-HH:MM:SS`, rounded up to a whole minute (Slurm's resolution).
pub fn slurm_time(secs: u64) -> String {
    let mins = secs.div_ceil(60).max(1);
    let (d, h, m) = (mins / 1440, (mins / 60) % 24, mins % 60);
    format!("{d}-{h:02}:{m:02}:00")
}

fn push_opt(args: &mut Vec<String>, flag: &str, value: &Option<String>) {
    if let Some(v) = value {
        args.push(format!("{flag}={v}"));
    }
}

fn type_error(key: &str, expected: &'static str, value: &serde_json::Value) -> OptionsError {
    OptionsError::Type {
        key: key.to_string(),
        expected,
        found: value.to_string(),
    }
}

fn string(key: &str, value: &serde_json::Value) -> Result<String, OptionsError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| type_error(key, "a string", value))
}

/// A list of strings, or one string split on whitespace.
fn strings(key: &str, value: &serde_json::Value) -> Result<Vec<String>, OptionsError> {
    if let Some(s) = value.as_str() {
        return Ok(s.split_whitespace().map(str::to_string).collect());
    }
    let list = value
        .as_array()
        .ok_or_else(|| type_error(key, "a list of strings", value))?;
    list.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| type_error(key, "a list of strings", value))
        })
        .collect()
}

fn unsigned(key: &str, value: &serde_json::Value) -> Result<u64, OptionsError> {
    value
        .as_u64()
        .ok_or_else(|| type_error(key, "a non-negative integer", value))
}

fn seconds(key: &str, value: &serde_json::Value) -> Result<f64, OptionsError> {
    match value.as_f64() {
        Some(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(type_error(key, "a positive number of seconds", value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn resources_map_to_sbatch_options() {
        let o = SlurmOptions::from_settings(&raw(json!({
            "partition": "gpu", "account": "lab", "extra": "--constraint=ib --exclusive",
            "signal": 600
        })))
        .unwrap();
        let alloc = Allocation {
            gpus: vec![3, 5],
            threads: 4,
            memory: Some(16 << 30),
            time: Some(12 * 3600),
        };
        let args = o.sbatch_args(&alloc, "train", "/w/slurm-%j.out", "/w/worker.log");
        let expected = [
            "--parsable",
            "--job-name=train",
            "--output=/w/slurm-%j.out",
            "--error=/w/worker.log",
            "--open-mode=append",
            "--cpus-per-task=4",
            "--partition=gpu",
            "--account=lab",
            "--gres=gpu:2",
            "--mem=16384M",
            "--time=0-12:00:00",
            "--signal=B:USR1@600",
            "--constraint=ib",
            "--exclusive",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn no_gpus_means_no_gres_and_short_jobs_get_half_their_time_as_warning() {
        let o = SlurmOptions::default();
        let alloc = Allocation {
            gpus: vec![],
            threads: 0,
            memory: None,
            time: Some(90),
        };
        let args = o.sbatch_args(&alloc, "x", "out", "log");
        assert!(!args.iter().any(|a| a.starts_with("--gres")), "{args:?}");
        assert!(args.contains(&"--cpus-per-task=1".to_string()));
        assert!(args.contains(&"--time=0-00:02:00".to_string()));
        assert!(args.contains(&"--signal=B:USR1@45".to_string()));
    }

    #[test]
    fn typed_gres_and_long_times() {
        let o = SlurmOptions::from_settings(&raw(json!({"gpu_type": "a100"}))).unwrap();
        let alloc = Allocation {
            gpus: vec![0],
            threads: 2,
            memory: None,
            time: Some(3 * 86400 + 61),
        };
        let args = o.sbatch_args(&alloc, "x", "out", "log");
        assert!(args.contains(&"--gres=gpu:a100:1".to_string()));
        assert!(args.contains(&"--time=3-00:02:00".to_string()));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let e = SlurmOptions::from_settings(&raw(json!({"partitoin": "gpu"}))).unwrap_err();
        assert!(e.to_string().contains("`partitoin`"), "{e}");
        let e = SlurmOptions::from_settings(&raw(json!({"resubmits": -1}))).unwrap_err();
        assert!(e.to_string().contains("settings.slurm.resubmits"), "{e}");
        let e = SlurmOptions::from_settings(&raw(json!({"poll": 0}))).unwrap_err();
        assert!(e.to_string().contains("settings.slurm.poll"), "{e}");
    }
}
