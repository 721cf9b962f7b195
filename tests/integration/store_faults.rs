//! Object-store faults: builds against SeaweedFS through a fault-injecting proxy on 127.0.0.1
//! (`common::fault_proxy`), and against a server killed and restarted mid-run.
//!
//! For each fault, transient (a few requests) and lasting (every matching request): the run
//! either retries its way to success or fails the node with a message naming the store problem;
//! the previous table version stays readable (read by pyarrow straight from the server, not
//! through the proxy) and the next run, the fault gone, succeeds and leaves no staged objects
//! behind.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
use crate::common::s3::{read_tables_with_pyarrow, S3Server, BUCKET};
use crate::common::{fixture, tidemark, transcript};

/// The `big` fixture on `endpoint` (the proxy) under `prefix`, with short retries.
fn project_through(endpoint: &str, server: &S3Server, prefix: &str) -> tempfile::TempDir {
    let project = fixture("big");
    let storage = server
        .storage_yaml("        ")
        .replace(&server.endpoint, endpoint)
        .replace("max_retries: 2", "max_retries: 3")
        .replace("retry_timeout: 10s", "retry_timeout: 8s");
    std::fs::write(
        project.path().join("profiles.yml"),
        format!(
            "big:\n  target: s3\n  outputs:\n    s3:\n      type: datafusion\n      warehouse: s3://{BUCKET}/{prefix}\n      storage:\n{storage}\n        request_timeout: 2s\n        connect_timeout: 2s\n"
        ),
    )
    .expect("profiles.yml");
    project
}

fn rows_on(server: &S3Server, prefix: &str) -> u64 {
    let tables = read_tables_with_pyarrow(&format!("s3://{BUCKET}/{prefix}"), Some(server));
    tables["main.big"]["rows"].as_u64().expect("big is readable")
}

fn run(project: &Path, rows: u64) -> (Option<i32>, String) {
    let output = tidemark(project, &["run", "--vars", &format!("{{rows: {rows}}}")]);
    (output.status.code(), transcript(&output, project))
}

/// Objects left under the prefix's staging folder, read straight from the server.
fn staged_objects(server: &S3Server, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let store = server.client();
    let folder = object_store::path::Path::from(format!("{prefix}/_tidemark/staging"));
    crate::common::s3::runtime().block_on(async {
        object_store::ObjectStore::list(&store, Some(&folder))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("list staging")
    })
}

/// One fault case: `rule` injected while version `rows` is built over version 1,000. A run that
/// fails must name `problem`; either way the table is then whole at one of the two versions, and
/// the next run without the fault succeeds and sweeps the staging folder.
#[allow(clippy::print_stderr, reason = "each case reports what happened")]
fn fault_case(name: &str, rule: Rule, rows: u64, problem: &str) -> &'static str {
    let server = S3Server::shared();
    let proxy = FaultProxy::start(&server.endpoint);
    let prefix = format!("faults-{name}");
    let project = project_through(&proxy.endpoint, server, &prefix);
    let (code, text) = run(project.path(), 1000);
    assert_eq!(code, Some(0), "{name}, version 1: {text}");
    let passed = proxy.requests();
    assert!(passed > 0, "the build did not go through the proxy");

    proxy.inject(rule);
    let clock = Instant::now();
    let (code, text) = run(project.path(), rows);
    let took = clock.elapsed();
    assert!(!proxy.injected().is_empty(), "{name}: no fault was injected: {text}");
    assert!(took < Duration::from_secs(120), "{name}: the run took {took:?}");
    let outcome = match code {
        Some(0) => {
            assert_eq!(rows_on(server, &prefix), rows, "{name}: retried to success");
            "retried to success"
        }
        Some(1) => {
            assert!(
                text.contains(problem),
                "{name}: the failure names the store problem ({problem}): {text}"
            );
            assert_eq!(rows_on(server, &prefix), 1000, "{name}: the previous version stays");
            "failed the node, previous version kept"
        }
        other => panic!("{name}: exit {other:?}: {text}"),
    };
    let message = text
        .lines()
        .find(|line| line.contains("warehouse storage:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    eprintln!(
        "{name}: {} fault(s) injected, {outcome} in {:.1} s {message}",
        proxy.injected().len(),
        took.as_secs_f64()
    );
    proxy.clear();
    let (code, text) = run(project.path(), rows + 1);
    assert_eq!(code, Some(0), "{name}, the run after the fault: {text}");
    assert_eq!(rows_on(server, &prefix), rows + 1);
    assert_eq!(
        staged_objects(server, &prefix),
        Vec::<String>::new(),
        "{name}: staged objects are left behind"
    );
    outcome
}

#[test]
fn transient_server_errors_are_retried() {
    let outcome = fault_case(
        "5xx-transient",
        Rule {
            method: Some("PUT"),
            path_contains: String::new(),
            fault: Fault::Status(503),
            times: 2,
        },
        2000,
        "server error",
    );
    assert_eq!(outcome, "retried to success");
}

#[test]
fn lasting_server_errors_fail_the_node_and_name_the_store() {
    let outcome = fault_case(
        "5xx-lasting",
        Rule {
            method: Some("PUT"),
            path_contains: "/_tidemark/staging/".into(),
            fault: Fault::Status(500),
            times: usize::MAX,
        },
        2000,
        "the store answered with a server error (HTTP 5xx), even after retries",
    );
    assert_eq!(outcome, "failed the node, previous version kept");
}

#[test]
fn a_connection_dropped_mid_upload_is_retried() {
    let outcome = fault_case(
        "drop-once",
        Rule {
            method: Some("PUT"),
            path_contains: "/_tidemark/staging/".into(),
            fault: Fault::DropMidUpload,
            times: 1,
        },
        200_000,
        "closed the connection",
    );
    assert_eq!(outcome, "retried to success");
}

#[test]
fn connections_dropped_on_every_upload_fail_the_node_and_name_the_store() {
    let outcome = fault_case(
        "drop-always",
        Rule {
            method: Some("PUT"),
            path_contains: "/_tidemark/staging/".into(),
            fault: Fault::DropMidUpload,
            times: usize::MAX,
        },
        200_000,
        "the store closed the connection mid-request, even after retries",
    );
    assert_eq!(outcome, "failed the node, previous version kept");
}

#[test]
fn a_slow_response_past_the_request_timeout_is_retried() {
    let outcome = fault_case(
        "slow-once",
        Rule {
            method: Some("PUT"),
            path_contains: "/_tidemark/staging/".into(),
            fault: Fault::Delay(Duration::from_secs(4)),
            times: 1,
        },
        2000,
        "did not answer in time",
    );
    assert_eq!(outcome, "retried to success");
}

#[test]
fn responses_slower_than_the_retry_timeout_fail_the_node_and_name_the_store() {
    let outcome = fault_case(
        "slow-always",
        Rule {
            method: Some("PUT"),
            path_contains: "/_tidemark/staging/".into(),
            fault: Fault::Delay(Duration::from_secs(4)),
            times: usize::MAX,
        },
        2000,
        "the store did not answer in time, even after retries",
    );
    assert_eq!(outcome, "failed the node, previous version kept");
}

#[test]
fn a_server_killed_and_restarted_mid_run_leaves_a_whole_table_and_a_clean_next_run() {
    let mut server = S3Server::start();
    let prefix = "restarted";
    let project = fixture("big");
    std::fs::write(
        project.path().join("profiles.yml"),
        format!(
            "big:\n  target: s3\n  outputs:\n    s3:\n      type: datafusion\n      warehouse: s3://{BUCKET}/{prefix}\n      storage:\n{}\n",
            server.storage_yaml("        ").replace("retry_timeout: 10s", "retry_timeout: 60s").replace("max_retries: 2", "max_retries: 10")
        ),
    )
    .expect("profiles.yml");
    let (code, text) = run(project.path(), 1000);
    assert_eq!(code, Some(0), "{text}");

    let child = crate::common::command(project.path())
        .args(["run", "--vars", "{rows: 1000000}"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tidemark");
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    let output = child.wait_with_output().expect("wait");
    let text = transcript(&output, project.path());
    match output.status.code() {
        Some(0) => assert_eq!(rows_on(&server, prefix), 1_000_000, "{text}"),
        Some(1) => {
            assert!(text.contains("the store") || text.contains("storage"), "{text}");
            assert_eq!(rows_on(&server, prefix), 1000, "the previous version stays: {text}");
        }
        other => panic!("exit {other:?}: {text}"),
    }
    let (code, text) = run(project.path(), 5);
    assert_eq!(code, Some(0), "the run after the restart: {text}");
    assert_eq!(rows_on(&server, prefix), 5);
    assert_eq!(
        staged_objects(&server, prefix),
        Vec::<String>::new(),
        "staged objects are left behind"
    );
}
