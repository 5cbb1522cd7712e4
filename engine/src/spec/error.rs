//! Located pipeline errors, collected so that one run of `histodiff plan` reports every
//! problem in a file, not only the first.

use super::yaml::Pos;
use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

/// One problem in a pipeline file, pointing at the offending node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    /// 1-based line and column; `0:0` when the problem has no place (unreadable file).
    pub pos: Pos,
    /// The `--set PATH=VALUE` argument the offending node came from; `pos` is then no
    /// place in the file and is not printed.
    pub set: Option<String>,
    /// The stage the problem belongs to, if any.
    pub stage: Option<String>,
    /// The key within the stage (or the top-level key) the problem belongs to, if any.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(set) = &self.set {
            write!(f, ": --set {set}")?;
        } else if self.pos.line > 0 {
            write!(f, ":{}:{}", self.pos.line, self.pos.col)?;
        }
        f.write_str(": ")?;
        match (&self.stage, &self.key) {
            (Some(s), Some(k)) => write!(f, "stage `{s}`, key `{k}`: ")?,
            (Some(s), None) => write!(f, "stage `{s}`: ")?,
            (None, Some(k)) => write!(f, "key `{k}`: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a pipeline file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors {
    pub errors: Vec<SpecError>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Where a problem is reported: the stage and key being resolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx<'a> {
    pub stage: Option<&'a str>,
    pub key: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    pub fn top(key: &'a str) -> Self {
        Ctx {
            stage: None,
            key: Some(key),
        }
    }
    pub fn stage(stage: &'a str) -> Self {
        Ctx {
            stage: Some(stage),
            key: None,
        }
    }
    pub fn key(self, key: &'a str) -> Self {
        Ctx {
            key: Some(key),
            ..self
        }
    }
}

/// The collector every resolution step reports into. A matrix stage resolves the same
/// node once per instance, so identical reports are kept once.
#[derive(Debug)]
pub struct Diagnostics {
    file: PathBuf,
    errors: Vec<SpecError>,
    seen: HashSet<(Pos, String)>,
    /// The `--set` arguments, so that a report at [`Pos::from_set`] can name its argument.
    sets: Vec<String>,
    /// Reports made, counting repeats: lets a caller see that a step failed even when its
    /// message was already recorded for an earlier instance.
    attempts: usize,
}

impl Diagnostics {
    pub fn new(file: PathBuf) -> Self {
        Diagnostics {
            file,
            errors: Vec::new(),
            seen: HashSet::new(),
            sets: Vec::new(),
            attempts: 0,
        }
    }

    /// Lets reports at [`Pos::from_set`] positions name their `--set` argument.
    pub fn with_sets(self, sets: &[String]) -> Self {
        Diagnostics {
            sets: sets.to_vec(),
            ..self
        }
    }

    pub fn report(&mut self, pos: Pos, ctx: Ctx<'_>, message: impl Into<String>) {
        let message = message.into();
        self.attempts += 1;
        if !self.seen.insert((pos, message.clone())) {
            return;
        }
        self.errors.push(SpecError {
            file: self.file.clone(),
            pos,
            set: pos.set_index().and_then(|i| self.sets.get(i).cloned()),
            stage: ctx.stage.map(str::to_string),
            key: ctx.key.map(str::to_string),
            message,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// An empty collector for the same file, to report into from another thread; give it
    /// back with [`Diagnostics::absorb`].
    pub fn fork(&self) -> Self {
        Diagnostics {
            file: self.file.clone(),
            errors: Vec::new(),
            seen: HashSet::new(),
            sets: self.sets.clone(),
            attempts: 0,
        }
    }

    /// Takes the reports of a fork, in their order, as if they had been made here.
    pub fn absorb(&mut self, fork: Diagnostics) {
        self.attempts += fork.attempts;
        for error in fork.errors {
            if self.seen.insert((error.pos, error.message.clone())) {
                self.errors.push(error);
            }
        }
    }

    /// Reports made so far, repeats included.
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// The collected errors in file order (stable for equal positions).
    pub fn into_errors(mut self) -> SpecErrors {
        self.errors.sort_by_key(|e| e.pos);
        SpecErrors {
            errors: self.errors,
        }
    }
}
