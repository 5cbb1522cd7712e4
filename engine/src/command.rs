//! The built-in `command` kind: runs any program with declared inputs, deps and outs, as
//! Snakemake's `shell:` or DVC's `cmd:` do.
//!
//! The command runs with `sh -c` in `work_dir/run/` (a plain line without the shell, see
//! [`crate::shell`]). `${inputs.slot}` expands to the
//! materialised input path (a gathered slot to its paths, space-separated, in instance
//! order) and `${outs.name}` to the path the command must write. `deps` inside the
//! pipeline directory are linked into the run directory at their relative path, so
//! `python scripts/extra.py` works as it would next to the pipeline file. Its stdout and stderr go to `work_dir/command.log`,
//! whose tail is shown when it fails. After a zero exit each declared out is moved to
//! `work_dir/out/<name>` for the worker to ingest; a missing out is an error.

use crate::plan::CommandSpec;
use crate::registry::{KindSpec, Registry, COMMAND_KIND};
use crate::shell;
use crate::stage::{Stage, StageContext, StageError};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Lines of stderr shown when a command fails.
const STDERR_TAIL_LINES: usize = 20;

/// The `command` kind's implementation.
#[derive(Debug, Clone, Default)]
pub struct CommandStage {
    /// Kill the command when the thread that started it dies (set inside a worker
    /// process, whose death must not leave the command running; never in the
    /// orchestrator, whose blocking threads come and go).
    pub die_with_parent: bool,
    /// Environment the command gets on top of this process's: set when the command runs
    /// inside the orchestrator, whose own environment is not the execution's
    /// (CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS of the allocation).
    pub env: Vec<(String, String)>,
}

impl Stage for CommandStage {
    fn spec(&self) -> KindSpec {
        Registry::with_builtins()
            .get(COMMAND_KIND)
            .cloned()
            .expect("the builtin registry holds `command`")
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let spec = ctx.job.command.clone().ok_or_else(|| {
            StageError::Invalid(format!(
                "{}: a `command` stage needs `run`",
                ctx.job.instance
            ))
        })?;
        let run_dir = ctx.job.work_dir.join("run");
        fs::create_dir_all(&run_dir).map_err(|e| io_error("create", &run_dir, e))?;
        link_deps(&spec, &ctx.job.base_dir, &run_dir)?;
        let outs = out_paths(&spec, &run_dir)?;
        let line = interpolate(&spec.run, &input_paths(ctx), &outs)?;
        run_shell(ctx, &line, &run_dir, self)?;
        collect_outs(ctx, &spec, &outs)
    }
}

/// Slot → paths of its materialised inputs, in order.
fn input_paths(ctx: &StageContext) -> BTreeMap<String, Vec<PathBuf>> {
    ctx.job
        .inputs
        .iter()
        .map(|(slot, arts)| (slot.clone(), arts.iter().map(|a| a.path.clone()).collect()))
        .collect()
}

/// Out name → absolute path inside the run directory (parents created).
fn out_paths(spec: &CommandSpec, run_dir: &Path) -> Result<BTreeMap<String, PathBuf>, StageError> {
    let mut outs = BTreeMap::new();
    for (name, rel) in &spec.outs {
        if !is_plain_relative(rel) {
            return Err(StageError::Invalid(format!(
                "out `{name}`: `{}` must be a relative path inside the work directory",
                rel.display()
            )));
        }
        let path = run_dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        }
        outs.insert(name.clone(), path);
    }
    Ok(outs)
}

/// A relative path with no `..`: it stays inside the directory it is joined to.
fn is_plain_relative(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && p.components().next().is_some()
}

/// Links each relative dep into the run directory at the same relative path.
fn link_deps(spec: &CommandSpec, base_dir: &Path, run_dir: &Path) -> Result<(), StageError> {
    // Deps arrive absolute; those inside the pipeline directory are linked at the path
    // they were written with.
    let written = spec
        .deps
        .iter()
        .map(|d| d.strip_prefix(base_dir).unwrap_or(d));
    for dep in written.filter(|d| is_plain_relative(d)) {
        let link = run_dir.join(dep);
        if link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        }
        std::os::unix::fs::symlink(base_dir.join(dep), &link)
            .map_err(|e| io_error("link", &link, e))?;
    }
    Ok(())
}

/// Replaces `${inputs.slot}` and `${outs.name}`. Params and matrix values were
/// interpolated when the plan was built, so any other `${…}` is left to the shell.
pub fn interpolate(
    run: &str,
    inputs: &BTreeMap<String, Vec<PathBuf>>,
    outs: &BTreeMap<String, PathBuf>,
) -> Result<String, StageError> {
    let mut line = String::with_capacity(run.len());
    let mut rest = run;
    while let Some(start) = rest.find("${") {
        line.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| StageError::Invalid(format!("unclosed `${{` in `run`: {run}")))?;
        line.push_str(&expand(&after[..end], inputs, outs)?);
        rest = &after[end + 1..];
    }
    line.push_str(rest);
    Ok(line)
}

fn expand(
    reference: &str,
    inputs: &BTreeMap<String, Vec<PathBuf>>,
    outs: &BTreeMap<String, PathBuf>,
) -> Result<String, StageError> {
    let unknown = |what: &str| StageError::Invalid(format!("`${{{reference}}}`: no {what}"));
    match reference.split_once('.') {
        Some(("inputs", slot)) => {
            let paths = inputs.get(slot).ok_or_else(|| unknown("such input slot"))?;
            Ok(paths
                .iter()
                .map(|p| shell_quote(p))
                .collect::<Vec<_>>()
                .join(" "))
        }
        Some(("outs", name)) => outs
            .get(name)
            .map(|p| shell_quote(p))
            .ok_or_else(|| unknown("such out")),
        // Anything else was a literal `$${…}` in the pipeline file: it is for the shell.
        _ => Ok(format!("${{{reference}}}")),
    }
}

/// Quotes a path for `sh` unless it is made of plainly safe characters.
fn shell_quote(p: &Path) -> String {
    let s = p.to_string_lossy();
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c));
    if safe && !s.is_empty() {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// How often a running command checks for an interrupt request.
const INTERRUPT_CHECK: Duration = Duration::from_millis(50);

/// Wakes when a child process exits: poll(2) on its pidfd (Linux 5.3 and later), which
/// returns the moment it exits. Where there is no pidfd, a 5 ms sleep. A sleep-and-check
/// loop alone made every command last a multiple of its tick: 2.5 ms per job on average,
/// a sixth of a 3,000-job sweep of trivial commands spent with the CPUs idle.
struct ChildExit(Option<std::os::fd::OwnedFd>);

impl ChildExit {
    fn watch(child: &std::process::Child) -> Self {
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1;
        // the descriptor is owned here and closed on drop.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
        let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0);
        ChildExit(fd.map(|fd| {
            use std::os::fd::FromRawFd;
            // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
            unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
        }))
    }

    /// Returns when the child has exited or `at_most` has passed (or sooner).
    fn wait(&self, at_most: Duration) {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.0 else {
            std::thread::sleep(Duration::from_millis(5).min(at_most));
            return;
        };
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = at_most.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, its count, a timeout; EINTR just returns early.
        unsafe { libc::poll(&mut poll, 1, millis) };
    }
}

/// Runs the line (through `sh` unless it is plain, see [`crate::shell`]) in a process
/// group of its own; stdout and stderr go to files in the work directory. An interrupt
/// request terminates the group.
fn run_shell(
    ctx: &mut StageContext,
    line: &str,
    run_dir: &Path,
    stage: &CommandStage,
) -> Result<(), StageError> {
    let work = &ctx.job.work_dir;
    // One log for both streams (as a terminal would interleave them): its tail explains
    // a failure, and one file per execution is cheaper than two.
    let stderr_path = work.join("command.log");
    let stderr = fs::File::create(&stderr_path).map_err(|e| io_error("create", work, e))?;
    let stdout = stderr
        .try_clone()
        .map_err(|e| io_error("open", &stderr_path, e))?;
    let start = |direct: bool| -> Result<std::process::Child, std::io::Error> {
        let (mut program, redirected) = shell::command_for(line, work, run_dir, direct)?;
        let out = match redirected {
            Some(file) => Stdio::from(file),
            None => Stdio::from(stdout.try_clone()?),
        };
        program.process_group(0);
        if stage.die_with_parent {
            // SAFETY: prctl is async-signal-safe; it only sets this child's death signal.
            unsafe {
                program.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        program
            .current_dir(run_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(stderr.try_clone()?)
            .env("HISTODIFF_WORK_DIR", work)
            .env("HISTODIFF_BASE_DIR", &ctx.job.base_dir)
            .envs(stage.env.iter().map(|(k, v)| (k, v)))
            .spawn()
    };
    // A plain (or plainly redirected) line's program that cannot be started goes through
    // `sh`, whose message and exit code say why as users know them.
    let mut child = match start(true) {
        Err(_) if shell::starts_directly(line) => start(false),
        started => started,
    }
    .map_err(|e| StageError::msg(format!("cannot start `sh`: {e}")))?;
    ctx.log(format!("$ {line}"));
    let exit = ChildExit::watch(&child);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(StageError::other)? {
            break status;
        }
        if ctx.interrupted() {
            // SAFETY: kill(2) on our own child's process group; no memory is touched.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
            let _ = child.wait();
            return Err(StageError::Interrupted { step: 0 });
        }
        exit.wait(INTERRUPT_CHECK);
    };
    if status.success() {
        return Ok(());
    }
    let tail = stderr_tail(&stderr_path);
    Err(StageError::msg(format!(
        "command failed ({status}): {line}\n{tail}"
    )))
}

/// The last lines of a log file (empty if unreadable).
pub fn stderr_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

/// Moves each declared out to `work_dir/out/<name>`; a missing out is an error.
fn collect_outs(
    ctx: &StageContext,
    spec: &CommandSpec,
    outs: &BTreeMap<String, PathBuf>,
) -> Result<(), StageError> {
    let out_dir = ctx.job.work_dir.join("out");
    fs::create_dir_all(&out_dir).map_err(|e| io_error("create", &out_dir, e))?;
    let missing: Vec<String> = outs
        .iter()
        .filter(|(_, p)| fs::symlink_metadata(p).is_err())
        .map(|(name, _)| format!("`{name}` ({})", spec.outs[name].display()))
        .collect();
    if !missing.is_empty() {
        return Err(StageError::Invalid(format!(
            "the command did not write its declared out(s) {}",
            missing.join(", ")
        )));
    }
    for (name, path) in outs {
        let dest = ctx.output_path(name);
        fs::rename(path, &dest).map_err(|e| io_error("move", path, e))?;
    }
    Ok(())
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StageError {
    StageError::msg(format!("cannot {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_inputs_and_outs() {
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "data".to_string(),
            vec![PathBuf::from("/w/in/a"), PathBuf::from("/w/in/b c")],
        );
        let mut outs = BTreeMap::new();
        outs.insert("result".to_string(), PathBuf::from("/w/run/r.json"));
        let line = interpolate("cat ${inputs.data} > ${outs.result}", &inputs, &outs).unwrap();
        assert_eq!(line, "cat /w/in/a '/w/in/b c' > /w/run/r.json");
    }

    #[test]
    fn unknown_reference_is_an_error() {
        let err = interpolate("echo ${outs.nope}", &BTreeMap::new(), &BTreeMap::new());
        assert!(err.unwrap_err().to_string().contains("outs.nope"));
        let line = interpolate("echo ${HOME}", &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert_eq!(line, "echo ${HOME}");
        assert!(interpolate("echo ${inputs.x", &BTreeMap::new(), &BTreeMap::new()).is_err());
    }

    #[test]
    fn outs_must_stay_inside_the_work_dir() {
        assert!(is_plain_relative(Path::new("a/b.json")));
        assert!(!is_plain_relative(Path::new("../b.json")));
        assert!(!is_plain_relative(Path::new("/etc/passwd")));
    }
}
