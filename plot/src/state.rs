//! What happened to a stage instance in a run, and the colour every figure gives it: the
//! DAG's boxes, the timeline's bars and the HTML report's legend use the same palette.

use plotters::style::RGBColor;

/// The state of one execution (timeline) or of one instance's last execution (DAG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Executed and succeeded.
    Ran,
    /// Reused a cached result; nothing ran.
    Cached,
    Failed,
    /// Checkpointed and stopped, or abandoned by a dead orchestrator.
    Interrupted,
    /// Pending or running when the report was made.
    Running,
    /// In the pipeline but not executed in this run (e.g. an upstream failed).
    NotRun,
}

impl State {
    /// Every state, in legend order.
    pub const ALL: [State; 6] = [
        State::Ran,
        State::Cached,
        State::Failed,
        State::Interrupted,
        State::Running,
        State::NotRun,
    ];

    /// The word a legend shows.
    pub fn label(self) -> &'static str {
        match self {
            State::Ran => "ran",
            State::Cached => "cached",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
            State::Running => "running",
            State::NotRun => "not run",
        }
    }

    /// Fill colour: green ran, blue cached, red failed, amber interrupted, purple
    /// running, light grey not run (distinct in lightness too, for colour-blind readers).
    pub fn fill(self) -> RGBColor {
        match self {
            State::Ran => RGBColor(161, 217, 155),
            State::Cached => RGBColor(158, 202, 225),
            State::Failed => RGBColor(239, 138, 130),
            State::Interrupted => RGBColor(253, 208, 120),
            State::Running => RGBColor(203, 178, 230),
            State::NotRun => RGBColor(235, 235, 235),
        }
    }

    /// Outline colour: a darker shade of [`State::fill`].
    pub fn stroke(self) -> RGBColor {
        let RGBColor(r, g, b) = self.fill();
        let dark = |c: u8| (f64::from(c) * 0.55) as u8;
        RGBColor(dark(r), dark(g), dark(b))
    }

    /// `#rrggbb` of the fill, for CSS.
    pub fn css_fill(self) -> String {
        let RGBColor(r, g, b) = self.fill();
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}
