//! A stage's own matrix: the cartesian product of its axes, instance names, and the
//! canonical coordinate keys that fan-out joins on.

use super::error::{Ctx, Diagnostics};
use super::interp::float_text;
use super::raw::RawAxis;
use super::yaml::Value;
use crate::plan::Coords;
use std::collections::HashSet;
use std::fmt::Write;

/// Most instances one pipeline may expand to: a typo in a sweep should fail fast, not
/// exhaust memory.
pub const MAX_INSTANCES: usize = 1_000_000;

/// The instances' coordinates in declaration order: the first axis varies slowest and
/// each axis follows its list. No matrix gives one empty coordinate set.
pub fn product(axes: &[RawAxis], ctx: Ctx<'_>, diag: &mut Diagnostics) -> Vec<Coords> {
    let mut out = vec![Coords::new()];
    for axis in axes {
        let values = axis_values(axis, ctx, diag);
        if out.len().saturating_mul(values.len()) > MAX_INSTANCES {
            diag.report(
                axis.pos,
                ctx,
                format!("matrix expands to more than {MAX_INSTANCES} instances"),
            );
            return vec![Coords::new()];
        }
        let mut next = Vec::with_capacity(out.len() * values.len());
        for coords in &out {
            for v in &values {
                let mut c = coords.clone();
                c.insert(axis.name.clone(), v.clone());
                next.push(c);
            }
        }
        out = next;
    }
    out
}

/// The axis values as JSON scalars; a repeated value would name two instances alike.
fn axis_values(axis: &RawAxis, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Vec<serde_json::Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(axis.values.len());
    for node in &axis.values {
        let v = match &node.value {
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => serde_json::Value::Number(n),
                None => continue,
            },
            Value::Str(s) => serde_json::Value::String(s.clone()),
            _ => continue,
        };
        if !seen.insert(canonical(&v)) {
            diag.report(
                node.pos,
                ctx,
                format!("axis `{}` repeats the value {}", axis.name, value_text(&v)),
            );
            continue;
        }
        out.push(v);
    }
    out
}

/// `stage[a=1,b=x]` with axes sorted, or `stage` without coordinates.
pub fn instance_name(stage: &str, coords: &Coords) -> String {
    if coords.is_empty() {
        return stage.to_string();
    }
    let mut name = String::with_capacity(stage.len() + 16 * coords.len());
    name.push_str(stage);
    name.push('[');
    for (i, (axis, v)) in coords.iter().enumerate() {
        if i > 0 {
            name.push(',');
        }
        let _ = write!(name, "{axis}={}", value_text(v));
    }
    name.push(']');
    name
}

/// A coordinate as it appears in names: strings bare, numbers as JSON writes them.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_f64() => float_text(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

/// A join key for one value: `1` and `1.0` meet, `"1"` (a string) does not.
pub fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => format!("n{i}"),
            None => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 9e15 {
                    format!("n{}", f as i64)
                } else {
                    format!("n{}", float_text(f))
                }
            }
        },
        serde_json::Value::String(s) => format!("s{s}"),
        other => format!("o{other}"),
    }
}

/// The join key of `coords` on `axes` (sorted axis names).
pub fn join_key(coords: &Coords, axes: &[String]) -> String {
    let mut key = String::new();
    for a in axes {
        if let Some(v) = coords.get(a) {
            key.push_str(&canonical(v));
        }
        key.push('\u{1f}');
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::error::Diagnostics;
    use crate::spec::yaml::{Node, Pos};
    use serde_json::json;

    fn axis(name: &str, values: Vec<Value>) -> RawAxis {
        RawAxis {
            name: name.into(),
            pos: Pos::default(),
            values: values
                .into_iter()
                .map(|v| Node::new(v, Pos { line: 1, col: 1 }))
                .collect(),
        }
    }

    #[test]
    fn product_is_in_declaration_order() {
        let mut diag = Diagnostics::new("p.yaml".into());
        let axes = [
            axis("ratio", vec![Value::Float(0.5), Value::Float(1.0)]),
            axis(
                "method",
                vec![Value::Str("random".into()), Value::Str("centroid".into())],
            ),
        ];
        let all = product(&axes, Ctx::default(), &mut diag);
        assert!(diag.is_empty());
        let names: Vec<String> = all.iter().map(|c| instance_name("select", c)).collect();
        assert_eq!(
            names,
            [
                "select[method=random,ratio=0.5]",
                "select[method=centroid,ratio=0.5]",
                "select[method=random,ratio=1.0]",
                "select[method=centroid,ratio=1.0]",
            ]
        );
    }

    #[test]
    fn repeated_values_are_reported() {
        let mut diag = Diagnostics::new("p.yaml".into());
        let axes = [axis("seed", vec![Value::Int(1), Value::Float(1.0)])];
        let all = product(&axes, Ctx::default(), &mut diag);
        assert_eq!(all.len(), 1);
        assert!(diag.into_errors().to_string().contains("repeats the value"));
    }

    #[test]
    fn names_and_keys() {
        assert_eq!(instance_name("report", &Coords::new()), "report");
        assert_eq!(canonical(&json!(1)), canonical(&json!(1.0)));
        assert_ne!(canonical(&json!(1)), canonical(&json!("1")));
        assert_eq!(value_text(&json!(2.0)), "2.0");
        assert_eq!(value_text(&json!(true)), "true");
    }
}
