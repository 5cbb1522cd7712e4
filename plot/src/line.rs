//! Labelled line charts: a title, axes with tick values and descriptions, one coloured line
//! per series named in a legend beside the plot (so it never covers data), markers where a
//! series has few points and vertical error bars where the caller gives a spread. The same
//! drawing goes to SVG (text stays text, searchable) and to PNG.

use crate::font::ensure_registered;
use crate::legend::{draw_legend, legend_width, Key};
use crate::raster::{encode_png, write_file};
// Re-exported: the timeline and DAG figures title themselves the same way.
pub(crate) use crate::text::draw_title;
use crate::PlotError;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;
use std::ops::Range;
use std::path::Path;

/// One named line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// half-width of an error bar at each point (same length as points), e.g. the seed std
    pub error: Option<Vec<f64>>,
}

/// A chart of several series on shared axes. Labels carry their units where the caller
/// gives them (e.g. `"loss (cross-entropy)"`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Logarithmic x axis; points with x ≤ 0 are then dropped.
    pub x_log: bool,
}

/// Colours of the series, in order (Tableau 10: distinguishable, colour-blind tolerant).
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A series with at most this many drawn points gets a marker at each.
const MARKER_LIMIT: usize = 40;

/// One drawable point: x, y and the error bar's half-width, if any.
type Point = (f64, f64, Option<f64>);

/// A series after dropping what cannot be drawn.
struct Drawable<'a> {
    key: Key<'a>,
    points: Vec<Point>,
}

/// Text sizes in pixels, scaled with the picture so small and large figures both read.
struct Fonts {
    title: f64,
    desc: f64,
    tick: f64,
    legend: f64,
}

impl Fonts {
    fn for_size(width: u32, height: u32) -> Self {
        let s = (f64::from(width.min(height)) / 450.0).clamp(0.7, 2.5);
        Fonts {
            title: 22.0 * s,
            desc: 17.0 * s,
            tick: 14.0 * s,
            legend: 15.0 * s,
        }
    }
}

impl LineChart {
    /// The chart as an SVG document of `width`×`height` pixels.
    pub fn svg(&self, width: u32, height: u32) -> Result<String, PlotError> {
        check_size(width, height)?;
        ensure_registered();
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(PlotError::draw)?;
        }
        Ok(text)
    }

    /// The chart as encoded PNG bytes of `width`×`height` pixels.
    pub fn png(&self, width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
        check_size(width, height)?;
        ensure_registered();
        let mut rgb = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(PlotError::draw)?;
        }
        encode_png(rgb, width, height)
    }

    /// Writes `<stem>.png` and `<stem>.svg`.
    pub fn write(&self, stem: &Path, width: u32, height: u32) -> Result<(), PlotError> {
        write_file(stem, "png", &self.png(width, height)?)?;
        write_file(stem, "svg", self.svg(width, height)?.as_bytes())
    }

    /// The finite points of each series (and x > 0 on a log axis), with their error bars.
    fn drawable(&self) -> Result<Vec<Drawable<'_>>, PlotError> {
        self.series
            .iter()
            .enumerate()
            .map(|(k, s)| {
                if let Some(e) = s.error.as_ref().filter(|e| e.len() != s.points.len()) {
                    return Err(PlotError::Draw(format!(
                        "series `{}` has {} error values for {} points",
                        s.name,
                        e.len(),
                        s.points.len()
                    )));
                }
                let points = s
                    .points
                    .iter()
                    .enumerate()
                    .filter(|(_, (x, y))| {
                        x.is_finite() && y.is_finite() && (!self.x_log || *x > 0.0)
                    })
                    .map(|(i, &(x, y))| {
                        let e = s.error.as_ref().map(|e| e[i]);
                        (x, y, e.filter(|e| e.is_finite() && *e > 0.0))
                    })
                    .collect();
                Ok(Drawable {
                    key: key(&s.name, k),
                    points,
                })
            })
            .collect()
    }

    /// Title, legend and plot onto `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let series = self.drawable()?;
        let (width, height) = root.dim_in_pixel();
        let fonts = Fonts::for_size(width, height);
        root.fill(&WHITE).map_err(PlotError::draw)?;
        let body = draw_title(root, &self.title, fonts.title)?;
        let keys: Vec<Key> = series.iter().map(|s| s.key.clone()).collect();
        let legend_width = legend_width(&keys, fonts.legend, width)?;
        let (plot, legend) = body.split_horizontally(body.dim_in_pixel().0 - legend_width);
        draw_legend(&legend, &keys, fonts.legend, (fonts.tick * 0.8) as i32)?;
        let (x, y) = (x_range(&series, self.x_log), y_range(&series));
        if self.x_log {
            self.plot(&plot, (x.start..x.end).log_scale(), y, &series, &fonts)
        } else {
            self.plot(&plot, x, y, &series, &fonts)
        }
    }

    /// Axes, grid, lines, markers and error bars; "no data" when nothing is drawable.
    fn plot<DB, X>(
        &self,
        area: &DrawingArea<DB, Shift>,
        x: X,
        y: Range<f64>,
        series: &[Drawable<'_>],
        fonts: &Fonts,
    ) -> Result<(), PlotError>
    where
        DB: DrawingBackend,
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let font = crate::FONT_FAMILY;
        let mut chart = ChartBuilder::on(area)
            .margin((fonts.tick * 0.8) as u32)
            .x_label_area_size((fonts.tick * 1.6 + fonts.desc * 1.6) as u32)
            .y_label_area_size((fonts.tick * 3.4 + fonts.desc * 1.5) as u32)
            .build_cartesian_2d(x, y)
            .map_err(PlotError::draw)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&|v| tick_text(*v))
            .y_label_formatter(&|v| tick_text(*v))
            .label_style((font, fonts.tick))
            .axis_desc_style((font, fonts.desc))
            .max_light_lines(0)
            .bold_line_style(RGBColor(0, 0, 0).mix(0.12))
            .draw()
            .map_err(PlotError::draw)?;
        if series.iter().all(|s| s.points.is_empty()) {
            let (w, h) = chart.plotting_area().dim_in_pixel();
            let centre = (w as i32 / 2, h as i32 / 2);
            let style = TextStyle::from((font, fonts.desc))
                .color(&RGBColor(90, 90, 90))
                .pos(text_anchor::Pos::new(
                    text_anchor::HPos::Center,
                    text_anchor::VPos::Center,
                ));
            let area = chart.plotting_area().strip_coord_spec();
            area.draw(&Text::new("no data", centre, style))
                .map_err(PlotError::draw)?;
            return Ok(());
        }
        for s in series {
            draw_series(&mut chart, s, fonts)?;
        }
        Ok(())
    }
}

/// The line, markers and error bars of one series.
fn draw_series<DB, X>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, RangedCoordf64>>,
    s: &Drawable<'_>,
    fonts: &Fonts,
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
{
    let colour = s.key.colour;
    let line = colour.stroke_width((fonts.tick / 6.0).max(2.0) as u32);
    let xy = s.points.iter().map(|&(x, y, _)| (x, y));
    if s.key.dashed {
        let dash = (fonts.tick * 0.6) as u32;
        chart.draw_series(DashedLineSeries::new(xy.clone(), dash, dash / 2 + 1, line))
    } else {
        chart.draw_series(LineSeries::new(xy.clone(), line))
    }
    .map_err(PlotError::draw)?;
    if s.points.len() <= MARKER_LIMIT {
        let r = (fonts.tick / 3.5).max(3.0) as i32;
        chart
            .draw_series(xy.map(|p| Circle::new(p, r, colour.filled())))
            .map_err(PlotError::draw)?;
    }
    let bars = s.points.iter().filter_map(|&(x, y, e)| {
        e.map(|e| ErrorBar::new_vertical(x, y - e, y, y + e, colour.stroke_width(2), 10))
    });
    chart.draw_series(bars).map_err(PlotError::draw)?;
    Ok(())
}

/// The colour and dash of series `k`: the ten colours solid, then dashed, then again.
fn key(name: &str, k: usize) -> Key<'_> {
    Key {
        name,
        colour: COLOURS[k % COLOURS.len()],
        dashed: (k / COLOURS.len()) % 2 == 1,
    }
}

/// The x range over every drawn point, padded so edge markers are not cut; a single x
/// value gets a unit-wide (or, on a log axis, a factor-of-ten) window around it.
fn x_range(series: &[Drawable<'_>], log: bool) -> Range<f64> {
    let (lo, hi) = extent(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    match (lo, hi, log) {
        (lo, hi, true) if lo <= hi => {
            let pad = (hi / lo).powf(0.04).max(1.0 + 1e-9);
            let (pad_lo, pad_hi) = if hi == lo { (3.0, 3.0) } else { (pad, pad) };
            lo / pad_lo..hi * pad_hi
        }
        (_, _, true) => 1.0..10.0,
        (lo, hi, false) => padded(lo, hi),
    }
}

/// The y range over every point and error bar; a constant series gets a window around
/// its value instead of a zero-height range.
fn y_range(series: &[Drawable<'_>]) -> Range<f64> {
    let ends = series.iter().flat_map(|s| {
        s.points
            .iter()
            .flat_map(|&(_, y, e)| [y - e.unwrap_or(0.0), y + e.unwrap_or(0.0)])
    });
    let (lo, hi) = extent(ends);
    padded(lo, hi)
}

/// The smallest and largest value (lo > hi when there are none).
fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// `lo..hi` widened by 5% each side; a single value gets ±10% of itself (±0.5 at zero);
/// no values give 0..1.
fn padded(lo: f64, hi: f64) -> Range<f64> {
    if lo > hi {
        return 0.0..1.0;
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let half = if lo == 0.0 { 0.5 } else { lo.abs() * 0.1 };
        return lo - half..hi + half;
    }
    let pad = (hi - lo) * 0.05;
    lo - pad..hi + pad
}

/// A tick value without float noise (`0.30000000000000004` reads `0.3`), in scientific
/// notation when very large or small.
pub(crate) fn tick_text(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.1e}");
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

fn check_size(width: u32, height: u32) -> Result<(), PlotError> {
    if width < 120 || height < 90 {
        return Err(PlotError::Draw(format!(
            "a chart of {width}×{height} pixels is too small to label (at least 120×90)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_without_float_noise() {
        assert_eq!(tick_text(0.1 + 0.2), "0.3");
        assert_eq!(tick_text(2.0), "2");
        assert_eq!(tick_text(-0.00001), "-1.0e-5");
        assert_eq!(tick_text(1500.0), "1500");
    }

    #[test]
    fn constant_and_empty_ranges_are_not_degenerate() {
        assert_eq!(padded(2.0, 2.0), 1.8..2.2);
        assert_eq!(padded(0.0, 0.0), -0.5..0.5);
        assert_eq!(padded(f64::INFINITY, f64::NEG_INFINITY), 0.0..1.0);
        let r = padded(0.0, 10.0);
        assert!(r.start < 0.0 && r.end > 10.0);
    }
}
