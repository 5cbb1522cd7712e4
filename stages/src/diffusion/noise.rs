//! Where the sampling noise comes from: tensors handed in (tests, reproducing a reference
//! run) or a seeded ChaCha stream that gives the same noise on every device and thread,
//! independent of libtorch's global generator.

use super::DiffusionError;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use tch::Tensor;

/// A stream of standard-normal tensors.
pub trait NoiseSource {
    /// The next noise tensor, shaped, typed and placed like `like`.
    fn next_like(&mut self, like: &Tensor) -> Result<Tensor, DiffusionError>;
}

/// Noise given in advance, consumed in order.
#[derive(Debug, Default)]
pub struct GivenNoise {
    queue: VecDeque<Tensor>,
}

impl GivenNoise {
    pub fn new(tensors: Vec<Tensor>) -> Self {
        Self {
            queue: tensors.into(),
        }
    }

    /// Tensors not consumed yet.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

impl NoiseSource for GivenNoise {
    fn next_like(&mut self, like: &Tensor) -> Result<Tensor, DiffusionError> {
        let noise = self
            .queue
            .pop_front()
            .ok_or_else(|| DiffusionError::Noise("given noise exhausted".into()))?;
        if noise.size() != like.size() {
            return Err(DiffusionError::Noise(format!(
                "given noise {:?}, sample {:?}",
                noise.size(),
                like.size()
            )));
        }
        Ok(noise.to_kind(like.kind()).to_device(like.device()))
    }
}

/// Seeded Gaussian noise (Box–Muller on a ChaCha8 stream).
#[derive(Debug, Clone)]
pub struct SeededNoise {
    rng: ChaCha8Rng,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// `count` standard-normal values.
    pub fn normals(&mut self, count: usize) -> Vec<f32> {
        let mut values = Vec::with_capacity(count + 1);
        while values.len() < count {
            // 1 − u lies in (0, 1], so the logarithm is finite.
            let u1: f64 = 1.0 - self.rng.random::<f64>();
            let u2: f64 = self.rng.random::<f64>();
            let radius = (-2.0 * u1.ln()).sqrt();
            let angle = std::f64::consts::TAU * u2;
            values.push((radius * angle.cos()) as f32);
            values.push((radius * angle.sin()) as f32);
        }
        values.truncate(count);
        values
    }

    /// A standard-normal tensor of `shape` (f32, CPU).
    pub fn tensor(&mut self, shape: &[i64]) -> Tensor {
        let count = shape.iter().product::<i64>().max(0) as usize;
        Tensor::from_slice(&self.normals(count)).reshape(shape)
    }
}

impl NoiseSource for SeededNoise {
    fn next_like(&mut self, like: &Tensor) -> Result<Tensor, DiffusionError> {
        let noise = self.tensor(&like.size());
        Ok(noise.to_kind(like.kind()).to_device(like.device()))
    }
}
