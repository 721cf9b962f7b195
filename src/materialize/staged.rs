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
        DataFusionError::ObjectStore(inner) => MaterializeError::StoreWrite(super::with_causes(inner.as_ref())),
        DataFusionError::IoError(inner) => MaterializeError::StoreWrite(super::with_causes(inner)),
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

impl super::Warehouse {
    /// Deletes what runs that ended without cleaning up (killed, or cut off from the store) left
    /// in `_tidemark/staging/`: every run's folder but `current`'s, except the folders of runs
    /// that still hold a table lock (a partitioned publish cut short, which the table's next
    /// writer rolls forward from that folder). Called with the warehouse's run lock held, so no
    /// other run is writing. Returns the number of objects deleted.
    pub async fn sweep_staging(&self, current: &str) -> Result<usize, MaterializeError> {
        use datafusion::object_store::path::Path as StorePath;
        use datafusion::object_store::ObjectStoreExt;
        use futures::TryStreamExt;
        let staging = StorePath::from_iter(["_tidemark", "staging"]);
        let runs: Vec<String> = self
            .store
            .list_with_delimiter(Some(&staging))
            .await?
            .common_prefixes
            .iter()
            .filter_map(|folder| folder.filename().map(str::to_string))
            .filter(|run| run != current)
            .collect();
        if runs.is_empty() {
            return Ok(0);
        }
        let locks = StorePath::from_iter(["_tidemark", "locks"]);
        let mut holding = std::collections::BTreeSet::new();
        let lock_objects: Vec<_> = self.store.list(Some(&locks)).try_collect().await?;
        for lock in lock_objects {
            // A lock released since the listing holds nothing back.
            let bytes = match self.store.get(&lock.location).await {
                Ok(found) => found.bytes().await.ok(),
                Err(datafusion::object_store::Error::NotFound { .. }) => None,
                Err(error) => return Err(error.into()),
            };
            if let Some(run) = bytes.as_deref().and_then(super::lock::run_of) {
                holding.insert(run);
            }
        }
        let mut deleted = 0;
        for run in runs.iter().filter(|run| !holding.contains(*run)) {
            let folder = staging.clone().join(run.as_str());
            let objects: Vec<_> = self.store.list(Some(&folder)).try_collect().await?;
            for object in objects {
                match self.store.delete(&object.location).await {
                    Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => deleted += 1,
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(deleted)
    }
}
