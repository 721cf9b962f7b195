//! What the warehouse holds, read for `docs generate`: each built table's columns with their
//! types, its rows and bytes, query results for the docs site's charts, and the logical plans
//! the column lineage is derived from.

use std::sync::Arc;

use datafusion::logical_expr::LogicalPlan;
use serde_json::Value as Json;

use super::introspect::{reading_session, sql_type};
use super::Session;
use crate::compile::CompiledProject;
use crate::diagnostics::Error;
use crate::graph::{Graph, Materialization, Resource};
use crate::project::{Project, Target};

/// How a relation is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Parquet in the warehouse (tables, incremental models, seeds, snapshots).
    Table,
    /// A view: its query, run when read.
    View,
    /// A source's files or objects.
    Source,
}

/// A relation as the warehouse has it.
#[derive(Debug, Clone)]
pub struct TableFacts {
    pub unique_id: String,
    pub kind: TableKind,
    /// Name and SQL type of each column, in order.
    pub columns: Vec<(String, String)>,
    /// For tables and sources.
    pub rows: Option<u64>,
    /// For tables: the bytes of its Parquet files.
    pub bytes: Option<u64>,
}

/// A session that reads the warehouse: every built table, every source, and (once registered)
/// every view.
pub struct WarehouseReader {
    session: Session,
}

impl WarehouseReader {
    /// Opens `target`'s warehouse for reading, with the compiled SQL of `compiled` for views.
    pub async fn open(
        project: &Project,
        target: &Target,
        graph: Arc<Graph>,
        compiled: Arc<CompiledProject>,
    ) -> Result<WarehouseReader, Error> {
        let session = reading_session(target, &project.root, graph, compiled)
            .await
            .map_err(Error::Environment)?;
        Ok(WarehouseReader { session })
    }

    /// The facts of every model, seed, snapshot and source the warehouse can read, in the
    /// graph's order; `problems` names those it could not (never built, unreadable).
    pub async fn tables(&self, graph: &Graph) -> (Vec<TableFacts>, Vec<String>) {
        let mut tables = Vec::new();
        let mut problems = Vec::new();
        for id in &graph.order {
            let node = &graph.nodes[id];
            let (relation, kind) = match (&node.resource, node.materialized) {
                (Resource::Model { relation }, Materialization::View) => (relation, TableKind::View),
                (Resource::Source { relation, .. }, _) => (relation, TableKind::Source),
                (
                    Resource::Model { relation }
                    | Resource::Seed { relation, .. }
                    | Resource::Snapshot { relation, .. },
                    _,
                ) if node.writes_table() => (relation, TableKind::Table),
                _ => continue,
            };
            if kind == TableKind::View {
                if let Err(error) = self.session.create_view(node, relation).await {
                    problems.push(format!("{}: {error}", node.name));
                    continue;
                }
            } else if kind == TableKind::Table && !self.session.warehouse.table_exists(relation).await.unwrap_or(false)
            {
                continue;
            }
            let name = relation.rendered.clone();
            let schema = match self.session.ctx.sql(&format!("select * from {name}")).await {
                Ok(frame) => frame.schema().as_arrow().clone(),
                Err(error) => {
                    problems.push(format!("{}: {}", node.name, error.strip_backtrace()));
                    continue;
                }
            };
            let columns = schema
                .fields()
                .iter()
                .map(|field| (field.name().clone(), sql_type(field.data_type())))
                .collect();
            let rows = match kind {
                TableKind::View => None,
                _ => self.count(&name).await,
            };
            let bytes = match kind {
                TableKind::Table => self.session.warehouse.table_bytes(relation).await.ok(),
                _ => None,
            };
            tables.push(TableFacts {
                unique_id: id.clone(),
                kind,
                columns,
                rows,
                bytes,
            });
        }
        (tables, problems)
    }

    async fn count(&self, relation: &str) -> Option<u64> {
        let rows = self.rows(&format!("select count(*) as n from {relation}")).await.ok()?;
        rows.first()?.get("n")?.as_u64()
    }

    /// The rows of a query as JSON objects (dates as `YYYY-MM-DD` text).
    pub async fn rows(&self, sql: &str) -> Result<Vec<serde_json::Map<String, Json>>, String> {
        let frame = self
            .session
            .ctx
            .sql(sql)
            .await
            .map_err(|error| error.strip_backtrace())?;
        let batches = frame.collect().await.map_err(|error| error.strip_backtrace())?;
        json_rows(&batches)
    }

    /// The logical plan of a query (not optimised: it keeps the query's own shape).
    pub async fn plan(&self, sql: &str) -> Result<LogicalPlan, String> {
        self.session
            .ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(|error| error.strip_backtrace())
    }
}

/// Record batches as JSON objects, one per row (Arrow's JSON writer: dates as `YYYY-MM-DD`).
pub(crate) fn json_rows(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> Result<Vec<serde_json::Map<String, Json>>, String> {
    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch).map_err(|error| error.to_string())?;
    }
    writer.finish().map_err(|error| error.to_string())?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|error| error.to_string())
}
