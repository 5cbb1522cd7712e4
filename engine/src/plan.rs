//! The resolved, validated plan: every stage instance with its kind, canonical
//! parameters, input bindings and scheduling needs, in a DAG. Built by `spec::load`
//! from the raw pipeline file; consumed by hashing, the scheduler and the CLI.

pub use crate::small_map::SmallMap;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Matrix coordinates of an instance: axis → value (sorted by axis).
pub type Coords = SmallMap<String, serde_json::Value>;

/// `settings:` after defaults and CLI overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// A directory, or `postgres://…` (then `objects` names the shared object directory).
    pub store: String,
    pub objects: Option<PathBuf>,
    pub executor: ExecutorKind,
    /// `auto | cpu | cuda | cuda:N`.
    pub device: String,
    pub jobs: usize,
    /// Enters every stage key; change it to disown every cached result.
    pub salt: String,
    /// Options for the Slurm executor (`partition`, `account`, `extra`...).
    pub slurm: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    Local,
    Slurm,
}

/// `resources:` — scheduling only, never part of a key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub gpus: u32,
    pub cpus: u32,
    /// Bytes.
    pub memory: Option<u64>,
    /// Seconds.
    pub time: Option<u64>,
}

/// Where one input artifact comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// Index into [`Plan::instances`].
    pub instance: usize,
    /// Output name of that instance.
    pub output: String,
}

/// What is bound to one input slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputBinding {
    One(Upstream),
    /// A list (`[a, b]` or `stage[*]`), in order; order enters the key.
    Many(Vec<Upstream>),
}

/// `run`, `deps` and `outs` of a `command` stage, interpolations of params/matrix done;
/// `${inputs.*}`/`${outs.*}` are left for the worker, which knows the paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    pub run: String,
    /// Files hashed by content, absolute (written relative to the pipeline directory).
    pub deps: Vec<PathBuf>,
    /// Output name → path relative to the work directory.
    pub outs: SmallMap<String, PathBuf>,
}

/// One node of the DAG: a stage, or one member of a stage's matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// `select[method=centroid,ratio=0.5]`, or just `select` without a matrix.
    pub name: String,
    pub stage: String,
    pub kind: String,
    pub kind_version: u32,
    pub coords: Coords,
    /// Canonical parameters: every schema key present (defaults filled), values typed;
    /// `path` params as written in the file (see `external_paths` for where they point).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Params of type `path`, resolved to absolute paths (their content enters the key).
    pub external_paths: BTreeMap<String, PathBuf>,
    pub inputs: SmallMap<String, InputBinding>,
    pub command: Option<CommandSpec>,
    pub resources: Resources,
    pub retries: u32,
    /// Output names this instance produces.
    pub outputs: Vec<String>,
}

/// Up to this many upstream bindings, [`Plan::upstreams`] deduplicates by linear search.
const SMALL_FAN_IN: usize = 16;

/// The validated pipeline.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub pipeline_file: PathBuf,
    /// Directory relative paths are resolved against (the pipeline file's directory).
    pub base_dir: PathBuf,
    pub settings: Settings,
    /// Topologically ordered: every upstream comes before its dependents.
    pub instances: Vec<Instance>,
    /// The instance DAG the scheduler walks: node `i` is `instances[i]` (weight `i`),
    /// edges point upstream → downstream, one per distinct upstream.
    pub graph: DiGraph<usize, ()>,
}

impl Plan {
    /// The graph node of instance `i`.
    pub fn node(&self, i: usize) -> NodeIndex {
        NodeIndex::new(i)
    }

    /// Instances that read `i`'s outputs.
    pub fn dependents(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(self.node(i), petgraph::Direction::Outgoing)
            .map(|n| n.index())
    }

    /// Every instance downstream of `i` (not `i`), in depth-first order.
    pub fn descendants(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        use petgraph::visit::Walker;
        petgraph::visit::Dfs::new(&self.graph, self.node(i))
            .iter(&self.graph)
            .skip(1)
            .map(|n| n.index())
    }

    /// Indices of the instances `i` reads from, in slot order, deduplicated.
    pub fn upstreams(&self, i: usize) -> Vec<usize> {
        let lists = self.instances[i]
            .inputs
            .values()
            .map(|binding| match binding {
                InputBinding::One(u) => std::slice::from_ref(u),
                InputBinding::Many(us) => us.as_slice(),
            });
        let total: usize = lists.clone().map(<[Upstream]>::len).sum();
        let mut ups: Vec<usize> = Vec::with_capacity(total);
        // Most instances read one or two upstreams: a linear check beats hashing them (this
        // runs for every instance of the plan). A report gathering 10,000 instances gets a
        // set, so it is not quadratic.
        if total <= SMALL_FAN_IN {
            for u in lists.flatten() {
                if !ups.contains(&u.instance) {
                    ups.push(u.instance);
                }
            }
        } else {
            let mut seen = std::collections::HashSet::with_capacity(total);
            ups.extend(
                lists
                    .flatten()
                    .map(|u| u.instance)
                    .filter(|&u| seen.insert(u)),
            );
        }
        ups
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.name == name)
    }
}
