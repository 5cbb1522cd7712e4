//! Instance expansion: every stage, in topological order, becomes one instance per
//! combination of its own matrix and the matrix stages it reads (see [`fanout`]), each
//! with interpolated, schema-checked parameters and bound inputs.

use super::error::{Ctx, Diagnostics};
use super::fanout::{self, Combo, Gather, StageMembers};
use super::interp::{self, Scope};
use super::raw::{RawPipeline, RawStage};
use super::stages::StageInfo;
use super::{command, matrix, resources, schema};
use crate::plan::{InputBinding, Instance, SmallMap, Upstream};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

/// Everything expansion reads.
pub struct Expander<'a> {
    pub raw: &'a RawPipeline,
    pub infos: &'a [StageInfo<'a>],
    pub by_id: &'a HashMap<&'a str, usize>,
    pub base_dir: &'a Path,
}

/// The upstream stages one stage reads: directly (fan-out) and gathered (`stage[*]`).
struct Reads {
    direct: Vec<usize>,
    gathered: Vec<usize>,
}

impl Expander<'_> {
    /// All instances, stages in `order`; `None` if a fan-out grew past the limit.
    pub fn expand(&self, order: &[usize], diag: &mut Diagnostics) -> Option<Vec<Instance>> {
        let mut members: Vec<StageMembers> = vec![StageMembers::default(); self.raw.stages.len()];
        let mut instances = Vec::new();
        for &s in order {
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
            let axes: BTreeSet<String> = combos
                .first()
                .map(|c| c.coords.keys().cloned().collect())
                .unwrap_or_default();
            let gathers: HashMap<usize, Gather> = reads
                .gathered
                .iter()
                .map(|&u| (u, Gather::new(&members[u], &axes)))
                .collect();
            let mut names = HashSet::with_capacity(combos.len());
            instances.reserve(combos.len());
            members[s].members.reserve_exact(combos.len());
            for combo in combos {
                let inst = self.instance(s, &combo, &reads, &gathers, diag);
                if !names.insert(inst.name.clone()) {
                    diag.report(
                        stage.pos,
                        ctx,
                        format!("two instances are both named `{}`", inst.name),
                    );
                }
                members[s].members.push((instances.len(), combo.coords));
                instances.push(inst);
            }
            members[s].axes = axes;
        }
        Some(instances)
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
        combo: &Combo,
        reads: &Reads,
        gathers: &HashMap<usize, Gather>,
        diag: &mut Diagnostics,
    ) -> Instance {
        let stage = &self.raw.stages[s];
        let info = &self.infos[s];
        let ctx = Ctx::stage(&stage.id);
        let scope = Scope {
            params: &self.raw.params,
            matrix: Some(&combo.coords),
            command: None,
        };
        let mut inst = Instance {
            name: matrix::instance_name(&stage.id, &combo.coords),
            stage: stage.id.clone(),
            kind: info.kind.map(|k| k.name.clone()).unwrap_or_default(),
            kind_version: info.kind.map(|k| k.version).unwrap_or_default(),
            coords: combo.coords.clone(),
            params: serde_json::Map::new(),
            external_paths: BTreeMap::new(),
            inputs: self.bindings(s, combo, reads, gathers),
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
        combo: &Combo,
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
                    let found = gathers
                        .get(&u)
                        .map(|g| g.members(&combo.coords))
                        .unwrap_or(&[]);
                    ups.extend(found.iter().map(|&i| Upstream {
                        instance: i,
                        output: output.clone(),
                    }));
                } else if let Some(k) = reads.direct.iter().position(|d| *d == u) {
                    ups.push(Upstream {
                        instance: combo.picks[k],
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
