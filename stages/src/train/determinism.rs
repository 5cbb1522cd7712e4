//! Reproducible randomness for training on CPU. Two sources: torch's generator (weights
//! init, noise, dropout) and our data-order generator (ChaCha20). tch cannot read torch's
//! generator state, so instead of saving it we reseed torch at every step from (seed, step):
//! a resumed run then draws exactly what an uninterrupted run draws. The data-order state
//! (seed, stream, word position) is small and goes into the checkpoint metadata.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

/// Seeds torch's default generators (CPU and CUDA).
pub fn seed_torch(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// The torch seed for one training step: a SplitMix64 mix of the run seed and the step,
/// so neighbouring steps get unrelated streams.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & (i64::MAX as u64)
}

/// Reseeds torch for `step` (call at the start of every step).
pub fn seed_torch_for_step(seed: u64, step: u64) {
    seed_torch(step_seed(seed, step));
}

/// Sets libtorch's intra-op threads (results on CPU depend on it for some reductions:
/// keep it fixed across a run and its resumption).
pub fn set_threads(n: usize) {
    tch::set_num_threads(n.clamp(1, i32::MAX as usize) as i32);
}

/// Saved state of a [`DataOrder`] generator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataOrderState {
    /// The 32-byte ChaCha seed, hex.
    pub seed: String,
    pub stream: u64,
    /// Position in the key stream, in 32-bit words (a 68-bit number, hence text).
    pub word_pos: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid data-order state: {0}")]
pub struct StateError(String);

/// The generator that shuffles the training set each epoch.
#[derive(Debug, Clone)]
pub struct DataOrder {
    rng: ChaCha20Rng,
}

impl DataOrder {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    pub fn state(&self) -> DataOrderState {
        let seed: String = self
            .rng
            .get_seed()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        DataOrderState {
            seed,
            stream: self.rng.get_stream(),
            word_pos: self.rng.get_word_pos().to_string(),
        }
    }

    pub fn from_state(state: &DataOrderState) -> Result<Self, StateError> {
        if state.seed.len() != 64 {
            return Err(StateError(format!(
                "seed `{}` is not 64 hex digits",
                state.seed
            )));
        }
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&state.seed[2 * i..2 * i + 2], 16)
                .map_err(|_| StateError(format!("seed `{}` is not hex", state.seed)))?;
        }
        let word_pos: u128 = state
            .word_pos
            .parse()
            .map_err(|_| StateError(format!("word_pos `{}` is not a number", state.word_pos)))?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(word_pos);
        Ok(Self { rng })
    }

    /// Uniform integer in [0, bound) (Lemire's multiply-and-reject, no modulo bias);
    /// written out so the sequence never changes with a `rand` release.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "DataOrder::below needs a positive bound");
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = u128::from(self.rng.next_u64()) * u128::from(bound);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniformly random permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_state_continues_the_same_sequence() {
        let mut a = DataOrder::new(7);
        let _ = a.permutation(100);
        let saved = a.state();
        let expected = a.permutation(50);
        let mut b = DataOrder::from_state(&saved).unwrap();
        assert_eq!(b.permutation(50), expected);
    }

    #[test]
    fn permutation_is_a_permutation_and_seed_dependent() {
        let mut p = DataOrder::new(1).permutation(1000);
        let q = DataOrder::new(2).permutation(1000);
        assert_ne!(p, q);
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn torch_reseeding_per_step_repeats_draws() {
        seed_torch_for_step(3, 10);
        let a = tch::Tensor::randn([4], tch::kind::FLOAT_CPU);
        seed_torch_for_step(3, 11);
        let b = tch::Tensor::randn([4], tch::kind::FLOAT_CPU);
        seed_torch_for_step(3, 10);
        let c = tch::Tensor::randn([4], tch::kind::FLOAT_CPU);
        assert_eq!(a, c);
        assert_ne!(a, b);
    }

    #[test]
    fn bad_state_is_an_error() {
        let bad = DataOrderState {
            seed: "zz".into(),
            stream: 0,
            word_pos: "0".into(),
        };
        assert!(DataOrder::from_state(&bad).is_err());
    }
}
