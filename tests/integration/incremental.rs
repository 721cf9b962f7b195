//! Incremental models: after new (and late) events arrive, an incremental run gives the same
//! tables, row for row, as a full refresh — for append, merge (with NULL keys), delete+insert
//! and insert_overwrite (partitioned, rewriting only the touched partitions); schema changes
//! follow `on_schema_change`. Sources are nested xAPI NDJSON files in Hive-style folders.

use std::path::Path;

use crate::common::s3::{assert_same_tables, read_tables_with_pyarrow};
use crate::common::{fixture, tidemark, transcript};
use serde_json::Value as Json;

fn run_ok(project: &Path, args: &[&str]) -> String {
    let output = tidemark(project, args);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(0), "{text}");
    text
}

/// Moves the events that "arrive later" (days 4 and 5, and late statements of day 3) in.
fn deliver_later_events(project: &Path) {
    for entry in walkdir::WalkDir::new(project.join("later")) {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(project.join("later")).expect("inside");
            let destination = project.join("data/events").join(relative);
            std::fs::create_dir_all(destination.parent().expect("parent")).expect("mkdir");
            std::fs::copy(entry.path(), destination).expect("copy");
        }
    }
}

fn tables(project: &Path) -> Json {
    read_tables_with_pyarrow(&project.join("warehouse").display().to_string(), None)
}

fn result_message(project: &Path, model: &str) -> String {
    let text = std::fs::read_to_string(project.join("target/run_results.json")).expect("run_results");
    let results: Json = serde_json::from_str(&text).expect("json");
    results["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["unique_id"] == format!("model.incremental.{model}"))
        .map(|r| r["message"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no result for {model}"))
}

#[test]
fn incremental_runs_after_new_events_equal_a_full_refresh_for_every_strategy() {
    let incremental = fixture("incremental");
    let first = run_ok(incremental.path(), &["run"]);
    assert!(first.contains("sql incremental model main.learner_totals"), "{first}");
    let before = tables(incremental.path());
    assert_eq!(before["main.events_appended"]["rows"], 36);

    deliver_later_events(incremental.path());
    run_ok(incremental.path(), &["run"]);
    // Each strategy reports what it did with the new rows.
    assert_eq!(result_message(incremental.path(), "events_appended"), "APPEND 30");
    assert!(result_message(incremental.path(), "learner_totals").starts_with("MERGE "));
    assert_eq!(result_message(incremental.path(), "recent_days"), "DELETE+INSERT 42");
    assert!(result_message(incremental.path(), "daily_scores").starts_with("INSERT OVERWRITE "));
    // No partition written onto an empty table: still an empty table, readable with its columns.
    assert_eq!(before["main.rare_alerts"]["rows"], 0);

    let full = fixture("incremental");
    deliver_later_events(full.path());
    run_ok(full.path(), &["run"]);
    let after_incremental = tables(incremental.path());
    let after_full = tables(full.path());
    assert_same_tables(&after_incremental, &after_full, "incremental vs full refresh");
    assert_eq!(after_full["main.events_appended"]["rows"], 66);
    // The NULL learner key was merged, not duplicated: one row per learner (4 names + NULL).
    assert_eq!(after_incremental["main.learner_totals"]["rows"], 5);

    // insert_overwrite rewrote only the partitions the new rows fall in (days 3, 4, 5).
    let log = incremental.path().join("warehouse/_tidemark/log/main/daily_scores");
    let mut records: Vec<_> = std::fs::read_dir(&log)
        .expect("log")
        .map(|e| e.expect("entry").path())
        .collect();
    records.sort();
    let latest: Json =
        serde_json::from_str(&std::fs::read_to_string(records.last().expect("record")).expect("read")).expect("json");
    assert_eq!(
        latest["written"],
        serde_json::json!(["day=3", "day=4", "day=5"]),
        "{latest}"
    );
    assert_eq!(latest["removed"], serde_json::json!([]));
    for day in 1..=5 {
        assert!(incremental
            .path()
            .join(format!("warehouse/main/daily_scores/day={day}/data.parquet"))
            .is_file());
    }
    assert!(!incremental
        .path()
        .join("warehouse/main/daily_scores/data.parquet")
        .exists());

    // --full-refresh rebuilds from scratch, with the same result.
    run_ok(incremental.path(), &["run", "--full-refresh"]);
    assert_eq!(result_message(incremental.path(), "events_appended"), "OK 66");
    assert_same_tables(&tables(incremental.path()), &after_full, "--full-refresh vs full run");
}

#[test]
fn schema_changes_follow_on_schema_change() {
    let project = fixture("incremental");
    run_ok(project.path(), &["run", "--select", "stg_events", "events_appended"]);
    let model = project.path().join("models/events_appended.sql");
    let changed = std::fs::read_to_string(&model)
        .expect("model")
        .replace(
            "select statement_id, day,",
            "select statement_id, day, 'web' as channel,",
        )
        .replace("score\nfrom", "cast(score as bigint) as score\nfrom");
    deliver_later_events(project.path());

    // fail: the difference is printed, the table is untouched.
    std::fs::write(
        &model,
        changed.replace(
            "incremental_strategy='append'",
            "incremental_strategy='append', on_schema_change='fail'",
        ),
    )
    .expect("write");
    let output = tidemark(project.path(), &["run", "--select", "events_appended"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("+ channel (new in the model)"), "{text}");
    assert!(text.contains("~ score Float64 → Int64"), "{text}");
    assert_eq!(tables(project.path())["main.events_appended"]["rows"], 36);

    // append_new_columns: the new column is added, NULL in the rows already there.
    std::fs::write(
        &model,
        changed.replace(
            "incremental_strategy='append'",
            "incremental_strategy='append', on_schema_change='append_new_columns'",
        ),
    )
    .expect("write");
    run_ok(project.path(), &["run", "--select", "events_appended"]);
    let after = tables(project.path());
    assert_eq!(after["main.events_appended"]["rows"], 66);
    assert_eq!(
        after["main.events_appended"]["columns"],
        serde_json::json!(["statement_id", "day", "learner", "verb", "score", "channel"])
    );
    let rows = crate::common::table_csv(&project.path().join("warehouse/main/events_appended/data.parquet"));
    assert_eq!(rows.lines().filter(|line| line.ends_with(",web")).count(), 30, "{rows}");
}

#[test]
fn bad_incremental_configs_are_errors_at_their_line() {
    let project = fixture("incremental");
    std::fs::write(
        project.path().join("models/recent_days.sql"),
        "{{ config(incremental_strategy='upsert') }}\nselect 1 as day\n",
    )
    .expect("write");
    let output = tidemark(project.path(), &["compile"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("models/recent_days.sql:1"), "{text}");
    assert!(
        text.contains("incremental_strategy 'upsert' is not append, merge, delete+insert or insert_overwrite"),
        "{text}"
    );

    // A partition column starting with '_' would name folders that Hive readers skip.
    std::fs::write(
        project.path().join("models/recent_days.sql"),
        "-- partitioned by an internal-looking column\n{{ config(materialized='table', partition_by='__day') }}\nselect 1 as __day, 2 as n\n",
    )
    .expect("write");
    let output = tidemark(project.path(), &["compile"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("models/recent_days.sql:2"), "{text}");
    assert!(
        text.contains("partition_by column '__day' cannot be a folder name"),
        "{text}"
    );
}

/// Copies the files under `later/<batch>` into `data/statements`.
fn deliver(project: &Path, batch: &str) {
    let from = project.join("later").join(batch);
    for entry in walkdir::WalkDir::new(&from) {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(&from).expect("inside");
            let destination = project.join("data/statements").join(relative);
            std::fs::create_dir_all(destination.parent().expect("parent")).expect("mkdir");
            std::fs::copy(entry.path(), destination).expect("copy");
        }
    }
}

fn full_build_with(batches: &[&str]) -> Json {
    let project = fixture("metrics_incremental");
    for batch in batches {
        deliver(project.path(), batch);
    }
    run_ok(project.path(), &["build"]);
    tables(project.path())
}

/// `rows_scanned` of a model in the last run's `run_results.json`.
fn scanned(project: &Path, model: &str) -> u64 {
    rows_scanned(&project.join("target/run_results.json"), model)
}

fn latest_commit(project: &Path, table: &str) -> Json {
    let log = project.join("warehouse/_tidemark/log/main").join(table);
    let mut records: Vec<_> = std::fs::read_dir(&log)
        .expect("log")
        .map(|e| e.expect("entry").path())
        .collect();
    records.sort();
    serde_json::from_str(&std::fs::read_to_string(records.last().expect("a record")).expect("read")).expect("json")
}

#[test]
fn time_range_runs_of_metric_models_equal_a_full_refresh() {
    let project = fixture("metrics_incremental");
    run_ok(project.path(), &["build"]);
    let first = tables(project.path());
    assert!(first["main.engagement"]["rows"].as_u64().expect("rows") > 0);

    let full_scan = scanned(project.path(), "engagement__daily");

    // Nightly: a week of new days arrives; the run recomputes from the latest day it holds.
    deliver(project.path(), "new_days");
    let nightly = run_ok(project.path(), &["build"]);
    assert!(nightly.contains("INSERT OVERWRITE"), "{nightly}");
    // The roll-up read only the new days and its 28-day lookback: 36 of 91 day folders.
    let nightly_scan = scanned(project.path(), "engagement__daily");
    assert!(
        nightly_scan * 2 < full_scan,
        "nightly read {nightly_scan} rows, the first build {full_scan}"
    );
    assert_same_tables(
        &tables(project.path()),
        &full_build_with(&["new_days"]),
        "nightly vs full refresh",
    );
    let commit = latest_commit(project.path(), "engagement");
    assert_eq!(
        commit["written"],
        serde_json::json!(["period_end=2026-03-29", "period_end=2026-04-05"])
    );

    // Backfill: late statements of 2026-03-06..09 arrive; recompute from the first late day.
    deliver(project.path(), "backfill");
    run_ok(project.path(), &["build", "--event-time-start", "2026-03-06"]);
    assert_same_tables(
        &tables(project.path()),
        &full_build_with(&["new_days", "backfill"]),
        "backfill vs full refresh",
    );
    // Exactly the periods from the first late day on were rewritten.
    let commit = latest_commit(project.path(), "engagement");
    let written: Vec<String> = commit["written"]
        .as_array()
        .expect("written")
        .iter()
        .map(|p| p.as_str().expect("text").to_string())
        .collect();
    assert_eq!(
        written.first().map(String::as_str),
        Some("period_end=2026-03-08"),
        "{written:?}"
    );
    assert_eq!(written.len(), 5, "{written:?}");
}

#[test]
fn a_nightly_run_of_the_lms_project_equals_a_full_refresh() {
    // A week ago: statements up to 2026-11-08 (175 days).
    let nightly = crate::common::example_project();
    run_ok(
        nightly.path(),
        &["build", "--vars", "{lms_learners: 240, lms_days: 175}"],
    );
    let daily_full = scanned_in(nightly.path(), "learner_engagement__daily");
    // Tonight: a week of new statements; every incremental model recomputes only its latest
    // periods, reading its inputs from there minus its windows' lookback.
    let text = run_ok(
        nightly.path(),
        &["build", "--vars", "{lms_learners: 240, lms_days: 182}"],
    );
    assert!(
        text.contains("sql incremental model main.learner_engagement "),
        "{text}"
    );
    let daily_nightly = scanned_in(nightly.path(), "learner_engagement__daily");
    assert!(
        daily_nightly * 2 < daily_full * 182 / 175,
        "the nightly roll-up read {daily_nightly} rows, a full one {daily_full}"
    );

    let full = crate::common::example_project();
    run_ok(full.path(), &["build", "--vars", "{lms_learners: 240, lms_days: 182}"]);
    assert_same_tables(
        &tables(nightly.path()),
        &tables(full.path()),
        "LMS nightly vs full refresh",
    );
    // Scorecard and alert history are Hive-partitioned by period.
    assert!(full
        .path()
        .join("warehouse/main/learner_engagement/period_end=2026-11-15/data.parquet")
        .is_file());
}

/// `rows_scanned` of a model in the LMS project's `run_results.json`.
fn scanned_in(project: &Path, model: &str) -> u64 {
    rows_scanned(&project.join("target/tidemark/run_results.json"), model)
}

fn rows_scanned(run_results: &Path, model: &str) -> u64 {
    let text = std::fs::read_to_string(run_results).expect("run_results");
    let results: Json = serde_json::from_str(&text).expect("json");
    results["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| {
            r["unique_id"]
                .as_str()
                .is_some_and(|id| id.ends_with(&format!(".{model}")))
        })
        .and_then(|r| r["rows_scanned"].as_u64())
        .unwrap_or_else(|| panic!("no rows_scanned for {model}"))
}

#[test]
fn a_unit_test_can_run_a_model_as_an_incremental_run() {
    let project = fixture("incremental");
    std::fs::write(
        project.path().join("models/unit.yml"),
        r#"unit_tests:
  - name: only_days_from_the_latest_one_are_recomputed
    model: daily_scores
    overrides:
      macros: {is_incremental: true}
    given:
      - input: ref('stg_events')
        rows:
          - {statement_id: s1, day: 1, learner: ana, score: 50}
          - {statement_id: s2, day: 2, learner: ana, score: 60}
          - {statement_id: s3, day: 3, learner: ana, score: 70}
          - {statement_id: s4, day: 3, learner: ana, score: 90}
      - input: this
        rows:
          - {day: 1, learner: ana, statements: 1, avg_score: 50}
          - {day: 2, learner: ana, statements: 1, avg_score: 60}
    expect:
      rows:
        - {day: 2, learner: ana, statements: 1, avg_score: 60}
        - {day: 3, learner: ana, statements: 2, avg_score: 80}
  - name: a_first_run_builds_every_day
    model: daily_scores
    given:
      - input: ref('stg_events')
        rows:
          - {statement_id: s1, day: 1, learner: ana, score: 50}
          - {statement_id: s3, day: 3, learner: ana, score: 70}
    expect:
      rows:
        - {day: 1, statements: 1}
        - {day: 3, statements: 1}
"#,
    )
    .expect("write");
    let output = tidemark(project.path(), &["test", "--select", "test_type:unit"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("Done. PASS=2 WARN=0 ERROR=0 SKIP=0 TOTAL=2"), "{text}");
    let compiled = std::fs::read_to_string(
        project
            .path()
            .join("target/compiled/incremental/models/unit.yml/only_days_from_the_latest_one_are_recomputed.sql"),
    )
    .expect("compiled unit test");
    assert!(
        compiled.contains("where day >= (select max(day) from \"main\".\"daily_scores\")"),
        "{compiled}"
    );

    // `this` without the override is an error at the test.
    let text = std::fs::read_to_string(project.path().join("models/unit.yml")).unwrap();
    std::fs::write(
        project.path().join("models/unit.yml"),
        text.replace("    overrides:\n      macros: {is_incremental: true}\n", ""),
    )
    .unwrap();
    let output = tidemark(project.path(), &["test"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("models/unit.yml:2"), "{text}");
    assert!(
        text.contains("'this' (the model's own table) is only read with overrides: {macros: {is_incremental: true}}"),
        "{text}"
    );
}
