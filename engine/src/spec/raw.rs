//! The raw layer: the [`Node`] tree read into pipeline-shaped structs. Only structure is
//! checked here (known keys, stage ids, duplicates, input reference syntax, matrix shape);
//! kinds, schemas and references are resolved later against the registry.

use super::error::{Ctx, Diagnostics};
use super::wiring::{read_inputs, read_matrix};
use super::yaml::{Node, Pos, Value};
use std::collections::HashMap;

const TOP_KEYS: &[&str] = &["version", "name", "settings", "params", "stages"];
pub const STAGE_KEYS: &[&str] = &[
    "uses",
    "with",
    "inputs",
    "matrix",
    "resources",
    "retries",
    "run",
    "deps",
    "outs",
];

/// The pipeline file as written.
#[derive(Debug, Default)]
pub struct RawPipeline {
    pub name: Option<String>,
    pub settings: Option<Node>,
    pub params: HashMap<String, Node>,
    pub stages: Vec<RawStage>,
}

/// One entry of `stages:`.
#[derive(Debug, Clone)]
pub struct RawStage {
    pub id: String,
    /// Position of the stage id.
    pub pos: Pos,
    pub uses: Option<Node>,
    /// `with:` entries (key, key position, value), duplicates removed.
    pub with: Vec<(String, Pos, Node)>,
    /// Position of the `with:` value (the stage id when absent).
    pub with_pos: Pos,
    pub inputs: Vec<RawInput>,
    pub matrix: Vec<RawAxis>,
    pub resources: Option<Node>,
    pub retries: Option<Node>,
    pub run: Option<Node>,
    pub deps: Option<Node>,
    pub outs: Option<Node>,
}

/// One `inputs:` slot.
#[derive(Debug, Clone)]
pub struct RawInput {
    pub slot: String,
    pub pos: Pos,
    /// Written as a list (`[a, b]`) rather than one reference.
    pub list: bool,
    pub refs: Vec<RawRef>,
}

/// `stage`, `stage.output`, `stage[*]` or `stage.output[*]`.
#[derive(Debug, Clone)]
pub struct RawRef {
    pub stage: String,
    pub output: Option<String>,
    pub gather: bool,
    pub pos: Pos,
}

/// One matrix axis with its values (scalars).
#[derive(Debug, Clone)]
pub struct RawAxis {
    pub name: String,
    pub pos: Pos,
    pub values: Vec<Node>,
}

/// Whether `s` is a valid stage id (`[a-z0-9_-]+`).
pub fn is_stage_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Whether `s` is a valid slot, output or axis name (`[A-Za-z0-9_-]+`).
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Reads the document root into a [`RawPipeline`], reporting structural problems.
pub fn read(root: &Node, diag: &mut Diagnostics) -> RawPipeline {
    let mut raw = RawPipeline::default();
    let Some(entries) = mapping(root, Ctx::default(), "the pipeline file", diag) else {
        return raw;
    };
    let mut version_seen = false;
    let mut stages_seen = false;
    for (key, kpos, value) in unique_keys(entries, Ctx::default(), diag) {
        match key {
            "version" => {
                version_seen = true;
                check_version(value, diag);
            }
            "name" => raw.name = string(value, Ctx::top("name"), diag),
            "settings" => raw.settings = Some(value.clone()),
            "params" => raw.params = read_params(value, diag),
            "stages" => {
                stages_seen = true;
                raw.stages = read_stages(value, diag);
            }
            other => diag.report(
                kpos,
                Ctx::top(other),
                format!(
                    "unknown top-level key; expected one of {}",
                    TOP_KEYS.join(", ")
                ),
            ),
        }
    }
    if !version_seen {
        diag.report(root.pos, Ctx::top("version"), "missing `version: 1`");
    }
    if !stages_seen {
        diag.report(root.pos, Ctx::top("stages"), "missing `stages:`");
    }
    raw
}

fn check_version(value: &Node, diag: &mut Diagnostics) {
    if value.value != Value::Int(1) {
        let found = match &value.value {
            Value::Int(n) => format!("{n}"),
            v => v.type_name().to_string(),
        };
        diag.report(
            value.pos,
            Ctx::top("version"),
            format!("unsupported version {found}; this histodiff reads `version: 1`"),
        );
    }
}

fn read_params(value: &Node, diag: &mut Diagnostics) -> HashMap<String, Node> {
    let mut params = HashMap::new();
    let Some(entries) = mapping(value, Ctx::top("params"), "`params`", diag) else {
        return params;
    };
    for (name, _, node) in unique_keys(entries, Ctx::top("params"), diag) {
        params.insert(name.to_string(), node.clone());
    }
    params
}

fn read_stages(value: &Node, diag: &mut Diagnostics) -> Vec<RawStage> {
    let Some(entries) = mapping(value, Ctx::top("stages"), "`stages`", diag) else {
        return Vec::new();
    };
    if entries.is_empty() {
        diag.report(value.pos, Ctx::top("stages"), "no stages");
    }
    let mut stages = Vec::new();
    let mut first: HashMap<&str, Pos> = HashMap::new();
    for (key, body) in entries {
        let Some(id) = key_str(key, Ctx::top("stages"), diag) else {
            continue;
        };
        if let Some(prev) = first.get(id) {
            diag.report(
                key.pos,
                Ctx::stage(id),
                format!("duplicate stage id (first defined at {prev})"),
            );
            continue;
        }
        first.insert(id, key.pos);
        if !is_stage_id(id) {
            diag.report(
                key.pos,
                Ctx::stage(id),
                "bad stage id: use lowercase letters, digits, `_` and `-`",
            );
        }
        stages.push(read_stage(id, key.pos, body, diag));
    }
    stages
}

fn read_stage(id: &str, pos: Pos, body: &Node, diag: &mut Diagnostics) -> RawStage {
    let mut stage = RawStage {
        id: id.to_string(),
        pos,
        uses: None,
        with: Vec::new(),
        with_pos: pos,
        inputs: Vec::new(),
        matrix: Vec::new(),
        resources: None,
        retries: None,
        run: None,
        deps: None,
        outs: None,
    };
    let ctx = Ctx::stage(id);
    let Some(entries) = mapping(body, ctx, "a stage", diag) else {
        return stage;
    };
    for (key, kpos, value) in unique_keys(entries, ctx, diag) {
        let kctx = ctx.key(key);
        match key {
            "uses" => stage.uses = Some(value.clone()),
            "with" => {
                stage.with_pos = value.pos;
                if let Some(e) = mapping(value, kctx, "`with`", diag) {
                    stage.with = unique_keys(e, kctx, diag)
                        .into_iter()
                        .map(|(k, p, v)| (k.to_string(), p, v.clone()))
                        .collect();
                }
            }
            "inputs" => stage.inputs = read_inputs(value, kctx, diag),
            "matrix" => stage.matrix = read_matrix(value, kctx, diag),
            "resources" => stage.resources = Some(value.clone()),
            "retries" => stage.retries = Some(value.clone()),
            "run" => stage.run = Some(value.clone()),
            "deps" => stage.deps = Some(value.clone()),
            "outs" => stage.outs = Some(value.clone()),
            _ => diag.report(
                kpos,
                kctx,
                format!(
                    "unknown stage key; expected one of {}",
                    STAGE_KEYS.join(", ")
                ),
            ),
        }
    }
    if stage.uses.is_none() {
        diag.report(
            pos,
            ctx.key("uses"),
            "missing `uses` (a stage kind, or `command`)",
        );
    }
    stage
}

/// The entries of a mapping node, or a report that it is something else.
pub fn mapping<'n>(
    node: &'n Node,
    ctx: Ctx<'_>,
    what: &str,
    diag: &mut Diagnostics,
) -> Option<&'n [(Node, Node)]> {
    match &node.value {
        Value::Map(entries) => Some(entries),
        Value::Null => Some(&[]),
        v => {
            diag.report(
                node.pos,
                ctx,
                format!("{what} must be a mapping, found {}", v.type_name()),
            );
            None
        }
    }
}

/// Mapping entries with string keys, reporting non-string and duplicate keys.
pub fn unique_keys<'n>(
    entries: &'n [(Node, Node)],
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> Vec<(&'n str, Pos, &'n Node)> {
    let mut first: HashMap<&str, Pos> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Some(k) = key_str(key, ctx, diag) else {
            continue;
        };
        if let Some(prev) = first.get(k) {
            diag.report(
                key.pos,
                ctx.key(k),
                format!("duplicate key (first at {prev})"),
            );
            continue;
        }
        first.insert(k, key.pos);
        out.push((k, key.pos, value));
    }
    out
}

fn key_str<'n>(key: &'n Node, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Option<&'n str> {
    let k = key.as_str();
    if k.is_none() {
        diag.report(
            key.pos,
            ctx,
            format!("keys must be strings, found {}", key.type_name()),
        );
    }
    k
}

/// A string value, or a report naming the key.
pub fn string(node: &Node, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        v => {
            diag.report(
                node.pos,
                ctx,
                format!("expected a string, found {}", v.type_name()),
            );
            None
        }
    }
}
