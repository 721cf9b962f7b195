//! Running a node's query into the warehouse: planning it (errors belong to the node's SQL),
//! handing it to [`crate::materialize::sink`] (which writes and commits it, here or on the
//! cluster, while [`watch_cluster`] can stop a cluster query that cannot finish), registering
//! the new version; and what the query's scans read.

use std::sync::Arc;
use std::time::Instant;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;

use super::{ExecuteError, Session};
use crate::graph::Node;
use crate::materialize::sink::{QueryOutput, Written};
use crate::materialize::{MaterializeError, Replace, WriteSummary};
use crate::relation::RelationName;

/// What the scans of a node's query read from storage: rows they produced (after pruning and
/// filter pushdown) and bytes fetched.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Scanned {
    pub rows: u64,
    pub bytes: u64,
}

impl Scanned {
    /// Sums the metrics of the data-source operators of an executed plan.
    pub(super) fn of(plan: &Arc<dyn ExecutionPlan>) -> Scanned {
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

/// Plans the node's compiled SQL; planning errors name the node and its compiled file.
pub(super) async fn plan_sql(session: &Session, node: &Node, sql: &str) -> Result<DataFrame, ExecuteError> {
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

/// Writes the node's query as its table's new version (through [`crate::materialize::sink`])
/// and registers it; a table with `partition_by` is written as Hive-style partition folders,
/// all of them replaced.
pub(super) async fn write_frame(
    session: &Session,
    node: &Node,
    relation: &RelationName,
    frame: DataFrame,
    run_id: &str,
) -> Result<(WriteSummary, Scanned), ExecuteError> {
    if !node.partition_by().is_empty() {
        return write_partitioned(session, node, relation, frame, Replace::All, run_id).await;
    }
    let written = session
        .warehouse
        .replace_table(relation, run_id, output(session, frame))
        .await
        .map_err(|error| materialize_error(session, node, error))?;
    session.register_written_table(relation).await?;
    let scanned = scanned(&written);
    Ok((written.summary, scanned))
}

/// The node's query as what the sink writes: run here, or on the cluster (watched, see
/// [`watch_cluster`]).
pub(super) fn output(
    session: &Session,
    frame: DataFrame,
) -> QueryOutput<impl std::future::Future<Output = Option<String>> + '_> {
    QueryOutput {
        frame,
        task: session.ctx.task_ctx(),
        on_cluster: session.distributed,
        stop: async move {
            if session.distributed {
                Some(watch_cluster(session).await)
            } else {
                std::future::pending().await
            }
        },
    }
}

/// What the scans of a write's query read (nothing is known of queries run on a cluster).
fn scanned(written: &Written) -> Scanned {
    written.plan.as_ref().map(Scanned::of).unwrap_or_default()
}

/// Resolves (with the reason) when a query on the cluster cannot be waited for any longer: the
/// target's `query_timeout` passed, the scheduler has had no executor for a while (Ballista
/// keeps such a job queued forever), or an executor was lost while the query ran. Ballista runs
/// a lost executor's tasks again itself, but a result it finishes after losing one is not
/// trusted (rows have been seen missing from such a result): the write stops, nothing is
/// published, and the node runs again on the executors that remain (`job_retries`). Never
/// resolves otherwise.
async fn watch_cluster(session: &Session) -> String {
    let started = Instant::now();
    let mut without_executors: Option<Instant> = None;
    let mut most = executor_count(session).await.unwrap_or(0);
    loop {
        tokio::time::sleep(CLUSTER_POLL).await;
        if let Some(now) = executor_count(session).await {
            if now > 0 && now < most {
                return format!("{LOST_EXECUTOR}: the cluster went from {most} executors to {now} while the query ran");
            }
            most = most.max(now);
        }
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
const CLUSTER_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// The start of the reason a write stops when the cluster loses an executor (see
/// [`watch_cluster`]); a node whose attempt failed with it runs again.
pub(super) const LOST_EXECUTOR: &str = "an executor was lost while the query ran on the cluster";

/// How many executors the session's scheduler has now (`None`: not a cluster, or unreachable).
#[cfg(feature = "ballista")]
async fn executor_count(session: &Session) -> Option<usize> {
    let scheduler = session.scheduler.as_ref()?;
    crate::execute::cluster::executor_count(scheduler).await.ok()
}

#[cfg(not(feature = "ballista"))]
async fn executor_count(_session: &Session) -> Option<usize> {
    None
}

/// Why the cluster cannot finish a query when its scheduler has reported no executor for 6 s
/// (`since`: when it first reported none).
#[cfg(feature = "ballista")]
async fn executors_gone(session: &Session, since: &mut Option<Instant>) -> Option<String> {
    const GRACE: std::time::Duration = std::time::Duration::from_secs(6);
    let scheduler = session.scheduler.as_ref()?;
    match crate::execute::cluster::executor_count(scheduler).await {
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
    relation: &RelationName,
    frame: DataFrame,
    replace: Replace,
    run_id: &str,
) -> Result<(WriteSummary, Scanned), ExecuteError> {
    let written = session
        .warehouse
        .replace_partitions(relation, run_id, output(session, frame), &node.partition_by(), replace)
        .await
        .map_err(|error| materialize_error(session, node, error))?;
    session.register_written_table(relation).await?;
    let scanned = scanned(&written);
    Ok((written.summary, scanned))
}
