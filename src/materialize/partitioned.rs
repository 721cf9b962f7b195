//! Partitioned tables: one Parquet object per Hive-style partition folder.
//!
//! ```text
//! <warehouse>/<schema>/<table>/<col>=<value>/data.parquet
//! ```
//!
//! A write stages every partition it produces under `_tidemark/staging/<run>/...`, then records
//! the commit (conditional create of `<version>.json`, listing the partitions written and
//! removed), then publishes: each staged object is renamed over its partition's
//! `data.parquet` (one atomic object per partition) and removed partitions are deleted. A run
//! that dies before the record leaves every partition as it was; one that dies while
//! publishing is rolled forward by the next writer of the table ([`Warehouse::roll_forward`]),
//! which finishes the renames the record lists. Partition columns live in the folder names,
//! not in the files (the Hive convention DuckDB, Polars, pyarrow and Spark read). A partitioned
//! table with no rows is written as one empty `data.parquet` (there is no value to name a
//! folder by), which keeps its columns for readers.
//!
//! Embedded, [`Warehouse::write_partitioned`] encodes the partitions in parallel: one splitter
//! task per output partition of the plan groups each batch's rows by folder, and one encoder
//! task per core owns the Parquet writers of the folders hashed to it. A failure stops every
//! task, aborts open uploads and deletes what was staged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store::buffered::BufWriter;
use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{ObjectStore, ObjectStoreExt};
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{lock, writer_properties, MaterializeError, Warehouse, WriteSummary};
use crate::relation::RelationName;

mod split;
pub use split::*;

/// Rows gathered per partition before they are handed to its Parquet writer.
const PENDING_ROWS: usize = 16 * 1024;

/// Hive's folder name for a NULL partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// What a write staged: rows, bytes and the partition folders written.
pub struct Staged {
    pub rows: u64,
    pub bytes: u64,
    pub written: Vec<String>,
}

/// Where the partition columns of a table's rows are, and what its files keep.
pub struct PartitionLayout {
    /// (index in the rows, name) of each partition column.
    pub columns: Vec<(usize, String)>,
    /// The partition columns as the commit record names them.
    pub typed: Vec<PartitionColumn>,
    /// Indices of the columns the files keep (all but the partition columns).
    pub kept: Vec<usize>,
}

impl PartitionLayout {
    pub fn of(schema: &SchemaRef, partition_by: &[String]) -> Result<PartitionLayout, MaterializeError> {
        let mut columns = Vec::new();
        let mut typed = Vec::new();
        for name in partition_by {
            let index = schema.index_of(name).map_err(|_| {
                MaterializeError::Setup(format!(
                    "partition_by names '{name}', which the model does not return (columns: {})",
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            columns.push((index, name.clone()));
            typed.push(PartitionColumn {
                name: name.clone(),
                data_type: schema.field(index).data_type().to_string(),
            });
        }
        let kept = (0..schema.fields().len())
            .filter(|i| !columns.iter().any(|(p, _)| p == i))
            .collect();
        Ok(PartitionLayout { columns, typed, kept })
    }
}

/// Which existing partitions a write replaces.
#[derive(Debug, Clone)]
pub enum Replace {
    /// A full build: partitions the data does not produce are removed.
    All,
    /// An incremental write: the partitions the data produces, plus these (removed when the
    /// data produces no rows for them).
    Only(BTreeSet<String>),
}

/// A partition column and its type (kept in the commit record, so readers type the values).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionColumn {
    pub name: String,
    pub data_type: String,
}

impl PartitionColumn {
    pub fn arrow_type(&self) -> DataType {
        self.data_type.parse().unwrap_or(DataType::Utf8)
    }
}

/// The commit record of a partitioned write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionedCommit {
    pub version: u64,
    pub run_id: String,
    pub rows: u64,
    pub bytes: u64,
    pub partition_by: Vec<PartitionColumn>,
    /// Staging folder the written partitions are published from.
    pub staging: String,
    /// Partition folders (`period_end=2026-11-15`) written by this version.
    pub written: Vec<String>,
    /// Partition folders removed by this version.
    pub removed: Vec<String>,
    pub committed_at: String,
}

/// `base` joined with a relative folder path (`a=1/b=x`).
pub(super) fn join(base: &StorePath, relative: &str) -> StorePath {
    relative.split('/').fold(base.clone(), |path, part| path.join(part))
}

impl Warehouse {
    pub(super) fn table_folder(relation: &RelationName) -> StorePath {
        StorePath::from_iter([relation.schema.as_str(), relation.identifier.as_str()])
    }

    /// The partition folders a table has now (`a=1/b=x`), relative to the table.
    pub async fn partitions(&self, relation: &RelationName) -> Result<BTreeSet<String>, MaterializeError> {
        let folder = Self::table_folder(relation);
        let mut found = BTreeSet::new();
        let mut listing = self.store.list(Some(&folder));
        while let Some(entry) = listing.next().await {
            let entry = entry?;
            if entry.location.filename() != Some("data.parquet") {
                continue;
            }
            let parts: Vec<String> = entry
                .location
                .prefix_match(&folder)
                .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
                .unwrap_or_default();
            if parts.len() >= 2 {
                found.insert(parts[..parts.len() - 1].join("/"));
            }
        }
        Ok(found)
    }

    /// The latest commit record of a partitioned table, if it is one.
    pub async fn partitioned_commit(
        &self,
        relation: &RelationName,
    ) -> Result<Option<PartitionedCommit>, MaterializeError> {
        let Some(latest) = self.latest_version(relation).await? else {
            return Ok(None);
        };
        let bytes = self.store.get(&Self::log_path(relation, latest)).await?.bytes().await?;
        Ok(serde_json::from_slice::<PartitionedCommit>(&bytes).ok())
    }

    /// Writes a partitioned table (see the module docs).
    pub async fn write_partitioned(
        &self,
        relation: &RelationName,
        schema: SchemaRef,
        partition_by: &[String],
        data: Vec<SendableRecordBatchStream>,
        replace: Replace,
        run_id: &str,
    ) -> Result<WriteSummary, MaterializeError> {
        let layout = Arc::new(PartitionLayout::of(&schema, partition_by)?);
        let file_schema = Arc::new(schema.project(&layout.kept)?);
        let typed = layout.typed.clone();
        self.commit_partitions(relation, &schema, &typed, replace, run_id, |staging| async move {
            // One splitter task per input stream sorts rows by folder; the partitions are
            // spread over one encoder task per core, each owning the Parquet writers of its
            // partitions.
            let encoders = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .clamp(1, 8);
            // Join sets: whatever stops this write (an error, a dropped future) stops every
            // task it started.
            let mut senders = Vec::with_capacity(encoders);
            let mut encoding = tokio::task::JoinSet::new();
            for _ in 0..encoders {
                let (sender, receiver) = tokio::sync::mpsc::channel::<(String, RecordBatch)>(64);
                senders.push(sender);
                encoding.spawn(encode_partitions(
                    receiver,
                    self.store.clone(),
                    staging.clone(),
                    file_schema.clone(),
                ));
            }
            let mut splitting = tokio::task::JoinSet::new();
            for stream in data {
                splitting.spawn(split_partitions(stream, layout.clone(), senders.clone()));
            }
            drop(senders);
            let mut rows = 0u64;
            let mut failure: Option<MaterializeError> = None;
            while let Some(split) = splitting.join_next().await {
                match split {
                    Ok(Ok(split)) => rows += split,
                    Ok(Err(error)) => {
                        // The query failed: the other splitters stop, the encoders finish.
                        failure = failure.or(Some(error));
                        splitting.abort_all();
                    }
                    Err(error) if error.is_cancelled() => {}
                    Err(error) => {
                        failure = failure.or(Some(MaterializeError::Setup(format!(
                            "a partition splitter stopped: {error}"
                        ))));
                        splitting.abort_all();
                    }
                }
            }
            let mut bytes = 0u64;
            let mut written = Vec::new();
            while let Some(encoded) = encoding.join_next().await {
                match encoded {
                    Ok(Ok((folders, size))) => {
                        written.extend(folders);
                        bytes += size;
                    }
                    Ok(Err(error)) => failure = failure.or(Some(error)),
                    Err(error) => {
                        failure = failure.or(Some(MaterializeError::Setup(format!(
                            "a Parquet encoder stopped: {error}"
                        ))))
                    }
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
            written.sort();
            Ok(Staged { rows, bytes, written })
        })
        .await
    }

    /// Commits partitions that `stage` writes under the staging folder it is given (one
    /// `<col>=<value>/data.parquet` object per partition), while this run holds the table's
    /// lock: records the commit, then publishes (see the module docs). A write that staged no
    /// partition at all, replacing everything or onto a table without partitions, has no value
    /// to name a folder by: the table (`schema`) is written as one empty object, which keeps
    /// its columns for readers.
    pub async fn commit_partitions<F, Fut>(
        &self,
        relation: &RelationName,
        schema: &SchemaRef,
        partition_by: &[PartitionColumn],
        replace: Replace,
        run_id: &str,
        stage: F,
    ) -> Result<WriteSummary, MaterializeError>
    where
        F: FnOnce(StorePath) -> Fut,
        Fut: std::future::Future<Output = Result<Staged, MaterializeError>>,
    {
        let lock = lock::Lock::table(self.store.clone(), relation, run_id, self.lease).await?;
        let result = async {
            if lock.recovered.is_some() {
                self.roll_forward(relation).await?;
            }
            // A folder of its own for this write: see `Warehouse::staged_table_path`.
            let staging = StorePath::from_iter([
                "_tidemark",
                "staging",
                run_id,
                &super::write_id(),
                relation.schema.as_str(),
                relation.identifier.as_str(),
            ]);
            let Staged { rows, bytes, written } = match stage(staging.clone()).await {
                Ok(staged) => staged,
                Err(error) => {
                    // Nothing of a failed write is ever read: its staged files go.
                    self.remove_under(&staging).await;
                    return Err(error);
                }
            };
            let existing = self.partitions(relation).await?;
            // Nothing staged and no partition to keep: the table is (still) one empty object.
            if written.is_empty() && (matches!(replace, Replace::All) || existing.is_empty()) {
                return Ok(None);
            }
            let removed: Vec<String> = match &replace {
                Replace::All => existing.iter().filter(|p| !written.contains(p)).cloned().collect(),
                Replace::Only(set) => set
                    .iter()
                    .filter(|p| !written.contains(p) && existing.contains(*p))
                    .cloned()
                    .collect(),
            };
            let version = self.latest_version(relation).await?.unwrap_or(0) + 1;
            let commit = PartitionedCommit {
                version,
                run_id: run_id.to_string(),
                rows,
                bytes,
                partition_by: partition_by.to_vec(),
                staging: staging.to_string(),
                written,
                removed,
                committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            };
            // The commit point: after this record the write happens, whatever stops this run.
            self.create_log_record(relation, version, &serde_json::to_value(&commit).expect("commit"))
                .await?;
            self.publish(relation, &commit).await?;
            Ok::<_, MaterializeError>(Some(WriteSummary {
                rows,
                bytes,
                version,
                recovered_lock: None,
            }))
        }
        .await;
        let recovered = lock.recovered.clone();
        lock.release().await;
        match result? {
            Some(summary) => Ok(WriteSummary {
                recovered_lock: recovered,
                ..summary
            }),
            None => {
                let empty = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), futures::stream::empty()));
                self.write_table(relation, schema.clone(), empty, run_id).await
            }
        }
    }

    /// The partitions another writer (the executors of a Ballista cluster, DataFusion's Hive
    /// writer) left under `staging`: one Parquet file per `<col>=<value>` folder, renamed to the
    /// `data.parquet` that [`Warehouse::commit_partitions`] publishes. A folder with several
    /// files is an error (the table's layout is one object per partition).
    pub async fn adopt_staged(&self, staging: &StorePath, rows: u64) -> Result<Staged, MaterializeError> {
        let mut files: BTreeMap<String, Vec<(StorePath, u64)>> = BTreeMap::new();
        let mut listing = self.store.list(Some(staging));
        let depth = staging.parts().count();
        while let Some(entry) = listing.next().await {
            let entry = entry?;
            let parts: Vec<_> = entry.location.parts().collect();
            if parts.len() < depth + 2 {
                continue;
            }
            let folder = parts[depth..parts.len() - 1]
                .iter()
                .map(|part| {
                    percent_encoding::percent_decode_str(part.as_ref())
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .collect::<Vec<_>>()
                .join("/");
            files.entry(folder).or_default().push((entry.location, entry.size));
        }
        let mut bytes = 0;
        for (folder, objects) in &files {
            let [(object, size)] = objects.as_slice() else {
                return Err(MaterializeError::Setup(format!(
                    "the cluster wrote {} files for partition '{folder}' under {staging}; tidemark keeps one object per partition",
                    objects.len()
                )));
            };
            let target = join(staging, folder).join("data.parquet");
            if *object != target {
                self.store.rename(object, &target).await?;
            }
            bytes += size;
        }
        Ok(Staged {
            rows,
            bytes,
            written: files.into_keys().collect(),
        })
    }

    /// Renames the staged partitions of a commit into place and deletes removed ones.
    /// Idempotent: partitions already published (their staged object is gone) are skipped.
    async fn publish(&self, relation: &RelationName, commit: &PartitionedCommit) -> Result<(), MaterializeError> {
        let table = Self::table_folder(relation);
        let staging = StorePath::parse(&commit.staging).map_err(datafusion::object_store::Error::from)?;
        for folder in &commit.written {
            let from = join(&staging, folder).join("data.parquet");
            let to = join(&table, folder).join("data.parquet");
            match self.store.rename(&from, &to).await {
                Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        // A table that was not partitioned before: its single object is no longer the table.
        match self.store.delete(&table.clone().join("data.parquet")).await {
            Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        for folder in &commit.removed {
            match self.store.delete(&join(&table, folder).join("data.parquet")).await {
                Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Finishes the latest commit of a table whose writer died while publishing it.
    pub async fn roll_forward(&self, relation: &RelationName) -> Result<(), MaterializeError> {
        if let Some(commit) = self.partitioned_commit(relation).await? {
            self.publish(relation, &commit).await?;
        }
        Ok(())
    }
}

/// The schema of a partitioned table as readers see it: file columns, then partition columns.
pub fn reader_partition_columns(commit: &PartitionedCommit) -> Vec<(String, DataType)> {
    commit
        .partition_by
        .iter()
        .map(|column| (column.name.clone(), column.arrow_type()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::{Replace, Warehouse};
    use crate::project::StorageSettings;
    use crate::relation::RelationName;

    fn rows(days: &[&str], values: &[i64]) -> (Arc<Schema>, datafusion::execution::SendableRecordBatchStream) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Utf8, true),
            Field::new("value", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(days.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .expect("batch");
        let stream = RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(vec![Ok(batch)]));
        (schema, Box::pin(stream))
    }

    #[tokio::test]
    async fn partitioned_writes_replace_only_their_partitions_and_roll_forward() {
        let warehouse = Warehouse::open_url("memory://", &StorageSettings::default()).expect("memory store");
        let table = RelationName::table("main", "events");
        let partition_by = vec!["day".to_string()];

        let (schema, data) = rows(&["a", "a", "b"], &[1, 2, 3]);
        let first = warehouse
            .write_partitioned(&table, schema, &partition_by, vec![data], Replace::All, "run-1")
            .await
            .expect("first write");
        assert_eq!((first.rows, first.version), (3, 1));
        let expected: BTreeSet<String> = ["day=a", "day=b"].map(String::from).into();
        assert_eq!(warehouse.partitions(&table).await.expect("list"), expected);

        // Replacing `b` and adding `c` leaves `a` alone.
        let (schema, data) = rows(&["b", "c"], &[4, 5]);
        let only: BTreeSet<String> = ["day=b".to_string()].into();
        let second = warehouse
            .write_partitioned(&table, schema, &partition_by, vec![data], Replace::Only(only), "run-2")
            .await
            .expect("second write");
        assert_eq!(second.version, 2);
        let commit = warehouse
            .partitioned_commit(&table)
            .await
            .expect("read")
            .expect("partitioned");
        assert_eq!(commit.written, vec!["day=b".to_string(), "day=c".to_string()]);
        assert!(commit.removed.is_empty());
        let expected: BTreeSet<String> = ["day=a", "day=b", "day=c"].map(String::from).into();
        assert_eq!(warehouse.partitions(&table).await.expect("list"), expected);

        // A run that died after its commit record but before publishing: the staged partition
        // is published by the next writer's roll-forward; a second roll-forward changes nothing.
        let mut crashed = commit.clone();
        crashed.version = 3;
        crashed.staging = "_tidemark/staging/run-3/main/events".into();
        crashed.written = vec!["day=d".into()];
        let staged = object_store::path::Path::from("_tidemark/staging/run-3/main/events/day=d/data.parquet");
        use object_store::ObjectStoreExt;
        warehouse
            .store
            .put(&staged, bytes_of_table(&warehouse, &table).await.into())
            .await
            .expect("stage");
        warehouse
            .create_log_record(&table, 3, &serde_json::to_value(&crashed).expect("json"))
            .await
            .expect("record");
        assert!(!warehouse.partitions(&table).await.expect("list").contains("day=d"));
        warehouse.roll_forward(&table).await.expect("roll forward");
        warehouse.roll_forward(&table).await.expect("idempotent");
        assert!(warehouse.partitions(&table).await.expect("list").contains("day=d"));
        assert_eq!(warehouse.latest_version(&table).await.expect("versions"), Some(3));
    }

    async fn bytes_of_table(warehouse: &Warehouse, table: &RelationName) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(format!("{}/{}/day=a/data.parquet", table.schema, table.identifier));
        warehouse
            .store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes")
            .to_vec()
    }
}
