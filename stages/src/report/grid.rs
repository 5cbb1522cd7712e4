//! Sample grids: a PNG with one row per class and the first few images of that class,
//! from any labeled image set (selected synthetic images, candidate pools, real sets);
//! and the paper's Fig. 3, several sets side by side by class ([`write_pool_figure`]).

use crate::artifact::{chw_to_hwc, ArtifactError, ImageSet, RandomAccess};
use image::RgbImage;
use std::path::Path;

/// Draws up to `per_row` images of each class of `set`, `pad` pixels apart, and writes
/// the PNG to `out`. Returns (rows, columns).
pub fn write_class_grid(
    set: &ImageSet,
    per_row: usize,
    pad: u32,
    out: &Path,
) -> Result<(usize, usize), ArtifactError> {
    let m = set.manifest();
    let rows = m.classes.len().max(1);
    let s = m.image_size as u32;
    let cell = s + pad;
    let mut canvas = RgbImage::from_pixel(
        per_row as u32 * cell + pad,
        rows as u32 * cell + pad,
        image::Rgb([255, 255, 255]),
    );
    let mut filled = vec![0usize; rows];
    set.for_each(|_, chw, label| {
        let r = label.unwrap_or(0) as usize;
        if r < rows && filled[r] < per_row {
            let img = RgbImage::from_raw(s, s, chw_to_hwc(chw, s as usize))
                .expect("image size from manifest");
            image::imageops::replace(
                &mut canvas,
                &img,
                (pad + filled[r] as u32 * cell) as i64,
                (pad + r as u32 * cell) as i64,
            );
            filled[r] += 1;
        }
        Ok::<(), ArtifactError>(())
    })?;
    canvas.save(out).map_err(|e| ArtifactError::Write {
        dir: out.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((rows, per_row))
}

/// What [`write_pool_figure`] drew: the class of each column (the first pool's classes,
/// left to right), the images drawn of each class per pool (fewer than asked where a pool
/// holds fewer), and the picture's size.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolFigure {
    pub classes: Vec<String>,
    pub drawn: Vec<Vec<usize>>,
    /// Side of each drawn image: the first pool's image size (others are resized to it).
    pub image_size: u32,
    pub width: u32,
    pub height: u32,
}

/// Width of the coloured stripe left of each pool's block (its legend colour).
pub fn pool_stripe_width(image_size: u32) -> u32 {
    (image_size / 8).max(4)
}

/// The paper's Fig. 3 as one picture: one block of `per_class` rows per pool, top to
/// bottom in the order given, one column per class (the first pool's classes; every pool
/// must have the same class names, in any order), the first `per_class` images of each
/// class stacked down its column. A stripe of `colours[k]` runs down the left of block k
/// (the crate renders no text, so the labels go into a legend keyed by these colours);
/// blocks are `4·pad` apart. Images of another size than the first pool's are resized to
/// it. Width `stripe + pad + classes·(s + pad)`, height
/// `pad + pools·per_class·(s + pad) + (pools − 1)·4·pad`, s = the first pool's image size.
/// `pools` pairs a name (for errors) with each set; `colours` must not be empty.
pub fn write_pool_figure(
    pools: &[(String, ImageSet)],
    per_class: usize,
    pad: u32,
    colours: &[[u8; 3]],
    out: &Path,
) -> Result<PoolFigure, String> {
    let Some((_, first)) = pools.first() else {
        return Err("no image sets to draw".into());
    };
    let classes = first.manifest().classes.clone();
    let s = first.manifest().image_size as u32;
    let cell = s + pad;
    let gap = 4 * pad;
    let stripe = pool_stripe_width(s);
    let block = per_class as u32 * cell;
    let width = stripe + pad + classes.len() as u32 * cell;
    let n = pools.len() as u32;
    let height = pad + n * block + (n - 1) * gap;
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut drawn = Vec::new();
    for (k, (name, set)) in pools.iter().enumerate() {
        let m = set.manifest();
        if !m.labeled() {
            return Err(format!(
                "{name}: an unlabeled image set cannot be drawn by class"
            ));
        }
        // Column of each of this set's labels, by class name.
        let column = m
            .classes
            .iter()
            .map(|c| classes.iter().position(|d| d == c))
            .collect::<Option<Vec<usize>>>()
            .filter(|_| m.classes.len() == classes.len())
            .ok_or_else(|| {
                format!(
                    "{name}: classes {:?} differ from the first set's {:?}",
                    m.classes, classes
                )
            })?;
        let access = RandomAccess::open(set).map_err(|e| e.to_string())?;
        let labels = access.labels().unwrap_or(&[]);
        let mut picked: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
        for (i, &label) in labels.iter().enumerate() {
            if let Some(&c) = usize::try_from(label).ok().and_then(|l| column.get(l)) {
                if picked[c].len() < per_class {
                    picked[c].push(i);
                }
            }
        }
        let top = pad + k as u32 * (block + gap);
        let colour = image::Rgb(colours[k % colours.len()]);
        for y in top..top + block - pad {
            for x in 0..stripe {
                canvas.put_pixel(x, y, colour);
            }
        }
        let size = m.image_size as u32;
        for (c, indices) in picked.iter().enumerate() {
            let batch = access.read(indices).map_err(|e| e.to_string())?;
            for j in 0..batch.len() {
                let mut img =
                    RgbImage::from_raw(size, size, chw_to_hwc(batch.image(j), m.image_size))
                        .expect("image size from manifest");
                if size != s {
                    img =
                        image::imageops::resize(&img, s, s, image::imageops::FilterType::Triangle);
                }
                image::imageops::replace(
                    &mut canvas,
                    &img,
                    (stripe + pad + c as u32 * cell) as i64,
                    (top + j as u32 * cell) as i64,
                );
            }
        }
        drawn.push(picked.iter().map(Vec::len).collect());
    }
    canvas
        .save(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(PoolFigure {
        classes,
        drawn,
        image_size: s,
        width,
        height,
    })
}
