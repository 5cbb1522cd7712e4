//! The batch script of one execution: it exports the orchestrator's environment (library
//! paths for libtorch, `HISTODIFF_*`), runs `histodiff worker JOB` in the work directory,
//! forwards USR1/TERM/INT from Slurm to the worker (so `--signal=B:USR1@N` and
//! `scancel --batch --signal=…` reach it), and records the worker's exit status in
//! `slurm-<jobid>.exit` — a file on the shared filesystem that outlives Slurm's memory of
//! the job.

use std::path::Path;

/// Variables copied from the orchestrator into every job, by exact name or prefix: the
/// worker must find the same libtorch and the same settings on the compute node.
const EXACT: &[&str] = &[
    "PATH",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "RUST_LOG",
    "RUST_BACKTRACE",
];
const PREFIXES: &[&str] = &["HISTODIFF_", "LIBTORCH"];

/// What the script needs to know.
pub struct ScriptSpec<'a> {
    pub instance: &'a str,
    pub program: &'a Path,
    pub job_file: &'a Path,
    pub work_dir: &'a Path,
    pub threads: usize,
    pub gpus: usize,
}

/// The name of the file holding a finished job's worker status.
pub fn exit_file_name(job_id: &str) -> String {
    format!("slurm-{job_id}.exit")
}

/// The script text, with `env` the variables to carry (usually `std::env::vars()`).
pub fn batch_script(spec: &ScriptSpec, env: impl IntoIterator<Item = (String, String)>) -> String {
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "# histodiff execution {}: written by the Slurm executor.\n",
        one_line(spec.instance)
    );
    let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| carried(k)).collect();
    vars.sort();
    for (k, v) in vars {
        s += &format!("export {k}={}\n", quote(&v));
    }
    let t = spec.threads.max(1);
    s += &format!("export OMP_NUM_THREADS={t} MKL_NUM_THREADS={t} HISTODIFF_THREADS={t}\n");
    if spec.gpus == 0 {
        // Without a GPU request, a CUDA_VISIBLE_DEVICES inherited from the submitting
        // shell would point at devices this job does not own.
        s += "export CUDA_VISIBLE_DEVICES=\n";
    }
    let work = quote(&spec.work_dir.to_string_lossy());
    s += &format!("cd {work} || exit 1\n");
    s += TRAPS;
    s += &format!(
        "{} worker {} &\n",
        quote(&spec.program.to_string_lossy()),
        quote(&spec.job_file.to_string_lossy())
    );
    s += FORWARD_AND_RECORD;
    s
}

/// Set before the worker starts so an early signal cannot kill the shell; the worker
/// itself gets default dispositions back when it execs. INT is passed on as USR1 (the
/// worker treats both as "checkpoint and stop") because bash starts background commands
/// with SIGINT ignored.
const TRAPS: &str = r#"worker=
trap '[ -n "$worker" ] && kill -USR1 "$worker" 2>/dev/null' USR1
trap '[ -n "$worker" ] && kill -TERM "$worker" 2>/dev/null' TERM
trap '[ -n "$worker" ] && kill -USR1 "$worker" 2>/dev/null' INT
"#;

/// Waits for the worker while forwarding signals, then writes its status atomically.
/// `wait` returns early when a trapped signal arrives, hence the loop.
const FORWARD_AND_RECORD: &str = r#"worker=$!
while kill -0 "$worker" 2>/dev/null; do wait "$worker"; done
wait "$worker"
code=$?
printf '%s\n' "$code" > "slurm-$SLURM_JOB_ID.exit.tmp" && mv "slurm-$SLURM_JOB_ID.exit.tmp" "slurm-$SLURM_JOB_ID.exit"
exit "$code"
"#;

fn carried(name: &str) -> bool {
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Single-quotes a value for bash.
pub fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r#"'\''"#))
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec<'a>(p: &'a PathBuf, j: &'a PathBuf, w: &'a PathBuf, gpus: usize) -> ScriptSpec<'a> {
        ScriptSpec {
            instance: "train[lr=0.1]",
            program: p,
            job_file: j,
            work_dir: w,
            threads: 4,
            gpus,
        }
    }

    #[test]
    fn carries_library_paths_and_histodiff_settings_only() {
        let (p, j, w) = (
            PathBuf::from("/opt/hd/histodiff"),
            PathBuf::from("/s/w/1/job.json"),
            PathBuf::from("/s/w/1"),
        );
        let env = vec![
            ("LD_LIBRARY_PATH".to_string(), "/venv/torch/lib".to_string()),
            ("HISTODIFF_STORE".to_string(), "it's".to_string()),
            ("SSH_AUTH_SOCK".to_string(), "/tmp/agent".to_string()),
        ];
        let s = batch_script(&spec(&p, &j, &w, 0), env);
        assert!(
            s.contains("export LD_LIBRARY_PATH='/venv/torch/lib'\n"),
            "{s}"
        );
        assert!(s.contains(r#"export HISTODIFF_STORE='it'\''s'"#), "{s}");
        assert!(!s.contains("SSH_AUTH_SOCK"), "{s}");
        assert!(s.contains("export CUDA_VISIBLE_DEVICES=\n"), "{s}");
        assert!(
            s.contains("'/opt/hd/histodiff' worker '/s/w/1/job.json' &\n"),
            "{s}"
        );
        assert!(s.contains("OMP_NUM_THREADS=4"), "{s}");
    }

    #[test]
    fn gpu_jobs_keep_the_devices_slurm_assigns() {
        let (p, j, w) = (
            PathBuf::from("/b"),
            PathBuf::from("/j"),
            PathBuf::from("/w"),
        );
        let s = batch_script(&spec(&p, &j, &w, 2), Vec::new());
        assert!(!s.contains("CUDA_VISIBLE_DEVICES"), "{s}");
    }

    /// The script really forwards USR1 to the worker and records the worker's status.
    #[test]
    fn forwards_usr1_and_records_the_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let worker = dir.path().join("fake-worker");
        std::fs::write(
            &worker,
            "#!/bin/bash\ntrap 'echo checkpointed; exit 75' USR1\necho ready\nwhile :; do sleep 0.05; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&worker, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let (j, w) = (dir.path().join("job.json"), dir.path().to_path_buf());
        let script = dir.path().join("batch.sh");
        std::fs::write(&script, batch_script(&spec(&worker, &j, &w, 0), Vec::new())).unwrap();
        let out = dir.path().join("out.txt");
        let mut child = std::process::Command::new("bash")
            .arg(&script)
            .env("SLURM_JOB_ID", "42")
            .stdout(std::fs::File::create(&out).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&out).unwrap().contains("ready") {
            assert!(
                std::time::Instant::now() < deadline,
                "fake worker never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: signalling the child we spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(75));
        assert!(std::fs::read_to_string(&out)
            .unwrap()
            .contains("checkpointed"));
        let recorded = std::fs::read_to_string(dir.path().join(exit_file_name("42"))).unwrap();
        assert_eq!(recorded.trim(), "75");
    }
}
