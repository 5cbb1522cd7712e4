//! The `command` kind: `run`, `deps` and `outs` of a stage that runs any program.
//! `${inputs.*}`/`${outs.*}` stay in `run` for the worker; everything else is resolved
//! here, per instance, so a matrix of commands gets one command line per member.

use super::error::{Ctx, Diagnostics};
use super::interp::{self, CommandNames, Scope};
use super::raw::{is_name, mapping, unique_keys, RawStage};
use super::schema::absolute;
use super::yaml::{Node, Pos, Value};
use crate::plan::{CommandSpec, SmallMap};
use std::path::{Component, Path, PathBuf};

/// Declared outs of a command stage, in file order: (name, name position, path node).
pub fn declared_outs(stage: &RawStage, diag: &mut Diagnostics) -> Vec<(String, Pos, Node)> {
    let ctx = Ctx::stage(&stage.id).key("outs");
    let Some(node) = &stage.outs else {
        return Vec::new();
    };
    let Some(entries) = mapping(node, ctx, "`outs`", diag) else {
        return Vec::new();
    };
    let mut outs = Vec::new();
    for (name, pos, path) in unique_keys(entries, ctx, diag) {
        if !is_name(name) {
            diag.report(
                pos,
                ctx,
                format!("bad out name `{name}`: use letters, digits, `_` and `-`"),
            );
            continue;
        }
        outs.push((name.to_string(), pos, path.clone()));
    }
    outs
}

/// Names `run` may refer to.
pub fn names(stage: &RawStage, outs: &[(String, Pos, Node)]) -> CommandNames {
    CommandNames {
        inputs: stage.inputs.iter().map(|i| i.slot.clone()).collect(),
        outs: outs.iter().map(|(n, _, _)| n.clone()).collect(),
    }
}

/// Stage fields that only a command may have, reported on other kinds (and the reverse).
pub fn check_fields(stage: &RawStage, is_command: bool, diag: &mut Diagnostics) {
    let ctx = Ctx::stage(&stage.id);
    if is_command {
        if stage.run.is_none() {
            diag.report(
                stage.pos,
                ctx.key("run"),
                "a `command` stage needs `run:`, the command line",
            );
        }
        if let Some((_, pos, _)) = stage.with.first() {
            diag.report(
                *pos,
                ctx.key("with"),
                "a `command` stage takes no `with:`; put values in `run:`",
            );
        }
        return;
    }
    for (key, node) in [
        ("run", &stage.run),
        ("deps", &stage.deps),
        ("outs", &stage.outs),
    ] {
        if let Some(n) = node {
            diag.report(
                n.pos,
                ctx.key(key),
                format!("`{key}` is only for `uses: command` stages"),
            );
        }
    }
}

/// The command of one instance.
pub fn instance(
    stage: &RawStage,
    outs: &[(String, Pos, Node)],
    names: &CommandNames,
    scope: &Scope<'_>,
    base_dir: &Path,
    diag: &mut Diagnostics,
) -> Option<CommandSpec> {
    let ctx = Ctx::stage(&stage.id);
    let run_node = stage.run.as_ref()?;
    let Some(run) = run_node.as_str() else {
        diag.report(
            run_node.pos,
            ctx.key("run"),
            format!("`run` must be a string, found {}", run_node.type_name()),
        );
        return None;
    };
    let run_scope = Scope {
        command: Some(names),
        ..*scope
    };
    let run = interp::text(run, run_node.pos, &run_scope, ctx.key("run"), diag);
    let deps = deps(stage.deps.as_ref(), scope, base_dir, ctx.key("deps"), diag);
    let mut out_paths = SmallMap::with_capacity(outs.len());
    for (name, _, path) in outs {
        if let Some(p) = out_path(path, scope, ctx.key("outs"), diag) {
            out_paths.insert(name.clone(), p);
        }
    }
    Some(CommandSpec {
        run,
        deps,
        outs: out_paths,
    })
}

/// `deps:` (a list of paths, or one path) made absolute against the pipeline directory.
fn deps(
    node: Option<&Node>,
    scope: &Scope<'_>,
    base: &Path,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> Vec<PathBuf> {
    let Some(node) = node else { return Vec::new() };
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match interp::node(item, scope, ctx, diag).value {
            Value::Str(s) if !s.is_empty() => out.push(absolute(base, Path::new(&s))),
            _ => diag.report(
                item.pos,
                ctx,
                format!("a dep must be a path, found {}", item.type_name()),
            ),
        }
    }
    out
}

/// An out path: relative, inside the work directory.
fn out_path(
    node: &Node,
    scope: &Scope<'_>,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> Option<PathBuf> {
    let Value::Str(s) = interp::node(node, scope, ctx, diag).value else {
        diag.report(
            node.pos,
            ctx,
            format!("an out must be a relative path, found {}", node.type_name()),
        );
        return None;
    };
    let p = PathBuf::from(&s);
    let inside = !s.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        diag.report(
            node.pos,
            ctx,
            format!("out `{s}` must be a relative path inside the work directory"),
        );
        return None;
    }
    Some(p)
}
