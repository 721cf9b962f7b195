//! Runs on two hosts against one S3 warehouse (SeaweedFS on 127.0.0.1).
//!
//! Each "host" is a copy of the project (its own `target/`) whose processes name a host of their
//! own in lock records (`TIDEMARK_LOCK_HOST`), so the process check of a lock does not apply
//! across them and only the lease does, as between two machines.
//!
//! - Interleaved builds from both hosts lose no update: a `merge` model adds one to its own
//!   previous value and an `append` model adds the run's name, so a run that read the table
//!   while another wrote it would show as a missing count or run.
//!   `TIDEMARK_HOST_RUNS` sets the number of runs (default 50, split between the hosts).
//! - A holder killed on one host stops blocking the other once its lease runs out.
//! - A live holder whose work outlasts its lease many times over is never taken over: its
//!   heartbeat keeps the lock, and the other host waits for it to finish.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::s3::{read_tables_with_pyarrow, S3Server, BUCKET};
use crate::common::{fixture, transcript};

const COUNTER: &str = "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='k') }}
select 'k' as k,
{% if is_incremental() %}(select max(n) from {{ this }}) + 1{% else %}cast(1 as bigint){% endif %} as n,
'{{ var(\"run\", \"unset\") }}' as last_run
";

const RUNS: &str = "{{ config(materialized='incremental', incremental_strategy='append') }}
select '{{ var(\"run\", \"unset\") }}' as run
";

/// The `big` fixture with the counter and run-log models, on `server` under `prefix`, with a
/// lease of `lease`.
fn host_project(server: &S3Server, prefix: &str, lease: &str) -> tempfile::TempDir {
    let project = fixture("big");
    let root = project.path();
    std::fs::write(root.join("models/counter.sql"), COUNTER).expect("counter.sql");
    std::fs::write(root.join("models/runs.sql"), RUNS).expect("runs.sql");
    std::fs::write(
        root.join("profiles.yml"),
        format!(
            "big:\n  target: s3\n  outputs:\n    s3:\n      type: datafusion\n      warehouse: s3://{BUCKET}/{prefix}\n      lock_lease: {lease}\n      storage:\n{}\n",
            server.storage_yaml("        ")
        ),
    )
    .expect("profiles.yml");
    project
}

fn on_host(project: &Path, host: &str) -> Command {
    let mut command = crate::common::command(project);
    command.env("TIDEMARK_LOCK_HOST", host);
    command
}

fn build(project: &Path, host: &str, run: &str) -> Output {
    on_host(project, host)
        .args([
            "build",
            "--select",
            "counter",
            "runs",
            "--vars",
            &format!("{{run: {run}}}"),
            "--lock-timeout",
            "600",
        ])
        .output()
        .expect("run tidemark")
}

fn tables(server: &S3Server, prefix: &str) -> serde_json::Value {
    read_tables_with_pyarrow(&format!("s3://{BUCKET}/{prefix}"), Some(server))
}

#[test]
#[allow(clippy::print_stderr, reason = "the test reports its counts")]
fn interleaved_runs_on_two_hosts_lose_no_update() {
    let runs: usize = std::env::var("TIDEMARK_HOST_RUNS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(50);
    let server = S3Server::shared();
    let hosts = [
        ("host-a", host_project(server, "hosts", "2s")),
        ("host-b", host_project(server, "hosts", "2s")),
    ];
    let started = Instant::now();
    let waited = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for (index, (host, project)) in hosts.iter().enumerate() {
            let waited = &waited;
            scope.spawn(move || {
                for run in (index..runs).step_by(2) {
                    let output = build(project.path(), host, &format!("r{run}"));
                    let text = transcript(&output, project.path());
                    assert_eq!(output.status.code(), Some(0), "{host}, run r{run}: {text}");
                    assert!(
                        !text.contains("stale lock"),
                        "{host}, run r{run}: a live run's lock was taken over: {text}"
                    );
                    if text.contains("Waiting for another run to finish") {
                        waited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let tables = tables(server, "hosts");
    let counter = &tables["main.counter"];
    assert_eq!(counter["rows"], 1, "{counter}");
    assert_eq!(
        counter["data"][0][1], runs as u64,
        "the counter lost updates: {counter}"
    );
    let mut logged: Vec<String> = tables["main.runs"]["data"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|row| row[0].as_str().expect("run name").to_string())
        .collect();
    logged.sort();
    let mut expected: Vec<String> = (0..runs).map(|run| format!("r{run}")).collect();
    expected.sort();
    assert_eq!(logged, expected, "every run is logged once");
    let waited = waited.into_inner();
    eprintln!(
        "{runs} runs from 2 hosts in {:.0} s: {waited} waited for the other host's lock, 0 lost updates",
        started.elapsed().as_secs_f64()
    );
    assert!(waited > 0, "the runs never overlapped, so the test proved nothing");
}

/// Starts writing `rows` rows of `big` on `host`; returns once its node has started.
fn start_big_write(project: &Path, host: &str, rows: u64) -> Child {
    crate::common::spawn_until_node_started(
        on_host(project, host)
            .args([
                "run",
                "--select",
                "big",
                "--vars",
                &format!("{{rows: {rows}}}"),
                "--log-format",
                "json",
            ])
            .stderr(Stdio::piped()),
    )
}

fn big_rows(server: &S3Server, prefix: &str) -> u64 {
    tables(server, prefix)["main.big"]["rows"]
        .as_u64()
        .expect("big is readable")
}

#[test]
fn a_holder_killed_on_another_host_stops_blocking_once_its_lease_runs_out() {
    let server = S3Server::shared();
    let a = host_project(server, "hosts-crash", "3s");
    let b = host_project(server, "hosts-crash", "3s");
    let mut child = start_big_write(a.path(), "host-a", 30_000_000);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let killed = Instant::now();

    let output = on_host(b.path(), "host-b")
        .args(["run", "--select", "big", "--vars", "{rows: 7}", "--lock-timeout", "60"])
        .output()
        .expect("run tidemark");
    let text = transcript(&output, b.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    // host-b cannot see host-a's process: it waits for the lease, then replaces the lock.
    assert!(text.contains("Waiting for another run to finish"), "{text}");
    assert!(
        text.contains("whose lease of 3 s ran out"),
        "the lock was replaced for its lease: {text}"
    );
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "the lock was replaced before its lease ran out"
    );
    assert_eq!(big_rows(server, "hosts-crash"), 7);
}

#[test]
fn a_live_holder_on_another_host_is_never_taken_over() {
    let server = S3Server::shared();
    let a = host_project(server, "hosts-live", "2s");
    let b = host_project(server, "hosts-live", "2s");
    // Work that takes many leases: host-a renews its lock all along.
    let clock = Instant::now();
    let child = start_big_write(a.path(), "host-a", 12_000_000);
    let waiter = on_host(b.path(), "host-b")
        .args(["run", "--select", "big", "--vars", "{rows: 7}", "--lock-timeout", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the waiting run");
    let first = child.wait_with_output().expect("host-a");
    let first_took = clock.elapsed();
    assert_eq!(first.status.code(), Some(0), "{}", transcript(&first, a.path()));
    let second = waiter.wait_with_output().expect("host-b");
    let text = transcript(&second, b.path());
    assert_eq!(second.status.code(), Some(0), "{text}");
    assert!(
        first_took > Duration::from_secs(6),
        "host-a's run took {first_took:?}, not several leases: the test proved nothing"
    );
    assert!(text.contains("Waiting for another run to finish"), "{text}");
    assert!(
        !text.contains("stale lock"),
        "host-a's live lock was taken over: {text}"
    );
    // host-b wrote after host-a finished.
    assert_eq!(big_rows(server, "hosts-live"), 7);
}
