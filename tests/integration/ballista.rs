//! Distributed runs on a real Apache DataFusion Ballista cluster: one `tidemark scheduler` and two
//! `tidemark executor` processes on 127.0.0.1 (`src/cluster.rs`), with the warehouse on the
//! loopback S3 server. Projects built there give the same tables as the
//! embedded build (read back by pyarrow); `debug` reports the cluster; a task that fails on an
//! executor fails its node with the executor's error and leaves the previous table readable.
#![cfg(feature = "ballista")]

use std::path::Path;
use std::process::Output;

use crate::common::cluster::ProcessCluster;
use crate::common::s3::{assert_same_tables, read_tables_with_pyarrow, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use crate::common::{example_project, fixture, reported_rows, tidemark, transcript};

/// A cluster of real processes (`tidemark scheduler`, two `tidemark executor`s with two task
/// slots each) whose nodes reach the test bucket through the `AWS_*` environment.
fn start_cluster(server: &S3Server) -> ProcessCluster {
    ProcessCluster::start(2, 2, Some(server))
}

/// A `profiles.yml` with an embedded target `local` (warehouse/ folder) and a `cluster` target on
/// `url` with its warehouse at `s3://<bucket>/<prefix>`.
fn write_profiles(project: &Path, profile: &str, server: &S3Server, url: &str, prefix: &str) {
    std::fs::write(
        project.join("profiles.yml"),
        format!(
            "{profile}:\n  target: local\n  outputs:\n    local:\n      type: datafusion\n      warehouse: warehouse\n    cluster:\n      type: ballista\n      url: {url}\n      warehouse: s3://{BUCKET}/{prefix}\n      storage:\n{}\n",
            server.storage_yaml("        ")
        ),
    )
    .expect("profiles.yml");
}

fn run(project: &Path, args: &[&str]) -> (Output, String) {
    let output = tidemark(project, args);
    let text = transcript(&output, project);
    (output, text)
}

/// Builds `project` embedded and on the cluster and compares every table.
fn same_tables_embedded_and_distributed(project: &Path, prefix: &str, extra: &[&str]) -> serde_json::Value {
    let (embedded, text) = run(project, &[&["build", "--target", "local"], extra].concat());
    assert_eq!(embedded.status.code(), Some(0), "{text}");
    let (distributed, text) = run(project, &[&["build", "--target", "cluster"], extra].concat());
    assert_eq!(distributed.status.code(), Some(0), "{text}");
    let on_disk = embedded_tables(project);
    let on_cluster = read_tables_with_pyarrow(&format!("s3://{BUCKET}/{prefix}"), Some(S3Server::shared()));
    assert!(!on_disk.as_object().expect("tables").is_empty(), "no tables written");
    assert_same_tables(&on_disk, &on_cluster, "embedded vs Ballista");
    on_cluster
}

#[test]
fn projects_built_on_ballista_match_the_embedded_build() {
    let server = S3Server::shared();
    let cluster = start_cluster(server);

    // SQL models, seeds, a view, generic tests.
    let basic = fixture("basic");
    write_profiles(basic.path(), "basic", server, &cluster.url(), "basic-ballista");
    // A partitioned table with a NULL partition value: the executors' folders must be the ones
    // the embedded writer names.
    std::fs::write(
        basic.path().join("models/marts/people_by_team.sql"),
        "{{ config(partition_by='team') }}\nselect id, name, case when id % 2 = 0 then team end as team\nfrom {{ ref('person_summary') }}\n",
    )
    .expect("partitioned model");
    let (debug, text) = run(basic.path(), &["debug", "--target", "cluster"]);
    assert_eq!(debug.status.code(), Some(0), "{text}");
    assert!(text.contains("is reachable, 2 executors registered"), "{text}");
    assert!(text.contains("a query ran on the cluster"), "{text}");
    let tables = same_tables_embedded_and_distributed(basic.path(), "basic-ballista", &[]);
    assert!(tables.get("main.person_summary").is_some(), "{tables}");
    assert!(tables.get("main.people_by_team").is_some(), "{tables}");

    // Metric models: daily roll-ups, scorecards with windows, comparisons, normalisation,
    // shrinkage, and alerts with streaks and gates.
    let metrics = fixture("metrics_golden");
    write_profiles(
        metrics.path(),
        "metrics_golden",
        server,
        &cluster.url(),
        "metrics-ballista",
    );
    let tables = same_tables_embedded_and_distributed(metrics.path(), "metrics-ballista", &[]);
    assert!(tables.get("main.alert_card_alerts").is_some(), "{tables}");

    // `sql_dialect: duckdb` is applied where the plan is made, so the cluster's executors divide
    // integers as doubles too.
    let dialect = fixture("duckdb_dialect");
    write_profiles(
        dialect.path(),
        "duckdb_dialect",
        server,
        &cluster.url(),
        "dialect-ballista",
    );
    let profiles = std::fs::read_to_string(dialect.path().join("profiles.yml")).expect("profiles.yml");
    let profiles = profiles
        .replace("type: datafusion\n", "type: datafusion\n      sql_dialect: duckdb\n")
        .replace("type: ballista\n", "type: ballista\n      sql_dialect: duckdb\n");
    std::fs::write(dialect.path().join("profiles.yml"), profiles).expect("profiles.yml");
    let tables = same_tables_embedded_and_distributed(dialect.path(), "dialect-ballista", &[]);
    // Order 1's amount is 1999 cents: 19.99 units, not 19.
    let facts = tables["main.order_facts"]["data"].to_string();
    assert!(facts.contains("[1,19.99,"), "integers divided as integers: {facts}");

    // A task that fails on an executor fails its node with the executor's error, and the
    // table's previous version stays readable.
    std::fs::write(
        basic.path().join("models/marts/person_summary.sql"),
        "select cast(concat('not a number ', cast(count(*) as varchar)) as int) as broken\nfrom {{ ref('stg_events') }}\n",
    )
    .expect("break person_summary");
    let (failed, text) = run(
        basic.path(),
        &["run", "--target", "cluster", "--select", "person_summary"],
    );
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(text.contains("Error in model person_summary"), "{text}");
    assert!(text.contains("Cannot cast string 'not a number"), "{text}");
    let after = read_tables_with_pyarrow(&format!("s3://{BUCKET}/basic-ballista"), Some(server));
    let before = embedded_tables(basic.path());
    assert_same_tables(&before, &after, "tables after the failed run");

    // A table function cannot travel to the cluster: the error says what to write instead.
    std::fs::write(
        basic.path().join("models/numbers.sql"),
        "select value from range(0, 3)\n",
    )
    .expect("model");
    let (failed, text) = run(basic.path(), &["run", "--target", "cluster", "--select", "numbers"]);
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(text.contains("Error in model numbers"), "{text}");
    assert!(
        text.contains("write `select unnest(range(0, n)) as value` instead"),
        "{text}"
    );
}

/// The LMS example project, through its own `ballista` target (its profile reads the cluster
/// and S3 settings from the environment), at 240 learners.
fn run_lms_on_cluster(project: &Path, server: &S3Server, url: &str, prefix: &str, args: &[&str]) -> (Output, String) {
    let output = lms_on_cluster(project, server, url, prefix, args)
        .args(["--vars", SMALL_LMS])
        .output()
        .expect("run tidemark");
    let text = transcript(&output, project);
    (output, text)
}

fn lms_on_cluster(project: &Path, server: &S3Server, url: &str, prefix: &str, args: &[&str]) -> std::process::Command {
    let mut command = crate::common::command(project);
    command
        .env("TIDEMARK_BALLISTA_URL", url)
        .env("TIDEMARK_S3_WAREHOUSE", format!("s3://{BUCKET}/{prefix}"))
        .env("TIDEMARK_S3_ENDPOINT", &server.endpoint)
        .env("TIDEMARK_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("TIDEMARK_S3_SECRET_ACCESS_KEY", SECRET_KEY)
        .args(args)
        .args(["--target", "ballista"]);
    command
}

/// Starts `command` and kills `executors` of the cluster once the run has been building
/// `model` for a second; returns the run's output.
fn kill_executors_mid_run(
    cluster: &mut ProcessCluster,
    mut command: std::process::Command,
    model: &str,
    executors: &[usize],
) -> Output {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tidemark");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    let started = format!("START sql incremental model main.{model} ");
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read stdout") == 0 {
            panic!("the run ended before {model} started:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains(&started) {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    for &index in executors {
        cluster.kill_executor(index);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read stdout");
    let mut output = child.wait_with_output().expect("wait for tidemark");
    output.stdout = format!("{seen}{rest}").into_bytes();
    output
}

#[test]
fn killed_executors_end_in_a_finished_or_failed_node_never_a_broken_table() {
    let server = S3Server::shared();
    let mut cluster = start_cluster(server);
    let project = example_project();
    let prefix = "lms-killed";
    let events = || {
        let tables = read_tables_with_pyarrow(&format!("s3://{BUCKET}/{prefix}"), Some(server));
        tables["main.synthetic_events"].clone()
    };
    let larger = ["--vars", "{lms_learners: 1500}"];

    // The previous version: 240 learners.
    let (first, text) = run_lms_on_cluster(
        project.path(),
        server,
        &cluster.url(),
        prefix,
        &["run", "--select", "+synthetic_events"],
    );
    assert_eq!(first.status.code(), Some(0), "{text}");

    // One of the two executors is killed while the generator runs at 1,500 learners: Ballista
    // runs the lost tasks again on the other one, and the table is what the embedded build writes.
    let mut command = lms_on_cluster(
        project.path(),
        server,
        &cluster.url(),
        prefix,
        &["run", "--select", "+synthetic_events", "--full-refresh"],
    );
    command.args(larger);
    let survived = kill_executors_mid_run(&mut cluster, command, "synthetic_events", &[0]);
    let text = transcript(&survived, project.path());
    assert_eq!(survived.status.code(), Some(0), "{text}");
    let (embedded, text) = run(
        project.path(),
        &[&["run", "--select", "+synthetic_events", "--full-refresh"][..], &larger].concat(),
    );
    assert_eq!(embedded.status.code(), Some(0), "{text}");
    let expected = read_tables_with_pyarrow(&project.path().join("warehouse").display().to_string(), None);
    let after_one = events();
    assert_same_tables(
        &serde_json::json!({"events": expected["main.synthetic_events"]}),
        &serde_json::json!({"events": after_one}),
        "after one executor was killed",
    );

    // The last executor is killed mid-run: no executor is left to finish the query, and the
    // node fails with that reason instead of waiting forever; the table keeps its last version.
    let mut command = lms_on_cluster(
        project.path(),
        server,
        &cluster.url(),
        prefix,
        &["run", "--select", "synthetic_events", "--full-refresh"],
    );
    command.args(["--vars", SMALL_LMS]);
    let failed = kill_executors_mid_run(&mut cluster, command, "synthetic_events", &[1]);
    let text = transcript(&failed, project.path());
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(text.contains("Error in model synthetic_events"), "{text}");
    assert!(text.contains("the Ballista cluster has no executor left"), "{text}");
    assert_same_tables(
        &serde_json::json!({"events": after_one}),
        &serde_json::json!({"events": events()}),
        "after the last executor was killed",
    );
}

const SMALL_LMS: &str = "{lms_learners: 240}";

#[test]
fn the_lms_project_builds_on_ballista_like_embedded_and_again_incrementally() {
    let server = S3Server::shared();
    let cluster = start_cluster(server);
    let project = example_project();
    let prefix = "lms-ballista";
    let on_cluster = || read_tables_with_pyarrow(&format!("s3://{BUCKET}/{prefix}"), Some(server));

    // The first build, then a second one (incremental models merge into what the first wrote:
    // new rows staged by the executors, partitions replaced).
    for round in ["first build", "incremental build"] {
        let (embedded, text) = run(project.path(), &["build", "--vars", SMALL_LMS]);
        assert_eq!(embedded.status.code(), Some(0), "{round}, embedded: {text}");
        let embedded_rows = reported_rows(project.path());
        let (distributed, text) = run_lms_on_cluster(project.path(), server, &cluster.url(), prefix, &["build"]);
        assert_eq!(distributed.status.code(), Some(0), "{round}, Ballista: {text}");
        assert!(text.contains("Target 'ballista' (ballista)"), "{text}");
        assert_eq!(embedded_rows, reported_rows(project.path()), "{round}: rows reported");
        let tables = on_cluster();
        assert!(tables.as_object().expect("tables").len() >= 16, "{round}: {tables}");
        assert_same_tables(
            &embedded_tables(project.path()),
            &tables,
            &format!("{round}: embedded vs Ballista"),
        );
        // The evaluation of the planted disengagement is the same on the cluster.
        let evaluation = &tables["main.alert_evaluation"];
        assert_eq!(evaluation["rows"], 3, "{evaluation}");
    }
}

/// The tables of the embedded build (the `local` target's warehouse folder), read by pyarrow.
fn embedded_tables(project: &Path) -> serde_json::Value {
    read_tables_with_pyarrow(&project.join("warehouse").display().to_string(), None)
}

#[test]
fn debug_names_an_unreachable_scheduler() {
    let server = S3Server::shared();
    let project = fixture("basic");
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    write_profiles(
        project.path(),
        "basic",
        server,
        &format!("df://127.0.0.1:{port}"),
        "unreachable",
    );
    let (debug, text) = run(project.path(), &["debug", "--target", "cluster"]);
    assert_eq!(debug.status.code(), Some(1), "{text}");
    assert!(text.contains("cluster    FAIL"), "{text}");
    assert!(
        text.contains(&format!("cannot reach the scheduler at http://127.0.0.1:{port}")),
        "{text}"
    );
}
