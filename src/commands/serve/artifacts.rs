//! Artifacts by hash, and their previews: a file object as itself (PNG and SVG inline,
//! JSON and text as text, anything else as a download), a member of a directory artifact
//! (only a path its manifest lists, matched exactly), an image of an image set as a PNG,
//! and the preview description the page draws.
//!
//! Path safety: a request names an artifact by hash only, validated as hex and looked up
//! in the `artifacts` table; the object file is then named by the store from that hash.
//! A member path from a request is compared with the manifest's entries and never joined
//! onto a directory, so `..`, absolute paths and backslashes can only fail to match.

use super::error::{ApiError, ApiResult};
use super::image_set::ImageSet;
use super::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use histodiff_engine::hash::{ArtifactHash, Manifest};
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::{ArtifactRecord, Store};
use serde::Serialize;

/// Objects larger than this are not served (use `histodiff export`).
const MAX_SERVED_BYTES: u64 = 32 << 20;
/// Text shown inline in a preview, at most.
const MAX_PREVIEW_TEXT: usize = 256 << 10;
/// Images of an image set the preview shows.
const GRID_IMAGES: usize = 16;
/// Members of a directory the preview lists.
const LISTED_MEMBERS: usize = 200;
/// Artifact responses may not run scripts or load anything, even opened on their own.
const SANDBOX: &str =
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox";

/// The recorded artifact a request names: 64 hex digits, or a unique prefix of 6 or more.
pub async fn resolve(store: &dyn Store, text: &str) -> ApiResult<ArtifactRecord> {
    let hex = text.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || !(6..=64).contains(&text.len()) {
        return Err(ApiError::BadRequest(
            "an artifact is named by its hash: 64 hex digits, or a unique prefix of at least 6"
                .into(),
        ));
    }
    let prefix = text.to_ascii_lowercase();
    let found = store
        .artifacts_by_prefix(&prefix, 2)
        .await
        .map_err(ApiError::store)?;
    let hash = match found.as_slice() {
        [one] => one,
        [] => return Err(ApiError::NotFound(format!("no artifact {prefix}"))),
        _ => {
            return Err(ApiError::BadRequest(format!(
                "{prefix} names several artifacts: give more digits"
            )))
        }
    };
    store
        .artifact(hash)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::NotFound(format!("no artifact {prefix}")))
}

/// What the bytes are, for the content type and the preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shown {
    Png,
    Svg,
    Json,
    Text,
    Binary,
}

impl Shown {
    /// By content, with a member's file name as a hint.
    pub fn sniff(bytes: &[u8], name: Option<&str>) -> Shown {
        let ext = name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e);
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Shown::Png;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Shown::Binary;
        };
        let head = text.trim_start();
        let svg = head.starts_with("<svg") || (head.starts_with("<?xml") && text.contains("<svg"));
        if svg || (ext == Some("svg") && head.starts_with('<')) {
            Shown::Svg
        } else if serde_json::from_str::<serde_json::Value>(text).is_ok() {
            Shown::Json
        } else if text.contains('\0') {
            Shown::Binary
        } else {
            Shown::Text
        }
    }

    /// By file name only (members are listed without reading them).
    pub fn guess(name: &str) -> Shown {
        match name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()) {
            Some(e) if e == "png" => Shown::Png,
            Some(e) if e == "svg" => Shown::Svg,
            Some(e) if e == "json" => Shown::Json,
            Some(e) if TEXT_EXTENSIONS.contains(&e.as_str()) => Shown::Text,
            _ => Shown::Binary,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Shown::Png => "image/png",
            Shown::Svg => "image/svg+xml",
            Shown::Json => "application/json",
            // HTML, Markdown and CSV are shown as text: the dashboard never renders them.
            Shown::Text => "text/plain; charset=utf-8",
            Shown::Binary => "application/octet-stream",
        }
    }
}

const TEXT_EXTENSIONS: &[&str] = &[
    "txt", "csv", "tsv", "md", "log", "yaml", "yml", "toml", "html", "tex",
];

/// The bytes of a file object, unless it is too large to serve.
async fn read_object(store: &dyn Store, hash: &ArtifactHash) -> ApiResult<Vec<u8>> {
    let path = store.objects().path_of(hash).map_err(ApiError::store)?;
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|_| ApiError::NotFound(format!("object {hash} is not in the object store")))?;
    if meta.len() > MAX_SERVED_BYTES {
        return Err(ApiError::TooLarge(format!(
            "object {hash} has {} bytes; `histodiff export` copies it out",
            meta.len()
        )));
    }
    tokio::fs::read(&path).await.map_err(ApiError::store)
}

/// An object's bytes with a content type that matches them, sandboxed.
fn object_response(bytes: Vec<u8>, name: Option<&str>) -> Response {
    let shown = Shown::sniff(&bytes, name);
    let disposition = if shown == Shown::Binary {
        "attachment"
    } else {
        "inline"
    };
    (
        [
            (header::CONTENT_TYPE, shown.content_type()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, SANDBOX),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response()
}

/// The manifest of a directory artifact (404 for a file artifact).
fn directory(store: &dyn Store, record: &ArtifactRecord) -> ApiResult<Manifest> {
    if record.kind != ArtifactKind::Dir {
        return Err(ApiError::NotFound(format!(
            "{} is a file, not a directory",
            record.hash
        )));
    }
    store
        .objects()
        .manifest(&record.hash)
        .map_err(ApiError::store)
}

/// `GET /artifact/{hash}`: a file artifact's bytes (a directory's: its manifest as JSON).
pub async fn raw(State(app): State<AppState>, Path(hash): Path<String>) -> ApiResult<Response> {
    let record = resolve(app.store.as_ref(), &hash).await?;
    let bytes = read_object(app.store.as_ref(), &record.hash).await?;
    Ok(object_response(bytes, None))
}

/// `GET /artifact/{hash}/member/{*path}`: a member file, if the manifest lists the path.
pub async fn member(
    State(app): State<AppState>,
    Path((hash, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let suspicious = path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path.split('/').any(|part| part == ".." || part == ".");
    if suspicious {
        return Err(ApiError::BadRequest(
            "a member is named by its path inside the artifact, as its manifest lists it".into(),
        ));
    }
    let store = app.store.as_ref();
    let record = resolve(store, &hash).await?;
    let manifest = directory(store, &record)?;
    let member_hash = manifest
        .entries
        .iter()
        .find(|e| e.path == path && e.kind == ArtifactKind::File)
        .and_then(|e| e.hash.clone())
        .ok_or_else(|| ApiError::NotFound(format!("{} lists no such file", record.hash)))?;
    let bytes = read_object(store, &member_hash).await?;
    Ok(object_response(bytes, Some(&path)))
}

/// `GET /artifact/{hash}/image/{n}`: image `n` of an image set, as a PNG.
pub async fn image(
    State(app): State<AppState>,
    Path((hash, n)): Path<(String, String)>,
) -> ApiResult<Response> {
    let n: usize = n
        .parse()
        .map_err(|_| ApiError::BadRequest("an image is named by its index".into()))?;
    let store = app.store.clone();
    let record = resolve(store.as_ref(), &hash).await?;
    let png = tokio::task::spawn_blocking(move || {
        let manifest = directory(store.as_ref(), &record)?;
        let set = ImageSet::of(store.as_ref(), &manifest)
            .ok_or_else(|| ApiError::NotFound(format!("{} is not an image set", record.hash)))?;
        set.png(store.as_ref(), &manifest, n)
    })
    .await
    .map_err(ApiError::store)??;
    Ok(object_response(png, None))
}

/// One image of a preview grid.
#[derive(Debug, Serialize)]
pub struct GridImage {
    pub url: String,
    pub label: Option<String>,
}

/// One member of a directory preview.
#[derive(Debug, Serialize)]
pub struct Member {
    pub path: String,
    pub size: u64,
    pub shown: Shown,
    pub url: String,
}

/// What the page shows of an artifact.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Preview {
    /// A PNG or an SVG, drawn from `url`.
    Image {
        url: String,
    },
    /// JSON (pretty-printed) or text; `truncated` when only the start is shown.
    Text {
        format: Shown,
        text: String,
        truncated: bool,
        url: String,
    },
    Binary {
        url: String,
    },
    TooLarge {
        size: u64,
    },
    ImageSet {
        count: usize,
        image_size: usize,
        classes: Vec<String>,
        images: Vec<GridImage>,
    },
    Directory {
        members: Vec<Member>,
        more: usize,
    },
}

/// The preview of a recorded artifact.
pub async fn preview(store: &dyn Store, record: &ArtifactRecord) -> ApiResult<Preview> {
    let url = format!("/artifact/{}", record.hash);
    match record.kind {
        ArtifactKind::Dir => directory_preview(store, record),
        ArtifactKind::File => match read_object(store, &record.hash).await {
            Ok(bytes) => Ok(file_preview(&bytes, url)),
            Err(ApiError::TooLarge(_)) => Ok(Preview::TooLarge { size: record.size }),
            Err(e) => Err(e),
        },
    }
}

fn file_preview(bytes: &[u8], url: String) -> Preview {
    match Shown::sniff(bytes, None) {
        Shown::Png | Shown::Svg => Preview::Image { url },
        Shown::Binary => Preview::Binary { url },
        format => {
            let text = String::from_utf8_lossy(bytes);
            let pretty = (format == Shown::Json)
                .then(|| serde_json::from_str::<serde_json::Value>(&text).ok())
                .flatten()
                .and_then(|v| serde_json::to_string_pretty(&v).ok());
            let mut text = pretty.unwrap_or_else(|| text.into_owned());
            let truncated = text.len() > MAX_PREVIEW_TEXT;
            if truncated {
                let mut end = MAX_PREVIEW_TEXT;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            Preview::Text {
                format,
                text,
                truncated,
                url,
            }
        }
    }
}

fn directory_preview(store: &dyn Store, record: &ArtifactRecord) -> ApiResult<Preview> {
    let manifest = directory(store, record)?;
    if let Some(set) = ImageSet::of(store, &manifest) {
        let images = (0..set.count.min(GRID_IMAGES))
            .map(|n| GridImage {
                url: format!("/artifact/{}/image/{n}", record.hash),
                label: set.label_of(n),
            })
            .collect();
        return Ok(Preview::ImageSet {
            count: set.count,
            image_size: set.image_size,
            classes: set.classes,
            images,
        });
    }
    let files: Vec<_> = manifest
        .entries
        .iter()
        .filter(|e| e.kind == ArtifactKind::File)
        .collect();
    let members = files
        .iter()
        .take(LISTED_MEMBERS)
        .map(|e| Member {
            path: e.path.clone(),
            size: e.size,
            shown: Shown::guess(&e.path),
            url: format!("/artifact/{}/member/{}", record.hash, url_path(&e.path)),
        })
        .collect();
    Ok(Preview::Directory {
        members,
        more: files.len().saturating_sub(LISTED_MEMBERS),
    })
}

/// Percent-encodes a member path for a URL, keeping its `/` separators.
fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_by_what_they_are() {
        assert_eq!(Shown::sniff(b"\x89PNG\r\n\x1a\nrest", None), Shown::Png);
        assert_eq!(Shown::sniff(b"  <svg xmlns='x'></svg>", None), Shown::Svg);
        assert_eq!(Shown::sniff(b"{\"a\": 1}", None), Shown::Json);
        assert_eq!(Shown::sniff(b"a,b\n1,2\n", Some("t.csv")), Shown::Text);
        assert_eq!(Shown::sniff(b"<html><script>", None), Shown::Text);
        assert_eq!(Shown::sniff(&[0xff, 0x00, 0x12], None), Shown::Binary);
        assert_eq!(Shown::guess("figures/loss.PNG"), Shown::Png);
        assert_eq!(Shown::guess("table.md"), Shown::Text);
        assert_eq!(Shown::guess("weights.safetensors"), Shown::Binary);
    }

    #[test]
    fn member_urls_are_encoded() {
        assert_eq!(url_path("a b/c#d.png"), "a%20b/c%23d.png");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_PREVIEW_TEXT);
        let Preview::Text {
            text, truncated, ..
        } = file_preview(text.as_bytes(), "u".into())
        else {
            panic!("text expected");
        };
        assert!(truncated && text.len() <= MAX_PREVIEW_TEXT);
    }
}
