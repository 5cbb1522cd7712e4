//! Parity of the time-dependent classifier ϕ (stages/src/models/unet/encoder_unet.rs, SPEC
//! §5.2) with the authors' code, same (hashed) weights and inputs, f32 on the CPU:
//! - `EncoderUNetModel` (pool "attention") of CompVis/latent-diffusion@a506df5756472e2ebaf9078affdde2c4f1502cd4
//!   `ldm/modules/diffusionmodules/openaimodel.py` (what HistoDiffAug's sampler loads) and of
//!   openai/guided-diffusion@22e0df8183507e13a7813f8d38d51b072ca1e67c `guided_diffusion/unet.py`,
//!   on the Rust `tiny_classifier(5)` preset (16×16 inputs, 4×4 pooling grid);
//! - `EncoderUNetModel` of karenyyy/HistoDiffAug@020116d69b9cf1f3daacec2681195591cb1873ad
//!   `unet.py` (what `classifier_train.py` trains), whose `AttentionPool2d` hard-codes a 2×2
//!   grid (`spacial_dim = 2`), hence 8×8 inputs here.
//!
//! Tolerance: logits max abs error ≤ 1e-5 (magnitude ≈ 1–3; measured ≈ 1e-6).

mod parity_official_common;

use histodiff_stages::models::unet::{
    presets, AttentionKernel, EncoderUNetConfig, EncoderUNetModel,
};
use parity_official_common::*;
use tch::{nn, Device};

const TOL: f64 = 1e-5;

fn check(file: &str, config: EncoderUNetConfig, outputs: &[&str]) {
    let fixture = read_fixture(file);
    let io = io(&fixture);
    for kernel in [
        AttentionKernel::Naive,
        AttentionKernel::QueryChunked(3),
        AttentionKernel::Fused,
    ] {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let mut model = EncoderUNetModel::new(&vs.root(), &config).expect("valid config");
        model.set_attention_kernel(kernel);
        load_hashed_strict(&mut vs, file, &fixture);
        model
            .validate_input(&io["io.x"], &io["io.t"])
            .expect("valid input");
        let logits = tch::no_grad(|| model.forward(&io["io.x"], &io["io.t"]));
        for key in outputs {
            assert_close(&format!("{file} {key} {kernel:?}"), &logits, &io[*key], TOL);
        }
    }
}

#[test]
fn official_ldm_openaimodel_and_guided_diffusion_encoder_unet_tiny() {
    check(
        "classifier_tiny.safetensors",
        presets::tiny_classifier(5),
        &["io.out", "io.out_gd"],
    );
}

#[test]
fn official_histodiffaug_unet_py_encoder_unet_tiny_2x2_pool() {
    let config = EncoderUNetConfig {
        image_size: 8,
        ..presets::tiny_classifier(5)
    };
    check("classifier_hda_tiny.safetensors", config, &["io.out"]);
}
