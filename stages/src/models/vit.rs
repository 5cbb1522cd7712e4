//! Vision Transformer classifier (Dosovitskiy et al.) with timm / DINO state-dict names
//! (SPEC §8.1, §10.4): the downstream classifier, and through [`VisionTransformer::features_t`]
//! the selection feature extractor (SPEC §7.2: CLS token after the final LayerNorm).

use super::vit_block::{linear_init, Block, BlockConfig};
use tch::{nn, nn::ModuleT, Tensor};

/// Invalid configurations and inputs, reported instead of libtorch's shape panics.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VitError {
    #[error("invalid ViT config: {0}")]
    Config(String),
    #[error("ViT input must be (B, {channels}, {size}, {size}), got {found:?}")]
    Input {
        channels: i64,
        size: i64,
        found: Vec<i64>,
    },
}

/// ViT hyper-parameters; `Default` is the paper's ViT-B/16 with the 9 NCT-CRC classes.
#[derive(Debug, Clone, PartialEq)]
pub struct VitConfig {
    /// Input side in pixels (square images).
    pub image_size: i64,
    /// Patch side; `image_size` must be a multiple of it.
    pub patch_size: i64,
    /// Input channels (3 for RGB).
    pub in_channels: i64,
    /// Token width D.
    pub embed_dim: i64,
    /// Number of transformer blocks.
    pub depth: i64,
    /// Attention heads per block.
    pub num_heads: i64,
    /// MLP hidden width as a multiple of D.
    pub mlp_ratio: f64,
    /// Classes of the linear head.
    pub num_classes: i64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Stochastic-depth rate of the last block; block i uses rate·i/(depth−1) as in timm.
    pub drop_path_rate: f64,
}

impl Default for VitConfig {
    fn default() -> Self {
        Self::base_16(9)
    }
}

impl VitConfig {
    /// ViT-B/16 (timm `vit_base_patch16_224`; paper §3 / SPEC §8.1): D 768, depth 12, 12 heads.
    pub fn base_16(num_classes: i64) -> Self {
        Self {
            image_size: 224,
            patch_size: 16,
            in_channels: 3,
            embed_dim: 768,
            depth: 12,
            num_heads: 12,
            mlp_ratio: 4.0,
            num_classes,
            layer_norm_eps: 1e-6,
            drop_path_rate: 0.0,
        }
    }

    /// ViT-S/16 (timm `vit_small_patch16_224`; official `eval.py --arch vit_small`, SPEC §7.2):
    /// D 384, depth 12, 6 heads.
    pub fn small_16(num_classes: i64) -> Self {
        Self {
            embed_dim: 384,
            num_heads: 6,
            ..Self::base_16(num_classes)
        }
    }

    /// A CPU-sized ViT for tests and the quickstart: 32² images, patch 8, D 64, depth 2, 2 heads.
    pub fn tiny(num_classes: i64) -> Self {
        Self {
            image_size: 32,
            patch_size: 8,
            embed_dim: 64,
            depth: 2,
            num_heads: 2,
            ..Self::base_16(num_classes)
        }
    }

    /// Patches per image (tokens without the CLS token).
    pub fn num_patches(&self) -> i64 {
        (self.image_size / self.patch_size).pow(2)
    }

    /// Checks the divisibility constraints a config file could break.
    pub fn validate(&self) -> Result<(), VitError> {
        self.check().map_err(VitError::Config)
    }

    fn check(&self) -> Result<(), String> {
        if self.patch_size <= 0 || self.image_size % self.patch_size != 0 {
            return Err(format!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.num_heads <= 0 || self.embed_dim % self.num_heads != 0 {
            return Err(format!(
                "embed_dim {} is not divisible by num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(format!(
                "drop_path_rate {} is outside [0, 1)",
                self.drop_path_rate
            ));
        }
        Ok(())
    }
}

/// The classifier: patch embedding, CLS token, learned positions, blocks, final norm, head.
#[derive(Debug)]
pub struct VisionTransformer {
    cls_token: Tensor,
    pos_embed: Tensor,
    patch_embed: nn::Conv2D,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    head: nn::Linear,
    config: VitConfig,
}

impl VisionTransformer {
    /// Creates the variables under `vs` with timm's names.
    pub fn new(vs: &nn::Path, config: VitConfig) -> Result<Self, VitError> {
        config.validate()?;
        let d = config.embed_dim;
        let cls_token = vs.var(
            "cls_token",
            &[1, 1, d],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1e-6,
            },
        );
        let tokens = config.num_patches() + 1;
        let pos_embed = vs.var(
            "pos_embed",
            &[1, tokens, d],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        );
        let conv = nn::ConvConfig {
            stride: config.patch_size,
            ..Default::default()
        };
        let patch_embed = nn::conv2d(
            vs / "patch_embed" / "proj",
            config.in_channels,
            d,
            config.patch_size,
            conv,
        );
        let blocks = (0..config.depth)
            .map(|i| Block::new(vs / "blocks" / i, block_config(&config, i)))
            .collect();
        let ln = nn::LayerNormConfig {
            eps: config.layer_norm_eps,
            ..Default::default()
        };
        let norm = nn::layer_norm(vs / "norm", vec![d], ln);
        let head = nn::linear(vs / "head", d, config.num_classes, linear_init());
        Ok(Self {
            cls_token,
            pos_embed,
            patch_embed,
            blocks,
            norm,
            head,
            config,
        })
    }

    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// Checks that `images` is (B, C, H, W) at the configured size (call at stage boundaries:
    /// the forward passes assume it).
    pub fn check_input(&self, images: &Tensor) -> Result<(), VitError> {
        let c = &self.config;
        let size = images.size();
        if size.len() != 4
            || size[0] == 0
            || size[1] != c.in_channels
            || size[2] != c.image_size
            || size[3] != c.image_size
        {
            return Err(VitError::Input {
                channels: c.in_channels,
                size: c.image_size,
                found: size,
            });
        }
        Ok(())
    }

    /// Every token after the final LayerNorm, (B, 1 + patches, D) — timm's `forward_features`.
    pub fn tokens_t(&self, images: &Tensor, train: bool) -> Tensor {
        let b = images.size()[0];
        // 1. Patches → (B, P, D) tokens.
        let patches = images
            .apply(&self.patch_embed)
            .flatten(2, 3)
            .transpose(1, 2);
        // 2. Prepend CLS, add learned positions (timm adds them to CLS too).
        let cls = self.cls_token.expand([b, 1, self.config.embed_dim], false);
        let mut xs = Tensor::cat(&[cls, patches], 1) + &self.pos_embed;
        // 3. Blocks, then the final norm.
        for block in &self.blocks {
            xs = block.forward_t(&xs, train);
        }
        xs.apply(&self.norm)
    }

    /// Selection features (SPEC §7.2): the CLS token after the final norm, (B, D), not normalised.
    pub fn features_t(&self, images: &Tensor, train: bool) -> Tensor {
        self.tokens_t(images, train).select(1, 0)
    }
}

/// The selection feature of SPEC §7.2: features / (‖features‖₂ + 1e-10), row-wise.
pub fn l2_normalize(features: &Tensor) -> Tensor {
    let norm = features.norm_scalaropt_dim(2.0, [-1i64].as_slice(), true);
    features / (norm + 1e-10)
}

impl ModuleT for VisionTransformer {
    /// Class logits (B, num_classes) from images (B, C, H, W).
    fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        self.features_t(images, train).apply(&self.head)
    }
}

/// Block i's config; stochastic depth grows linearly with depth, as timm's `dpr`.
fn block_config(config: &VitConfig, i: i64) -> BlockConfig {
    let drop_path = if config.depth > 1 {
        config.drop_path_rate * i as f64 / (config.depth - 1) as f64
    } else {
        0.0
    };
    BlockConfig {
        dim: config.embed_dim,
        num_heads: config.num_heads,
        mlp_hidden: (config.embed_dim as f64 * config.mlp_ratio) as i64,
        layer_norm_eps: config.layer_norm_eps,
        drop_path,
    }
}
