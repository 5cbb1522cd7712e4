//! Short constructors for kind schemas (parameters and slots), so each kind's `spec()`
//! reads as a table, and the few parameter readers the engine's `StageContext` lacks
//! (optional values, lists, path lists).

use histodiff_engine::registry::{ParamSpec, ParamType, SlotSpec};
use histodiff_engine::stage::{StageContext, StageError};
use serde_json::Value;
use std::path::PathBuf;

pub fn param(name: &str, ty: ParamType, default: Option<Value>, doc: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        ty,
        default,
        doc: doc.into(),
    }
}

pub fn int(min: Option<i64>, max: Option<i64>) -> ParamType {
    ParamType::Int { min, max }
}

pub fn float(min: Option<f64>, max: Option<f64>) -> ParamType {
    ParamType::Float { min, max }
}

pub fn one_of(values: &[&str]) -> ParamType {
    ParamType::Enum {
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

pub fn list(item: ParamType) -> ParamType {
    ParamType::List {
        item: Box::new(item),
    }
}

pub fn slot(name: &str, required: bool, many: bool, doc: &str) -> SlotSpec {
    SlotSpec {
        name: name.into(),
        required,
        many,
        doc: doc.into(),
    }
}

/// The `preset` parameter of the model kinds: the paper's sizes, or `tiny` for a CPU.
pub fn preset_param(doc: &str) -> ParamSpec {
    param(
        "preset",
        one_of(&["tiny", "paper"]),
        Some("paper".into()),
        doc,
    )
}

/// `batch_size`: at least 1.
pub fn batch_size_param(default: i64, doc: &str) -> ParamSpec {
    param("batch_size", int(Some(1), None), Some(default.into()), doc)
}

/// `lr`: a learning rate, not negative.
pub fn lr_param(default: f64, doc: &str) -> ParamSpec {
    param("lr", float(Some(0.0), None), Some(default.into()), doc)
}

/// The `image_size` parameter every data kind has.
pub fn image_size_param(default: i64) -> ParamSpec {
    param(
        "image_size",
        int(Some(8), Some(4096)),
        Some(default.into()),
        "side of the square images after resize and centre crop (SPEC §1)",
    )
}

/// A parameter that may be absent or null.
pub fn optional<'a>(ctx: &'a StageContext, name: &str) -> Option<&'a Value> {
    ctx.param(name).filter(|v| !v.is_null())
}

/// A non-negative integer parameter as usize.
pub fn usize_param(ctx: &StageContext, name: &str) -> Result<usize, StageError> {
    let v = ctx.param_i64(name)?;
    usize::try_from(v)
        .map_err(|_| StageError::Invalid(format!("parameter `{name}` must be ≥ 0, got {v}")))
}

/// A list-of-strings parameter (None when absent or null).
pub fn string_list(ctx: &StageContext, name: &str) -> Result<Option<Vec<String>>, StageError> {
    let Some(v) = optional(ctx, name) else {
        return Ok(None);
    };
    let bad = || StageError::Invalid(format!("parameter `{name}` must be a list of strings"));
    let items = v.as_array().ok_or_else(bad)?;
    items
        .iter()
        .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Paths of a list-of-paths parameter, each with the text written in the pipeline (kept
/// for manifests, since it does not depend on the machine). The engine puts item `i` of
/// list parameter `name` into `external_paths` as `name.i`; a single path parameter is
/// `name`. Where the engine left a path out, it is resolved against the pipeline folder.
pub fn path_list(ctx: &StageContext, name: &str) -> Result<Vec<(String, PathBuf)>, StageError> {
    let Some(texts) = string_list(ctx, name)? else {
        return Ok(Vec::new());
    };
    Ok(texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let path = ctx
                .job
                .external_paths
                .get(&format!("{name}.{i}"))
                .cloned()
                .unwrap_or_else(|| ctx.job.base_dir.join(&text));
            (text, path)
        })
        .collect())
}

/// A single optional path parameter: (text as written, absolute path).
pub fn optional_path(
    ctx: &StageContext,
    name: &str,
) -> Result<Option<(String, PathBuf)>, StageError> {
    let Some(v) = optional(ctx, name) else {
        return Ok(None);
    };
    let text = v
        .as_str()
        .ok_or_else(|| StageError::Invalid(format!("parameter `{name}` must be a path string")))?;
    let path = ctx
        .job
        .external_paths
        .get(name)
        .cloned()
        .unwrap_or_else(|| ctx.job.base_dir.join(text));
    Ok(Some((text.to_string(), path)))
}

/// Converts a data error into the stage error that names the file.
pub fn invalid(e: impl std::fmt::Display) -> StageError {
    StageError::Invalid(e.to_string())
}
