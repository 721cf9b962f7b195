//! `tidemark debug`'s checks of what a run needs besides the project: the warehouse, every
//! other store the sources read, the cluster of a `ballista` target, and the engine.

use std::sync::Arc;

use crate::compile::CompiledProject;
use crate::graph::Graph;
use crate::materialize::Warehouse;
use crate::project::{self, Project, Target};

/// One check's outcome: what was found, or what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Passed(String),
    Failed(String),
}

impl Check {
    pub fn passed(&self) -> bool {
        matches!(self, Check::Passed(_))
    }
}

impl From<Result<String, String>> for Check {
    fn from(outcome: Result<String, String>) -> Self {
        match outcome {
            Ok(found) => Check::Passed(found),
            Err(wrong) => Check::Failed(wrong),
        }
    }
}

/// Opens the target's warehouse and checks that it can be read and written.
pub async fn warehouse(project: &Project, target: &Target) -> (Check, Option<Warehouse>) {
    let warehouse = match Warehouse::open(target, &project.root) {
        Ok(warehouse) => warehouse,
        Err(error) => return (Check::Failed(format!("{}: {error}", target.warehouse)), None),
    };
    match warehouse.check_writable().await {
        Ok(()) => (
            Check::Passed(format!("{} is reachable, readable and writable", warehouse.display())),
            Some(warehouse),
        ),
        Err(error) => (Check::Failed(format!("{}: {error}", warehouse.display())), None),
    }
}

/// Every other store the project's sources read from (URL locations): reachable and readable.
pub async fn source_stores(project: &Project, target: &Target, warehouse: &Warehouse) -> Vec<Check> {
    use futures::{StreamExt, TryStreamExt};
    let mut checks = Vec::new();
    let mut bases = std::collections::BTreeSet::new();
    for source in project.property_files.iter().flat_map(|file| file.sources.iter()) {
        for table in &source.tables {
            let Some(location) = table.location.as_deref() else {
                continue;
            };
            if !crate::materialize::store::is_store_url(location) {
                continue;
            }
            let Ok(url) = url::Url::parse(location) else { continue };
            let base = url[..url::Position::BeforePath].to_string();
            if !bases.insert(base.clone()) || warehouse.display().starts_with(&base) {
                continue;
            }
            let outcome = match crate::materialize::store::open(location, &target.storage) {
                Err(error) => Err(error.to_string()),
                Ok(opened) => {
                    let listing: Result<Vec<_>, _> =
                        opened.store.list(Some(&opened.prefix)).take(1).try_collect().await;
                    listing
                        .map(|_| format!("{base} is reachable and readable"))
                        .map_err(|error| crate::materialize::describe_store_error(&error))
                }
            };
            checks.push(outcome.map_err(|error| format!("{location}: {error}")).into());
        }
    }
    checks
}

/// Every source table of `graph` opened as a run reads it: its files or objects listed, their
/// schema read and their first row fetched. A source that is missing or unreadable is named with
/// the place it is declared (`file:line`).
pub async fn sources(target: &Target, warehouse: Warehouse, graph: Arc<Graph>) -> Vec<Check> {
    use crate::graph::{Materialization, Node, ResourceType};
    let ids: Vec<String> = graph
        .nodes
        .values()
        .filter(|node| node.resource_type == ResourceType::Source)
        .map(|node| node.unique_id.clone())
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let session = match super::Session::new(target, warehouse, graph.clone(), Arc::new(CompiledProject::default())) {
        Ok(session) => session,
        Err(error) => {
            return vec![Check::Failed(format!(
                "cannot start a session to read the sources: {error}"
            ))]
        }
    };
    let mut checks = Vec::new();
    for id in ids {
        let node = &graph.nodes[&id];
        let name = format!(
            "{}.{}",
            node.fqn.get(1).map(String::as_str).unwrap_or_default(),
            node.name
        );
        let place = match node.line {
            Some(line) => format!("{}:{line}", node.path),
            None => node.path.clone(),
        };
        let Some(relation) = node.relation() else { continue };
        // A reader of the source alone: registering its inputs registers the source.
        let mut reader = Node::new(
            format!("debug.{id}"),
            "debug".into(),
            node.path.clone(),
            Materialization::View,
            crate::graph::Resource::Ephemeral,
        );
        reader.depends_on = vec![id.clone()];
        let read = async {
            session.register_inputs(&reader).await.map_err(|e| e.to_string())?;
            let reference = datafusion::common::TableReference::full(
                super::session::CATALOG,
                relation.schema.clone(),
                relation.identifier.clone(),
            );
            let frame = session.ctx.table(reference).await.map_err(|e| e.strip_backtrace())?;
            let columns = frame.schema().fields().len();
            let rows: usize = frame
                .limit(0, Some(1))
                .map_err(|e| e.strip_backtrace())?
                .collect()
                .await
                .map_err(|e| e.strip_backtrace())?
                .iter()
                .map(|batch| batch.num_rows())
                .sum();
            Ok::<_, String>(format!(
                "{name} ({place}) reads: {columns} columns{}",
                if rows == 0 { ", no rows" } else { "" }
            ))
        };
        checks.push(
            read.await
                .map_err(|problem| format!("{place}: source {name}: {problem}"))
                .into(),
        );
    }
    checks
}

/// The scheduler of a `ballista` target: reachable, and how many executors it has.
#[cfg(feature = "ballista")]
pub async fn cluster(target: &Target) -> Check {
    let url = target.url.clone().unwrap_or_default();
    let address = match project::profiles::scheduler_address(&url) {
        Ok(address) => address,
        Err(problem) => return Check::Failed(problem.to_string()),
    };
    match super::cluster::executor_count(&address).await {
        Ok(0) => Check::Failed(format!(
            "scheduler {url} is reachable but has no executors: start ballista-executor processes pointing at it"
        )),
        Ok(count) => Check::Passed(format!(
            "scheduler {url} is reachable, {count} executor{} registered",
            if count == 1 { "" } else { "s" }
        )),
        Err(error) => Check::Failed(format!(
            "{error} (check url: in the target, and that ballista-scheduler runs there)"
        )),
    }
}

/// The scheduler of a `ballista` target (this build has no Ballista support).
#[cfg(not(feature = "ballista"))]
pub async fn cluster(target: &Target) -> Check {
    Check::Failed(project::profiles::without_ballista(target))
}

/// The target's engine answers a query (on the cluster for a `ballista` target).
pub async fn engine(project: &Project, target: &Target, warehouse: Warehouse) -> Check {
    let answers = match target.engine {
        project::Engine::Embedded => "embedded DataFusion session answers queries",
        project::Engine::Ballista => "a query ran on the cluster and its result came back",
    };
    let graph = Arc::new(Graph::empty(project.file.name.clone()));
    let outcome = match super::Session::new(target, warehouse, graph, Arc::new(CompiledProject::default())) {
        Ok(session) => match session.ctx.sql("select 1 as ok").await {
            Ok(frame) => frame
                .collect()
                .await
                .map(|_| answers.to_string())
                .map_err(|e| e.strip_backtrace()),
            Err(error) => Err(error.strip_backtrace()),
        },
        Err(error) => Err(error.to_string()),
    };
    outcome.into()
}
