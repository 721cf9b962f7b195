//! Running one node: build a table, create a view, load a seed, or count a test's failures.

use std::time::Instant;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::options::CsvReadOptions;
use serde_json::Value as Json;

use super::write::{plan_sql, sql_error, write_frame, Scanned};
use super::{ExecuteError, NodeResult, NodeStatus, Reporter, Session};
use crate::graph::{Materialization, Node, Resource, Strategy};
use crate::materialize::WriteSummary;
use crate::relation::{quote_identifier, RelationName};

/// What a node did when it succeeded.
struct Outcome {
    status: NodeStatus,
    message: String,
    rows: Option<u64>,
    failures: Option<u64>,
    write: Option<WriteSummary>,
    scanned: Option<Scanned>,
}

/// Runs node `id`; never panics on user input, every problem becomes an error result.
pub(super) async fn run(session: &Session, id: &str, run_id: &str, reporter: &dyn Reporter) -> NodeResult {
    let node = &session.graph().nodes[id];
    let compiled_path = session.compiled().nodes.get(id).map(|c| c.compiled_path.clone());
    let started_at = now();
    let clock = Instant::now();
    let mut detail = None;
    let mut attempt = 0;
    let outcome = loop {
        let outcome = attempt_node(session, node, run_id, &mut detail).await;
        match &outcome {
            Err(error) if attempt < session.job_retries && lost_executor(session, error) => {
                attempt += 1;
                reporter.notice(&format!(
                    "{}: an executor was lost while the query ran on the cluster; running it again (retry {attempt} of {}, the target's job_retries)",
                    node.name, session.job_retries
                ));
            }
            _ => break outcome,
        }
    };
    let execution_time = clock.elapsed().as_secs_f64();
    let completed_at = Some(now());
    match outcome {
        Ok(outcome) => {
            if let Some(notice) = outcome.write.as_ref().and_then(|w| w.recovered_lock.clone()) {
                reporter.notice(&notice);
            }
            NodeResult {
                unique_id: id.to_string(),
                status: outcome.status,
                execution_time,
                started_at: Some(started_at),
                completed_at,
                rows_affected: outcome.rows,
                failures: outcome.failures,
                bytes_written: outcome.write.as_ref().map(|w| w.bytes),
                rows_scanned: outcome.scanned.map(|s| s.rows),
                bytes_scanned: outcome.scanned.map(|s| s.bytes),
                version: outcome.write.as_ref().map(|w| w.version),
                message: outcome.message,
                error: detail,
                compiled_path,
            }
        }
        Err(error) => NodeResult {
            unique_id: id.to_string(),
            status: NodeStatus::Error,
            execution_time,
            started_at: Some(started_at),
            completed_at,
            rows_affected: None,
            failures: None,
            bytes_written: None,
            rows_scanned: None,
            bytes_scanned: None,
            version: None,
            message: "ERROR".into(),
            error: Some(session.limits.explain(error.to_string())),
            compiled_path,
        },
    }
}

/// One attempt at node `node`: its `pre_hook`s, then it is built, loaded or tested (`detail`: a
/// unit test's diff), then its `post_hook`s. A hook that fails fails the node.
async fn attempt_node(
    session: &Session,
    node: &Node,
    run_id: &str,
    detail: &mut Option<String>,
) -> Result<Outcome, ExecuteError> {
    let compiled = session.compiled().nodes.get(&node.unique_id);
    if let Some(compiled) = compiled {
        run_hooks(session, node, "pre_hook", &compiled.pre_hooks).await?;
    }
    let outcome = build_node(session, node, run_id, detail).await?;
    if let Some(compiled) = compiled {
        run_hooks(session, node, "post_hook", &compiled.post_hooks).await?;
    }
    Ok(outcome)
}

/// Runs a node's hooks (`key`: `pre_hook` or `post_hook`) in order, each to its end.
async fn run_hooks(session: &Session, node: &Node, key: &str, hooks: &[String]) -> Result<(), ExecuteError> {
    if hooks.is_empty() {
        return Ok(());
    }
    session.register_inputs(node).await?;
    session.run_statements(hooks).await.map_err(|(number, message)| {
        sql_error(
            session,
            node,
            format!("{key} {number} of {} failed: {message}", hooks.len()),
        )
    })?;
    Ok(())
}

/// Builds, loads or tests `node`.
async fn build_node(
    session: &Session,
    node: &Node,
    run_id: &str,
    detail: &mut Option<String>,
) -> Result<Outcome, ExecuteError> {
    match (&node.resource, node.materialized) {
        (Resource::Test { .. }, _) if node.is_unit_test() => super::unit::run(session, node).await.map(|unit| {
            *detail = unit.detail;
            Outcome {
                status: unit.status,
                message: unit.message,
                rows: None,
                failures: Some(unit.failures),
                write: None,
                scanned: None,
            }
        }),
        (Resource::Model { relation }, Materialization::Table | Materialization::Incremental) => {
            build_table(session, node, relation, run_id).await
        }
        (Resource::Model { relation }, Materialization::View) => {
            session.create_view(node, relation).await.map(|()| Outcome {
                status: NodeStatus::Success,
                message: "CREATE VIEW".into(),
                rows: None,
                failures: None,
                write: None,
                scanned: None,
            })
        }
        (Resource::Seed { relation, file }, _) => load_seed(session, node, relation, file, run_id).await,
        (Resource::Snapshot { relation, spec }, _) => build_snapshot(session, node, relation, spec, run_id).await,
        (Resource::Test { .. }, _) => run_test(session, node, run_id).await,
        _ => Err(ExecuteError::Internal(format!("{} is not executable", node.unique_id))),
    }
}

/// Whether a failed cluster query lost an executor mid-query (its shuffle reads or task
/// reports broke off), which running the query again on the executors that remain can fix.
/// Ballista reruns a lost executor's tasks itself, but a shuffle stream that breaks after it
/// started fails the whole job. A node's failed attempt leaves nothing behind (its staged
/// files are deleted, the table is not committed), so running it again is safe.
fn lost_executor(session: &Session, error: &ExecuteError) -> bool {
    match error {
        ExecuteError::Sql { message, .. } => session.distributed && lost_executor_message(message),
        _ => false,
    }
}

/// Whether a cluster job's error message tells of a lost executor (see [`lost_executor`]).
fn lost_executor_message(message: &str) -> bool {
    const SIGNS: [&str; 7] = [
        "h2 protocol error",
        "broken pipe",
        "connection reset",
        "connection refused",
        "transport error",
        "error reading a body from connection",
        "fetchfailed",
    ];
    // The write stopped itself because the cluster lost an executor (see `write::watch_cluster`).
    if message.contains(super::write::LOST_EXECUTOR) {
        return true;
    }
    let message = message.to_lowercase();
    // Only a job that ran (a stage of it failed), not a scheduler that cannot be reached.
    message.contains("failed due to stage") && SIGNS.iter().any(|sign| message.contains(sign))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The node's SQL: as compiled before the run, or for an introspective node (`run_query` in
/// its SQL) compiled again now, once what it reads is built.
fn compiled_sql<'a>(session: &'a Session, node: &Node) -> Result<std::borrow::Cow<'a, str>, ExecuteError> {
    if let (true, Some(recompile)) = (node.introspective, &session.recompile) {
        let fresh = tokio::task::block_in_place(|| recompile(node));
        return fresh
            .map(std::borrow::Cow::Owned)
            .map_err(|message| sql_error(session, node, message));
    }
    session
        .compiled()
        .nodes
        .get(&node.unique_id)
        .map(|compiled| std::borrow::Cow::Borrowed(compiled.sql.as_str()))
        .ok_or_else(|| ExecuteError::Internal(format!("{} was not compiled", node.unique_id)))
}

async fn build_table(
    session: &Session,
    node: &Node,
    relation: &RelationName,
    run_id: &str,
) -> Result<Outcome, ExecuteError> {
    session.register_inputs(node).await?;
    let incremental = session.incremental.contains(&node.unique_id);
    if incremental {
        // `{{ this }}`: the table as it is before this run.
        session.register_written_table(relation).await?;
    }
    let sql = compiled_sql(session, node)?;
    let frame = match session.time_ranges.get(&node.unique_id) {
        // A time-range run writes only the rows of its range.
        Some(range) => {
            plan_sql(
                session,
                node,
                &format!("select * from (\n{sql}\n) as __in_range where {range}"),
            )
            .await?
        }
        None => plan_sql(session, node, &sql).await?,
    };
    let frame = super::contract::enforce(node, frame).await?;
    if incremental {
        let write = super::incremental::write(session, node, relation, frame, run_id).await?;
        let verb = match write.strategy {
            Strategy::Append => "APPEND",
            Strategy::Merge => "MERGE",
            Strategy::DeleteInsert => "DELETE+INSERT",
            Strategy::InsertOverwrite => "INSERT OVERWRITE",
        };
        return Ok(Outcome {
            status: NodeStatus::Success,
            message: format!("{verb} {}", write.new_rows),
            rows: Some(write.new_rows),
            failures: None,
            write: Some(write.summary),
            scanned: Some(write.scanned),
        });
    }
    let (summary, scanned) = write_frame(session, node, relation, frame, run_id).await?;
    Ok(Outcome {
        status: NodeStatus::Success,
        message: format!("OK {}", summary.rows),
        rows: Some(summary.rows),
        failures: None,
        write: Some(summary),
        scanned: Some(scanned),
    })
}

/// Takes a snapshot: the table's history plus this run's versions, written as its new version.
async fn build_snapshot(
    session: &Session,
    node: &Node,
    relation: &RelationName,
    spec: &crate::graph::SnapshotSpec,
    run_id: &str,
) -> Result<Outcome, ExecuteError> {
    session.register_inputs(node).await?;
    let exists = session
        .warehouse
        .table_exists(relation)
        .await
        .map_err(ExecuteError::Materialize)?;
    if exists {
        session.register_written_table(relation).await?;
    }
    let source = compiled_sql(session, node)?;
    let sql = super::snapshot::sql(session, node, relation, spec, &source, exists).await?;
    let frame = plan_sql(session, node, &sql).await?;
    let (summary, scanned) = write_frame(session, node, relation, frame, run_id).await?;
    Ok(Outcome {
        status: NodeStatus::Success,
        message: format!("SNAPSHOT {}", summary.rows),
        rows: Some(summary.rows),
        failures: None,
        write: Some(summary),
        scanned: Some(scanned),
    })
}

async fn load_seed(
    session: &Session,
    node: &Node,
    relation: &RelationName,
    path: &str,
    run_id: &str,
) -> Result<Outcome, ExecuteError> {
    // The CSV reader names the file by its store path (absolute, without its leading '/'):
    // say the seed's own path instead.
    let store_path = path.trim_start_matches("file://").trim_start_matches('/').to_string();
    let seed_error = |message: String| {
        let message = message.replace(&store_path, &node.path);
        ExecuteError::Setup(format!("seed '{}' ({}): {message}", node.name, node.path))
    };
    let frame = session
        .ctx
        .read_csv(path, CsvReadOptions::new().has_header(true))
        .await
        .map_err(|error| seed_error(error.strip_backtrace()))?;
    let declared = node.column_types().map_err(|problem| seed_error(problem.to_string()))?;
    let columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    for (column, _) in &declared {
        if !columns.contains(column) {
            return Err(seed_error(format!(
                "column_types names column '{column}', which is not in the CSV header ({})",
                columns.join(", ")
            )));
        }
    }
    let frame = if declared.is_empty() {
        frame
    } else {
        let expressions: Vec<String> = columns
            .iter()
            .map(|column| match declared.iter().find(|(name, _)| name == column) {
                Some((_, data_type)) => {
                    format!(
                        "cast({} as {data_type}) as {}",
                        quote_identifier(column),
                        quote_identifier(column)
                    )
                }
                None => quote_identifier(column),
            })
            .collect();
        let expressions: Vec<&str> = expressions.iter().map(String::as_str).collect();
        frame
            .select_exprs(&expressions)
            .map_err(|error| seed_error(error.strip_backtrace()))?
    };
    let (summary, scanned) = match write_frame(session, node, relation, frame, run_id).await {
        // A value that does not fit its column's declared type: say which column and value.
        Err(error) if !declared.is_empty() && error.to_string().contains("Cast error") => {
            return Err(match misfit_value(session, path, &declared).await {
                Some(problem) => seed_error(problem),
                None => error,
            });
        }
        written => written?,
    };
    Ok(Outcome {
        status: NodeStatus::Success,
        message: format!("INSERT {}", summary.rows),
        rows: Some(summary.rows),
        failures: None,
        write: Some(summary),
        scanned: Some(scanned),
    })
}

/// The first value of the seed's CSV at `path` that its `column_types` cannot hold, as "column
/// 'c' (column_types: T) holds 'v', which is not a T".
async fn misfit_value(session: &Session, path: &str, declared: &[(String, String)]) -> Option<String> {
    let frame = session
        .ctx
        .read_csv(path, CsvReadOptions::new().has_header(true))
        .await
        .ok()?;
    for (column, data_type) in declared {
        let quoted = quote_identifier(column);
        let misfit = frame
            .parse_sql_expr(&format!(
                "{quoted} is not null and try_cast({quoted} as {data_type}) is null"
            ))
            .ok()?;
        let found = frame
            .clone()
            .filter(misfit)
            .and_then(|f| f.select_exprs(&[&format!("cast({quoted} as varchar)")]))
            .and_then(|f| f.limit(0, Some(1)))
            .ok()?
            .collect()
            .await
            .ok()?;
        let value = found
            .iter()
            .find(|batch| batch.num_rows() > 0)
            .and_then(|batch| datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0).ok());
        if let Some(value) = value {
            return Some(format!(
                "column '{column}' (column_types: {data_type}) holds '{value}', which cannot be read as {data_type}"
            ));
        }
    }
    None
}

/// Where a test's failing rows are stored with `--store-failures` / `store_failures: true`:
/// `<target schema>_test_failures.<test name>`.
pub(super) fn failures_relation(session: &Session, node: &Node) -> crate::relation::RelationName {
    crate::relation::RelationName::table(&format!("{}_test_failures", session.schema), &node.name)
}

async fn run_test(session: &Session, node: &Node, run_id: &str) -> Result<Outcome, ExecuteError> {
    session.register_inputs(node).await?;
    let store = session.store_failures || node.config.get("store_failures").and_then(Json::as_bool) == Some(true);
    if store {
        // The failing rows become a table (replaced every run; empty when the test passes).
        let frame = plan_sql(session, node, &compiled_sql(session, node)?).await?;
        let relation = failures_relation(session, node);
        let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
        let stream = frame
            .execute_stream()
            .await
            .map_err(|error| sql_error(session, node, error.strip_backtrace()))?;
        let summary = session.warehouse.write_table(&relation, schema, stream, run_id).await?;
        let (status, message) = super::test_verdict(node, summary.rows, session.warn_error);
        return Ok(Outcome {
            status,
            message,
            rows: None,
            failures: Some(summary.rows),
            write: Some(summary),
            scanned: None,
        });
    }
    let sql = format!(
        "select count(*) as failures from (\n{}\n) as tidemark_test",
        compiled_sql(session, node)?
    );
    let frame = plan_sql(session, node, &sql).await?;
    let batches = frame
        .collect()
        .await
        .map_err(|error| sql_error(session, node, error.strip_backtrace()))?;
    let failures = batches
        .first()
        .and_then(|batch| {
            batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .filter(|a| !a.is_empty())
                .map(|a| a.value(0))
        })
        .unwrap_or(0) as u64;
    let (status, message) = super::test_verdict(node, failures as u64, session.warn_error);
    Ok(Outcome {
        status,
        message,
        rows: None,
        failures: Some(failures),
        write: None,
        scanned: None,
    })
}

/// Runs `sql` (a compiled node or an inline query) with its inputs registered and returns at
/// most `limit` rows. Used by `show`.
pub async fn run_query_preview(
    session: &Session,
    node: &Node,
    sql: &str,
    limit: usize,
) -> Result<Vec<RecordBatch>, ExecuteError> {
    session.register_inputs(node).await?;
    let frame = plan_sql(session, node, sql).await?;
    // EXPLAIN output is a plan, not rows to cut (and EXPLAIN ANALYZE must stay the root).
    let is_explain = sql
        .trim_start()
        .get(..7)
        .is_some_and(|word| word.eq_ignore_ascii_case("explain"));
    let frame = if is_explain {
        frame
    } else {
        frame.limit(0, Some(limit)).map_err(ExecuteError::from_datafusion)?
    };
    frame
        .collect()
        .await
        .map_err(|error| sql_error(session, node, error.strip_backtrace()))
}

#[cfg(test)]
mod tests {
    use super::lost_executor_message;

    #[test]
    fn a_broken_shuffle_stream_is_a_lost_executor_and_a_model_error_is_not() {
        // What Ballista 55 reported when an executor was killed while another read its output.
        let broken = r#"Execution error: Job 038HHNECVJ000 failed: Job failed due to stage 4 failed: Task failed due to runtime execution error: DataFusionError(Shared(External(ArrowError(IpcError("Arrow error: Ipc error: code: 'Unknown error', message: \"h2 protocol error: error reading a body from connection\", source: hyper::Error(Body, Error { kind: Io(Custom { kind: BrokenPipe, error: \"stream closed because of a broken pipe\" }) })")))))"#;
        assert!(lost_executor_message(broken));
        let model = "Execution error: Job 03 failed: Job failed due to stage 2 failed: Task failed due to runtime execution error: DataFusionError(ArrowError(DivideByZero))";
        assert!(!lost_executor_message(model));
        // A scheduler that cannot be reached is not retried: no job ran.
        assert!(!lost_executor_message(
            "transport error: Connection refused (os error 111)"
        ));
    }
}
