//! Stage 5 — execute: runs the selected nodes in dependency order on a DataFusion session.
//!
//! [`plan`] turns a selection into an [`ExecutionPlan`]: which nodes run and what each waits
//! for (its nearest selected ancestors; under `build`, also the tests of the models it reads,
//! and a model waits for its unit tests, which wait for nothing).
//! [`execute`] runs up to `threads` nodes at once; a failed node makes everything waiting on it
//! SKIP while the rest goes on, and `--fail-fast` stops starting new nodes after the first
//! failure (nodes already running finish, so nothing is left half-written). Progress goes to a
//! [`Reporter`]; this module never prints.

pub mod catalog;
pub mod checks;
#[cfg(feature = "ballista")]
pub mod cluster;
mod contract;
mod defer;
pub mod freshness;
mod incremental;
pub mod introspect;
pub mod limits;
pub mod lineage;
mod node;
pub mod notify;
pub mod run;
pub mod session;
mod snapshot;
mod time_range;
mod unit;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::error::DataFusionError;
use tokio::task::JoinSet;

pub use crate::documents::NodeStatus;
pub use node::run_query_preview;
pub use session::Session;

use crate::graph::{Graph, Node, ResourceType};
use crate::materialize::MaterializeError;

/// Errors running one node (or setting up the session).
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("{0}")]
    Setup(String),
    #[error("{message}\n  compiled SQL: {compiled_path}")]
    Sql {
        node: String,
        compiled_path: String,
        message: String,
    },
    #[error("relation {relation} does not exist: {hint}")]
    MissingRelation { relation: String, hint: String },
    #[error("cannot read source {source_name} at '{location}': {message}")]
    Source {
        source_name: String,
        location: String,
        message: String,
    },
    #[error("{0}")]
    DataFusion(String),
    #[error(transparent)]
    Materialize(#[from] MaterializeError),
    #[error("internal error: {0} (this is likely a bug in tidemark)")]
    Internal(String),
}

impl ExecuteError {
    pub fn from_datafusion(error: DataFusionError) -> ExecuteError {
        ExecuteError::DataFusion(error.strip_backtrace())
    }
}

/// A test's status from its failing-row count: with severity `error`, `fail` when `error_if`
/// holds, else `warn` when `warn_if` holds; with severity `warn`, only `warn_if` counts. Both
/// default to `!=0` (checked when the graph is built). With `warn_error` (`--warn-error`) a
/// warning is a failure.
pub fn test_verdict(node: &Node, failures: u64, warn_error: bool) -> (NodeStatus, String) {
    let holds = |key: &str| node.threshold(key).map(|t| t.holds(failures)).unwrap_or(failures != 0);
    if node.severity() == crate::graph::Severity::Error && holds("error_if") {
        (NodeStatus::Fail, format!("FAIL {failures}"))
    } else if holds("warn_if") && warn_error {
        (NodeStatus::Fail, format!("FAIL {failures} (a warning; --warn-error)"))
    } else if holds("warn_if") {
        (NodeStatus::Warn, format!("WARN {failures}"))
    } else {
        (NodeStatus::Pass, "PASS".to_string())
    }
}

/// The result of one node, as `run_results.json` records it.
pub type NodeResult = crate::documents::RunResult;

/// Receives progress while nodes run. The CLI's printer implements it.
pub trait Reporter: Send + Sync {
    fn node_started(&self, position: usize, total: usize, node: &Node);
    fn node_finished(&self, position: usize, total: usize, node: &Node, result: &NodeResult);
    /// Something the user should know that is not a failure (e.g. a stale lock was replaced).
    fn notice(&self, message: &str);
}

/// Which nodes run and what each waits for.
#[derive(Debug, Clone, Default)]
pub struct ExecutionPlan {
    /// Node ids in a topological order.
    pub nodes: Vec<String>,
    /// Node id → the planned nodes it must wait for.
    pub waits: BTreeMap<String, BTreeSet<String>>,
}

/// Plans the executable nodes of `selected`. With `tests_gate_children` (the `build` command),
/// the children of a model also wait for that model's tests, so a failing test skips them.
pub fn plan(graph: &Graph, selected: &BTreeSet<String>, tests_gate_children: bool) -> ExecutionPlan {
    let planned: BTreeSet<&str> = selected
        .iter()
        .filter(|id| graph.nodes[*id].is_executable())
        .map(String::as_str)
        .collect();
    // Nearest planned ancestors, walking through nodes that are not planned.
    let mut nearest: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for id in &graph.order {
        let mut set = BTreeSet::new();
        for parent in &graph.nodes[id].depends_on {
            if planned.contains(parent.as_str()) {
                set.insert(parent.clone());
            } else if let Some(inherited) = nearest.get(parent.as_str()) {
                set.extend(inherited.iter().cloned());
            }
        }
        nearest.insert(id.as_str(), set);
    }
    let nodes: Vec<String> = graph
        .order
        .iter()
        .filter(|id| planned.contains(id.as_str()))
        .cloned()
        .collect();
    let mut waits: BTreeMap<String, BTreeSet<String>> = nodes
        .iter()
        .map(|id| (id.clone(), nearest.remove(id.as_str()).unwrap_or_default()))
        .collect();
    // Unit tests read no table: they wait for nothing, and under `build` their model waits for them.
    for id in &nodes {
        if let Some(unit) = graph.unit_tests.get(id) {
            waits.insert(id.clone(), BTreeSet::new());
            if tests_gate_children {
                if let Some(wait) = waits.get_mut(&unit.model) {
                    wait.insert(id.clone());
                }
            }
        }
    }
    if tests_gate_children {
        let tests: Vec<&Node> = nodes
            .iter()
            .map(|id| &graph.nodes[id])
            .filter(|node| node.resource_type == ResourceType::Test && !node.is_unit_test())
            // The tests metric models generate over alert cases (the gate, the action-log
            // check) report; what reads the cases still runs when they fail.
            .filter(|node| node.config.get(crate::graph::REPORT_ONLY) != Some(&serde_json::Value::Bool(true)))
            .collect();
        for test in tests {
            let attached: Vec<String> = match test.generic_test() {
                Some(generic) => vec![generic.attached_node.clone()],
                None => test.depends_on.clone(),
            };
            let upstream_of_test = graph.ancestors(&test.unique_id, None);
            for (id, wait) in waits.iter_mut() {
                if id != &test.unique_id
                    && !upstream_of_test.contains(id)
                    && graph.nodes[id].resource_type != ResourceType::Test
                    && attached.iter().any(|model| {
                        // A child waits for its parent's tests, also when the parent itself is
                        // not part of this run (`retry` of a failed test).
                        wait.contains(model)
                            || (!planned.contains(model.as_str()) && graph.nodes[id].depends_on.contains(model))
                    })
                {
                    wait.insert(test.unique_id.clone());
                }
            }
        }
    }
    ExecutionPlan { nodes, waits }
}

/// Options of one execution.
#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    pub threads: usize,
    pub fail_fast: bool,
    pub run_id: String,
}

/// Runs the plan; returns one result per planned node, in plan order.
pub async fn execute(
    session: Arc<Session>,
    plan: &ExecutionPlan,
    options: &ExecuteOptions,
    reporter: Arc<dyn Reporter>,
) -> Vec<NodeResult> {
    let graph = session.graph();
    let total = plan.nodes.len();
    let position_in_plan: BTreeMap<&str, usize> =
        plan.nodes.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, wait) in &plan.waits {
        pending.insert(id.as_str(), wait.len());
        for parent in wait {
            dependents.entry(parent.as_str()).or_default().push(id.as_str());
        }
    }
    let mut ready: BTreeSet<(usize, &str)> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| (position_in_plan[id], *id))
        .collect();
    let mut results: BTreeMap<String, NodeResult> = BTreeMap::new();
    let mut running: JoinSet<(String, usize, NodeResult)> = JoinSet::new();
    let mut started = 0usize;
    let mut stopped_by: Option<String> = None;
    let threads = options.threads.max(1);

    loop {
        while stopped_by.is_none() && running.len() < threads {
            let Some((_, id)) = ready.pop_first() else { break };
            started += 1;
            let node = &graph.nodes[id];
            reporter.node_started(started, total, node);
            let session = session.clone();
            let reporter = reporter.clone();
            let run_id = options.run_id.clone();
            let id = id.to_string();
            let position = started;
            running.spawn(async move {
                let result = node::run(&session, &id, &run_id, reporter.as_ref()).await;
                (id, position, result)
            });
        }
        let Some(joined) = running.join_next().await else { break };
        let (id, position, result) = match joined {
            Ok(finished) => finished,
            Err(error) => {
                // A panic in a node task is a bug; report it against no node and stop.
                reporter.notice(&format!(
                    "internal error: a node task failed: {error} (this is likely a bug in tidemark)"
                ));
                stopped_by = Some("an internal error".into());
                continue;
            }
        };
        let node = &graph.nodes[&id];
        reporter.node_finished(position, total, node, &result);
        let failed = result.status.is_failure();
        results.insert(id.clone(), result);
        if failed {
            // Everything waiting on this node, directly or not, is skipped.
            let mut frontier = vec![id.clone()];
            while let Some(failed_id) = frontier.pop() {
                for child in dependents.get(failed_id.as_str()).cloned().unwrap_or_default() {
                    if results.contains_key(child) {
                        continue;
                    }
                    started += 1;
                    let skipped =
                        NodeResult::skipped(child, format!("skipped because {} failed", graph.nodes[&id].name));
                    reporter.node_finished(started, total, &graph.nodes[child], &skipped);
                    results.insert(child.to_string(), skipped);
                    ready.retain(|(_, ready_id)| *ready_id != child);
                    frontier.push(child.to_string());
                }
            }
            if options.fail_fast && stopped_by.is_none() {
                stopped_by = Some(node.name.clone());
            }
        } else {
            for child in dependents.get(id.as_str()).cloned().unwrap_or_default() {
                let count = pending.get_mut(child).expect("planned node");
                *count -= 1;
                if *count == 0 && !results.contains_key(child) {
                    ready.insert((position_in_plan[child], child));
                }
            }
        }
    }
    if let Some(cause) = stopped_by {
        for id in &plan.nodes {
            if !results.contains_key(id) {
                started += 1;
                let skipped = NodeResult::skipped(
                    id,
                    format!("skipped: the run stopped after {cause} failed (--fail-fast)"),
                );
                reporter.node_finished(started, total, &graph.nodes[id], &skipped);
                results.insert(id.clone(), skipped);
            }
        }
    }
    plan.nodes.iter().filter_map(|id| results.remove(id)).collect()
}
