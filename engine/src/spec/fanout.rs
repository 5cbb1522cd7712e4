//! Fan-out: which instances a stage gets from the matrix stages it reads.
//!
//! Each upstream stage read directly contributes its axes: axes shared with what is
//! already bound join on equal values, new axes multiply; the stage's own matrix is joined
//! last the same way. Upstream instances are indexed by their coordinates on the shared
//! axes, so a join costs the size of its output, never a product of the inputs.
//! `stage[*]` gathers the instances of a stage that agree on the axes the gathering
//! instance has (all of them when it has none of that stage's axes).

use super::matrix::{join_key, MAX_INSTANCES};
use crate::plan::Coords;
use std::collections::{BTreeSet, HashMap};

/// The instances of one resolved stage.
#[derive(Debug, Clone, Default)]
pub struct StageMembers {
    /// Axis names of every instance of the stage.
    pub axes: BTreeSet<String>,
    /// (index into `Plan::instances`, coordinates), in instance order.
    pub members: Vec<(usize, Coords)>,
}

/// One instance-to-be: its coordinates and, per directly read upstream stage (in the
/// order given), the upstream instance it reads.
#[derive(Debug, Clone, Default)]
pub struct Combo {
    pub coords: Coords,
    pub picks: Vec<usize>,
}

/// Too many instances: the fan-out stops rather than exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany;

/// Joins the direct upstream stages, then the stage's own matrix.
pub fn fan_out(direct: &[&StageMembers], own: &[Coords]) -> Result<Vec<Combo>, TooMany> {
    let mut combos = vec![Combo::default()];
    let mut bound: BTreeSet<String> = BTreeSet::new();
    for up in direct {
        let members: Vec<(Option<usize>, &Coords)> =
            up.members.iter().map(|(i, c)| (Some(*i), c)).collect();
        combos = join(combos, &bound, &up.axes, &members)?;
        bound.extend(up.axes.iter().cloned());
    }
    let own_axes: BTreeSet<String> = own
        .first()
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    let own_members: Vec<(Option<usize>, &Coords)> = own.iter().map(|c| (None, c)).collect();
    join(combos, &bound, &own_axes, &own_members)
}

fn join(
    combos: Vec<Combo>,
    bound: &BTreeSet<String>,
    axes: &BTreeSet<String>,
    members: &[(Option<usize>, &Coords)],
) -> Result<Vec<Combo>, TooMany> {
    // A stage without a matrix of its own joins one empty member: nothing changes (and a
    // 10,000-member fan-out is not copied once more for it).
    if let [(None, only)] = members {
        if only.is_empty() {
            return Ok(combos);
        }
    }
    let shared: Vec<String> = axes.intersection(bound).cloned().collect();
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    for (m, (_, coords)) in members.iter().enumerate() {
        index.entry(join_key(coords, &shared)).or_default().push(m);
    }
    // Sized once: a 10,000-member fan-out grown by doubling copies (and faults in fresh
    // pages for) every combo a dozen times. Without shared axes it is a cross product.
    let per_combo = if shared.is_empty() { members.len() } else { 1 };
    let mut out = Vec::with_capacity(combos.len().saturating_mul(per_combo).min(MAX_INSTANCES));
    for combo in combos {
        let Some(matches) = index.get(&join_key(&combo.coords, &shared)) else {
            continue;
        };
        if out.len() + matches.len() > MAX_INSTANCES {
            return Err(TooMany);
        }
        let Some((&last, others)) = matches.split_last() else {
            continue;
        };
        for &m in others {
            out.push(extended(combo.clone(), members[m]));
        }
        out.push(extended(combo, members[last]));
    }
    Ok(out)
}

/// `combo` joined with one member: its coordinates added, its instance picked.
fn extended(mut combo: Combo, (pick, coords): (Option<usize>, &Coords)) -> Combo {
    combo
        .coords
        .extend(coords.iter().map(|(k, v)| (k.clone(), v.clone())));
    combo.picks.extend(pick);
    combo
}

/// `stage[*]` lookups for one gathered stage, indexed by the axes it shares with the
/// gathering stage.
#[derive(Debug)]
pub struct Gather {
    shared: Vec<String>,
    index: HashMap<String, Vec<usize>>,
}

impl Gather {
    pub fn new(up: &StageMembers, downstream_axes: &BTreeSet<String>) -> Self {
        let shared: Vec<String> = up.axes.intersection(downstream_axes).cloned().collect();
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, coords) in &up.members {
            index.entry(join_key(coords, &shared)).or_default().push(*i);
        }
        Gather { shared, index }
    }

    /// The gathered instances (indices into `Plan::instances`) for one downstream instance.
    pub fn members(&self, coords: &Coords) -> &[usize] {
        self.index
            .get(&join_key(coords, &self.shared))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn coords(pairs: &[(&str, serde_json::Value)]) -> Coords {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// A stage whose instances start at `first` with the given coordinates.
    fn stage(first: usize, members: Vec<Coords>) -> StageMembers {
        StageMembers {
            axes: members
                .first()
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default(),
            members: members
                .into_iter()
                .enumerate()
                .map(|(i, c)| (first + i, c))
                .collect(),
        }
    }

    #[test]
    fn no_matrix_gives_one_instance() {
        let plain = stage(0, vec![Coords::new()]);
        let combos = fan_out(&[&plain], &[Coords::new()]).unwrap();
        assert_eq!(combos.len(), 1);
        assert_eq!(combos[0].picks, vec![0]);
        assert!(combos[0].coords.is_empty());
    }

    #[test]
    fn one_instance_per_upstream_instance_carrying_its_coordinates() {
        let select = stage(
            10,
            vec![
                coords(&[("ratio", json!(0.5))]),
                coords(&[("ratio", json!(1.0))]),
            ],
        );
        let combos = fan_out(&[&select], &[Coords::new()]).unwrap();
        assert_eq!(
            combos.iter().map(|c| c.picks[0]).collect::<Vec<_>>(),
            vec![10, 11]
        );
        assert_eq!(combos[1].coords, coords(&[("ratio", json!(1.0))]));
    }

    #[test]
    fn shared_axes_join_and_distinct_axes_multiply() {
        let a = stage(
            0,
            vec![coords(&[("seed", json!(0))]), coords(&[("seed", json!(1))])],
        );
        let b = stage(
            2,
            vec![
                coords(&[("seed", json!(0)), ("ratio", json!(1))]),
                coords(&[("seed", json!(1)), ("ratio", json!(1))]),
                coords(&[("seed", json!(0)), ("ratio", json!(2))]),
            ],
        );
        let c = stage(
            5,
            vec![coords(&[("g", json!("x"))]), coords(&[("g", json!("y"))])],
        );
        let combos = fan_out(&[&a, &b, &c], &[Coords::new()]).unwrap();
        // seed joins (3 pairs), g multiplies (×2).
        assert_eq!(combos.len(), 6);
        for combo in &combos {
            let seed = &combo.coords["seed"];
            assert_eq!(&a.members[combo.picks[0]].1["seed"], seed);
            assert_eq!(&b.members[combo.picks[1] - 2].1["seed"], seed);
        }
        assert_eq!(combos[0].picks, vec![0, 2, 5]);
        assert_eq!(combos[1].picks, vec![0, 2, 6]);
    }

    #[test]
    fn own_matrix_multiplies_and_joins_shared_axes() {
        let up = stage(
            0,
            vec![
                coords(&[("ratio", json!(0.5))]),
                coords(&[("ratio", json!(1))]),
            ],
        );
        let own = vec![
            coords(&[("ratio", json!(1.0)), ("lr", json!(1))]),
            coords(&[("ratio", json!(1.0)), ("lr", json!(2))]),
        ];
        let combos = fan_out(&[&up], &own).unwrap();
        // `1` and `1.0` are the same coordinate; 0.5 has no partner.
        assert_eq!(combos.len(), 2);
        assert!(combos.iter().all(|c| c.picks == vec![1]));
        assert_eq!(combos[1].coords["lr"], json!(2));
    }

    #[test]
    fn gather_takes_all_or_the_members_agreeing_on_shared_axes() {
        let eval = stage(
            0,
            vec![
                coords(&[("seed", json!(0)), ("ratio", json!(1))]),
                coords(&[("seed", json!(1)), ("ratio", json!(1))]),
                coords(&[("seed", json!(0)), ("ratio", json!(2))]),
            ],
        );
        let all = Gather::new(&eval, &BTreeSet::new());
        assert_eq!(all.members(&Coords::new()), &[0, 1, 2]);
        let per_seed = Gather::new(&eval, &["seed".to_string()].into());
        assert_eq!(per_seed.members(&coords(&[("seed", json!(0))])), &[0, 2]);
        assert_eq!(
            per_seed.members(&coords(&[("seed", json!(7))])),
            &[] as &[usize]
        );
    }

    #[test]
    fn ten_thousand_members_join_in_linear_time() {
        let n = 10_000;
        let a = stage(0, (0..n).map(|i| coords(&[("i", json!(i))])).collect());
        let b = stage(n, (0..n).map(|i| coords(&[("i", json!(i))])).collect());
        // No time bound is asserted (flaky on a loaded machine); a quadratic join would
        // make 10^8 comparisons here and stand out in the test run.
        let combos = fan_out(&[&a, &b], &[Coords::new()]).unwrap();
        assert_eq!(combos.len(), n);
        assert!(combos.iter().all(|c| c.picks[1] == c.picks[0] + n));
    }
}
