//! Every stage kind this crate implements, for the worker and the CLI's registry.

use histodiff_engine::stage::Stage;

/// All stage kinds of the stages crate (the engine adds `command`).
pub fn all() -> Vec<Box<dyn Stage>> {
    vec![]
}
