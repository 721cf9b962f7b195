//! Stage 6 — materialize: the only module that writes warehouse data.
//!
//! ## Warehouse layout
//!
//! ```text
//! <warehouse>/<schema>/<table>/data.parquet                 the current table (stable path for any reader)
//! <warehouse>/_tidemark/log/<schema>/<table>/<version>.json commit records, one per version
//! <warehouse>/_tidemark/locks/<schema>/<table>.lock         held by the run writing the table
//! ```
//!
//! ## Commit guarantees ([`Warehouse::write_table`])
//!
//! 1. Readers never see a partial table: the Parquet object is uploaded as a whole and becomes
//!    visible only when complete (the local store writes `data.parquet#N` and renames it over the
//!    old file; object stores complete a multipart upload).
//! 2. A run that dies mid-write leaves the previous version intact and readable: the rename or
//!    upload completion never happened.
//! 3. Two writers can't both write a table: the table lock is created with a conditional put
//!    (`PutMode::Create`); the loser gets an error naming the holder. A lock left by a crashed
//!    run on this host (its process is gone) is detected, reported and replaced.
//! 4. Each commit is recorded as `<version>.json`, also created conditionally, so a version
//!    number is never committed twice.

mod lock;

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::object_store::buffered::BufWriter;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt;
use serde::Serialize;

use crate::template::RelationName;

/// Errors while writing warehouse data.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(
        "table {table} is being written by another run ({holder}); if no tidemark run is active, delete {lock_path}"
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
    #[error("writing Parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("warehouse storage: {0}")]
    Store(#[from] datafusion::object_store::Error),
    #[error("warehouse: {0}")]
    Setup(String),
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
    store: Arc<dyn ObjectStore>,
    /// Root as a local folder.
    root: PathBuf,
}

impl Warehouse {
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
            root,
        })
    }

    /// The warehouse folder.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn data_path(relation: &RelationName) -> StorePath {
        StorePath::from_iter([relation.schema.as_str(), relation.identifier.as_str(), "data.parquet"])
    }

    /// Where plain Parquet readers find the current table.
    pub fn table_file(&self, relation: &RelationName) -> PathBuf {
        self.root
            .join(&relation.schema)
            .join(&relation.identifier)
            .join("data.parquet")
    }

    /// `file://` URL of the current table, for registering it with DataFusion.
    pub fn table_url(&self, relation: &RelationName) -> String {
        format!("file://{}", self.table_file(relation).display())
    }

    /// Whether the table has a committed version.
    pub async fn table_exists(&self, relation: &RelationName) -> bool {
        self.store.head(&Self::data_path(relation)).await.is_ok()
    }

    /// Streams `data` into the table and commits it atomically (see the module docs).
    pub async fn write_table(
        &self,
        relation: &RelationName,
        schema: SchemaRef,
        mut data: SendableRecordBatchStream,
        run_id: &str,
    ) -> Result<WriteSummary, MaterializeError> {
        let table = format!("{}.{}", relation.schema, relation.identifier);
        let lock = lock::TableLock::acquire(self.store.clone(), relation, run_id).await?;
        let result = async {
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
                .build();
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
            let bytes = self.store.head(&Self::data_path(relation)).await?.size;
            let version = self.record_commit(relation, run_id, rows, bytes).await?;
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

    async fn record_commit(
        &self,
        relation: &RelationName,
        run_id: &str,
        rows: u64,
        bytes: u64,
    ) -> Result<u64, MaterializeError> {
        let log = StorePath::from_iter([
            "_tidemark",
            "log",
            relation.schema.as_str(),
            relation.identifier.as_str(),
        ]);
        let mut latest = 0u64;
        let mut listing = self.store.list(Some(&log));
        while let Some(entry) = listing.next().await {
            let entry = entry?;
            if let Some(version) = entry
                .location
                .filename()
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|v| v.parse::<u64>().ok())
            {
                latest = latest.max(version);
            }
        }
        let version = latest + 1;
        let record = serde_json::json!({
            "version": version,
            "run_id": run_id,
            "rows": rows,
            "bytes": bytes,
            "data": format!("{}/{}/data.parquet", relation.schema, relation.identifier),
            "committed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        let path = log.clone().join(format!("{version:020}.json"));
        let payload = PutPayload::from(serde_json::to_vec_pretty(&record).expect("record serialises"));
        match self.store.put_opts(&path, payload, PutMode::Create.into()).await {
            Ok(_) => Ok(version),
            Err(datafusion::object_store::Error::AlreadyExists { .. }) => Err(MaterializeError::Conflict {
                table: String::new(),
                version,
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// Writes and deletes a probe object: proves the warehouse is reachable and writable.
    pub async fn check_writable(&self) -> Result<(), MaterializeError> {
        let probe = StorePath::from_iter(["_tidemark", format!("probe-{}", uuid::Uuid::new_v4()).as_str()]);
        self.store.put(&probe, PutPayload::from_static(b"ok")).await?;
        self.store.delete(&probe).await?;
        Ok(())
    }
}
