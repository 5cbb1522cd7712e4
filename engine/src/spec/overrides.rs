//! `--set PATH=VALUE`: command-line edits of the pipeline document, as Snakemake's
//! `--config` or DVC's `-S`.
//!
//! An override replaces (or adds) one node of the parsed YAML tree before the raw layer
//! reads it, so it enters a stage key exactly as the same value written in the file would:
//! `${params.x}` sees it, matrices expand it, schemas check it. VALUE is read by the same
//! YAML parser as the file, as if written after `key: `. Nodes an override brings carry
//! [`Pos::from_set`], so a later error about them names the `--set` argument instead of an
//! unrelated line of the file.
//!
//! PATH is dotted mapping keys. A missing key is added only where the file may legitimately
//! leave it out: `params` and `settings` at the top, any key in them and in
//! `settings.slurm`, a stage key (`with`, `resources`, ...) in an existing stage, and any
//! key in a stage's `with` or `resources`. Anything else missing (a stage above all), or a
//! path through a list or scalar, is an error.

use super::error::{Ctx, Diagnostics};
use super::raw::STAGE_KEYS;
use super::suggest;
use super::yaml::{self, Node, Pos, Value};

/// One well-formed `--set` argument.
#[derive(Debug, Clone)]
pub struct Override {
    /// Its place among the `--set` arguments (for [`Pos::from_set`]).
    index: usize,
    path: Vec<String>,
    value: Node,
}

/// Parses every `--set` argument; malformed ones are reported and left out.
pub fn parse_all(args: &[String], diag: &mut Diagnostics) -> Vec<Override> {
    let mut out = Vec::with_capacity(args.len());
    for (index, arg) in args.iter().enumerate() {
        match parse(arg, index) {
            Ok(o) => out.push(o),
            Err(message) => diag.report(Pos::from_set(index), Ctx::default(), message),
        }
    }
    out
}

fn parse(arg: &str, index: usize) -> Result<Override, String> {
    let Some((path, text)) = arg.split_once('=') else {
        return Err("expected PATH=VALUE, e.g. `params.image_size=64`".into());
    };
    let path = path.trim();
    if path.is_empty() {
        return Err("empty PATH: expected PATH=VALUE, e.g. `params.image_size=64`".into());
    }
    let path: Vec<String> = path.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err("PATH has an empty key: write keys separated by single dots".into());
    }
    let mut value = parse_value(text)?;
    relocate(&mut value, Pos::from_set(index));
    Ok(Override { index, path, value })
}

/// VALUE as the file's parser reads it after `key: ` (`5` an integer, `0.5` a float,
/// `true` a boolean, `[a, b]` a list, `""` an empty string, nothing at all null).
fn parse_value(text: &str) -> Result<Node, String> {
    if text.contains(['\n', '\r']) {
        return Err("VALUE must be one line".into());
    }
    let doc = format!("v: {text}\n");
    let root = yaml::parse(&doc).map_err(|e| {
        let why = e
            .message
            .strip_prefix("invalid YAML: ")
            .unwrap_or(&e.message);
        format!("VALUE is not a YAML value: {why}")
    })?;
    match root.value {
        // One entry: a `#` comment or a stray `key:` cannot have added another.
        Value::Map(mut entries) if entries.len() == 1 => match entries.pop() {
            Some((_, value)) => Ok(value),
            None => Err("VALUE is not a YAML value".into()),
        },
        _ => Err("VALUE is not one YAML value".into()),
    }
}

/// Gives `node` and everything inside it the position `pos`.
fn relocate(node: &mut Node, pos: Pos) {
    node.pos = pos;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|i| relocate(i, pos)),
        Value::Map(entries) => {
            for (k, v) in entries {
                relocate(k, pos);
                relocate(v, pos);
            }
        }
        _ => {}
    }
}

/// Applies `overrides` to the document in order (a later one wins on the same path).
pub fn apply(root: &mut Node, overrides: &[Override], diag: &mut Diagnostics) {
    for o in overrides {
        if let Err(message) = apply_one(root, o) {
            diag.report(Pos::from_set(o.index), Ctx::default(), message);
        }
    }
}

fn apply_one(root: &mut Node, o: &Override) -> Result<(), String> {
    let mut node = root;
    for (depth, key) in o.path.iter().enumerate() {
        let entries = entries_mut(node, &o.path[..depth])?;
        let Some(i) = entries.iter().position(|(k, _)| k.as_str() == Some(key)) else {
            return add(entries, o, depth);
        };
        let slot = &mut entries[i].1;
        if depth + 1 == o.path.len() {
            *slot = o.value.clone();
            return Ok(());
        }
        node = slot;
    }
    Ok(())
}

/// Adds `o.path[depth..]` (missing from `entries` on) with `o.value` at its end. Every key
/// is checked before anything is added, so a refused override leaves the document as
/// the file wrote it.
fn add(entries: &mut Vec<(Node, Node)>, o: &Override, depth: usize) -> Result<(), String> {
    let path = &o.path;
    if let Some(j) = (depth..path.len()).find(|&j| !may_add(&path[..j], &path[j])) {
        // Only the first missing key has siblings to suggest from.
        let known: Vec<&str> = if j == depth {
            entries.iter().filter_map(|(k, _)| k.as_str()).collect()
        } else {
            Vec::new()
        };
        return Err(missing(&path[..j], &path[j], &known));
    }
    let pos = Pos::from_set(o.index);
    let mut value = o.value.clone();
    for key in path[depth + 1..].iter().rev() {
        let key = Node::new(Value::Str(key.clone()), pos);
        value = Node::new(Value::Map(vec![(key, value)]), pos);
    }
    entries.push((Node::new(Value::Str(path[depth].clone()), pos), value));
    Ok(())
}

/// The entries of the mapping at `path`; an empty value (`with:`) becomes an empty mapping,
/// as the raw layer reads it.
fn entries_mut<'n>(
    node: &'n mut Node,
    path: &[String],
) -> Result<&'n mut Vec<(Node, Node)>, String> {
    if node.value == Value::Null {
        node.value = Value::Map(Vec::new());
    }
    match &mut node.value {
        Value::Map(entries) => Ok(entries),
        v if path.is_empty() => Err(format!(
            "the pipeline file is {}, not a mapping",
            v.type_name()
        )),
        v => Err(format!(
            "`{}` is {}, not a mapping: PATH can only name mapping keys",
            path.join("."),
            v.type_name()
        )),
    }
}

/// Whether `--set` may add `key` under `parent`: only where the file may leave a key out.
fn may_add(parent: &[String], key: &str) -> bool {
    let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
    match parent.as_slice() {
        [] => key == "params" || key == "settings",
        ["params" | "settings"] | ["settings", "slurm"] => true,
        ["stages", _] => STAGE_KEYS.contains(&key),
        ["stages", _, "with" | "resources"] => true,
        _ => false,
    }
}

/// Why `key` cannot be added under `parent`, with a did-you-mean among what could be meant.
fn missing(parent: &[String], key: &str, known: &[&str]) -> String {
    let mut candidates = known.to_vec();
    match parent {
        [] => candidates.extend(["params", "settings"]),
        [stages, _] if stages == "stages" => candidates.extend(STAGE_KEYS),
        _ => {}
    }
    let hint = suggest::hint(key, candidates.iter().copied());
    match parent {
        [stages] if stages == "stages" => {
            format!("no stage `{key}`{hint} (`--set` cannot add a stage)")
        }
        [] => format!("no top-level key `{key}`{hint} (`--set` can add `params` and `settings`)"),
        _ => format!(
            "no key `{key}` in `{}`{hint} (`--set` adds keys only to `params`, `settings`, a stage, its `with` and `resources`)",
            parent.join(".")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        match parse_value(text) {
            Ok(n) => n.value,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    #[test]
    fn values_are_typed_as_in_the_file() {
        assert_eq!(value("5"), Value::Int(5));
        assert_eq!(value("0.5"), Value::Float(0.5));
        assert_eq!(value("true"), Value::Bool(true));
        assert_eq!(value("tiny"), Value::Str("tiny".into()));
        assert_eq!(value("'5'"), Value::Str("5".into()));
        assert_eq!(value(""), Value::Null);
        assert_eq!(value("${params.n}"), Value::Str("${params.n}".into()));
        assert!(parse_value("[1, 2").is_err());
        assert!(parse_value("a: b").is_err());
        assert!(parse_value("1\nstages: {}").is_err());
    }

    #[test]
    fn only_optional_keys_may_be_added() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(may_add(&s(&[]), "params"));
        assert!(!may_add(&s(&[]), "stagez"));
        assert!(may_add(&s(&["params"]), "new"));
        assert!(may_add(&s(&["stages", "a"]), "with"));
        assert!(!may_add(&s(&["stages", "a"]), "wiht"));
        assert!(may_add(&s(&["stages", "a", "with"]), "steps"));
        assert!(may_add(&s(&["stages", "a", "resources"]), "cpus"));
        assert!(may_add(&s(&["settings", "slurm"]), "partition"));
        assert!(!may_add(&s(&["stages"]), "new_stage"));
        assert!(!may_add(&s(&["stages", "a", "inputs"]), "x"));
    }
}
