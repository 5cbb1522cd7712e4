//! Text every figure shares: the title band, measuring a label, and shortening one that
//! does not fit (from the middle, so both the name's start and its distinguishing end,
//! e.g. `…ratio=2.0,seed=1]`, stay readable).

use crate::{PlotError, FONT_FAMILY};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The figures' font at `size` pixels.
pub(crate) fn font(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONT_FAMILY), size, FontStyle::Normal)
}

/// The title centred in a band at the top (with room above it); returns the area below
/// (all of `root` when the title is empty).
pub(crate) fn draw_title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    size: f64,
) -> Result<DrawingArea<DB, Shift>, PlotError> {
    if title.is_empty() {
        return Ok(root.clone());
    }
    let band = (size * 2.0) as u32;
    let (top, body) = root.split_vertically(band);
    let style = TextStyle::from(font(size)).pos(Pos::new(HPos::Center, VPos::Center));
    let centre = (
        top.dim_in_pixel().0 as i32 / 2,
        band as i32 / 2 + (size * 0.15) as i32,
    );
    top.draw(&Text::new(title, centre, style))
        .map_err(PlotError::draw)?;
    Ok(body)
}

/// Width of `text` in `font`, in pixels (0 for no text).
pub(crate) fn text_width(font: &FontDesc<'_>, text: &str) -> Result<u32, PlotError> {
    if text.is_empty() {
        return Ok(0);
    }
    font.box_size(text)
        .map(|(w, _)| w)
        .map_err(|e| PlotError::Draw(format!("measuring `{text}`: {e:?}")))
}

/// `text` unchanged when it is at most `max` pixels wide, else with characters taken out
/// of its middle (replaced by "…") until it fits.
pub(crate) fn shorten(font: &FontDesc<'_>, text: &str, max: u32) -> Result<String, PlotError> {
    if text_width(font, text)? <= max {
        return Ok(text.to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (1..chars.len()).rev() {
        let head = keep * 2 / 5;
        let tail = keep - head;
        let candidate: String = chars[..head]
            .iter()
            .chain(['…'].iter())
            .chain(&chars[chars.len() - tail..])
            .collect();
        if text_width(font, &candidate)? <= max {
            return Ok(candidate);
        }
    }
    Ok("…".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_loses_its_middle() {
        crate::font::ensure_registered();
        let f = font(15.0);
        let name = "augmented_gan[generator=stylegan2,method=centroid,ratio=0.5,seed=0]";
        assert_eq!(shorten(&f, "short", 200).unwrap(), "short");
        let short = shorten(&f, name, 200).unwrap();
        assert!(text_width(&f, &short).unwrap() <= 200, "{short}");
        assert!(
            short.starts_with("augmented") && short.ends_with("seed=0]"),
            "{short}"
        );
        assert!(short.contains('…'));
    }
}
