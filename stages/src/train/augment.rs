//! Augmentation of training batches for histology patches: random horizontal and vertical
//! flips and 90° rotations (a tissue patch has no orientation, so every element of the
//! square's symmetry group is an equally real image), an optional random resized crop
//! (torchvision's RandomResizedCrop: scale and aspect jitter, the DeiT recipe's first
//! transform) and optional colour jitter (brightness, contrast, saturation; stain intensity
//! varies between slides).
//!
//! Determinism: every draw of step `s` comes from a ChaCha8 stream of (seed, s), not from
//! libtorch's generator, so a resumed run augments exactly as an uninterrupted one and the
//! augmentation never shifts the dropout or drop-path draws of the same step. The whole batch
//! is transformed with a few batched tensor operations (one `where` per transform), so the
//! cost does not grow with the batch size in kernel launches.

use super::data_order::mix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// Mixed into the seed so the augmentation stream differs from the data order's (which
/// also derives from `mix(seed, ·)`).
const STREAM: u64 = 0x0061_7567_6d65_6e74; // "augment"
/// The crops' own stream: their number of draws varies (rejection sampling), so they must
/// not shift the other transforms' draws.
const CROP_STREAM: u64 = 0x6372_6f70; // "crop"
/// torchvision RandomResizedCrop's aspect-ratio range and attempts before its fallback.
const CROP_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
const CROP_ATTEMPTS: usize = 10;

/// Which flips are drawn (each with probability ½, independently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flips {
    None,
    /// Left–right only (torchvision's RandomHorizontalFlip, the DeiT recipe).
    Horizontal,
    /// Left–right and up–down.
    Both,
}

impl Flips {
    pub const NAMES: [&'static str; 3] = ["none", "horizontal", "both"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "horizontal" => Some(Self::Horizontal),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Horizontal => "horizontal",
            Self::Both => "both",
        }
    }
}

/// What to draw for every training image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentConfig {
    pub flips: Flips,
    /// A rotation by k·90°, k uniform in 0..4 (with `Flips::Both`, all 8 symmetries of
    /// the square are equally likely).
    pub rot90: bool,
    /// torchvision ColorJitter(v, v, v, 0): brightness, contrast and saturation factors
    /// each uniform in [max(0, 1 − v), 1 + v]; 0 turns jitter off.
    pub color_jitter: f64,
    /// RandomResizedCrop(scale = (crop_scale, 1), ratio = (3/4, 4/3)), resized back to the
    /// input size bilinearly; 1 turns it off.
    pub crop_scale: f64,
}

impl AugmentConfig {
    /// No augmentation at all.
    pub const OFF: Self = Self {
        flips: Flips::None,
        rot90: false,
        color_jitter: 0.0,
        crop_scale: 1.0,
    };

    pub fn is_off(&self) -> bool {
        self.flips == Flips::None && !self.rot90 && self.color_jitter <= 0.0 && !self.crops()
    }

    fn crops(&self) -> bool {
        self.crop_scale < 1.0
    }
}

/// The random choices for one batch, one entry per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Draws {
    pub hflip: Vec<bool>,
    pub vflip: Vec<bool>,
    /// Quarter turns, 0..4.
    pub quarter_turns: Vec<i64>,
    /// (brightness, contrast, saturation) factors; 1 when jitter is off.
    pub jitter: Vec<[f64; 3]>,
    /// Crop boxes (top, left, height, width) in pixels; the whole image when crops are off.
    pub crops: Vec<[i64; 4]>,
}

/// Augments the training batches of one run.
#[derive(Debug, Clone, Copy)]
pub struct Augmenter {
    config: AugmentConfig,
    seed: u64,
}

impl Augmenter {
    pub fn new(config: AugmentConfig, seed: u64) -> Self {
        Self { config, seed }
    }

    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// The choices for the `n` images (of side `size`) of step `step`: a pure function of
    /// (seed, step). Every quantity is drawn whether or not it is used, so turning one
    /// transform on or off does not change the draws of the others.
    pub fn draws(&self, step: u64, n: usize, size: i64) -> Draws {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(self.seed, STREAM), step));
        let mut crop_rng = ChaCha8Rng::seed_from_u64(mix(mix(self.seed, CROP_STREAM), step));
        let c = &self.config;
        let mut d = Draws {
            hflip: Vec::with_capacity(n),
            vflip: Vec::with_capacity(n),
            quarter_turns: Vec::with_capacity(n),
            jitter: Vec::with_capacity(n),
            crops: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let (h, v, k) = (unit(&mut rng), unit(&mut rng), rng.next_u64() % 4);
            let factors = [unit(&mut rng), unit(&mut rng), unit(&mut rng)];
            d.hflip.push(c.flips != Flips::None && h < 0.5);
            d.vflip.push(c.flips == Flips::Both && v < 0.5);
            d.quarter_turns.push(if c.rot90 { k as i64 } else { 0 });
            d.jitter
                .push(factors.map(|u| jitter_factor(u, c.color_jitter)));
            d.crops.push(if c.crops() {
                crop_box(&mut crop_rng, size, c.crop_scale)
            } else {
                [0, 0, size, size]
            });
        }
        d
    }

    /// The augmented batch of step `step`: `images` is float (B, 3, H, W) in [0, 1] with
    /// H = W (rotations keep the shape only for square images; callers pass the model's
    /// square input), on any device.
    pub fn apply(&self, images: &Tensor, step: u64) -> Tensor {
        if self.config.is_off() {
            return images.shallow_clone();
        }
        let (n, size) = (images.size()[0] as usize, images.size()[3]);
        let d = self.draws(step, n, size);
        let mut x = if self.config.crops() {
            resized_crops(images, &d.crops)
        } else {
            images.shallow_clone()
        };
        x = where_each(&x, &d.hflip, |x| x.flip([3]));
        x = where_each(&x, &d.vflip, |x| x.flip([2]));
        for k in 1..4 {
            let turn: Vec<bool> = d.quarter_turns.iter().map(|&q| q == k).collect();
            x = where_each(&x, &turn, |x| x.rot90(k, [2, 3]));
        }
        if self.config.color_jitter > 0.0 {
            let factor = |i: usize| per_image(d.jitter.iter().map(|f| f[i]), x.device());
            x = color_jitter(&x, &factor(0), &factor(1), &factor(2));
        }
        x
    }
}

/// A uniform draw in [0, 1) with 53 random bits (rand's own float conversion may change
/// between versions; this one is fixed, so the stream is too).
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// torchvision `RandomResizedCrop.get_params` for a square image of side `size`: up to 10
/// tries of an area fraction uniform in [min_scale, 1] and a log-uniform aspect ratio in
/// [3/4, 4/3]; the first box that fits is placed uniformly; else the whole image (its
/// fallback for a square image).
fn crop_box(rng: &mut ChaCha8Rng, size: i64, min_scale: f64) -> [i64; 4] {
    let area = (size * size) as f64;
    let (lo, hi) = (CROP_RATIO.0.ln(), CROP_RATIO.1.ln());
    for _ in 0..CROP_ATTEMPTS {
        let target = area * (min_scale + unit(rng) * (1.0 - min_scale));
        let aspect = (lo + unit(rng) * (hi - lo)).exp();
        let w = (target * aspect).sqrt().round() as i64;
        let h = (target / aspect).sqrt().round() as i64;
        if 0 < w && w <= size && 0 < h && h <= size {
            let top = (unit(rng) * (size - h + 1) as f64) as i64;
            let left = (unit(rng) * (size - w + 1) as f64) as i64;
            return [top, left, h, w];
        }
    }
    [0, 0, size, size]
}

/// Each image's box resized to the full side, bilinearly: one `grid_sample` for the batch.
/// The sampling positions are `F.interpolate`'s (align_corners = False) on the crop; at
/// the crop's edge they may blend in the pixel just outside it, and clamp at the image's.
fn resized_crops(x: &Tensor, boxes: &[[i64; 4]]) -> Tensor {
    let size = x.size();
    let (h_img, w_img) = (size[2] as f64, size[3] as f64);
    let theta: Vec<f32> = boxes
        .iter()
        .flat_map(|&[top, left, h, w]| {
            let (top, left, h, w) = (top as f64, left as f64, h as f64, w as f64);
            [
                w / w_img,
                0.0,
                (2.0 * left + w) / w_img - 1.0,
                0.0,
                h / h_img,
                (2.0 * top + h) / h_img - 1.0,
            ]
        })
        .map(|v| v as f32)
        .collect();
    let theta = Tensor::from_slice(&theta)
        .view([-1, 2, 3])
        .to_device(x.device());
    let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
    // Interpolation 0: bilinear; padding 1: border.
    x.grid_sampler(&grid.to_kind(x.kind()), 0, 1, false)
}

/// A jitter factor uniform in [max(0, 1 − strength), 1 + strength] from u in [0, 1).
fn jitter_factor(u: f64, strength: f64) -> f64 {
    if strength <= 0.0 {
        return 1.0;
    }
    let low = (1.0 - strength).max(0.0);
    low + u * (1.0 + strength - low)
}

/// `transform(x)` for the images whose flag is set, `x` for the others.
fn where_each(x: &Tensor, flags: &[bool], transform: impl Fn(&Tensor) -> Tensor) -> Tensor {
    if !flags.iter().any(|&f| f) {
        return x.shallow_clone();
    }
    let mask = Tensor::from_slice(flags)
        .to_device(x.device())
        .view([-1, 1, 1, 1]);
    transform(x).where_self(&mask, x)
}

/// One value per image as a (B, 1, 1, 1) f32 tensor on `device`.
fn per_image(values: impl Iterator<Item = f64>, device: Device) -> Tensor {
    let v: Vec<f32> = values.map(|v| v as f32).collect();
    Tensor::from_slice(&v).to_device(device).view([-1, 1, 1, 1])
}

/// torchvision's `rgb_to_grayscale` of float images: 0.2989 R + 0.587 G + 0.114 B, (B, 1, H, W).
fn grayscale(x: &Tensor) -> Tensor {
    let channels = x.unbind(1);
    let gray = &channels[0] * 0.2989 + &channels[1] * 0.587 + &channels[2] * 0.114;
    gray.unsqueeze(1)
}

/// torchvision's `_blend` of float images: ratio·x + (1 − ratio)·other, clamped to [0, 1].
fn blend(x: &Tensor, other: &Tensor, ratio: &Tensor) -> Tensor {
    let rest: Tensor = 1.0 - ratio;
    (ratio * x + rest * other).clamp(0.0, 1.0)
}

/// torchvision's `adjust_brightness`, `adjust_contrast` and `adjust_saturation` with
/// per-image factors (B, 1, 1, 1), applied in that fixed order (torchvision's ColorJitter
/// shuffles the order per image; a fixed order keeps the transform batched).
pub fn color_jitter(
    x: &Tensor,
    brightness: &Tensor,
    contrast: &Tensor,
    saturation: &Tensor,
) -> Tensor {
    let x = x.to_kind(Kind::Float);
    let x = blend(&x, &x.zeros_like(), brightness);
    let mean = grayscale(&x).mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
    let x = blend(&x, &mean, contrast);
    blend(&x, &grayscale(&x), saturation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: i64) -> Tensor {
        Tensor::rand([n, 3, 6, 6], (Kind::Float, Device::Cpu))
    }

    const ALL: AugmentConfig = AugmentConfig {
        flips: Flips::Both,
        rot90: true,
        color_jitter: 0.4,
        crop_scale: 0.3,
    };

    #[test]
    fn the_same_seed_and_step_give_the_same_batch() {
        let x = batch(16);
        let a = Augmenter::new(ALL, 3);
        assert!(a.apply(&x, 7).equal(&a.apply(&x, 7)));
        assert!(!a.apply(&x, 7).equal(&a.apply(&x, 8)), "steps differ");
        let other_seed = Augmenter::new(ALL, 4);
        assert_ne!(a.draws(7, 16, 6), other_seed.draws(7, 16, 6));
    }

    #[test]
    fn off_is_the_identity() {
        let x = batch(4);
        assert!(Augmenter::new(AugmentConfig::OFF, 0).apply(&x, 0).equal(&x));
    }

    /// Each augmented image is one of the 8 symmetries of its input, and over many draws
    /// every symmetry occurs.
    #[test]
    fn flips_and_rotations_are_symmetries_of_each_image() {
        let config = AugmentConfig {
            color_jitter: 0.0,
            crop_scale: 1.0,
            ..ALL
        };
        let n = 64;
        let x = batch(n);
        let y = Augmenter::new(config, 1).apply(&x, 5);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..n {
            let (xi, yi) = (x.get(i), y.get(i));
            let found = (0..8).find(|&s| symmetry(&xi, s).equal(&yi));
            seen.insert(found.unwrap_or_else(|| panic!("image {i} is not a symmetry")));
        }
        assert_eq!(seen.len(), 8, "every symmetry occurs in 64 draws: {seen:?}");
    }

    /// Symmetry s of a (3, H, W) image: s / 4 flips, s % 4 quarter turns.
    fn symmetry(x: &Tensor, s: i64) -> Tensor {
        let x = if s >= 4 {
            x.flip([2])
        } else {
            x.shallow_clone()
        };
        x.rot90(s % 4, [1, 2])
    }

    #[test]
    fn horizontal_only_never_flips_up_down_or_rotates() {
        let config = AugmentConfig {
            flips: Flips::Horizontal,
            ..AugmentConfig::OFF
        };
        let d = Augmenter::new(config, 2).draws(0, 100, 6);
        assert!(d.vflip.iter().all(|v| !v));
        assert!(d.quarter_turns.iter().all(|&k| k == 0));
        let flipped = d.hflip.iter().filter(|&&h| h).count();
        assert!((30..=70).contains(&flipped), "{flipped} of 100 flipped");
        assert!(d.jitter.iter().all(|f| *f == [1.0; 3]));
        assert!(d.crops.iter().all(|c| *c == [0, 0, 6, 6]));
    }

    /// Crop boxes lie inside the image with about the requested area; the whole-image box
    /// reproduces the image; a box's pixels end up (magnified) in the output.
    #[test]
    fn resized_crops_follow_their_boxes() {
        let d = Augmenter::new(ALL, 5).draws(1, 500, 32);
        for &[top, left, h, w] in &d.crops {
            assert!(top >= 0 && left >= 0 && top + h <= 32 && left + w <= 32);
            let fraction = (h * w) as f64 / 1024.0;
            assert!((0.25..=1.0).contains(&fraction), "area fraction {fraction}");
        }
        let x = batch(2);
        let whole = resized_crops(&x, &[[0, 0, 6, 6], [0, 0, 6, 6]]);
        assert!((whole - &x).abs().max().double_value(&[]) < 1e-5);
        // The top-left 3×3 quarter magnified ×2: output pixel (1, 1) samples crop position
        // (0.25, 0.25), between pixels 0 and 1 of the image.
        let quarter = resized_crops(&x, &[[0, 0, 3, 3], [3, 3, 3, 3]]);
        let expected = x.get(0).narrow(1, 0, 2).narrow(2, 0, 2);
        let weights = Tensor::from_slice(&[0.75f32, 0.25]);
        let w2 = weights.outer(&weights).view([1, 2, 2]);
        let mixed = (expected * w2).sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Float);
        let got = quarter.get(0).select(1, 1).select(1, 1);
        assert!((got - mixed).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn jitter_factors_stay_in_range_and_images_in_unit_range() {
        let d = Augmenter::new(ALL, 9).draws(3, 200, 6);
        for f in d.jitter.iter().flatten() {
            assert!((0.6..=1.4).contains(f), "{f}");
        }
        let y = Augmenter::new(ALL, 9).apply(&batch(8), 3);
        assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
    }
}
