//! Commit guarantees of DESIGN.md, proven against the real binary:
//! killing `tidemark run` (SIGKILL) while it writes a large table leaves the previous version
//! whole and readable, and the next run recovers the lock the killed run left behind.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{fixture, table_csv, tidemark, transcript};

#[test]
fn killing_a_run_mid_write_leaves_the_previous_table_readable() {
    let project = fixture("big");
    let table_folder = project.path().join("warehouse/main/big");
    let table_file = table_folder.join("data.parquet");

    // Version 1: 1,000 rows.
    let output = tidemark(project.path(), &["run"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    let before = table_csv(&table_file);
    assert_eq!(before.lines().count(), 1001);

    // Start writing version 2 (40 million rows) and kill the process while the new Parquet
    // object is being written (under the run's staging folder, `_tidemark/staging/<run>/`).
    let mut child = crate::common::spawn_until_node_started(
        crate::common::command(project.path())
            .args(["run", "--vars", "{rows: 40000000}", "--log-format", "json"])
            .stderr(Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let staging_root = project.path().join("warehouse/_tidemark/staging");
    let staging = loop {
        let staged = walkdir::WalkDir::new(&staging_root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_file())
            .filter(|entry| entry.path().to_string_lossy().contains("/main/big/data.parquet"))
            .find(|entry| entry.metadata().map(|m| m.len()).unwrap_or(0) > 1_000_000);
        if let Some(entry) = staged {
            break entry.path().to_path_buf();
        }
        assert!(Instant::now() < deadline, "the new version never started uploading");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "tidemark finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        staging.exists(),
        "the killed run's partial file stays in its staging folder, never at the table's path"
    );
    assert!(
        !std::fs::read_dir(&table_folder)
            .expect("table folder")
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().starts_with("data.parquet#")),
        "nothing of the new version is beside the table"
    );

    // The table still reads whole, with exactly the previous contents.
    assert_eq!(table_csv(&table_file), before);

    // The next run detects the killed run's lock, replaces it and commits version 2.
    let output = tidemark(project.path(), &["run", "--vars", "{rows: 2000}"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("removed a stale lock on main.big"), "{text}");
    assert_eq!(table_csv(&table_file).lines().count(), 2001);
}

#[test]
fn a_table_locked_by_a_live_run_is_refused_with_the_holder() {
    let project = fixture("big");
    assert_eq!(tidemark(project.path(), &["run"]).status.code(), Some(0));
    let before = table_csv(&project.path().join("warehouse/main/big/data.parquet"));
    // A lock held by a live process (this test) on this host.
    let lock = project.path().join("warehouse/_tidemark/locks/main/big.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, crate::common::lock_record(std::process::id(), None)).unwrap();
    let output = tidemark(project.path(), &["run", "--vars", "{rows: 5}"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("table main.big is being written by another run (run other-run"),
        "{text}"
    );
    assert_eq!(
        table_csv(&project.path().join("warehouse/main/big/data.parquet")),
        before
    );
}

/// Waits until `path` exists or the child ends (which fails the test).
fn wait_for_file(path: &std::path::Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the first run ended before taking its lock"
        );
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn concurrent_runs_on_one_target_take_turns_and_lose_nothing() {
    let project = fixture("big");
    // A second clone of the project whose target writes to the first one's warehouse.
    let clone = fixture("big");
    let warehouse = project.path().join("warehouse");
    std::fs::write(
        clone.path().join("profiles.yml"),
        format!(
            "big:\n  target: shared\n  outputs:\n    shared:\n      type: embedded\n      warehouse: {}\n",
            warehouse.display()
        ),
    )
    .unwrap();

    // Run A writes six million rows and holds the locks for a while.
    let mut first = crate::common::command(project.path())
        .args(["run", "--vars", "{rows: 6000000}"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidemark");
    wait_for_file(&project.path().join("target/run.lock"), &mut first);
    wait_for_file(&warehouse.join("_tidemark/locks/run.lock"), &mut first);
    // Run B in the same project (same target/) and run C from the clone (same warehouse).
    let second = crate::common::command(project.path())
        .args(["run", "--vars", "{rows: 1000}"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidemark");
    let third = crate::common::command(clone.path())
        .args(["run", "--vars", "{rows: 2000}"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidemark");
    let first = first.wait_with_output().expect("run A");
    let second = second.wait_with_output().expect("run B");
    let third = third.wait_with_output().expect("run C");
    for (output, folder) in [
        (&first, project.path()),
        (&second, project.path()),
        (&third, clone.path()),
    ] {
        assert_eq!(output.status.code(), Some(0), "{}", transcript(output, folder));
    }
    let waited = |output: &std::process::Output, folder: &std::path::Path| {
        let text = transcript(output, folder);
        assert!(
            text.contains("Waiting for another run to finish (`tidemark run`, run "),
            "a run started while A held the locks and did not wait:\n{text}"
        );
    };
    waited(&second, project.path());
    waited(&third, clone.path());

    // Every run committed its own version, A's first; none was lost or overwritten.
    let log = warehouse.join("_tidemark/log/main/big");
    let mut rows: Vec<(u64, u64)> = std::fs::read_dir(&log)
        .expect("commit log")
        .map(|entry| {
            let record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            (record["version"].as_u64().unwrap(), record["rows"].as_u64().unwrap())
        })
        .collect();
    rows.sort();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0], (1, 6_000_000));
    let mut later: Vec<u64> = rows[1..].iter().map(|(_, rows)| *rows).collect();
    later.sort();
    assert_eq!(later, vec![1000, 2000]);
    // The table holds the last committed version, whole.
    let last = rows[2].1 as usize;
    assert_eq!(
        table_csv(&warehouse.join("main/big/data.parquet")).lines().count(),
        last + 1
    );
    // Each project's run_results.json is whole and belongs to its last run.
    for (folder, expected_rows) in [(project.path(), 1000), (clone.path(), 2000)] {
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("target/run_results.json")).unwrap()).unwrap();
        assert_eq!(results["results"][0]["rows_affected"], expected_rows);
    }
    // No lock is left behind.
    assert!(!project.path().join("target/run.lock").exists());
    assert!(!warehouse.join("_tidemark/locks/run.lock").exists());
}

#[test]
fn a_run_lock_is_waited_for_then_refused_and_a_stale_one_replaced() {
    let project = fixture("big");
    let lock = project.path().join("target/run.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let record = |pid: u32| crate::common::lock_record(pid, Some("tidemark build"));
    // Held by a live process (this test): the run waits, then gives up naming the holder.
    std::fs::write(&lock, record(std::process::id())).unwrap();
    let output = tidemark(project.path(), &["run", "--lock-timeout", "1"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("another run holds the run lock target/run.lock (`tidemark build`, run other-run — pid"),
        "{text}"
    );
    assert!(
        text.contains("if no tidemark run is active, delete target/run.lock"),
        "{text}"
    );
    assert!(
        !project.path().join("warehouse/main/big").exists(),
        "nothing was written"
    );

    // Held by a process that is gone: replaced, with a note, and the run goes on.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&lock, record(dead_pid)).unwrap();
    let output = tidemark(project.path(), &["run"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("removed a stale lock on target/run.lock left by `tidemark build`, run other-run"),
        "{text}"
    );
    assert!(!lock.exists());
}
