//! Typed parameters. A kind declares its parameters as the fields of one struct (with
//! [`kind!`](super::declare::kind) or [`param_group!`](super::declare::param_group)); each
//! field's Rust type gives the parameter's type, its declaration ([`Decl`]) the range,
//! allowed values and default, and its doc comment the doc. The spec's parameter list is
//! made from the fields, and the job's parameters are read back into the struct by
//! [`from_job`], so a kind never reads a parameter by name.

use histodiff_engine::registry::{ParamSpec, ParamType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ops::{RangeFrom, RangeInclusive};
use std::path::PathBuf;

mod from_job;

pub use from_job::from_job;

/// A Rust type a parameter can have, and the spec type it stands for.
pub trait ParamValue {
    fn param_type() -> ParamType;
    /// Whether `null` deserializes (an `Option`), so the parameter may default to null.
    const NULLABLE: bool = false;
}

macro_rules! int_params {
    ($($t:ty),*) => {$(
        impl ParamValue for $t {
            fn param_type() -> ParamType {
                ParamType::Int { min: None, max: None }
            }
        }
    )*};
}
int_params!(u32, u64, usize, i64);

impl ParamValue for f64 {
    fn param_type() -> ParamType {
        ParamType::Float {
            min: None,
            max: None,
        }
    }
}

impl ParamValue for bool {
    fn param_type() -> ParamType {
        ParamType::Bool
    }
}

impl ParamValue for String {
    fn param_type() -> ParamType {
        ParamType::String
    }
}

impl<T: ParamValue> ParamValue for Vec<T> {
    fn param_type() -> ParamType {
        ParamType::List {
            item: Box::new(T::param_type()),
        }
    }
}

impl<T: ParamValue> ParamValue for Option<T> {
    fn param_type() -> ParamType {
        T::param_type()
    }
    const NULLABLE: bool = true;
}

impl ParamValue for crate::presets::Preset {
    fn param_type() -> ParamType {
        let values = crate::presets::VIT_PRESETS.map(|p| p.name().to_string());
        ParamType::Enum {
            values: values.to_vec(),
        }
    }
}

/// A `path` parameter: the text written in the pipeline (kept for manifests and messages,
/// since it does not depend on the machine) and the file it names, absolute.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExternalPath {
    pub text: String,
    pub path: PathBuf,
}

impl ParamValue for ExternalPath {
    fn param_type() -> ParamType {
        ParamType::Path
    }
}

/// An enum parameter: its names in the spec's order, and the value of each.
pub trait Choice: Sized + Copy + PartialEq + 'static {
    const NAMES: &'static [&'static str];
    fn from_name(name: &str) -> Option<Self>;

    /// The first name that means `self` (aliases come after it).
    fn to_name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|n| Self::from_name(n) == Some(self))
            .expect("every value of a choice has a name")
    }
}

/// A [`Choice`] from its name, refusing other names with the list of known ones.
pub fn deserialize_choice<'de, T: Choice, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    let name = String::deserialize(d)?;
    T::from_name(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, T::NAMES))
}

/// Makes an enum a parameter type: `choice!(Type { "name" => Variant, … })` lists the
/// names in spec order (a later name for the same variant is an alias), or
/// `choice!(Type = NAMES, parse)` takes the names and parser the enum already has.
macro_rules! choice {
    ($ty:ty { $($name:literal => $variant:ident),* $(,)? }) => {
        impl $crate::kinds::params::Choice for $ty {
            const NAMES: &'static [&'static str] = &[$($name),*];
            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(<$ty>::$variant),)*
                    _ => None,
                }
            }
        }
        $crate::kinds::params::choice!(@serde $ty);
    };
    ($ty:ty = $names:expr, $parse:path) => {
        impl $crate::kinds::params::Choice for $ty {
            const NAMES: &'static [&'static str] = &$names;
            fn from_name(name: &str) -> Option<Self> {
                $parse(name)
            }
        }
        $crate::kinds::params::choice!(@serde $ty);
    };
    (@serde $ty:ty) => {
        impl $crate::kinds::params::ParamValue for $ty {
            fn param_type() -> ::histodiff_engine::registry::ParamType {
                let names = <$ty as $crate::kinds::params::Choice>::NAMES;
                ::histodiff_engine::registry::ParamType::Enum {
                    values: names.iter().map(|n| n.to_string()).collect(),
                }
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::kinds::params::deserialize_choice(d)
            }
        }
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($crate::kinds::params::Choice::to_name(*self))
            }
        }
    };
}
pub(crate) use choice;

/// A parameter's declaration apart from its name, type and doc: range, allowed values,
/// default. Built with [`range`], [`default`], [`optional`], [`required`] or [`one_of`].
#[derive(Debug, Clone)]
pub struct Decl {
    bounds: Option<Bounds>,
    values: Option<Vec<Value>>,
    default: Fallback,
    doc: Option<String>,
    declared: bool,
}

#[derive(Debug, Clone)]
enum Fallback {
    Required,
    Null,
    Value(Value),
}

/// The range of a number parameter.
#[derive(Debug, Clone, Copy)]
pub enum Bounds {
    Int(Option<i64>, Option<i64>),
    Float(Option<f64>, Option<f64>),
}

/// Rust ranges as parameter ranges: `1..`, `8..=4096`, `0.0..`, `0.0..=1.0`.
pub trait IntoBounds {
    fn bounds(self) -> Bounds;
}

macro_rules! into_bounds {
    ($t:ty, $variant:ident) => {
        impl IntoBounds for RangeFrom<$t> {
            fn bounds(self) -> Bounds {
                Bounds::$variant(Some(self.start), None)
            }
        }

        impl IntoBounds for RangeInclusive<$t> {
            fn bounds(self) -> Bounds {
                Bounds::$variant(Some(*self.start()), Some(*self.end()))
            }
        }
    };
}
into_bounds!(i64, Int);
into_bounds!(f64, Float);

fn decl(default: Fallback) -> Decl {
    Decl {
        bounds: None,
        values: None,
        default,
        doc: None,
        declared: true,
    }
}

/// A number in `bounds`, required unless a default follows.
pub fn range(bounds: impl IntoBounds) -> Decl {
    Decl {
        bounds: Some(bounds.bounds()),
        ..required()
    }
}

/// A parameter with a default.
pub fn default(value: impl Serialize) -> Decl {
    required().default(value)
}

/// An optional parameter: null unless set (the field is an `Option`).
pub fn optional() -> Decl {
    decl(Fallback::Null)
}

/// A parameter every pipeline must set.
pub fn required() -> Decl {
    decl(Fallback::Required)
}

/// An enum parameter restricted to `values` (in this order), required unless a default
/// follows: e.g. the presets a kind has.
pub fn one_of<T: Serialize>(values: &[T]) -> Decl {
    Decl {
        values: Some(values.iter().map(to_json).collect()),
        ..required()
    }
}

fn to_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("a parameter value serialises")
}

impl Decl {
    /// The value used when the pipeline does not set the parameter.
    pub fn default(mut self, value: impl Serialize) -> Self {
        self.default = Fallback::Value(to_json(value));
        self
    }

    /// Null unless set.
    pub fn optional(mut self) -> Self {
        self.default = Fallback::Null;
        self
    }

    /// A doc for this use of a shared declaration, instead of the field's doc comment.
    pub fn doc(mut self, text: &str) -> Self {
        self.doc = Some(text.into());
        self
    }

    /// Declares the parameter only when `declared` (a group member not every kind has;
    /// the field is an `Option`, `None` where it is not declared).
    pub fn only_if(mut self, declared: bool) -> Self {
        self.declared = declared;
        self
    }
}

/// The doc of a field or kind: its doc comment's lines, trimmed, joined by spaces.
pub fn doc_text(lines: &[&str]) -> String {
    let words: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    words.join(" ")
}

/// The spec of field `name` of type `T` (none when the declaration leaves it out). A
/// declaration that does not fit the type is a mistake in the kind's source, caught by
/// any test that asks for the kind's spec.
pub fn param<T: ParamValue>(name: &str, doc: &[&str], decl: Decl) -> Vec<ParamSpec> {
    if !decl.declared {
        assert!(
            T::NULLABLE,
            "parameter `{name}` may be left out, so it must be an Option"
        );
        return Vec::new();
    }
    let mut ty = T::param_type();
    match (decl.bounds, &mut ty) {
        (None, _) => {}
        (Some(Bounds::Int(lo, hi)), ParamType::Int { min, max }) => (*min, *max) = (lo, hi),
        (Some(Bounds::Float(lo, hi)), ParamType::Float { min, max }) => (*min, *max) = (lo, hi),
        (Some(b), ty) => panic!("parameter `{name}`: range {b:?} does not fit type {ty:?}"),
    }
    if let Some(subset) = decl.values {
        let ParamType::Enum { values } = &mut ty else {
            panic!("parameter `{name}`: allowed values on a {ty:?}");
        };
        let names: Vec<String> = subset
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            names.iter().all(|n| values.contains(n)),
            "parameter `{name}`: {names:?} are not all among {values:?}"
        );
        *values = names;
    }
    let default = match decl.default {
        Fallback::Required => None,
        Fallback::Null => {
            assert!(
                T::NULLABLE,
                "parameter `{name}` defaults to null, so it must be an Option"
            );
            Some(Value::Null)
        }
        Fallback::Value(v) => Some(v),
    };
    vec![ParamSpec {
        name: name.into(),
        ty,
        default,
        doc: decl.doc.unwrap_or_else(|| doc_text(doc)),
    }]
}

/// The specs of a flattened group, with the docs its field's doc comment gives for this
/// kind: a line `member: text` sets that member's doc (further lines continue it).
pub fn group(mut specs: Vec<ParamSpec>, doc: &[&str]) -> Vec<ParamSpec> {
    let mut current: Option<usize> = None;
    for line in doc.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let member = line
            .split_once(": ")
            .and_then(|(name, text)| Some((specs.iter().position(|s| s.name == name)?, text)));
        match (member, current) {
            (Some((i, text)), _) => {
                specs[i].doc = text.to_string();
                current = Some(i);
            }
            (None, Some(i)) => {
                specs[i].doc = format!("{} {line}", specs[i].doc);
            }
            (None, None) => panic!("group doc `{line}` does not start with `member: `"),
        }
    }
    specs
}
