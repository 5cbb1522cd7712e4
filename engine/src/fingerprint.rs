//! The stage fingerprint: everything that decides a stage's output, in one versioned
//! struct, encoded as canonical JSON and hashed with blake3 into its [`StageKey`].
//!
//! What enters: the key schema version, the kind and its version, the canonical
//! parameters (defaults filled in by the resolver), each input slot's upstream artifact
//! hashes by slot name (a list keeps its order; an unbound optional slot is absent, which
//! differs from an empty list), the content hashes of external data (path parameters and
//! command `deps`), a command's `run` line and `outs`, and the pipeline salt.
//! What never enters: resources, retries, the stage id, the instance name, the executor
//! and the device — they decide where and how a stage runs, not what it computes.
//!
//! Each execution stores its fingerprint JSON, so [`Fingerprint::diff`] can tell
//! `histodiff why` and `histodiff plan` which field changed.

use crate::hash::{ArtifactHash, StageKey};
use crate::plan::{Instance, SmallMap};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Version of the fingerprint encoding. Bumping it disowns every cached result.
pub const KEY_SCHEMA: u32 = 1;

/// Prefix of the `externals` key of a command dependency (`deps:scripts/extra.py`).
pub const DEPS_PREFIX: &str = "deps:";

/// The upstream artifact hashes bound to one input slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotHashes {
    One(ArtifactHash),
    /// A list slot, in binding order (order matters: it is the order the stage reads).
    Many(Vec<ArtifactHash>),
}

/// What a `command` stage runs: the `run` line (params and matrix interpolated, inputs
/// and outs still symbolic) and its declared outs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFingerprint {
    pub run: String,
    /// Out name → path relative to the work directory, `/`-separated.
    pub outs: SmallMap<String, String>,
}

/// The versioned fingerprint of one stage instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub key_schema: u32,
    pub kind: String,
    pub kind_version: u32,
    /// Canonical parameters (every schema key present, defaults filled).
    pub params: serde_json::Map<String, Value>,
    /// Slot → upstream artifact hashes. Absent slot ≠ `Many(vec![])`.
    pub inputs: SmallMap<String, SlotHashes>,
    /// Path parameter name (or `deps:<path>`) → content hash of that external data.
    pub externals: SmallMap<String, ArtifactHash>,
    pub command: Option<CommandFingerprint>,
    pub salt: String,
}

/// Why a fingerprint could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("invalid fingerprint JSON: {0}")]
pub struct FingerprintError(#[from] serde_json::Error);

/// One field that differs between two fingerprints, e.g. `params.lr` or `inputs.train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted field name: `kind_version`, `params.<name>`, `inputs.<slot>`,
    /// `externals.<param>`, `command`, `salt`, `key_schema`, `kind`.
    pub field: String,
    /// `None` when the field was absent before (added).
    pub old: Option<Value>,
    /// `None` when the field is absent now (removed).
    pub new: Option<Value>,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| match v {
            Some(v) => canonical_json(v),
            None => "(absent)".to_string(),
        };
        write!(
            f,
            "{}: {} → {}",
            self.field,
            show(&self.old),
            show(&self.new)
        )
    }
}

impl Fingerprint {
    /// The fingerprint of a planned instance, given the hashes the scheduler resolved:
    /// its inputs' upstream artifacts and its external data (see [`dep_key`]).
    pub fn of(
        instance: &Instance,
        inputs: SmallMap<String, SlotHashes>,
        externals: SmallMap<String, ArtifactHash>,
        salt: &str,
    ) -> Self {
        let command = instance.command.as_ref().map(|c| CommandFingerprint {
            run: c.run.clone(),
            outs: c
                .outs
                .iter()
                .map(|(k, p)| (k.clone(), slash_path(p)))
                .collect(),
        });
        Fingerprint {
            key_schema: KEY_SCHEMA,
            kind: instance.kind.clone(),
            kind_version: instance.kind_version,
            params: instance.params.clone(),
            inputs,
            externals,
            command,
            salt: salt.to_string(),
        }
    }

    /// Canonical JSON: object keys sorted at every depth, no whitespace. Written field by
    /// field (in sorted order) rather than through a `serde_json::Value`, because every
    /// instance of every run computes it; `canonical_json(&to_value(self))` gives the same
    /// bytes (tests/hash_fingerprint.rs checks it on generated fingerprints).
    pub fn canonical_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"command\":");
        match &self.command {
            None => out.extend_from_slice(b"null"),
            Some(c) => {
                out.extend_from_slice(b"{\"outs\":");
                write_sorted(&mut out, &c.outs, |out, v| write_scalar(v, out));
                out.extend_from_slice(b",\"run\":");
                write_scalar(&c.run, &mut out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"externals\":");
        write_sorted(&mut out, &self.externals, |out, h| write_scalar(&h.0, out));
        out.extend_from_slice(b",\"inputs\":");
        write_sorted(&mut out, &self.inputs, write_slot);
        out.extend_from_slice(b",\"key_schema\":");
        write_scalar(&self.key_schema, &mut out);
        out.extend_from_slice(b",\"kind\":");
        write_scalar(&self.kind, &mut out);
        out.extend_from_slice(b",\"kind_version\":");
        write_scalar(&self.kind_version, &mut out);
        out.extend_from_slice(b",\"params\":");
        let params: BTreeMap<&String, &Value> = self.params.iter().collect();
        write_sorted(&mut out, &params, |out, v| write_canonical(v, out));
        out.extend_from_slice(b",\"salt\":");
        write_scalar(&self.salt, &mut out);
        out.push(b'}');
        String::from_utf8(out).expect("JSON text is UTF-8")
    }

    /// blake3 of the canonical JSON.
    pub fn key(&self) -> StageKey {
        StageKey(
            blake3::hash(self.canonical_json().as_bytes())
                .to_hex()
                .to_string(),
        )
    }

    /// Reads a fingerprint stored by an execution.
    pub fn from_json(json: &str) -> Result<Self, FingerprintError> {
        Ok(serde_json::from_str(json)?)
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a fingerprint always serialises")
    }

    /// The fields that differ from `old` to `new`, parameters, inputs and externals one
    /// entry each, in a stable order.
    pub fn diff(old: &Fingerprint, new: &Fingerprint) -> Vec<FieldChange> {
        let (old, new) = (old.to_value(), new.to_value());
        let mut changes = Vec::new();
        for field in ["key_schema", "kind", "kind_version"] {
            push_change(
                &mut changes,
                field.to_string(),
                old.get(field),
                new.get(field),
            );
        }
        for map in ["params", "inputs", "externals"] {
            diff_map(&mut changes, map, old.get(map), new.get(map));
        }
        for field in ["command", "salt"] {
            push_change(
                &mut changes,
                field.to_string(),
                old.get(field),
                new.get(field),
            );
        }
        changes
    }
}

/// The `externals` key of a command dependency.
pub fn dep_key(dep: &Path) -> String {
    format!("{DEPS_PREFIX}{}", slash_path(dep))
}

fn slash_path(p: &Path) -> String {
    let parts: Vec<String> = p
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

fn diff_map(out: &mut Vec<FieldChange>, name: &str, old: Option<&Value>, new: Option<&Value>) {
    let empty = serde_json::Map::new();
    let old = old.and_then(Value::as_object).unwrap_or(&empty);
    let new = new.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        push_change(out, format!("{name}.{k}"), old.get(k), new.get(k));
    }
}

fn push_change(
    out: &mut Vec<FieldChange>,
    field: String,
    old: Option<&Value>,
    new: Option<&Value>,
) {
    // JSON null and an absent field mean the same here (e.g. `command: null`).
    let norm = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    let (old, new) = (norm(old), norm(new));
    let same = match (&old, &new) {
        (Some(a), Some(b)) => canonical_json(a) == canonical_json(b),
        (None, None) => true,
        _ => false,
    };
    if !same {
        out.push(FieldChange { field, old, new });
    }
}

/// Canonical JSON text of a value: object keys sorted (by their UTF-8 bytes) at every
/// depth, arrays in order, no whitespace, numbers and strings as serde_json writes them.
/// Written by hand so the encoding does not depend on serde_json's `preserve_order`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// Writes straight into one buffer (this runs once per instance, 30,000 times for a
/// 10,000-member sweep); strings and scalars are escaped exactly as serde_json prints
/// them, so keys stay stable.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(k, out);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// A JSON object of a sorted map, each value written by `value`.
fn write_sorted<'a, K: AsRef<str> + 'a, V: 'a>(
    out: &mut Vec<u8>,
    map: impl IntoIterator<Item = (&'a K, &'a V)>,
    value: impl Fn(&mut Vec<u8>, &V),
) {
    out.push(b'{');
    for (i, (k, v)) in map.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_scalar(k.as_ref(), out);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

/// A slot as serde writes [`SlotHashes`]: `{"one":h}` or `{"many":[h,…]}`.
fn write_slot(out: &mut Vec<u8>, slot: &SlotHashes) {
    match slot {
        SlotHashes::One(h) => {
            out.extend_from_slice(b"{\"one\":");
            write_scalar(&h.0, out);
        }
        SlotHashes::Many(hashes) => {
            out.extend_from_slice(b"{\"many\":[");
            for (i, h) in hashes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&h.0, out);
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("writing JSON to memory cannot fail");
}
