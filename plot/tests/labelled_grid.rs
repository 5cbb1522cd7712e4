//! `LabelledGrid`: the tiles come through unchanged (scaled by a whole factor in the PNG,
//! embedded as a PNG in the SVG) and the labels are there as text and as dark pixels.

use base64::Engine;
use histodiff_plot::{GridLabel, LabelledGrid};
use image::{Rgb, RgbImage};

/// `rows`×`cols` tiles of `s` px, `pad` apart, tile (r, c) filled with grey 20·r + 60·c + 40.
fn tiles(rows: u32, cols: u32, s: u32, pad: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(
        cols * (s + pad) + pad,
        rows * (s + pad) + pad,
        Rgb([255; 3]),
    );
    for r in 0..rows {
        for c in 0..cols {
            for (x, y) in (0..s).flat_map(|x| (0..s).map(move |y| (x, y))) {
                let v = (20 * r + 60 * c + 40) as u8;
                img.put_pixel(
                    pad + c * (s + pad) + x,
                    pad + r * (s + pad) + y,
                    Rgb([v; 3]),
                );
            }
        }
    }
    img
}

fn grid(classes: &[&str], pools: &[&str]) -> LabelledGrid {
    let (s, pad) = (10, 2);
    LabelledGrid {
        title: "Samples".into(),
        tiles: tiles(classes.len() as u32, pools.len().max(1) as u32, s, pad),
        rows: classes
            .iter()
            .enumerate()
            .map(|(r, c)| GridLabel::new(*c, pad + r as u32 * (s + pad) + s / 2))
            .collect(),
        columns: pools
            .iter()
            .enumerate()
            .map(|(c, p)| GridLabel::new(*p, pad + c as u32 * (s + pad) + s / 2))
            .collect(),
    }
}

fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

fn dark(img: &RgbImage, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>) -> usize {
    ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 30))
        .count()
}

#[test]
fn svg_names_rows_and_columns_and_embeds_the_tiles() {
    let g = grid(&["ADI", "BACK", "TUM"], &["Real", "HistoDiffusion"]);
    let svg = g.svg().unwrap();
    let texts = texts(&svg);
    for expected in ["Samples", "ADI", "BACK", "TUM", "Real", "HistoDiffusion"] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected} in {texts:?}"
        );
    }
    let data = svg
        .split("href=\"data:image/png;base64,")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("an embedded PNG");
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    let embedded = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(embedded, g.tiles, "the tiles, unscaled");
}

#[test]
fn png_has_the_scaled_tiles_and_labels_beside_them() {
    let g = grid(
        &["ADI", "BACK", "TUM"],
        &["Real", "HistoDiffusion, selected"],
    );
    let layout = g.layout().unwrap();
    let bytes = g.png().unwrap();
    let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (layout.width, layout.height));
    assert!(layout.scale > 1, "small tiles are scaled up: {layout:?}");
    // Tile (row 2, column 1): grey 20·2 + 60 + 40 = 140, at its scaled place.
    let at = |v: u32| layout.left + v * layout.scale + layout.scale / 2;
    let (x, y) = (at(2 + 12 + 5), layout.top + (2 + 2 * 12 + 5) * layout.scale);
    assert_eq!(img.get_pixel(x, y).0, [140; 3]);
    assert_eq!(
        img.get_pixel(at(2 + 5), layout.top + 7 * layout.scale).0,
        [40; 3]
    );
    assert!(
        dark(&img, 0..layout.left, layout.top..layout.height) > 20,
        "row labels"
    );
    assert!(
        dark(&img, layout.left..layout.width, 0..layout.top) > 20,
        "title and columns"
    );
    // "HistoDiffusion, selected" is wider than a column: the column labels stand upright.
    assert!(layout.upright_columns);

    let bare = LabelledGrid {
        title: String::new(),
        rows: Vec::new(),
        columns: Vec::new(),
        ..g
    };
    let layout = bare.layout().unwrap();
    let img = image::load_from_memory(&bare.png().unwrap())
        .unwrap()
        .to_rgb8();
    assert_eq!(
        dark(&img, 0..layout.left, 0..layout.height),
        0,
        "no labels, no text"
    );
    assert_eq!(dark(&img, 0..layout.width, 0..layout.top), 0);
}

#[test]
fn short_column_labels_stay_level_and_long_ones_lose_their_middle() {
    let long = "a class name far too long to fit beside a row of tiles in any figure";
    let g = grid(&["A", long], &["R", "S"]);
    assert!(!g.layout().unwrap().upright_columns);
    let texts = texts(&g.svg().unwrap());
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("a class") && t.contains('…') && t.ends_with("any figure")),
        "{texts:?}"
    );
}

#[test]
fn an_empty_tile_picture_is_refused() {
    let mut g = grid(&["A"], &[]);
    g.tiles = RgbImage::new(0, 0);
    assert!(g.png().unwrap_err().to_string().contains("empty"));
}

#[test]
fn write_puts_png_and_svg_beside_each_other() {
    let dir = tempfile::tempdir().unwrap();
    grid(&["A", "B"], &[])
        .write(&dir.path().join("grid-x"))
        .unwrap();
    assert!(std::fs::read(dir.path().join("grid-x.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    assert!(std::fs::read_to_string(dir.path().join("grid-x.svg"))
        .unwrap()
        .contains(">"));
}
