//! `AutoencoderKL`: encoder + quant_conv → posterior; post_quant_conv + decoder → image.

use super::config::{AutoencoderConfig, AutoencoderError};
use super::decoder::Decoder;
use super::distribution::DiagonalGaussian;
use super::encoder::Encoder;
use crate::models::torch_init;
use tch::{nn, Tensor};

/// The LDM KL autoencoder. Variables live at `encoder.*`, `decoder.*`, `quant_conv.*`,
/// `post_quant_conv.*` under the path it is built at (SPEC §10.1).
#[derive(Debug)]
pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quant_conv: nn::Conv2D,
    pub post_quant_conv: nn::Conv2D,
    config: AutoencoderConfig,
}

impl AutoencoderKL {
    pub fn new(vs: &nn::Path, config: AutoencoderConfig) -> Result<Self, AutoencoderError> {
        config.validate()?;
        let (z, e) = (config.z_channels, config.embed_dim);
        Ok(Self {
            encoder: Encoder::new(vs / "encoder", &config),
            decoder: Decoder::new(vs / "decoder", &config),
            quant_conv: torch_init::conv2d(vs / "quant_conv", 2 * z, 2 * e, 1, 1, 0),
            post_quant_conv: torch_init::conv2d(vs / "post_quant_conv", e, z, 1, 1, 0),
            config,
        })
    }

    pub fn config(&self) -> &AutoencoderConfig {
        &self.config
    }

    /// Image (B, in_channels, H, W), H and W multiples of the downsampling factor → q(z | x).
    pub fn encode(&self, xs: &Tensor, train: bool) -> Result<DiagonalGaussian, AutoencoderError> {
        let f = self.config.downsampling_factor();
        let size = xs.size();
        let ok = size.len() == 4
            && size[1] == self.config.in_channels
            && size[2] % f == 0
            && size[3] % f == 0;
        if !ok || size[2] == 0 || size[3] == 0 {
            return Err(AutoencoderError::Shape {
                place: "encoder input",
                expected: format!(
                    "(B, {}, H, W) with H, W positive multiples of {f}",
                    self.config.in_channels
                ),
                found: size,
            });
        }
        let moments = self.encoder.forward_t(xs, train).apply(&self.quant_conv);
        DiagonalGaussian::new(moments)
    }

    /// Latent (B, embed_dim, h, w) → image (B, out_ch, h·f, w·f), not clamped.
    pub fn decode(&self, z: &Tensor, train: bool) -> Result<Tensor, AutoencoderError> {
        let size = z.size();
        if size.len() != 4 || size[1] != self.config.embed_dim || size[2] == 0 || size[3] == 0 {
            return Err(AutoencoderError::Shape {
                place: "decoder input",
                expected: format!("(B, {}, h, w)", self.config.embed_dim),
                found: size,
            });
        }
        Ok(self
            .decoder
            .forward_t(&z.apply(&self.post_quant_conv), train))
    }

    /// Reconstruction and posterior; z is sampled (training) or the posterior mean.
    pub fn forward(
        &self,
        xs: &Tensor,
        sample_posterior: bool,
        train: bool,
    ) -> Result<(Tensor, DiagonalGaussian), AutoencoderError> {
        let posterior = self.encode(xs, train)?;
        let z = if sample_posterior {
            posterior.sample()
        } else {
            posterior.mode()
        };
        Ok((self.decode(&z, train)?, posterior))
    }

    /// `decoder.conv_out.weight`, the layer the adaptive GAN weight is measured at.
    pub fn last_layer(&self) -> &Tensor {
        &self.decoder.conv_out.ws
    }
}
