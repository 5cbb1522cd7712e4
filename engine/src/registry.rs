//! The registry of stage kinds: what the engine knows of a stage without linking it.
//!
//! A kind is a name, a version (bumped whenever its behaviour changes, so old cache
//! entries are disowned), a parameter schema (checked against `with:`), input slots and
//! output names. The stages crate builds [`KindSpec`]s for its kinds; the engine adds the
//! built-in `command` kind. Nothing here runs a stage.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The type of one `with:` parameter, with its range where it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParamType {
    Bool,
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Float {
        min: Option<f64>,
        max: Option<f64>,
    },
    String,
    /// One of a fixed set of strings.
    Enum {
        values: Vec<String>,
    },
    /// A path to external data, relative to the pipeline file. Its *content* enters the
    /// stage key (through the stat cache), not its name.
    Path,
    /// A list of values of one type.
    List {
        item: Box<ParamType>,
    },
}

/// One parameter of a kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub ty: ParamType,
    /// `None` means the parameter is required; `Some(null)` that it is optional.
    /// (Serialised as an absent key and a `null`, so that the CLI's copy of the specs in
    /// `stages/kinds.json` keeps the difference.)
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    pub default: Option<serde_json::Value>,
    /// One line for `histodiff kinds` and error messages.
    pub doc: String,
}

/// A present key is `Some`, even when its value is `null`.
fn present_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// One input slot of a kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotSpec {
    pub name: String,
    pub required: bool,
    /// A list slot accepts `[a, b]` and `stage[*]`; a single slot takes one artifact.
    pub many: bool,
    pub doc: String,
}

/// Everything the engine knows about a stage kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindSpec {
    /// e.g. `histodiffusion/train-diffusion`.
    pub name: String,
    /// Enters every stage key of this kind; bump on behaviour change.
    pub version: u32,
    pub params: Vec<ParamSpec>,
    pub inputs: Vec<SlotSpec>,
    /// Output names; the first is the default when a reference names no output.
    /// Empty for `command`, whose outputs come from `outs:`.
    pub outputs: Vec<String>,
    /// Whether the kind trains or samples for long and may write checkpoints.
    pub resumable: bool,
    pub doc: String,
}

/// The name of the built-in kind that runs any program.
pub const COMMAND_KIND: &str = "command";

/// All kinds a pipeline may use, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, KindSpec>,
}

impl ParamType {
    /// The type as an error message names it ("an integer", "a list of a string").
    pub fn describe(&self) -> String {
        match self {
            ParamType::Bool => "a boolean".into(),
            ParamType::Int { .. } => "an integer".into(),
            ParamType::Float { .. } => "a number".into(),
            ParamType::String => "a string".into(),
            ParamType::Enum { values } => format!("one of {}", values.join(", ")),
            ParamType::Path => "a path (string)".into(),
            ParamType::List { item } => format!("a list of {}", item.describe()),
        }
    }
}

impl Registry {
    /// A registry holding only the built-in `command` kind.
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        r.insert(command_kind());
        r
    }

    pub fn insert(&mut self, kind: KindSpec) {
        self.kinds.insert(kind.name.clone(), kind);
    }

    pub fn get(&self, name: &str) -> Option<&KindSpec> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &KindSpec> {
        self.kinds.values()
    }
}

/// `command` has no `with:` schema of its own: `run`, `deps` and `outs` are stage fields.
fn command_kind() -> KindSpec {
    KindSpec {
        name: COMMAND_KIND.to_string(),
        version: 1,
        params: vec![],
        inputs: vec![],
        outputs: vec![],
        resumable: false,
        doc: "any program with declared inputs, deps and outs".to_string(),
    }
}
