//! Autoencoder configuration, its presets and its validation.

use serde::{Deserialize, Serialize};

/// Every GroupNorm of the LDM autoencoder uses 32 groups (`Normalize` in model.py).
pub const NORM_GROUPS: i64 = 32;

/// Errors of the autoencoder: an unusable configuration or an input of the wrong shape.
#[derive(Debug, thiserror::Error)]
pub enum AutoencoderError {
    #[error("autoencoder config: {0}")]
    Config(String),
    #[error("autoencoder {place}: expected {expected}, got shape {found:?}")]
    Shape {
        place: &'static str,
        expected: String,
        found: Vec<i64>,
    },
}

/// `ddconfig` + `embed_dim` of an LDM `AutoencoderKL` (double_z is always true for KL).
/// `resamp_with_conv` is always true and the decoder has no tanh, as in every LDM config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoencoderConfig {
    /// Image channels entering the encoder (`in_channels`).
    pub in_channels: i64,
    /// Image channels leaving the decoder (`out_ch`).
    pub out_ch: i64,
    /// Base width (`ch`); every level's width `ch · ch_mult[i]` must be a multiple of 32.
    pub ch: i64,
    /// Width multiplier per resolution level; `len − 1` downsamplings (f = 2^(len−1)).
    pub ch_mult: Vec<i64>,
    /// Resnet blocks per encoder level (the decoder uses one more).
    pub num_res_blocks: usize,
    /// Resolutions (side length in pixels) at which levels add self-attention.
    pub attn_resolutions: Vec<i64>,
    /// Image side length the resolution bookkeeping starts from (`resolution`).
    pub resolution: i64,
    /// Channels of the encoder/decoder latent interface (`z_channels`).
    pub z_channels: i64,
    /// Channels of the posterior latent (`embed_dim`).
    pub embed_dim: i64,
    /// Dropout inside the resnet blocks (active only when `train` is passed).
    pub dropout: f64,
}

impl Default for AutoencoderConfig {
    /// kl-f4 as trained by the paper: `autoencoder_histo_kl_64x64x3.yaml` (SPEC §2.1).
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_ch: 3,
            ch: 128,
            ch_mult: vec![1, 2, 4],
            num_res_blocks: 2,
            attn_resolutions: vec![],
            resolution: 256,
            z_channels: 3,
            embed_dim: 3,
            dropout: 0.0,
        }
    }
}

impl AutoencoderConfig {
    /// A CPU-sized autoencoder for tests and the quickstart (f = 2, 32×32 images);
    /// tests/fixtures/gen_autoencoder.py builds the same config as `TINY`.
    pub fn tiny() -> Self {
        Self {
            ch: 32,
            ch_mult: vec![1, 2],
            num_res_blocks: 1,
            resolution: 32,
            ..Self::default()
        }
    }

    /// Number of resolution levels.
    pub fn levels(&self) -> usize {
        self.ch_mult.len()
    }

    /// Spatial downsampling factor between image and latent.
    pub fn downsampling_factor(&self) -> i64 {
        1 << (self.levels() - 1)
    }

    /// Checks what the layers need: non-empty levels, positive sizes, widths divisible by
    /// the 32 GroupNorm groups, a resolution divisible by the downsampling factor.
    pub fn validate(&self) -> Result<(), AutoencoderError> {
        let bad = |msg: String| Err(AutoencoderError::Config(msg));
        if self.ch_mult.is_empty() || self.ch_mult.len() > 8 {
            return bad(format!(
                "ch_mult must have 1 to 8 levels, got {:?}",
                self.ch_mult
            ));
        }
        let sizes = [
            self.in_channels,
            self.out_ch,
            self.ch,
            self.z_channels,
            self.embed_dim,
        ];
        if sizes.iter().any(|&s| s <= 0) || self.ch_mult.iter().any(|&m| m <= 0) {
            return bad("channel counts and ch_mult must be positive".into());
        }
        if let Some(m) = self
            .ch_mult
            .iter()
            .find(|&&m| (self.ch * m) % NORM_GROUPS != 0)
        {
            return bad(format!(
                "width ch·ch_mult = {} is not a multiple of {NORM_GROUPS}",
                self.ch * m
            ));
        }
        if self.resolution <= 0 || self.resolution % self.downsampling_factor() != 0 {
            return bad(format!(
                "resolution {} is not a positive multiple of the downsampling factor {}",
                self.resolution,
                self.downsampling_factor()
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is outside [0, 1)", self.dropout));
        }
        Ok(())
    }
}
