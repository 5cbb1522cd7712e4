//! The kinds the CLI knows: the engine's built-ins plus the stages crate's, read from
//! `stages/kinds.json` at compile time. The binary does not link the stages crate (see
//! `stages/src/plugin.rs` for why); `stages/tests/kinds_json.rs` keeps the file equal to
//! the kinds, and the worker checks the loaded library against it.

use histodiff_engine::registry::{KindSpec, Registry};

/// `stages/kinds.json`, as compiled into this binary.
pub const STAGES_KINDS_JSON: &str = include_str!("../stages/kinds.json");

/// The engine's built-in kinds plus every kind of the stages crate.
pub fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    // The file is generated from the kinds and checked by a test; it cannot be malformed
    // in a built binary unless someone edits it by hand.
    let specs: Vec<KindSpec> =
        serde_json::from_str(STAGES_KINDS_JSON).expect("stages/kinds.json is valid");
    for spec in specs {
        registry.insert(spec);
    }
    registry
}
