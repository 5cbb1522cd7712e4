//! Named configurations of the UNet family, each citing its source. The parameter counts
//! in the docs are checked by `stages/tests/parity_unet.rs` against reference dumps.

use super::attention::{AttentionKernel, QkvOrder};
use super::encoder_unet::EncoderUNetConfig;
use super::trunk::{AttentionHeads, TrunkConfig};
use super::unet::UNetConfig;

/// Query chunk for [`AttentionKernel::QueryChunked`]: bounds one score matrix of a 64² map
/// at batch 4, 8 heads to 4·8·1024·4096 f32 = 512 MiB. Chunking only helps inference:
/// autograd keeps every chunk's weights for the backward pass, which is why the paper-scale
/// presets default to the fused kernel (memory-efficient backward as well).
pub const DEFAULT_QUERY_CHUNK: i64 = 1024;

/// ε_θ of the official HistoDiffAug config (`configs/latent-diffusion/histo-ldm-kl-8.yaml`,
/// SPEC §3.1): 192 channels, mult [1,2,2,4,4], attention at ds 1,2,4,8 with 8 heads,
/// scale-shift, ResBlock resampling; 294,963,459 parameters in 520 tensors.
pub fn histodiffaug_unet() -> UNetConfig {
    UNetConfig {
        trunk: TrunkConfig {
            in_channels: 3,
            model_channels: 192,
            channel_mult: vec![1, 2, 2, 4, 4],
            num_res_blocks: 2,
            attention_resolutions: vec![1, 2, 4, 8],
            heads: AttentionHeads::Count(8),
            use_scale_shift_norm: true,
            resblock_updown: true,
            conv_resample: true,
            dropout: 0.0,
            qkv_order: QkvOrder::Legacy,
            attention_kernel: AttentionKernel::Fused,
        },
        out_channels: 3,
    }
}

/// The LDM-4 CelebA-HQ UNet (`CompVis/latent-diffusion:configs/latent-diffusion/
/// celebahq-ldm-vq-4.yaml`): 224 channels, mult [1,2,3,4], attention at ds 2,4,8 with
/// 32-channel heads, additive conditioning, conv resampling; 274,056,163 parameters.
pub fn ldm4_celebahq_unet() -> UNetConfig {
    UNetConfig {
        trunk: TrunkConfig {
            in_channels: 3,
            model_channels: 224,
            channel_mult: vec![1, 2, 3, 4],
            num_res_blocks: 2,
            attention_resolutions: vec![8, 4, 2],
            heads: AttentionHeads::Channels(32),
            use_scale_shift_norm: false,
            resblock_updown: false,
            conv_resample: true,
            dropout: 0.0,
            qkv_order: QkvOrder::Legacy,
            attention_kernel: AttentionKernel::Fused,
        },
        out_channels: 3,
    }
}

/// A small UNet with every feature of the official one (scale-shift, ResBlock resampling,
/// attention at two levels and in the middle), for CPU tests and smoke runs.
pub fn tiny_unet() -> UNetConfig {
    UNetConfig {
        trunk: TrunkConfig {
            in_channels: 3,
            model_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![2, 4],
            heads: AttentionHeads::Count(2),
            use_scale_shift_norm: true,
            resblock_updown: true,
            conv_resample: true,
            dropout: 0.0,
            qkv_order: QkvOrder::Legacy,
            attention_kernel: AttentionKernel::Naive,
        },
        out_channels: 3,
    }
}

/// Trunk of guided-diffusion's classifier for 256 px (`classifier_defaults` with the
/// README's arguments, SPEC §5.2): width 128, depth 2, mult (1,1,2,2,4,4), attention at ds
/// 8 and 16 with 64-channel heads, scale-shift, ResBlock resampling.
fn classifier_trunk() -> TrunkConfig {
    TrunkConfig {
        in_channels: 3,
        model_channels: 128,
        channel_mult: vec![1, 1, 2, 2, 4, 4],
        num_res_blocks: 2,
        attention_resolutions: vec![8, 16],
        heads: AttentionHeads::Channels(64),
        use_scale_shift_norm: true,
        resblock_updown: true,
        conv_resample: true,
        dropout: 0.0,
        qkv_order: QkvOrder::Legacy,
        attention_kernel: AttentionKernel::Naive,
    }
}

/// Latent classifier ϕ(z_t, t) on 3×64×64 latents (SPEC §5.2): 2×2 pooling grid
/// (5 tokens), 9 classes; 51,453,961 parameters in 237 tensors.
pub fn latent_classifier(num_classes: i64) -> EncoderUNetConfig {
    EncoderUNetConfig {
        trunk: classifier_trunk(),
        out_channels: num_classes,
        image_size: 64,
        pool_head_channels: 64,
    }
}

/// Auxiliary image classifier φ on 3×256×256 images (SPEC §5.3, recommended assumption):
/// same trunk, 8×8 pooling grid (65 tokens), t fixed to 0; 51,484,681 parameters.
pub fn image_classifier(num_classes: i64) -> EncoderUNetConfig {
    EncoderUNetConfig {
        trunk: classifier_trunk(),
        out_channels: num_classes,
        image_size: 256,
        pool_head_channels: 64,
    }
}

/// A small classifier with the same features (attention blocks, attention pool over a
/// 4×4 grid) for CPU tests.
pub fn tiny_classifier(num_classes: i64) -> EncoderUNetConfig {
    EncoderUNetConfig {
        trunk: TrunkConfig {
            model_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![2, 4],
            heads: AttentionHeads::Channels(16),
            ..classifier_trunk()
        },
        out_channels: num_classes,
        image_size: 16,
        pool_head_channels: 16,
    }
}
