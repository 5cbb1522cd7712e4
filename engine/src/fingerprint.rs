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
use std::borrow::Cow;
use std::fmt;
use std::io::Write;
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

/// A fingerprint's fields by reference, as the key hashes them. A cache hit needs only
/// its key, so the scheduler keys an instance from this view of its plan entry and the
/// hashes it resolved, and builds the owned [`Fingerprint`] (kept with an execution) only
/// for a miss: at N = 10,000 that is 30,000 keys without a dozen allocations each.
#[derive(Debug, Clone, PartialEq)]
pub struct FingerprintRef<'a> {
    pub kind: &'a str,
    pub kind_version: u32,
    pub params: &'a serde_json::Map<String, Value>,
    /// Slot → hashes, sorted by slot.
    pub inputs: Vec<(&'a str, SlotRef<'a>)>,
    /// External key → content hash, sorted by key.
    pub externals: Vec<(Cow<'a, str>, &'a ArtifactHash)>,
    pub command: Option<CommandRef<'a>>,
    pub salt: &'a str,
}

/// [`SlotHashes`] by reference.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotRef<'a> {
    One(&'a ArtifactHash),
    Many(Vec<&'a ArtifactHash>),
}

/// [`CommandFingerprint`] by reference: the `run` line and the outs (`/`-separated
/// paths), sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRef<'a> {
    pub run: &'a str,
    pub outs: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> FingerprintRef<'a> {
    /// The view of a planned instance's fingerprint, given its inputs' upstream artifact
    /// hashes (sorted by slot) and its external data hashes (sorted by key).
    pub fn of(
        instance: &'a Instance,
        inputs: Vec<(&'a str, SlotRef<'a>)>,
        externals: Vec<(Cow<'a, str>, &'a ArtifactHash)>,
        salt: &'a str,
    ) -> Self {
        let command = instance.command.as_ref().map(|c| CommandRef {
            run: &c.run,
            outs: c
                .outs
                .iter()
                .map(|(k, p)| (k.as_str(), slash_path(p)))
                .collect(),
        });
        FingerprintRef {
            kind: &instance.kind,
            kind_version: instance.kind_version,
            params: &instance.params,
            inputs,
            externals,
            command,
            salt,
        }
    }

    /// The owned fingerprint, as an execution stores it.
    pub fn to_owned(&self) -> Fingerprint {
        let slot = |(name, hashes): &(&str, SlotRef<'_>)| {
            let hashes = match hashes {
                SlotRef::One(h) => SlotHashes::One((*h).clone()),
                SlotRef::Many(hs) => SlotHashes::Many(hs.iter().map(|h| (*h).clone()).collect()),
            };
            (name.to_string(), hashes)
        };
        Fingerprint {
            key_schema: KEY_SCHEMA,
            kind: self.kind.to_string(),
            kind_version: self.kind_version,
            params: self.params.clone(),
            inputs: self.inputs.iter().map(slot).collect(),
            externals: self
                .externals
                .iter()
                .map(|(k, h)| (k.to_string(), (*h).clone()))
                .collect(),
            command: self.command.as_ref().map(|c| CommandFingerprint {
                run: c.run.to_string(),
                outs: c
                    .outs
                    .iter()
                    .map(|(k, p)| (k.to_string(), p.to_string()))
                    .collect(),
            }),
            salt: self.salt.to_string(),
        }
    }

    /// blake3 of the canonical JSON, hashed as it is written (no text is kept).
    pub fn key(&self) -> StageKey {
        let mut hasher = blake3::Hasher::new();
        self.write_canonical(&mut hasher)
            .expect("hashing cannot fail");
        StageKey(hasher.finalize().to_hex().to_string())
    }

    /// Canonical JSON: object keys sorted at every depth, no whitespace. Written field by
    /// field (in sorted order) rather than through a `serde_json::Value`, because every
    /// instance of every run computes it; `canonical_json(&to_value(fingerprint))` gives
    /// the same bytes (tests/hash_fingerprint.rs checks it on generated fingerprints).
    pub fn write_canonical(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(b"{\"command\":")?;
        match &self.command {
            None => out.write_all(b"null")?,
            Some(c) => {
                out.write_all(b"{\"outs\":")?;
                write_sorted(out, c.outs.iter().map(|(k, p)| (*k, p)), |out, p| {
                    write_scalar(p.as_ref(), out)
                })?;
                out.write_all(b",\"run\":")?;
                write_scalar(c.run, out)?;
                out.write_all(b"}")?;
            }
        }
        out.write_all(b",\"externals\":")?;
        write_sorted(
            out,
            self.externals.iter().map(|(k, h)| (k.as_ref(), h)),
            |out, h| write_scalar(&h.0, out),
        )?;
        out.write_all(b",\"inputs\":")?;
        write_sorted(out, self.inputs.iter().map(|(k, s)| (*k, s)), write_slot)?;
        out.write_all(b",\"key_schema\":")?;
        write_scalar(&KEY_SCHEMA, out)?;
        out.write_all(b",\"kind\":")?;
        write_scalar(self.kind, out)?;
        out.write_all(b",\"kind_version\":")?;
        write_scalar(&self.kind_version, out)?;
        out.write_all(b",\"params\":")?;
        let mut params: Vec<(&String, &Value)> = self.params.iter().collect();
        params.sort_unstable_by_key(|(k, _)| *k);
        write_sorted(
            out,
            params.into_iter().map(|(k, v)| (k.as_str(), v)),
            |out, v| write_canonical(v, out),
        )?;
        out.write_all(b",\"salt\":")?;
        write_scalar(self.salt, out)?;
        out.write_all(b"}")
    }
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
        let externals = externals
            .iter()
            .map(|(k, h)| (Cow::Borrowed(k.as_str()), h))
            .collect();
        let inputs = inputs.iter().map(slot_ref).collect();
        FingerprintRef::of(instance, inputs, externals, salt).to_owned()
    }

    /// Canonical JSON: object keys sorted at every depth, no whitespace (see
    /// [`FingerprintRef::write_canonical`]).
    pub fn canonical_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.as_ref()
            .write_canonical(&mut out)
            .expect("writing JSON to memory cannot fail");
        String::from_utf8(out).expect("JSON text is UTF-8")
    }

    /// blake3 of the canonical JSON.
    pub fn key(&self) -> StageKey {
        self.as_ref().key()
    }

    /// The same fields by reference.
    pub fn as_ref(&self) -> FingerprintRef<'_> {
        FingerprintRef {
            kind: &self.kind,
            kind_version: self.kind_version,
            params: &self.params,
            inputs: self.inputs.iter().map(slot_ref).collect(),
            externals: self
                .externals
                .iter()
                .map(|(k, h)| (Cow::Borrowed(k.as_str()), h))
                .collect(),
            command: self.command.as_ref().map(|c| CommandRef {
                run: &c.run,
                outs: c
                    .outs
                    .iter()
                    .map(|(k, p)| (k.as_str(), Cow::Borrowed(p.as_str())))
                    .collect(),
            }),
            salt: &self.salt,
        }
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

fn slot_ref<'a>((name, hashes): (&'a String, &'a SlotHashes)) -> (&'a str, SlotRef<'a>) {
    let hashes = match hashes {
        SlotHashes::One(h) => SlotRef::One(h),
        SlotHashes::Many(hs) => SlotRef::Many(hs.iter().collect()),
    };
    (name.as_str(), hashes)
}

/// The `externals` key of a command dependency.
pub fn dep_key(dep: &Path) -> String {
    format!("{DEPS_PREFIX}{}", slash_path(dep))
}

/// A path as it enters keys: its components joined by `/` (so `a//b/` is `a/b`, and an
/// absolute `/a` is `//a`). Every command instance keys its outs this way, so a path
/// already in that form (the usual `model.pt`, `out/images`) is borrowed as written.
fn slash_path(p: &Path) -> Cow<'_, str> {
    match p.to_str() {
        Some(text) if is_slash_joined(text) => Cow::Borrowed(text),
        _ => Cow::Owned(joined_components(p)),
    }
}

/// Whether a relative path's text already equals its components joined by `/`: no
/// empty, `.` (past the first) or trailing component that `components()` would drop.
fn is_slash_joined(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('/')
        && !text.ends_with('/')
        && !text.ends_with("/.")
        && !text.contains("//")
        && !text.contains("/./")
}

fn joined_components(p: &Path) -> String {
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
    write_canonical(value, &mut out).expect("writing JSON to memory cannot fail");
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// Writes straight into the sink (this runs once per instance, 30,000 times for a
/// 10,000-member sweep); strings and scalars are escaped exactly as serde_json prints
/// them, so keys stay stable.
fn write_canonical(value: &Value, out: &mut impl Write) -> std::io::Result<()> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.write_all(b"{")?;
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_scalar(k, out)?;
                out.write_all(b":")?;
                write_canonical(&map[k], out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(v, out)?;
            }
            out.write_all(b"]")
        }
        scalar => write_scalar(scalar, out),
    }
}

/// A JSON object of entries sorted by key, each value written by `value`.
fn write_sorted<'a, W: Write, V: 'a>(
    out: &mut W,
    entries: impl IntoIterator<Item = (&'a str, V)>,
    value: impl Fn(&mut W, V) -> std::io::Result<()>,
) -> std::io::Result<()> {
    out.write_all(b"{")?;
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_scalar(k, out)?;
        out.write_all(b":")?;
        value(out, v)?;
    }
    out.write_all(b"}")
}

/// A slot as serde writes [`SlotHashes`]: `{"one":h}` or `{"many":[h,…]}`.
fn write_slot(out: &mut impl Write, slot: &SlotRef<'_>) -> std::io::Result<()> {
    match slot {
        SlotRef::One(h) => {
            out.write_all(b"{\"one\":")?;
            write_scalar(&h.0, out)?;
        }
        SlotRef::Many(hashes) => {
            out.write_all(b"{\"many\":[")?;
            for (i, h) in hashes.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_scalar(&h.0, out)?;
            }
            out.write_all(b"]")?;
        }
    }
    out.write_all(b"}")
}

fn write_scalar<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut impl Write,
) -> std::io::Result<()> {
    serde_json::to_writer(out, value).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed form is only taken where it equals the joined components, which is
    /// what every stored key was made of.
    #[test]
    fn a_path_is_borrowed_only_when_already_slash_joined() {
        let paths = [
            "model.pt",
            "out/images",
            "a//b",
            "a/./b",
            "a/b/",
            "a/.",
            "./a",
            ".",
            "..",
            "../a",
            "a/../b",
            "/abs/path",
            "//x",
            "a b/c.txt",
            "",
        ];
        for text in paths {
            let path = Path::new(text);
            let fast = slash_path(path);
            assert_eq!(fast, joined_components(path), "{text:?}");
            if matches!(fast, Cow::Borrowed(_)) {
                assert!(is_slash_joined(text), "{text:?}");
            }
        }
        assert!(matches!(
            slash_path(Path::new("out/images")),
            Cow::Borrowed(_)
        ));
    }
}
