//! Commit guarantees of DESIGN.md, proven against the real binary:
//! killing `tidemark run` (SIGKILL) while it writes a large table leaves the previous version
//! whole and readable, and the next run recovers the lock the killed run left behind.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fixture, table_csv, tidemark, transcript};

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
    // object is being uploaded (its staging file exists next to the table).
    let mut child = common::command(project.path())
        .args(["run", "--vars", "{rows: 40000000}", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tidemark");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("tidemark ended before starting the node")
            .expect("read line");
        if line.contains("\"node_started\"") {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let staging = loop {
        let staged: Vec<_> = std::fs::read_dir(&table_folder)
            .expect("table folder")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("data.parquet#"))
            .collect();
        if let Some(name) = staged.first() {
            let size = std::fs::metadata(table_folder.join(name)).map(|m| m.len()).unwrap_or(0);
            if size > 1_000_000 {
                break name.clone();
            }
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
        table_folder.join(&staging).exists(),
        "the killed run's partial upload stays beside the table"
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let lock = project.path().join("warehouse/_tidemark/locks/main/big.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(
        &lock,
        format!(
            "{{\"run_id\":\"other-run\",\"pid\":{},\"host\":\"{host}\",\"since\":\"2026-11-22T00:00:00Z\"}}",
            std::process::id()
        ),
    )
    .unwrap();
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
