//! An execution's parameters and stage key, collapsed under a `<details>`: what the key
//! was computed from (kind and version, every parameter with defaults filled, external
//! data hashes, the command line of a `command` stage, the salt, the key schema), read
//! back from the fingerprint JSON stored with the execution (a cache hit shows its
//! source's). The fingerprint's input hashes are the execution's "read" list.

use super::html::{abbreviated, esc};
use crate::commands::run_graph::ExecutionView;
use histodiff_engine::fingerprint::canonical_json;
use std::fmt::Write as _;

/// The collapsible block for one execution.
pub fn block(view: &ExecutionView) -> String {
    let e = &view.record;
    let mut out = format!(
        "<details class=\"params\"><summary>parameters and key <code>{}</code></summary>\n\
         <table class=\"kv\"><tr><th>stage key</th><td><code>{}</code></td></tr>\n",
        esc(e.stage_key.short()),
        esc(&e.stage_key.0)
    );
    let Some(fp) = &view.fingerprint else {
        out.push_str("<tr><th>fingerprint</th><td>not recorded</td></tr></table></details>");
        return out;
    };
    let _ = write!(
        out,
        "<tr><th>kind</th><td><code>{}</code> version {}</td></tr>",
        esc(&fp.kind),
        fp.kind_version
    );
    out.push_str(&value_rows("param", fp.params.iter()));
    for (name, hash) in fp.externals.iter() {
        let _ = write!(
            out,
            "<tr><th>external <code>{}</code></th><td>{}</td></tr>",
            esc(name),
            abbreviated(&hash.0, hash.short())
        );
    }
    if let Some(command) = &fp.command {
        let _ = write!(
            out,
            "<tr><th>command</th><td><code>{}</code></td></tr>",
            esc(&command.run)
        );
    }
    if !fp.salt.is_empty() {
        let _ = write!(
            out,
            "<tr><th>salt</th><td><code>{}</code></td></tr>",
            esc(&fp.salt)
        );
    }
    let _ = write!(
        out,
        "<tr><th>key schema</th><td>{}</td></tr></table></details>",
        fp.key_schema
    );
    out
}

/// Parameters of an instance that did not run, from the pipeline file.
pub fn planned(params: &serde_json::Map<String, serde_json::Value>) -> String {
    format!(
        "<details class=\"params\"><summary>parameters (from the pipeline file)</summary>\
         <table class=\"kv\">{}</table></details>",
        value_rows("param", params.iter())
    )
}

/// One row per parameter: name and canonical JSON value.
fn value_rows<'a>(
    what: &str,
    values: impl Iterator<Item = (&'a String, &'a serde_json::Value)>,
) -> String {
    let mut out = String::new();
    for (name, value) in values {
        let _ = write!(
            out,
            "<tr><th>{what} <code>{}</code></th><td><code>{}</code></td></tr>",
            esc(name),
            esc(&canonical_json(value))
        );
    }
    out
}
