//! Staged Parquet files written by DataFusion's own writer: a plan that ends in DataFusion's
//! Parquet sink (`COPY … TO`), run in this process, where it encodes row groups and columns
//! in parallel, or on a Ballista cluster, where an executor runs it.
//!
//! It only ever writes under `_tidemark/staging/<run>/`: DataFusion's writer completes its file
//! even when its input fails, so it never writes a table's own path. The table's commit
//! ([`super::Warehouse::commit_table`], [`super::Warehouse::commit_partitions`]) then publishes
//! the staged files under the table's lock, or deletes them when the write failed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use datafusion::arrow::array::UInt64Array;
use datafusion::config::TableParquetOptions;
use datafusion::datasource::file_format::format_as_file_type;
use datafusion::datasource::file_format::parquet::ParquetFormatFactory;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;

use super::MaterializeError;

/// What a staged write produced: the rows written and the executed plan (whose scans' metrics
/// say what it read).
pub struct StagedWrite {
    pub rows: u64,
    pub plan: Arc<dyn ExecutionPlan>,
}

/// A failure of the store the files go to is the warehouse's; any other is the query's.
fn store_or_query(error: DataFusionError) -> MaterializeError {
    match error.find_root() {
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
            MaterializeError::StoreWrite(error.find_root().to_string())
        }
        _ => MaterializeError::Execution(error),
    }
}

/// Writes `frame` to `url` (one file; with `partition_by`, a folder of Hive partition folders,
/// one file each) with tidemark's compression, unless `stop` finishes first (its text becomes
/// the error).
pub async fn write_parquet(
    frame: DataFrame,
    task: Arc<TaskContext>,
    url: &str,
    partition_by: Vec<String>,
    stop: impl Future<Output = Option<String>>,
) -> Result<StagedWrite, MaterializeError> {
    let mut options = HashMap::new();
    options.insert("single_file_output".to_string(), partition_by.is_empty().to_string());
    let (state, plan) = frame.into_parts();
    let mut parquet: TableParquetOptions = state.table_options().parquet.clone();
    parquet.global.compression = Some("zstd(1)".into());
    let file_type = format_as_file_type(Arc::new(ParquetFormatFactory::new_with_options(parquet)));
    let copy = LogicalPlanBuilder::copy_to(plan, url.into(), file_type, options, partition_by)?.build()?;
    // Planned here rather than through `DataFrame::write_parquet` so the executed plan is kept.
    let physical = state.create_physical_plan(&copy).await?;
    let write = datafusion::physical_plan::collect(physical.clone(), task);
    let counts = tokio::select! {
        counts = write => counts.map_err(store_or_query)?,
        Some(stopped) = stop => return Err(MaterializeError::Execution(DataFusionError::Execution(stopped))),
    };
    let rows = counts
        .iter()
        .filter(|batch| batch.num_columns() > 0)
        .filter_map(|batch| {
            batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|counts| counts.iter().flatten().sum::<u64>())
        })
        .sum();
    Ok(StagedWrite { rows, plan: physical })
}
