//! ViT parity against timm (fixtures: tests/fixtures/gen_vit.py): logits and CLS features
//! of a tiny VisionTransformer and of vit_small_patch16_224 on the same random weights, one
//! AdamW step against torch.optim.AdamW, and the paper-scale key sets and shapes.

use histodiff_stages::models::vit::{l2_normalize, VisionTransformer, VitConfig};
use histodiff_stages::train::optim::{Adam, AdamConfig};
use histodiff_stages::weights::{load_tensors_strict, read_tensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, nn::ModuleT, Device, Tensor};

const GENERATOR: &str = "tests/fixtures/gen_vit.py";

/// torch's generator is process-global and tests run in parallel threads: every test here
/// that draws from it (model init included) holds this lock, so seeded runs repeat exactly.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fixture(file: &str) -> PathBuf {
    let dir = std::env::var_os("HISTODIFF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    let path = dir.join(file);
    assert!(
        path.exists(),
        "fixture {} is missing: run `python {GENERATOR} --out {}`",
        path.display(),
        dir.display()
    );
    path
}

/// Fixture tensors split into the state dict (no prefix) and the rest, by name.
fn split(file: &str) -> (Vec<(String, Tensor)>, BTreeMap<String, Tensor>) {
    let (state, other): (Vec<_>, Vec<_>) = read_tensors(&fixture(file))
        .unwrap()
        .into_iter()
        .partition(|(k, _)| !k.starts_with("io.") && !k.starts_with("step."));
    (state, other.into_iter().collect())
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn build(
    config: VitConfig,
    file: &str,
) -> (nn::VarStore, VisionTransformer, BTreeMap<String, Tensor>) {
    let (state, io) = split(file);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = VisionTransformer::new(&vs.root(), config).unwrap();
    load_tensors_strict(&mut vs, file, state).unwrap();
    (vs, model, io)
}

fn check_outputs(model: &VisionTransformer, io: &BTreeMap<String, Tensor>, tol: f64, what: &str) {
    let _guard = tch::no_grad_guard();
    let logits = model.forward_t(&io["io.x"], false);
    let features = model.features_t(&io["io.x"], false);
    let e_norm = max_abs(&l2_normalize(&features), &io["io.features_normalised"]);
    eprintln!("{what}: L2-normalised selection features max abs err {e_norm:.3e} (tol 1e-6)");
    assert!(
        e_norm <= 1e-6,
        "{what} normalised features: max abs error {e_norm}"
    );
    let (e_logits, e_features) = (
        max_abs(&logits, &io["io.logits"]),
        max_abs(&features, &io["io.features"]),
    );
    eprintln!("{what}: logits max abs err {e_logits:.3e}, features max abs err {e_features:.3e} (tol {tol:.0e})");
    assert!(
        e_logits <= tol,
        "{what} logits: max abs error {e_logits} > {tol}"
    );
    assert!(
        e_features <= tol,
        "{what} features: max abs error {e_features} > {tol}"
    );
}

#[test]
fn tiny_vit_matches_timm() {
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let (_vs, model, io) = build(VitConfig::tiny(9), "vit_tiny.safetensors");
    check_outputs(&model, &io, 1e-5, "tiny ViT vs timm");
}

#[test]
fn vit_s16_matches_timm() {
    let _rng = rng_lock();
    let (_vs, model, io) = build(VitConfig::small_16(9), "vit_s16.safetensors");
    check_outputs(&model, &io, 1e-4, "ViT-S/16 vs timm");
}

#[test]
fn one_adamw_step_matches_torch() {
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let (vs, model, io) = build(VitConfig::tiny(9), "vit_tiny.safetensors");
    let mut opt = Adam::new(
        &vs,
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
            decoupled: true,
        },
    );
    // Drop-path and dropout are 0 in this config, so train mode is deterministic.
    let loss = model
        .forward_t(&io["io.x"], true)
        .cross_entropy_for_logits(&io["io.labels"]);
    let e_loss = max_abs(&loss.reshape([1]), &io["io.loss"]);
    opt.zero_grad();
    loss.backward();
    opt.step();
    let mut worst = (0.0f64, String::new());
    for (name, var) in vs.variables() {
        let err = max_abs(&var, &io[&format!("step.{name}")]);
        if err > worst.0 {
            worst = (err, name);
        }
    }
    eprintln!(
        "tiny ViT AdamW step: loss err {e_loss:.3e}, weights max abs err {:.3e} at {} (tol 1e-6)",
        worst.0, worst.1
    );
    assert!(e_loss <= 1e-5, "loss error {e_loss}");
    assert!(
        worst.0 <= 1e-6,
        "weights after one AdamW step differ from torch by {} at {}",
        worst.0,
        worst.1
    );
}

fn key_shapes(config: VitConfig) -> BTreeMap<String, Vec<i64>> {
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = VisionTransformer::new(&vs.root(), config).unwrap();
    vs.variables()
        .into_iter()
        .map(|(k, t)| (k, t.size()))
        .collect()
}

fn reference_shapes(file: &str) -> BTreeMap<String, Vec<i64>> {
    let text = std::fs::read_to_string(fixture(file)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn paper_scale_key_sets_and_shapes_match_timm() {
    let _rng = rng_lock();
    for (config, file) in [
        (VitConfig::small_16(9), "vit_s16_keys.json"),
        (VitConfig::base_16(9), "vit_b16_keys.json"),
    ] {
        let ours = key_shapes(config);
        let theirs = reference_shapes(file);
        assert_eq!(
            ours, theirs,
            "key set or shapes differ from timm's ({file})"
        );
        let params: i64 = ours.values().map(|s| s.iter().product::<i64>()).sum();
        eprintln!("{file}: {} keys, {params} parameters", ours.len());
    }
}

#[test]
fn drop_path_is_off_in_eval_and_random_in_train() {
    let _rng = rng_lock();
    let config = VitConfig {
        drop_path_rate: 0.5,
        ..VitConfig::tiny(9)
    };
    config.validate().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = VisionTransformer::new(&vs.root(), config).unwrap();
    let x = Tensor::randn([8, 3, 32, 32], tch::kind::FLOAT_CPU);
    let _guard = tch::no_grad_guard();
    let (a, b) = (model.forward_t(&x, false), model.forward_t(&x, false));
    assert_eq!(max_abs(&a, &b), 0.0);
    tch::manual_seed(1);
    let c = model.forward_t(&x, true);
    assert!(
        max_abs(&a, &c) > 0.0,
        "drop-path had no effect in training mode"
    );
}

#[test]
fn invalid_configs_and_inputs_are_rejected() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = VisionTransformer::new(&vs.root(), VitConfig::tiny(9)).unwrap();
    assert!(model
        .check_input(&Tensor::zeros([2, 3, 32, 32], tch::kind::FLOAT_CPU))
        .is_ok());
    assert!(model
        .check_input(&Tensor::zeros([2, 3, 64, 64], tch::kind::FLOAT_CPU))
        .is_err());
    assert!(model
        .check_input(&Tensor::zeros([3, 32, 32], tch::kind::FLOAT_CPU))
        .is_err());
    let bad = VitConfig {
        num_heads: 5,
        ..VitConfig::tiny(9)
    };
    assert!(VisionTransformer::new(&(&vs.root() / "bad"), bad).is_err());
    let _rng = rng_lock();
    assert!(VitConfig {
        patch_size: 7,
        ..VitConfig::tiny(9)
    }
    .validate()
    .is_err());
    assert!(VitConfig {
        num_heads: 3,
        ..VitConfig::tiny(9)
    }
    .validate()
    .is_err());
    assert!(VitConfig::default().validate().is_ok());
}

/// Trains the tiny ViT (drop-path on, so torch's generator matters) for `steps` from a
/// checkpoint or from scratch, with data order, torch seed, EMA and optimizer all restored.
mod resume {
    use super::*;
    use histodiff_stages::train::checkpoint::{self, CheckpointMeta};
    use histodiff_stages::train::data_order::DataOrder;
    use histodiff_stages::train::determinism::{seed_torch, seed_torch_for_step};
    use histodiff_stages::train::ema::Ema;

    const SEED: u64 = 11;
    const BATCH: usize = 4;

    struct Run {
        vs: nn::VarStore,
        model: VisionTransformer,
        opt: Adam,
        ema: Ema,
        order: DataOrder,
        step: u64,
    }

    fn start() -> Run {
        seed_torch(SEED);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = VisionTransformer::new(
            &vs.root(),
            VitConfig {
                drop_path_rate: 0.2,
                ..VitConfig::tiny(9)
            },
        )
        .unwrap();
        let opt = Adam::new(&vs, AdamConfig::adamw(1e-3, 0.05));
        let ema = Ema::new(&vs, 0.999, true);
        Run {
            vs,
            model,
            opt,
            ema,
            order: DataOrder::new(16, BATCH, SEED),
            step: 0,
        }
    }

    fn train(run: &mut Run, data: &(Tensor, Tensor), steps: u64) {
        for _ in 0..steps {
            seed_torch_for_step(SEED, run.step);
            let order = run.order.batch(run.step);
            let idx = Tensor::from_slice(&order.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let loss = run
                .model
                .forward_t(&data.0.index_select(0, &idx), true)
                .cross_entropy_for_logits(&data.1.index_select(0, &idx));
            run.opt.zero_grad();
            loss.backward();
            run.opt.step();
            run.ema.update(&run.vs);
            run.step += 1;
        }
    }

    #[test]
    fn resumed_training_is_bit_identical() {
        let _rng = rng_lock();
        tch::set_num_threads(1);
        tch::manual_seed(5);
        let data = (
            Tensor::randn([16, 3, 32, 32], tch::kind::FLOAT_CPU),
            Tensor::randint(9, [16], (tch::Kind::Int64, Device::Cpu)),
        );
        let mut straight = start();
        train(&mut straight, &data, 6);

        let dir = std::env::temp_dir().join(format!("histodiff-vit-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut first = start();
        train(&mut first, &data, 3);
        let meta = CheckpointMeta {
            step: first.step,
            extra: Default::default(),
        };
        checkpoint::save(
            &dir,
            &meta,
            &checkpoint::collect(&first.vs, Some(&first.opt), Some(&first.ema)),
        )
        .unwrap();
        drop(first);

        let saved = checkpoint::load(&checkpoint::latest(&dir).unwrap().unwrap()).unwrap();
        let mut resumed = start();
        checkpoint::restore(
            &saved,
            &mut resumed.vs,
            Some(&mut resumed.opt),
            Some(&mut resumed.ema),
        )
        .unwrap();
        resumed.step = saved.meta.step;
        train(&mut resumed, &data, 3);
        std::fs::remove_dir_all(&dir).unwrap();

        let (a, b) = (straight.vs.variables(), resumed.vs.variables());
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "weight `{name}` differs after resuming");
            assert!(
                straight
                    .ema
                    .get(name)
                    .unwrap()
                    .equal(resumed.ema.get(name).unwrap()),
                "EMA `{name}` differs"
            );
        }
        eprintln!(
            "tiny ViT: 3 + checkpoint + 3 steps == 6 steps, bit for bit ({} tensors, EMA included)",
            a.len()
        );
    }
}
