//! The timeline of a run, Gantt style: one row per execution, a bar from its start to its
//! end on a shared time axis (since the run started), coloured by its [`State`] and
//! labelled with the instance. A cache hit takes no time and is drawn as a thin bar at
//! the moment it was recorded. The SVG comes with each bar's pixel area (one per row), so a
//! page can link the bars.

use crate::dag::draw_legend;
use crate::font::ensure_registered;
use crate::image_map::{Area, ImageMap};
use crate::line::tick_text;
use crate::raster::{encode_png, write_file};
use crate::state::State;
use crate::text::{draw_title, font, shorten, text_width};
use crate::PlotError;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One execution: seconds since the run started, at both ends.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineBar {
    pub label: String,
    pub start: f64,
    pub end: f64,
    pub state: State,
}

/// Bars top to bottom in the given order (e.g. by start time).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    pub title: String,
    pub bars: Vec<TimelineBar>,
}

const ROW: u32 = 22;
const LABEL_PX: f64 = 12.0;
const TICK_PX: f64 = 12.0;
/// The narrowest a bar is drawn, so an instant (a cache hit) stays visible.
const MIN_BAR: i32 = 3;
/// The widest the label column gets, as a share of the width; longer labels are cut.
const MAX_LABEL_SHARE: f64 = 0.36;

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The time axis' unit, chosen so a run of seconds and one of days both read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unit {
    name: &'static str,
    seconds: f64,
}

impl Unit {
    fn for_span(span: f64) -> Unit {
        match span {
            s if s <= 180.0 => Unit {
                name: "s",
                seconds: 1.0,
            },
            s if s <= 3.0 * 3600.0 => Unit {
                name: "min",
                seconds: 60.0,
            },
            s if s <= 3.0 * 86400.0 => Unit {
                name: "h",
                seconds: 3600.0,
            },
            _ => Unit {
                name: "days",
                seconds: 86400.0,
            },
        }
    }
}

impl Timeline {
    /// The height a timeline of this many rows is drawn at.
    pub fn height(&self) -> u32 {
        let title = if self.title.is_empty() { 0 } else { 36 };
        title + 36 + ROW * self.bars.len().max(1) as u32 + 56
    }

    /// The timeline as SVG `width` pixels wide, with one [`Area`] per bar.
    pub fn svg(&self, width: u32) -> Result<ImageMap, PlotError> {
        check_width(width)?;
        ensure_registered();
        let height = self.height();
        let mut svg = String::new();
        let areas = {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            let areas = self.draw(&root)?;
            root.present().map_err(PlotError::draw)?;
            areas
        };
        Ok(ImageMap {
            svg,
            width,
            height,
            areas,
        })
    }

    /// The timeline as encoded PNG bytes, `width` pixels wide.
    pub fn png(&self, width: u32) -> Result<Vec<u8>, PlotError> {
        check_width(width)?;
        ensure_registered();
        let height = self.height();
        let mut rgb = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(PlotError::draw)?;
        }
        encode_png(rgb, width, height)
    }

    /// Writes `<stem>.png` and `<stem>.svg`.
    pub fn write(&self, stem: &Path, width: u32) -> Result<(), PlotError> {
        write_file(stem, "png", &self.png(width)?)?;
        write_file(stem, "svg", self.svg(width)?.svg.as_bytes())
    }

    /// Title, legend, axis, bars and labels; returns each bar's area.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<Vec<Area>, PlotError> {
        for bar in &self.bars {
            if !(bar.start.is_finite() && bar.end.is_finite()) || bar.end < bar.start {
                return Err(PlotError::Draw(format!(
                    "timeline: bar `{}` runs from {} to {} s",
                    bar.label, bar.start, bar.end
                )));
            }
        }
        root.fill(&WHITE).map_err(PlotError::draw)?;
        let body = draw_title(root, &self.title, 18.0)?;
        let states: Vec<State> = State::ALL
            .into_iter()
            .filter(|s| self.bars.iter().any(|b| b.state == *s))
            .collect();
        let (_, top) = body.get_base_pixel();
        draw_legend(root, &states, 16, top + 6)?;
        let (_, plot) = body.split_vertically(36);
        let labels = self.labels(plot.dim_in_pixel().0)?;
        let span = self.bars.iter().map(|b| b.end).fold(0.0, f64::max);
        let unit = Unit::for_span(span);
        let end = (span / unit.seconds).max(1e-3) * 1.02;
        let rows = self.bars.len().max(1) as f64;
        let label_width = labels.iter().map(|l| l.1).max().unwrap_or(0) + 14;
        let mut chart = ChartBuilder::on(&plot)
            .margin_right(20)
            .margin_bottom(6)
            .x_label_area_size(48)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..end, 0.0..rows)
            .map_err(PlotError::draw)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(format!("time since the run started ({})", unit.name))
            .x_label_formatter(&|v| tick_text(*v))
            .label_style(font(TICK_PX))
            .axis_desc_style(font(TICK_PX + 1.0))
            .light_line_style(RGBColor(0, 0, 0).mix(0.04))
            .bold_line_style(RGBColor(0, 0, 0).mix(0.12))
            .draw()
            .map_err(PlotError::draw)?;
        let areas = self.draw_bars(&chart, root, unit)?;
        self.draw_labels(&chart, root, &labels)?;
        Ok(areas)
    }

    /// Each bar's label, shortened to fit the label column, with its pixel width.
    fn labels(&self, width: u32) -> Result<Vec<(String, u32)>, PlotError> {
        let max = (f64::from(width) * MAX_LABEL_SHARE) as u32;
        let label_font = font(LABEL_PX);
        self.bars
            .iter()
            .map(|b| {
                let text = shorten(&label_font, &b.label, max)?;
                let w = text_width(&label_font, &text)?;
                Ok((text, w))
            })
            .collect()
    }

    /// Row `i` spans y from `rows - i - 1` to `rows - i` (first bar on top).
    fn draw_bars<DB: DrawingBackend>(
        &self,
        chart: &Chart<'_, DB>,
        root: &DrawingArea<DB, Shift>,
        unit: Unit,
    ) -> Result<Vec<Area>, PlotError> {
        let rows = self.bars.len() as f64;
        let mut areas = Vec::with_capacity(self.bars.len());
        for (i, bar) in self.bars.iter().enumerate() {
            let y = rows - i as f64;
            let (x0, y0) = chart.backend_coord(&(bar.start / unit.seconds, y - 0.15));
            let (x1, y1) = chart.backend_coord(&(bar.end / unit.seconds, y - 0.85));
            let (top, bottom) = (y0.min(y1), y0.max(y1));
            let x1 = x1.max(x0 + MIN_BAR);
            let corners = [(x0, top), (x1, bottom)];
            root.draw(&Rectangle::new(corners, bar.state.fill().filled()))
                .map_err(PlotError::draw)?;
            root.draw(&Rectangle::new(corners, bar.state.stroke().stroke_width(1)))
                .map_err(PlotError::draw)?;
            areas.push(Area {
                x: x0,
                y: top,
                width: x1 - x0,
                height: bottom - top,
            });
        }
        Ok(areas)
    }

    /// The labels, right-aligned against the plot's left edge, centred on their rows.
    fn draw_labels<DB: DrawingBackend>(
        &self,
        chart: &Chart<'_, DB>,
        root: &DrawingArea<DB, Shift>,
        labels: &[(String, u32)],
    ) -> Result<(), PlotError> {
        let rows = self.bars.len() as f64;
        let style = TextStyle::from(font(LABEL_PX))
            .color(&RGBColor(30, 30, 30))
            .pos(Pos::new(HPos::Right, VPos::Center));
        for (i, (text, _)) in labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(0.0, rows - i as f64 - 0.5));
            root.draw(&Text::new(text.clone(), (x - 6, y), style.clone()))
                .map_err(PlotError::draw)?;
        }
        Ok(())
    }
}

fn check_width(width: u32) -> Result<(), PlotError> {
    if width < 320 {
        return Err(PlotError::Draw(format!(
            "a timeline {width} pixels wide is too narrow to label (at least 320)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, start: f64, end: f64, state: State) -> TimelineBar {
        TimelineBar {
            label: label.into(),
            start,
            end,
            state,
        }
    }

    fn timeline() -> Timeline {
        Timeline {
            title: "run 3".into(),
            bars: vec![
                bar("source", 0.0, 0.0, State::Cached),
                bar("train[seed=0]", 0.5, 40.0, State::Ran),
                bar("train[seed=1]", 0.6, 12.0, State::Failed),
            ],
        }
    }

    #[test]
    fn bars_follow_time_and_rows_follow_order() {
        let map = timeline().svg(800).unwrap();
        let a = &map.areas;
        assert_eq!(a.len(), 3);
        assert!(
            a[0].y < a[1].y && a[1].y < a[2].y,
            "first bar on top: {a:?}"
        );
        assert_eq!(a[0].width, MIN_BAR, "an instant is still drawn");
        assert!(
            a[1].width > 3 * a[2].width / 2,
            "40 s is longer than 11.4 s: {a:?}"
        );
        assert!(a[1].x > a[0].x);
        for text in [
            "train[seed=0]",
            "cached",
            "failed",
            "time since the run started (s)",
        ] {
            assert!(map.svg.contains(text), "{text}");
        }
    }

    #[test]
    fn the_unit_follows_the_span() {
        assert_eq!(Unit::for_span(90.0).name, "s");
        assert_eq!(Unit::for_span(2000.0).name, "min");
        assert_eq!(Unit::for_span(20.0 * 3600.0).name, "h");
        assert_eq!(Unit::for_span(9.0 * 86400.0).name, "days");
    }

    #[test]
    fn a_bar_ending_before_it_starts_is_refused() {
        let mut t = timeline();
        t.bars.push(bar("odd", 5.0, 1.0, State::Ran));
        assert!(t.svg(800).unwrap_err().to_string().contains("`odd`"));
        assert!(timeline().png(640).unwrap().starts_with(b"\x89PNG"));
        assert!(timeline().svg(100).is_err());
    }
}
