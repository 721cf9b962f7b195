//! Unit tests (`unit_tests:`): a model's SQL run offline on given rows and compared with the
//! expected rows. Nothing is read from or written to the warehouse.
//!
//! - Each given input becomes an in-memory table under the input's relation name. Its columns
//!   and types come from the given rows (dict rows through arrow-json, keeping their YAML types,
//!   ISO dates and timestamps typed; CSV rows as a CSV reader infers them), cast to the input's
//!   own schema
//!   when that is known: its declared column types (`data_type`, a seed's `column_types`), or
//!   the schema DataFusion plans for the input's SQL over empty tables of its own inputs (no
//!   query runs). Columns the rows leave out are NULL of the right type.
//! - Models between the given inputs and the model under test are computed in memory from
//!   their SQL; seeds, sources and models without inputs must be given.
//! - Only the columns the expected rows name are compared; row order does not matter; numbers
//!   compare within 1e-9 (relative), timestamps and dates compare by their text.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use serde_json::Value as Json;

use super::session::CATALOG;
use super::{ExecuteError, NodeStatus, Session};
use crate::graph::{Graph, Materialization, Node, Resource, ResourceType, UnitTest};
use crate::project::Rows;
use crate::relation::quote_identifier;

mod rows;
use rows::*;

/// How a unit test ended: status, message, mismatching rows, and the difference for people.
pub(super) struct UnitOutcome {
    pub status: NodeStatus,
    pub message: String,
    pub failures: u64,
    pub detail: Option<String>,
}

/// Runs the unit test `node`.
pub(super) async fn run(session: &Session, node: &Node) -> Result<UnitOutcome, ExecuteError> {
    let graph = session.graph();
    let spec = graph
        .unit_tests
        .get(&node.unique_id)
        .ok_or_else(|| ExecuteError::Internal(format!("{} has no unit test spec", node.unique_id)))?;
    let model = &graph.nodes[&spec.model];
    let fail = |message: String| {
        ExecuteError::Setup(format!(
            "unit test '{}' of model '{}': {message}",
            node.name, model.name
        ))
    };
    let (ctx, scratch) = (
        SessionContext::new_with_config(session.ctx.copied_config()),
        SessionContext::new_with_config(session.ctx.copied_config()),
    );
    for context in [&ctx, &scratch] {
        crate::functions::register(context);
        super::session::apply_dialect(context, session.sql_dialect);
    }
    let mut run = UnitRun {
        graph,
        sql: &session.compiled().unit_sql,
        ctx,
        scratch,
        schemas: BTreeMap::new(),
        ready: BTreeSet::new(),
        spec,
    };
    for (input, written, rows) in &spec.given {
        run.register_given(input, rows)
            .await
            .map_err(|message| fail(format!("given {written}: {message}")))?;
    }
    let actual = run
        .compute(&spec.model, &node.unique_id)
        .await
        .map_err(|error| fail(error.to_string()))?;
    let expected = rows_as_text(&spec.expect).map_err(|message| fail(format!("expect: {message}")))?;
    let (mismatches, detail) = compare(&expected, &actual).map_err(|message| fail(format!("expect: {message}")))?;
    let (status, message) = super::test_verdict(node, mismatches as u64, session.warn_error);
    Ok(UnitOutcome {
        status,
        message,
        failures: mismatches as u64,
        detail,
    })
}

/// Why a unit test could not be evaluated (the test then errors with this message).
#[derive(Debug, thiserror::Error)]
pub(super) enum UnitError {
    /// The engine failed a step outside the model's own SQL.
    #[error("{}", .0.strip_backtrace())]
    Engine(#[from] DataFusionError),
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// The test's rows, or the model's SQL over them, do not work (the message says how).
    #[error("{0}")]
    Rows(String),
    /// A bug in tidemark.
    #[error("internal error: {0}")]
    Internal(String),
}

struct UnitRun<'a> {
    graph: &'a Graph,
    /// Compiled SQL of the model under test and of everything it reads.
    sql: &'a BTreeMap<String, String>,
    /// Where the given rows and the models computed from them are registered.
    ctx: SessionContext,
    /// Empty tables only, for planning schemas.
    scratch: SessionContext,
    /// Planned schemas by node id (`None`: cannot be known offline).
    schemas: BTreeMap<String, Option<SchemaRef>>,
    /// Nodes registered in `ctx`.
    ready: BTreeSet<String>,
    spec: &'a UnitTest,
}

impl UnitRun<'_> {
    /// Registers the rows of a given input as its relation, typed as described in the module docs.
    async fn register_given(&mut self, id: &str, rows: &Rows) -> Result<(), UnitError> {
        let node = &self.graph.nodes[id];
        let batch = rows_as_batch(rows)?;
        let declared = node.declared_types();
        let batch = match self.schema_of(id).await {
            Some(schema) => conform(&batch, &schema)?,
            None if !declared.is_empty() => cast_declared(&batch, &declared).await?,
            None => batch,
        };
        register(&self.ctx, node, batch)?;
        self.ready.insert(id.to_string());
        Ok(())
    }

    /// The rows of node `id`: given, or computed from its SQL over its own inputs.
    fn compute<'s>(
        &'s mut self,
        id: &'s str,
        test_id: &'s str,
    ) -> futures::future::BoxFuture<'s, Result<Vec<RecordBatch>, UnitError>> {
        Box::pin(async move {
            let graph = self.graph;
            let node = &graph.nodes[id];
            for input in inputs_of(graph, id) {
                if self.ready.contains(&input) {
                    continue;
                }
                let parent = &graph.nodes[&input];
                let computable = matches!(
                    parent.materialized,
                    Materialization::Table | Materialization::Incremental | Materialization::View
                ) && !inputs_of(graph, &input).is_empty();
                if !computable {
                    return Err(UnitError::Rows(format!(
                        "give rows for {} ('{}' reads it, and a unit test never reads the warehouse)",
                        input_expression(parent),
                        node.name
                    )));
                }
                let batches = self.compute(&input, test_id).await?;
                let schema = match batches.first() {
                    Some(batch) => batch.schema(),
                    None => self
                        .schema_of(&input)
                        .await
                        .unwrap_or_else(|| Arc::new(Schema::empty())),
                };
                register_batches(&self.ctx, parent, schema, batches)?;
                self.ready.insert(input);
            }
            // The tested model may be rendered for an incremental run (keyed by the test's id).
            let sql = (id == self.spec.model)
                .then(|| self.sql.get(test_id))
                .flatten()
                .or_else(|| self.sql.get(id))
                .ok_or_else(|| UnitError::Internal(format!("model '{}' was not compiled for unit tests", node.name)))?;
            let frame = self
                .ctx
                .sql(sql)
                .await
                .map_err(|error| UnitError::Rows(explain(error.strip_backtrace(), node, self.spec)))?;
            frame
                .collect()
                .await
                .map_err(|error| UnitError::Rows(explain(error.strip_backtrace(), node, self.spec)))
        })
    }

    /// The schema of node `id` known without data: declared column types when every column has
    /// one, else the planned schema of its SQL over empty tables of its inputs.
    fn schema_of<'s>(&'s mut self, id: &'s str) -> futures::future::BoxFuture<'s, Option<SchemaRef>> {
        Box::pin(async move {
            if let Some(known) = self.schemas.get(id) {
                return known.clone();
            }
            let graph = self.graph;
            let node = &graph.nodes[id];
            let declared = node.declared_types();
            let schema = if !node.columns.is_empty() && declared.len() == node.columns.len() {
                declared_schema(&declared).await
            } else if node.resource_type == ResourceType::Seed {
                seed_schema(node, &declared).await
            } else if matches!(node.resource_type, ResourceType::Model) && self.sql.contains_key(id) {
                let mut ok = true;
                for input in inputs_of(graph, id) {
                    match self.schema_of(&input).await {
                        Some(schema) => {
                            if register_batches(&self.scratch, &graph.nodes[&input], schema, Vec::new()).is_err() {
                                ok = false;
                            }
                        }
                        None => ok = false,
                    }
                }
                match ok {
                    true => match self.scratch.sql(&self.sql[id]).await {
                        Ok(frame) => Some(Arc::new(frame.schema().as_arrow().clone())),
                        Err(_) => None,
                    },
                    false => None,
                }
            } else {
                None
            };
            self.schemas.insert(id.to_string(), schema.clone());
            schema
        })
    }
}

/// The relations a node's SQL reads: its parents, looking through ephemeral models (which are
/// inlined as CTEs).
fn inputs_of(graph: &Graph, id: &str) -> Vec<String> {
    let mut inputs = Vec::new();
    let mut seen = BTreeSet::new();
    let mut frontier: Vec<String> = graph.nodes[id].depends_on.clone();
    while let Some(parent) = frontier.pop() {
        if !seen.insert(parent.clone()) {
            continue;
        }
        let node = &graph.nodes[&parent];
        if node.materialized == Materialization::Ephemeral {
            frontier.extend(node.depends_on.iter().cloned());
        } else {
            inputs.push(parent);
        }
    }
    inputs.sort();
    inputs
}

/// `ref('name')` or `source('source', 'table')`.
fn input_expression(node: &Node) -> String {
    match node.resource_type {
        ResourceType::Source => format!("source('{}', '{}')", node.fqn[1], node.name),
        _ => format!("ref('{}')", node.name),
    }
}

/// A DataFusion error while running the tested SQL, with what to do about a missing column.
fn explain(message: String, node: &Node, spec: &UnitTest) -> String {
    let inputs: Vec<&str> = spec.given.iter().map(|(_, written, _)| written.as_str()).collect();
    let hint = if message.contains("No field named") {
        format!(
            "\n  hint: add the column to the given rows of the input that has it ({}), NULL if it does not matter",
            inputs.join(", ")
        )
    } else {
        String::new()
    };
    format!("running {} on the given rows: {message}{hint}", node.name)
}

/// The Arrow schema of declared SQL column types (`None` if a type is unknown).
async fn declared_schema(declared: &[(String, String)]) -> Option<SchemaRef> {
    let types = super::contract::arrow_types(declared).await.ok()?;
    let fields: Vec<Field> = declared
        .iter()
        .zip(types)
        .map(|((name, _), data_type)| Field::new(name, data_type, true))
        .collect();
    Some(Arc::new(Schema::new(fields)))
}

/// A seed's columns as loading it gives them: the CSV header with inferred types, and its
/// `column_types` (the project's own file; no table is read).
async fn seed_schema(node: &Node, declared: &[(String, String)]) -> Option<SchemaRef> {
    use datafusion::arrow::csv::reader::Format;
    let Resource::Seed { file, .. } = &node.resource else {
        return None;
    };
    let file = std::fs::File::open(file).ok()?;
    let (inferred, _) = Format::default()
        .with_header(true)
        .infer_schema(file, Some(1000))
        .ok()?;
    let typed = declared_schema(declared)
        .await
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|field| match typed.field_with_name(field.name()) {
            Ok(declared) => Field::new(field.name(), declared.data_type().clone(), true),
            Err(_) => Field::new(field.name(), field.data_type().clone(), true),
        })
        .collect();
    Some(Arc::new(Schema::new(fields)))
}

/// Casts the declared columns of `batch` with SQL casts (`cast(x as timestamp)`).
async fn cast_declared(batch: &RecordBatch, declared: &[(String, String)]) -> Result<RecordBatch, UnitError> {
    let ctx = SessionContext::new();
    let frame = ctx.read_batch(batch.clone())?;
    let expressions: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let column = quote_identifier(field.name());
            match declared.iter().find(|(name, _)| name == field.name()) {
                Some((_, data_type)) => format!("cast({column} as {data_type}) as {column}"),
                None => column,
            }
        })
        .collect();
    let expressions: Vec<&str> = expressions.iter().map(String::as_str).collect();
    let batches = frame.select_exprs(&expressions)?.collect().await?;
    let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| batch.schema());
    datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(UnitError::from)
}

/// `batch` with exactly the columns of `schema`: given columns cast to their type, the others
/// NULL. A given column the input does not have is an error naming the input's columns.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, UnitError> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for field in batch.schema().fields() {
        if !names.contains(&field.name().as_str()) {
            return Err(UnitError::Rows(format!(
                "column '{}' is not a column of this input; it has {}",
                field.name(),
                names.join(", ")
            )));
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(given) => datafusion::arrow::compute::cast(given, field.data_type()).map_err(|error| {
                UnitError::Rows(format!(
                    "column '{}' cannot be read as {}: {error}",
                    field.name(),
                    field.data_type()
                ))
            })?,
            None => datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        };
        fields.push(Field::new(field.name(), field.data_type().clone(), true));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(UnitError::from)
}

fn register(ctx: &SessionContext, node: &Node, batch: RecordBatch) -> Result<(), UnitError> {
    register_batches(ctx, node, batch.schema(), vec![batch])
}

/// Registers batches as the relation `node` is read as.
fn register_batches(
    ctx: &SessionContext,
    node: &Node,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(), UnitError> {
    let relation = node
        .relation()
        .ok_or_else(|| UnitError::Internal(format!("'{}' has no relation", node.name)))?;
    let catalog = ctx
        .catalog(CATALOG)
        .ok_or_else(|| UnitError::Internal("no catalog".into()))?;
    if catalog.schema(&relation.schema).is_none() {
        catalog.register_schema(&relation.schema, Arc::new(MemorySchemaProvider::new()))?;
    }
    let reference = TableReference::full(CATALOG, relation.schema.clone(), relation.identifier.clone());
    let table = MemTable::try_new(schema, vec![batches])?;
    ctx.deregister_table(reference.clone())?;
    ctx.register_table(reference, Arc::new(table))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    #[test]
    fn values_compare_as_numbers_and_timestamps() {
        let some = |text: &str| Some(text.to_string());
        assert!(same(&some("0.3"), &some("0.30000000000000004")));
        assert!(same(&some("2"), &some("2.0")));
        assert!(!same(&some("2"), &some("2.1")));
        assert!(same(&some("2026-01-02 09:00:00"), &some("2026-01-02T09:00:00")));
        assert!(same(&some("2026-01-02"), &some("2026-01-02T00:00:00")));
        assert!(!same(&some("a"), &None));
        assert!(same(&None, &None));
    }

    #[test]
    fn dict_rows_become_typed_columns_with_nulls() {
        let rows: Vec<serde_json::Map<String, Json>> = serde_json::from_str(
            r#"[{"id": 1, "at": "2026-01-02T09:00:00", "ok": true, "note": "a, b"}, {"id": 2, "score": 1.5}]"#,
        )
        .unwrap();
        let batch = rows_as_batch(&Rows::Dicts(rows)).unwrap();
        let schema = batch.schema();
        let types: Vec<(&str, &DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(types[0], ("id", &DataType::Int64));
        assert!(matches!(types[1].1, DataType::Timestamp(_, None)), "{types:?}");
        assert_eq!(types[2], ("ok", &DataType::Boolean));
        assert_eq!(types[4], ("score", &DataType::Float64));
        assert_eq!(batch.num_rows(), 2);
        assert!(batch.column(4).is_null(0));
        assert_eq!(batch_as_text(&[batch])[0]["note"], Some("a, b".to_string()));
    }
}
