//! Table locks: one writer per table, stale locks of crashed runs detected.

use std::sync::Arc;

use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};

use super::MaterializeError;
use crate::template::RelationName;

#[derive(Debug, Serialize, Deserialize)]
struct LockRecord {
    run_id: String,
    pid: u32,
    host: String,
    since: String,
}

/// A held table lock. Release it with [`TableLock::release`].
pub(super) struct TableLock {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    /// Description of a stale lock that was replaced to take this one.
    pub recovered: Option<String>,
}

impl TableLock {
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        relation: &RelationName,
        run_id: &str,
    ) -> Result<TableLock, MaterializeError> {
        let path = StorePath::from_iter([
            "_tidemark",
            "locks",
            relation.schema.as_str(),
            &format!("{}.lock", relation.identifier),
        ]);
        let record = LockRecord {
            run_id: run_id.to_string(),
            pid: std::process::id(),
            host: host_name(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let payload = serde_json::to_vec(&record).expect("lock record serialises");
        let mut recovered = None;
        for _attempt in 0..2 {
            match store
                .put_opts(&path, PutPayload::from(payload.clone()), PutMode::Create.into())
                .await
            {
                Ok(_) => return Ok(TableLock { store, path, recovered }),
                Err(datafusion::object_store::Error::AlreadyExists { .. }) => {
                    let holder = match store.get(&path).await {
                        Ok(existing) => existing
                            .bytes()
                            .await
                            .ok()
                            .and_then(|bytes| serde_json::from_slice::<LockRecord>(&bytes).ok()),
                        Err(datafusion::object_store::Error::NotFound { .. }) => continue,
                        Err(error) => return Err(error.into()),
                    };
                    match holder {
                        Some(holder) if is_stale(&holder) => {
                            recovered = Some(format!(
                                "removed a stale lock on {}.{} left by run {} (pid {} on {}, since {}), which is no longer running",
                                relation.schema, relation.identifier, holder.run_id, holder.pid, holder.host, holder.since
                            ));
                            store.delete(&path).await?;
                        }
                        holder => {
                            let holder = holder
                                .map(|h| format!("run {} — pid {} on {}, since {}", h.run_id, h.pid, h.host, h.since))
                                .unwrap_or_else(|| "unreadable lock".into());
                            return Err(MaterializeError::Locked {
                                table: format!("{}.{}", relation.schema, relation.identifier),
                                holder,
                                lock_path: path.to_string(),
                            });
                        }
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(MaterializeError::Locked {
            table: format!("{}.{}", relation.schema, relation.identifier),
            holder: "another run took the lock while a stale one was being replaced".into(),
            lock_path: path.to_string(),
        })
    }

    pub async fn release(self) {
        // A lock that cannot be deleted is reported as stale by the next run.
        let _ = self.store.delete(&self.path).await;
    }
}

/// A lock is stale when it was taken on this host by a process that no longer exists.
fn is_stale(record: &LockRecord) -> bool {
    record.host == host_name()
        && record.pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{}", record.pid)).exists()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}
