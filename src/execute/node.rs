//! Running one node: build a table, create a view, load a seed, or count a test's failures.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::options::CsvReadOptions;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;
use serde_json::Value as Json;

use super::{ExecuteError, NodeResult, NodeStatus, Reporter, Session};
use crate::graph::{Materialization, Node, Strategy};
use crate::materialize::{MaterializeError, Replace, WriteSummary};
use crate::template::quote_identifier;

/// What a node did when it succeeded.
struct Outcome {
    status: NodeStatus,
    message: String,
    rows: Option<u64>,
    failures: Option<u64>,
    write: Option<WriteSummary>,
    scanned: Option<Scanned>,
}

/// What the scans of a node's query read from storage: rows they produced (after pruning and
/// filter pushdown) and bytes fetched.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scanned {
    pub rows: u64,
    pub bytes: u64,
}

impl Scanned {
    /// Sums the metrics of the data-source operators of an executed plan.
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> Scanned {
        let mut total = Scanned::default();
        let mut stack = vec![plan.clone()];
        while let Some(plan) = stack.pop() {
            if plan.name() == "DataSourceExec" {
                if let Some(metrics) = plan.metrics() {
                    total.rows += metrics.output_rows().unwrap_or(0) as u64;
                    total.bytes += metrics
                        .sum_by_name("bytes_scanned")
                        .map(|value| value.as_usize() as u64)
                        .unwrap_or(0);
                }
            }
            stack.extend(plan.children().into_iter().cloned());
        }
        total
    }
}

/// The physical plan of a node's frame; planning errors belong to the node's SQL.
async fn physical_plan(
    session: &Session,
    node: &Node,
    frame: DataFrame,
) -> Result<Arc<dyn ExecutionPlan>, ExecuteError> {
    frame
        .create_physical_plan()
        .await
        .map_err(|error| sql_error(session, node, error.strip_backtrace()))
}

/// Plans a frame and starts it, keeping the plan to read its metrics afterwards.
pub(super) async fn start(
    session: &Session,
    node: &Node,
    frame: DataFrame,
) -> Result<(Arc<dyn ExecutionPlan>, datafusion::execution::SendableRecordBatchStream), ExecuteError> {
    let plan = physical_plan(session, node, frame).await?;
    let stream = datafusion::physical_plan::execute_stream(plan.clone(), session.ctx.task_ctx())
        .map_err(|error| sql_error(session, node, error.strip_backtrace()))?;
    Ok((plan, stream))
}

/// Runs node `id`; never panics on user input, every problem becomes an error result.
pub async fn run(session: &Session, id: &str, run_id: &str, reporter: &dyn Reporter) -> NodeResult {
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
            error: Some(error.to_string()),
            compiled_path,
        },
    }
}

/// One attempt at node `node`: builds, loads or tests it (`detail`: a unit test's diff).
async fn attempt_node(
    session: &Session,
    node: &Node,
    run_id: &str,
    detail: &mut Option<String>,
) -> Result<Outcome, ExecuteError> {
    match node.materialized {
        Materialization::Test if node.is_unit_test() => super::unit::run(session, node).await.map(|unit| {
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
        Materialization::Table | Materialization::Incremental => build_table(session, node, run_id).await,
        Materialization::View => session.create_view(node).await.map(|()| Outcome {
            status: NodeStatus::Success,
            message: "CREATE VIEW".into(),
            rows: None,
            failures: None,
            write: None,
            scanned: None,
        }),
        Materialization::Seed => load_seed(session, node, run_id).await,
        Materialization::Test => run_test(session, node, run_id).await,
        Materialization::Ephemeral | Materialization::External => {
            Err(ExecuteError::Internal(format!("{} is not executable", node.unique_id)))
        }
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
    let message = message.to_lowercase();
    // Only a job that ran (a stage of it failed), not a scheduler that cannot be reached.
    message.contains("failed due to stage") && SIGNS.iter().any(|sign| message.contains(sign))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Plans the node's compiled SQL; planning errors name the node and its compiled file.
async fn plan_sql(session: &Session, node: &Node, sql: &str) -> Result<DataFrame, ExecuteError> {
    session
        .ctx
        .sql(sql)
        .await
        .map_err(|error| sql_error(session, node, error.strip_backtrace()))
}

pub(super) fn sql_error(session: &Session, node: &Node, message: String) -> ExecuteError {
    let message = match cluster_hint(&message) {
        Some(hint) => format!("{message}\n{hint}"),
        None => message,
    };
    ExecuteError::Sql {
        node: node.name.clone(),
        compiled_path: session
            .compiled()
            .nodes
            .get(&node.unique_id)
            .map(|c| c.compiled_path.clone())
            .unwrap_or_default(),
        message,
    }
}

/// What to do about a cluster's error that is not the model's fault.
fn cluster_hint(message: &str) -> Option<&'static str> {
    if message.contains("RecursionLimitReached") {
        Some(
            "hint: the cluster's scheduler or executors decode plans with protobuf's default nesting limit; build them with prost's no-recursion-limit feature (README: \"Distributed runs: type: ballista\")",
        )
    } else if message.contains("Error serializing custom table") {
        Some(
            "hint: the plan reads a table that cannot be sent to a cluster, such as a table function in FROM (`from range(0, n)`); write `select unnest(range(0, n)) as value` instead",
        )
    } else {
        None
    }
}

fn compiled_sql<'a>(session: &'a Session, node: &Node) -> Result<&'a str, ExecuteError> {
    session
        .compiled()
        .nodes
        .get(&node.unique_id)
        .map(|compiled| compiled.sql.as_str())
        .ok_or_else(|| ExecuteError::Internal(format!("{} was not compiled", node.unique_id)))
}

/// Streams a DataFrame into the node's table and registers the new version; a table with
/// `partition_by` is written as Hive-style partition folders, all of them replaced.
pub(super) async fn write_frame(
    session: &Session,
    node: &Node,
    frame: DataFrame,
    run_id: &str,
) -> Result<(WriteSummary, Scanned), ExecuteError> {
    if !node.partition_by().is_empty() {
        return write_partitioned(session, node, frame, Replace::All, run_id).await;
    }
    let relation = node.relation.as_ref().expect("tables have relations");
    // DataFusion's Parquet writer (this process's, or a cluster's executors') writes a staged
    // object, encoding row groups and columns in parallel; this process renames it into place
    // under the table's lock before it records the commit.
    let warehouse = &session.warehouse;
    let staged = warehouse.staged_table_path(run_id, relation);
    let url = warehouse.url_of(&staged);
    let scanned = std::sync::Mutex::new(Scanned::default());
    let summary = warehouse
        .commit_table(relation, run_id, || async {
            match write_parquet_files(session, frame, &url, Vec::new()).await {
                Ok((rows, read)) => {
                    *scanned.lock().expect("scanned") = read;
                    warehouse.publish_staged_table(&staged, relation).await?;
                    Ok(rows)
                }
                Err(error) => {
                    warehouse.remove(&staged).await;
                    Err(error)
                }
            }
        })
        .await
        .map_err(|error| materialize_error(session, node, error))?;
    session.register_written_table(relation).await?;
    let scanned = scanned.into_inner().expect("scanned");
    Ok((summary, scanned))
}

/// `frame` with its partition columns as the text of their folder names: the value as Arrow
/// formats it, [`NULL_PARTITION`](crate::materialize::partitioned::NULL_PARTITION) for NULL.
fn with_partition_folder_values(frame: DataFrame, partition_by: &[String]) -> Result<DataFrame, MaterializeError> {
    use datafusion::common::Column;
    use datafusion::logical_expr::{cast, lit, Expr};
    let columns = frame
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let column = Expr::Column(Column::from_name(field.name()));
            if partition_by.contains(field.name()) {
                datafusion::functions::expr_fn::coalesce(vec![
                    cast(column, datafusion::arrow::datatypes::DataType::Utf8),
                    lit(crate::materialize::partitioned::NULL_PARTITION),
                ])
                .alias(field.name())
            } else {
                column
            }
        })
        .collect::<Vec<_>>();
    Ok(frame.select(columns)?)
}

/// Resolves (with the reason) when a query on the cluster cannot be waited for any longer: the
/// target's `query_timeout` passed, or the scheduler has had no executor for a while (Ballista
/// keeps such a job queued forever). Never resolves otherwise.
async fn watch_cluster(session: &Session) -> String {
    let started = Instant::now();
    let mut without_executors: Option<Instant> = None;
    loop {
        tokio::time::sleep(CLUSTER_POLL).await;
        if let Some(limit) = session.query_timeout {
            if started.elapsed() >= limit {
                return format!(
                    "the query ran on the cluster for longer than the target's query_timeout ({} s) and was stopped",
                    limit.as_secs()
                );
            }
        }
        if let Some(reason) = executors_gone(session, &mut without_executors).await {
            return reason;
        }
    }
}

/// How often a running cluster query's scheduler is asked for its executors.
const CLUSTER_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the cluster cannot finish a query when its scheduler has reported no executor for 6 s
/// (`since`: when it first reported none).
#[cfg(feature = "ballista")]
async fn executors_gone(session: &Session, since: &mut Option<Instant>) -> Option<String> {
    const GRACE: std::time::Duration = std::time::Duration::from_secs(6);
    let scheduler = session.scheduler.as_ref()?;
    match crate::cluster::executor_count(scheduler).await {
        Ok(0) => {
            let since = *since.get_or_insert_with(Instant::now);
            (since.elapsed() >= GRACE).then(|| {
                format!(
                    "the Ballista cluster has no executor left (the scheduler at {scheduler} reports 0 executors registered for {} s), so the query cannot finish; start executors and run again",
                    since.elapsed().as_secs()
                )
            })
        }
        // Executors are back, or the scheduler is unreachable (which fails the query itself).
        _ => {
            *since = None;
            None
        }
    }
}

#[cfg(not(feature = "ballista"))]
async fn executors_gone(_session: &Session, _since: &mut Option<Instant>) -> Option<String> {
    None
}

/// Runs `frame` with DataFusion's Parquet writer at the end of its plan, writing the result to
/// `url` (one file; a folder of Hive partition folders, one file each, when `partition_by` is
/// not empty): in this process, encoding row groups and columns in parallel, or on the
/// Ballista cluster, where an executor writes it. Returns the rows written and what the plan's
/// scans read (nothing is known of scans run on a cluster).
pub(super) async fn write_parquet_files(
    session: &Session,
    frame: DataFrame,
    url: &str,
    partition_by: Vec<String>,
) -> Result<(u64, Scanned), MaterializeError> {
    let stop = async {
        if session.distributed {
            Some(watch_cluster(session).await)
        } else {
            std::future::pending().await
        }
    };
    let written =
        crate::materialize::staged::write_parquet(frame, session.ctx.task_ctx(), url, partition_by, stop).await?;
    Ok((written.rows, Scanned::of(&written.plan)))
}

fn materialize_error(session: &Session, node: &Node, error: MaterializeError) -> ExecuteError {
    match error {
        // Errors raised while the query runs belong to the node's SQL.
        MaterializeError::Execution(error) => sql_error(session, node, error.strip_backtrace()),
        other => ExecuteError::Materialize(other),
    }
}

/// Writes a partitioned table: the partitions the frame produces, replacing `replace`.
pub(super) async fn write_partitioned(
    session: &Session,
    node: &Node,
    frame: DataFrame,
    replace: Replace,
    run_id: &str,
) -> Result<(WriteSummary, Scanned), ExecuteError> {
    let relation = node.relation.as_ref().expect("tables have relations");
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let partition_by = node.partition_by();
    if !session.distributed {
        // tidemark's partition writer: it splits the rows by folder and encodes the partitions
        // in parallel (DataFusion's writer splits row by row and hands each file tiny batches,
        // which is slow for hundreds of partitions).
        let plan = physical_plan(session, node, frame).await?;
        // Each output partition of the plan is split by its own task.
        let streams = datafusion::physical_plan::execute_stream_partitioned(plan.clone(), session.ctx.task_ctx())
            .map_err(|error| sql_error(session, node, error.strip_backtrace()))?;
        let summary = session
            .warehouse
            // The physical plan's schema: the batches are the plan's.
            .write_partitioned(relation, plan.schema(), &partition_by, streams, replace, run_id)
            .await
            .map_err(|error| materialize_error(session, node, error))?;
        session.register_written_table(relation).await?;
        return Ok((summary, Scanned::of(&plan)));
    }
    let layout = crate::materialize::partitioned::PartitionLayout::of(&schema, &partition_by)
        .map_err(|error| materialize_error(session, node, error))?;
    let warehouse = &session.warehouse;
    let summary = warehouse
        .commit_partitions(relation, &schema, &layout.typed, replace, run_id, |staging| {
            let partition_by = &partition_by;
            async move {
                // The executors' DataFusion writer writes Hive partition folders under the
                // staging folder, one file per partition, named as tidemark names them
                // (DataFusion would put NULL values in a folder of the type's default value).
                let url = format!("{}/", warehouse.url_of(&staging));
                let frame = with_partition_folder_values(frame, partition_by)?;
                let (rows, _) = write_parquet_files(session, frame, &url, partition_by.clone()).await?;
                warehouse.adopt_staged(&staging, rows).await
            }
        })
        .await
        .map_err(|error| materialize_error(session, node, error))?;
    session.register_written_table(relation).await?;
    Ok((summary, Scanned::default()))
}

async fn build_table(session: &Session, node: &Node, run_id: &str) -> Result<Outcome, ExecuteError> {
    session.register_inputs(node).await?;
    let incremental = session.incremental.contains(&node.unique_id);
    if incremental {
        // `{{ this }}`: the table as it is before this run.
        let relation = node.relation.as_ref().expect("tables have relations");
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
        None => plan_sql(session, node, sql).await?,
    };
    let frame = super::contract::enforce(node, frame).await?;
    if incremental {
        let write = super::incremental::write(session, node, frame, run_id).await?;
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
    let (summary, scanned) = write_frame(session, node, frame, run_id).await?;
    Ok(Outcome {
        status: NodeStatus::Success,
        message: format!("OK {}", summary.rows),
        rows: Some(summary.rows),
        failures: None,
        write: Some(summary),
        scanned: Some(scanned),
    })
}

async fn load_seed(session: &Session, node: &Node, run_id: &str) -> Result<Outcome, ExecuteError> {
    let path = node.location.as_deref().expect("seeds have a file");
    let seed_error = |message: String| ExecuteError::Setup(format!("seed '{}' ({}): {message}", node.name, node.path));
    let frame = session
        .ctx
        .read_csv(path, CsvReadOptions::new().has_header(true))
        .await
        .map_err(|error| seed_error(error.strip_backtrace()))?;
    let declared = node.column_types().map_err(seed_error)?;
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
    let (summary, scanned) = write_frame(session, node, frame, run_id).await?;
    Ok(Outcome {
        status: NodeStatus::Success,
        message: format!("INSERT {}", summary.rows),
        rows: Some(summary.rows),
        failures: None,
        write: Some(summary),
        scanned: Some(scanned),
    })
}

/// Where a test's failing rows are stored with `--store-failures` / `store_failures: true`:
/// `<target schema>_test_failures.<test name>`.
pub fn failures_relation(session: &Session, node: &Node) -> crate::template::RelationName {
    crate::template::RelationName::table(&format!("{}_test_failures", session.schema), &node.name)
}

async fn run_test(session: &Session, node: &Node, run_id: &str) -> Result<Outcome, ExecuteError> {
    session.register_inputs(node).await?;
    let store = session.store_failures || node.config.get("store_failures").and_then(Json::as_bool) == Some(true);
    if store {
        // The failing rows become a table (replaced every run; empty when the test passes).
        let frame = plan_sql(session, node, compiled_sql(session, node)?).await?;
        let relation = failures_relation(session, node);
        let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
        let stream = frame
            .execute_stream()
            .await
            .map_err(|error| sql_error(session, node, error.strip_backtrace()))?;
        let summary = session.warehouse.write_table(&relation, schema, stream, run_id).await?;
        let (status, message) = super::test_verdict(node, summary.rows);
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
    let (status, message) = super::test_verdict(node, failures as u64);
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
