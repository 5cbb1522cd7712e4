//! Reproducible randomness for training on CPU. Two sources: torch's generator (weights
//! init, noise, dropout) and the data order (train::data_order). tch cannot read torch's
//! generator state, so instead of saving it we reseed torch at every step from
//! (seed, step): a resumed run then draws exactly what an uninterrupted run draws, and a
//! checkpoint needs no random state at all.

use super::data_order::mix;

/// Seeds torch's default generators (CPU and CUDA).
pub fn seed_torch(seed: u64) {
    // manual_seed takes an i64; the bit pattern is what matters.
    tch::manual_seed(seed as i64);
}

/// Reseeds torch for `step` of a run seeded `seed` (call at the start of every step).
pub fn seed_torch_for_step(seed: u64, step: u64) {
    seed_torch(mix(seed, step));
}

/// Sets libtorch's intra-op threads (results on CPU depend on it for some reductions:
/// keep it fixed across a run and its resumption).
pub fn set_threads(n: usize) {
    tch::set_num_threads(n.clamp(1, i32::MAX as usize) as i32);
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
