//! Stage 6 — materialize: the only module that writes warehouse data.
//!
//! ## Warehouse layout
//!
//! ```text
//! <warehouse>/<schema>/<table>/data.parquet                 the current table (stable path for any reader)
//! <warehouse>/_tidemark/log/<schema>/<table>/<version>.json commit records, one per version
//! <warehouse>/_tidemark/locks/<schema>/<table>.lock         held by the run writing the table
//! <warehouse>/_tidemark/locks/run.lock                      held by the run (build/run/seed/test) using the warehouse
//! <warehouse>/_tidemark/staging/<run>/<write>/...            tables and partitions not yet published
//!                                                            (DataFusion's writer, here or on a
//!                                                            cluster's executors, writes them: [`staged`]); scratch
//! ```
//!
//! ## Commit guarantees ([`Warehouse::commit_table`], [`Warehouse::write_table`])
//!
//! 1. Readers never see a partial table: a model's Parquet object is written complete under
//!    the run's staging folder ([`staged`]) and then renamed over `data.parquet` (a rename on a
//!    file system, a server-side copy on object stores); tidemark's own writer (seeds, stored
//!    test failures) uploads the object as a whole, visible only when complete (the local store
//!    writes `data.parquet#N` and renames it; object stores complete a multipart upload).
//! 2. A run that dies mid-write leaves the previous version intact and readable: the rename or
//!    upload completion never happened.
//! 3. Two writers can't both write a table: the table lock is created with a conditional put
//!    (`PutMode::Create`); the loser gets an error naming the holder. A lock left by a crashed
//!    run on this host (its process is gone) is detected, reported and replaced.
//!    Whole runs are serialised too: `build`, `run`, `seed` and `test` hold the warehouse's run
//!    lock ([`Warehouse::lock_run`]) from start to end, so a second run waits for the first.
//! 4. Each commit is recorded as `<version>.json`, also created conditionally, so a version
//!    number is never committed twice.

mod ledger;
pub mod lock;
pub mod partitioned;
pub mod sink;
pub mod staged;
pub mod store;

pub use partitioned::{PartitionedCommit, Replace};

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store::buffered::BufWriter;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::prefix::PrefixStore;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt;
use serde::Serialize;

use crate::project::{StorageSettings, Target};
use crate::relation::RelationName;

/// A folder name of its own for one write inside a run's staging folder.
pub(crate) fn write_id() -> String {
    format!("write-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Errors while writing warehouse data.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(
        "table {table} is being written by another run ({holder}); if no tidemark run is active, delete {lock_path} (a crashed run's lock also expires after its lease: lock_lease)"
    )]
    Locked {
        table: String,
        holder: String,
        lock_path: String,
    },
    #[error("version {version} of table {table} was committed by another run while this one wrote it")]
    Conflict { table: String, version: u64 },
    #[error("{0}")]
    Execution(#[from] DataFusionError),
    #[error("writing Parquet: {}", with_hint(.0.to_string()))]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("warehouse storage: {}", describe_store_error(.0))]
    Store(#[from] datafusion::object_store::Error),
    /// A store failure met by DataFusion's writer (the text of its error).
    #[error("warehouse storage: {}", with_hint(.0.clone()))]
    StoreWrite(String),
    #[error("warehouse: {0}")]
    Setup(String),
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// Parquet settings of every table file: zstd level 1.
pub(crate) fn writer_properties() -> Result<WriterProperties, MaterializeError> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .build())
}

/// An object-store error with the setting it points at, when one is recognisable.
pub fn describe_store_error(error: &datafusion::object_store::Error) -> String {
    with_hint(with_causes(error))
}

/// An error's message followed by those of its causes that it does not already contain: the
/// store client says only "error sending request", its causes what went wrong (a timeout, a
/// connection closed mid-request).
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = inner.source();
    }
    message
}

fn with_hint(message: String) -> String {
    match store::hint(&message) {
        Some(hint) => format!("{message}\n  hint: {hint}"),
        None => message,
    }
}

/// What one table write did.
#[derive(Debug, Clone, Serialize)]
pub struct WriteSummary {
    pub rows: u64,
    pub bytes: u64,
    pub version: u64,
    /// A stale lock of a crashed run that was replaced, if any.
    pub recovered_lock: Option<String>,
}

/// The warehouse of a target.
#[derive(Debug, Clone)]
pub struct Warehouse {
    /// The store, rooted at the warehouse (paths are `<schema>/<table>/...`).
    store: Arc<dyn ObjectStore>,
    /// URL of the warehouse root (`file:///abs/path`, `s3://bucket/prefix`), no trailing slash.
    url_root: String,
    /// A store DataFusion must know about to read the warehouse (`s3://bucket` → store).
    registration: Option<(url::Url, Arc<dyn ObjectStore>)>,
    /// Settings for URL sources on the same kind of store.
    settings: StorageSettings,
    /// How long this run's locks outlive its last heartbeat.
    lease: std::time::Duration,
}

impl Warehouse {
    /// Opens the warehouse of a target: a folder (relative to the project root) or an
    /// object-store URL with the target's `storage:` settings.
    pub fn open(target: &Target, project_root: &std::path::Path) -> Result<Warehouse, MaterializeError> {
        crate::diagnostics::register_secrets(target.storage.secrets());
        match target.local_warehouse(project_root) {
            Some(folder) => Warehouse::open_local(folder).map(|warehouse| Warehouse {
                // URL sources are still opened with the target's storage settings.
                settings: target.storage.clone(),
                lease: target.lock_lease,
                ..warehouse
            }),
            None => Warehouse::open_url(&target.warehouse, &target.storage).map(|warehouse| Warehouse {
                lease: target.lock_lease,
                ..warehouse
            }),
        }
    }

    /// Opens (creating if needed) a warehouse folder.
    pub fn open_local(root: PathBuf) -> Result<Warehouse, MaterializeError> {
        std::fs::create_dir_all(&root).map_err(|error| {
            MaterializeError::Setup(format!("cannot create warehouse folder '{}': {error}", root.display()))
        })?;
        let root = root.canonicalize().map_err(|error| {
            MaterializeError::Setup(format!("cannot open warehouse folder '{}': {error}", root.display()))
        })?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Warehouse {
            store: Arc::new(store),
            url_root: format!("file://{}", root.display()).trim_end_matches('/').to_string(),
            registration: None,
            settings: StorageSettings::default(),
            lease: lock::DEFAULT_LEASE,
        })
    }

    /// Opens a warehouse in an object store (`s3://bucket/prefix`, `memory://`, ...).
    pub fn open_url(location: &str, settings: &StorageSettings) -> Result<Warehouse, MaterializeError> {
        let opened = store::open(location, settings)?;
        let prefixed: Arc<dyn ObjectStore> = if opened.prefix.as_ref().is_empty() {
            opened.store.clone()
        } else {
            Arc::new(PrefixStore::new(opened.store.clone(), opened.prefix.clone()))
        };
        let base = opened.base.as_str().trim_end_matches('/').to_string();
        let url_root = if opened.prefix.as_ref().is_empty() {
            base
        } else {
            format!("{base}/{}", opened.prefix)
        };
        Ok(Warehouse {
            store: prefixed,
            url_root,
            registration: Some((opened.base, opened.store)),
            settings: settings.clone(),
            lease: lock::DEFAULT_LEASE,
        })
    }

    /// The warehouse as people know it (`/abs/folder` or `s3://bucket/prefix`).
    pub fn display(&self) -> String {
        self.url_root
            .strip_prefix("file://")
            .map(str::to_string)
            .unwrap_or_else(|| self.url_root.clone())
    }

    /// The store DataFusion must register to read this warehouse, if it is not the local disk.
    pub fn registration(&self) -> Option<(&url::Url, Arc<dyn ObjectStore>)> {
        self.registration.as_ref().map(|(url, store)| (url, store.clone()))
    }

    /// Storage settings for URL sources.
    pub fn settings(&self) -> &StorageSettings {
        &self.settings
    }

    fn data_path(relation: &RelationName) -> StorePath {
        StorePath::from_iter([relation.schema.as_str(), relation.identifier.as_str(), "data.parquet"])
    }

    /// URL of the current table's Parquet object, for registering it with DataFusion and for
    /// plain Parquet readers: `<warehouse>/<schema>/<table>/data.parquet`.
    pub fn table_url(&self, relation: &RelationName) -> String {
        format!(
            "{}/{}/{}/data.parquet",
            self.url_root, relation.schema, relation.identifier
        )
    }

    /// Whether the table has a committed version.
    pub async fn table_exists(&self, relation: &RelationName) -> Result<bool, MaterializeError> {
        match self.store.head(&Self::data_path(relation)).await {
            Ok(_) => return Ok(true),
            Err(datafusion::object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(self.partitioned_commit(relation).await?.is_some())
    }

    /// Bytes of a table's current data: its `data.parquet`, or those of its partition folders
    /// (`<column>=<value>/…/data.parquet`, one level per partition column).
    pub async fn table_bytes(&self, relation: &RelationName) -> Result<u64, MaterializeError> {
        let folder = StorePath::from_iter([relation.schema.as_str(), relation.identifier.as_str()]);
        let mut listing = self.store.list(Some(&folder));
        let mut total = 0;
        while let Some(object) = listing.next().await {
            let object = object?;
            if object.location.filename() == Some("data.parquet") {
                total += object.size;
            }
        }
        Ok(total)
    }

    /// URL of a partitioned table's folder (`<warehouse>/<schema>/<table>/`).
    pub fn table_folder_url(&self, relation: &RelationName) -> String {
        format!("{}/{}/{}/", self.url_root, relation.schema, relation.identifier)
    }

    /// Streams `data` into the table and commits it atomically (see the module docs).
    pub async fn write_table(
        &self,
        relation: &RelationName,
        schema: SchemaRef,
        mut data: SendableRecordBatchStream,
        run_id: &str,
    ) -> Result<WriteSummary, MaterializeError> {
        self.commit_table(relation, run_id, || async {
            let properties = writer_properties()?;
            let object = BufWriter::new(self.store.clone(), Self::data_path(relation));
            let mut writer = AsyncArrowWriter::try_new(object, schema, Some(properties))?;
            let mut rows = 0u64;
            while let Some(batch) = data.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).await?;
            }
            // Completing the upload is the moment the new version becomes visible.
            writer.close().await?;
            Ok(rows)
        })
        .await
    }

    /// Commits a table whose object `write` puts at [`Warehouse::table_url`] (in one piece: a
    /// multipart upload or a staged-and-renamed file, so readers see the old or the new version)
    /// while this run holds the table's lock; `write` returns the rows written. The client's
    /// Parquet writer ([`Warehouse::write_table`]) and the executors of a Ballista cluster both
    /// write this way.
    pub async fn commit_table<F, Fut>(
        &self,
        relation: &RelationName,
        run_id: &str,
        write: F,
    ) -> Result<WriteSummary, MaterializeError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<u64, MaterializeError>>,
    {
        let table = format!("{}.{}", relation.schema, relation.identifier);
        let lock = lock::Lock::table(self.store.clone(), relation, run_id, self.lease).await?;
        let result = async {
            let rows = write().await?;
            let bytes = self.store.head(&Self::data_path(relation)).await?.size;
            let version = self.record_commit(relation, run_id, rows, bytes).await?;
            // A table that was partitioned before: its partition folders are no longer the table.
            for folder in self.partitions(relation).await? {
                let path = partitioned::join(&Self::table_folder(relation), &folder).join("data.parquet");
                self.store.delete(&path).await?;
            }
            Ok::<_, MaterializeError>(WriteSummary {
                rows,
                bytes,
                version,
                recovered_lock: None,
            })
        }
        .await;
        let recovered = lock.recovered.clone();
        lock.release().await;
        result
            .map(|summary| WriteSummary {
                recovered_lock: recovered,
                ..summary
            })
            .map_err(|error| match error {
                MaterializeError::Conflict { version, .. } => MaterializeError::Conflict { table, version },
                other => other,
            })
    }

    /// Takes the warehouse's run lock for a whole `build`/`run`/`seed`/`test`, waiting up to
    /// `timeout` while another run holds it (`waiting` is told who, once). A lock left by a
    /// crashed run is replaced (see [`lock`]); [`lock::Lock::recovered`] says so.
    pub async fn lock_run(
        &self,
        run_id: &str,
        command: &str,
        timeout: std::time::Duration,
        waiting: impl FnMut(&str),
    ) -> Result<lock::Lock, lock::LockError> {
        let path = StorePath::from_iter(["_tidemark", "locks", "run.lock"]);
        let display = self.url_of(&path);
        let holder = lock::Holder {
            run_id,
            command,
            lease: self.lease,
        };
        lock::Lock::wait_for(self.store.clone(), path, &display, holder, timeout, waiting).await
    }

    /// A new scratch object for a table (the new rows of an incremental run on a cluster), in
    /// the run's staging folder; every write gets its own (see [`Warehouse::staged_table_path`]).
    pub fn scratch_path(&self, run_id: &str, relation: &RelationName) -> StorePath {
        StorePath::from_iter([
            "_tidemark",
            "staging",
            run_id,
            &write_id(),
            "scratch",
            relation.schema.as_str(),
            relation.identifier.as_str(),
            "new.parquet",
        ])
    }

    /// A new object where a table's new version is written before this run renames it into
    /// place. DataFusion's Parquet writer completes its file even when the query fails, so it
    /// never writes the table's own path; and each write gets its own object, because the
    /// writer of a failed attempt on a cluster may still finish after the attempt that runs
    /// the query again (a shared path would then publish the failed attempt's partial rows).
    pub fn staged_table_path(&self, run_id: &str, relation: &RelationName) -> StorePath {
        StorePath::from_iter([
            "_tidemark",
            "staging",
            run_id,
            &write_id(),
            relation.schema.as_str(),
            relation.identifier.as_str(),
            "data.parquet",
        ])
    }

    /// Renames a complete staged object over the table's `data.parquet` (one atomic step for
    /// readers: a rename on a file system, a server-side copy on object stores).
    pub async fn publish_staged_table(
        &self,
        staged: &StorePath,
        relation: &RelationName,
    ) -> Result<(), MaterializeError> {
        self.store.rename(staged, &Self::data_path(relation)).await?;
        Ok(())
    }

    /// Deletes a scratch object, if it is there (best effort: a leftover is never read).
    pub async fn remove(&self, path: &StorePath) {
        let _ = self.store.delete(path).await;
    }

    /// Deletes every object under a staging folder (best effort: a leftover is never read).
    pub async fn remove_under(&self, folder: &StorePath) {
        let objects: Vec<StorePath> = self
            .store
            .list(Some(folder))
            .filter_map(|entry| async move { entry.ok().map(|meta| meta.location) })
            .collect()
            .await;
        for object in objects {
            let _ = self.store.delete(&object).await;
        }
    }

    /// The URL of a path of the warehouse (for writers that take URLs: the executors of a
    /// Ballista cluster).
    pub fn url_of(&self, path: &StorePath) -> String {
        format!("{}/{}", self.url_root, path)
    }

    fn log_folder(relation: &RelationName) -> StorePath {
        StorePath::from_iter([
            "_tidemark",
            "log",
            relation.schema.as_str(),
            relation.identifier.as_str(),
        ])
    }

    fn log_path(relation: &RelationName, version: u64) -> StorePath {
        Self::log_folder(relation).join(format!("{version:020}.json"))
    }

    /// The latest committed version of a table, if any.
    pub async fn latest_version(&self, relation: &RelationName) -> Result<Option<u64>, MaterializeError> {
        let mut latest = None;
        let mut listing = self.store.list(Some(&Self::log_folder(relation)));
        while let Some(entry) = listing.next().await {
            let entry = entry?;
            if let Some(version) = entry
                .location
                .filename()
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|v| v.parse::<u64>().ok())
            {
                latest = latest.max(Some(version));
            }
        }
        Ok(latest)
    }

    /// Creates the record of `version` (conditionally: a version is never committed twice).
    async fn create_log_record(
        &self,
        relation: &RelationName,
        version: u64,
        record: &serde_json::Value,
    ) -> Result<(), MaterializeError> {
        let payload = PutPayload::from(serde_json::to_vec_pretty(record).expect("record serialises"));
        match self
            .store
            .put_opts(&Self::log_path(relation, version), payload, PutMode::Create.into())
            .await
        {
            Ok(_) => Ok(()),
            Err(datafusion::object_store::Error::AlreadyExists { .. }) => Err(MaterializeError::Conflict {
                table: format!("{}.{}", relation.schema, relation.identifier),
                version,
            }),
            Err(error) => Err(error.into()),
        }
    }

    async fn record_commit(
        &self,
        relation: &RelationName,
        run_id: &str,
        rows: u64,
        bytes: u64,
    ) -> Result<u64, MaterializeError> {
        let version = self.latest_version(relation).await?.unwrap_or(0) + 1;
        let record = serde_json::json!({
            "version": version,
            "run_id": run_id,
            "rows": rows,
            "bytes": bytes,
            "data": format!("{}/{}/data.parquet", relation.schema, relation.identifier),
            "committed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        self.create_log_record(relation, version, &record).await?;
        Ok(version)
    }

    /// Writes and deletes a probe object: proves the warehouse is reachable and writable.
    pub async fn check_writable(&self) -> Result<(), MaterializeError> {
        let probe = StorePath::from_iter(["_tidemark", format!("probe-{}", uuid::Uuid::new_v4()).as_str()]);
        self.store.put(&probe, PutPayload::from_static(b"ok")).await?;
        self.store.delete(&probe).await?;
        Ok(())
    }
}
