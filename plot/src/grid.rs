//! Sample grids with words on them: a picture of image tiles (drawn by the caller, who
//! knows the images) framed by a title, a label beside each row (e.g. a class name) and a
//! label above each column (e.g. a class or pool name). The PNG has the tiles scaled up by
//! a whole factor (nearest neighbour, so pixels stay pixels); the SVG embeds the unscaled
//! tiles as a base64 PNG `<image>` and keeps the labels as `<text>`.

use crate::font::ensure_registered;
use crate::raster::{encode_png, write_file};
use crate::text::{draw_title, font, shorten, text_width};
use crate::PlotError;
use base64::Engine;
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;
use std::path::Path;

/// A label at `centre`, a pixel offset along the unscaled tile picture (y for a row
/// label, x for a column label).
#[derive(Debug, Clone, PartialEq)]
pub struct GridLabel {
    pub text: String,
    pub centre: u32,
}

impl GridLabel {
    pub fn new(text: impl Into<String>, centre: u32) -> Self {
        GridLabel {
            text: text.into(),
            centre,
        }
    }
}

/// The tiles and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledGrid {
    pub title: String,
    pub tiles: RgbImage,
    /// Drawn right-aligned left of the tiles.
    pub rows: Vec<GridLabel>,
    /// Drawn above the tiles, turned upright (reading upwards) when one is wider than
    /// the space between columns.
    pub columns: Vec<GridLabel>,
}

const LABEL_SIZE: f64 = 15.0;
const TITLE_SIZE: f64 = 19.0;
/// Labels longer than this many pixels are shortened with an ellipsis.
const MAX_LABEL: u32 = 220;
const GAP: u32 = 8;

/// Where everything goes, in output pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridLayout {
    /// Whole factor the tiles are scaled by in the PNG (and displayed at in the SVG).
    pub scale: u32,
    /// Top-left corner of the tiles.
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
    /// Whether column labels are drawn upright.
    pub upright_columns: bool,
}

impl LabelledGrid {
    /// The output size and the position of the tiles. Small tile pictures are scaled up
    /// (at most 8×) so the longer side is at least 480 px and the labels fit their rows.
    pub fn layout(&self) -> Result<GridLayout, PlotError> {
        ensure_registered();
        let (w, h) = self.tiles.dimensions();
        if w == 0 || h == 0 {
            return Err(PlotError::Draw("the tile picture is empty".into()));
        }
        let scale = 480u32.div_ceil(w.max(h)).clamp(1, 8);
        let row_width = self.widest(&self.rows)?;
        let column_width = self.widest(&self.columns)?;
        let spacing = min_spacing(&self.columns, w) * scale;
        let upright_columns = column_width + 4 > spacing;
        let column_height = match (self.columns.is_empty(), upright_columns) {
            (true, _) => 0,
            (false, true) => column_width + GAP,
            (false, false) => LABEL_SIZE as u32 + GAP,
        };
        let title_height = if self.title.is_empty() {
            0
        } else {
            (TITLE_SIZE * 2.0) as u32
        };
        let left = GAP + if row_width > 0 { row_width + GAP } else { 0 };
        let top = title_height + column_height + GAP;
        let width = (left + w * scale + GAP).max(self.title_width()? + 2 * GAP);
        Ok(GridLayout {
            scale,
            left,
            top,
            width,
            height: top + h * scale + GAP,
            upright_columns,
        })
    }

    /// The labelled grid as encoded PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>, PlotError> {
        let layout = self.layout()?;
        let (width, height) = (layout.width, layout.height);
        let mut rgb = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
            self.draw_text(&root, &layout)?;
            root.present().map_err(PlotError::draw)?;
        }
        let mut canvas = RgbImage::from_raw(width, height, rgb)
            .ok_or_else(|| PlotError::Encode("RGB buffer of the wrong size".into()))?;
        let (w, h) = self.tiles.dimensions();
        let scaled = image::imageops::resize(
            &self.tiles,
            w * layout.scale,
            h * layout.scale,
            image::imageops::FilterType::Nearest,
        );
        image::imageops::replace(
            &mut canvas,
            &scaled,
            i64::from(layout.left),
            i64::from(layout.top),
        );
        encode_png(canvas.into_raw(), width, height)
    }

    /// The labelled grid as SVG: labels as text, the tiles as an embedded PNG.
    pub fn svg(&self) -> Result<String, PlotError> {
        let layout = self.layout()?;
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, (layout.width, layout.height))
                .into_drawing_area();
            self.draw_text(&root, &layout)?;
            root.present().map_err(PlotError::draw)?;
        }
        let (w, h) = self.tiles.dimensions();
        let png = encode_png(self.tiles.as_raw().clone(), w, h)?;
        let image = format!(
            "<image x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" image-rendering=\"pixelated\" \
             style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{}\"/>\n",
            layout.left,
            layout.top,
            w * layout.scale,
            h * layout.scale,
            base64::engine::general_purpose::STANDARD.encode(png)
        );
        let end = text
            .rfind("</svg>")
            .ok_or_else(|| PlotError::Draw("the SVG backend wrote no closing tag".into()))?;
        text.insert_str(end, &image);
        Ok(text)
    }

    /// Writes `<stem>.png` and `<stem>.svg`.
    pub fn write(&self, stem: &Path) -> Result<(), PlotError> {
        write_file(stem, "png", &self.png()?)?;
        write_file(stem, "svg", self.svg()?.as_bytes())
    }

    /// White background, title, row and column labels.
    fn draw_text<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        layout: &GridLayout,
    ) -> Result<(), PlotError> {
        root.fill(&WHITE).map_err(PlotError::draw)?;
        draw_title(root, &self.title, TITLE_SIZE)?;
        let style = TextStyle::from(font(LABEL_SIZE));
        let scale = layout.scale as i32;
        for label in &self.rows {
            let at = (
                layout.left as i32 - GAP as i32,
                layout.top as i32 + label.centre as i32 * scale,
            );
            let style = style.pos(Pos::new(HPos::Right, VPos::Center));
            draw_label(root, &label.text, at, style)?;
        }
        for label in &self.columns {
            let x = layout.left as i32 + label.centre as i32 * scale;
            let y = layout.top as i32 - GAP as i32 / 2;
            let style = if layout.upright_columns {
                style
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Left, VPos::Center))
            } else {
                style.pos(Pos::new(HPos::Center, VPos::Bottom))
            };
            draw_label(root, &label.text, (x, y), style)?;
        }
        Ok(())
    }

    /// Width of the widest label (after shortening), 0 without labels.
    fn widest(&self, labels: &[GridLabel]) -> Result<u32, PlotError> {
        let f = font(LABEL_SIZE);
        labels.iter().try_fold(0, |widest, l| {
            Ok(widest.max(text_width(&f, &shorten(&f, &l.text, MAX_LABEL)?)?))
        })
    }

    fn title_width(&self) -> Result<u32, PlotError> {
        text_width(&font(TITLE_SIZE), &self.title)
    }
}

/// Draws one label, shortened to [`MAX_LABEL`] pixels.
fn draw_label<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    at: (i32, i32),
    style: TextStyle<'_>,
) -> Result<(), PlotError> {
    let text = shorten(&font(LABEL_SIZE), text, MAX_LABEL)?;
    root.draw(&Text::new(text, at, style))
        .map_err(PlotError::draw)
}

/// Smallest distance between neighbouring column centres (the whole width for one).
fn min_spacing(columns: &[GridLabel], width: u32) -> u32 {
    let mut centres: Vec<u32> = columns.iter().map(|c| c.centre).collect();
    centres.sort_unstable();
    centres
        .windows(2)
        .map(|w| w[1] - w[0])
        .min()
        .unwrap_or(width)
}
