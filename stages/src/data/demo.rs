//! A procedural, seeded stand-in for NCT-CRC-HE-100K: tissue-like RGB textures for the
//! nine CRC classes, written as PNG files in the `<root>/<CLASS>/<CLASS>-00000.png`
//! layout so the real loaders read real files. Each class has its own colour statistics
//! and structure (fat cells, fibres, nuclei of given size and density, glands), so a small
//! classifier can tell them apart; every image is a pure function of (seed, class, index).

use super::DataError;
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The nine tissue classes of NCT-CRC-HE-100K, in label order.
pub const CRC_CLASSES: [&str; 9] = [
    "ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM",
];

const WHITE: [f32; 3] = [0.97, 0.95, 0.96];
const HEMATOXYLIN: [f32; 3] = [0.30, 0.16, 0.50];

/// What one class looks like. Lengths are fractions of the image side.
struct Style {
    base: [f32; 3],
    /// Amplitude and feature size of the smooth background mottling.
    mottle: (f32, f32),
    /// Fibres: (wavelength, strength, waviness, colour).
    fibres: Option<(f32, f32, f32, [f32; 3])>,
    /// Polygonal cells (fat): (cell size, membrane colour).
    cells: Option<(f32, [f32; 3])>,
    /// Nuclei: (count per unit area, radius, elongation, colour).
    nuclei: Option<(f32, f32, f32, [f32; 3])>,
    /// Glands: (count, radius) — a pale lumen ringed by nuclei.
    glands: Option<(usize, f32)>,
}

fn style(class: &str) -> Option<Style> {
    let s = match class {
        "ADI" => Style {
            base: WHITE,
            mottle: (0.02, 0.3),
            fibres: None,
            cells: Some((0.22, [0.90, 0.62, 0.76])),
            nuclei: Some((3.0, 0.012, 2.0, HEMATOXYLIN)),
            glands: None,
        },
        "BACK" => Style {
            base: [0.88, 0.87, 0.88],
            mottle: (0.03, 0.8),
            fibres: None,
            cells: None,
            nuclei: None,
            glands: None,
        },
        "DEB" => Style {
            base: [0.86, 0.58, 0.70],
            mottle: (0.12, 0.15),
            fibres: None,
            cells: None,
            nuclei: Some((120.0, 0.010, 1.5, [0.45, 0.22, 0.50])),
            glands: None,
        },
        "LYM" => Style {
            base: [0.84, 0.68, 0.80],
            mottle: (0.04, 0.2),
            fibres: None,
            cells: None,
            nuclei: Some((450.0, 0.020, 1.0, [0.20, 0.10, 0.42])),
            glands: None,
        },
        "MUC" => Style {
            base: [0.80, 0.78, 0.90],
            mottle: (0.08, 0.35),
            fibres: Some((0.25, 0.25, 0.5, [0.70, 0.62, 0.85])),
            cells: None,
            nuclei: Some((4.0, 0.015, 1.2, HEMATOXYLIN)),
            glands: None,
        },
        "MUS" => Style {
            base: [0.88, 0.42, 0.52],
            mottle: (0.04, 0.3),
            fibres: Some((0.05, 0.5, 0.1, [0.75, 0.28, 0.40])),
            cells: None,
            nuclei: Some((25.0, 0.014, 4.0, [0.35, 0.15, 0.45])),
            glands: None,
        },
        "NORM" => Style {
            base: [0.90, 0.64, 0.76],
            mottle: (0.04, 0.25),
            fibres: None,
            cells: None,
            nuclei: Some((30.0, 0.015, 1.3, HEMATOXYLIN)),
            glands: Some((3, 0.16)),
        },
        "STR" => Style {
            base: [0.95, 0.76, 0.84],
            mottle: (0.03, 0.3),
            fibres: Some((0.09, 0.3, 0.8, [0.86, 0.55, 0.70])),
            cells: None,
            nuclei: Some((15.0, 0.013, 3.5, [0.40, 0.20, 0.52])),
            glands: None,
        },
        "TUM" => Style {
            base: [0.72, 0.46, 0.66],
            mottle: (0.06, 0.2),
            fibres: None,
            cells: None,
            nuclei: Some((160.0, 0.035, 1.6, [0.36, 0.17, 0.52])),
            glands: None,
        },
        _ => return None,
    };
    Some(s)
}

/// Seeded generator for one image: independent of every other image.
fn image_rng(seed: u64, class: usize, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((class as u64) << 40) | index as u64);
    rng
}

fn uniform(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
}

/// Smooth value noise in [-1, 1]: a random lattice of `cells`² points, bilinear.
struct ValueNoise {
    cells: usize,
    lattice: Vec<f32>,
}

impl ValueNoise {
    fn new(rng: &mut ChaCha8Rng, cells: usize) -> Self {
        let cells = cells.max(1);
        let lattice = (0..(cells + 1) * (cells + 1))
            .map(|_| uniform(rng) * 2.0 - 1.0)
            .collect();
        ValueNoise { cells, lattice }
    }

    /// Noise at (u, v) ∈ [0, 1]².
    fn at(&self, u: f32, v: f32) -> f32 {
        let (x, y) = (u * self.cells as f32, v * self.cells as f32);
        let (x0, y0) = (
            (x as usize).min(self.cells - 1),
            (y as usize).min(self.cells - 1),
        );
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let w = self.cells + 1;
        let l = |i: usize, j: usize| self.lattice[j * w + i];
        let top = l(x0, y0) * (1.0 - fx) + l(x0 + 1, y0) * fx;
        let bottom = l(x0, y0 + 1) * (1.0 - fx) + l(x0 + 1, y0 + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

fn blend(px: &mut [f32; 3], colour: [f32; 3], alpha: f32) {
    for k in 0..3 {
        px[k] = px[k] * (1.0 - alpha) + colour[k] * alpha;
    }
}

/// Renders image `index` of `class` (a name from [`CRC_CLASSES`]) at `size`×`size`.
pub fn render(
    class: &str,
    class_index: usize,
    index: usize,
    size: u32,
    seed: u64,
) -> Result<RgbImage, DataError> {
    let style = style(class).ok_or_else(|| {
        DataError::Invalid(format!(
            "demo data knows the classes {CRC_CLASSES:?}, not `{class}`"
        ))
    })?;
    let mut rng = image_rng(seed, class_index, index);
    let n = size as usize;
    // Per-image jitter of the base stain, as between slides.
    let base: Vec<f32> = style
        .base
        .iter()
        .map(|c| (c + (uniform(&mut rng) - 0.5) * 0.06).clamp(0.0, 1.0))
        .collect();
    let mottle = ValueNoise::new(&mut rng, (1.0 / style.mottle.1).ceil() as usize);
    let warp = ValueNoise::new(&mut rng, 4);
    let mut canvas: Vec<[f32; 3]> = Vec::with_capacity(n * n);
    let angle = uniform(&mut rng) * std::f32::consts::PI;
    let (ca, sa) = (angle.cos(), angle.sin());
    for y in 0..n {
        for x in 0..n {
            let (u, v) = ((x as f32 + 0.5) / n as f32, (y as f32 + 0.5) / n as f32);
            let m = mottle.at(u, v) * style.mottle.0;
            let mut px = [base[0] + m, base[1] + m, base[2] + m * 0.5];
            if let Some((wavelength, strength, waviness, colour)) = style.fibres {
                let along = u * ca + v * sa + warp.at(u, v) * waviness * 0.2;
                let phase = (along / wavelength * std::f32::consts::TAU).sin();
                blend(&mut px, colour, strength * phase.max(0.0).powi(2));
            }
            canvas.push(px);
        }
    }
    if let Some((cell, membrane)) = style.cells {
        draw_cells(&mut canvas, n, &mut rng, cell, membrane);
    }
    if let Some((count, radius)) = style.glands {
        draw_glands(&mut canvas, n, &mut rng, count, radius);
    }
    if let Some((density, radius, elongation, colour)) = style.nuclei {
        let count = (density * (0.8 + 0.4 * uniform(&mut rng))).round() as usize;
        for _ in 0..count {
            let (cx, cy) = (uniform(&mut rng), uniform(&mut rng));
            let r = radius * (0.7 + 0.6 * uniform(&mut rng));
            let theta = if elongation > 2.0 {
                angle + (uniform(&mut rng) - 0.5) * 0.4
            } else {
                uniform(&mut rng) * 3.2
            };
            draw_nucleus(&mut canvas, n, (cx, cy), r, elongation, theta, colour);
        }
    }
    let mut img = RgbImage::new(size, size);
    for (i, px) in canvas.iter().enumerate() {
        let noise = (uniform(&mut rng) - 0.5) * 0.03;
        let rgb = px.map(|c| ((c + noise).clamp(0.0, 1.0) * 255.0).round() as u8);
        img.put_pixel((i % n) as u32, (i / n) as u32, image::Rgb(rgb));
    }
    Ok(img)
}

/// Fat-cell membranes: pixels near the bisector of their two nearest jittered seeds.
fn draw_cells(
    canvas: &mut [[f32; 3]],
    n: usize,
    rng: &mut ChaCha8Rng,
    cell: f32,
    membrane: [f32; 3],
) {
    let grid = (1.0 / cell).ceil() as usize + 1;
    let seeds: Vec<(f32, f32)> = (0..grid * grid)
        .map(|k| {
            (
                ((k % grid) as f32 + uniform(rng)) * cell,
                ((k / grid) as f32 + uniform(rng)) * cell,
            )
        })
        .collect();
    let width = (1.5 / n as f32).max(cell * 0.06);
    for (i, px) in canvas.iter_mut().enumerate() {
        let (u, v) = (
            ((i % n) as f32 + 0.5) / n as f32,
            ((i / n) as f32 + 0.5) / n as f32,
        );
        let (mut d1, mut d2) = (f32::MAX, f32::MAX);
        for &(sx, sy) in &seeds {
            let d = ((u - sx).powi(2) + (v - sy).powi(2)).sqrt();
            if d < d1 {
                d2 = d1;
                d1 = d;
            } else if d < d2 {
                d2 = d;
            }
        }
        let edge = ((d2 - d1) / width).min(1.0);
        blend(px, membrane, 1.0 - edge);
    }
}

/// Glands: a pale lumen with a dark ring of epithelial nuclei around it.
fn draw_glands(canvas: &mut [[f32; 3]], n: usize, rng: &mut ChaCha8Rng, count: usize, radius: f32) {
    for _ in 0..count {
        let (cx, cy) = (uniform(rng), uniform(rng));
        let r = radius * (0.7 + 0.6 * uniform(rng));
        for (i, px) in canvas.iter_mut().enumerate() {
            let (u, v) = (
                ((i % n) as f32 + 0.5) / n as f32,
                ((i / n) as f32 + 0.5) / n as f32,
            );
            let d = ((u - cx).powi(2) + (v - cy).powi(2)).sqrt() / r;
            if d < 0.75 {
                blend(px, WHITE, 0.85);
            } else if d < 1.05 {
                blend(px, HEMATOXYLIN, 0.75);
            }
        }
    }
}

/// An elliptical nucleus with a soft edge.
fn draw_nucleus(
    canvas: &mut [[f32; 3]],
    n: usize,
    centre: (f32, f32),
    r: f32,
    elongation: f32,
    theta: f32,
    colour: [f32; 3],
) {
    let (ct, st) = (theta.cos(), theta.sin());
    let (a, b) = (r * elongation.sqrt(), r / elongation.sqrt());
    let reach = a.max(b) * n as f32 + 1.5;
    let (px0, py0) = (centre.0 * n as f32, centre.1 * n as f32);
    let (x0, x1) = (
        (px0 - reach).max(0.0) as usize,
        ((px0 + reach) as usize).min(n - 1),
    );
    let (y0, y1) = (
        (py0 - reach).max(0.0) as usize,
        ((py0 + reach) as usize).min(n - 1),
    );
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (dx, dy) = (
                (x as f32 + 0.5) / n as f32 - centre.0,
                (y as f32 + 0.5) / n as f32 - centre.1,
            );
            let (p, q) = (dx * ct + dy * st, -dx * st + dy * ct);
            let d = ((p / a).powi(2) + (q / b).powi(2)).sqrt();
            // Soft edge one pixel wide, so tiny images still show partial nuclei.
            let edge = 1.0 / (a.min(b) * n as f32).max(0.5);
            let alpha = ((1.0 - d) / edge + 0.5).clamp(0.0, 1.0) * 0.9;
            blend(&mut canvas[y * n + x], colour, alpha);
        }
    }
}

/// Writes `per_class` PNG images of each class to `<root>/<CLASS>/<CLASS>-00000.png`;
/// `progress(done, total)` is called after each image. Returns the number written.
pub fn write_image_folder(
    root: &Path,
    classes: &[String],
    per_class: usize,
    size: u32,
    seed: u64,
    mut progress: impl FnMut(usize, usize),
) -> Result<usize, DataError> {
    let total = classes.len() * per_class;
    let mut done = 0;
    for class in classes {
        let class_index = CRC_CLASSES.iter().position(|c| c == class).ok_or_else(|| {
            DataError::Invalid(format!(
                "demo data knows the classes {CRC_CLASSES:?}, not `{class}`"
            ))
        })?;
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        for index in 0..per_class {
            let img = render(class, class_index, index, size, seed)?;
            let path = dir.join(format!("{class}-{index:05}.png"));
            img.save(&path).map_err(|e| DataError::Decode {
                file: path.display().to_string(),
                reason: e.to_string(),
            })?;
            done += 1;
            progress(done, total);
        }
    }
    Ok(done)
}
