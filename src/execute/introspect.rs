//! Queries a template runs while compiling (`run_query`, `statement`): on the target's engine,
//! over the tables the warehouse holds and the project's sources, as dbt's introspective
//! macros read the database.
//!
//! The session opens on the first query, so a project that never runs one never opens it.
//! Compiling is synchronous (and parallel); a query blocks its rendering thread until the
//! engine answers.

use std::sync::Arc;

use tokio::sync::OnceCell;

use super::Session;
use crate::compile::{CompiledProject, QueryRunner, QueryTable};
use crate::graph::{Graph, Node, Resource};
use crate::project::{Project, Target};

/// The target's engine, for a template's queries.
pub struct WarehouseQueries {
    /// The project's folder (a relative warehouse is under it).
    root: std::path::PathBuf,
    target: Target,
    graph: Arc<Graph>,
    handle: tokio::runtime::Handle,
    session: OnceCell<Result<Session, String>>,
}

impl WarehouseQueries {
    /// Queries on `target`'s warehouse, for the nodes of `graph`; run on the current runtime.
    pub fn new(project: &Project, target: &Target, graph: Arc<Graph>) -> Result<WarehouseQueries, String> {
        let handle = tokio::runtime::Handle::try_current().map_err(|error| error.to_string())?;
        Ok(WarehouseQueries {
            root: project.root.clone(),
            target: target.clone(),
            graph,
            handle,
            session: OnceCell::new(),
        })
    }

    /// The session, with every source and every table the warehouse holds registered.
    async fn session(&self) -> Result<&Session, String> {
        let opened = self
            .session
            .get_or_init(|| {
                reading_session(
                    &self.target,
                    &self.root,
                    self.graph.clone(),
                    Arc::new(CompiledProject::default()),
                )
            })
            .await;
        opened.as_ref().map_err(Clone::clone)
    }

    async fn query(&self, sql: &str) -> Result<QueryTable, String> {
        let session = self.session().await?;
        let frame = session.ctx.sql(sql).await.map_err(|error| error.strip_backtrace())?;
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await.map_err(|error| error.strip_backtrace())?;
        let columns: Vec<String> = schema.fields().iter().map(|field| field.name().clone()).collect();
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|field| sql_type(field.data_type()))
            .collect();
        let objects = super::catalog::json_rows(&batches)?;
        let rows = objects
            .into_iter()
            .map(|mut object| {
                columns
                    .iter()
                    .map(|column| object.remove(column).unwrap_or(serde_json::Value::Null))
                    .collect()
            })
            .collect();
        Ok(QueryTable { columns, types, rows })
    }
}

/// A session on `target`'s warehouse with every source and every table it holds registered
/// (the tables of models, seeds and snapshots that have been built), for reading them.
pub(crate) async fn reading_session(
    target: &Target,
    root: &std::path::Path,
    graph: Arc<Graph>,
    compiled: Arc<CompiledProject>,
) -> Result<Session, String> {
    let warehouse = crate::materialize::Warehouse::open(target, root)
        .map_err(|error| format!("target '{}': {error}", target.name))?;
    let session =
        Session::new(target, warehouse.clone(), graph.clone(), compiled).map_err(|error| error.to_string())?;
    let mut reads = Vec::new();
    for node in graph.nodes.values() {
        let readable = match &node.resource {
            Resource::Source { .. } => true,
            Resource::Seed { relation, .. } | Resource::Snapshot { relation, .. } => {
                warehouse.table_exists(relation).await.unwrap_or(false)
            }
            Resource::Model { relation } if node.writes_table() => {
                warehouse.table_exists(relation).await.unwrap_or(false)
            }
            _ => false,
        };
        if readable {
            reads.push(node.unique_id.clone());
        }
    }
    let reader = Node {
        depends_on: reads,
        ..Node::new(
            "operation.introspection".into(),
            "run_query".into(),
            String::new(),
            crate::graph::Materialization::Test,
            Resource::Test {
                severity: crate::graph::Severity::Error,
                generic: None,
            },
        )
    };
    session
        .register_inputs(&reader)
        .await
        .map_err(|error| error.to_string())?;
    Ok(session)
}

/// The SQL name of an Arrow type, as `get_columns_in_relation` reports it (and `catalog.json`).
pub(crate) fn sql_type(data_type: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::DataType;
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            format!("DECIMAL({precision},{scale})")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        other => other.to_string(),
    }
}

impl QueryRunner for WarehouseQueries {
    fn run(&self, sql: &str) -> Result<QueryTable, String> {
        let query = self.query(sql);
        // On a runtime thread, let the runtime move its other work away while this one waits.
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.handle.block_on(query)),
            Err(_) => self.handle.block_on(query),
        }
    }
}
