//! Training machinery against PyTorch (fixture: tests/fixtures/gen_optim.py): Adam and
//! AdamW over several steps, resuming from a checkpoint mid-way, gradient clipping, the
//! cosine schedule; EMA against the SPEC §4.2 formula; checkpoint files.

use histodiff_stages::train::checkpoint::{self, CheckpointMeta, OPTIM_PREFIX};
use histodiff_stages::train::clip::clip_grad_norm;
use histodiff_stages::train::ema::Ema;
use histodiff_stages::train::lr::LrSchedule;
use histodiff_stages::train::optim::{Adam, AdamConfig};
use histodiff_stages::weights::read_tensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

const GENERATOR: &str = "tests/fixtures/gen_optim.py";
const STEPS: usize = 6;
const ADAMW: AdamConfig = AdamConfig {
    lr: 1e-2,
    beta1: 0.8,
    beta2: 0.95,
    eps: 1e-6,
    weight_decay: 0.1,
    decoupled: true,
};
const ADAM: AdamConfig = AdamConfig {
    lr: 3e-3,
    beta1: 0.9,
    beta2: 0.99,
    eps: 1e-8,
    weight_decay: 0.05,
    decoupled: false,
};

fn fixtures() -> BTreeMap<String, Tensor> {
    let dir = std::env::var_os("HISTODIFF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    let path = dir.join("optim.safetensors");
    assert!(
        path.exists(),
        "fixture {} is missing: run `python {GENERATOR} --out {}`",
        path.display(),
        dir.display()
    );
    read_tensors(&path).unwrap().into_iter().collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Fresh parameters w, b from `init.*`.
fn params(f: &BTreeMap<String, Tensor>) -> Vec<(String, Tensor)> {
    ["w", "b"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                f[&format!("init.{n}")].copy().set_requires_grad(true),
            )
        })
        .collect()
}

fn set_grads(params: &[(String, Tensor)], f: &BTreeMap<String, Tensor>, step: usize) {
    for (name, p) in params {
        let mut grad = p.grad();
        if !grad.defined() {
            // Creates the .grad tensor the way backward would.
            (p * 0.0).sum(Kind::Float).backward();
            grad = p.grad();
        }
        grad.copy_(&f[&format!("grad.{step}.{name}")]);
    }
}

fn run(opt: &mut Adam, f: &BTreeMap<String, Tensor>, steps: std::ops::Range<usize>) {
    for k in steps {
        set_grads(opt.params(), f, k);
        opt.step();
    }
}

fn compare(opt: &Adam, f: &BTreeMap<String, Tensor>, prefix: &str, tol: f64) -> f64 {
    let err = opt
        .params()
        .iter()
        .map(|(n, p)| max_abs(p, &f[&format!("{prefix}{n}")]))
        .fold(0.0, f64::max);
    eprintln!("{prefix}* vs torch.optim: max abs err {err:.3e} (tol {tol:.0e})");
    assert!(err <= tol, "{prefix}: max abs error {err} > {tol}");
    err
}

#[test]
fn adamw_and_adam_match_torch_over_several_steps() {
    let f = fixtures();
    let mut adamw = Adam::from_params(params(&f), ADAMW);
    run(&mut adamw, &f, 0..STEPS);
    compare(&adamw, &f, "adamw.", 1e-6);
    let mut adam = Adam::from_params(params(&f), ADAM);
    run(&mut adam, &f, 0..STEPS);
    compare(&adam, &f, "adam.", 1e-6);
}

#[test]
fn resumed_adamw_equals_uninterrupted_run() {
    let f = fixtures();
    let dir = std::env::temp_dir().join(format!("histodiff-optim-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // First half, then a checkpoint holding weights and optimizer state.
    let mut first = Adam::from_params(params(&f), ADAMW);
    run(&mut first, &f, 0..STEPS / 2);
    compare(&first, &f, "adamw.half.", 1e-6);
    let meta = CheckpointMeta {
        step: (STEPS / 2) as u64,
        extra: BTreeMap::new(),
    };
    let mut tensors: Vec<(String, Tensor)> = first
        .params()
        .iter()
        .map(|(n, p)| (n.clone(), p.detach()))
        .collect();
    tensors.extend(first.state_tensors(OPTIM_PREFIX));
    let path = checkpoint::save(&dir, &meta, &tensors).unwrap();
    drop(first);
    // A new process would start here: rebuild from the file and finish the run.
    let saved = checkpoint::load(&path).unwrap();
    assert_eq!(saved.meta, meta);
    let restored: Vec<(String, Tensor)> = saved
        .model_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.set_requires_grad(true)))
        .collect();
    let mut resumed = Adam::from_params(restored, ADAMW);
    resumed
        .load_state_tensors(OPTIM_PREFIX, &saved.tensors)
        .unwrap();
    run(&mut resumed, &f, STEPS / 2..STEPS);
    let mut straight = Adam::from_params(params(&f), ADAMW);
    run(&mut straight, &f, 0..STEPS);
    for ((n, a), (_, b)) in resumed.params().iter().zip(straight.params()) {
        assert!(
            a.equal(b),
            "resumed `{n}` differs from the uninterrupted run by {}",
            max_abs(a, b)
        );
    }
    compare(&resumed, &f, "adamw.", 1e-6);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn optimizer_state_rejects_unknown_parameters() {
    let f = fixtures();
    let mut opt = Adam::from_params(params(&f), ADAMW);
    run(&mut opt, &f, 0..1);
    let mut state: BTreeMap<String, Tensor> = opt.state_tensors("optim.").into_iter().collect();
    state.insert(
        "optim.extra.exp_avg".into(),
        Tensor::zeros([1], tch::kind::FLOAT_CPU),
    );
    assert!(opt.load_state_tensors("optim.", &state).is_err());
}

#[test]
fn clipping_matches_clip_grad_norm() {
    let f = fixtures();
    for (prefix, max_norm) in [("clip", 1.5), ("clip_small", 1e3)] {
        let p = params(&f);
        set_grads(&p, &f, 0);
        let norm = clip_grad_norm(&p, max_norm);
        let e_norm = (norm - f[&format!("{prefix}.norm")].double_value(&[0])).abs();
        let e_grad = p
            .iter()
            .map(|(n, t)| max_abs(&t.grad(), &f[&format!("{prefix}.grad.{n}")]))
            .fold(0.0, f64::max);
        eprintln!("{prefix} (max_norm {max_norm}): norm err {e_norm:.3e}, grad max abs err {e_grad:.3e} (tol 1e-6)");
        assert!(
            e_norm <= 1e-6 && e_grad <= 1e-6,
            "{prefix}: norm err {e_norm}, grad err {e_grad}"
        );
    }
}

#[test]
fn cosine_schedule_matches_timm() {
    let f = fixtures();
    let expected = &f["cosine.lr"];
    let schedule = LrSchedule::Cosine {
        total_steps: 40,
        warmup_steps: 5,
        warmup_init: 1e-6,
        min_lr: 1e-5,
    };
    let mut worst = 0.0f64;
    for t in 0..expected.size()[0] {
        let ours = schedule.lr_at(5e-4, t as u64);
        worst = worst.max((ours - expected.double_value(&[t])).abs());
    }
    eprintln!("cosine lr vs timm CosineLRScheduler: max abs err {worst:.3e} (tol 1e-15)");
    assert!(worst <= 1e-15, "cosine schedule differs by {worst}");
}

#[test]
fn ema_follows_the_spec_formula() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut w = vs.root().var("w", &[3], nn::Init::Const(1.0));
    let mut ema = Ema::new(&vs, 0.9999, true);
    // Reference in f64: d_n = min(0.9999, (1+n)/(10+n)), s ← s − (1 − d)(s − θ).
    let mut shadow = 1.0f64;
    for n in 1..=20 {
        let theta = n as f64 * 0.5;
        let _ = tch::no_grad(|| w.fill_(theta));
        ema.update(&vs);
        let decay = 0.9999f64.min((1.0 + n as f64) / (10.0 + n as f64));
        shadow -= (1.0 - decay) * (shadow - theta);
        let ours = ema.get("w").unwrap().double_value(&[0]);
        assert!(
            (ours - shadow).abs() <= 1e-5 * shadow.abs(),
            "update {n}: {ours} vs {shadow}"
        );
    }
    assert_eq!(ema.num_updates(), 20);
    // The state round-trips, and copy_to writes the shadow into the model.
    let state: BTreeMap<String, Tensor> = ema.state_tensors("ema.").into_iter().collect();
    let mut other = Ema::new(&vs, 0.9999, true);
    other.load_state_tensors("ema.", &state).unwrap();
    assert_eq!(other.num_updates(), 20);
    assert!(other.get("w").unwrap().equal(ema.get("w").unwrap()));
    other.copy_to(&vs);
    assert!(vs.variables()["w"].equal(ema.get("w").unwrap()));
}

#[test]
fn latest_checkpoint_is_the_highest_step_and_ignores_temporaries() {
    let dir = std::env::temp_dir().join(format!("histodiff-ckpt-latest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(checkpoint::latest(&dir).unwrap(), None);
    let tensors = vec![("w".to_string(), Tensor::arange(4, tch::kind::FLOAT_CPU))];
    for step in [5u64, 120, 30] {
        let meta = CheckpointMeta {
            step,
            extra: BTreeMap::new(),
        };
        checkpoint::save(&dir, &meta, &tensors).unwrap();
    }
    std::fs::write(dir.join(".ckpt-000000000999.safetensors.tmp-1"), b"torn").unwrap();
    let newest = checkpoint::latest(&dir).unwrap().unwrap();
    assert_eq!(checkpoint::load(&newest).unwrap().meta.step, 120);
    checkpoint::prune(&dir, 1).unwrap();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "one checkpoint and the stray temporary remain"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
