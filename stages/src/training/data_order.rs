//! Which examples form the batch of a given step: a fresh ChaCha permutation per epoch,
//! seeded by (seed, epoch), so the order depends only on the step number and resuming
//! needs no saved iterator position.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Batches of `batch_size` drawn without replacement within an epoch; the last partial
/// batch of an epoch is dropped (as `drop_last`), unless the set is smaller than a batch,
/// in which case a batch is the whole set.
#[derive(Debug, Clone)]
pub struct DataOrder {
    len: usize,
    batch_size: usize,
    seed: u64,
    cached: Option<(u64, Vec<usize>)>,
}

impl DataOrder {
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Self {
        Self {
            len,
            batch_size: batch_size.clamp(1, len.max(1)),
            seed,
            cached: None,
        }
    }

    /// Batches per epoch (at least 1).
    pub fn steps_per_epoch(&self) -> u64 {
        (self.len / self.batch_size).max(1) as u64
    }

    /// Example indices of the batch at `step`.
    pub fn batch(&mut self, step: u64) -> Vec<usize> {
        let per_epoch = self.steps_per_epoch();
        let (epoch, within) = (step / per_epoch, (step % per_epoch) as usize);
        let b = self.batch_size;
        self.permutation(epoch)[within * b..(within + 1) * b].to_vec()
    }

    fn permutation(&mut self, epoch: u64) -> &[usize] {
        if self.cached.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, epoch));
            let mut perm: Vec<usize> = (0..self.len).collect();
            perm.shuffle(&mut rng);
            self.cached = Some((epoch, perm));
        }
        &self.cached.as_ref().expect("just filled").1
    }
}

/// A 64-bit seed from (seed, counter) (splitmix64 finaliser), so nearby steps or epochs
/// get unrelated streams.
pub fn mix(seed: u64, counter: u64) -> u64 {
    let mut z = seed
        ^ counter
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_once_per_epoch_and_order_depends_on_step_only() {
        let mut a = DataOrder::new(10, 3, 7);
        assert_eq!(a.steps_per_epoch(), 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|s| a.batch(s)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        let mut b = DataOrder::new(10, 3, 7);
        assert_eq!(a.batch(4), b.batch(4));
        assert_ne!(a.batch(0), a.batch(3), "epochs are reshuffled");
    }
}
