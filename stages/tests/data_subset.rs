//! The few-shot subset rule: the paper's 5,000-image quotas, determinism, independence
//! between classes, class balance and complements.

use histodiff_stages::data::subset::{
    class_quotas, complement, permutation, select, PerClass, SubsetSize,
};

/// NCT-CRC-HE-100K per-class counts (SPEC §9.1).
const CRC: [usize; 9] = [10407, 10566, 11512, 11557, 8896, 13536, 8763, 10446, 14317];

#[test]
fn stratified_five_percent_of_crc_is_exactly_5000() {
    let q = class_quotas(&CRC, PerClass::Stratified, SubsetSize::Fraction(0.05)).unwrap();
    assert_eq!(q, vec![520, 528, 576, 578, 445, 677, 438, 522, 716]);
    assert_eq!(q.iter().sum::<usize>(), 5000);
}

#[test]
fn balanced_5000_is_556_and_555() {
    let q = class_quotas(&CRC, PerClass::Balanced, SubsetSize::Fraction(0.05)).unwrap();
    assert_eq!(q, vec![556, 556, 556, 556, 556, 555, 555, 555, 555]);
    let q = class_quotas(&CRC, PerClass::Balanced, SubsetSize::Count(5000)).unwrap();
    assert_eq!(q.iter().sum::<usize>(), 5000);
}

#[test]
fn stratified_count_sums_exactly() {
    for k in [1, 7, 100, 4999] {
        let q = class_quotas(&CRC, PerClass::Stratified, SubsetSize::Count(k)).unwrap();
        assert_eq!(q.iter().sum::<usize>(), k, "k = {k}");
    }
}

#[test]
fn too_few_images_is_an_error_naming_the_class() {
    let err = class_quotas(&[10, 2], PerClass::Balanced, SubsetSize::Count(8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("class 1"), "{err}");
}

fn labels(counts: &[usize]) -> Vec<i64> {
    // Interleaved, so selection cannot rely on contiguous classes.
    let mut out = Vec::new();
    let max = *counts.iter().max().unwrap();
    for k in 0..max {
        for (c, &n) in counts.iter().enumerate() {
            if k < n {
                out.push(c as i64);
            }
        }
    }
    out
}

#[test]
fn selection_is_deterministic_and_seed_dependent() {
    let l = labels(&[40, 60, 50]);
    let a = select(&l, 3, PerClass::Stratified, SubsetSize::Fraction(0.2), 7).unwrap();
    let b = select(&l, 3, PerClass::Stratified, SubsetSize::Fraction(0.2), 7).unwrap();
    let c = select(&l, 3, PerClass::Stratified, SubsetSize::Fraction(0.2), 8).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(
        a.windows(2).all(|w| w[0] < w[1]),
        "sorted and without repeats"
    );
    let per_class: Vec<usize> = (0..3)
        .map(|c| a.iter().filter(|&&i| l[i] == c).count())
        .collect();
    assert_eq!(per_class, vec![8, 12, 10]);
}

#[test]
fn balanced_selection_is_balanced() {
    let l = labels(&[40, 60, 50]);
    let a = select(&l, 3, PerClass::Balanced, SubsetSize::Count(30), 1).unwrap();
    let per_class: Vec<usize> = (0..3)
        .map(|c| a.iter().filter(|&&i| l[i] == c).count())
        .collect();
    assert_eq!(per_class, vec![10, 10, 10]);
}

#[test]
fn a_class_choice_does_not_depend_on_other_classes() {
    // Adding images to class 1 leaves class 0's choice unchanged.
    let small = select(
        &[0, 0, 0, 0, 0, 0, 1, 1],
        2,
        PerClass::Balanced,
        SubsetSize::Count(4),
        3,
    )
    .unwrap();
    let big = select(
        &[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
        2,
        PerClass::Balanced,
        SubsetSize::Count(4),
        3,
    )
    .unwrap();
    let class0 = |v: &[usize]| v.iter().copied().filter(|&i| i < 6).collect::<Vec<_>>();
    assert_eq!(class0(&small), class0(&big));
}

#[test]
fn complement_partitions() {
    let l = labels(&[40, 60, 50]);
    let a = select(&l, 3, PerClass::Stratified, SubsetSize::Fraction(0.3), 0).unwrap();
    let rest = complement(l.len(), &a);
    assert_eq!(a.len() + rest.len(), l.len());
    let mut all: Vec<usize> = a.iter().chain(&rest).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..l.len()).collect::<Vec<_>>());
}

#[test]
fn permutation_is_a_permutation_and_pinned() {
    let p = permutation(42, 0, 10);
    let mut s = p.clone();
    s.sort_unstable();
    assert_eq!(s, (0..10).collect::<Vec<_>>());
    // Pinned: a change of the shuffle would silently change every recorded subset.
    assert_eq!(p, vec![9, 7, 2, 5, 0, 1, 4, 3, 8, 6]);
    assert_ne!(p, permutation(42, 1, 10));
}

#[test]
fn bad_labels_are_refused() {
    assert!(select(
        &[0, 5],
        2,
        PerClass::Stratified,
        SubsetSize::Fraction(0.5),
        0
    )
    .is_err());
    assert!(select(
        &[0, -1],
        2,
        PerClass::Stratified,
        SubsetSize::Fraction(0.5),
        0
    )
    .is_err());
}
