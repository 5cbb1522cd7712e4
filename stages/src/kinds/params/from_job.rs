//! A job's parameters read into a kind's parameter struct, checked against the spec made
//! from that struct, so that what reaches `run` is what the spec allows even where the
//! engine's own check was skipped (a test, a hand-written job).

use histodiff_engine::protocol::Job;
use histodiff_engine::registry::{ParamSpec, ParamType};
use histodiff_engine::stage::StageError;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// The job's parameters as the kind's parameter struct `T`, checked against `specs` (the
/// list made from `T`): an unknown name, a missing required value, a value of the wrong
/// type, out of range or not among the allowed names is refused with the parameter
/// named. `path` values become [`ExternalPath`]s, resolved as the engine resolved them.
pub fn from_job<T: DeserializeOwned>(job: &Job, specs: &[ParamSpec]) -> Result<T, StageError> {
    let kind = &job.kind;
    let fail = |message: String| StageError::Invalid(format!("{kind}: {message}"));
    if let Some(name) = job
        .params
        .keys()
        .find(|k| !specs.iter().any(|s| &s.name == *k))
    {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(fail(format!(
            "unknown parameter `{name}`; expected one of {}",
            known.join(", ")
        )));
    }
    let mut typed = Map::new();
    for spec in specs {
        let value = match (job.params.get(&spec.name), &spec.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => return Err(fail(format!("parameter `{}` is required", spec.name))),
        };
        let nullable = spec.default == Some(Value::Null);
        check(&spec.ty, &value, nullable)
            .map_err(|e| fail(format!("parameter `{}`: {e}", spec.name)))?;
        typed.insert(spec.name.clone(), resolve_paths(job, spec, value));
    }
    serde_json::from_value(Value::Object(typed)).map_err(|e| fail(format!("parameters: {e}")))
}

/// Whether `value` is of type `ty` (null only where the parameter is optional).
fn check(ty: &ParamType, value: &Value, nullable: bool) -> Result<(), String> {
    let number = |v: f64, min: Option<f64>, max: Option<f64>| {
        let range = match (min, max) {
            (Some(a), Some(b)) if v < a || v > b => format!("between {a} and {b}"),
            (Some(a), None) if v < a => format!("at least {a}"),
            (None, Some(b)) if v > b => format!("at most {b}"),
            _ => return Ok(()),
        };
        Err(format!("{value} is out of range: must be {range}"))
    };
    match (ty, value) {
        (_, Value::Null) if nullable => Ok(()),
        (ParamType::Bool, Value::Bool(_)) => Ok(()),
        (ParamType::String | ParamType::Path, Value::String(_)) => Ok(()),
        (ParamType::Int { min, max }, Value::Number(n)) if n.is_i64() || n.is_u64() => number(
            n.as_f64().unwrap_or_default(),
            min.map(|m| m as f64),
            max.map(|m| m as f64),
        ),
        (ParamType::Float { min, max }, Value::Number(n)) => {
            number(n.as_f64().unwrap_or_default(), *min, *max)
        }
        (ParamType::Enum { values }, Value::String(s)) if values.contains(s) => Ok(()),
        (ParamType::Enum { values }, Value::String(s)) => {
            Err(format!("`{s}` is not one of {}", values.join(", ")))
        }
        (ParamType::List { item }, Value::Array(items)) => {
            items.iter().try_for_each(|i| check(item, i, false))
        }
        (ty, value) => Err(format!("expected {}, found {value}", ty.describe())),
    }
}

/// A `path` value (or list of them) as [`ExternalPath`] objects: the engine recorded the
/// absolute path of parameter `name` (item `i` of a list: `name.i`); one it left out is
/// resolved against the pipeline folder.
fn resolve_paths(job: &Job, spec: &ParamSpec, value: Value) -> Value {
    let resolve = |key: String, text: &str| {
        let path = job
            .external_paths
            .get(&key)
            .cloned()
            .unwrap_or_else(|| job.base_dir.join(text));
        json!({ "text": text, "path": path })
    };
    match (&spec.ty, value) {
        (ParamType::Path, Value::String(text)) => resolve(spec.name.clone(), &text),
        (ParamType::List { item }, Value::Array(items)) if **item == ParamType::Path => items
            .iter()
            .enumerate()
            .map(|(i, v)| resolve(format!("{}.{i}", spec.name), v.as_str().unwrap_or_default()))
            .collect(),
        (_, value) => value,
    }
}
