//! Locks in an object store: one writer per table, one run per warehouse and per `target/`.
//! A lock is an object created with a conditional put (`PutMode::Create`); its record names
//! the run, process and host holding it, so a lock left by a crashed run on this host (its
//! process is gone) is detected, reported and replaced.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// What the holder is doing (`tidemark build`), for the message of a run that waits.
    #[serde(default)]
    command: String,
}

impl LockRecord {
    fn describe(&self) -> String {
        let command = if self.command.is_empty() {
            String::new()
        } else {
            format!("`{}`, ", self.command)
        };
        format!(
            "{command}run {} — pid {} on {}, since {}",
            self.run_id, self.pid, self.host, self.since
        )
    }
}

/// A held lock. Release it with [`Lock::release`].
pub struct Lock {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    /// Description of a stale lock that was replaced to take this one.
    pub recovered: Option<String>,
}

/// Why a lock could not be taken right now.
enum Busy {
    /// Another live run holds it (its description).
    Held(String),
    Failed(MaterializeError),
}

impl Lock {
    /// Takes the lock of a table, or fails at once naming the holder.
    pub async fn table(
        store: Arc<dyn ObjectStore>,
        relation: &RelationName,
        run_id: &str,
    ) -> Result<Lock, MaterializeError> {
        let path = StorePath::from_iter([
            "_tidemark",
            "locks",
            relation.schema.as_str(),
            &format!("{}.lock", relation.identifier),
        ]);
        let what = format!("{}.{}", relation.schema, relation.identifier);
        match Lock::try_acquire(store, &path, run_id, "", &what).await {
            Ok(lock) => Ok(lock),
            Err(Busy::Held(holder)) => Err(MaterializeError::Locked {
                table: format!("{}.{}", relation.schema, relation.identifier),
                holder,
                lock_path: path.to_string(),
            }),
            Err(Busy::Failed(error)) => Err(error),
        }
    }

    /// Takes the lock at `path`, waiting while another live run holds it: `waiting` is called
    /// once with the holder's description, and after `timeout` the error names the holder and
    /// the lock to delete if that run is gone.
    pub async fn wait_for(
        store: Arc<dyn ObjectStore>,
        path: StorePath,
        display_path: &str,
        run_id: &str,
        command: &str,
        timeout: Duration,
        mut waiting: impl FnMut(&str),
    ) -> Result<Lock, String> {
        let started = Instant::now();
        let mut told = false;
        loop {
            match Lock::try_acquire(store.clone(), &path, run_id, command, display_path).await {
                Ok(lock) => return Ok(lock),
                Err(Busy::Failed(error)) => return Err(format!("cannot take the run lock {display_path}: {error}")),
                Err(Busy::Held(holder)) => {
                    if started.elapsed() >= timeout {
                        return Err(format!(
                            "another run holds the run lock {display_path} ({holder}) and did not finish within {} s (--lock-timeout); if no tidemark run is active, delete {display_path}",
                            timeout.as_secs()
                        ));
                    }
                    if !told {
                        waiting(&holder);
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    async fn try_acquire(
        store: Arc<dyn ObjectStore>,
        path: &StorePath,
        run_id: &str,
        command: &str,
        what: &str,
    ) -> Result<Lock, Busy> {
        let record = LockRecord {
            run_id: run_id.to_string(),
            pid: std::process::id(),
            host: host_name(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
        };
        let payload = serde_json::to_vec(&record).expect("lock record serialises");
        let mut recovered = None;
        for _attempt in 0..2 {
            match store
                .put_opts(path, PutPayload::from(payload.clone()), PutMode::Create.into())
                .await
            {
                Ok(_) => {
                    return Ok(Lock {
                        store,
                        path: path.clone(),
                        recovered,
                    })
                }
                Err(datafusion::object_store::Error::AlreadyExists { .. }) => {
                    let holder = match store.get(path).await {
                        Ok(existing) => existing
                            .bytes()
                            .await
                            .ok()
                            .and_then(|bytes| serde_json::from_slice::<LockRecord>(&bytes).ok()),
                        // Released between the put and the read: try again.
                        Err(datafusion::object_store::Error::NotFound { .. }) => continue,
                        Err(error) => return Err(Busy::Failed(error.into())),
                    };
                    match holder {
                        Some(holder) if is_stale(&holder) => {
                            recovered = Some(format!(
                                "removed a stale lock on {what} left by {}, which is no longer running",
                                holder.describe()
                            ));
                            store.delete(path).await.map_err(|e| Busy::Failed(e.into()))?;
                        }
                        holder => {
                            return Err(Busy::Held(
                                holder.map(|h| h.describe()).unwrap_or_else(|| "unreadable lock".into()),
                            ))
                        }
                    }
                }
                Err(error) => return Err(Busy::Failed(error.into())),
            }
        }
        Err(Busy::Held(
            "another run took the lock while a stale one was being replaced".into(),
        ))
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
