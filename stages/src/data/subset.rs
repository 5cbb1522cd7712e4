//! The few-shot subset rule of SPEC §9.3: sampling without replacement from each class,
//! seeded, either *stratified* (each class keeps the same fraction: round(0.05·n_c) gives
//! exactly 5,000 of NCT-CRC-HE-100K) or *balanced* (the same number from every class,
//! 556×5 + 555×4 = 5,000). The complement of a selection is the held-out rest.

use super::DataError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a subset divides its size over the classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerClass {
    Stratified,
    Balanced,
}

/// How large a subset is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SubsetSize {
    /// A fraction of the whole set, in (0, 1].
    Fraction(f64),
    /// An exact number of images.
    Count(usize),
}

/// Numbers of images to take from each class.
pub fn class_quotas(
    counts: &[usize],
    per_class: PerClass,
    size: SubsetSize,
) -> Result<Vec<usize>, DataError> {
    let total: usize = counts.iter().sum();
    let quotas = match (per_class, size) {
        (PerClass::Stratified, SubsetSize::Fraction(f)) => counts
            .iter()
            .map(|&n| (f * n as f64).round() as usize)
            .collect(),
        (PerClass::Stratified, SubsetSize::Count(k)) => largest_remainder(counts, k.min(total)),
        (PerClass::Balanced, size) => {
            let k = match size {
                SubsetSize::Fraction(f) => (f * total as f64).round() as usize,
                SubsetSize::Count(k) => k,
            };
            let n = counts.len().max(1);
            (0..counts.len())
                .map(|c| k / n + usize::from(c < k % n))
                .collect()
        }
    };
    for (c, (&q, &n)) in quotas.iter().zip(counts).enumerate() {
        if q > n {
            return Err(DataError::Invalid(format!(
                "class {c} has {n} images, the subset needs {q} of them"
            )));
        }
    }
    Ok(quotas)
}

/// Splits `k` over classes proportionally to `counts` (Hamilton's method; ties go to the
/// lower class index) so the quotas sum to exactly `k`.
fn largest_remainder(counts: &[usize], k: usize) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return vec![0; counts.len()];
    }
    let exact: Vec<f64> = counts
        .iter()
        .map(|&n| k as f64 * n as f64 / total as f64)
        .collect();
    let mut quotas: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let missing = k - quotas.iter().sum::<usize>();
    for &c in order.iter().take(missing) {
        quotas[c] += 1;
    }
    quotas
}

/// A random permutation of 0..n from a seeded ChaCha8 stream (Fisher–Yates with a
/// multiply-shift bound), fixed here so selections never change with a rand upgrade.
pub fn permutation(seed: u64, stream: u64, n: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
        p.swap(i, j);
    }
    p
}

/// Indices (ascending) of the images chosen from `labels` (values 0..n_classes);
/// each class is shuffled by its own stream of `seed`, so one class's size never
/// changes another's choice.
pub fn select(
    labels: &[i64],
    n_classes: usize,
    per_class: PerClass,
    size: SubsetSize,
    seed: u64,
) -> Result<Vec<usize>, DataError> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &l) in labels.iter().enumerate() {
        let members = by_class
            .get_mut(l as usize)
            .filter(|_| l >= 0)
            .ok_or_else(|| {
                DataError::Invalid(format!("image {i} has label {l}, outside 0..{n_classes}"))
            })?;
        members.push(i);
    }
    let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let quotas = class_quotas(&counts, per_class, size)?;
    let mut chosen = Vec::new();
    for (c, members) in by_class.iter().enumerate() {
        let order = permutation(seed, c as u64, members.len());
        chosen.extend(order.into_iter().take(quotas[c]).map(|k| members[k]));
    }
    chosen.sort_unstable();
    Ok(chosen)
}

/// Indices (ascending) of 0..n that are not in `chosen` (sorted).
pub fn complement(n: usize, chosen: &[usize]) -> Vec<usize> {
    let mut rest = Vec::with_capacity(n.saturating_sub(chosen.len()));
    let mut it = chosen.iter().peekable();
    for i in 0..n {
        if it.peek() == Some(&&i) {
            it.next();
        } else {
            rest.push(i);
        }
    }
    rest
}
