//! Locks in an object store: one writer per table, one run per warehouse and per `target/`.
//!
//! A lock is an object created with a conditional put (`PutMode::Create`); its record names the
//! run, process and host holding it. A lock is *stale*, and is reported and replaced, when
//! - it was taken on this host by a process that no longer exists (checked with `sysinfo`, so the
//!   same on Linux, macOS and Windows), or
//! - its lease ran out: the holder rewrites the record's `heartbeat` every quarter of the lease
//!   ([`DEFAULT_LEASE`], a target's `lock_lease`), so a record whose heartbeat is older than its
//!   lease belongs to a run that crashed or hung on some other host.
//!
//! A live run is never taken over: its process exists, and its heartbeat is renewed in time.

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
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
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
    ) -> Result<Lock, String> {
        let Holder { run_id, command, lease } = holder;
        let started = Instant::now();
        let mut told = false;
        loop {
            match Lock::try_acquire(store.clone(), &path, run_id, command, display_path, lease).await {
                Ok(lock) => return Ok(lock),
                Err(Busy::Failed(error)) => return Err(format!("cannot take the run lock {display_path}: {error}")),
                Err(Busy::Held(holder)) => {
                    if started.elapsed() >= timeout {
                        return Err(format!(
                            "another run holds the run lock {display_path} ({holder}) and did not finish within {} s (--lock-timeout); if no tidemark run is active, delete {display_path} (a crashed run's lock also expires {} s after its last heartbeat: lock_lease)",
                            timeout.as_secs(),
                            lease.as_secs()
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
        lease: Duration,
    ) -> Result<Lock, Busy> {
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
        let payload = serde_json::to_vec(&record).expect("lock record serialises");
        let mut recovered = None;
        for _attempt in 0..2 {
            match store
                .put_opts(path, PutPayload::from(payload.clone()), PutMode::Create.into())
                .await
            {
                Ok(_) => {
                    let heartbeat = tokio::spawn(renew(store.clone(), path.clone(), record, lease));
                    return Ok(Lock {
                        store,
                        path: path.clone(),
                        recovered,
                        heartbeat,
                    });
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
                        Some(holder) if staleness(&holder).is_some() => {
                            let why = staleness(&holder).unwrap_or_default();
                            recovered = Some(format!(
                                "removed a stale lock on {what} left by {}, {why}",
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
        self.heartbeat.abort();
        // A lock that cannot be deleted is replaced by the next run once its lease runs out.
        let _ = self.store.delete(&self.path).await;
    }
}

/// Rewrites the lock's heartbeat every quarter of its lease while the lock is held. The record is
/// read first: a lock that is no longer this run's (taken over after this process stalled for a
/// whole lease) is left to its new holder.
async fn renew(store: Arc<dyn ObjectStore>, path: StorePath, mut record: LockRecord, lease: Duration) {
    let every = (lease / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let current = match store.get(&path).await {
            Ok(existing) => existing
                .bytes()
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice::<LockRecord>(&bytes).ok()),
            Err(_) => None,
        };
        if current.is_none_or(|current| current.run_id != record.run_id || current.pid != record.pid) {
            return;
        }
        record.heartbeat = Some(now());
        let payload = serde_json::to_vec(&record).expect("lock record serialises");
        // A failed renewal is retried at the next beat; the lease allows for three misses.
        let _ = store
            .put_opts(&path, PutPayload::from(payload), PutMode::Overwrite.into())
            .await;
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Why a lock is stale (see the module notes), or `None` while its holder may still be running.
fn staleness(record: &LockRecord) -> Option<String> {
    if record.host == host_name() && record.pid != std::process::id() && !process_exists(record.pid) {
        return Some("which is no longer running".into());
    }
    let lease = Duration::from_secs(record.lease_seconds?);
    let heartbeat = chrono::DateTime::parse_from_rfc3339(record.heartbeat.as_deref()?).ok()?;
    let silent = (chrono::Utc::now() - heartbeat.with_timezone(&chrono::Utc))
        .to_std()
        .ok()?;
    (silent > lease).then(|| {
        format!(
            "whose lease of {} s ran out {} s after its last heartbeat",
            lease.as_secs(),
            silent.as_secs()
        )
    })
}

fn process_exists(pid: u32) -> bool {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = Pid::from_u32(pid);
    let mut system = System::new();
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, ProcessRefreshKind::nothing());
    system.process(pid).is_some()
}

fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::object_store::local::LocalFileSystem;

    fn store(folder: &tempfile::TempDir) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(folder.path()).expect("local store"))
    }

    fn relation() -> RelationName {
        RelationName::table("main", "scorecard")
    }

    fn path() -> StorePath {
        StorePath::from("_tidemark/locks/main/scorecard.lock")
    }

    async fn plant(store: &Arc<dyn ObjectStore>, record: &LockRecord) {
        let payload = serde_json::to_vec(record).expect("serialises");
        store.put(&path(), PutPayload::from(payload)).await.expect("planted");
    }

    async fn read(store: &Arc<dyn ObjectStore>) -> LockRecord {
        let bytes = store
            .get(&path())
            .await
            .expect("lock exists")
            .bytes()
            .await
            .expect("read");
        serde_json::from_slice(&bytes).expect("a lock record")
    }

    fn record(host: &str, pid: u32, heartbeat_seconds_ago: i64, lease_seconds: u64) -> LockRecord {
        let heartbeat = chrono::Utc::now() - chrono::Duration::seconds(heartbeat_seconds_ago);
        LockRecord {
            run_id: "crashed-run".into(),
            pid,
            host: host.into(),
            since: heartbeat.to_rfc3339(),
            command: "tidemark build".into(),
            heartbeat: Some(heartbeat.to_rfc3339()),
            lease_seconds: Some(lease_seconds),
        }
    }

    #[tokio::test]
    async fn a_lock_whose_lease_ran_out_on_another_host_is_replaced() {
        let folder = tempfile::tempdir().expect("temp");
        let store = store(&folder);
        // The pid is this process's own: only the lease can tell the lock is stale.
        plant(&store, &record("another-host", std::process::id(), 300, 60)).await;
        let lock = Lock::table(store.clone(), &relation(), "new-run", Duration::from_secs(60))
            .await
            .expect("the expired lock is replaced");
        let recovered = lock.recovered.clone().expect("the replacement is reported");
        assert!(recovered.contains("crashed-run"), "{recovered}");
        assert!(recovered.contains("lease of 60 s ran out"), "{recovered}");
        assert_eq!(read(&store).await.run_id, "new-run");
        lock.release().await;
    }

    #[tokio::test]
    async fn a_lock_within_its_lease_on_another_host_is_kept() {
        let folder = tempfile::tempdir().expect("temp");
        let store = store(&folder);
        plant(&store, &record("another-host", 1, 10, 60)).await;
        let Err(MaterializeError::Locked { holder, .. }) =
            Lock::table(store.clone(), &relation(), "new-run", Duration::from_secs(60)).await
        else {
            panic!("a live lock on another host must not be taken");
        };
        assert!(
            holder.contains("crashed-run") && holder.contains("another-host"),
            "{holder}"
        );
        assert_eq!(read(&store).await.run_id, "crashed-run");
    }

    #[tokio::test]
    async fn a_lock_of_a_process_that_exited_on_this_host_is_replaced_at_once() {
        let folder = tempfile::tempdir().expect("temp");
        let store = store(&folder);
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("exits");
        // Its heartbeat is fresh, so only the process check can tell.
        plant(&store, &record(&host_name(), pid, 0, 3600)).await;
        let lock = Lock::table(store.clone(), &relation(), "new-run", Duration::from_secs(60))
            .await
            .expect("the dead process's lock is replaced");
        let recovered = lock.recovered.clone().expect("reported");
        assert!(recovered.contains("no longer running"), "{recovered}");
        lock.release().await;
    }

    #[tokio::test]
    async fn a_held_lock_renews_its_heartbeat_and_is_never_taken_over() {
        let folder = tempfile::tempdir().expect("temp");
        let store = store(&folder);
        let lease = Duration::from_secs(1);
        let held = Lock::table(store.clone(), &relation(), "live-run", lease)
            .await
            .expect("taken");
        let first = read(&store).await.heartbeat.expect("a heartbeat");
        // Three leases pass; without renewals the lock would have expired twice over.
        tokio::time::sleep(Duration::from_millis(3_200)).await;
        let renewed = read(&store).await.heartbeat.expect("a heartbeat");
        assert!(renewed > first, "the heartbeat was not renewed: {first} then {renewed}");
        // Seen from another host, the record must look alive.
        let mut seen_elsewhere = read(&store).await;
        seen_elsewhere.host = "another-host".into();
        assert_eq!(staleness(&seen_elsewhere), None);
        let taken = Lock::table(store.clone(), &relation(), "second-run", lease).await;
        assert!(
            matches!(taken, Err(MaterializeError::Locked { .. })),
            "a live lock was taken over"
        );
        held.release().await;
        assert!(store.get(&path()).await.is_err(), "release deletes the lock");
        let after = Lock::table(store.clone(), &relation(), "second-run", lease)
            .await
            .expect("free after release");
        after.release().await;
    }

    #[tokio::test]
    async fn a_dropped_lock_stops_renewing_and_expires_after_its_lease() {
        let folder = tempfile::tempdir().expect("temp");
        let store = store(&folder);
        let lease = Duration::from_secs(1);
        let held = Lock::table(store.clone(), &relation(), "crashing-run", lease)
            .await
            .expect("taken");
        // A crash: the renewal stops and the record stays behind.
        drop(held);
        let mut left = read(&store).await;
        left.host = "another-host".into();
        plant(&store, &left).await;
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        let lock = Lock::table(store.clone(), &relation(), "next-run", lease)
            .await
            .expect("expired after its lease");
        assert!(lock.recovered.is_some());
        lock.release().await;
    }
}
