//! Content hashes: artifacts (file bytes or a directory's canonical manifest) and stage keys.

use serde::{Deserialize, Serialize};
use std::fmt;

/// blake3 of an artifact's content (64 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ArtifactHash(pub String);

/// blake3 of a stage's canonical fingerprint (64 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageKey(pub String);

impl fmt::Display for ArtifactHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StageKey {
    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl ArtifactHash {
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}
