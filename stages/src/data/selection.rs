//! Choosing synthetic images to add to the real few-shot set (SPEC §7): the quota per
//! class for an augmentation ratio, "random" selection (uniform without replacement
//! within each conditioning class), and HistoGAN-style "selective" augmentation by
//! feature-centroid distance (nearest-centroid filter, then ascending distance).

use super::subset::permutation;
use super::DataError;

/// N_c = round(ratio · n_c^real) for each class (SPEC §7.2 item 6).
pub fn ratio_quotas(real_counts: &[usize], ratio: f64) -> Vec<usize> {
    real_counts
        .iter()
        .map(|&n| (ratio * n as f64).round() as usize)
        .collect()
}

/// Refuses quotas the pool cannot meet even before any filtering, so a pool too small
/// for a ratio fails in seconds rather than after the pool's features are computed. The
/// error names every short class and the per-class pool size that would suffice: the
/// largest quota, since `histodiffusion/sample` makes the same number of every class.
pub fn check_pool(
    pool_counts: &[usize],
    quotas: &[usize],
    classes: &[String],
    ratio: f64,
    pool_name: &str,
) -> Result<(), DataError> {
    let mut short: Vec<(usize, usize, usize)> = quotas
        .iter()
        .zip(pool_counts)
        .enumerate()
        .filter(|(_, (&need, &have))| have < need)
        .map(|(c, (&need, &have))| (c, need, have))
        .collect();
    if short.is_empty() {
        return Ok(());
    }
    // The largest shortfall first: it is the one that sets the per_class to ask for.
    short.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let short: Vec<String> = short
        .into_iter()
        .map(|(c, need, have)| {
            let name = classes
                .get(c)
                .map_or_else(|| format!("class {c}"), Clone::clone);
            format!(
                "{} {name} images but the pool has {}",
                thousands(need),
                thousands(have)
            )
        })
        .collect();
    let suffices = quotas.iter().copied().max().unwrap_or(0);
    Err(DataError::Invalid(format!(
        "ratio {ratio:?} needs {}; sample a larger pool: set the pool's per_class (stage `{pool_name}`) to at least {}",
        short.join(", and "),
        thousands(suffices)
    )))
}

/// 2148 → "2,148", as the error messages print counts.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// What to do when fewer candidates than N_c pass the nearest-centroid filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// Refuse: the pool is too small for this ratio (the paper's setting: sample more).
    Error,
    /// Top up with the rejected candidates nearest to the class centroid.
    Fill,
}

fn by_class(labels: &[i64], n_classes: usize) -> Result<Vec<Vec<usize>>, DataError> {
    let mut groups = vec![Vec::new(); n_classes];
    for (i, &l) in labels.iter().enumerate() {
        let g = usize::try_from(l).ok().and_then(|l| groups.get_mut(l));
        g.ok_or_else(|| {
            DataError::Invalid(format!(
                "pool image {i} has label {l}, outside 0..{n_classes}"
            ))
        })?
        .push(i);
    }
    Ok(groups)
}

fn too_few(class: usize, have: usize, need: usize) -> DataError {
    DataError::Invalid(format!(
        "class {class}: the pool has {have} usable candidates, the ratio needs {need}; sample a larger pool"
    ))
}

/// Uniform draw of `quotas[c]` pool images of each class (indices grouped by class).
pub fn select_random(
    pool_labels: &[i64],
    quotas: &[usize],
    seed: u64,
) -> Result<Vec<usize>, DataError> {
    let groups = by_class(pool_labels, quotas.len())?;
    let mut chosen = Vec::new();
    for (c, members) in groups.iter().enumerate() {
        if members.len() < quotas[c] {
            return Err(too_few(c, members.len(), quotas[c]));
        }
        let order = permutation(seed, c as u64, members.len());
        chosen.extend(order.into_iter().take(quotas[c]).map(|k| members[k]));
    }
    Ok(chosen)
}

/// x / (‖x‖₂ + 1e-10), as the official `vis.py`.
pub fn l2_normalise(features: &mut [f32]) {
    let norm = features.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-10;
    features.iter_mut().for_each(|v| *v /= norm);
}

/// Class centroids: means of the (already normalised) features of each class, not
/// re-normalised (SPEC §7.2 item 3).
pub fn centroids(
    features: &[Vec<f32>],
    labels: &[i64],
    n_classes: usize,
) -> Result<Vec<Vec<f32>>, DataError> {
    let dim = features.first().map_or(0, Vec::len);
    let groups = by_class(labels, n_classes)?;
    groups
        .iter()
        .enumerate()
        .map(|(c, members)| {
            if members.is_empty() {
                return Err(DataError::Invalid(format!(
                    "class {c} has no real image to compute its centroid from"
                )));
            }
            let mut mean = vec![0f32; dim];
            for &i in members {
                mean.iter_mut().zip(&features[i]).for_each(|(m, v)| *m += v);
            }
            mean.iter_mut().for_each(|m| *m /= members.len() as f32);
            Ok(mean)
        })
        .collect()
}

/// d(x, c) = mean over dimensions of (μ_c − f(x))² (SPEC §7.2 item 4).
pub fn centroid_distance(feature: &[f32], centroid: &[f32]) -> f32 {
    feature
        .iter()
        .zip(centroid)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>()
        / feature.len().max(1) as f32
}

/// One chosen synthetic image and its distance to its class centroid.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub index: usize,
    pub distance: f32,
    /// False when taken only to fill a shortfall (its nearest centroid is another class).
    pub passed_filter: bool,
}

/// Per target class: drop candidates whose nearest centroid is another class, sort the
/// rest by ascending distance to their own centroid, keep the first N_c.
pub fn select_by_centroid(
    pool_features: &[Vec<f32>],
    pool_labels: &[i64],
    centroids: &[Vec<f32>],
    quotas: &[usize],
    shortfall: Shortfall,
) -> Result<Vec<Selected>, DataError> {
    let groups = by_class(pool_labels, centroids.len())?;
    let mut chosen = Vec::new();
    for (c, members) in groups.iter().enumerate() {
        let mut passed = Vec::new();
        let mut rejected = Vec::new();
        for &i in members {
            let d: Vec<f32> = centroids
                .iter()
                .map(|mu| centroid_distance(&pool_features[i], mu))
                .collect();
            let nearest = (0..d.len())
                .min_by(|&a, &b| d[a].total_cmp(&d[b]))
                .unwrap_or(c);
            let entry = Selected {
                index: i,
                distance: d[c],
                passed_filter: nearest == c,
            };
            if entry.passed_filter {
                passed.push(entry)
            } else {
                rejected.push(entry)
            }
        }
        let by_distance = |a: &Selected, b: &Selected| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.index.cmp(&b.index))
        };
        passed.sort_by(by_distance);
        rejected.sort_by(by_distance);
        if passed.len() < quotas[c] {
            if shortfall == Shortfall::Error || passed.len() + rejected.len() < quotas[c] {
                return Err(too_few(c, passed.len(), quotas[c]));
            }
            let missing = quotas[c] - passed.len();
            passed.extend(rejected.into_iter().take(missing));
        }
        chosen.extend(passed.into_iter().take(quotas[c]));
    }
    Ok(chosen)
}

/// Images of each class that only [`Shortfall::Fill`] let in (they failed the filter).
pub fn filled_per_class(chosen: &[Selected], pool_labels: &[i64], n_classes: usize) -> Vec<usize> {
    let mut filled = vec![0; n_classes];
    for s in chosen.iter().filter(|s| !s.passed_filter) {
        let class = pool_labels
            .get(s.index)
            .and_then(|&l| usize::try_from(l).ok());
        if let Some(n) = class.and_then(|c| filled.get_mut(c)) {
            *n += 1;
        }
    }
    filled
}
