//! Figures for people: labelled line charts (training curves, Table 1 against ratio), the
//! run timeline, the DAG and sample grids, as PNG and SVG. Text is drawn with DejaVu Sans,
//! embedded in the binary (`fonts/`, Bitstream Vera licence), so a figure renders the same
//! on a machine with no fonts installed.

pub mod dag;
mod font;
pub mod grid;
pub mod image_map;
mod legend;
pub mod line;
mod raster;
pub mod state;
mod text;
pub mod timeline;

pub use dag::{Dag, DagNode};
pub use font::FONT_FAMILY;
pub use grid::{GridLabel, LabelledGrid};
pub use image_map::{Area, ImageMap};
pub use line::{LineChart, Series};
pub use state::State;
pub use timeline::{Timeline, TimelineBar};

/// Why a figure could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("{path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("PNG encoding failed: {0}")]
    Encode(String),
}

impl PlotError {
    /// Wraps any plotters drawing error (their types are generic over the backend).
    pub fn draw(e: impl std::fmt::Display) -> Self {
        PlotError::Draw(e.to_string())
    }
}
