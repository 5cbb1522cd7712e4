//! Training-loss curves as a PNG without a plotting or font dependency: one polyline per
//! series on shared axes (step on x, loss on y), each in a palette colour; the Markdown
//! report names each colour and gives the axis ranges, since the image carries no text.

use image::{Rgb, RgbImage};
use std::path::Path;

/// Distinguishable colours, in series order (names used in the Markdown legend).
pub const PALETTE: [(&str, [u8; 3]); 8] = [
    ("blue", [31, 119, 180]),
    ("orange", [255, 127, 14]),
    ("green", [44, 160, 44]),
    ("red", [214, 39, 40]),
    ("purple", [148, 103, 189]),
    ("brown", [140, 86, 75]),
    ("pink", [227, 119, 194]),
    ("grey", [127, 127, 127]),
];

/// Reads `step,loss` lines (with a header) of a training history file.
pub fn read_history(path: &Path) -> Result<Vec<(f64, f64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let mut it = line.split(',').map(str::trim).map(str::parse::<f64>);
            match (it.next(), it.next()) {
                (Some(Ok(s)), Some(Ok(v))) => Ok((s, v)),
                _ => Err(format!(
                    "{}: line {} is not `step,loss`",
                    path.display(),
                    i + 2
                )),
            }
        })
        .collect()
}

/// The x and y ranges covering every point of every series.
pub fn bounds(series: &[(String, Vec<(f64, f64)>)]) -> ((f64, f64), (f64, f64)) {
    let pts = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    ((x0, x1.max(x0 + 1.0)), (y0.min(0.0), y1.max(y0 + 1e-9)))
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), colour: Rgb<u8>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for k in 0..=n {
        let t = k as f64 / n as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, colour);
        }
    }
}

/// Draws every series into a `width`×`height` PNG at `out`.
pub fn write_loss_plot(
    series: &[(String, Vec<(f64, f64)>)],
    width: u32,
    height: u32,
    out: &Path,
) -> Result<(), String> {
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let margin = 20.0;
    let (w, h) = (width as f64 - 2.0 * margin, height as f64 - 2.0 * margin);
    let ((x0, x1), (y0, y1)) = bounds(series);
    let to_px = |(x, y): (f64, f64)| {
        (
            margin + (x - x0) / (x1 - x0) * w,
            margin + h - (y - y0) / (y1 - y0) * h,
        )
    };
    let axis = Rgb([0, 0, 0]);
    line(&mut img, to_px((x0, y0)), to_px((x1, y0)), axis);
    line(&mut img, to_px((x0, y0)), to_px((x0, y1)), axis);
    for (k, (_, points)) in series.iter().enumerate() {
        let colour = Rgb(PALETTE[k % PALETTE.len()].1);
        for pair in points.windows(2) {
            line(&mut img, to_px(pair[0]), to_px(pair[1]), colour);
        }
    }
    img.save(out).map_err(|e| format!("{}: {e}", out.display()))
}
