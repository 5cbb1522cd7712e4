//! `with:` checked against a kind's parameter schema, giving canonical parameters: every
//! schema key present (defaults filled in), values typed (an integer given for a float
//! parameter becomes a float), so equal settings always produce equal stage keys.

use super::error::{Ctx, Diagnostics};
use super::interp::float_text;
use super::yaml::{Node, Pos, Value};
use crate::registry::{KindSpec, ParamSpec, ParamType};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Canonical parameters of one instance.
#[derive(Debug, Default)]
pub struct CheckedParams {
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `path` parameters resolved against the pipeline directory.
    pub external_paths: BTreeMap<String, PathBuf>,
}

/// Records the absolute path of a `path` param under its name, and of each element of a
/// list of paths under `name.N`, so that the content of every external file enters the key.
fn record_external_paths(
    key: &str,
    ty: &ParamType,
    value: &serde_json::Value,
    base_dir: &Path,
    external: &mut BTreeMap<String, PathBuf>,
) {
    match (ty, value) {
        (ParamType::Path, serde_json::Value::String(p)) => {
            external.insert(key.to_string(), absolute(base_dir, Path::new(p)));
        }
        (ParamType::List { item }, serde_json::Value::Array(items))
            if matches!(**item, ParamType::Path) =>
        {
            for (i, p) in items.iter().enumerate() {
                if let serde_json::Value::String(p) = p {
                    external.insert(format!("{key}.{i}"), absolute(base_dir, Path::new(p)));
                }
            }
        }
        _ => {}
    }
}

/// Checks interpolated `with:` entries (key, key position, value) against `kind`.
pub fn check(
    kind: &KindSpec,
    with: &[(String, Pos, Node)],
    unresolved: &[&str],
    with_pos: Pos,
    base_dir: &Path,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> CheckedParams {
    let mut out = CheckedParams::default();
    for (key, kpos, value) in with {
        let kctx = ctx.key(key);
        let Some(spec) = kind.params.iter().find(|p| &p.name == key) else {
            diag.report(*kpos, kctx, unknown_key_message(kind, key));
            continue;
        };
        let Some(v) = typed(spec, &spec.ty, value, kctx, diag) else {
            continue;
        };
        record_external_paths(key, &spec.ty, &v, base_dir, &mut out.external_paths);
        out.params.insert(key.clone(), v);
    }
    for spec in &kind.params {
        let given = with.iter().any(|(k, _, _)| k == &spec.name)
            || unresolved.contains(&spec.name.as_str());
        if out.params.contains_key(&spec.name) || given {
            continue;
        }
        match &spec.default {
            Some(d) => {
                out.params.insert(spec.name.clone(), d.clone());
            }
            None => diag.report(
                with_pos,
                ctx.key(&spec.name),
                format!(
                    "missing required param `{}` of `{}` ({})",
                    spec.name, kind.name, spec.doc
                ),
            ),
        }
    }
    out
}

fn unknown_key_message(kind: &KindSpec, key: &str) -> String {
    let known: Vec<&str> = kind.params.iter().map(|p| p.name.as_str()).collect();
    if known.is_empty() {
        format!("unknown key: `{}` takes no parameters", kind.name)
    } else {
        format!(
            "unknown key for `{}`; expected one of {}{}",
            kind.name,
            known.join(", "),
            super::suggest::hint(key, known.iter().copied())
        )
    }
}

/// The value of `node` as `ty`, or a report of the mismatch.
fn typed(
    spec: &ParamSpec,
    ty: &ParamType,
    node: &Node,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    if node.value == Value::Null && spec.default == Some(J::Null) {
        return Some(J::Null);
    }
    let v = match (ty, &node.value) {
        (ParamType::Bool, Value::Bool(b)) => J::Bool(*b),
        (ParamType::Int { min, max }, Value::Int(i)) => {
            in_range(
                *i as f64,
                min.map(|m| m as f64),
                max.map(|m| m as f64),
                &i.to_string(),
                node,
                ctx,
                diag,
            )?;
            J::from(*i)
        }
        (ParamType::Float { min, max }, Value::Int(_) | Value::Float(_)) => {
            let f = match node.value {
                Value::Int(i) => i as f64,
                Value::Float(f) => f,
                _ => unreachable!("matched above"),
            };
            in_range(f, *min, *max, &float_text(f), node, ctx, diag)?;
            J::from(serde_json::Number::from_f64(f)?)
        }
        (ParamType::String | ParamType::Path, Value::Str(s)) => J::String(s.clone()),
        (ParamType::Enum { values }, Value::Str(s)) => {
            if !values.contains(s) {
                diag.report(
                    node.pos,
                    ctx,
                    format!("`{s}` is not one of {}", values.join(", ")),
                );
                return None;
            }
            J::String(s.clone())
        }
        (ParamType::List { item }, Value::Seq(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(typed(spec, item, i, ctx, diag)?);
            }
            J::Array(out)
        }
        _ => {
            diag.report(
                node.pos,
                ctx,
                format!("expected {}, found {}", ty.describe(), node.type_name()),
            );
            return None;
        }
    };
    Some(v)
}

fn in_range(
    v: f64,
    min: Option<f64>,
    max: Option<f64>,
    shown: &str,
    node: &Node,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> Option<()> {
    let low = min.is_some_and(|m| v < m);
    let high = max.is_some_and(|m| v > m);
    if !(low || high) {
        return Some(());
    }
    let range = match (min, max) {
        (Some(a), Some(b)) => format!("between {a} and {b}"),
        (Some(a), None) => format!("at least {a}"),
        (None, Some(b)) => format!("at most {b}"),
        (None, None) => unreachable!("a bound was crossed"),
    };
    diag.report(
        node.pos,
        ctx,
        format!("{shown} is out of range: must be {range}"),
    );
    None
}

/// `p` made absolute against `base`, with `.` and `..` removed lexically (the path may
/// not exist yet; the hasher reports missing data).
pub fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = base.join(p);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
