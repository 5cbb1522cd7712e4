//! Parity of LPIPS (stages/src/models/lpips.rs) with the published package and the code the
//! official loss calls, same weights and inputs, f32 on the CPU:
//! - PyPI `lpips==0.1.4` `lpips/lpips.py` `LPIPS(net="vgg")`, its shipped linear heads
//!   (`weights/v0.1/vgg.pth`) and a random (hashed) VGG16 backbone — torchvision's ImageNet
//!   weights cannot be downloaded here;
//! - CompVis/taming-transformers@3ba01b241669f5ade541ce990f7650a3b8f65318
//!   `taming/modules/losses/lpips.py` `LPIPS` (what LPIPSWithDiscriminator uses) on the
//!   same weights (its outputs equal the package's exactly).
//!
//! Tolerance: max abs error ≤ 1e-7 on distances ≈ 0.03 (≈ 3e-6 relative; f32 sums of a few
//! thousand terms in a different order).

mod parity_official_common;

use histodiff_stages::models::lpips::Lpips;
use parity_official_common::*;
use tch::{nn, Device};

const FILE: &str = "lpips.safetensors";
const TOL: f64 = 1e-7;

#[test]
fn official_lpips_package_and_taming_lpips_vgg() {
    let fixture = read_fixture(FILE);
    let io = io(&fixture);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let lpips = Lpips::new(&vs.root());
    // The ScalingLayer constants are built in, not loaded: compare them before the load
    // overwrites them with the package's buffers.
    let vars = vs.variables();
    for name in ["scaling_layer.shift", "scaling_layer.scale"] {
        assert_close(name, &vars[name], &fixture[name], 0.0);
    }
    load_hashed_strict(&mut vs, FILE, &fixture);
    let out = tch::no_grad(|| {
        lpips
            .forward(&io["io.x0"], &io["io.x1"])
            .expect("valid shapes")
    });
    assert_close("lpips vs PyPI lpips", &out, &io["io.out"], TOL);
    assert_close("lpips vs taming LPIPS", &out, &io["io.out_taming"], TOL);
}
