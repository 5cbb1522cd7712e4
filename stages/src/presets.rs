//! The model sizes a kind's `preset` parameter names, and every model's configuration at
//! each size. A preset is parsed once, into [`Preset`], when the kind reads its parameters;
//! from there on it is matched exhaustively, so a name nobody knows cannot quietly mean
//! `paper`.
//!
//! - `tiny`: CPU-sized models for tests, the quickstart and smoke runs.
//! - `paper`: the paper's models (SPEC §2–§8).
//! - `official`: the ViT of the official evaluation code, ViT-S/16 (SPEC §11.10). Only the
//!   downstream classifier has it; asking any other model for it is an error naming both.

use crate::models::autoencoder::AutoencoderConfig;
use crate::models::discriminator::DiscriminatorConfig;
use crate::models::stylegan2::Stylegan2Config;
use crate::models::unet::presets::{
    histodiffaug_unet, latent_classifier, tiny_classifier, tiny_unet,
};
use crate::models::unet::{EncoderUNetConfig, UNetConfig};
use crate::models::vit::VitConfig;
use histodiff_engine::stage::StageError;
use serde::{Deserialize, Serialize};

/// A model size, as pipelines write it (`tiny`, `paper`, `official`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Tiny,
    Paper,
    Official,
}

/// Every model that is not the downstream ViT comes in these sizes.
pub const MODEL_PRESETS: [Preset; 2] = [Preset::Tiny, Preset::Paper];
/// The downstream ViT (train-classifier) has the official evaluation's size as well.
pub const VIT_PRESETS: [Preset; 3] = [Preset::Tiny, Preset::Paper, Preset::Official];

impl Preset {
    /// The name a pipeline writes.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Paper => "paper",
            Preset::Official => "official",
        }
    }

    /// Whether this is the tiny size of a model that has only tiny and paper; `model`
    /// names it in the error for `official`.
    fn is_tiny(self, model: &str) -> Result<bool, StageError> {
        match self {
            Preset::Tiny => Ok(true),
            Preset::Paper => Ok(false),
            Preset::Official => Err(StageError::Invalid(format!(
                "preset `official` exists only for the ViT of train-classifier; the {model} \
                 is tiny or paper"
            ))),
        }
    }

    /// The KL autoencoder and its PatchGAN: kl-f4 and the discriminator of SPEC §2
    /// (paper), or a CPU-sized AE (f = 2, 32 px resolution bookkeeping) and a 2-layer,
    /// 16-wide PatchGAN (tiny).
    pub fn autoencoder(self) -> Result<(AutoencoderConfig, DiscriminatorConfig), StageError> {
        Ok(if self.is_tiny("autoencoder")? {
            let disc = DiscriminatorConfig {
                in_channels: 3,
                ndf: 16,
                n_layers: 2,
            };
            (AutoencoderConfig::tiny(), disc)
        } else {
            (AutoencoderConfig::default(), DiscriminatorConfig::default())
        })
    }

    /// The latent UNet ε_θ: the official HistoDiffAug config (SPEC §3.1) or a small one.
    pub fn unet(self) -> Result<UNetConfig, StageError> {
        Ok(if self.is_tiny("UNet")? {
            tiny_unet()
        } else {
            histodiffaug_unet()
        })
    }

    /// The guidance classifier, ϕ on latents (SPEC §5.2) or φ on images (§5.3), for
    /// `classes` classes on `side`² inputs. The paper's ϕ and φ share trunk and pooling
    /// head and differ only in the input side, which sizes the attention pool.
    pub fn unet_classifier(self, classes: i64, side: i64) -> Result<EncoderUNetConfig, StageError> {
        let mut config = if self.is_tiny("guidance classifier")? {
            tiny_classifier(classes)
        } else {
            latent_classifier(classes)
        };
        config.image_size = side;
        Ok(config)
    }

    /// The downstream ViT: tiny (CPU), ViT-B/16 (paper, SPEC §8.1) or ViT-S/16 (official,
    /// SPEC §11.10).
    pub fn vit(self, classes: i64) -> VitConfig {
        match self {
            Preset::Tiny => VitConfig::tiny(classes),
            Preset::Paper => VitConfig::base_16(classes),
            Preset::Official => VitConfig::small_16(classes),
        }
    }

    /// The class-conditional StyleGAN2 of the comparison rows at `resolution` px for
    /// `classes` classes: the official `paper256` network or a CPU-sized one; checked.
    pub fn stylegan2(self, resolution: i64, classes: i64) -> Result<Stylegan2Config, StageError> {
        let config = if self.is_tiny("StyleGAN2")? {
            Stylegan2Config::tiny(resolution, classes)
        } else {
            Stylegan2Config::paper(resolution, classes)
        };
        config.validate().map_err(StageError::Invalid)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for preset in VIT_PRESETS {
            let json = serde_json::to_value(preset).unwrap();
            assert_eq!(json, preset.name());
            assert_eq!(serde_json::from_value::<Preset>(json).unwrap(), preset);
        }
        let unknown = serde_json::from_value::<Preset>("huge".into()).unwrap_err();
        assert!(unknown.to_string().contains("`huge`"), "{unknown}");
    }

    #[test]
    fn official_is_the_vit_alone() {
        assert_eq!(Preset::Official.vit(9), VitConfig::small_16(9));
        let err = Preset::Official.unet().unwrap_err().to_string();
        assert!(
            err.contains("preset `official`") && err.contains("UNet"),
            "{err}"
        );
        assert!(Preset::Official.autoencoder().is_err());
        assert!(Preset::Official.unet_classifier(9, 16).is_err());
        assert!(Preset::Official.stylegan2(32, 9).is_err());
    }

    #[test]
    fn classifiers_are_sized_for_their_input() {
        let phi = Preset::Tiny.unet_classifier(3, 16).unwrap();
        assert_eq!((phi.image_size, phi.out_channels), (16, 3));
        // φ is ϕ's network on another input side.
        let mut image = crate::models::unet::presets::image_classifier(9);
        image.image_size = 128;
        assert_eq!(Preset::Paper.unet_classifier(9, 128).unwrap(), image);
    }
}
