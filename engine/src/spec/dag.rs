//! The stage-level DAG: cycle detection (naming the stages in each cycle) and a
//! deterministic topological order (declaration order wherever the edges allow).

use super::error::{Ctx, Diagnostics};
use super::yaml::Pos;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// `to` reads `from`; `pos` is the reference in `to`'s inputs.
#[derive(Debug, Clone, Copy)]
pub struct StageEdge {
    pub from: usize,
    pub to: usize,
    pub pos: Pos,
}

/// Stage indices in topological order, or `None` after reporting every cycle.
pub fn order(ids: &[String], edges: &[StageEdge], diag: &mut Diagnostics) -> Option<Vec<usize>> {
    let mut g: DiGraph<usize, Pos> = DiGraph::with_capacity(ids.len(), edges.len());
    let nodes: Vec<NodeIndex> = (0..ids.len()).map(|i| g.add_node(i)).collect();
    for e in edges {
        g.update_edge(nodes[e.from], nodes[e.to], e.pos);
    }
    let mut cyclic = false;
    for scc in tarjan_scc(&g) {
        let self_loop = scc.len() == 1 && g.contains_edge(scc[0], scc[0]);
        if scc.len() > 1 || self_loop {
            cyclic = true;
            report_cycle(&g, &scc, ids, diag);
        }
    }
    if cyclic {
        return None;
    }
    Some(kahn(&g, ids.len()))
}

fn kahn(g: &DiGraph<usize, Pos>, n: usize) -> Vec<usize> {
    let mut indegree: Vec<usize> = (0..n)
        .map(|i| {
            g.neighbors_directed(NodeIndex::new(i), petgraph::Incoming)
                .count()
        })
        .collect();
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        out.push(i);
        for next in g.neighbors(NodeIndex::new(i)) {
            let j = next.index();
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    out
}

/// Walks the component from its first-declared stage until a stage repeats, and reports
/// that loop at the reference that closes it.
fn report_cycle(
    g: &DiGraph<usize, Pos>,
    scc: &[NodeIndex],
    ids: &[String],
    diag: &mut Diagnostics,
) {
    let in_scc: HashMap<NodeIndex, ()> = scc.iter().map(|n| (*n, ())).collect();
    let start = *scc
        .iter()
        .min_by_key(|n| n.index())
        .expect("component is not empty");
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = g
            .neighbors(at)
            .filter(|n| in_scc.contains_key(n))
            .min_by_key(|n| n.index())
            .expect("every stage of a cycle has a successor in it");
        if let Some(k) = path.iter().position(|p| *p == next) {
            path.drain(..k);
            path.push(next);
            break;
        }
        path.push(next);
        at = next;
    }
    let names: Vec<&str> = path.iter().map(|n| ids[n.index()].as_str()).collect();
    let last = path[path.len() - 2];
    let first = path[path.len() - 1];
    let pos = g.find_edge(last, first).map(|e| g[e]).unwrap_or_default();
    diag.report(
        pos,
        Ctx::stage(&ids[first.index()]).key("inputs"),
        format!(
            "cycle between stages: {} (each reads the one before)",
            names.join(" → ")
        ),
    );
}
