//! Stage-level resolution: each stage's kind and outputs, and its `inputs:` checked
//! against the kind's slots and the upstream stages' outputs. Yields the stage edges.

use super::command;
use super::dag::StageEdge;
use super::error::{Ctx, Diagnostics};
use super::interp::CommandNames;
use super::raw::{is_name, RawPipeline, RawStage};
use super::yaml::{Node, Pos};
use crate::registry::{KindSpec, Registry, COMMAND_KIND};
use std::collections::HashMap;

/// What later steps need to know of a stage besides its raw text.
#[derive(Debug)]
pub struct StageInfo<'r> {
    /// `None` when `uses` names no known kind (already reported).
    pub kind: Option<&'r KindSpec>,
    pub is_command: bool,
    /// Output names; the first is the default of a reference without `.output`.
    pub outputs: Vec<String>,
    /// Command stages: declared outs and the names `run` may use.
    pub outs: Vec<(String, Pos, Node)>,
    pub names: CommandNames,
}

pub fn infos<'r>(
    raw: &RawPipeline,
    registry: &'r Registry,
    diag: &mut Diagnostics,
) -> Vec<StageInfo<'r>> {
    raw.stages.iter().map(|s| info(s, registry, diag)).collect()
}

fn info<'r>(stage: &RawStage, registry: &'r Registry, diag: &mut Diagnostics) -> StageInfo<'r> {
    let ctx = Ctx::stage(&stage.id).key("uses");
    let kind = stage.uses.as_ref().and_then(|u| match u.as_str() {
        Some(name) => {
            let k = registry.get(name);
            if k.is_none() {
                diag.report(u.pos, ctx, unknown_kind(name, registry));
            }
            k
        }
        None => {
            diag.report(
                u.pos,
                ctx,
                format!("`uses` must name a kind, found {}", u.type_name()),
            );
            None
        }
    });
    let is_command = kind.is_some_and(|k| k.name == COMMAND_KIND);
    if kind.is_some() {
        command::check_fields(stage, is_command, diag);
    }
    let outs = if is_command {
        command::declared_outs(stage, diag)
    } else {
        Vec::new()
    };
    let outputs = match kind {
        Some(_) if is_command => outs.iter().map(|(n, _, _)| n.clone()).collect(),
        Some(k) => k.outputs.clone(),
        None => Vec::new(),
    };
    let names = command::names(stage, &outs);
    StageInfo {
        kind,
        is_command,
        outputs,
        outs,
        names,
    }
}

fn unknown_kind(name: &str, registry: &Registry) -> String {
    let known: Vec<&str> = registry.names().collect();
    let hint = super::suggest::hint(name, known.iter().copied());
    if known.len() <= 24 {
        format!(
            "unknown kind `{name}`{hint}; known kinds: {}",
            known.join(", ")
        )
    } else {
        format!("unknown kind `{name}`{hint}; `histodiff kinds` lists them")
    }
}

/// Checks every `inputs:` slot and reference; returns the edges of valid references.
pub fn check_inputs(
    raw: &RawPipeline,
    infos: &[StageInfo<'_>],
    by_id: &HashMap<&str, usize>,
    diag: &mut Diagnostics,
) -> Vec<StageEdge> {
    let mut edges = Vec::new();
    for (to, stage) in raw.stages.iter().enumerate() {
        let ctx = Ctx::stage(&stage.id).key("inputs");
        check_slots(stage, &infos[to], ctx, diag);
        for input in &stage.inputs {
            for r in &input.refs {
                let Some(&from) = by_id.get(r.stage.as_str()) else {
                    diag.report(
                        r.pos,
                        ctx,
                        format!(
                            "slot `{}` reads unknown stage `{}`{}",
                            input.slot,
                            r.stage,
                            super::suggest::hint(&r.stage, by_id.keys().copied())
                        ),
                    );
                    continue;
                };
                check_output(
                    &raw.stages[from].id,
                    &infos[from],
                    r.output.as_deref(),
                    r.pos,
                    ctx,
                    diag,
                );
                edges.push(StageEdge {
                    from,
                    to,
                    pos: r.pos,
                });
            }
        }
    }
    edges
}

fn check_output(
    up: &str,
    info: &StageInfo<'_>,
    output: Option<&str>,
    pos: Pos,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) {
    if info.kind.is_none() {
        return;
    }
    match output {
        Some(o) if !info.outputs.iter().any(|x| x == o) => diag.report(
            pos,
            ctx,
            format!(
                "stage `{up}` has no output `{o}`; its outputs: {}",
                outputs_text(&info.outputs)
            ),
        ),
        None if info.outputs.is_empty() => diag.report(
            pos,
            ctx,
            format!("stage `{up}` produces no outputs to read"),
        ),
        _ => {}
    }
}

fn outputs_text(outputs: &[String]) -> String {
    if outputs.is_empty() {
        "none".to_string()
    } else {
        outputs.join(", ")
    }
}

/// Slot names, one-versus-many, and required slots.
fn check_slots(stage: &RawStage, info: &StageInfo<'_>, ctx: Ctx<'_>, diag: &mut Diagnostics) {
    let Some(kind) = info.kind else { return };
    if info.is_command {
        for input in &stage.inputs {
            if !is_name(&input.slot) {
                diag.report(
                    input.pos,
                    ctx,
                    format!(
                        "bad slot name `{}`: use letters, digits, `_` and `-`",
                        input.slot
                    ),
                );
            }
        }
        return;
    }
    for input in &stage.inputs {
        let Some(slot) = kind.inputs.iter().find(|s| s.name == input.slot) else {
            let known: Vec<&str> = kind.inputs.iter().map(|s| s.name.as_str()).collect();
            diag.report(
                input.pos,
                ctx,
                format!(
                    "unknown input slot `{}` of `{}`; expected one of {}",
                    input.slot,
                    kind.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            continue;
        };
        let gathers = input.refs.iter().any(|r| r.gather);
        if !slot.many && (input.list || gathers) {
            diag.report(
                input.pos,
                ctx,
                format!(
                    "slot `{}` of `{}` takes one artifact, not a list or `stage[*]`",
                    slot.name, kind.name
                ),
            );
        }
    }
    for slot in kind.inputs.iter().filter(|s| s.required) {
        if !stage.inputs.iter().any(|i| i.slot == slot.name) {
            diag.report(
                stage.pos,
                ctx,
                format!(
                    "missing required input slot `{}` of `{}` ({})",
                    slot.name, kind.name, slot.doc
                ),
            );
        }
    }
}
