//! Which artifacts a crate carries as files and which it only describes.
//!
//! The rule (docs/cli.md): a *file* artifact of at most [`COPY_LIMIT`] bytes whose content
//! is a document format (JSON, CSV, TSV, Markdown, plain text, YAML, PNG, SVG, HTML) is
//! copied to `artifacts/<blake3>.<ext>`. Everything else (model weights, directories such
//! as image sets, larger files, binary formats) is described by its blake3 hash, kind and
//! size only, and stays in the store, where `histodiff export HASH DEST` gets it out.

use crate::exit::{CliError, Coded, STORE};
use histodiff_engine::hash::{hash_bytes, ArtifactHash};
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::{ArtifactRecord, Store};
use std::path::Path;

/// Largest file artifact copied into a crate (1 MiB).
pub const COPY_LIMIT: u64 = 1 << 20;

/// Where an artifact's bytes are, as far as the crate is concerned.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Copied into the crate at `path` (relative to its root).
    Copied {
        path: String,
        media_type: &'static str,
        bytes: Vec<u8>,
    },
    /// Described only; `why` says why it was not copied.
    Referenced { why: String },
}

/// A document format: file extension and media type.
struct Format(&'static str, &'static str);

const BY_EXTENSION: &[Format] = &[
    Format("json", "application/json"),
    Format("csv", "text/csv"),
    Format("tsv", "text/tab-separated-values"),
    Format("md", "text/markdown"),
    Format("txt", "text/plain"),
    Format("yaml", "application/yaml"),
    Format("yml", "application/yaml"),
    Format("png", "image/png"),
    Format("svg", "image/svg+xml"),
    Format("html", "text/html"),
];

/// Decides the placement of one artifact. `file_name` is the name its producer gave it,
/// when known (a `command` stage's `outs`); its extension is trusted for a document
/// format, else the content decides. A copied file is re-hashed: damaged bytes are a
/// store error, never silently put into a crate.
pub fn place(
    store: &dyn Store,
    record: &ArtifactRecord,
    file_name: Option<&str>,
) -> Result<Placement, CliError> {
    if record.kind == ArtifactKind::Dir {
        return Ok(referenced(
            "a directory (e.g. an image set): described, not copied",
        ));
    }
    if record.size > COPY_LIMIT {
        return Ok(referenced("larger than 1 MiB: described, not copied"));
    }
    let bytes = read_object(store, &record.hash)?;
    let by_name = file_name
        .and_then(|n| Path::new(n).extension())
        .and_then(|e| e.to_str())
        .and_then(|e| BY_EXTENSION.iter().find(|f| f.0.eq_ignore_ascii_case(e)));
    let Some(Format(ext, media_type)) = by_name.or_else(|| sniff(&bytes)) else {
        return Ok(referenced(
            "not a document format (e.g. model weights): described, not copied",
        ));
    };
    Ok(Placement::Copied {
        path: format!("artifacts/{}.{ext}", record.hash),
        media_type,
        bytes,
    })
}

fn referenced(why: &str) -> Placement {
    Placement::Referenced {
        why: why.to_string(),
    }
}

/// The object's bytes, checked against its hash.
fn read_object(store: &dyn Store, hash: &ArtifactHash) -> Result<Vec<u8>, CliError> {
    let path = store.objects().path_of(hash).code(STORE)?;
    let bytes = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("object {hash} ({}): {e}", path.display()))
        .code(STORE)?;
    if &hash_bytes(&bytes) != hash {
        return Err(anyhow::anyhow!(
            "object {hash} is damaged (its bytes hash differently); run `histodiff verify`"
        ))
        .code(STORE);
    }
    Ok(bytes)
}

/// The document format of `bytes`, judged by content.
fn sniff(bytes: &[u8]) -> Option<&'static Format> {
    let find = |ext: &str| BY_EXTENSION.iter().find(|f| f.0 == ext);
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return find("png");
    }
    if bytes.contains(&0) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let start = text.trim_start();
    if serde_json::from_str::<serde_json::Value>(text).is_ok() {
        find("json")
    } else if start.starts_with("<svg") || (start.starts_with("<?xml") && text.contains("<svg")) {
        find("svg")
    } else if start.len() >= 5 && start[..5].eq_ignore_ascii_case("<html")
        || start.starts_with("<!DOCTYPE html")
    {
        find("html")
    } else if is_table(text, ',') {
        find("csv")
    } else if is_table(text, '\t') {
        find("tsv")
    } else if start.starts_with('#') {
        find("md")
    } else {
        find("txt")
    }
}

/// At least two non-empty lines, each with the same positive number of separators.
fn is_table(text: &str, separator: char) -> bool {
    let mut counts = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.matches(separator).count());
    let Some(first) = counts.next() else {
        return false;
    };
    let mut rows = 1;
    for count in counts {
        if count != first {
            return false;
        }
        rows += 1;
    }
    first > 0 && rows >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(bytes: &[u8]) -> Option<&'static str> {
        sniff(bytes).map(|f| f.0)
    }

    #[test]
    fn content_decides_the_format_of_an_unnamed_file() {
        assert_eq!(ext(b"\x89PNG\r\n\x1a\nrest"), Some("png"));
        assert_eq!(ext(b"{\"a\": [1, 2]}"), Some("json"));
        assert_eq!(ext(b"a,b\n1,2\n3,4\n"), Some("csv"));
        assert_eq!(ext(b"a\tb\n1\t2\n"), Some("tsv"));
        assert_eq!(ext(b"# Title\n\ntext"), Some("md"));
        assert_eq!(ext(b"<svg xmlns='x'/>"), Some("svg"));
        assert_eq!(ext(b"just words, once\n"), Some("txt"));
        assert_eq!(ext(b"\x00\x01weights"), None);
        assert_eq!(ext(&[0xff, 0xfe, 0x41]), None);
    }
}
