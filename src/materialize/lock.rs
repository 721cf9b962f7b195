//! Locks in an object store: one writer per table, one run per warehouse and per `target/`.
//!
//! A lock is an object created with a conditional put (`PutMode::Create`); its record names the
//! run, process and host holding it. A lock is *stale*, and is reported and replaced, when
//! - it was taken on this host by a process that no longer exists (checked with `sysinfo`, so the
//!   same on Linux, macOS and Windows), or
//! - its lease ran out: the holder rewrites the record (with a `heartbeat` time) every quarter of
//!   the lease ([`DEFAULT_LEASE`], a target's `lock_lease`), so a record the store has not seen
//!   rewritten for a whole lease (its last-modified time, by the store's clock) belongs to a run
//!   that crashed or hung on some other host, or
//! - it belongs to a run whose other lock this process has just found stale (a run renews each of
//!   its locks on its own beat, so its table locks can outlive its run lock by a little).
//!
//! `TIDEMARK_LOCK_HOST` overrides the host name a record gives (the tests run processes of one
//! machine as different hosts with it).
//!
//! Of several runs that find the same stale record, only the one that creates its *claim* (an
//! object named after the record's hash, `PutMode::Create`) deletes and replaces it. A live run is
//! not taken over unless it stalls for a whole lease; a release deletes the lock only while the
//! record is still its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};

use super::MaterializeError;
use crate::relation::RelationName;

pub use crate::project::profiles::DEFAULT_LOCK_LEASE as DEFAULT_LEASE;

#[derive(Debug, Serialize, Deserialize)]
struct LockRecord {
    run_id: String,
    pid: u32,
    host: String,
    since: String,
    /// What the holder is doing (`tidemark build`), for the message of a run that waits.
    #[serde(default)]
    command: String,
    /// When the holder last renewed the lock (RFC 3339). Records without one (written before
    /// leases existed) expire only through the process check.
    #[serde(default)]
    heartbeat: Option<String>,
    /// Seconds after `heartbeat` at which the lock expires.
    #[serde(default)]
    lease_seconds: Option<u64>,
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

/// Who takes a lock: the run, what it is doing (`tidemark build`), and its lease.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub run_id: &'a str,
    pub command: &'a str,
    pub lease: Duration,
}

/// A held lock, renewed in the background until it is released with [`Lock::release`] (or
/// dropped: the renewal stops and the lease runs out).
pub struct Lock {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    /// Description of a stale lock that was replaced to take this one.
    pub recovered: Option<String>,
    run_id: String,
    heartbeat: tokio::task::JoinHandle<()>,
    /// Held by each renewal while it reads and rewrites the record, and set by [`Lock::release`]
    /// so no renewal writes the record again after it is deleted.
    released: Arc<tokio::sync::Mutex<bool>>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Why a lock could not be taken right now.
/// Why a run lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The store holding the lock failed.
    #[error("cannot take the run lock {lock}: {source}")]
    Store { lock: String, source: MaterializeError },
    /// Another run held it for longer than the caller would wait.
    #[error(
        "another run holds the run lock {lock} ({holder}) and did not finish within {} s (--lock-timeout); if no tidemark run is active, delete {lock} (a crashed run's lock also expires once its lease runs out: lock_lease)",
        waited.as_secs()
    )]
    Timeout {
        lock: String,
        holder: String,
        waited: Duration,
    },
}

impl From<LockError> for crate::diagnostics::Error {
    fn from(error: LockError) -> Self {
        crate::diagnostics::Error::Environment(error.to_string())
    }
}

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
        lease: Duration,
    ) -> Result<Lock, MaterializeError> {
        let path = StorePath::from_iter([
            "_tidemark",
            "locks",
            relation.schema.as_str(),
            &format!("{}.lock", relation.identifier),
        ]);
        let what = format!("{}.{}", relation.schema, relation.identifier);
        match Lock::try_acquire(store, &path, run_id, "", &what, lease).await {
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
        holder: Holder<'_>,
        timeout: Duration,
        mut waiting: impl FnMut(&str),
    ) -> Result<Lock, LockError> {
        let Holder { run_id, command, lease } = holder;
        let started = Instant::now();
        let mut told = false;
        loop {
            match Lock::try_acquire(store.clone(), &path, run_id, command, display_path, lease).await {
                Ok(lock) => return Ok(lock),
                Err(Busy::Failed(source)) => {
                    return Err(LockError::Store {
                        lock: display_path.to_string(),
                        source,
                    })
                }
                Err(Busy::Held(holder)) => {
                    if started.elapsed() >= timeout {
                        return Err(LockError::Timeout {
                            lock: display_path.to_string(),
                            holder,
                            waited: timeout,
                        });
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
        lease: Duration,
    ) -> Result<Lock, Busy> {
        use datafusion::object_store::Error as StoreError;
        let now = now();
        let record = LockRecord {
            run_id: run_id.to_string(),
            pid: std::process::id(),
            host: host_name(),
            since: now.clone(),
            command: command.to_string(),
            heartbeat: Some(now),
            lease_seconds: Some(lease.as_secs().max(1)),
        };
        let payload = PutPayload::from(serde_json::to_vec(&record).expect("lock record serialises"));
        let failed = |error: StoreError| Busy::Failed(error.into());
        let mut recovered = None;
        for _attempt in 0..3 {
            match store.put_opts(path, payload.clone(), PutMode::Create.into()).await {
                Ok(_) => return Ok(Lock::held(store, path.clone(), record, lease, recovered)),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(error) => return Err(failed(error)),
            }
            let (bytes, modified) = match store.get(path).await {
                Ok(existing) => {
                    let modified = existing.meta.last_modified;
                    (existing.bytes().await.map_err(failed)?, modified)
                }
                // Released between the put and the read: try again.
                Err(StoreError::NotFound { .. }) => continue,
                Err(error) => return Err(failed(error)),
            };
            let Ok(holder) = serde_json::from_slice::<LockRecord>(&bytes) else {
                return Err(Busy::Held("unreadable lock".into()));
            };
            let Some(why) = staleness(&holder, modified) else {
                return Err(Busy::Held(holder.describe()));
            };
            // Only one run replaces a stale record: the one that creates its claim (an object
            // named after the record, created only if absent). Without it, two runs that both
            // saw the record expire could each delete the lock the other just took.
            let claim = StorePath::from(format!("{path}.claim-{}", &crate::project::sha256(&bytes)[..16]));
            match store.put_opts(&claim, PutPayload::new(), PutMode::Create.into()).await {
                Ok(_) => {}
                Err(StoreError::AlreadyExists { .. }) => {
                    // A claim outlives its run only if that run crashed while replacing the lock.
                    if claim_abandoned(&store, &claim, lease).await {
                        let _ = store.delete(&claim).await;
                        continue;
                    }
                    return Err(Busy::Held(format!(
                        "{} (another run is replacing this stale lock)",
                        holder.describe()
                    )));
                }
                Err(error) => return Err(failed(error)),
            }
            let unchanged = match store.get(path).await {
                Ok(current) => current.bytes().await.is_ok_and(|current| current == bytes),
                Err(_) => false,
            };
            if unchanged {
                if let Err(error) = store.delete(path).await {
                    let _ = store.delete(&claim).await;
                    return Err(failed(error));
                }
                recovered = Some(format!(
                    "removed a stale lock on {what} left by {}, {why}",
                    holder.describe()
                ));
                dead_runs().insert(holder.run_id.clone());
            }
            let created = store.put_opts(path, payload.clone(), PutMode::Create.into()).await;
            let _ = store.delete(&claim).await;
            match created {
                Ok(_) => return Ok(Lock::held(store, path.clone(), record, lease, recovered)),
                // Another run took it in between: the next attempt names it.
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(error) => return Err(failed(error)),
            }
        }
        Err(Busy::Held(
            "another run took the lock while a stale one was being replaced".into(),
        ))
    }

    /// A lock just created with `record`, renewed from now on.
    fn held(
        store: Arc<dyn ObjectStore>,
        path: StorePath,
        record: LockRecord,
        lease: Duration,
        recovered: Option<String>,
    ) -> Lock {
        let released = Arc::new(tokio::sync::Mutex::new(false));
        let run_id = record.run_id.clone();
        let heartbeat = tokio::spawn(renew(store.clone(), path.clone(), record, lease, released.clone()));
        Lock {
            store,
            path,
            recovered,
            run_id,
            heartbeat,
            released,
        }
    }

    /// Stops renewing and deletes the lock, if it is still this run's (a lock taken over after
    /// this process stalled for a whole lease belongs to its new holder).
    pub async fn release(self) {
        // Waits for a renewal in flight, so the record is not written again after the delete.
        let mut released = self.released.lock().await;
        *released = true;
        self.heartbeat.abort();
        let ours = match self.store.get(&self.path).await {
            Ok(existing) => existing
                .bytes()
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice::<LockRecord>(&bytes).ok())
                .is_some_and(|record| record.run_id == self.run_id && record.pid == std::process::id()),
            Err(_) => false,
        };
        if ours {
            // A lock that cannot be deleted is replaced by the next run once its lease runs out.
            let _ = self.store.delete(&self.path).await;
        }
    }
}

/// The run holding a lock, from its record.
pub(super) fn run_of(record: &[u8]) -> Option<String> {
    serde_json::from_slice::<LockRecord>(record)
        .ok()
        .map(|record| record.run_id)
}

/// Whether a claim on a stale lock was left by a run that crashed while replacing it: it is
/// older than a lease (by the store's clock).
async fn claim_abandoned(store: &Arc<dyn ObjectStore>, claim: &StorePath, lease: Duration) -> bool {
    match store.head(claim).await {
        Ok(meta) => (chrono::Utc::now() - meta.last_modified)
            .to_std()
            .is_ok_and(|age| age > lease),
        Err(_) => true,
    }
}

/// Rewrites the lock's heartbeat every quarter of its lease while the lock is held. The record is
/// read first: a lock that is no longer this run's (taken over after this process stalled for a
/// whole lease) is left to its new holder. A failed read or write is retried at the next beat
/// (the lease allows for three misses).
async fn renew(
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    mut record: LockRecord,
    lease: Duration,
    released: Arc<tokio::sync::Mutex<bool>>,
) {
    use datafusion::object_store::Error as StoreError;
    let every = (lease / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let released = released.lock().await;
        if *released {
            return;
        }
        let current = match store.get(&path).await {
            Ok(existing) => match existing.bytes().await {
                Ok(bytes) => serde_json::from_slice::<LockRecord>(&bytes).ok(),
                Err(_) => continue,
            },
            // Deleted: whoever did so took the lock away; there is nothing left to renew.
            Err(StoreError::NotFound { .. }) => return,
            Err(_) => continue,
        };
        match current {
            Some(current) if current.run_id == record.run_id && current.pid == record.pid => {}
            Some(_) => return,
            None => continue,
        }
        record.heartbeat = Some(now());
        let payload = serde_json::to_vec(&record).expect("lock record serialises");
        let _ = store
            .put_opts(&path, PutPayload::from(payload), PutMode::Overwrite.into())
            .await;
        drop(released);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Why a lock is stale (see the module notes), or `None` while its holder may still be running.
/// `modified` is when the record was last written, by the store's clock (not the holder's, which
/// may be off).
fn staleness(record: &LockRecord, modified: chrono::DateTime<chrono::Utc>) -> Option<String> {
    if record.host == host_name() && record.pid != std::process::id() && !process_exists(record.pid) {
        return Some("which is no longer running".into());
    }
    if dead_runs().contains(&record.run_id) {
        return Some("whose other locks this run found stale".into());
    }
    // Records written before leases existed carry no lease: only the process check applies.
    let lease = Duration::from_secs(record.lease_seconds?);
    let silent = (chrono::Utc::now() - modified).to_std().ok()?;
    (silent > lease).then(|| {
        format!(
            "whose lease of {} s ran out {} s after its last heartbeat",
            lease.as_secs(),
            silent.as_secs()
        )
    })
}

/// Runs whose stale locks this process replaced. Their other locks are stale too, even where the
/// store last saw them renewed a little later (a run renews each of its locks on its own beat):
/// a run that takes over a crashed run's run lock would otherwise find that run's table locks
/// live for up to a quarter of a lease longer, and fail those tables.
fn dead_runs() -> std::sync::MutexGuard<'static, std::collections::HashSet<String>> {
    static DEAD: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> = std::sync::OnceLock::new();
    DEAD.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn process_exists(pid: u32) -> bool {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = Pid::from_u32(pid);
    let mut system = System::new();
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, ProcessRefreshKind::nothing());
    system.process(pid).is_some()
}

/// This host's name, as lock records give it. `TIDEMARK_LOCK_HOST` overrides it: the tests use it
/// to run processes of one machine as if on different hosts (where only the lease applies).
fn host_name() -> String {
    std::env::var("TIDEMARK_LOCK_HOST")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(sysinfo::System::host_name)
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests;
