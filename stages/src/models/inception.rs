//! Inception-v3 FID feature extractor (SPEC §8.4), as pytorch-fid's
//! `InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)`:
//! images in [0, 1] are resized to 299² (bilinear, align_corners=False), mapped to [-1, 1],
//! and the 2048-d pool3 activations are returned. Variables carry the names of torchvision's
//! `Inception3` (`Conv2d_1a_3x3.conv.weight`, `Mixed_7c.branch_pool.bn.running_var`, …),
//! which are the names of pytorch-fid's `pt_inception-2015-12-05` weights (docs/weights.md).

use super::inception_blocks::{
    BasicConv2d, EPool, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE,
};
use crate::metrics::fid::{FeatureStats, FidError, StatsAccumulator};
use crate::weights::{self, WeightsError};
use std::path::Path;
use tch::{nn, Tensor};

/// Input side the FID weights were trained at.
pub const FID_INPUT_SIZE: i64 = 299;
/// Width of the pool3 features.
pub const FID_FEATURES: i64 = 2048;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InceptionError {
    #[error("FID statistics: {0}")]
    Stats(#[from] FidError),
    #[error("FID Inception input must be (B, 3, H, W) with H, W ≥ {min}, got {found:?}")]
    Input { min: i64, found: Vec<i64> },
}

/// Input handling, pytorch-fid's constructor flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InceptionConfig {
    /// Resize inputs to 299² bilinearly (pytorch-fid `resize_input`).
    pub resize_input: bool,
    /// Map inputs from [0, 1] to [-1, 1] (pytorch-fid `normalize_input`).
    pub normalize_input: bool,
}

impl Default for InceptionConfig {
    fn default() -> Self {
        Self {
            resize_input: true,
            normalize_input: true,
        }
    }
}

/// The network up to the final average pool; the 1008-way `fc` of the checkpoint is not used.
#[derive(Debug)]
pub struct FidInceptionV3 {
    stem: [BasicConv2d; 5],
    mixed_5: [InceptionA; 3],
    mixed_6a: InceptionB,
    mixed_6: [InceptionC; 4],
    mixed_7a: InceptionD,
    mixed_7: [InceptionE; 2],
    config: InceptionConfig,
}

impl FidInceptionV3 {
    pub fn new(vs: &nn::Path, config: InceptionConfig) -> Self {
        let stem = [
            BasicConv2d::square(vs / "Conv2d_1a_3x3", 3, 32, 3, 2, 0),
            BasicConv2d::square(vs / "Conv2d_2a_3x3", 32, 32, 3, 1, 0),
            BasicConv2d::square(vs / "Conv2d_2b_3x3", 32, 64, 3, 1, 1),
            BasicConv2d::square(vs / "Conv2d_3b_1x1", 64, 80, 1, 1, 0),
            BasicConv2d::square(vs / "Conv2d_4a_3x3", 80, 192, 3, 1, 0),
        ];
        let mixed_5 = [
            InceptionA::new(vs / "Mixed_5b", 192, 32),
            InceptionA::new(vs / "Mixed_5c", 256, 64),
            InceptionA::new(vs / "Mixed_5d", 288, 64),
        ];
        let mixed_6 = [
            InceptionC::new(vs / "Mixed_6b", 768, 128),
            InceptionC::new(vs / "Mixed_6c", 768, 160),
            InceptionC::new(vs / "Mixed_6d", 768, 160),
            InceptionC::new(vs / "Mixed_6e", 768, 192),
        ];
        let mixed_7 = [
            InceptionE::new(vs / "Mixed_7b", 1280, EPool::Average),
            InceptionE::new(vs / "Mixed_7c", 2048, EPool::Max),
        ];
        Self {
            stem,
            mixed_5,
            mixed_6a: InceptionB::new(vs / "Mixed_6a", 288),
            mixed_6,
            mixed_7a: InceptionD::new(vs / "Mixed_7a", 768),
            mixed_7,
            config,
        }
    }

    /// Pool3 features (B, 2048) of images (B, 3, H, W) in [0, 1] (with the default config).
    /// Without resizing, inputs must be at least 75² (the smallest size the strided stem and
    /// the grid reductions accept).
    pub fn pool3(&self, images: &Tensor) -> Result<Tensor, InceptionError> {
        let size = images.size();
        let min = if self.config.resize_input { 1 } else { 75 };
        if size.len() != 4 || size[0] == 0 || size[1] != 3 || size[2] < min || size[3] < min {
            return Err(InceptionError::Input { min, found: size });
        }
        let _no_grad = tch::no_grad_guard();
        let mut xs = images.shallow_clone();
        if self.config.resize_input {
            xs = xs.upsample_bilinear2d([FID_INPUT_SIZE, FID_INPUT_SIZE], false, None, None);
        }
        if self.config.normalize_input {
            xs = xs * 2.0 - 1.0;
        }
        // block 0: 299 → 147 → 73
        let [c1a, c2a, c2b, c3b, c4a] = &self.stem;
        xs = c2b.forward(&c2a.forward(&c1a.forward(&xs)));
        xs = xs.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        // block 1: 73 → 71 → 35
        xs = c4a.forward(&c3b.forward(&xs));
        xs = xs.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        // block 2: 35 → 17
        xs = self
            .mixed_5
            .iter()
            .fold(xs, |acc, block| block.forward(&acc));
        xs = self.mixed_6a.forward(&xs);
        xs = self
            .mixed_6
            .iter()
            .fold(xs, |acc, block| block.forward(&acc));
        // block 3: 17 → 8 → global average pool
        xs = self.mixed_7a.forward(&xs);
        xs = self
            .mixed_7
            .iter()
            .fold(xs, |acc, block| block.forward(&acc));
        Ok(xs.adaptive_avg_pool2d([1, 1]).flatten(1, 3))
    }
}

impl FidInceptionV3 {
    /// Mean and covariance of the pool3 features of every image batch (B, 3, H, W) in
    /// [0, 1], accumulated batch by batch (pytorch-fid's `calculate_activation_statistics`).
    pub fn feature_stats(
        &self,
        batches: impl IntoIterator<Item = Tensor>,
    ) -> Result<FeatureStats, InceptionError> {
        let mut acc = StatsAccumulator::default();
        for batch in batches {
            acc.add(&self.pool3(&batch)?)?;
        }
        Ok(acc.finish()?)
    }
}

/// Keys of the pytorch-fid checkpoint the extractor does not use: the 1008-way classifier
/// and BatchNorm's step counters.
pub fn is_unused_key(key: &str) -> bool {
    key == "fc.weight" || key == "fc.bias" || key.ends_with(".num_batches_tracked")
}

/// Builds the extractor on `device` in f32 and loads `weights` strictly (every other key
/// must match by name and shape).
pub fn load_fid_inception(
    weights: &Path,
    device: tch::Device,
) -> Result<(nn::VarStore, FidInceptionV3), WeightsError> {
    let mut vs = nn::VarStore::new(device);
    let model = FidInceptionV3::new(&vs.root(), InceptionConfig::default());
    weights::load_strict(&mut vs, weights, is_unused_key)?;
    vs.freeze();
    Ok((vs, model))
}
