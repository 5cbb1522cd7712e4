//! Reading datasets from disk into image sets: decoding and resizing image files
//! ([`image_file`]), the class-folder and plain-folder layouts ([`folder`]), PanNuke-style
//! `.npy` arrays ([`npy`]), the seeded few-shot subset rule ([`subset`]) and the
//! procedural demo dataset ([`demo`]).

pub mod demo;
pub mod folder;
pub mod image_file;
pub mod npy;
pub mod selection;
pub mod subset;

/// Errors while reading data; each names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: cannot decode image: {reason}")]
    Decode { file: String, reason: String },
    #[error("{file}: {reason}")]
    Npy { file: String, reason: String },
    #[error("{path}: {reason}")]
    Layout { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
}

impl DataError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DataError::Io {
            file: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn layout(path: &std::path::Path, reason: impl Into<String>) -> Self {
        DataError::Layout {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

/// Data errors reach a stage's caller as invalid input, naming the file.
impl From<DataError> for histodiff_engine::stage::StageError {
    fn from(e: DataError) -> Self {
        histodiff_engine::stage::StageError::Invalid(e.to_string())
    }
}
