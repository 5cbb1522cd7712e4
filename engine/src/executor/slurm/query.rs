//! Asking Slurm about a job: `sbatch` to submit, `squeue` while it is known to the
//! controller's queue, `scontrol show job` for a finished job (kept `MinJobAge` seconds),
//! `sacct` when accounting is configured, `scancel` to signal or stop it.

use std::process::Output;
use tokio::process::Command;

/// What Slurm says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for resources (`PENDING`, `CONFIGURING`, `REQUEUED`…).
    Waiting,
    /// Running on `node`.
    Running { node: String },
    /// Ended on `node`: Slurm's state name and its `ExitCode` (`code:signal`).
    Ended {
        state: String,
        code: i32,
        signal: i32,
        node: String,
    },
    /// Slurm no longer knows the job.
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{program}`: {source} (is Slurm installed and SLURM_CONF set?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

async fn run(program: &str, args: &[String]) -> Result<Output, SlurmError> {
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| SlurmError::Spawn {
            program: program.to_string(),
            source,
        })
}

fn failed(program: &str, args: &[String], out: &Output) -> SlurmError {
    SlurmError::Failed {
        command: format!("{program} {}", args.join(" ")),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// Submits a script; returns the job id.
pub async fn sbatch(args: &[String]) -> Result<String, SlurmError> {
    let out = run("sbatch", args).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if !out.status.success() || id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(failed("sbatch", args, &out));
    }
    Ok(id)
}

/// Sends `signal` to the batch shell (`Some`) or cancels the whole job (`None`).
pub async fn scancel(id: &str, signal: Option<&str>) -> Result<(), SlurmError> {
    let mut args = Vec::new();
    if let Some(sig) = signal {
        args.push("--batch".to_string());
        args.push(format!("--signal={sig}"));
    }
    args.push(id.to_string());
    let out = run("scancel", &args).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed("scancel", &args, &out))
    }
}

/// The job's state: the queue first, then the controller's record, then accounting.
pub async fn state(id: &str) -> Result<JobState, SlurmError> {
    let args = vec![
        "-h".to_string(),
        "-j".into(),
        id.into(),
        "-o".into(),
        "%T|%N".into(),
    ];
    let out = run("squeue", &args).await?;
    if out.status.success() {
        if let Some(s) = parse_squeue(&String::from_utf8_lossy(&out.stdout)) {
            return Ok(s);
        }
    }
    let args = vec!["show".to_string(), "job".into(), "-o".into(), id.into()];
    let out = run("scontrol", &args).await?;
    if out.status.success() {
        if let Some(s) = parse_scontrol(&String::from_utf8_lossy(&out.stdout)) {
            return Ok(s);
        }
    }
    let args = vec![
        "-n".to_string(),
        "-X".into(),
        "-P".into(),
        "-j".into(),
        id.into(),
        "-o".into(),
        "State,ExitCode,NodeList".into(),
    ];
    match run("sacct", &args).await {
        Ok(out) if out.status.success() => Ok(parse_sacct(&String::from_utf8_lossy(&out.stdout))),
        _ => Ok(JobState::Unknown),
    }
}

/// States in which the job has not ended yet (Slurm's base names).
fn live(state: &str, node: &str) -> Option<JobState> {
    match state {
        "RUNNING" | "COMPLETING" | "STOPPED" | "SIGNALING" | "STAGE_OUT" => {
            Some(JobState::Running {
                node: node.to_string(),
            })
        }
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESIZING"
        | "SUSPENDED" | "RESV_DEL_HOLD" => Some(JobState::Waiting),
        _ => None,
    }
}

/// `STATE|NODES` from `squeue -o %T|%N`; `None` when the queue has forgotten the job or
/// lists it as ended (its exit code is then read from `scontrol`).
pub fn parse_squeue(text: &str) -> Option<JobState> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let (state, node) = line.trim().split_once('|').unwrap_or((line.trim(), ""));
    live(state, node)
}

/// One line of `scontrol show job -o`.
pub fn parse_scontrol(text: &str) -> Option<JobState> {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    };
    let state = field("JobState")?;
    let node = field("BatchHost")
        .or_else(|| field("NodeList"))
        .unwrap_or_default();
    let (code, signal) = parse_exit_code(&field("ExitCode").unwrap_or_default());
    Some(live(&state, &node).unwrap_or(JobState::Ended {
        state,
        code,
        signal,
        node,
    }))
}

/// `State|ExitCode|NodeList` from `sacct -X -P`.
pub fn parse_sacct(text: &str) -> JobState {
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return JobState::Unknown;
    };
    let mut parts = line.trim().split('|');
    // sacct says `CANCELLED by 0`: the state is the first word.
    let state = parts
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    let (code, signal) = parse_exit_code(parts.next().unwrap_or(""));
    let node = parts.next().unwrap_or("").to_string();
    live(&state, &node).unwrap_or(JobState::Ended {
        state,
        code,
        signal,
        node,
    })
}

/// Slurm's `code:signal`.
fn parse_exit_code(s: &str) -> (i32, i32) {
    let (c, sig) = s.split_once(':').unwrap_or((s, "0"));
    (
        c.trim().parse().unwrap_or(0),
        sig.trim().parse().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines() {
        assert_eq!(
            parse_squeue("RUNNING|vm\n"),
            Some(JobState::Running { node: "vm".into() })
        );
        assert_eq!(parse_squeue("PENDING|\n"), Some(JobState::Waiting));
        assert_eq!(parse_squeue(""), None);
        // A finished job still listed is read from scontrol instead.
        assert_eq!(parse_squeue("COMPLETED|vm\n"), None);
    }

    #[test]
    fn scontrol_records() {
        let done = "JobId=5 JobName=j.sh UserId=root(0) JobState=FAILED Reason=NonZeroExitCode \
                    Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=75:0 NodeList=vm BatchHost=vm";
        assert_eq!(
            parse_scontrol(done),
            Some(JobState::Ended {
                state: "FAILED".into(),
                code: 75,
                signal: 0,
                node: "vm".into()
            })
        );
        let killed = "JobId=6 JobState=CANCELLED Reason=None ExitCode=0:15 NodeList=vm";
        assert_eq!(
            parse_scontrol(killed),
            Some(JobState::Ended {
                state: "CANCELLED".into(),
                code: 0,
                signal: 15,
                node: "vm".into()
            })
        );
        let running =
            "JobId=7 JobState=RUNNING Reason=None ExitCode=0:0 NodeList=n01 BatchHost=n01";
        assert_eq!(
            parse_scontrol(running),
            Some(JobState::Running { node: "n01".into() })
        );
        assert_eq!(
            parse_scontrol("slurm_load_jobs error: Invalid job id specified"),
            None
        );
    }

    #[test]
    fn sacct_lines() {
        assert_eq!(
            parse_sacct("CANCELLED by 0|0:15|n01\n"),
            JobState::Ended {
                state: "CANCELLED".into(),
                code: 0,
                signal: 15,
                node: "n01".into()
            }
        );
        assert_eq!(
            parse_sacct("TIMEOUT|0:0|n01\n"),
            JobState::Ended {
                state: "TIMEOUT".into(),
                code: 0,
                signal: 0,
                node: "n01".into()
            }
        );
        assert_eq!(parse_sacct(""), JobState::Unknown);
    }
}
