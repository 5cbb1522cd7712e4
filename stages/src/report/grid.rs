//! Sample grids, labelled: one row per class (named on the left) with the first few images
//! of that class, from any labeled image set (selected synthetic images, candidate pools,
//! real sets); and the paper's Fig. 3, several sets side by side by class
//! ([`write_pool_figure`]), each set's block named on the left and each class on top.
//! This module lays out the tiles; `histodiff-plot` adds the words and writes PNG and SVG.

use crate::artifact::{chw_to_hwc, ArtifactError, ImageSet, RandomAccess};
use histodiff_plot::{GridLabel, LabelledGrid};
use image::RgbImage;
use std::path::Path;

/// Draws up to `per_row` images of each class of `set`, `pad` pixels apart, each row
/// labelled with its class name, under `title`, to `<stem>.png` and `<stem>.svg`.
/// Returns (rows, columns).
pub fn write_class_grid(
    set: &ImageSet,
    per_row: usize,
    pad: u32,
    title: &str,
    stem: &Path,
) -> Result<(usize, usize), String> {
    let m = set.manifest();
    let rows = m.classes.len().max(1);
    let tiles = class_tiles(set, rows, per_row, pad).map_err(|e| e.to_string())?;
    let cell = m.image_size as u32 + pad;
    let centre = |r: usize| pad + r as u32 * cell + m.image_size as u32 / 2;
    let grid = LabelledGrid {
        title: title.to_string(),
        tiles,
        rows: m
            .classes
            .iter()
            .enumerate()
            .map(|(r, c)| GridLabel::new(c.clone(), centre(r)))
            .collect(),
        columns: Vec::new(),
    };
    grid.write(stem)
        .map_err(|e| format!("{}: {e}", stem.display()))?;
    Ok((rows, per_row))
}

/// The tiles of [`write_class_grid`]: row r holds the first `per_row` images of label r
/// (every image of an unlabeled set goes to row 0).
fn class_tiles(
    set: &ImageSet,
    rows: usize,
    per_row: usize,
    pad: u32,
) -> Result<RgbImage, ArtifactError> {
    let s = set.manifest().image_size as u32;
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
    Ok(canvas)
}

/// One image set of Fig. 3: `name` (the producing instance, for errors) and the `label`
/// written beside its block.
pub struct Pool {
    pub name: String,
    pub label: String,
    pub set: ImageSet,
}

/// What [`write_pool_figure`] drew: the class of each column (the first pool's classes,
/// left to right), the images drawn of each class per pool (fewer than asked where a pool
/// holds fewer), and the written picture's size.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolFigure {
    pub classes: Vec<String>,
    pub drawn: Vec<Vec<usize>>,
    /// Side of each drawn image: the first pool's image size (others are resized to it).
    pub image_size: u32,
    /// Size of the PNG (tiles scaled up, labels around them).
    pub width: u32,
    pub height: u32,
}

/// The paper's Fig. 3 as one picture: one block of `per_class` rows per pool, top to
/// bottom in the order given and labelled on the left, one column per class (the first
/// pool's classes, named on top; every pool must have the same class names, in any
/// order), the first `per_class` images of each class stacked down its column. Blocks are
/// `4·pad` apart; images of another size than the first pool's are resized to it.
/// Written to `<stem>.png` and `<stem>.svg`.
pub fn write_pool_figure(
    pools: &[Pool],
    per_class: usize,
    pad: u32,
    stem: &Path,
) -> Result<PoolFigure, String> {
    let Some(first) = pools.first() else {
        return Err("no image sets to draw".into());
    };
    let classes = first.set.manifest().classes.clone();
    let s = first.set.manifest().image_size as u32;
    let (cell, gap, block) = (s + pad, 4 * pad, per_class as u32 * (s + pad));
    let n = pools.len() as u32;
    let mut canvas = RgbImage::from_pixel(
        pad + classes.len() as u32 * cell,
        pad + n * block + (n - 1) * gap,
        image::Rgb([255, 255, 255]),
    );
    let mut drawn = Vec::new();
    for (k, pool) in pools.iter().enumerate() {
        let top = pad + k as u32 * (block + gap);
        drawn.push(draw_pool(
            &mut canvas,
            pool,
            &classes,
            per_class,
            (s, pad, top),
        )?);
    }
    let grid = LabelledGrid {
        title: "Samples side by side by class (Fig. 3)".into(),
        tiles: canvas,
        rows: pools
            .iter()
            .enumerate()
            .map(|(k, p)| {
                GridLabel::new(p.label.clone(), pad + k as u32 * (block + gap) + block / 2)
            })
            .collect(),
        columns: classes
            .iter()
            .enumerate()
            .map(|(c, name)| GridLabel::new(name.clone(), pad + c as u32 * cell + s / 2))
            .collect(),
    };
    let layout = grid.layout().map_err(|e| e.to_string())?;
    grid.write(stem)
        .map_err(|e| format!("{}: {e}", stem.display()))?;
    Ok(PoolFigure {
        classes,
        drawn,
        image_size: s,
        width: layout.width,
        height: layout.height,
    })
}

/// Draws one pool's block (images `s` px, `pad` apart, from row `top`) into `canvas`, its
/// classes matched to the columns by name; returns the images drawn per column.
fn draw_pool(
    canvas: &mut RgbImage,
    pool: &Pool,
    classes: &[String],
    per_class: usize,
    (s, pad, top): (u32, u32, u32),
) -> Result<Vec<usize>, String> {
    let (name, m) = (&pool.name, pool.set.manifest());
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
    let access = RandomAccess::open(&pool.set).map_err(|e| e.to_string())?;
    let mut picked: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
    for (i, &label) in access.labels().unwrap_or(&[]).iter().enumerate() {
        if let Some(&c) = usize::try_from(label).ok().and_then(|l| column.get(l)) {
            if picked[c].len() < per_class {
                picked[c].push(i);
            }
        }
    }
    let size = m.image_size as u32;
    for (c, indices) in picked.iter().enumerate() {
        let batch = access.read(indices).map_err(|e| e.to_string())?;
        for j in 0..batch.len() {
            let mut img = RgbImage::from_raw(size, size, chw_to_hwc(batch.image(j), m.image_size))
                .expect("image size from manifest");
            if size != s {
                img = image::imageops::resize(&img, s, s, image::imageops::FilterType::Triangle);
            }
            let (x, y) = (pad + c as u32 * (s + pad), top + j as u32 * (s + pad));
            image::imageops::replace(canvas, &img, x as i64, y as i64);
        }
    }
    Ok(picked.iter().map(Vec::len).collect())
}
