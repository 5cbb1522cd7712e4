//! A test registry whose kinds mirror DESIGN's stage kinds (names, slots, outputs and
//! parameter schemas), so spec tests do not depend on the stages crate.

#![allow(dead_code)]

use histodiff_engine::registry::{KindSpec, ParamSpec, ParamType, Registry, SlotSpec};
use serde_json::json;
use std::path::PathBuf;

pub fn param(name: &str, ty: ParamType, default: Option<serde_json::Value>) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        ty,
        default,
        doc: format!("the {name}"),
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

pub fn slot(name: &str, required: bool, many: bool) -> SlotSpec {
    SlotSpec {
        name: name.into(),
        required,
        many,
        doc: format!("the {name}"),
    }
}

pub fn kind(
    name: &str,
    params: Vec<ParamSpec>,
    inputs: Vec<SlotSpec>,
    outputs: &[&str],
) -> KindSpec {
    KindSpec {
        name: name.into(),
        version: 1,
        params,
        inputs,
        outputs: outputs.iter().map(|o| o.to_string()).collect(),
        resumable: false,
        doc: name.into(),
    }
}

/// `command` plus DESIGN's kinds with representative schemas.
pub fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    let size = || param("image_size", int(Some(8), Some(4096)), Some(json!(256)));
    r.insert(kind(
        "data/image-folder",
        vec![param("path", ParamType::Path, None), size()],
        vec![],
        &["images"],
    ));
    r.insert(kind(
        "data/images",
        vec![
            param(
                "paths",
                ParamType::List {
                    item: Box::new(ParamType::Path),
                },
                None,
            ),
            size(),
        ],
        vec![],
        &["images"],
    ));
    r.insert(kind(
        "data/subset",
        vec![
            param("fraction", float(Some(0.0), Some(1.0)), Some(json!(0.05))),
            param(
                "per_class",
                one_of(&["even", "proportional"]),
                Some(json!("even")),
            ),
            param("seed", int(Some(0), None), Some(json!(0))),
        ],
        vec![slot("images", true, false)],
        &["images"],
    ));
    r.insert(kind(
        "histodiffusion/train-diffusion",
        vec![
            param("steps", int(Some(1), None), Some(json!(1000))),
            param("lr", float(Some(0.0), None), Some(json!(1e-4))),
        ],
        vec![slot("images", true, false)],
        &["model", "ema"],
    ));
    r.insert(kind(
        "histodiffusion/train-image-classifier",
        vec![param("epochs", int(Some(1), None), Some(json!(10)))],
        vec![slot("images", true, false)],
        &["model"],
    ));
    r.insert(kind(
        "histodiffusion/sample",
        vec![
            param("per_class", int(Some(1), None), None),
            param("guidance", float(Some(0.0), None), Some(json!(1.0))),
            param("seed", int(Some(0), None), Some(json!(0))),
        ],
        vec![
            slot("diffusion", true, false),
            slot("classifier", false, false),
        ],
        &["images"],
    ));
    r.insert(kind(
        "histodiffusion/select",
        vec![
            param("ratio", float(Some(0.0), Some(10.0)), None),
            param(
                "method",
                one_of(&["random", "centroid"]),
                Some(json!("random")),
            ),
            param("seed", int(Some(0), None), Some(json!(0))),
        ],
        vec![
            slot("pool", true, false),
            slot("real", true, false),
            slot("features", false, false),
        ],
        &["images"],
    ));
    r.insert(kind(
        "histodiffusion/train-classifier",
        vec![
            param("epochs", int(Some(1), None), Some(json!(30))),
            param("lr", float(Some(0.0), None), Some(json!(1e-4))),
            param("pretrained", ParamType::Bool, Some(json!(true))),
        ],
        vec![slot("train", true, true), slot("test", true, false)],
        &["metrics", "model"],
    ));
    r.insert(kind(
        "report/table",
        vec![param("title", ParamType::String, Some(json!("results")))],
        vec![slot("results", true, true)],
        &["table"],
    ));
    r
}

/// `tests/pipelines` at the repository root.
pub fn pipelines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/pipelines")
}
