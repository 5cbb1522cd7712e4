//! The legend of a line chart: a column beside the plot (so it never covers data) with one
//! row per named series, its line (solid or dashed, with a marker) and its name. With many
//! series the rows and their text shrink so every one fits.

use crate::text::{font, shorten, text_width};
use crate::PlotError;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// How one series is drawn, and named in the legend.
#[derive(Clone)]
pub(crate) struct Key<'a> {
    pub name: &'a str,
    pub colour: RGBColor,
    pub dashed: bool,
}

/// Smallest legend text, in pixels.
const MIN_TEXT: f64 = 8.0;

/// Width of the legend column for text of `size` px: the widest name plus its swatch, at
/// most a third of `width` (longer names are shortened); 0 without named series.
pub(crate) fn legend_width(keys: &[Key<'_>], size: f64, width: u32) -> Result<u32, PlotError> {
    let f = font(size);
    let mut widest = 0;
    for k in keys.iter().filter(|k| !k.name.is_empty()) {
        widest = widest.max(text_width(&f, k.name)?);
    }
    if widest == 0 {
        return Ok(0);
    }
    Ok((widest + swatch(size) as u32 + 16).min(width / 3))
}

fn swatch(size: f64) -> i32 {
    (size * 1.8) as i32
}

/// Draws one row per named key into `area`, from `top` px down, with text of at most
/// `size` px (less when the rows would not fit the height).
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    keys: &[Key<'_>],
    size: f64,
    top: i32,
) -> Result<(), PlotError> {
    let (width, height) = area.dim_in_pixel();
    let named: Vec<&Key> = keys.iter().filter(|k| !k.name.is_empty()).collect();
    if width == 0 || named.is_empty() {
        return Ok(());
    }
    let room = (height as f64 - f64::from(top)) / named.len() as f64;
    let size = size.min(room / 1.5).max(MIN_TEXT);
    let row = (size * 1.5).max(room.min(size * 1.6));
    let sw = swatch(size);
    let f = font(size);
    let style = TextStyle::from(f.clone()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, key) in named.iter().enumerate() {
        let y = top + (i as f64 * row + row / 2.0) as i32;
        let line = key.colour.stroke_width(3);
        let ends = vec![(2, y), (2 + sw, y)];
        if key.dashed {
            area.draw(&DashedPathElement::new(ends, 5, 3, line))
        } else {
            area.draw(&PathElement::new(ends, line))
        }
        .map_err(PlotError::draw)?;
        area.draw(&Circle::new((2 + sw / 2, y), 4, key.colour.filled()))
            .map_err(PlotError::draw)?;
        let name = shorten(&f, key.name, width.saturating_sub(sw as u32 + 12))?;
        area.draw(&Text::new(name, (sw + 8, y), style.clone()))
            .map_err(PlotError::draw)?;
    }
    Ok(())
}
