//! Graph algorithms over petgraph DAGs that more than one part of histodiff needs: the
//! planner orders instances with them, and the HTML report draws the run's DAG in layers.

use petgraph::Direction;

/// The graph types these functions take, re-exported so a caller needs no petgraph of its own.
pub use petgraph::graph::{DiGraph, NodeIndex};

/// The graph is not acyclic: `0` is a node on (or downstream of) a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the graph has a cycle through node {}", .0.index())]
pub struct Cycle(pub NodeIndex);

/// Longest-path layering: layer 0 holds the sources, and every other node sits one layer
/// below its deepest predecessor, so every edge points to a later layer. Within a layer,
/// nodes keep their index order (stable output for stable input).
///
/// Kahn's algorithm: a node is placed once all its predecessors are; a node never placed
/// lies on a cycle or behind one, and the first of those is returned as [`Cycle`].
pub fn topological_layers<N, E>(g: &DiGraph<N, E>) -> Result<Vec<Vec<NodeIndex>>, Cycle> {
    let mut waiting: Vec<usize> = g
        .node_indices()
        .map(|n| g.neighbors_directed(n, Direction::Incoming).count())
        .collect();
    let mut layer_of = vec![0usize; g.node_count()];
    let mut ready: Vec<NodeIndex> = g
        .node_indices()
        .filter(|n| waiting[n.index()] == 0)
        .collect();
    let mut placed = 0;
    while let Some(node) = ready.pop() {
        placed += 1;
        for next in g.neighbors_directed(node, Direction::Outgoing) {
            let i = next.index();
            layer_of[i] = layer_of[i].max(layer_of[node.index()] + 1);
            waiting[i] -= 1;
            if waiting[i] == 0 {
                ready.push(next);
            }
        }
    }
    if placed < g.node_count() {
        let stuck = g.node_indices().find(|n| waiting[n.index()] > 0);
        return Err(Cycle(stuck.unwrap_or_default()));
    }
    let depth = layer_of.iter().max().map_or(0, |d| d + 1);
    let mut layers = vec![Vec::new(); depth];
    for node in g.node_indices() {
        layers[layer_of[node.index()]].push(node);
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(nodes: usize, edges: &[(usize, usize)]) -> DiGraph<(), ()> {
        let mut g = DiGraph::new();
        let ids: Vec<NodeIndex> = (0..nodes).map(|_| g.add_node(())).collect();
        for &(a, b) in edges {
            g.add_edge(ids[a], ids[b], ());
        }
        g
    }

    fn indices(layers: &[Vec<NodeIndex>]) -> Vec<Vec<usize>> {
        layers
            .iter()
            .map(|l| l.iter().map(|n| n.index()).collect())
            .collect()
    }

    #[test]
    fn a_node_sits_below_its_deepest_predecessor() {
        // 0 → 1 → 2 and 0 → 2: 2 is in layer 2, not 1.
        let g = graph(4, &[(0, 1), (1, 2), (0, 2), (3, 2)]);
        let layers = topological_layers(&g).unwrap();
        assert_eq!(indices(&layers), vec![vec![0, 3], vec![1], vec![2]]);
    }

    #[test]
    fn every_edge_points_to_a_later_layer() {
        let edges = [(0, 2), (1, 2), (2, 3), (2, 4), (3, 5), (4, 5), (1, 5)];
        let g = graph(6, &edges);
        let layers = topological_layers(&g).unwrap();
        let layer = |n: usize| layers.iter().position(|l| l.iter().any(|x| x.index() == n));
        for (a, b) in edges {
            assert!(layer(a) < layer(b), "{a} → {b}: {layers:?}");
        }
        assert_eq!(layers.iter().map(Vec::len).sum::<usize>(), 6);
    }

    #[test]
    fn empty_and_edgeless_graphs() {
        assert!(topological_layers(&graph(0, &[])).unwrap().is_empty());
        assert_eq!(
            indices(&topological_layers(&graph(3, &[])).unwrap()),
            vec![vec![0, 1, 2]]
        );
    }

    #[test]
    fn a_cycle_is_an_error_naming_a_node_on_it() {
        let g = graph(4, &[(0, 1), (1, 2), (2, 1), (2, 3)]);
        let err = topological_layers(&g).unwrap_err();
        assert!([1, 2, 3].contains(&err.0.index()), "{err}");
        assert!(err.to_string().contains("cycle"));
    }
}
