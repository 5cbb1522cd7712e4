//! `settings:` with defaults and command-line overrides.

use super::error::{Ctx, Diagnostics};
use super::raw::{mapping, string, unique_keys};
use super::schema::absolute;
use super::yaml::{Node, Pos, Value};
use crate::plan::{ExecutorKind, Settings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SETTINGS_KEYS: &[&str] = &[
    "store", "objects", "executor", "device", "jobs", "salt", "slurm",
];

/// Values given on the command line (`--store`, `--jobs`, ...); each replaces the file's.
/// A relative `store` or `objects` here is relative to the current directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsOverrides {
    pub store: Option<String>,
    pub objects: Option<PathBuf>,
    pub executor: Option<ExecutorKind>,
    pub device: Option<String>,
    pub jobs: Option<usize>,
    pub salt: Option<String>,
    /// `--set PATH=VALUE` arguments, in order. Unlike the fields above they edit the
    /// document itself (`params`, `settings`, `stages`), before anything reads it (see
    /// `spec/overrides.rs`). A field above still wins over `--set settings.…`.
    pub set: Vec<String>,
}

/// The default settings for a pipeline in `base_dir`.
pub fn defaults(base_dir: &Path) -> Settings {
    Settings {
        store: base_dir.join(".histodiff").display().to_string(),
        objects: None,
        executor: ExecutorKind::Local,
        device: "auto".to_string(),
        jobs: 2,
        salt: String::new(),
        slurm: BTreeMap::new(),
    }
}

/// `settings:` (already interpolated) over the defaults, then the overrides.
pub fn resolve(
    node: Option<&Node>,
    base_dir: &Path,
    overrides: &SettingsOverrides,
    diag: &mut Diagnostics,
) -> Settings {
    let mut s = defaults(base_dir);
    let mut store_pos = node.map(|n| n.pos).unwrap_or_default();
    if let Some(node) = node {
        let ctx = Ctx::top("settings");
        if let Some(entries) = mapping(node, ctx, "`settings`", diag) {
            for (key, kpos, value) in unique_keys(entries, ctx, diag) {
                if key == "store" {
                    store_pos = value.pos;
                }
                apply(&mut s, key, kpos, value, base_dir, diag);
            }
        }
    }
    apply_overrides(&mut s, overrides, diag);
    if is_postgres(&s.store) && s.objects.is_none() {
        diag.report(
            store_pos,
            Ctx::top("settings").key("objects"),
            "a postgres store needs `objects:`, the shared object directory",
        );
    }
    s
}

fn apply(
    s: &mut Settings,
    key: &str,
    kpos: Pos,
    value: &Node,
    base: &Path,
    diag: &mut Diagnostics,
) {
    let ctx = Ctx::top("settings").key(key);
    match key {
        "store" => {
            if let Some(v) = string(value, ctx, diag) {
                s.store = store_location(&v, base);
            }
        }
        "objects" => s.objects = string(value, ctx, diag).map(|v| absolute(base, Path::new(&v))),
        "executor" => match value.as_str() {
            Some("local") => s.executor = ExecutorKind::Local,
            Some("slurm") => s.executor = ExecutorKind::Slurm,
            _ => diag.report(value.pos, ctx, "executor must be `local` or `slurm`"),
        },
        "device" => match value.as_str().filter(|d| is_device(d)) {
            Some(d) => s.device = d.to_string(),
            None => diag.report(
                value.pos,
                ctx,
                "device must be `auto`, `cpu`, `cuda` or `cuda:N`",
            ),
        },
        "jobs" => match value.value {
            Value::Int(n) if n >= 1 => s.jobs = n as usize,
            _ => diag.report(value.pos, ctx, "jobs must be an integer of at least 1"),
        },
        "salt" => match super::interp::scalar_text(value) {
            Some(v) if !matches!(value.value, Value::Null) => s.salt = v,
            _ => diag.report(value.pos, ctx, "salt must be a string"),
        },
        "slurm" => s.slurm = slurm_options(value, ctx, diag),
        other => diag.report(
            kpos,
            Ctx::top("settings").key(other),
            format!(
                "unknown setting; expected one of {}",
                SETTINGS_KEYS.join(", ")
            ),
        ),
    }
}

fn apply_overrides(s: &mut Settings, o: &SettingsOverrides, diag: &mut Diagnostics) {
    let cwd = std::env::current_dir().unwrap_or_default();
    if let Some(store) = &o.store {
        s.store = store_location(store, &cwd);
    }
    if let Some(objects) = &o.objects {
        s.objects = Some(absolute(&cwd, objects));
    }
    if let Some(e) = o.executor {
        s.executor = e;
    }
    if let Some(d) = &o.device {
        if is_device(d) {
            s.device = d.clone();
        } else {
            diag.report(
                Pos::default(),
                Ctx::top("device"),
                format!("--device `{d}` must be auto, cpu, cuda or cuda:N"),
            );
        }
    }
    match o.jobs {
        Some(0) => diag.report(
            Pos::default(),
            Ctx::top("jobs"),
            "--jobs must be at least 1",
        ),
        Some(j) => s.jobs = j,
        None => {}
    }
    if let Some(salt) = &o.salt {
        s.salt = salt.clone();
    }
}

fn is_postgres(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// A postgres URL as given; a directory made absolute against `base`.
fn store_location(v: &str, base: &Path) -> String {
    if is_postgres(v) {
        v.to_string()
    } else {
        absolute(base, Path::new(v)).display().to_string()
    }
}

/// `auto | cpu | cuda | cuda:N` ([`crate::device::DeviceName`]'s grammar).
pub fn is_device(d: &str) -> bool {
    d.parse::<crate::device::DeviceName>().is_ok()
}

fn slurm_options(
    value: &Node,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    let Some(entries) = mapping(value, ctx, "`slurm`", diag) else {
        return out;
    };
    for (key, _, v) in unique_keys(entries, ctx, diag) {
        match to_json(v) {
            Some(j) => {
                out.insert(key.to_string(), j);
            }
            None => diag.report(
                v.pos,
                ctx,
                format!("slurm option `{key}` must be a scalar or a list of scalars"),
            ),
        }
    }
    out
}

/// A node as JSON: scalars and lists of scalars.
fn to_json(n: &Node) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match &n.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => J::from(serde_json::Number::from_f64(*f)?),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect::<Option<_>>()?),
        Value::Map(_) => return None,
    })
}
