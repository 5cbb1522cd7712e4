//! `LineChart`: what a reader needs is in the picture. The SVG carries the title, axis
//! descriptions, tick values and legend names as text; the PNG decodes at the asked size
//! with dark (text) pixels where the title and axis descriptions go, and none there when
//! they are empty; error bars only where asked; bad data draws without panicking.

use histodiff_plot::{LineChart, Series};

const W: u32 = 800;
const H: u32 = 450;

fn series(name: &str, points: &[(f64, f64)], error: Option<Vec<f64>>) -> Series {
    Series {
        name: name.into(),
        points: points.to_vec(),
        error,
    }
}

fn chart(series: Vec<Series>) -> LineChart {
    LineChart {
        title: "Accuracy against ratio".into(),
        x_label: "ratio (%)".into(),
        y_label: "accuracy (test set)".into(),
        series,
        x_log: false,
    }
}

fn two_lines(error: Option<Vec<f64>>) -> LineChart {
    chart(vec![
        series(
            "selective",
            &[(50.0, 0.8), (100.0, 0.85), (200.0, 0.9)],
            error,
        ),
        series("random", &[(50.0, 0.78), (100.0, 0.8), (200.0, 0.81)], None),
    ])
}

/// The text content of every `<text>` element.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

/// Elements that draw strokes (lines, polylines, paths).
fn strokes(svg: &str) -> usize {
    ["<line", "<polyline", "<path"]
        .iter()
        .map(|e| svg.matches(e).count())
        .sum()
}

fn png(chart: &LineChart) -> image::RgbImage {
    let bytes = chart.png(W, H).unwrap();
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .unwrap()
        .to_rgb8()
}

/// Pixels darker than any series colour (text and axes are black).
fn dark_pixels(img: &image::RgbImage, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>) -> usize {
    ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 90))
        .count()
}

#[test]
fn svg_holds_title_axis_labels_ticks_and_legend() {
    let svg = two_lines(None).svg(W, H).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let texts = texts(&svg);
    for expected in [
        "Accuracy against ratio",
        "ratio (%)",
        "accuracy (test set)",
        "selective",
        "random",
        "100",
        "200",
    ] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected} in {texts:?}"
        );
    }
    let numeric = texts.iter().filter(|t| t.parse::<f64>().is_ok()).count();
    assert!(numeric >= 6, "tick values on both axes: {texts:?}");
}

#[test]
fn png_decodes_at_the_asked_size_with_text_where_the_labels_go() {
    let img = png(&two_lines(None));
    assert_eq!(img.dimensions(), (W, H));
    let title = dark_pixels(&img, 200..600, 0..30);
    let x_label = dark_pixels(&img, 200..600, H - 20..H - 2);
    let y_label = dark_pixels(&img, 0..24, 100..350);
    assert!(
        title > 20 && x_label > 20 && y_label > 20,
        "{title} {x_label} {y_label}"
    );

    let mut unlabelled = two_lines(None);
    unlabelled.title.clear();
    unlabelled.x_label.clear();
    unlabelled.y_label.clear();
    let img = png(&unlabelled);
    assert_eq!(dark_pixels(&img, 200..600, 0..30), 0, "no title");
    assert_eq!(dark_pixels(&img, 200..600, H - 20..H - 2), 0, "no x label");
    assert_eq!(dark_pixels(&img, 0..24, 100..350), 0, "no y label");
}

#[test]
fn error_bars_only_when_given() {
    let without = strokes(&two_lines(None).svg(W, H).unwrap());
    let with = strokes(&two_lines(Some(vec![0.02, 0.01, 0.03])).svg(W, H).unwrap());
    let zero = strokes(&two_lines(Some(vec![0.0; 3])).svg(W, H).unwrap());
    assert!(
        with >= without + 3,
        "one bar per point: {with} vs {without}"
    );
    assert_eq!(zero, without, "a zero spread draws no bar");
}

#[test]
fn error_values_must_match_the_points() {
    let err = two_lines(Some(vec![0.1]))
        .svg(W, H)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("selective") && err.contains("1 error values for 3 points"),
        "{err}"
    );
}

#[test]
fn nans_are_dropped_and_an_empty_chart_says_so() {
    let nan = chart(vec![series(
        "noisy",
        &[
            (0.0, 1.0),
            (1.0, f64::NAN),
            (f64::INFINITY, 2.0),
            (3.0, 0.5),
        ],
        Some(vec![f64::NAN, 0.1, 0.1, 0.1]),
    )]);
    assert!(texts(&nan.svg(W, H).unwrap()).contains(&"noisy".to_string()));
    assert_eq!(png(&nan).dimensions(), (W, H));

    for empty in [
        chart(vec![]),
        chart(vec![series("all NaN", &[(f64::NAN, 1.0)], None)]),
    ] {
        let texts = texts(&empty.svg(W, H).unwrap());
        assert!(texts.contains(&"no data".to_string()), "{texts:?}");
        assert_eq!(png(&empty).dimensions(), (W, H));
    }
}

#[test]
fn a_constant_series_keeps_a_y_range() {
    let flat = chart(vec![series(
        "flat",
        &[(0.0, 0.5), (1.0, 0.5), (2.0, 0.5)],
        None,
    )]);
    let ticks: Vec<f64> = texts(&flat.svg(W, H).unwrap())
        .iter()
        .filter_map(|t| t.parse().ok())
        .filter(|v: &f64| (0.4..=0.6).contains(v) && *v != 0.5)
        .collect();
    assert!(
        ticks.iter().any(|v| *v < 0.5) && ticks.iter().any(|v| *v > 0.5),
        "{ticks:?}"
    );
}

#[test]
fn a_log_axis_drops_non_positive_x() {
    let mut log = chart(vec![series(
        "s",
        &[(0.0, 1.0), (10.0, 2.0), (1000.0, 3.0)],
        None,
    )]);
    log.x_log = true;
    let texts = texts(&log.svg(W, H).unwrap());
    assert!(texts.contains(&"100".to_string()), "{texts:?}");
    assert!(!texts.contains(&"no data".to_string()));
}

#[test]
fn write_puts_png_and_svg_beside_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("table1.v2");
    two_lines(None).write(&stem, W, H).unwrap();
    let png = std::fs::read(dir.path().join("table1.v2.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let svg = std::fs::read_to_string(dir.path().join("table1.v2.svg")).unwrap();
    assert!(svg.contains("Accuracy against ratio"));

    let err = two_lines(None)
        .write(&dir.path().join("missing/loss"), W, H)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing/loss.png"), "{err}");
    assert!(two_lines(None).png(50, 40).is_err(), "too small to label");
}

/// The y attribute of the `<text>` element reading `text`.
fn text_y(svg: &str, text: &str) -> Option<f64> {
    svg.split("<text").skip(1).find_map(|t| {
        let body = &t[t.find('>')? + 1..];
        if body[..body.find("</text>")?].trim() != text {
            return None;
        }
        let y = &t[t.find(" y=\"")? + 4..];
        y[..y.find('"')?].parse().ok()
    })
}

#[test]
fn many_series_all_fit_the_legend() {
    let many: Vec<Series> = (0..24)
        .map(|k| {
            series(
                &format!("model {k}"),
                &[(0.0, k as f64), (1.0, k as f64 + 1.0)],
                None,
            )
        })
        .collect();
    let svg = chart(many).svg(W, H).unwrap();
    let ys: Vec<f64> = (0..24)
        .map(|k| text_y(&svg, &format!("model {k}")).unwrap_or_else(|| panic!("model {k}")))
        .collect();
    assert!(
        ys.windows(2).all(|w| w[1] > w[0]),
        "rows top to bottom: {ys:?}"
    );
    assert!(
        ys[23] < f64::from(H),
        "the last row is inside the picture: {ys:?}"
    );
}
