//! Reading back the report's figures: the text of an SVG, a PNG's pixels, and the tiles a
//! sample grid's SVG embeds (unscaled, so pixel positions are the layout's own).

use base64::Engine;
use std::path::Path;

/// The text content of every `<text>` element of the SVG at `path`.
pub fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(svg.starts_with("<svg"), "{}: not an SVG", path.display());
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

/// Asserts the SVG at `path` has a text element reading each of `expected`.
pub fn assert_svg_says(path: &Path, expected: &[&str]) {
    let texts = svg_texts(path);
    for e in expected {
        assert!(
            texts.iter().any(|t| t == e),
            "{}: no text `{e}` in {texts:?}",
            path.display()
        );
    }
}

/// The PNG at `path`, decoded (fails unless it is a PNG).
pub fn png(path: &Path) -> image::RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// The tile picture a labelled grid's SVG at `path` embeds.
pub fn embedded_tiles(path: &Path) -> image::RgbImage {
    let svg = std::fs::read_to_string(path).unwrap();
    let data = svg
        .split("href=\"data:image/png;base64,")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("{}: no embedded PNG", path.display()));
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    image::load_from_memory(&png).unwrap().to_rgb8()
}
