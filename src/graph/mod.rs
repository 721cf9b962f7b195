//! Stage 3 — graph: nodes, the DAG built from the refs each node makes, and node selection.
//!
//! [`build()`] runs the parse phase and returns a [`Graph`]; [`Graph::new`] rejects cycles with
//! the cycle's path. [`select`] implements dbt's selection syntax over the graph.

mod build;
pub mod node;
pub mod refs;
pub mod select;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};

/// The var `--fail-on-alert` sets, and the config of where alert cases are notified (see
/// [`crate::metrics`]).
pub use crate::metrics::spec as metric_spec;
pub use crate::metrics::{specs as metric_model_specs, MetricModelSpec, FAIL_ON_ALERT_VAR, NOTIFY_CONFIG};
pub use build::{build, parse_relation_expression, RelationExpression, GENERIC_TESTS};
pub use node::{
    GenericTest, HardDeletes, Incremental, Materialization, Node, Resource, ResourceType, SchemaChange, Severity,
    SnapshotSpec, SnapshotStrategy, Strategy, Threshold, UnitTest, REPORT_ONLY,
};

use crate::diagnostics::{Diagnostic, Diagnostics};

/// Every enabled node of a project and the edges between them.
#[derive(Debug, Clone)]
pub struct Graph {
    pub project_name: String,
    pub nodes: BTreeMap<String, Node>,
    /// unique id → ids of the nodes that read it, sorted.
    pub children: BTreeMap<String, Vec<String>>,
    /// All node ids in a deterministic topological order (parents first).
    pub order: Vec<String>,
    /// Position of each node id in `order`.
    pub positions: BTreeMap<String, usize>,
    /// Problems worth telling the user that do not stop the run.
    pub warnings: Vec<Diagnostic>,
    /// Project macros: name → (file, checksum of its definition).
    pub macros: BTreeMap<String, (String, String)>,
    /// Unit tests by node id.
    pub unit_tests: BTreeMap<String, UnitTest>,
    /// Exposures (`exposures:`) by unique id, their `depends_on` resolved to node ids.
    pub exposures: BTreeMap<String, crate::documents::Exposure>,
    /// Groups (`groups:`) by unique id.
    pub groups: BTreeMap<String, crate::documents::Group>,
}

impl Graph {
    /// Checks the edges and orders the nodes; a cycle is an error that prints its path.
    pub fn new(
        project_name: String,
        nodes: BTreeMap<String, Node>,
        warnings: Vec<Diagnostic>,
    ) -> Result<Graph, Diagnostics> {
        let mut children: BTreeMap<String, Vec<String>> = nodes.keys().map(|id| (id.clone(), Vec::new())).collect();
        for node in nodes.values() {
            for parent in &node.depends_on {
                if let Some(list) = children.get_mut(parent) {
                    list.push(node.unique_id.clone());
                }
            }
        }
        if let Some(cycle) = find_cycle(&nodes) {
            let path: Vec<String> = cycle.iter().map(|id| nodes[id].name.clone()).collect();
            let files: Vec<String> = cycle[..cycle.len() - 1]
                .iter()
                .map(|id| format!("  {} ({})", nodes[id].name, nodes[id].path))
                .collect();
            let first = &nodes[&cycle[0]];
            return Err(Diagnostic::new(format!(
                "found a cycle (each model depends on the next): {}\n{}",
                path.join(" → "),
                files.join("\n")
            ))
            .in_file(&first.path)
            .at_line(
                first
                    .refs
                    .iter()
                    .find(|call| nodes.get(&cycle[1]).is_some_and(|next| next.name == call.name))
                    .and_then(|call| call.line),
            )
            .with_help("a model cannot depend on itself, directly or through other models")
            .into());
        }
        let order = topological_order(&nodes, &children);
        let positions = order
            .iter()
            .enumerate()
            .map(|(index, id)| (id.clone(), index))
            .collect();
        Ok(Graph {
            project_name,
            nodes,
            children,
            order,
            positions,
            warnings,
            macros: BTreeMap::new(),
            unit_tests: BTreeMap::new(),
            exposures: BTreeMap::new(),
            groups: BTreeMap::new(),
        })
    }

    /// A graph with no nodes (for sessions that only read the warehouse).
    pub fn empty(project_name: String) -> Graph {
        Graph {
            project_name,
            nodes: BTreeMap::new(),
            children: BTreeMap::new(),
            order: Vec::new(),
            positions: BTreeMap::new(),
            warnings: Vec::new(),
            macros: BTreeMap::new(),
            unit_tests: BTreeMap::new(),
            exposures: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    /// Ids of every ancestor of `id` (not including it), up to `depth` levels (`None`: all).
    pub fn ancestors(&self, id: &str, depth: Option<usize>) -> BTreeSet<String> {
        self.walk(id, depth, |node_id| self.nodes[node_id].depends_on.clone())
    }

    /// Ids of every descendant of `id` (not including it), up to `depth` levels (`None`: all).
    pub fn descendants(&self, id: &str, depth: Option<usize>) -> BTreeSet<String> {
        self.walk(id, depth, |node_id| {
            self.children.get(node_id).cloned().unwrap_or_default()
        })
    }

    fn walk(&self, start: &str, depth: Option<usize>, next: impl Fn(&str) -> Vec<String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut frontier = vec![start.to_string()];
        let mut level = 0;
        while !frontier.is_empty() && depth.is_none_or(|depth| level < depth) {
            let mut following = Vec::new();
            for id in frontier {
                for other in next(&id) {
                    if self.nodes.contains_key(&other) && seen.insert(other.clone()) {
                        following.push(other);
                    }
                }
            }
            frontier = following;
            level += 1;
        }
        seen
    }

    /// Position of a node in the topological order (nodes added after building sort last).
    pub fn position(&self, id: &str) -> usize {
        self.positions.get(id).copied().unwrap_or(usize::MAX)
    }

    /// Looks a node up by its name among models, seeds and tests (`name.v2` for a model
    /// version; a versioned model's name alone is its latest version).
    pub fn find_by_name(&self, name: &str) -> Option<&Node> {
        if let Some(id) = self.ref_index().get(name) {
            return self.nodes.get(id);
        }
        self.nodes.values().find(|node| {
            node.resource_type != ResourceType::Source && (node.name == name || node.display_name() == name)
        })
    }

    /// What `ref()` can name in this graph.
    pub fn ref_index(&self) -> refs::RefIndex {
        let mut index = refs::RefIndex::new(&self.project_name);
        for node in self.nodes.values() {
            if matches!(
                node.resource_type,
                ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
            ) {
                // A graph has one node per package, name and version: its parse phase saw to it.
                let _ = index.insert(node.package(), &node.name, node.version.as_deref(), &node.unique_id);
                if let Some(latest) = &node.latest_version {
                    index.set_latest(node.package(), &node.name, latest);
                }
            }
        }
        index
    }
}

fn topological_order(nodes: &BTreeMap<String, Node>, children: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut remaining: BTreeMap<&str, usize> = nodes
        .values()
        .map(|node| {
            (
                node.unique_id.as_str(),
                node.depends_on.iter().filter(|p| nodes.contains_key(*p)).count(),
            )
        })
        .collect();
    let mut ready: BTreeSet<&str> = remaining.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(id) = ready.pop_first() {
        order.push(id.to_string());
        for child in &children[id] {
            let count = remaining.get_mut(child.as_str()).expect("child is a node");
            *count -= 1;
            if *count == 0 {
                ready.insert(child.as_str());
            }
        }
    }
    order
}

/// A cycle as a list of ids whose last element repeats the first, if there is one.
fn find_cycle(nodes: &BTreeMap<String, Node>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        InProgress,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = nodes.keys().map(|id| (id.as_str(), Mark::Unvisited)).collect();
    for start in nodes.keys() {
        if marks[start.as_str()] != Mark::Unvisited {
            continue;
        }
        // Iterative DFS: (node, index of the next parent to visit).
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start, Mark::InProgress);
        while let Some((id, index)) = stack.pop() {
            let parents = &nodes[id].depends_on;
            if index < parents.len() {
                stack.push((id, index + 1));
                let parent = parents[index].as_str();
                match marks.get(parent) {
                    Some(Mark::Unvisited) => {
                        marks.insert(parent, Mark::InProgress);
                        stack.push((parent, 0));
                    }
                    Some(Mark::InProgress) => {
                        let position = stack.iter().position(|(node, _)| *node == parent).expect("on stack");
                        // Each entry of the stack depends on the next one.
                        let mut cycle: Vec<String> =
                            stack[position..].iter().map(|(node, _)| node.to_string()).collect();
                        cycle.push(parent.to_string());
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                marks.insert(id, Mark::Done);
            }
        }
    }
    None
}
