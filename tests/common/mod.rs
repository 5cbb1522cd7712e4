//! Helpers for the end-to-end tests: a temporary project directory, running the built
//! `histodiff` binary in it, and reading the side-effect log that `command` stages append
//! to (one line per real execution).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        Project {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `pipeline.yaml`, replacing `LOG` with the side-effect log's path.
    pub fn pipeline(&self, yaml: &str) -> PathBuf {
        let path = self.path().join("pipeline.yaml");
        std::fs::write(
            &path,
            yaml.replace("LOG", &self.log().display().to_string()),
        )
        .unwrap();
        path
    }

    pub fn log(&self) -> PathBuf {
        self.path().join("executions.log")
    }

    /// Lines of the side-effect log (each real execution appends its name).
    pub fn executions(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_histodiff"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("HISTODIFF_STORE");
        cmd
    }

    /// Runs `histodiff ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let output = self.command(args).output().expect("histodiff starts");
        Outcome::from(output)
    }
}

/// Exit code and text of one `histodiff` invocation.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(o: Output) -> Self {
        Outcome {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Outcome {
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Lines of `lines` equal to `name`.
pub fn count(lines: &[String], name: &str) -> usize {
    lines.iter().filter(|l| l.as_str() == name).count()
}

/// A sweep: one source, three branches over `n`, one gather.
pub const SWEEP: &str = r#"
version: 1
name: sweep
settings: { jobs: 2 }
stages:
  source:
    uses: command
    run: "echo source >> LOG; echo data > ${outs.data}"
    outs: { data: data.txt }
  branch:
    uses: command
    matrix: { n: [1, 2, 3] }
    run: "echo branch-${matrix.n} >> LOG; cat ${inputs.src} > ${outs.result}; echo ${matrix.n} >> ${outs.result}"
    inputs: { src: source }
    outs: { result: result.txt }
  report:
    uses: command
    inputs: { all: "branch[*]" }
    run: "echo report >> LOG; cat ${inputs.all} > ${outs.table}"
    outs: { table: table.txt }
"#;
