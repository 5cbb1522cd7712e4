//! LPIPS perceptual distance with VGG16 features, as taming-transformers' `LPIPS` (SPEC §2.5).
//!
//! Frozen: every variable is created non-trainable and must be loaded from a file under
//! taming's names (`scaling_layer.{shift,scale}`, `net.slice{1..5}.{i}.{weight,bias}` with
//! torchvision `features` indices, `lin{0..4}.model.1.weight`); docs/weights.md says how to
//! make that file from torchvision's VGG16 and taming's `vgg.pth`. Gradients still flow to
//! the inputs. Always in eval mode (the Dropout before each `lin` is inactive).
//!
//! Until loaded, the network weights are NaN, so a forgotten load shows up as a NaN loss on
//! the first step instead of a silently zero perceptual term.

use tch::{nn, Kind, Tensor};

/// VGG16 `features` configuration "D": conv widths, `None` = 2×2 max-pool.
const VGG16: [Option<i64>; 18] = [
    Some(64),
    Some(64),
    None,
    Some(128),
    Some(128),
    None,
    Some(256),
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
];
/// `features` index where each of the five taps (after relu1_2 … relu5_3) ends.
const SLICE_ENDS: [usize; 5] = [4, 9, 16, 23, 30];
/// `ScalingLayer` constants mapping [−1, 1] inputs to VGG's ImageNet normalisation.
const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
const SCALE: [f32; 3] = [0.458, 0.448, 0.450];
/// Channels of the five taps.
pub const TAP_CHANNELS: [i64; 5] = [64, 128, 256, 512, 512];

#[derive(Debug, thiserror::Error)]
pub enum LpipsError {
    #[error("lpips: inputs must both be (B, 3, H, W) with H, W ≥ 16, got {0:?} and {1:?}")]
    Shape(Vec<i64>, Vec<i64>),
}

/// A frozen conv layer (3×3 pad 1 with bias in VGG, 1×1 without bias in the `lin` heads).
#[derive(Debug)]
struct FrozenConv {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: i64,
}

impl FrozenConv {
    fn new(vs: nn::Path, c_in: i64, c_out: i64, kernel: i64, bias: bool) -> Self {
        Self {
            weight: not_loaded(&vs, "weight", &[c_out, c_in, kernel, kernel]),
            bias: bias.then(|| not_loaded(&vs, "bias", &[c_out])),
            padding: kernel / 2,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.conv2d(
            &self.weight,
            self.bias.as_ref(),
            [1, 1],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }
}

#[derive(Debug)]
enum VggLayer {
    Conv(FrozenConv),
    Relu,
    MaxPool,
}

/// The LPIPS network; `forward` returns the distance per sample, shape (B, 1, 1, 1).
#[derive(Debug)]
pub struct Lpips {
    shift: Tensor,
    scale: Tensor,
    slices: Vec<Vec<VggLayer>>,
    lins: Vec<FrozenConv>,
}

impl Lpips {
    /// Creates the frozen variables at `vs`: the scaling constants, and NaN network weights
    /// to be loaded before use.
    pub fn new(vs: &nn::Path) -> Self {
        let mut slices: Vec<Vec<VggLayer>> = (0..SLICE_ENDS.len()).map(|_| Vec::new()).collect();
        let (mut index, mut c_in) = (0usize, 3i64);
        for entry in VGG16 {
            // The layer at `index` belongs to the first slice that ends after it.
            let Some(slice) = SLICE_ENDS.iter().position(|&end| index < end) else {
                break;
            };
            let path = vs / "net" / format!("slice{}", slice + 1);
            match entry {
                Some(width) => {
                    slices[slice].push(VggLayer::Conv(FrozenConv::new(
                        &path / index,
                        c_in,
                        width,
                        3,
                        true,
                    )));
                    slices[slice].push(VggLayer::Relu);
                    c_in = width;
                    index += 2;
                }
                None => {
                    slices[slice].push(VggLayer::MaxPool);
                    index += 1;
                }
            }
        }
        let lins = TAP_CHANNELS
            .iter()
            .enumerate()
            .map(|(i, &c)| FrozenConv::new(vs / format!("lin{i}") / "model" / 1, c, 1, 1, false))
            .collect();
        let scaling = vs / "scaling_layer";
        Self {
            shift: constant(&scaling, "shift", &SHIFT),
            scale: constant(&scaling, "scale", &SCALE),
            slices,
            lins,
        }
    }

    fn taps(&self, xs: &Tensor) -> Vec<Tensor> {
        let mut h = (xs - &self.shift) / &self.scale;
        let mut taps = Vec::with_capacity(self.slices.len());
        for slice in &self.slices {
            for layer in slice {
                h = match layer {
                    VggLayer::Conv(conv) => conv.forward(&h),
                    VggLayer::Relu => h.relu(),
                    VggLayer::MaxPool => h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
                };
            }
            taps.push(h.shallow_clone());
        }
        taps
    }

    /// LPIPS(a, b) for images in [−1, 1]: Σ over taps of the spatial mean of
    /// lin(‖unit(f_a) − unit(f_b)‖² per channel), shape (B, 1, 1, 1).
    pub fn forward(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, LpipsError> {
        let (sa, sb) = (a.size(), b.size());
        if sa != sb || sa.len() != 4 || sa[1] != 3 || sa[2] < 16 || sa[3] < 16 {
            return Err(LpipsError::Shape(sa, sb));
        }
        let (ta, tb) = (self.taps(a), self.taps(b));
        let mut total: Option<Tensor> = None;
        for ((fa, fb), lin) in ta.iter().zip(&tb).zip(&self.lins) {
            let diff = (unit_normalize(fa) - unit_normalize(fb)).square();
            let term = lin
                .forward(&diff)
                .mean_dim(&[2i64, 3][..], true, None::<tch::Kind>);
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        Ok(total.expect("five taps"))
    }
}

/// A frozen variable of NaNs (see the module doc).
fn not_loaded(vs: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    vs.add(
        name,
        Tensor::full(dims, f64::NAN, (Kind::Float, vs.device())),
        false,
    )
}

/// A frozen (1, 3, 1, 1) variable holding per-channel constants.
fn constant(vs: &nn::Path, name: &str, values: &[f32; 3]) -> Tensor {
    let value = Tensor::from_slice(values)
        .reshape([1, 3, 1, 1])
        .to_device(vs.device());
    vs.add(name, value, false)
}

/// x / (‖x‖₂ over channels + 1e-10).
fn unit_normalize(xs: &Tensor) -> Tensor {
    let norm = xs
        .square()
        .sum_dim_intlist(&[1i64][..], true, None::<tch::Kind>)
        .sqrt();
    xs / (norm + 1e-10)
}
