//! The lock protocol against a real store: live holders kept, stale ones replaced, races.

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

/// Makes the planted lock look last written `seconds` ago (by the store's clock: the file's
/// modification time).
fn age(folder: &tempfile::TempDir, seconds: u64) {
    let file = std::fs::File::options()
        .write(true)
        .open(folder.path().join("_tidemark/locks/main/scorecard.lock"))
        .expect("lock file");
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(seconds))
        .expect("set mtime");
}

async fn modified(store: &Arc<dyn ObjectStore>) -> chrono::DateTime<chrono::Utc> {
    store.head(&path()).await.expect("lock exists").last_modified
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

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn record(host: &str, pid: u32, heartbeat_seconds_ago: i64, lease_seconds: u64) -> LockRecord {
    let heartbeat = chrono::Utc::now() - chrono::Duration::seconds(heartbeat_seconds_ago);
    LockRecord {
        // A run id of its own in each test: this process remembers the runs whose locks it
        // found stale (`dead_runs`), as a run does.
        run_id: format!(
            "crashed-run-{}",
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
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
    age(&folder, 300);
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
    assert!(read(&store).await.run_id.starts_with("crashed-run"));
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
    assert_eq!(staleness(&seen_elsewhere, modified(&store).await), None);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_runs_racing_to_replace_one_expired_lock_exactly_one_wins() {
    for round in 0..5 {
        let folder = tempfile::tempdir().expect("temp");
        let store = store(&folder);
        plant(&store, &record("another-host", std::process::id(), 300, 60)).await;
        age(&folder, 300);
        let contenders = (0..4).map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                Lock::table(store, &relation(), &format!("run-{index}"), Duration::from_secs(60)).await
            })
        });
        let mut winners = Vec::new();
        for contender in contenders.collect::<Vec<_>>() {
            match contender.await.expect("joins") {
                Ok(lock) => winners.push(lock),
                Err(MaterializeError::Locked { .. }) => {}
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} runs hold the lock", winners.len());
        let winner = winners.pop().expect("one");
        assert_eq!(read(&store).await.run_id, winner.run_id, "round {round}");
        winner.release().await;
    }
}

#[tokio::test]
async fn release_leaves_a_lock_that_another_run_took_over() {
    let folder = tempfile::tempdir().expect("temp");
    let store = store(&folder);
    let held = Lock::table(store.clone(), &relation(), "stalled-run", Duration::from_secs(60))
        .await
        .expect("taken");
    // Another run replaced it while this one stalled.
    plant(&store, &record("another-host", 1, 0, 60)).await;
    held.release().await;
    assert!(
        read(&store).await.run_id.starts_with("crashed-run"),
        "the new holder's lock stays"
    );
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
