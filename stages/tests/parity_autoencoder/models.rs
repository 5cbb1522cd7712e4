//! Forward parity: autoencoder (vs reference and diffusers), posterior, LPIPS,
//! discriminator, plus config validation and input-shape errors.

use crate::fixtures::*;
use histodiff_stages::losses::{AeLossConfig, LpipsWithDiscriminator};
use histodiff_stages::models::autoencoder::{
    AutoencoderConfig, AutoencoderError, AutoencoderKL, DiagonalGaussian,
};
use histodiff_stages::models::discriminator::{DiscriminatorConfig, NLayerDiscriminator};
use histodiff_stages::models::lpips::Lpips;
use histodiff_stages::weights::{load_strict, load_strict_prefixed};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[test]
fn autoencoder_matches_reference_and_diffusers() {
    let (_vs, ae) = load_ae("autoencoder_tiny.safetensors", AutoencoderConfig::tiny());
    let io = tensors("autoencoder_tiny.safetensors");
    let _guard = tch::no_grad_guard();
    let posterior = ae.encode(&io["io.x"], false).unwrap();
    assert_close(
        "encoder moments vs reference",
        &posterior.moments,
        &io["io.moments"],
        FORWARD_TOL,
    );
    assert_close(
        "encoder moments vs diffusers",
        &posterior.moments,
        &io["io.diffusers.moments"],
        FORWARD_TOL,
    );
    let z = posterior.sample_with_noise(&io["io.noise"]).unwrap();
    assert_close("posterior sample", &z, &io["io.z_sample"], FORWARD_TOL);
    let kl_err = max_abs(&posterior.kl(), &io["io.kl"]) / io["io.kl"].abs().max().double_value(&[]);
    eprintln!("posterior kl: relative error {kl_err:.3e} (tolerance 1e-5)");
    assert!(kl_err <= 1e-5);
    let decoded = ae.decode(&z, false).unwrap();
    assert_close(
        "decoder output vs reference",
        &decoded,
        &io["io.decoded"],
        FORWARD_TOL,
    );
    assert_close(
        "decoder output vs diffusers",
        &decoded,
        &io["io.diffusers.decoded"],
        FORWARD_TOL,
    );
    let decoded_mode = ae.decode(&posterior.mode(), false).unwrap();
    assert_close(
        "decoder output of the mode",
        &decoded_mode,
        &io["io.decoded_mode"],
        FORWARD_TOL,
    );
}

#[test]
fn autoencoder_with_level_attention_matches_reference() {
    let config = AutoencoderConfig {
        num_res_blocks: 2,
        attn_resolutions: vec![16],
        ..AutoencoderConfig::tiny()
    };
    let (vs, ae) = load_ae("autoencoder_tiny_attn.safetensors", config);
    assert!(vs
        .variables()
        .contains_key("encoder.down.1.attn.1.q.weight"));
    assert!(vs
        .variables()
        .contains_key("decoder.up.1.attn.2.proj_out.weight"));
    let io = tensors("autoencoder_tiny_attn.safetensors");
    let _guard = tch::no_grad_guard();
    let posterior = ae.encode(&io["io.x"], false).unwrap();
    assert_close(
        "attn encoder moments",
        &posterior.moments,
        &io["io.moments"],
        FORWARD_TOL,
    );
    let decoded = ae.decode(&posterior.mode(), false).unwrap();
    assert_close(
        "attn decoder output",
        &decoded,
        &io["io.decoded_mode"],
        FORWARD_TOL,
    );
}

#[test]
fn gaussian_clamps_logvar_like_reference() {
    let io = tensors("gaussian.safetensors");
    let posterior = DiagonalGaussian::new(io["io.moments"].shallow_clone()).unwrap();
    assert_eq!(posterior.logvar.max().double_value(&[]), 20.0);
    assert_eq!(posterior.logvar.min().double_value(&[]), -30.0);
    let sample = posterior.sample_with_noise(&io["io.noise"]).unwrap();
    let scale = io["io.sample"].abs().max().double_value(&[]);
    assert_close(
        "clamped sample / max|sample|",
        &(sample / scale),
        &(&io["io.sample"] / scale),
        1e-6,
    );
    assert_close(
        "clamped std / max|std|",
        &(&posterior.std / 2.2e4),
        &(&io["io.std"] / 2.2e4),
        1e-6,
    );
    let kl_err = max_abs(&posterior.kl(), &io["io.kl"]) / io["io.kl"].abs().max().double_value(&[]);
    eprintln!("clamped kl: relative error {kl_err:.3e} (tolerance 1e-6)");
    assert!(kl_err <= 1e-6);
    let wrong = Tensor::zeros([1, 3, 4, 4], (Kind::Float, Device::Cpu));
    assert!(matches!(
        posterior.sample_with_noise(&wrong),
        Err(AutoencoderError::Shape { .. })
    ));
}

#[test]
fn lpips_matches_reference() {
    let mut vs = VarStore::new(Device::Cpu);
    let lpips = Lpips::new(&vs.root());
    load_strict(&mut vs, &fixture("lpips.safetensors"), is_io).expect("strict load");
    assert!(vs.trainable_variables().is_empty(), "LPIPS must be frozen");
    let io = tensors("lpips.safetensors");
    let value = lpips.forward(&io["io.a"], &io["io.b"]).unwrap();
    assert_close("lpips value", &value, &io["io.value"], 1e-5);
    assert!(lpips
        .forward(&io["io.a"], &io["io.b"].narrow(2, 0, 16))
        .is_err());
}

/// The LPIPS file made by `convert_checkpoint.py lpips` from torchvision-style VGG16 and
/// taming-style `vgg.pth` sources loads strictly into a loss's `perceptual_loss` and gives
/// the reference value.
#[test]
fn converted_lpips_loads_into_the_loss() {
    let mut vs = VarStore::new(Device::Cpu);
    let loss = LpipsWithDiscriminator::new(&vs.root(), AeLossConfig::default());
    let file = fixture("lpips_converted.safetensors");
    load_strict_prefixed(&mut vs, &file, "", "perceptual_loss.").expect("strict load");
    let io = tensors("lpips.safetensors");
    let value = loss
        .perceptual_loss
        .forward(&io["io.a"], &io["io.b"])
        .unwrap();
    assert_close(
        "lpips value from converted weights",
        &value,
        &io["io.value"],
        1e-5,
    );
}

#[test]
fn discriminator_matches_reference_in_eval_and_train_mode() {
    let mut vs = VarStore::new(Device::Cpu);
    let disc = NLayerDiscriminator::new(&vs.root(), &DiscriminatorConfig::default());
    load_strict(&mut vs, &fixture("discriminator.safetensors"), is_io).expect("strict load");
    let io = tensors("discriminator.safetensors");
    let _guard = tch::no_grad_guard();
    assert_close(
        "discriminator eval-mode BN",
        &disc.forward_t(&io["io.x"], false),
        &io["io.out_eval"],
        FORWARD_TOL,
    );
    assert_close(
        "discriminator train-mode BN",
        &disc.forward_t(&io["io.x"], true),
        &io["io.out_train"],
        FORWARD_TOL,
    );
    let vars = vs.variables();
    for (key, want) in io.iter().filter(|(k, _)| k.starts_with("io.after_train.")) {
        let name = key.trim_start_matches("io.after_train.");
        assert_close(&format!("running stat {name}"), &vars[name], want, 1e-5);
    }
}

#[test]
fn config_validation_and_input_shapes() {
    assert!(AutoencoderConfig::default().validate().is_ok());
    let narrow = AutoencoderConfig {
        ch: 16,
        ..AutoencoderConfig::tiny()
    };
    assert!(matches!(
        narrow.validate(),
        Err(AutoencoderError::Config(_))
    ));
    let odd = AutoencoderConfig {
        resolution: 33,
        ..AutoencoderConfig::tiny()
    };
    assert!(odd.validate().is_err());
    let vs = VarStore::new(Device::Cpu);
    let ae = AutoencoderKL::new(&vs.root(), AutoencoderConfig::tiny()).unwrap();
    let _guard = tch::no_grad_guard();
    let bad_channels = Tensor::zeros([1, 4, 32, 32], (Kind::Float, Device::Cpu));
    assert!(ae.encode(&bad_channels, false).is_err());
    let bad_size = Tensor::zeros([1, 3, 31, 32], (Kind::Float, Device::Cpu));
    assert!(ae.encode(&bad_size, false).is_err());
    assert!(ae
        .decode(
            &Tensor::zeros([1, 4, 8, 8], (Kind::Float, Device::Cpu)),
            false
        )
        .is_err());
    let (recon, posterior) = ae
        .forward(
            &Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)),
            true,
            false,
        )
        .unwrap();
    assert_eq!(recon.size(), [2, 3, 32, 32]);
    assert_eq!(posterior.mean.size(), [2, 3, 16, 16]);
}
