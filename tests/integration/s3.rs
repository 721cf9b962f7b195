//! The warehouse on a real S3 server (SeaweedFS on 127.0.0.1, started by the tests):
//! the LMS project gives the same tables on S3 as on local disk (read back by pyarrow from the
//! documented paths), wrong credentials give a clear error that never prints the secret, and a
//! run killed or cut off from the server mid-write leaves the previous table version whole; a
//! live table lock on S3 is refused and a live run lock makes a second run wait; sources on S3
//! read like local files; a local pull-request build defers to production tables on S3.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::s3::{assert_same_tables, read_tables_with_pyarrow, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use crate::common::{example_project, fixture, reported_rows, tidemark, transcript};

/// The LMS example project at a size a debug build runs quickly.
const SMALL_LMS: &str = "{lms_learners: 240}";

fn with_s3_env(command: &mut std::process::Command, server: &S3Server, prefix: &str) {
    command
        .env("TIDEMARK_S3_WAREHOUSE", format!("s3://{BUCKET}/{prefix}"))
        .env("TIDEMARK_S3_ENDPOINT", &server.endpoint)
        .env("TIDEMARK_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("TIDEMARK_S3_SECRET_ACCESS_KEY", SECRET_KEY);
}

fn run_on_s3(project: &Path, server: &S3Server, prefix: &str, args: &[&str]) -> Output {
    let mut command = crate::common::command(project);
    with_s3_env(&mut command, server, prefix);
    command
        .args(args)
        .args(["--target", "s3"])
        .output()
        .expect("run tidemark")
}

#[test]
fn the_lms_project_on_s3_matches_local_disk_and_pyarrow_reads_it() {
    let server = S3Server::shared();
    let project = example_project();

    let local = tidemark(project.path(), &["build", "--vars", SMALL_LMS]);
    assert_eq!(local.status.code(), Some(0), "{}", transcript(&local, project.path()));
    let local_rows = reported_rows(project.path());

    let remote = run_on_s3(project.path(), server, "lms-same", &["build", "--vars", SMALL_LMS]);
    assert_eq!(remote.status.code(), Some(0), "{}", transcript(&remote, project.path()));
    let remote_rows = reported_rows(project.path());
    assert_eq!(local_rows, remote_rows, "row counts reported by the two runs");

    let on_disk = read_tables_with_pyarrow(&project.path().join("warehouse").display().to_string(), None);
    let on_s3 = read_tables_with_pyarrow(&format!("s3://{BUCKET}/lms-same"), Some(server));
    let tables = on_disk.as_object().expect("tables");
    assert!(tables.len() >= 15, "expected every LMS table, got {}", tables.len());
    assert_same_tables(&on_disk, &on_s3, "local disk vs S3");
    // pyarrow sees exactly the rows tidemark reported writing.
    for (table, rows) in &remote_rows {
        assert_eq!(
            on_s3[table]["rows"].as_u64(),
            Some(*rows),
            "{table}: tidemark reported {rows} rows"
        );
    }
    // The scorecard is really there, with its metrics.
    let columns = on_s3["main.learner_engagement"]["columns"].as_array().expect("columns");
    assert!(columns.iter().any(|c| c == "events_90d"), "{columns:?}");

    // `debug` on the S3 target checks the store.
    let mut command = crate::common::command(project.path());
    with_s3_env(&mut command, server, "lms-same");
    let debug = command.args(["debug", "--target", "s3"]).output().expect("debug");
    let text = transcript(&debug, project.path());
    assert_eq!(debug.status.code(), Some(0), "{text}");
    assert!(
        text.contains("s3://tidemark/lms-same is reachable, readable and writable"),
        "{text}"
    );
}

#[test]
fn wrong_credentials_give_a_clear_error_and_never_print_the_secret() {
    let server = S3Server::shared();
    let project = fixture("basic");
    let wrong_secret = "not-the-right-secret-9c2e71";
    std::fs::write(
        project.path().join("profiles.yml"),
        format!(
            "basic:\n  target: s3\n  outputs:\n    s3:\n      type: datafusion\n      warehouse: s3://{BUCKET}/wrong-credentials\n      storage:\n{}\n",
            server.storage_yaml_with("        ", ACCESS_KEY, wrong_secret)
        ),
    )
    .expect("profiles.yml");

    let debug = tidemark(project.path(), &["debug"]);
    let text = transcript(&debug, project.path());
    assert_eq!(debug.status.code(), Some(1), "{text}");
    assert!(text.contains("warehouse  FAIL"), "{text}");
    assert!(
        text.contains("check storage.access_key_id and storage.secret_access_key"),
        "{text}"
    );

    let run = tidemark(project.path(), &["run"]);
    let text = transcript(&run, project.path());
    assert_ne!(run.status.code(), Some(0), "{text}");
    assert!(text.contains("rejected the credentials"), "{text}");

    // The secret is in no output and no artifact.
    assert!(!text.contains(wrong_secret) && !text.contains(SECRET_KEY), "{text}");
    for file in walkdir::WalkDir::new(project.path()) {
        let file = file.expect("walk");
        if file.file_type().is_file() && file.file_name() != "profiles.yml" {
            let content = std::fs::read_to_string(file.path()).unwrap_or_default();
            assert!(
                !content.contains(wrong_secret),
                "{} holds the secret",
                file.path().display()
            );
        }
    }
}

/// Writes a profile for the `big` fixture on `server` and runs version 1 (1,000 rows).
fn big_project_on(server: &S3Server, prefix: &str) -> tempfile::TempDir {
    let project = fixture("big");
    std::fs::write(
        project.path().join("profiles.yml"),
        format!(
            "big:\n  target: s3\n  outputs:\n    s3:\n      type: datafusion\n      warehouse: s3://{BUCKET}/{prefix}\n      storage:\n{}\n",
            server.storage_yaml("        ")
        ),
    )
    .expect("profiles.yml");
    let output = tidemark(project.path(), &["run"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    project
}

/// Starts writing 30M rows and returns the child once its node has started writing.
fn start_big_write(project: &Path) -> std::process::Child {
    let child = crate::common::spawn_until_node_started(
        crate::common::command(project)
            .args(["run", "--vars", "{rows: 30000000}", "--log-format", "json"])
            .stderr(Stdio::piped()),
    );
    // Let the upload get going (several multipart parts).
    std::thread::sleep(Duration::from_secs(4));
    child
}

fn big_rows_on(server: &S3Server, prefix: &str) -> u64 {
    let tables = read_tables_with_pyarrow(&format!("s3://{BUCKET}/{prefix}"), Some(server));
    tables["main.big"]["rows"].as_u64().expect("big is readable")
}

#[test]
fn killing_a_run_while_it_writes_to_s3_leaves_the_previous_version() {
    let server = S3Server::shared();
    let project = big_project_on(server, "kill-mid-write");
    assert_eq!(big_rows_on(server, "kill-mid-write"), 1000);

    let mut child = start_big_write(project.path());
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the run ended before it was killed"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(
        big_rows_on(server, "kill-mid-write"),
        1000,
        "the previous version is whole"
    );

    // The next run reports the dead run's lock, replaces it and commits.
    let output = tidemark(project.path(), &["run", "--vars", "{rows: 2000}"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("stale lock"), "{text}");
    assert_eq!(big_rows_on(server, "kill-mid-write"), 2000);
}

#[test]
fn the_server_stopped_mid_run_leaves_the_previous_tables_whole() {
    let mut server = S3Server::start();
    let project = big_project_on(&server, "stopped");
    assert_eq!(big_rows_on(&server, "stopped"), 1000);

    let child = start_big_write(project.path());
    server.stop();
    let started = Instant::now();
    let output = child.wait_with_output().expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the run hung after the server stopped"
    );
    assert_eq!(output.status.code(), Some(1));
    let results = std::fs::read_to_string(project.path().join("target/run_results.json")).expect("run_results");
    assert!(
        results.contains("cannot connect to the store: check storage.endpoint"),
        "the error says the store is unreachable: {results}"
    );

    server.restart();
    assert_eq!(big_rows_on(&server, "stopped"), 1000, "the previous version is whole");
    let output = tidemark(project.path(), &["run"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    assert_eq!(big_rows_on(&server, "stopped"), 1000);
}

#[test]
fn a_table_locked_on_s3_by_a_live_run_is_refused() {
    use object_store::{ObjectStoreExt, PutPayload};
    let server = S3Server::shared();
    let project = big_project_on(server, "live-lock");
    // Another run (this test process, alive) holds the table's lock object on S3.
    let store = server.client();
    let lock = object_store::path::Path::from("live-lock/_tidemark/locks/main/big.lock");
    let record = crate::common::lock_record(std::process::id(), None);
    let runtime = crate::common::s3::runtime();
    runtime
        .block_on(store.put(&lock, PutPayload::from(record.into_bytes())))
        .expect("put lock");

    let output = tidemark(project.path(), &["run", "--vars", "{rows: 5}"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("table main.big is being written by another run (run other-run"),
        "{text}"
    );
    assert_eq!(big_rows_on(server, "live-lock"), 1000, "the table is untouched");
    runtime.block_on(store.delete(&lock)).expect("release");
}

#[test]
fn sources_are_read_from_s3_with_the_targets_storage_settings() {
    use object_store::{ObjectStoreExt, PutPayload};
    let server = S3Server::shared();
    // The same NDJSON statements (nested xAPI objects, Hive day folders) on local disk and on S3.
    let local = fixture("incremental");
    run_ok_in(local.path());
    let remote = fixture("incremental");
    let store = server.client();
    let runtime = crate::common::s3::runtime();
    let data = remote.path().join("data/events");
    for entry in walkdir::WalkDir::new(&data) {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(&data).expect("inside").display().to_string();
            let key = object_store::path::Path::from(format!("exports/events/{relative}"));
            let bytes = std::fs::read(entry.path()).expect("read");
            runtime
                .block_on(store.put(&key, PutPayload::from(bytes)))
                .expect("upload");
        }
    }
    std::fs::remove_dir_all(&data).expect("remove the local copy");
    let sources = remote.path().join("models/sources.yml");
    let text = std::fs::read_to_string(&sources).expect("sources").replace(
        "external_location: data/events/",
        &format!("external_location: s3://{BUCKET}/exports/events/"),
    );
    std::fs::write(&sources, text).expect("write sources");
    std::fs::write(
        remote.path().join("profiles.yml"),
        format!(
            "incremental:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      warehouse: warehouse\n      storage:\n{}\n",
            server.storage_yaml("        ")
        ),
    )
    .expect("profiles.yml");
    run_ok_in(remote.path());
    let read = |project: &Path| read_tables_with_pyarrow(&project.join("warehouse").display().to_string(), None);
    assert_same_tables(&read(local.path()), &read(remote.path()), "local vs S3 sources");

    // debug lists the source's store.
    let debug = tidemark(remote.path(), &["debug"]);
    let text = transcript(&debug, remote.path());
    assert_eq!(debug.status.code(), Some(0), "{text}");
    assert!(text.contains("source     OK"), "{text}");
}

fn run_ok_in(project: &Path) {
    let output = tidemark(project, &["run"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project));
}

#[test]
fn the_run_lock_on_s3_makes_a_second_run_wait() {
    use object_store::{ObjectStoreExt, PutPayload};
    let server = S3Server::shared();
    let project = big_project_on(server, "run-lock");
    // Another run (this test process, alive) holds the warehouse's run lock on S3.
    let store = server.client();
    let lock = object_store::path::Path::from("run-lock/_tidemark/locks/run.lock");
    let record = crate::common::lock_record(std::process::id(), Some("tidemark build"));
    let runtime = crate::common::s3::runtime();
    runtime
        .block_on(store.put(&lock, PutPayload::from(record.into_bytes())))
        .expect("put lock");

    let output = tidemark(project.path(), &["run", "--vars", "{rows: 5}", "--lock-timeout", "1"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "another run holds the run lock s3://{BUCKET}/run-lock/_tidemark/locks/run.lock (`tidemark build`, run other-run"
        )),
        "{text}"
    );
    assert_eq!(big_rows_on(server, "run-lock"), 1000, "the table is untouched");

    // The holder finishes two seconds later; the waiting run then goes ahead.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        // A client of its own: the first one's connections belong to the other runtime.
        let store = server.client();
        crate::common::s3::runtime()
            .block_on(store.delete(&lock))
            .expect("release");
    });
    let output = tidemark(project.path(), &["run", "--vars", "{rows: 5}"]);
    releaser.join().expect("releaser");
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Waiting for another run to finish (`tidemark build`, run other-run"),
        "{text}"
    );
    assert_eq!(big_rows_on(server, "run-lock"), 5);
}

#[test]
fn a_pull_request_build_defers_to_production_tables_on_s3() {
    let server = S3Server::shared();
    let fixture_folder = fixture("slim_ci");
    let project = fixture_folder.path().join("base");
    // Production builds on S3; the pull request's CI target is a local folder with no storage
    // settings of its own, so --defer reaches S3 with the production target's settings.
    std::fs::write(
        project.join("profiles.yml"),
        format!(
            "slim:\n  target: prod\n  outputs:\n    prod:\n      type: datafusion\n      warehouse: s3://{BUCKET}/slim-prod\n      storage:\n{}\n    ci:\n      type: datafusion\n      warehouse: ci_wh\n      schema: pr_42\n",
            server.storage_yaml("        ")
        ),
    )
    .expect("profiles.yml");
    let output = tidemark(&project, &["build"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, &project));
    let state = fixture_folder.path().join("prod-state");
    crate::common::copy_tree(&project.join("target"), &state);
    crate::common::copy_tree(&fixture_folder.path().join("changed"), &project);

    let output = tidemark(
        &project,
        &[
            "build",
            "-t",
            "ci",
            "-s",
            "state:modified+",
            "--defer",
            "--state",
            state.to_str().unwrap(),
        ],
    );
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "Deferring 5 unselected tables to the --state run's warehouse s3://{BUCKET}/slim-prod"
        )),
        "{text}"
    );
    assert!(!text.contains(SECRET_KEY), "{text}");
    let mut built: Vec<String> = std::fs::read_dir(project.join("ci_wh/pr_42"))
        .expect("ci tables")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    built.sort();
    assert_eq!(
        built,
        [
            "course_summary",
            "engagement_alert_cases",
            "engagement_alerts",
            "learner_activity",
            "learner_streaks",
            "team_activity",
            "team_labels"
        ]
    );
}
