//! Which examples form the batch of a given step: a fresh ChaCha permutation per epoch,
//! seeded by (seed, epoch), so the order depends only on the step number and resuming
//! needs no saved iterator position.
//!
//! Two ways to end an epoch: drop the last partial batch (torch's `drop_last=True`) or keep
//! it, shorter (`drop_last=False`, as the downstream classifier needs: every example is
//! seen once per epoch).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Batches of `batch_size` drawn without replacement within an epoch. With [`Self::new`]
/// the last partial batch of an epoch is dropped (as `drop_last`); with
/// [`Self::with_partial_last`] it is kept, shorter. Either way a set smaller than a batch
/// makes one batch of the whole set per epoch.
#[derive(Debug, Clone)]
pub struct DataOrder {
    len: usize,
    batch_size: usize,
    seed: u64,
    drop_last: bool,
    cached: Option<(u64, Vec<usize>)>,
}

impl DataOrder {
    /// Full batches only: the tail of each epoch's permutation is skipped.
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Self {
        Self {
            len,
            batch_size: batch_size.clamp(1, len.max(1)),
            seed,
            drop_last: true,
            cached: None,
        }
    }

    /// Every example once per epoch: the last batch of an epoch holds the remainder.
    /// The permutation of an epoch is the same as with [`Self::new`].
    pub fn with_partial_last(len: usize, batch_size: usize, seed: u64) -> Self {
        Self {
            drop_last: false,
            ..Self::new(len, batch_size, seed)
        }
    }

    /// Number of examples the order draws from.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Examples in a full batch (the requested size, at most the set's size, at least 1).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch (at least 1).
    pub fn steps_per_epoch(&self) -> u64 {
        let full = self.len / self.batch_size;
        let partial = !self.drop_last && !self.len.is_multiple_of(self.batch_size);
        (full + usize::from(partial)).max(1) as u64
    }

    /// Example indices of the batch at `step` (empty only for an empty set).
    pub fn batch(&mut self, step: u64) -> Vec<usize> {
        let per_epoch = self.steps_per_epoch();
        let (epoch, within) = (step / per_epoch, (step % per_epoch) as usize);
        let (b, len) = (self.batch_size, self.len);
        // `min` only shortens the kept partial batch (and spares an empty set a panic):
        // full batches end at or before `len`.
        let (start, end) = ((within * b).min(len), ((within + 1) * b).min(len));
        self.permutation(epoch)[start..end].to_vec()
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

    #[test]
    fn partial_last_batch_keeps_every_example_once_per_epoch() {
        let mut a = DataOrder::with_partial_last(10, 3, 7);
        assert_eq!(a.steps_per_epoch(), 4);
        for epoch in 0..3u64 {
            let batches: Vec<Vec<usize>> = (0..4).map(|s| a.batch(epoch * 4 + s)).collect();
            let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
            assert_eq!(sizes, vec![3, 3, 3, 1], "the last batch is the remainder");
            let mut seen: Vec<usize> = batches.concat();
            seen.sort();
            assert_eq!(seen, (0..10).collect::<Vec<_>>(), "epoch {epoch}");
        }
        // Same permutation as drop_last: the full batches agree, only the tail differs.
        let mut dropping = DataOrder::new(10, 3, 7);
        assert_eq!(a.batch(0), dropping.batch(0));
        let third_of_epoch_1 = (a.batch(4 + 2), dropping.batch(3 + 2));
        assert_eq!(third_of_epoch_1.0, third_of_epoch_1.1);
    }

    #[test]
    fn partial_last_with_an_exact_multiple_has_no_short_batch() {
        let mut a = DataOrder::with_partial_last(9, 3, 1);
        assert_eq!(a.steps_per_epoch(), 3);
        assert!((0..6).all(|s| a.batch(s).len() == 3));
    }
}
