//! Incremental models: combine the model's new rows with the table it already has.
//!
//! The model's query runs once (with `is_incremental()` true, so it can select only what is
//! new) and its rows are held in memory as `new`. The table's current version is `existing`.
//! Both are projected to the columns the table will have (`on_schema_change`), then combined by
//! the strategy in SQL:
//!
//! | strategy           | result                                                                  |
//! |--------------------|-------------------------------------------------------------------------|
//! | `append`           | existing ∪ new                                                          |
//! | `merge`            | existing rows whose `unique_key` is not in new (NULL matches NULL) ∪ new |
//! | `delete+insert`    | as merge, but the key need not be unique among the new rows              |
//! | `insert_overwrite` | existing rows outside new's partitions ∪ new                             |
//!
//! An unpartitioned table is rewritten whole (one atomic object). A partitioned table rewrites
//! only the partitions the change touches, through the partitioned commit of
//! [`crate::materialize::partitioned`].

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::DataFrame;

use super::session::CATALOG;
use super::{ExecuteError, Session};
use crate::graph::{Node, SchemaChange, Strategy};
use crate::materialize::Replace;
use crate::relation::{quote_identifier, RelationName};

/// What an incremental run wrote.
pub(super) struct IncrementalWrite {
    pub new_rows: u64,
    /// What the model's query read.
    pub scanned: super::write::Scanned,
    pub summary: crate::materialize::WriteSummary,
    pub strategy: Strategy,
}

fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt8 => "tinyint unsigned".into(),
        DataType::UInt16 => "smallint unsigned".into(),
        DataType::UInt32 => "int unsigned".into(),
        DataType::UInt64 => "bigint unsigned".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p}, {s})"),
        other => other.to_string(),
    }
}

/// `cast(expr as type)` unless the types already agree.
fn typed(expression: String, from: Option<&DataType>, to: &DataType) -> String {
    match from {
        Some(from) if from == to => expression,
        _ => format!("cast({expression} as {})", sql_type(to)),
    }
}

/// Columns of the table after the run, and how each side provides them.
struct Projection {
    existing: Vec<String>,
    new: Vec<String>,
}

fn reconcile(
    node: &Node,
    existing: &SchemaRef,
    new: &SchemaRef,
    policy: SchemaChange,
) -> Result<Projection, ExecuteError> {
    let type_in =
        |schema: &SchemaRef, name: &str| schema.field_with_name(name).ok().map(|field| field.data_type().clone());
    let added: Vec<String> = new
        .fields()
        .iter()
        .filter(|f| existing.field_with_name(f.name()).is_err())
        .map(|f| f.name().clone())
        .collect();
    let removed: Vec<String> = existing
        .fields()
        .iter()
        .filter(|f| new.field_with_name(f.name()).is_err())
        .map(|f| f.name().clone())
        .collect();
    let changed: Vec<String> = existing
        .fields()
        .iter()
        .filter_map(|f| {
            let other = type_in(new, f.name())?;
            (&other != f.data_type()).then(|| format!("{} {} → {}", f.name(), f.data_type(), other))
        })
        .collect();
    let columns: Vec<(String, DataType)> = match policy {
        SchemaChange::Fail if !(added.is_empty() && removed.is_empty() && changed.is_empty()) => {
            let mut lines = Vec::new();
            lines.extend(added.iter().map(|c| format!("  + {c} (new in the model)")));
            lines.extend(
                removed
                    .iter()
                    .map(|c| format!("  - {c} (no longer returned by the model)")),
            );
            lines.extend(changed.iter().map(|c| format!("  ~ {c}")));
            return Err(ExecuteError::Setup(format!(
                "model '{}' ({}): its columns differ from table {} and on_schema_change is fail:\n{}\n  run with --full-refresh to rebuild it, or set on_schema_change",
                node.name,
                node.path,
                node.display_relation(),
                lines.join("\n")
            )));
        }
        SchemaChange::Fail | SchemaChange::Ignore => existing
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect(),
        SchemaChange::AppendNewColumns => existing
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .chain(
                added
                    .iter()
                    .map(|name| (name.clone(), type_in(new, name).expect("added column"))),
            )
            .collect(),
        SchemaChange::SyncAllColumns => new
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect(),
    };
    let side = |schema: &SchemaRef, alias: &str| -> Vec<String> {
        columns
            .iter()
            .map(|(name, data_type)| {
                let quoted = quote_identifier(name);
                match type_in(schema, name) {
                    Some(from) => format!(
                        "{} as {quoted}",
                        typed(format!("{alias}.{quoted}"), Some(&from), data_type)
                    ),
                    None => format!("{} as {quoted}", typed("null".into(), None, data_type)),
                }
            })
            .collect()
    };
    Ok(Projection {
        existing: side(existing, "e"),
        new: side(new, "n"),
    })
}

/// Null-safe equality of `columns` between aliases `a` and `b`.
fn key_match(columns: &[String], a: &str, b: &str) -> String {
    columns
        .iter()
        .map(|c| {
            let q = quote_identifier(c);
            format!("{a}.{q} is not distinct from {b}.{q}")
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Runs an incremental model against its existing table.
pub(super) async fn write(
    session: &Session,
    node: &Node,
    relation: &RelationName,
    frame: DataFrame,
    run_id: &str,
) -> Result<IncrementalWrite, ExecuteError> {
    let config = node
        .incremental()
        .map_err(|problem| ExecuteError::Setup(problem.to_string()))?;
    let sql_error = |message: String| super::write::sql_error(session, node, message);

    // The new rows, computed once: kept in memory, or on a cluster written by the executors to
    // a scratch file of the run's staging folder (the cluster cannot read this process's memory).
    let new_schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let new_name = TableReference::full(
        CATALOG,
        "__tidemark_incremental",
        format!("{}__{}", relation.schema, relation.identifier),
    );
    session.ensure_schema("__tidemark_incremental")?;
    session
        .ctx
        .deregister_table(new_name.clone())
        .map_err(ExecuteError::from_datafusion)?;
    let mut scratch = None;
    let (new_rows, scanned) = if session.distributed {
        let written = session
            .warehouse
            .write_scratch(run_id, relation, super::write::output(session, frame))
            .await
            .map_err(|error| match error {
                crate::materialize::MaterializeError::Execution(error) => sql_error(error.strip_backtrace()),
                other => ExecuteError::Materialize(other),
            })?;
        session
            .ctx
            .register_parquet(new_name.clone(), &written.url, Default::default())
            .await
            .map_err(ExecuteError::from_datafusion)?;
        let rows = written.rows;
        scratch = Some(written.path);
        (rows, super::write::Scanned::default())
    } else {
        let (plan, stream) = super::write::start(session, node, frame).await?;
        let batches: Vec<_> = futures::TryStreamExt::try_collect(stream)
            .await
            .map_err(|e: datafusion::error::DataFusionError| sql_error(e.strip_backtrace()))?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        // The batches carry the physical plan's schema, which may differ from the logical one
        // in nullability (DataFusion derives the two separately); a MemTable insists on it.
        let table = MemTable::try_new(plan.schema(), vec![batches]).map_err(ExecuteError::from_datafusion)?;
        session
            .ctx
            .register_table(new_name.clone(), Arc::new(table))
            .map_err(ExecuteError::from_datafusion)?;
        (rows, super::write::Scanned::of(&plan))
    };
    let result = merge(
        session,
        node,
        relation,
        &config,
        &new_name,
        &new_schema,
        new_rows,
        scanned,
        run_id,
    )
    .await;
    if let Some(scratch) = scratch {
        // The scratch file is not part of any table; a run that dies leaves it in its own
        // staging folder, which no reader lists.
        session.warehouse.remove(&scratch).await;
    }
    result
}

/// Combines the new rows (registered as `new_name`) with the existing table and writes it.
#[allow(clippy::too_many_arguments)]
async fn merge(
    session: &Session,
    node: &Node,
    relation: &RelationName,
    config: &crate::graph::Incremental,
    new_name: &TableReference,
    new_schema: &SchemaRef,
    new_rows: u64,
    scanned: super::write::Scanned,
    run_id: &str,
) -> Result<IncrementalWrite, ExecuteError> {
    let sql_error = |message: String| super::write::sql_error(session, node, message);
    let new_sql = format!(
        "{}.{}.{}",
        quote_identifier(CATALOG),
        quote_identifier("__tidemark_incremental"),
        quote_identifier(new_name.table())
    );
    let existing_sql = format!(
        "{}.{}.{}",
        quote_identifier(CATALOG),
        quote_identifier(&relation.schema),
        quote_identifier(&relation.identifier)
    );
    let existing_schema: SchemaRef = Arc::new(
        session
            .ctx
            .table(existing_sql.as_str())
            .await
            .map_err(ExecuteError::from_datafusion)?
            .schema()
            .as_arrow()
            .clone(),
    );
    let projection = reconcile(node, &existing_schema, new_schema, config.on_schema_change)?;
    let range = session.time_ranges.get(&node.unique_id);
    // In a time-range run, the existing rows of the range are replaced whatever the new rows are.
    let existing_side = match (range, config.strategy) {
        (Some(range), Strategy::DeleteInsert | Strategy::InsertOverwrite) => format!(
            "select {} from {existing_sql} as e where not coalesce({range}, false)",
            projection.existing.join(", ")
        ),
        _ => format!("select {} from {existing_sql} as e", projection.existing.join(", ")),
    };
    let new_side = format!("select {} from {new_sql} as n", projection.new.join(", "));

    let keys = &config.unique_key;
    if config.strategy == Strategy::Merge {
        let key_list = keys.iter().map(|k| quote_identifier(k)).collect::<Vec<_>>().join(", ");
        let duplicates = session
            .ctx
            .sql(&format!(
                "select count(*) from (select {key_list} from {new_sql} group by {key_list} having count(*) > 1) as d"
            ))
            .await
            .map_err(|e| sql_error(e.strip_backtrace()))?
            .collect()
            .await
            .map_err(|e| sql_error(e.strip_backtrace()))?;
        let count = duplicates
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        if count > 0 {
            return Err(ExecuteError::Setup(format!(
                "model '{}' ({}): merge needs unique_key ({}) to be unique among the new rows, but {count} key value(s) occur more than once; use incremental_strategy: delete+insert or fix the model",
                node.name,
                node.path,
                keys.join(", ")
            )));
        }
    }
    let partition_by = node.partition_by();
    let kept_existing = match config.strategy {
        Strategy::Append => existing_side.clone(),
        Strategy::Merge | Strategy::DeleteInsert => format!(
            "select kept.* from ({existing_side}) as kept left anti join ({new_side}) as incoming on {}",
            key_match(keys, "kept", "incoming")
        ),
        Strategy::InsertOverwrite => format!(
            "select kept.* from ({existing_side}) as kept left anti join (select distinct {} from ({new_side}) as p) as incoming on {}",
            partition_by.iter().map(|c| quote_identifier(c)).collect::<Vec<_>>().join(", "),
            key_match(&partition_by, "kept", "incoming")
        ),
    };
    let combined = format!("{kept_existing}\nunion all\n{new_side}");

    if partition_by.is_empty() {
        // One object: the table is rewritten whole.
        let frame = session
            .ctx
            .sql(&combined)
            .await
            .map_err(|e| sql_error(e.strip_backtrace()))?;
        let (summary, _) = super::write::write_frame(session, node, relation, frame, run_id).await?;
        return Ok(IncrementalWrite {
            new_rows,
            scanned,
            summary,
            strategy: config.strategy,
        });
    }

    // Partitioned: only the partitions the change touches are rewritten.
    let partition_list = partition_by
        .iter()
        .map(|c| quote_identifier(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut touched_existing = match config.strategy {
        Strategy::Merge | Strategy::DeleteInsert => format!(
            "\nunion\nselect {partition_list} from ({existing_side}) as kept left semi join ({new_side}) as incoming on {}",
            key_match(keys, "kept", "incoming")
        ),
        _ => String::new(),
    };
    if let Some(range) = range {
        touched_existing.push_str(&format!(
            "\nunion\nselect distinct {partition_list} from {existing_sql} as e where {range}"
        ));
    }
    let affected_sql = format!("select distinct {partition_list} from ({new_side}) as p{touched_existing}");
    let affected = session
        .ctx
        .sql(&affected_sql)
        .await
        .map_err(|e| sql_error(e.strip_backtrace()))?
        .collect()
        .await
        .map_err(|e| sql_error(e.strip_backtrace()))?;
    let mut folders = BTreeSet::new();
    for batch in &affected {
        let indexed: Vec<(usize, String)> = partition_by.iter().cloned().enumerate().collect();
        folders.extend(crate::materialize::partitioned::partition_folders(batch, &indexed)?);
    }
    let restricted = format!(
        "select all_rows.* from ({combined}) as all_rows left semi join ({affected_sql}) as affected on {}",
        key_match(&partition_by, "all_rows", "affected")
    );
    let frame = session
        .ctx
        .sql(&restricted)
        .await
        .map_err(|e| sql_error(e.strip_backtrace()))?;
    let (summary, _) =
        super::write::write_partitioned(session, node, relation, frame, Replace::Only(folders), run_id).await?;
    Ok(IncrementalWrite {
        new_rows,
        scanned,
        summary,
        strategy: config.strategy,
    })
}
