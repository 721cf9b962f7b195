//! The one way a query's rows become warehouse data: its plan ends in DataFusion's Parquet
//! writer ([`super::staged::write_parquet`]), run in this process or on a Ballista cluster's
//! executors, which writes this run's staging folder; the table's new version is then published
//! under the table's lock ([`Warehouse::commit_table`], [`Warehouse::commit_partitions`]).
//! Partitioned tables written here go through tidemark's own partition writer instead
//! ([`Warehouse::write_partitioned`]), which splits the rows by folder and encodes in parallel.

use std::future::Future;
use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;

use super::partitioned::{PartitionLayout, Replace, NULL_PARTITION};
use super::{MaterializeError, Warehouse, WriteSummary};
use crate::relation::RelationName;

/// A query whose rows are written to the warehouse.
pub struct QueryOutput<S> {
    pub frame: DataFrame,
    pub task: Arc<TaskContext>,
    /// The query runs on a Ballista cluster, whose executors write; else this process writes.
    pub on_cluster: bool,
    /// Resolves, with the reason, when a cluster can no longer finish the query (never for a
    /// query run here).
    pub stop: S,
}

/// A scratch object a query was written to: remove it with [`Warehouse::remove`] once read.
pub struct Scratch {
    pub path: datafusion::object_store::path::Path,
    pub url: String,
    pub rows: u64,
}

/// What a write did: its commit, and the executed plan when the query ran here (its scan
/// metrics tell what it read; nothing is known of plans run on a cluster).
pub struct Written {
    pub summary: WriteSummary,
    pub plan: Option<Arc<dyn ExecutionPlan>>,
}

impl Warehouse {
    /// Replaces the whole table `relation` with the query's rows (one Parquet object).
    pub async fn replace_table<S>(
        &self,
        relation: &RelationName,
        run_id: &str,
        output: QueryOutput<S>,
    ) -> Result<Written, MaterializeError>
    where
        S: Future<Output = Option<String>>,
    {
        let staged = self.staged_table_path(run_id, relation);
        let url = self.url_of(&staged);
        let mut plan = None;
        let summary = self
            .commit_table(relation, run_id, || async {
                let QueryOutput {
                    frame,
                    task,
                    on_cluster,
                    stop,
                } = output;
                match super::staged::write_parquet(frame, task, &url, Vec::new(), stop).await {
                    Ok(written) => {
                        if !on_cluster {
                            plan = Some(written.plan);
                        }
                        self.publish_staged_table(&staged, relation).await?;
                        Ok(written.rows)
                    }
                    Err(error) => {
                        self.remove(&staged).await;
                        Err(error)
                    }
                }
            })
            .await?;
        Ok(Written { summary, plan })
    }

    /// Writes the query's rows as Hive partition folders named by `partition_by`, replacing the
    /// partitions `replace` names.
    pub async fn replace_partitions<S>(
        &self,
        relation: &RelationName,
        run_id: &str,
        output: QueryOutput<S>,
        partition_by: &[String],
        replace: Replace,
    ) -> Result<Written, MaterializeError>
    where
        S: Future<Output = Option<String>>,
    {
        let QueryOutput {
            frame,
            task,
            on_cluster,
            stop,
        } = output;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        if !on_cluster {
            // tidemark's partition writer: it splits the rows by folder and encodes the
            // partitions in parallel (DataFusion's writer splits row by row and hands each file
            // tiny batches, which is slow for hundreds of partitions). Each output partition of
            // the plan is split by its own task.
            let plan = frame.create_physical_plan().await?;
            let streams = datafusion::physical_plan::execute_stream_partitioned(plan.clone(), task)?;
            // The physical plan's schema: the batches are the plan's.
            let summary = self
                .write_partitioned(relation, plan.schema(), partition_by, streams, replace, run_id)
                .await?;
            return Ok(Written {
                summary,
                plan: Some(plan),
            });
        }
        let layout = PartitionLayout::of(&schema, partition_by)?;
        let summary = self
            .commit_partitions(
                relation,
                &schema,
                &layout.typed,
                replace,
                run_id,
                |staging| async move {
                    // The executors' DataFusion writer writes Hive partition folders under the
                    // staging folder, one file per partition, named as tidemark names them
                    // (DataFusion would put NULL values in a folder of the type's default value).
                    let url = format!("{}/", self.url_of(&staging));
                    let frame = with_partition_folder_values(frame, partition_by)?;
                    let written = super::staged::write_parquet(frame, task, &url, partition_by.to_vec(), stop).await?;
                    self.adopt_staged(&staging, written.rows).await
                },
            )
            .await?;
        Ok(Written { summary, plan: None })
    }

    /// Writes the query's rows to a new scratch object of the run's staging folder (an
    /// incremental run's new rows on a cluster, which cannot read this process's memory).
    pub async fn write_scratch<S>(
        &self,
        run_id: &str,
        relation: &RelationName,
        output: QueryOutput<S>,
    ) -> Result<Scratch, MaterializeError>
    where
        S: Future<Output = Option<String>>,
    {
        let path = self.scratch_path(run_id, relation);
        let url = self.url_of(&path);
        let written = super::staged::write_parquet(output.frame, output.task, &url, Vec::new(), output.stop).await?;
        Ok(Scratch {
            path,
            url,
            rows: written.rows,
        })
    }
}

/// `frame` with its partition columns as the text of their folder names: the value as Arrow
/// formats it, [`NULL_PARTITION`] for NULL.
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
                    lit(NULL_PARTITION),
                ])
                .alias(field.name())
            } else {
                column
            }
        })
        .collect::<Vec<_>>();
    Ok(frame.select(columns)?)
}
