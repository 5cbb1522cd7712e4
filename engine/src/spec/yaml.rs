//! The YAML layer: pipeline text → a tree of [`Node`]s that remember where they came from.
//!
//! Validation reports every problem at once, so the file is first read into a generic,
//! span-carrying tree (serde-saphyr's `Spanned`) instead of typed structs, which would stop
//! at the first unknown key. Duplicate keys are passed through and reported by the raw
//! layer with both places. Input budgets (file size, serde-saphyr's alias and node limits)
//! keep a hostile file from exhausting memory.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::options::DuplicateKeyPolicy;
use serde_saphyr::Spanned;
use std::fmt;

/// Largest pipeline file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// A 1-based line and column in the pipeline file; `0:0` when unknown. `0:N` (N ≥ 1)
/// marks a node that came from the N-th `--set` argument rather than from the file
/// ([`Pos::from_set`]), so that its errors can name that argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    /// The position of every node given by the `index`-th (0-based) `--set` argument.
    pub fn from_set(index: usize) -> Pos {
        Pos {
            line: 0,
            col: u32::try_from(index).map_or(u32::MAX, |i| i.saturating_add(1)),
        }
    }

    /// The 0-based index of the `--set` argument this position stands for, if any.
    pub fn set_index(self) -> Option<usize> {
        (self.line == 0 && self.col > 0).then(|| self.col as usize - 1)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.set_index() {
            Some(i) => write!(f, "--set #{}", i + 1),
            None => write!(f, "{}:{}", self.line, self.col),
        }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// The content of a node. Mappings keep their order and any duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn new(value: Value, pos: Pos) -> Self {
        Node { value, pos }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's type, for messages ("expected a mapping, found a list").
    pub fn type_name(&self) -> &'static str {
        self.value.type_name()
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Why the text could not be read as YAML at all (one located error).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses pipeline text into a [`Node`] tree under the input budgets.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(SyntaxError {
            pos: Pos::default(),
            message: format!(
                "file is {} bytes, more than the {} byte limit for pipeline files",
                text.len(),
                MAX_FILE_BYTES
            ),
        });
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 1_000_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_nodes: 500_000,
            max_depth: 64,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
    };
    let protected = protect_interpolations(text)?;
    let spanned: Spanned<Value> =
        serde_saphyr::from_str_with_options(&protected, options).map_err(|e| syntax_error(&e))?;
    let mut node = from_spanned(spanned);
    restore_interpolations(&mut node);
    Ok(node)
}

/// Stand-ins for the brackets of `${...}` and `stage[*]`: YAML ends a plain scalar at
/// `{`, `}`, `[` and `]` inside a flow mapping, so the documented forms
/// `{ size: ${params.size} }` and `{ results: evaluate[*] }` would not parse. One
/// character for one keeps every column where the user sees it.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';
const GATHER_OPEN: char = '\u{E002}';
const GATHER_CLOSE: char = '\u{E003}';

fn protect_interpolations(text: &str) -> Result<String, SyntaxError> {
    if let Some((line, col)) = find_char(text, |c| ('\u{E000}'..='\u{E003}').contains(&c)) {
        return Err(SyntaxError {
            pos: Pos { line, col },
            message: "the private-use characters U+E000 to U+E003 are not allowed".to_string(),
        });
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
            if let Some(len) = reference_len(&chars[i + 2..]) {
                out.push('$');
                out.push(OPEN);
                out.extend(&chars[i + 2..i + 2 + len]);
                out.push(CLOSE);
                i += len + 3;
                continue;
            }
        }
        let after_name =
            i > 0 && (chars[i - 1].is_ascii_alphanumeric() || matches!(chars[i - 1], '_' | '-'));
        if after_name && chars[i..].starts_with(&['[', '*', ']']) {
            out.extend([GATHER_OPEN, '*', GATHER_CLOSE]);
            i += 3;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    Ok(out)
}

/// Length of `name.path` before a closing `}`, if the text is a reference.
fn reference_len(rest: &[char]) -> Option<usize> {
    let len = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .count();
    (len > 0 && rest.get(len) == Some(&'}')).then_some(len)
}

fn find_char(text: &str, pred: impl Fn(char) -> bool) -> Option<(u32, u32)> {
    for (l, line) in text.lines().enumerate() {
        if let Some(c) = line.chars().position(&pred) {
            return Some((l as u32 + 1, c as u32 + 1));
        }
    }
    None
}

fn restore_interpolations(node: &mut Node) {
    match &mut node.value {
        Value::Str(s) if s.contains(|c| ('\u{E000}'..='\u{E003}').contains(&c)) => {
            *s = s
                .replace(OPEN, "{")
                .replace(CLOSE, "}")
                .replace(GATHER_OPEN, "[")
                .replace(GATHER_CLOSE, "]");
        }
        Value::Seq(items) => items.iter_mut().for_each(restore_interpolations),
        Value::Map(entries) => {
            for (k, v) in entries {
                restore_interpolations(k);
                restore_interpolations(v);
            }
        }
        _ => {}
    }
}

fn syntax_error(e: &serde_saphyr::Error) -> SyntaxError {
    let plain = e.without_snippet();
    let pos = plain
        .location()
        .map(|l| Pos {
            line: l.line() as u32,
            col: l.column() as u32,
        })
        .unwrap_or_default();
    let message = plain.to_string();
    // serde-saphyr appends "at line X column Y"; the location is printed by us.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    SyntaxError {
        pos,
        message: format!("invalid YAML: {message}"),
    }
}

fn from_spanned(s: Spanned<Value>) -> Node {
    let pos = Pos {
        line: s.referenced.line() as u32,
        col: s.referenced.column() as u32,
    };
    Node {
        value: s.value,
        pos,
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(from_spanned(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((from_spanned(key), from_spanned(value)));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: &Node) -> &[(Node, Node)] {
        match &n.value {
            Value::Map(e) => e,
            v => panic!("expected a mapping, got {v:?}"),
        }
    }

    #[test]
    fn references_parse_inside_flow_collections_at_their_columns() {
        let root = parse("with: { x: ${params.n}, y: 0.5, z: \"1\", w: on }\nin: { r: eval[*] }\n")
            .unwrap();
        let with = map(&map(&root)[0].1);
        assert_eq!(
            with[0].1,
            Node::new(Value::Str("${params.n}".into()), Pos { line: 1, col: 12 })
        );
        assert_eq!(with[1].1.value, Value::Float(0.5));
        assert_eq!(
            with[2].1.value,
            Value::Str("1".into()),
            "quoted scalars stay strings"
        );
        assert_eq!(
            with[3].1.value,
            Value::Str("on".into()),
            "YAML 1.2 booleans only"
        );
        let inputs = map(&map(&root)[1].1);
        assert_eq!(
            inputs[0].1,
            Node::new(Value::Str("eval[*]".into()), Pos { line: 2, col: 10 })
        );
    }

    #[test]
    fn duplicate_keys_are_kept_for_the_raw_layer() {
        let root = parse("a: 1\na: 2\n").unwrap();
        let entries = map(&root);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0.pos, Pos { line: 2, col: 1 });
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{e:?}");
        assert_eq!(e.pos.line, 1);
        assert!(parse("a: 1\n---\nb: 2\n").is_err(), "one document per file");
    }

    #[test]
    fn alias_bombs_stop_at_the_budget() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h"])
        {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        // 10^8 nodes if expanded: that the budget refuses it at all is the point.
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("limit"), "{e:?}");
    }

    #[test]
    fn private_use_stand_ins_are_refused() {
        let e = parse("a: \u{E000}\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 4 });
    }
}
