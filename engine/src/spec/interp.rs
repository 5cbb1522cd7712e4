//! `${params.NAME}`, `${matrix.AXIS}`, `${inputs.SLOT}` and `${outs.NAME}` interpolation.
//!
//! A scalar that is one whole reference takes the referenced value with its type
//! (`ratio: ${matrix.ratio}` stays a float); a reference embedded in text is formatted into
//! the string. `${inputs.*}`/`${outs.*}` are left in place for the worker, which knows the
//! paths, and are only valid in `run:` of a command. `$${` writes a literal `${`.

use super::error::{Ctx, Diagnostics};
use super::yaml::{Node, Pos, Value};
use crate::plan::Coords;
use std::collections::{HashMap, HashSet};

/// What a reference may name at one place of the file.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub params: &'a HashMap<String, Node>,
    /// The instance's coordinates (own and inherited axes); `None` outside a stage.
    pub matrix: Option<&'a Coords>,
    /// Slot and out names of a command stage while reading its `run:`.
    pub command: Option<&'a CommandNames>,
}

/// Names `${inputs.*}` and `${outs.*}` may use in a command's `run:`.
#[derive(Debug, Clone, Default)]
pub struct CommandNames {
    pub inputs: HashSet<String>,
    pub outs: HashSet<String>,
}

/// What one reference expands to.
enum Expansion {
    Value(Node),
    /// Left verbatim for the worker.
    Keep,
}

/// Interpolates every string inside `node` (mapping keys excepted).
pub fn node(n: &Node, scope: &Scope<'_>, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Node {
    match &n.value {
        Value::Str(s) if s.contains('$') => string_node(s, n.pos, scope, ctx, diag),
        Value::Seq(items) => Node::new(
            Value::Seq(items.iter().map(|i| node(i, scope, ctx, diag)).collect()),
            n.pos,
        ),
        Value::Map(entries) => Node::new(
            Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), node(v, scope, ctx, diag)))
                    .collect(),
            ),
            n.pos,
        ),
        _ => n.clone(),
    }
}

fn string_node(s: &str, pos: Pos, scope: &Scope<'_>, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Node {
    if let Some(inner) = whole_reference(s) {
        return match expand(inner, pos, scope, ctx, diag) {
            Some(Expansion::Value(v)) => Node::new(v.value, pos),
            _ => Node::new(Value::Str(s.to_string()), pos),
        };
    }
    Node::new(Value::Str(text(s, pos, scope, ctx, diag)), pos)
}

/// `params.x` when `s` is exactly `${params.x}`.
fn whole_reference(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    (!inner.contains('}') && !inner.contains("${")).then_some(inner)
}

/// Interpolates references embedded in text; problems are reported and the text kept.
pub fn text(s: &str, pos: Pos, scope: &Scope<'_>, ctx: Ctx<'_>, diag: &mut Diagnostics) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(j) = tail.find('}') else {
                diag.report(pos, ctx, format!("unclosed `${{` in `{s}`"));
                out.push_str(after);
                return out;
            };
            let inner = &tail[..j];
            match expand(inner, pos, scope, ctx, diag) {
                Some(Expansion::Value(v)) => match scalar_text(&v) {
                    Some(t) => out.push_str(&t),
                    None => diag.report(
                        pos,
                        ctx,
                        format!(
                            "`${{{inner}}}` is {}, which cannot be embedded in a string",
                            v.type_name()
                        ),
                    ),
                },
                _ => out.push_str(&after[..j + 3]),
            }
            rest = &tail[j + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

fn expand(
    inner: &str,
    pos: Pos,
    scope: &Scope<'_>,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> Option<Expansion> {
    let Some((ns, name)) = inner.split_once('.') else {
        undefined(inner, pos, ctx, diag);
        return None;
    };
    match ns {
        "params" => match scope.params.get(name) {
            Some(v) => Some(Expansion::Value(v.clone())),
            None => {
                diag.report(
                    pos,
                    ctx,
                    format!(
                        "undefined interpolation `${{{inner}}}`: no param `{name}` in `params`"
                    ),
                );
                None
            }
        },
        "matrix" => match scope.matrix.and_then(|m| m.get(name)) {
            Some(v) => Some(Expansion::Value(json_scalar_node(v, pos))),
            None => {
                diag.report(pos, ctx, format!("undefined interpolation `${{{inner}}}`: this stage has no matrix axis `{name}`"));
                None
            }
        },
        "inputs" | "outs" => command_reference(ns, name, inner, pos, scope, ctx, diag),
        _ => {
            undefined(inner, pos, ctx, diag);
            None
        }
    }
}

fn command_reference(
    ns: &str,
    name: &str,
    inner: &str,
    pos: Pos,
    scope: &Scope<'_>,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> Option<Expansion> {
    let Some(names) = scope.command else {
        diag.report(
            pos,
            ctx,
            format!("`${{{inner}}}` is only allowed in `run:` of a `command` stage"),
        );
        return None;
    };
    let (known, what) = match ns {
        "inputs" => (&names.inputs, "input slot"),
        _ => (&names.outs, "out"),
    };
    if known.contains(name) {
        Some(Expansion::Keep)
    } else {
        diag.report(
            pos,
            ctx,
            format!("undefined interpolation `${{{inner}}}`: this command has no {what} `{name}`"),
        );
        None
    }
}

fn undefined(inner: &str, pos: Pos, ctx: Ctx<'_>, diag: &mut Diagnostics) {
    diag.report(
        pos,
        ctx,
        format!("undefined interpolation `${{{inner}}}`: expected ${{params.NAME}}, ${{matrix.AXIS}}, ${{inputs.SLOT}} or ${{outs.NAME}} (write `$${{` for a literal `${{`)"),
    );
}

/// The text of a scalar as it is embedded into a string.
pub fn scalar_text(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(float_text(*f)),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".to_string()),
        Value::Seq(_) | Value::Map(_) => None,
    }
}

/// Floats as JSON writes them (`0.5`, `1.0`), so names and strings agree with keys.
pub fn float_text(f: f64) -> String {
    serde_json::Number::from_f64(f)
        .map(|n| n.to_string())
        .unwrap_or_else(|| f.to_string())
}

/// A matrix coordinate (a JSON scalar) as a node at `pos`.
pub fn json_scalar_node(v: &serde_json::Value, pos: Pos) -> Node {
    let value = match v {
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(s.clone()),
        _ => Value::Null,
    };
    Node::new(value, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::error::Diagnostics;
    use serde_json::json;

    fn at() -> Pos {
        Pos { line: 3, col: 7 }
    }

    fn params() -> HashMap<String, Node> {
        let mut p = HashMap::new();
        p.insert("size".to_string(), Node::new(Value::Int(32), at()));
        p.insert(
            "name".to_string(),
            Node::new(Value::Str("crc".into()), at()),
        );
        p.insert(
            "sizes".to_string(),
            Node::new(Value::Seq(vec![Node::new(Value::Int(1), at())]), at()),
        );
        p
    }

    fn run(s: &str, coords: &Coords, command: Option<&CommandNames>) -> (Node, Vec<String>) {
        let params = params();
        let scope = Scope {
            params: &params,
            matrix: Some(coords),
            command,
        };
        let mut diag = Diagnostics::new("p.yaml".into());
        let n = node(
            &Node::new(Value::Str(s.into()), at()),
            &scope,
            Ctx::default(),
            &mut diag,
        );
        (
            n,
            diag.into_errors()
                .errors
                .into_iter()
                .map(|e| e.message)
                .collect(),
        )
    }

    #[test]
    fn whole_reference_keeps_the_type() {
        let coords: Coords = [("ratio".to_string(), json!(0.5))].into_iter().collect();
        assert_eq!(
            run("${matrix.ratio}", &coords, None).0.value,
            Value::Float(0.5)
        );
        assert_eq!(run("${params.size}", &coords, None).0.value, Value::Int(32));
        let list = run("${params.sizes}", &coords, None).0;
        assert!(matches!(list.value, Value::Seq(_)));
        assert_eq!(list.pos, at(), "the value takes the place of the reference");
    }

    #[test]
    fn embedded_reference_makes_a_string() {
        let coords: Coords = [("ratio".to_string(), json!(1.0))].into_iter().collect();
        let (n, errs) = run(
            "${params.name}-r${matrix.ratio}-${params.size}",
            &coords,
            None,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(n.value, Value::Str("crc-r1.0-32".into()));
    }

    #[test]
    fn escape_and_bare_dollars() {
        let (n, errs) = run("cost $$5 home $${HOME} $PATH", &Coords::new(), None);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(n.value, Value::Str("cost $$5 home ${HOME} $PATH".into()));
    }

    #[test]
    fn undefined_and_misplaced_references_are_reported() {
        let (_, errs) = run(
            "${params.nope} ${matrix.seed} ${foo} ${inputs.x}",
            &Coords::new(),
            None,
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("no param `nope`"));
        assert!(errs[1].contains("no matrix axis `seed`"));
        assert!(errs[2].contains("undefined interpolation `${foo}`"));
        assert!(errs[3].contains("only allowed in `run:`"));
        let (_, errs) = run("a ${params.sizes} b", &Coords::new(), None);
        assert!(errs[0].contains("cannot be embedded"), "{errs:?}");
    }

    #[test]
    fn command_references_are_kept_and_checked() {
        let names = CommandNames {
            inputs: ["data".to_string()].into(),
            outs: ["result".to_string()].into(),
        };
        let (n, errs) = run(
            "x ${inputs.data} ${outs.result}",
            &Coords::new(),
            Some(&names),
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            n.value,
            Value::Str("x ${inputs.data} ${outs.result}".into())
        );
        let (_, errs) = run("${inputs.other}", &Coords::new(), Some(&names));
        assert!(errs[0].contains("no input slot `other`"), "{errs:?}");
    }
}
