//! Instance expansion: every stage, in topological order, becomes one instance per
//! combination of its own matrix and the matrix stages it reads (see [`fanout`]), each
//! with interpolated, schema-checked parameters and bound inputs.

use super::error::{Ctx, Diagnostics};
use super::fanout::{self, Combo, Gather, StageMembers};
use super::interp::{self, Scope};
use super::raw::{RawPipeline, RawStage};
use super::stages::StageInfo;
use super::{command, matrix, resources, schema};
use crate::plan::{Coords, InputBinding, Instance, SmallMap, Upstream};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::mem::MaybeUninit;
use std::path::Path;

/// Everything expansion reads.
pub struct Expander<'a> {
    pub raw: &'a RawPipeline,
    pub infos: &'a [StageInfo<'a>],
    pub by_id: &'a HashMap<&'a str, usize>,
    pub base_dir: &'a Path,
}

/// Stages with fewer instances than this are built on one thread (a thread costs more
/// than the instances it would build).
const PARALLEL_INSTANCES: usize = 2048;

/// Members of one stage (or a contiguous part of them) and what building them reads.
#[derive(Clone, Copy)]
struct StageSlice<'a> {
    s: usize,
    members: &'a [(usize, Coords)],
    picks: &'a [Vec<usize>],
    reads: &'a Reads,
    gathers: &'a HashMap<usize, Gather>,
}

/// The upstream stages one stage reads: directly (fan-out) and gathered (`stage[*]`).
struct Reads {
    direct: Vec<usize>,
    gathered: Vec<usize>,
}

impl Expander<'_> {
    /// All instances, stages in `order`; `None` if a fan-out grew past the limit.
    ///
    /// Two passes: every stage's combinations first, then the instances, so the instance
    /// vector is allocated once at its final size. Grown stage by stage, a 10,000-member
    /// sweep's vector was copied (into freshly faulted pages) at every stage after the
    /// sweep, which was the largest share of a no-op run's page faults.
    pub fn expand(&self, order: &[usize], diag: &mut Diagnostics) -> Option<Vec<Instance>> {
        let mut members: Vec<StageMembers> = vec![StageMembers::default(); self.raw.stages.len()];
        let mut picks: Vec<Vec<Vec<usize>>> = vec![Vec::new(); self.raw.stages.len()];
        let mut total = 0;
        for &s in order {
            let combos = self.combos(s, &members, diag)?;
            let stage_members = &mut members[s];
            stage_members.axes = combos
                .first()
                .map(|c| c.coords.keys().cloned().collect())
                .unwrap_or_default();
            stage_members.members.reserve_exact(combos.len());
            picks[s].reserve_exact(combos.len());
            for combo in combos {
                stage_members.members.push((total, combo.coords));
                picks[s].push(combo.picks);
                total += 1;
            }
        }
        let mut instances = Vec::with_capacity(total);
        for &s in order {
            self.stage_instances(s, &members, &picks[s], &mut instances, diag);
        }
        Some(instances)
    }

    /// The combinations of stage `s`; `None` (reported) past the instance limit.
    fn combos(
        &self,
        s: usize,
        members: &[StageMembers],
        diag: &mut Diagnostics,
    ) -> Option<Vec<Combo>> {
        let stage = &self.raw.stages[s];
        let ctx = Ctx::stage(&stage.id);
        let reads = self.reads(stage);
        let own = matrix::product(&stage.matrix, ctx.key("matrix"), diag);
        let ups: Vec<&StageMembers> = reads.direct.iter().map(|u| &members[*u]).collect();
        let Ok(combos) = fanout::fan_out(&ups, &own) else {
            diag.report(
                stage.pos,
                ctx,
                format!("expands to more than {} instances", matrix::MAX_INSTANCES),
            );
            return None;
        };
        if combos.is_empty() && ups.iter().all(|u| !u.members.is_empty()) {
            diag.report(
                stage.pos,
                ctx,
                "no instances: its matrix and the axes it reads share no values",
            );
        }
        Some(combos)
    }

    /// Appends the instances of stage `s` (its members and their picks) to `instances`.
    /// A large stage is built on every core, in contiguous slices that keep their order:
    /// the plan of a 10,000-member sweep is otherwise the longest single-threaded part of
    /// a no-op run.
    fn stage_instances(
        &self,
        s: usize,
        members: &[StageMembers],
        picks: &[Vec<usize>],
        instances: &mut Vec<Instance>,
        diag: &mut Diagnostics,
    ) {
        let stage = &self.raw.stages[s];
        let reads = self.reads(stage);
        let gathers: HashMap<usize, Gather> = reads
            .gathered
            .iter()
            .map(|&u| (u, Gather::new(&members[u], &members[s].axes)))
            .collect();
        let slice = StageSlice {
            s,
            members: &members[s].members,
            picks,
            reads: &reads,
            gathers: &gathers,
        };
        let start = instances.len();
        let threads = match picks.len() {
            n if n < PARALLEL_INSTANCES => 1,
            _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        self.build_instances(&slice, threads, instances, diag);
        let mut names = HashSet::with_capacity(picks.len());
        for inst in &instances[start..] {
            if !names.insert(inst.name.as_str()) {
                diag.report(
                    stage.pos,
                    Ctx::stage(&stage.id),
                    format!("two instances are both named `{}`", inst.name),
                );
            }
        }
    }

    /// Writes the instances of a slice of one stage's members, in order, one into each
    /// slot (`slots` is as long as the slice).
    fn build_into(
        &self,
        slice: &StageSlice<'_>,
        slots: &mut [MaybeUninit<Instance>],
        diag: &mut Diagnostics,
    ) {
        let members = slice.members.iter().zip(slice.picks);
        for (slot, ((_, coords), picks)) in slots.iter_mut().zip(members) {
            slot.write(self.instance(slice.s, coords, picks, slice.reads, slice.gathers, diag));
        }
    }

    /// Appends the slice's instances to `instances`, built on `threads` threads (this
    /// one alone when 1), one contiguous part each, written in place; the parts'
    /// diagnostics are joined in order, so the result equals a sequential build. In
    /// place, because building parts apart and appending them copied (and faulted in
    /// fresh pages for) every instance of the stage once more: a seventh of the page
    /// faults of a no-op run at N = 10,000.
    fn build_instances(
        &self,
        slice: &StageSlice<'_>,
        threads: usize,
        instances: &mut Vec<Instance>,
        diag: &mut Diagnostics,
    ) {
        let count = slice.picks.len();
        assert_eq!(slice.members.len(), count, "one pick list per member");
        let part = count.div_ceil(threads).max(1);
        instances.reserve(count);
        let start = instances.len();
        let slots = &mut instances.spare_capacity_mut()[..count];
        let forks: Vec<Diagnostics> = if threads == 1 {
            self.build_into(slice, slots, diag);
            Vec::new()
        } else {
            self.build_in_parts(slice, part, slots, diag)
        };
        // SAFETY: the parts cover the `count` slots, each part writes every slot of its
        // own (its members and slots are equally long), and a part that panicked was
        // resumed before this point.
        unsafe { instances.set_len(start + count) };
        for forked in forks {
            diag.absorb(forked);
        }
    }

    /// [`Expander::build_into`] of each `part`-long part of the slice on a thread of its
    /// own; the parts' diagnostics, in order.
    fn build_in_parts(
        &self,
        slice: &StageSlice<'_>,
        part: usize,
        slots: &mut [MaybeUninit<Instance>],
        diag: &Diagnostics,
    ) -> Vec<Diagnostics> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = slots
                .chunks_mut(part)
                .zip(slice.members.chunks(part).zip(slice.picks.chunks(part)))
                .map(|(slots, (members, picks))| {
                    let part = StageSlice {
                        members,
                        picks,
                        ..*slice
                    };
                    let mut forked = diag.fork();
                    scope.spawn(move || {
                        self.build_into(&part, slots, &mut forked);
                        forked
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    fn reads(&self, stage: &RawStage) -> Reads {
        let mut reads = Reads {
            direct: Vec::new(),
            gathered: Vec::new(),
        };
        for r in stage.inputs.iter().flat_map(|i| &i.refs) {
            let Some(&u) = self.by_id.get(r.stage.as_str()) else {
                continue;
            };
            let list = if r.gather {
                &mut reads.gathered
            } else {
                &mut reads.direct
            };
            if !list.contains(&u) {
                list.push(u);
            }
        }
        reads
    }

    fn instance(
        &self,
        s: usize,
        coords: &Coords,
        picks: &[usize],
        reads: &Reads,
        gathers: &HashMap<usize, Gather>,
        diag: &mut Diagnostics,
    ) -> Instance {
        let stage = &self.raw.stages[s];
        let info = &self.infos[s];
        let ctx = Ctx::stage(&stage.id);
        let scope = Scope {
            params: &self.raw.params,
            matrix: Some(coords),
            command: None,
        };
        let mut inst = Instance {
            name: matrix::instance_name(&stage.id, coords),
            stage: stage.id.clone(),
            kind: info.kind.map(|k| k.name.clone()).unwrap_or_default(),
            kind_version: info.kind.map(|k| k.version).unwrap_or_default(),
            coords: coords.clone(),
            params: serde_json::Map::new(),
            external_paths: BTreeMap::new(),
            inputs: self.bindings(s, coords, picks, reads, gathers),
            command: None,
            resources: resources::resources(
                interpolated(stage.resources.as_ref(), &scope, ctx, diag).as_ref(),
                ctx,
                diag,
            ),
            retries: resources::retries(
                interpolated(stage.retries.as_ref(), &scope, ctx, diag).as_ref(),
                ctx,
                diag,
            ),
            outputs: info.outputs.clone(),
        };
        match info.kind {
            Some(_) if info.is_command => {
                inst.command =
                    command::instance(stage, &info.outs, &info.names, &scope, self.base_dir, diag);
            }
            Some(kind) => {
                // A value whose interpolation failed is not type-checked as well: one
                // mistake, one message.
                let mut with = Vec::with_capacity(stage.with.len());
                let mut unresolved = Vec::new();
                for (k, p, v) in &stage.with {
                    let before = diag.attempts();
                    let v = interp::node(v, &scope, ctx.key(k), diag);
                    if diag.attempts() > before {
                        unresolved.push(k.as_str());
                    } else {
                        with.push((k.clone(), *p, v));
                    }
                }
                let checked = schema::check(
                    kind,
                    &with,
                    &unresolved,
                    stage.with_pos,
                    self.base_dir,
                    ctx,
                    diag,
                );
                inst.params = checked.params;
                inst.external_paths = checked.external_paths;
            }
            None => {}
        }
        inst
    }

    /// Slot bindings of one instance; malformed slots (already reported) are left out.
    fn bindings(
        &self,
        s: usize,
        coords: &Coords,
        picks: &[usize],
        reads: &Reads,
        gathers: &HashMap<usize, Gather>,
    ) -> SmallMap<String, InputBinding> {
        let stage = &self.raw.stages[s];
        let info = &self.infos[s];
        let mut out = SmallMap::with_capacity(stage.inputs.len());
        for input in &stage.inputs {
            let mut ups = Vec::new();
            for r in &input.refs {
                let Some(&u) = self.by_id.get(r.stage.as_str()) else {
                    continue;
                };
                let Some(output) = r
                    .output
                    .clone()
                    .or_else(|| self.infos[u].outputs.first().cloned())
                else {
                    continue;
                };
                if r.gather {
                    let found = gathers.get(&u).map(|g| g.members(coords)).unwrap_or(&[]);
                    ups.extend(found.iter().map(|&i| Upstream {
                        instance: i,
                        output: output.clone(),
                    }));
                } else if let Some(k) = reads.direct.iter().position(|d| *d == u) {
                    ups.push(Upstream {
                        instance: picks[k],
                        output,
                    });
                }
            }
            let many = match info.kind {
                Some(_) if info.is_command => input.list || input.refs.iter().any(|r| r.gather),
                Some(kind) => match kind.inputs.iter().find(|x| x.name == input.slot) {
                    Some(slot) => slot.many,
                    None => continue,
                },
                None => continue,
            };
            let binding = match (many, ups.len()) {
                (true, _) => InputBinding::Many(ups),
                (false, 1) => InputBinding::One(ups.remove(0)),
                _ => continue,
            };
            out.insert(input.slot.clone(), binding);
        }
        out
    }
}

fn interpolated(
    node: Option<&super::yaml::Node>,
    scope: &Scope<'_>,
    ctx: Ctx<'_>,
    diag: &mut Diagnostics,
) -> Option<super::yaml::Node> {
    node.map(|n| interp::node(n, scope, ctx, diag))
}
