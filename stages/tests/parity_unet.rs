//! Parity of the openaimodel UNet family (stages/src/models/unet) with the PyTorch
//! reference written in tests/fixtures/gen_unet.py: forward outputs of tiny models with
//! random non-zero weights (f32, max abs error ≤ 1e-4), gradients of every parameter after
//! one ε-loss backward, and the key sets / shapes / parameter counts of the paper-scale
//! models against the reference's meta-device dump.

use histodiff_stages::diffusion::loss::diffusion_loss;
use histodiff_stages::diffusion::{BetaSchedule, EpsLoss, NoiseSchedule};
use histodiff_stages::models::unet::attention::qkv_attention;
use histodiff_stages::models::unet::{
    presets, AttentionHeads, AttentionKernel, EncoderUNetModel, QkvOrder, TrunkConfig, UNetConfig,
    UNetModel,
};
use histodiff_stages::weights::{load_tensors_strict, read_tensors};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

const GENERATOR: &str = "tests/fixtures/gen_unet.py";

fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var("HISTODIFF_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/fixtures").to_string());
    let path = PathBuf::from(&dir).join(name);
    assert!(
        path.exists(),
        "missing fixture {}: run `python {GENERATOR} --out {dir}`",
        path.display()
    );
    path
}

/// Splits a fixture into model weights and `io.` / `grad.` tensors.
fn load_fixture(name: &str) -> (Vec<(String, Tensor)>, HashMap<String, Tensor>) {
    let (mut weights, mut io) = (Vec::new(), HashMap::new());
    for (key, value) in read_tensors(&fixture(name)).expect("fixture readable") {
        if key.starts_with("io.") || key.starts_with("grad.") {
            io.insert(key, value);
        } else {
            weights.push((key, value));
        }
    }
    (weights, io)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn unet_from(
    name: &str,
    config: &UNetConfig,
) -> (UNetModel, nn::VarStore, HashMap<String, Tensor>) {
    let (weights, io) = load_fixture(name);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = UNetModel::new(&vs.root(), config).expect("valid config");
    load_tensors_strict(&mut vs, name, weights).expect("fixture weights match the model");
    (model, vs, io)
}

fn check_forward(name: &str, config: UNetConfig) {
    for kernel in [
        AttentionKernel::Naive,
        AttentionKernel::QueryChunked(5),
        AttentionKernel::Fused,
    ] {
        let mut config = config.clone();
        config.trunk.attention_kernel = kernel;
        let (model, _vs, io) = unet_from(name, &config);
        model
            .validate_input(&io["io.x"], &io["io.t"])
            .expect("fixture input is valid");
        let out = tch::no_grad(|| model.forward(&io["io.x"], &io["io.t"]));
        let err = max_abs(&out, &io["io.out"]);
        eprintln!(
            "{name} {kernel:?}: max abs error {err:.3e} (tolerance 1e-4, |out| max {:.2})",
            io["io.out"].abs().max().double_value(&[])
        );
        assert!(err <= 1e-4, "{name} {kernel:?}: max abs error {err} > 1e-4");
    }
}

/// gen_unet.py TINY_B: additive conditioning, Downsample/Upsample convs, 16-channel heads,
/// new qkv order, 4 → 4 channels.
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

/// gen_unet.py TINY_C: pooling / nearest resampling without convs, one head.
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

#[test]
fn tiny_unet_scale_shift_resblock_updown_matches_reference() {
    check_forward("unet_tiny_a.safetensors", presets::tiny_unet());
}

#[test]
fn tiny_unet_additive_conv_resample_new_order_matches_reference() {
    check_forward("unet_tiny_b.safetensors", tiny_b());
}

#[test]
fn tiny_unet_pool_resample_matches_reference() {
    check_forward("unet_tiny_c.safetensors", tiny_c());
}

#[test]
fn tiny_encoder_unet_classifier_matches_reference() {
    let (weights, io) = load_fixture("encoder_unet_tiny.safetensors");
    for kernel in [
        AttentionKernel::Naive,
        AttentionKernel::QueryChunked(3),
        AttentionKernel::Fused,
    ] {
        let mut config = presets::tiny_classifier(5);
        config.trunk.attention_kernel = kernel;
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = EncoderUNetModel::new(&vs.root(), &config).expect("valid config");
        let copies = weights
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect();
        load_tensors_strict(&mut vs, "encoder_unet_tiny", copies).expect("weights match");
        model
            .validate_input(&io["io.x"], &io["io.t"])
            .expect("valid input");
        let logits = tch::no_grad(|| model.forward(&io["io.x"], &io["io.t"]));
        let err = max_abs(&logits, &io["io.out"]);
        eprintln!("encoder_unet_tiny {kernel:?}: max abs error {err:.3e} (tolerance 1e-4)");
        assert!(err <= 1e-4, "encoder unet {kernel:?}: {err}");
        assert!(
            model
                .validate_input(&io["io.x"].narrow(2, 0, 8), &io["io.t"])
                .is_err(),
            "wrong size must be refused"
        );
    }
}

#[test]
fn tiny_unet_gradients_after_one_eps_loss_backward_match_reference() {
    let (model, vs, io) = unet_from("unet_tiny_grad.safetensors", &presets::tiny_unet());
    let schedule = NoiseSchedule::new(BetaSchedule::histodiffaug()).expect("schedule");
    let z_t = schedule
        .q_sample(&io["io.z0"], &io["io.t"], &io["io.noise"])
        .expect("q_sample");
    let z_err = max_abs(&z_t, &io["io.z_t"]);
    eprintln!("q_sample: max abs error {z_err:.3e} (tolerance 1e-6)");
    assert!(z_err <= 1e-6, "q_sample {z_err}");
    let l1 =
        tch::no_grad(|| EpsLoss::L1.batch_mean(&model.forward(&z_t, &io["io.t"]), &io["io.noise"]));
    let mut eps_model = |z: &Tensor, t: &Tensor| model.forward_t(z, t, true);
    let loss = diffusion_loss(
        &schedule,
        &mut eps_model,
        &io["io.z0"],
        &io["io.t"],
        &io["io.noise"],
        EpsLoss::L2,
    )
    .expect("loss");
    let loss_err = max_abs(&loss.reshape([1]), &io["io.loss_l2"])
        .max(max_abs(&l1.reshape([1]), &io["io.loss_l1"]));
    eprintln!(
        "eps loss L2 {:.6} / L1: max abs error {loss_err:.3e} (tolerance 1e-5)",
        loss.double_value(&[])
    );
    assert!(loss_err <= 1e-5, "loss {loss_err}");
    loss.backward();
    let (mut worst, mut worst_name, mut count) = (0.0f64, String::new(), 0);
    for (name, var) in vs.variables() {
        let reference = &io[&format!("grad.{name}")];
        let scale = reference.abs().max().double_value(&[]).max(1.0);
        let err = max_abs(&var.grad(), reference) / scale;
        if err > worst {
            (worst, worst_name) = (err, name.clone());
        }
        count += 1;
    }
    eprintln!("gradients of {count} tensors: worst max abs error / max(1, max|grad|) = {worst:.3e} at {worst_name} (tolerance 1e-5)");
    assert_eq!(count, vs.variables().len());
    assert!(worst <= 1e-5, "gradient of {worst_name}: {worst}");
}

#[test]
fn chunked_and_fused_attention_equal_full_attention() {
    tch::manual_seed(7);
    let qkv = Tensor::randn([2, 3 * 64, 300], (Kind::Float, Device::Cpu));
    for order in [QkvOrder::Legacy, QkvOrder::New] {
        let full = qkv_attention(&qkv, 4, order, AttentionKernel::Naive);
        for kernel in [
            AttentionKernel::QueryChunked(64),
            AttentionKernel::QueryChunked(7),
            AttentionKernel::Fused,
        ] {
            let err = max_abs(&full, &qkv_attention(&qkv, 4, order, kernel));
            eprintln!(
                "attention {order:?} {kernel:?} vs naive: max abs error {err:.3e} (tolerance 1e-5)"
            );
            assert!(err <= 1e-5, "{order:?} {kernel:?}: {err}");
        }
    }
}

#[test]
fn invalid_configs_and_inputs_are_errors() {
    let mut bad_heads = presets::tiny_unet();
    bad_heads.trunk.heads = AttentionHeads::Count(3);
    assert!(
        UNetModel::new(&nn::VarStore::new(Device::Cpu).root(), &bad_heads).is_err(),
        "3 heads do not divide 64"
    );
    let mut bad_width = presets::tiny_unet();
    bad_width.trunk.model_channels = 40;
    assert!(
        UNetModel::new(&nn::VarStore::new(Device::Cpu).root(), &bad_width).is_err(),
        "40 is not a multiple of 32 groups"
    );
    let vs = nn::VarStore::new(Device::Cpu);
    let model = UNetModel::new(&vs.root(), &presets::tiny_unet()).expect("tiny");
    let t = Tensor::from_slice(&[1i64, 2]);
    assert!(model
        .validate_input(
            &Tensor::zeros([2, 3, 16, 16], (Kind::Float, Device::Cpu)),
            &t
        )
        .is_ok());
    assert!(
        model
            .validate_input(
                &Tensor::zeros([2, 3, 18, 18], (Kind::Float, Device::Cpu)),
                &t
            )
            .is_err(),
        "18 is not a multiple of 4"
    );
    assert!(
        model
            .validate_input(
                &Tensor::zeros([2, 4, 16, 16], (Kind::Float, Device::Cpu)),
                &t
            )
            .is_err(),
        "4 channels"
    );
}

#[test]
fn zero_initialised_unet_predicts_zero() {
    // out.2 is zero-initialised as in the reference, so a fresh model outputs exactly 0.
    let vs = nn::VarStore::new(Device::Cpu);
    let model = UNetModel::new(&vs.root(), &presets::tiny_unet()).expect("tiny");
    let x = Tensor::randn([1, 3, 16, 16], (Kind::Float, Device::Cpu));
    let out = tch::no_grad(|| model.forward(&x, &Tensor::from_slice(&[10i64])));
    assert_eq!(out.abs().max().double_value(&[]), 0.0);
}

type KeyShapes = BTreeMap<String, Vec<i64>>;

fn reference_keys() -> BTreeMap<String, KeyShapes> {
    let text = std::fs::read_to_string(fixture("unet_keys.json")).expect("readable");
    serde_json::from_str(&text).expect("unet_keys.json parses")
}

fn check_keys(preset: &str, reference: &KeyShapes, vs: &nn::VarStore, expected_params: i64) {
    let ours: KeyShapes = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect();
    let missing: Vec<&String> = reference
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .collect();
    let extra: Vec<&String> = ours
        .keys()
        .filter(|k| !reference.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{preset}: missing {missing:?}, unexpected {extra:?}"
    );
    for (key, shape) in reference {
        assert_eq!(&ours[key], shape, "{preset}: shape of {key}");
    }
    let params: i64 = ours.values().map(|s| s.iter().product::<i64>()).sum();
    eprintln!(
        "{preset}: {} tensors, {params} parameters (SPEC {expected_params})",
        ours.len()
    );
    assert_eq!(params, expected_params, "{preset}: parameter count");
}

#[test]
fn paper_scale_key_sets_shapes_and_counts_match_reference() {
    let reference = reference_keys();
    let _guard = tch::no_grad_guard();
    for (preset, config, params, tensors) in [
        (
            "histodiffaug_unet",
            presets::histodiffaug_unet(),
            294_963_459,
            520,
        ),
        (
            "ldm4_celebahq_unet",
            presets::ldm4_celebahq_unet(),
            274_056_163,
            368,
        ),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        UNetModel::new(&vs.root(), &config).expect("paper preset");
        check_keys(preset, &reference[preset], &vs, params);
        assert_eq!(vs.variables().len(), tensors, "{preset}: tensor count");
    }
    for (preset, config, params) in [
        (
            "latent_classifier",
            presets::latent_classifier(9),
            51_453_961,
        ),
        ("image_classifier", presets::image_classifier(9), 51_484_681),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        EncoderUNetModel::new(&vs.root(), &config).expect("classifier preset");
        check_keys(preset, &reference[preset], &vs, params);
        assert_eq!(vs.variables().len(), 237, "{preset}: tensor count");
    }
}

#[test]
fn paper_scale_unet_attention_kernels_agree_on_64x64_latents() {
    // 4096 tokens per attention block at 64²: the chunked and fused kernels must reproduce
    // the full score-matrix result. The zero-initialised layers get random weights so
    // that attention and the output conv contribute.
    let _guard = tch::no_grad_guard();
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model =
        UNetModel::new(&vs.root(), &presets::histodiffaug_unet()).expect("paper preset");
    for (_, mut var) in vs.variables() {
        if var.abs().max().double_value(&[]) == 0.0 {
            var.copy_(&(var.randn_like() * 0.02));
        }
    }
    let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[517i64]);
    model.validate_input(&x, &t).expect("paper input");
    let mut outputs = Vec::new();
    for kernel in [
        AttentionKernel::Naive,
        AttentionKernel::QueryChunked(presets::DEFAULT_QUERY_CHUNK),
        AttentionKernel::Fused,
    ] {
        model.set_attention_kernel(kernel);
        let start = std::time::Instant::now();
        let out = model.forward(&x, &t);
        eprintln!(
            "paper-scale UNet forward, batch 1, 64², {kernel:?}: {:.1} s on CPU",
            start.elapsed().as_secs_f64()
        );
        assert_eq!(out.size(), [1, 3, 64, 64]);
        outputs.push(out);
    }
    let scale = outputs[0].abs().max().double_value(&[]);
    assert!(
        scale > 0.0 && outputs[0].isfinite().all().int64_value(&[]) == 1,
        "non-trivial finite output"
    );
    for (name, out) in [("QueryChunked", &outputs[1]), ("Fused", &outputs[2])] {
        let err = max_abs(out, &outputs[0]) / scale.max(1.0);
        eprintln!("paper-scale UNet {name} vs Naive: max abs error / max(1, max|out|) {err:.3e} (max|out| {scale:.2}, tolerance 1e-5)");
        assert!(err <= 1e-5, "{name}: {err}");
    }
}
