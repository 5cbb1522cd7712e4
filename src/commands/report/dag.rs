//! The run's DAG: one node per stage instance, an edge wherever an instance read an
//! artifact another instance of the run wrote (the executions' lineage edges, see
//! `commands::run_graph`). Instances of the pipeline file that have no execution in the
//! run are added as "not run", wired as the file wires them.

use super::html::{esc, instance_anchor, mapped_figure};
use super::model::{PlanSource, RunData};
use crate::commands::run_graph::ExecutionView;
use crate::exit::{CliError, Coded, STORE};
use histodiff_engine::graph::{topological_layers, DiGraph};
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::plan::Plan;
use histodiff_engine::store::{ExecStatus, ExecutionId, ExecutionRecord};
use histodiff_plot::{Dag, DagNode, State};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};

/// One stage instance of the run.
pub struct Node {
    pub instance: String,
    pub stage: String,
    pub state: State,
    /// The run's newest execution of the instance; None when it did not run.
    pub execution: Option<ExecutionId>,
}

pub struct RunGraph {
    pub nodes: Vec<Node>,
    /// (upstream, downstream) node indices, deduplicated.
    pub edges: Vec<(usize, usize)>,
    pub layers: Vec<Vec<usize>>,
    index: HashMap<String, usize>,
    /// Every (execution, node) of the run that wrote an artifact.
    producers: HashMap<ArtifactHash, Vec<(ExecutionId, usize)>>,
    /// Instance → the instances the pipeline file wires into it (empty without a plan).
    wired: HashMap<String, HashSet<String>>,
}

/// The figure state of an execution status.
pub fn state_of(status: ExecStatus) -> State {
    match status {
        ExecStatus::Succeeded => State::Ran,
        ExecStatus::Cached => State::Cached,
        ExecStatus::Failed => State::Failed,
        ExecStatus::Interrupted => State::Interrupted,
        ExecStatus::Pending | ExecStatus::Running => State::Running,
    }
}

/// The artifacts an execution read, as (`slot[position]`, hash).
pub fn inputs_of(e: &ExecutionView) -> Vec<(String, ArtifactHash)> {
    e.inputs
        .iter()
        .map(|i| (format!("{}[{}]", i.slot, i.position), i.artifact.clone()))
        .collect()
}

impl RunGraph {
    pub fn build(data: &RunData) -> Result<Self, CliError> {
        let mut graph = RunGraph {
            nodes: Vec::new(),
            edges: Vec::new(),
            layers: Vec::new(),
            index: HashMap::new(),
            producers: HashMap::new(),
            wired: HashMap::new(),
        };
        let latest = data.graph.latest_by_instance();
        for e in &data.graph.executions {
            let r = &e.record;
            let newest = &latest[r.instance.as_str()].record;
            let node = graph.add(&r.instance, &r.stage, state_of(newest.status));
            graph.nodes[node].execution = Some(newest.id);
            for hash in e.outputs.values() {
                graph
                    .producers
                    .entry(hash.clone())
                    .or_default()
                    .push((r.id, node));
            }
        }
        if let PlanSource::Loaded(plan) = &data.plan {
            graph.wired = wiring(plan);
        }
        let mut edges = BTreeSet::new();
        for e in &data.graph.executions {
            let to = graph.index[&e.record.instance];
            for input in &e.inputs {
                if let Some(from) = graph.producer_index(&input.artifact, &e.record) {
                    edges.insert((from, to));
                }
            }
        }
        if let PlanSource::Loaded(plan) = &data.plan {
            graph.add_not_run(plan, &mut edges);
        }
        graph.edges = edges.into_iter().filter(|(a, b)| a != b).collect();
        graph.layers = graph.layer()?;
        Ok(graph)
    }

    fn add(&mut self, instance: &str, stage: &str, state: State) -> usize {
        if let Some(&i) = self.index.get(instance) {
            return i;
        }
        self.nodes.push(Node {
            instance: instance.to_string(),
            stage: stage.to_string(),
            state,
            execution: None,
        });
        self.index
            .insert(instance.to_string(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Instances of the plan the run has no execution of, with the plan's edges that
    /// touch them.
    fn add_not_run(&mut self, plan: &Plan, edges: &mut BTreeSet<(usize, usize)>) {
        let ran: BTreeSet<usize> = (0..self.nodes.len()).collect();
        let ids: Vec<usize> = plan
            .instances
            .iter()
            .map(|i| self.add(&i.name, &i.stage, State::NotRun))
            .collect();
        for (i, &to) in ids.iter().enumerate() {
            for u in plan.upstreams(i) {
                let from = ids[u];
                if !(ran.contains(&from) && ran.contains(&to)) {
                    edges.insert((from, to));
                }
            }
        }
    }

    fn layer(&self) -> Result<Vec<Vec<usize>>, CliError> {
        let mut g = DiGraph::<(), ()>::new();
        let ids: Vec<_> = self.nodes.iter().map(|_| g.add_node(())).collect();
        for &(a, b) in &self.edges {
            g.add_edge(ids[a], ids[b], ());
        }
        let layers = topological_layers(&g)
            .map_err(|c| {
                anyhow::anyhow!(
                    "the run's lineage is not acyclic: {c} ({})",
                    self.nodes[c.0.index()].instance
                )
            })
            .code(STORE)?;
        let by_name =
            |a: &usize, b: &usize| natural_cmp(&self.nodes[*a].instance, &self.nodes[*b].instance);
        Ok(layers
            .into_iter()
            .map(|l| {
                let mut layer: Vec<usize> = l.into_iter().map(|n| n.index()).collect();
                layer.sort_by(by_name);
                layer
            })
            .collect())
    }

    pub fn node(&self, instance: &str) -> Option<&Node> {
        self.index.get(instance).map(|&i| &self.nodes[i])
    }

    /// The instance of the run whose output `reader` read as `hash`.
    pub fn producer_of(&self, hash: &ArtifactHash, reader: &ExecutionRecord) -> Option<&Node> {
        self.producer_index(hash, reader).map(|i| &self.nodes[i])
    }

    /// Several instances can write the same bytes (a copy, an early cutoff), so the writer
    /// of an input is chosen: never the reader's own instance; first an instance the
    /// pipeline wires into the reader; then the one scheduled last before the reader
    /// (execution ids grow in scheduling order, which follows the DAG).
    fn producer_index(&self, hash: &ArtifactHash, reader: &ExecutionRecord) -> Option<usize> {
        let wired = self.wired.get(&reader.instance);
        self.producers
            .get(hash)?
            .iter()
            .filter(|(_, n)| self.nodes[*n].instance != reader.instance)
            .max_by_key(|(id, n)| {
                let is_wired = wired.is_some_and(|w| w.contains(&self.nodes[*n].instance));
                (is_wired, *id < reader.id, *id)
            })
            .map(|&(_, n)| n)
    }

    /// The DAG figure with a link from each box to its instance's section.
    pub fn section(&self) -> Result<String, CliError> {
        let dag = Dag {
            title: String::new(),
            nodes: self
                .nodes
                .iter()
                .map(|n| DagNode {
                    title: n.stage.clone(),
                    detail: coordinates(&n.instance, &n.stage),
                    state: n.state,
                })
                .collect(),
            edges: self.edges.clone(),
            layers: self.layers.clone(),
        };
        let map = dag
            .svg()
            .map_err(|e| anyhow::anyhow!("cannot draw the DAG: {e}"))
            .code(STORE)?;
        let links: Vec<(String, String)> = self
            .nodes
            .iter()
            .map(|n| {
                (
                    format!("#{}", instance_anchor(&n.instance)),
                    format!("{} ({})", n.instance, n.state.label()),
                )
            })
            .collect();
        Ok(format!(
            "<p class=\"note\">{} instances, {} edges, in topological layers from left to right. \
             Click a box for its parameters, key and executions.</p>\n<div class=\"scroll\" id=\"dag-figure\">{}</div>",
            self.nodes.len(),
            self.edges.len(),
            mapped_figure(&map, &links, "dag")
        ))
    }
}

/// Compares names with their numbers as numbers, so `seed=2` comes before `seed=10` and
/// `ratio=0.25` before `ratio=0.5`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (na, ra) = split_number(a);
                let (nb, rb) = split_number(b);
                let (va, vb) = (
                    na.parse::<f64>().unwrap_or(0.0),
                    nb.parse::<f64>().unwrap_or(0.0),
                );
                let order = va.total_cmp(&vb).then(na.len().cmp(&nb.len()));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) if x != y => return x.cmp(&y),
            (Some(x), Some(_)) => (a, b) = (&a[x.len_utf8()..], &b[x.len_utf8()..]),
        }
    }
}

/// The leading number (digits, and a fraction if a dot and digits follow) and the rest.
fn split_number(s: &str) -> (&str, &str) {
    let digits = |t: &str| t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let mut end = digits(s);
    let rest = &s[end..];
    if rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
        end += 1 + digits(&rest[1..]);
    }
    s.split_at(end)
}

/// Instance → the names of the instances the plan binds to its inputs.
fn wiring(plan: &Plan) -> HashMap<String, HashSet<String>> {
    (0..plan.instances.len())
        .map(|i| {
            let ups = plan
                .upstreams(i)
                .into_iter()
                .map(|u| plan.instances[u].name.clone());
            (plan.instances[i].name.clone(), ups.collect())
        })
        .collect()
}

/// `a=1, b=2` from `stage[a=1,b=2]`; empty without a matrix.
pub fn coordinates(instance: &str, stage: &str) -> String {
    instance
        .strip_prefix(stage)
        .and_then(|rest| rest.strip_prefix('['))
        .and_then(|rest| rest.strip_suffix(']'))
        .map(|inner| inner.replace(',', ", "))
        .unwrap_or_default()
}

/// A link to an instance's section.
pub fn instance_link(instance: &str) -> String {
    format!(
        "<a href=\"#{}\">{}</a>",
        esc(&instance_anchor(instance)),
        esc(instance)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_with_their_numbers_as_numbers() {
        let mut names = vec![
            "s[i=10]",
            "s[i=9]",
            "s[i=1]",
            "s[ratio=0.5]",
            "s[ratio=0.25]",
            "t",
            "s",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "s",
                "s[i=1]",
                "s[i=9]",
                "s[i=10]",
                "s[ratio=0.25]",
                "s[ratio=0.5]",
                "t"
            ]
        );
        assert_eq!(
            natural_cmp("a01", "a1"),
            Ordering::Greater,
            "equal values: shorter first"
        );
    }
}
