//! Parity of the denoising UNet (stages/src/models/unet) with the authors' code:
//! `UNetModel` of CompVis/latent-diffusion@a506df5756472e2ebaf9078affdde2c4f1502cd4,
//! `ldm/modules/diffusionmodules/openaimodel.py` (byte-identical in
//! karenyyy/HistoDiffAug@020116d69b9cf1f3daacec2681195591cb1873ad, the paper's code), run by
//! tests/fixtures/official/gen_official.py on gen_unet.py's three tiny configurations, with
//! the same (hashed) weights and inputs. Tolerances, f32 on the CPU: forward max abs error
//! ≤ 1e-5 on outputs of magnitude ≈ 3 (measured 3–5e-6, ≈ 20 ulp after ~40 layers whose
//! kernels differ in summation order: Rust's attention kernels vs the official einsum); gradients
//! after one backward: per tensor, max abs error ≤ 1e-4 · max(1, max |reference|) on tensors
//! stored whole, and checksum error ≤ 1e-4 relative to the tensor's scale (floored at 1e-3 of
//! the largest gradient RMS, for gradients that are analytically zero) on all 216.

mod parity_official_common;

use histodiff_stages::models::unet::{
    presets, AttentionHeads, AttentionKernel, QkvOrder, TrunkConfig, UNetConfig, UNetModel,
};
use parity_official_common::*;
use tch::{nn, Device};

const FORWARD_TOL: f64 = 1e-5;
const GRAD_TOL: f64 = 1e-4;
/// Analytically-zero gradients (conv biases before a GroupNorm of one channel per group) are
/// measured against this fraction of the largest per-element gradient RMS.
const GRAD_FLOOR_FRACTION: f64 = 1e-3;

/// gen_official.py TINY_B: additive conditioning, conv resampling, 16-channel heads, new
/// qkv order, 4 → 4 channels.
fn tiny_b() -> UNetConfig {
    UNetConfig {
        trunk: TrunkConfig {
            in_channels: 4,
            channel_mult: vec![1, 2],
            num_res_blocks: 2,
            attention_resolutions: vec![1, 2],
            heads: AttentionHeads::Channels(16),
            use_scale_shift_norm: false,
            resblock_updown: false,
            qkv_order: QkvOrder::New,
            ..presets::tiny_unet().trunk
        },
        out_channels: 4,
    }
}

/// gen_official.py TINY_C: pooling / nearest resampling without convs, one head.
fn tiny_c() -> UNetConfig {
    UNetConfig {
        trunk: TrunkConfig {
            channel_mult: vec![1, 1, 2],
            attention_resolutions: vec![4],
            heads: AttentionHeads::Count(1),
            resblock_updown: false,
            conv_resample: false,
            ..presets::tiny_unet().trunk
        },
        out_channels: 3,
    }
}

fn load(file: &str, config: &UNetConfig) -> (UNetModel, nn::VarStore) {
    let fixture = read_fixture(file);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = UNetModel::new(&vs.root(), config).expect("valid config");
    load_hashed_strict(&mut vs, file, &fixture);
    (model, vs)
}

fn check_forward(file: &str, config: UNetConfig) {
    let io = io(&read_fixture(file));
    for kernel in [
        AttentionKernel::Naive,
        AttentionKernel::QueryChunked(5),
        AttentionKernel::Fused,
    ] {
        let mut config = config.clone();
        config.trunk.attention_kernel = kernel;
        let (model, _vs) = load(file, &config);
        let out = tch::no_grad(|| model.forward(&io["io.x"], &io["io.t"]));
        assert_close(
            &format!("{file} {kernel:?}"),
            &out,
            &io["io.out"],
            FORWARD_TOL,
        );
    }
}

#[test]
fn official_ldm_openaimodel_unet_tiny_a_scale_shift_resblock_updown() {
    check_forward("unet_ldm_tiny_a.safetensors", presets::tiny_unet());
}

#[test]
fn official_ldm_openaimodel_unet_tiny_b_additive_conv_resample_new_order() {
    check_forward("unet_ldm_tiny_b.safetensors", tiny_b());
}

#[test]
fn official_ldm_openaimodel_unet_tiny_c_pool_resample_one_head() {
    check_forward("unet_ldm_tiny_c.safetensors", tiny_c());
}

#[test]
fn official_ldm_openaimodel_unet_tiny_a_gradients() {
    let file = "unet_ldm_tiny_a.safetensors";
    let io = io(&read_fixture(file));
    let (model, vs) = load(file, &presets::tiny_unet());
    let out = model.forward_t(&io["io.x"], &io["io.t"], true);
    (out * &io["io.cotangent"]).sum(tch::Kind::Float).backward();
    let (mut worst_whole, mut worst_sum, mut whole, mut count) = (0.0f64, 0.0f64, 0, 0);
    let mut worst_name = String::new();
    let floor = GRAD_FLOOR_FRACTION * largest_gradient_rms(&vs, &io, "io.grad.sum.");
    for (name, var) in vs.variables() {
        let grad = var.grad();
        let sum_err = gradient_checksum_error(&grad, &io[&format!("io.grad.sum.{name}")], floor);
        if sum_err > worst_sum {
            (worst_sum, worst_name) = (sum_err, name.clone());
        }
        if let Some(want) = io.get(&format!("io.grad.{name}")) {
            let scale = want.abs().max().double_value(&[]).max(1.0);
            worst_whole = worst_whole.max(max_abs(&grad, want) / scale);
            whole += 1;
        }
        count += 1;
    }
    eprintln!(
        "gradients of {count} tensors: checksum error {worst_sum:.3e} (at {worst_name}); {whole} stored whole: \
         max abs error / max(1, max|g|) {worst_whole:.3e} (tolerance {GRAD_TOL:.0e})"
    );
    assert_eq!(
        count,
        io.keys().filter(|k| k.starts_with("io.grad.sum.")).count()
    );
    assert!(worst_sum <= GRAD_TOL && worst_whole <= GRAD_TOL);
}
