//! Selection of synthetic images (SPEC §7): ratio quotas, random draws, and the
//! centroid rule with its nearest-centroid filter and shortfall handling.

use histodiff_stages::data::selection::{
    centroid_distance, centroids, check_pool, filled_per_class, l2_normalise, ratio_quotas,
    select_by_centroid, select_random, Shortfall,
};
use histodiff_stages::data::subset::{class_quotas, PerClass, SubsetSize};

/// NCT-CRC-HE-100K's classes and per-class counts (SPEC §9.1).
const CRC_CLASSES: [&str; 9] = [
    "ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM",
];
const CRC_COUNTS: [usize; 9] = [
    10_407, 10_566, 11_512, 11_557, 8_896, 13_536, 8_763, 10_446, 14_317,
];

#[test]
fn quotas_follow_the_ratio_per_class() {
    assert_eq!(ratio_quotas(&[520, 528, 576], 0.5), vec![260, 264, 288]);
    assert_eq!(ratio_quotas(&[3, 5], 2.0), vec![6, 10]);
}

#[test]
fn random_selection_takes_quota_from_each_class_deterministically() {
    let labels: Vec<i64> = (0..30).map(|i| i % 3).collect();
    let a = select_random(&labels, &[2, 3, 4], 9).unwrap();
    assert_eq!(a, select_random(&labels, &[2, 3, 4], 9).unwrap());
    let count = |c: i64| a.iter().filter(|&&i| labels[i] == c).count();
    assert_eq!((count(0), count(1), count(2)), (2, 3, 4));
    let err = select_random(&labels, &[11, 0, 0], 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("class 0") && err.contains("11"), "{err}");
}

#[test]
fn normalisation_and_distance_match_the_official_definitions() {
    let mut f = vec![3.0f32, 4.0];
    l2_normalise(&mut f);
    assert!((f[0] - 0.6).abs() < 1e-6 && (f[1] - 0.8).abs() < 1e-6);
    // mean of squared differences over dimensions
    assert!((centroid_distance(&[1.0, 0.0], &[0.0, 0.0]) - 0.5).abs() < 1e-7);
    let c = centroids(
        &[vec![1.0, 0.0], vec![0.0, 1.0], vec![0.0, 1.0]],
        &[0, 0, 1],
        2,
    )
    .unwrap();
    assert_eq!(c, vec![vec![0.5, 0.5], vec![0.0, 1.0]]);
    assert!(
        centroids(&[vec![1.0]], &[0], 2).is_err(),
        "a class without real images has no centroid"
    );
}

#[test]
fn centroid_rule_filters_then_sorts_by_distance() {
    let centres = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    // Pool generated as class 0: near, nearer, and one that looks like class 1.
    let pool = vec![
        vec![0.8, 0.1],
        vec![0.95, 0.0],
        vec![0.1, 0.9],
        vec![0.0, 1.0],
    ];
    let labels = vec![0, 0, 0, 1];
    let chosen = select_by_centroid(&pool, &labels, &centres, &[2, 1], Shortfall::Error).unwrap();
    let idx: Vec<usize> = chosen.iter().map(|s| s.index).collect();
    assert_eq!(idx, vec![1, 0, 3]);
    assert!(chosen.iter().all(|s| s.passed_filter));

    let err = select_by_centroid(&pool, &labels, &centres, &[3, 1], Shortfall::Error)
        .unwrap_err()
        .to_string();
    assert!(err.contains("class 0"), "{err}");
    let filled = select_by_centroid(&pool, &labels, &centres, &[3, 1], Shortfall::Fill).unwrap();
    assert_eq!(
        filled.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![1, 0, 2, 3]
    );
    assert!(!filled[2].passed_filter);
}

/// The paper's 300 % against the former pool of 2,000 per class: S' is the stratified 5 %
/// (716 TUM, 677 MUS), so the quotas are 2,148 and 2,031, and the error says what suffices.
#[test]
fn a_pool_smaller_than_a_quota_is_refused_with_the_per_class_that_suffices() {
    let real = class_quotas(
        &CRC_COUNTS,
        PerClass::Stratified,
        SubsetSize::Fraction(0.05),
    )
    .unwrap();
    assert_eq!(real, vec![520, 528, 576, 578, 445, 677, 438, 522, 716]);
    let quotas = ratio_quotas(&real, 3.0);
    let classes: Vec<String> = CRC_CLASSES.iter().map(|c| c.to_string()).collect();
    let err = check_pool(&[2000; 9], &quotas, &classes, 3.0, "pool")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ratio 3.0 needs 2,148 TUM images but the pool has 2,000")
            && err.contains("2,031 MUS images but the pool has 2,000")
            && err.ends_with("set the pool's per_class (stage `pool`) to at least 2,148"),
        "{err}"
    );
    assert!(!err.contains("LYM"), "LYM's 1,734 fits: {err}");
    check_pool(&[2148; 9], &quotas, &classes, 3.0, "pool").unwrap();
    check_pool(&[3000; 9], &quotas, &classes, 3.0, "pool").unwrap();
}

#[test]
fn filled_images_are_counted_per_class() {
    let centres = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    // Class 0: two that pass, one that looks like class 1; class 1: one that passes.
    let pool = vec![
        vec![0.9, 0.1],
        vec![1.0, 0.0],
        vec![0.1, 0.9],
        vec![0.0, 1.0],
    ];
    let labels = vec![0, 0, 0, 1];
    let chosen = select_by_centroid(&pool, &labels, &centres, &[3, 1], Shortfall::Fill).unwrap();
    assert_eq!(filled_per_class(&chosen, &labels, 2), vec![1, 0]);
    let enough = select_by_centroid(&pool, &labels, &centres, &[2, 1], Shortfall::Fill).unwrap();
    assert_eq!(filled_per_class(&enough, &labels, 2), vec![0, 0]);
}
