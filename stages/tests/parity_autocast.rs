//! Mixed precision against torch.autocast (fixture: tests/fixtures/gen_autocast.py): a small
//! conv + UNet AttentionBlock + linear module on the same weights, forward under our bf16
//! [`AutocastGuard`] on CPU vs under `torch.autocast('cpu', dtype=torch.bfloat16)`.
//!
//! The two sides run the same libtorch ops in the same order, so the same autocast
//! decisions give the same bf16 numbers; the fp32 output is more than one bf16 rounding
//! away from either, so a guard that did nothing (or cast different ops) fails the test.

use histodiff_stages::models::unet::attention::{AttentionConfig, AttentionKernel};
use histodiff_stages::models::unet::{AttentionBlock, QkvOrder};
use histodiff_stages::train::autocast::{AutocastGuard, Precision};
use histodiff_stages::weights::{load_tensors_strict, read_tensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

const GENERATOR: &str = "tests/fixtures/gen_autocast.py";

/// Our bf16 output vs torch's: mean |error| / mean |torch bf16 output|. Identical ops and
/// thread count give identical bits (measured: 0); the bound leaves room for a few
/// elements that another reduction order would round to the neighbouring bf16 value, and
/// is 1/10 of the bf16-vs-fp32 distance (measured 4.1e-3), which the test also checks.
const MEAN_TOLERANCE: f64 = 4e-4;
/// Same, max |error| / max |torch bf16 output| (measured: 0): one bf16 ulp is at most
/// 2^-7 ≈ 7.8e-3 of a value, so this admits a single rounding flip and nothing more.
const MAX_TOLERANCE: f64 = 8e-3;

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

/// conv 3→64 (3×3, pad 1) → AttentionBlock(64, 4 legacy heads, fused kernel) → per-token
/// Linear 64→16, at the generator's PyTorch names.
struct Small {
    conv: nn::Conv2D,
    attn: AttentionBlock,
    head: nn::Linear,
}

impl Small {
    fn new(vs: &nn::Path) -> Self {
        let pad1 = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let attention = AttentionConfig {
            channels: 64,
            num_heads: 4,
            order: QkvOrder::Legacy,
            kernel: AttentionKernel::Fused,
        };
        Self {
            conv: nn::conv2d(vs / "conv", 3, 64, 3, pad1),
            attn: AttentionBlock::new(vs / "attn", attention),
            head: nn::linear(vs / "head", 64, 16, Default::default()),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let h = self.attn.forward(&xs.apply(&self.conv));
        h.flatten(2, 3).transpose(1, 2).apply(&self.head)
    }
}

/// (mean |a − b| / mean |b|, max |a − b| / max |b|), in f64.
fn errors(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let diff = (&a - &b).abs();
    let mean =
        diff.mean(Kind::Double).double_value(&[]) / b.abs().mean(Kind::Double).double_value(&[]);
    let max = diff.max().double_value(&[]) / b.abs().max().double_value(&[]);
    (mean, max)
}

#[test]
fn bf16_guard_matches_torch_autocast_on_cpu() {
    // The generator runs one thread: so do we, for the same reduction order.
    tch::set_num_threads(1);
    let (state, io): (Vec<_>, Vec<_>) = read_tensors(&fixture("autocast.safetensors"))
        .unwrap()
        .into_iter()
        .partition(|(k, _)| !k.starts_with("io."));
    let io: BTreeMap<String, Tensor> = io.into_iter().collect();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Small::new(&vs.root());
    load_tensors_strict(&mut vs, "autocast.safetensors", state).unwrap();
    let _no_grad = tch::no_grad_guard();
    let x = &io["io.x"];

    let f32_out = model.forward(x);
    let (f32_mean, f32_max) = errors(&f32_out, &io["io.out_f32"]);
    eprintln!("f32 vs torch f32: mean rel {f32_mean:.2e}, max rel {f32_max:.2e} (tolerance 1e-5)");
    assert!(f32_max <= 1e-5);

    let bf16_out = {
        let _autocast = AutocastGuard::enter(Precision::Bf16, Device::Cpu).unwrap();
        model.forward(x)
    };
    assert_eq!(bf16_out.kind(), Kind::BFloat16, "linear output is lowered");
    assert_eq!(model.forward(x).kind(), Kind::Float, "the guard is gone");
    let torch_bf16 = &io["io.out_bf16"];
    let (mean, max) = errors(&bf16_out, torch_bf16);
    let (gap_mean, gap_max) = errors(&f32_out, &bf16_out);
    let (ref_mean, ref_max) = errors(&bf16_out, &io["io.out_bf16_reference"]);
    eprintln!(
        "bf16 autocast vs torch.autocast: mean rel {mean:.2e} (tolerance {MEAN_TOLERANCE:.0e}), \
         max rel {max:.2e} (tolerance {MAX_TOLERANCE:.0e}); \
         our fp32 vs our bf16: mean rel {gap_mean:.2e}, max rel {gap_max:.2e}; \
         ours vs openaimodel's einsum attention under torch.autocast: mean rel {ref_mean:.2e}, max rel {ref_max:.2e}"
    );
    assert!(mean <= MEAN_TOLERANCE && max <= MAX_TOLERANCE);
    assert!(
        gap_mean > 5.0 * MEAN_TOLERANCE,
        "an autocast that did nothing would pass: fp32 is only {gap_mean:.2e} away"
    );
}
