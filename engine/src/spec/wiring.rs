//! The wiring parts of a raw stage: `inputs:` references (`stage`, `stage.output`,
//! `stage[*]`, `stage.output[*]`, or a list of them) and `matrix:` axes. Syntax only; the
//! stages and outputs named are checked by [`super::stages`].

use super::error::{Ctx, Diagnostics};
use super::raw::{is_name, is_stage_id, mapping, unique_keys, RawAxis, RawInput, RawRef};
use super::yaml::{Node, Value};

pub fn read_inputs(value: &Node, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Vec<RawInput> {
    let Some(entries) = mapping(value, ctx, "`inputs`", diag) else {
        return Vec::new();
    };
    let mut inputs = Vec::new();
    for (slot, slot_pos, node) in unique_keys(entries, ctx, diag) {
        let (list, items): (bool, Vec<&Node>) = match &node.value {
            Value::Seq(items) => (true, items.iter().collect()),
            _ => (false, vec![node]),
        };
        if list && items.is_empty() {
            diag.report(node.pos, ctx, format!("slot `{slot}` has an empty list"));
        }
        let refs = items
            .into_iter()
            .filter_map(|n| read_ref(n, ctx, diag))
            .collect();
        inputs.push(RawInput {
            slot: slot.to_string(),
            pos: slot_pos,
            list,
            refs,
        });
    }
    inputs
}

/// Parses one reference: `stage`, `stage.output`, `stage[*]`, `stage.output[*]`.
fn read_ref(node: &Node, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Option<RawRef> {
    let Some(text) = node.as_str() else {
        diag.report(
            node.pos,
            ctx,
            format!(
                "expected a stage reference (`stage`, `stage.output`, `stage[*]`), found {}",
                node.type_name()
            ),
        );
        return None;
    };
    let (body, gather) = match text.strip_suffix("[*]") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let (stage, output) = match body.split_once('.') {
        Some((s, o)) => (s, Some(o)),
        None => (body, None),
    };
    let output_ok = output.is_none_or(is_name);
    if !is_stage_id(stage) || !output_ok {
        diag.report(
            node.pos,
            ctx,
            format!("malformed reference `{text}`; expected `stage`, `stage.output`, `stage[*]` or `stage.output[*]`"),
        );
        return None;
    }
    Some(RawRef {
        stage: stage.to_string(),
        output: output.map(str::to_string),
        gather,
        pos: node.pos,
    })
}

pub fn read_matrix(value: &Node, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Vec<RawAxis> {
    let Some(entries) = mapping(value, ctx, "`matrix`", diag) else {
        return Vec::new();
    };
    if entries.is_empty() {
        diag.report(value.pos, ctx, "empty matrix: give at least one axis");
    }
    let mut axes = Vec::new();
    for (name, pos, node) in unique_keys(entries, ctx, diag) {
        if !is_name(name) {
            diag.report(pos, ctx, format!("bad axis name `{name}`"));
            continue;
        }
        let Value::Seq(values) = &node.value else {
            diag.report(
                node.pos,
                ctx,
                format!(
                    "axis `{name}` must be a list of values, found {}",
                    node.type_name()
                ),
            );
            continue;
        };
        if values.is_empty() {
            diag.report(node.pos, ctx, format!("axis `{name}` is an empty list"));
            continue;
        }
        let mut ok = true;
        for v in values {
            if matches!(v.value, Value::Seq(_) | Value::Map(_) | Value::Null) {
                diag.report(
                    v.pos,
                    ctx,
                    format!(
                        "axis `{name}` values must be scalars, found {}",
                        v.type_name()
                    ),
                );
                ok = false;
            }
        }
        if ok {
            axes.push(RawAxis {
                name: name.to_string(),
                pos,
                values: values.clone(),
            });
        }
    }
    axes
}
