//! The one font every figure uses, registered with plotters once per process.

use std::sync::Once;

/// The family name figures ask plotters for.
pub const FONT_FAMILY: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Makes [`FONT_FAMILY`] resolve to the embedded DejaVu Sans. Every drawing entry point
/// calls this first; later calls cost an atomic load.
pub fn ensure_registered() {
    REGISTER.call_once(|| {
        // The font is compiled in and known to parse; a failure here is a build defect.
        if plotters::style::register_font(
            FONT_FAMILY,
            plotters::style::FontStyle::Normal,
            DEJAVU_SANS,
        )
        .is_err()
        {
            tracing_free_warning();
        }
    });
}

fn tracing_free_warning() {
    eprintln!("histodiff-plot: the embedded DejaVu Sans did not parse; text will be missing");
}
