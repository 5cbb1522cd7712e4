//! `histodiff lineage ARTIFACT|INSTANCE`: the executions an artifact came from, as an
//! indented tree, JSON, or Graphviz DOT.

use super::artifacts::resolve_hash_prefix;
use crate::cli::LineageFormat;
use crate::exit::{CliError, Coded, BAD_INPUT, OK, STORE};
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::store::{LineageNode, LineageTarget, Store};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

pub async fn lineage(
    store: &dyn Store,
    target: &str,
    format: LineageFormat,
) -> Result<i32, CliError> {
    let target = match resolve_hash_prefix(store, target) {
        Some(hash) => LineageTarget::Artifact(hash),
        None => LineageTarget::Instance(target.to_string()),
    };
    let nodes = store.lineage(&target).await.code(STORE)?;
    if nodes.is_empty() {
        return Err(anyhow::anyhow!("no recorded execution produced {target:?}")).code(BAD_INPUT);
    }
    let text = match format {
        LineageFormat::Json => serde_json::to_string_pretty(&nodes).code(STORE)? + "\n",
        LineageFormat::Dot => dot(&nodes),
        LineageFormat::Tree => tree(&nodes),
    };
    crate::exit::print_out(&text);
    Ok(OK)
}

/// Producer of each artifact among the nodes.
fn producers(nodes: &[LineageNode]) -> HashMap<&ArtifactHash, usize> {
    let mut map = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for hash in n.outputs.values() {
            map.entry(hash).or_insert(i);
        }
    }
    map
}

fn tree(nodes: &[LineageNode]) -> String {
    let producers = producers(nodes);
    let mut out = String::new();
    let mut seen = HashSet::new();
    write_node(nodes, &producers, 0, 0, &mut seen, &mut out);
    out
}

fn write_node(
    nodes: &[LineageNode],
    producers: &HashMap<&ArtifactHash, usize>,
    i: usize,
    depth: usize,
    seen: &mut HashSet<usize>,
    out: &mut String,
) {
    let n = &nodes[i];
    let pad = "  ".repeat(depth);
    let outputs: Vec<String> = n
        .outputs
        .iter()
        .map(|(k, h)| format!("{k}={}", h.short()))
        .collect();
    let _ = writeln!(
        out,
        "{pad}{} ({}, execution #{}) → {}",
        n.instance,
        n.kind,
        n.execution_id,
        outputs.join(" ")
    );
    if !seen.insert(i) {
        return;
    }
    for edge in &n.inputs {
        let _ = writeln!(
            out,
            "{pad}  <- {}[{}] {}",
            edge.slot,
            edge.position,
            edge.artifact.short()
        );
        if let Some(&p) = producers.get(&edge.artifact) {
            write_node(nodes, producers, p, depth + 2, seen, out);
        }
    }
}

fn dot(nodes: &[LineageNode]) -> String {
    let producers = producers(nodes);
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n");
    for (i, n) in nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "  e{i} [shape=box, label=\"{}\\n{}\"];",
            escape(&n.instance),
            escape(&n.kind)
        );
        for edge in &n.inputs {
            if let Some(&p) = producers.get(&edge.artifact) {
                let _ = writeln!(
                    out,
                    "  e{p} -> e{i} [label=\"{} {}\"];",
                    escape(&edge.slot),
                    edge.artifact.short()
                );
            }
        }
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
