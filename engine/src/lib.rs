//! histodiff-engine: the orchestrator half of histodiff. It parses pipeline files into a
//! validated plan, hashes stages by content, keeps artifacts in a store, and runs stages in
//! worker processes. It never links libtorch: it knows stages through the [`registry`].

pub mod command;
pub mod device;
pub mod executor;
pub mod fingerprint;
pub mod graph;
pub mod hash;
pub mod huge_pages;
pub mod plan;
pub mod protocol;
pub mod registry;
pub mod scheduler;
pub mod shell;
pub mod small_map;
pub mod spec;
pub mod stage;
pub mod store;
pub mod worker;
