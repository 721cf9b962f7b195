//! End-to-end tests: the real `tidemark` binary on fixture projects, with table contents checked
//! against expected CSVs and CLI output, compiled SQL and errors snapshot-tested.
//!
//! Regenerate snapshots with `INSTA_UPDATE=always cargo test` and review the diff.

use std::path::Path;

use crate::common::{expected_csv, files_under, fixture, table_csv, tidemark, transcript};
use serde_json::Value as Json;

fn table(project: &Path, schema: &str, name: &str) -> String {
    table_csv(&project.join("warehouse").join(schema).join(name).join("data.parquet"))
}

fn run_results(project: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(project.join("target/run_results.json")).expect("run_results.json"))
        .expect("json")
}

fn result_of<'a>(results: &'a Json, unique_id: &str) -> &'a Json {
    results["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["unique_id"] == unique_id)
        .unwrap_or_else(|| panic!("no result for {unique_id}"))
}

#[test]
fn build_writes_the_expected_tables() {
    let project = fixture("basic");
    let output = tidemark(project.path(), &["build", "--threads", "1", "--no-progress"]);
    insta::assert_snapshot!("basic_build", transcript(&output, project.path()));
    assert_eq!(output.status.code(), Some(0));
    for (table_name, expected) in [
        ("person_summary", "person_summary.csv"),
        ("teams_by_amount", "teams_by_amount.csv"),
    ] {
        assert_eq!(
            table(project.path(), "main", table_name),
            expected_csv(&project.path().join("expected").join(expected)),
            "table {table_name}"
        );
    }
    // Views and ephemeral models are not written; seeds and tables are.
    let files = files_under(&project.path().join("warehouse/main"));
    assert_eq!(
        files,
        [
            "events/data.parquet",
            "people/data.parquet",
            "person_summary/data.parquet",
            "teams_by_amount/data.parquet"
        ]
    );
    let results = run_results(project.path());
    let person = result_of(&results, "model.basic.person_summary");
    assert_eq!(person["status"], "success");
    assert_eq!(person["rows_affected"], 5);
    assert_eq!(person["version"], 1);
    assert_eq!(
        result_of(
            &results,
            "test.basic.accepted_values_stg_events_kind__course__quiz__forum"
        )["status"],
        "pass"
    );
    assert_eq!(result_of(&results, "seed.basic.events")["rows_affected"], 8);
}

#[test]
fn threads_run_nodes_concurrently_with_the_same_results() {
    let project = fixture("basic");
    let output = tidemark(project.path(), &["build", "--threads", "4"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    assert_eq!(
        table(project.path(), "main", "person_summary"),
        expected_csv(&project.path().join("expected/person_summary.csv"))
    );
    // A second build commits a new version of every table.
    let output = tidemark(project.path(), &["run", "--select", "person_summary"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        result_of(&run_results(project.path()), "model.basic.person_summary")["version"],
        2
    );
}

#[test]
fn compiled_sql_inlines_ephemeral_models_and_macros() {
    let project = fixture("basic");
    let output = tidemark(project.path(), &["compile"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    let compiled = project.path().join("target/compiled/basic/models");
    for file in [
        "marts/person_summary.sql",
        "marts/team_summary.sql",
        "staging/stg_events.sql",
    ] {
        let sql = std::fs::read_to_string(compiled.join(file)).expect("compiled file");
        insta::assert_snapshot!(format!("compiled_{}", file.replace(['/', '.'], "_")), sql);
    }
    let test_sql =
        std::fs::read_to_string(compiled.join("schema.yml/relationships_stg_events_person_id__id__ref_people_.sql"))
            .expect("test sql");
    insta::assert_snapshot!("compiled_relationships_test", test_sql);
    // Compiling is deterministic: the manifest is byte-identical on a second run.
    let first = std::fs::read(project.path().join("target/manifest.json")).expect("manifest");
    assert_eq!(tidemark(project.path(), &["compile"]).status.code(), Some(0));
    let second = std::fs::read(project.path().join("target/manifest.json")).expect("manifest");
    assert_eq!(first, second);
    // compile never touches the warehouse.
    assert!(!project.path().join("warehouse").exists());
}

#[test]
fn compile_of_one_model_prints_its_sql() {
    let project = fixture("basic");
    let output = tidemark(project.path(), &["compile", "--select", "team_summary"]);
    insta::assert_snapshot!("compile_one_model", transcript(&output, project.path()));
}

#[test]
fn manifest_records_nodes_dependencies_and_configs() {
    let project = fixture("basic");
    assert_eq!(tidemark(project.path(), &["compile"]).status.code(), Some(0));
    let manifest: Json =
        serde_json::from_str(&std::fs::read_to_string(project.path().join("target/manifest.json")).unwrap()).unwrap();
    let node = &manifest["nodes"]["model.basic.person_summary"];
    assert_eq!(
        node["depends_on"]["nodes"],
        serde_json::json!(["model.basic.int_person_totals", "seed.basic.people"])
    );
    assert_eq!(node["config"]["materialized"], "table");
    assert_eq!(node["config"]["tags"], serde_json::json!(["summary"]));
    assert_eq!(
        node["compiled_path"],
        "target/compiled/basic/models/marts/person_summary.sql"
    );
    assert_eq!(
        manifest["nodes"]["model.basic.team_summary"]["relation"],
        "main.teams_by_amount"
    );
    assert_eq!(manifest["nodes"]["model.basic.stg_events"]["materialized"], "view");
    assert_eq!(
        manifest["child_map"]["seed.basic.events"],
        serde_json::json!(["model.basic.stg_events"])
    );
}

#[test]
fn selection_syntax() {
    let project = fixture("basic");
    let mut transcript_text = String::new();
    for selector in [
        vec!["ls"],
        vec!["ls", "--select", "person_summary"],
        vec!["ls", "--select", "+person_summary", "--resource-type", "model"],
        vec!["ls", "--select", "stg_events+", "--exclude", "team_summary"],
        vec!["ls", "--select", "1+person_summary", "--output", "name"],
        vec!["ls", "--select", "tag:summary"],
        vec!["ls", "--select", "path:models/staging", "--output", "path"],
        vec!["ls", "--select", "marts", "--resource-type", "model"],
        vec!["ls", "--select", "config.materialized:view"],
        vec!["ls", "--select", "+team_summary,resource_type:seed"],
        vec!["ls", "--select", "@stg_events", "--resource-type", "model", "seed"],
        vec!["ls", "--select", "test_name:unique"],
        vec!["ls", "--resource-type", "source", "seed"],
    ] {
        let output = tidemark(project.path(), &selector);
        assert_eq!(output.status.code(), Some(0), "{selector:?}");
        transcript_text.push_str(&format!(
            "$ tidemark {}\n{}\n",
            selector.join(" "),
            String::from_utf8_lossy(&output.stdout)
        ));
    }
    insta::assert_snapshot!("selection", transcript_text);
    let output = tidemark(project.path(), &["ls", "--select", "colour:red"]);
    insta::assert_snapshot!("selection_unknown_method", transcript(&output, project.path()));
    assert_eq!(output.status.code(), Some(2));
}

fn assert_nothing_written(project: &Path) {
    assert!(!project.join("warehouse").exists(), "the warehouse was created");
    assert!(!project.join("target").exists(), "target/ was written");
}

#[test]
fn an_alias_or_schema_that_is_not_one_folder_name_is_rejected_at_its_line() {
    for (config, value) in [
        ("alias='../../../escaped'", "../../../escaped"),
        ("alias='a/b'", "a/b"),
        ("schema='..'", ".."),
        ("alias='a\\\\b'", "a\\b"),
    ] {
        let project = fixture("basic");
        let model = project.path().join("models/staging/stg_events.sql");
        let text = std::fs::read_to_string(&model).expect("model");
        std::fs::write(
            &model,
            format!("-- a relation outside its folder\n{{{{ config({config}) }}}}\n{text}"),
        )
        .expect("write model");
        let output = tidemark(project.path(), &["build"]);
        let text = transcript(&output, project.path());
        assert_eq!(output.status.code(), Some(2), "{config}: {text}");
        assert!(text.contains("models/staging/stg_events.sql:2"), "{config}: {text}");
        assert!(
            text.contains(&format!("'{value}' is not a relation name")),
            "{config}: {text}"
        );
        assert_nothing_written(project.path());
    }

    // Set in the model's YAML properties: reported at the value in the property file.
    let project = fixture("basic");
    let properties = project.path().join("models/schema.yml");
    let text = std::fs::read_to_string(&properties).expect("properties");
    std::fs::write(
        &properties,
        text.replacen(
            "  - name: stg_events\n",
            "  - name: stg_events\n    config:\n      alias: \"../escaped\"\n",
            1,
        ),
    )
    .expect("write properties");
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("models/schema.yml:5:14: model 'stg_events': alias '../escaped' is not a relation name"),
        "{text}"
    );
    assert_nothing_written(project.path());
}

#[test]
fn a_sql_error_names_the_model_and_its_compiled_sql_and_skips_children() {
    let project = fixture("sql_error");
    let output = tidemark(project.path(), &["build", "--threads", "1"]);
    insta::assert_snapshot!("error_sql", transcript(&output, project.path()));
    assert_eq!(output.status.code(), Some(1));
    // The failing model wrote nothing; its sibling was built; its child was skipped.
    assert_eq!(
        files_under(&project.path().join("warehouse/main")),
        ["good/data.parquet"]
    );
    let results = run_results(project.path());
    assert_eq!(result_of(&results, "model.sql_error.bad")["status"], "error");
    assert_eq!(result_of(&results, "model.sql_error.after_bad")["status"], "skipped");
    let error = result_of(&results, "model.sql_error.bad")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("target/compiled/sql_error/models/bad.sql"), "{error}");
}

#[test]
fn a_failing_test_fails_the_build_with_its_row_count_and_skips_descendants() {
    let project = fixture("failing_test");
    let output = tidemark(project.path(), &["build", "--threads", "1"]);
    insta::assert_snapshot!("failing_test", transcript(&output, project.path()));
    assert_eq!(output.status.code(), Some(1));
    let results = run_results(project.path());
    assert_eq!(
        result_of(&results, "test.failing_test.not_null_scores_score")["status"],
        "fail"
    );
    assert_eq!(
        result_of(&results, "test.failing_test.not_null_scores_score")["failures"],
        2
    );
    assert_eq!(
        result_of(&results, "test.failing_test.unique_scores_id")["status"],
        "pass"
    );
    assert_eq!(
        result_of(&results, "model.failing_test.score_report")["status"],
        "skipped"
    );
    assert_eq!(
        result_of(&results, "model.failing_test.independent")["status"],
        "success"
    );
}

#[test]
fn expression_is_true_not_empty_and_row_count_tests() {
    let project = fixture("failing_test");
    std::fs::write(
        project.path().join("models/schema.yml"),
        r#"version: 2
models:
  - name: scores
    tests:
      - not_empty
      - row_count: {min_value: 1, max_value: 3}
      - expression_is_true: {expression: "id > 0"}
    columns:
      - name: id
        tests:
          - expression_is_true: {expression: "<= 2"}
  - name: independent
    tests:
      - row_count: {min_value: 1}
  - name: empty
    tests: [not_empty]
"#,
    )
    .expect("schema.yml");
    std::fs::write(project.path().join("models/empty.sql"), "select 1 as x where false\n").expect("model");
    let output = tidemark(project.path(), &["build", "--threads", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output, project.path()));
    let results = run_results(project.path());
    let outcome = |id: &str| {
        let result = result_of(&results, &format!("test.failing_test.{id}"));
        (
            result["status"].as_str().unwrap_or_default().to_string(),
            result["failures"].as_u64(),
        )
    };
    // scores has 4 rows (ids 1-4); empty has none; independent has rows.
    assert_eq!(outcome("expression_is_true_scores"), ("pass".into(), Some(0)));
    assert_eq!(outcome("expression_is_true_scores_id"), ("fail".into(), Some(2)));
    assert_eq!(outcome("not_empty_scores"), ("pass".into(), Some(0)));
    assert_eq!(outcome("not_empty_empty"), ("fail".into(), Some(1)));
    assert_eq!(outcome("row_count_scores"), ("fail".into(), Some(1)));
    assert_eq!(outcome("row_count_independent"), ("pass".into(), Some(0)));

    // A row_count without bounds is an error at its declaration.
    std::fs::write(
        project.path().join("models/schema.yml"),
        "version: 2\nmodels:\n  - name: scores\n    tests:\n      - row_count\n",
    )
    .expect("schema.yml");
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("models/schema.yml:5"), "{text}");
    assert!(
        text.contains("row_count needs 'min_value:', 'max_value:' or both"),
        "{text}"
    );
}

#[test]
fn junit_reports_are_read_by_a_junit_parser() {
    let project = fixture("failing_test");
    let report = project.path().join("reports/junit.xml");
    std::fs::create_dir_all(report.parent().expect("folder")).expect("reports folder");
    let output = tidemark(
        project.path(),
        &[
            "build",
            "--threads",
            "1",
            "--junit",
            report.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output, project.path()));
    let parsed = read_junit(&report);
    let results = run_results(project.path());
    let nodes = results["results"].as_array().expect("results").len() as u64;
    // junitparser's counts, recomputed from the testcases, agree with what the report declares.
    assert_eq!(
        parsed["declared"],
        serde_json::json!({"tests": nodes, "failures": 1, "errors": 0, "skipped": parsed["skipped"]}),
        "{parsed}"
    );
    assert_eq!(parsed["tests"], nodes, "{parsed}");
    assert_eq!(parsed["failures"], 1, "{parsed}");
    assert_eq!(parsed["errors"], 0, "{parsed}");
    assert!(parsed["skipped"].as_u64() >= Some(1), "{parsed}");
    assert_eq!(
        parsed["cases"]["not_null_scores_score"],
        serde_json::json!(["Failure"]),
        "{parsed}"
    );
    assert_eq!(parsed["cases"]["unique_scores_id"], serde_json::json!([]), "{parsed}");
    assert_eq!(
        parsed["cases"]["score_report"],
        serde_json::json!(["Skipped"]),
        "{parsed}"
    );
    assert_eq!(parsed["cases"]["independent"], serde_json::json!([]), "{parsed}");
}

/// A JUnit report as junitparser (PyPI, installed when missing) reads it.
fn read_junit(report: &std::path::Path) -> serde_json::Value {
    let present = std::process::Command::new("python3")
        .args(["-c", "import junitparser"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !present {
        let status = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "junitparser"])
            .status()
            .expect("python3 for pip install junitparser");
        assert!(status.success(), "pip install junitparser failed");
    }
    let script = crate::common::repository_root().join("tests/support/read_junit.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(report)
        .output()
        .expect("run read_junit.py");
    assert!(
        output.status.success(),
        "junitparser could not read {}: {}",
        report.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("read_junit.py prints JSON")
}

#[test]
fn fail_fast_stops_starting_nodes_after_the_first_failure() {
    let project = fixture("failing_test");
    let output = tidemark(
        project.path(),
        &["build", "--threads", "1", "--fail-fast", "--exclude", "independent"],
    );
    assert_eq!(output.status.code(), Some(1));
    let results = run_results(project.path());
    let statuses: std::collections::BTreeMap<String, String> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("model.failing_test.score_report", "skipped"),
        ("model.failing_test.scores", "success"),
        ("test.failing_test.not_null_scores_score", "fail"),
        ("test.failing_test.unique_scores_id", "skipped"),
    ];
    assert_eq!(
        statuses,
        expected
            .iter()
            .map(|(id, status)| (id.to_string(), status.to_string()))
            .collect()
    );
}

#[test]
fn a_dbt_project_runs_without_profiles() {
    let project = fixture("dbt_style");
    let output = crate::common::command(project.path())
        .args(["build"])
        .env("TIDEMARK_TEST_GREETING", "bonjour")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    assert_eq!(
        table(project.path(), "analytics", "final"),
        "greeting,me,incremental,target_name\nbonjour,base,false,dev\n"
    );
}

#[test]
fn vars_on_the_command_line_override_project_vars() {
    let project = fixture("basic");
    let output = tidemark(project.path(), &["build", "--vars", "{big_amount: 70}"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    let csv = table(project.path(), "main", "person_summary");
    // Only Ada's 80 is at least 70 now; Chioma's 55 and 65 no longer count as big.
    assert!(csv.contains("1,Ada,red,2,1,1,155"), "{csv}");
    assert!(csv.contains("3,Chioma,blue,1,2,0,140"), "{csv}");
    let output = tidemark(project.path(), &["build", "--vars", "{not yaml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn show_previews_models_seeds_and_inline_queries() {
    let project = fixture("basic");
    assert_eq!(tidemark(project.path(), &["build"]).status.code(), Some(0));
    let output = tidemark(project.path(), &["show", "--select", "person_summary", "--limit", "3"]);
    insta::assert_snapshot!("show_model", transcript(&output, project.path()));
    let output = tidemark(
        project.path(),
        &[
            "show",
            "--inline",
            "select team, count(*) as n from {{ ref('people') }} group by team order by team",
        ],
    );
    insta::assert_snapshot!("show_inline", transcript(&output, project.path()));
    let output = tidemark(project.path(), &["show", "--select", "person_sumary"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("did you mean 'person_summary'?"));
}

#[test]
fn json_log_lines_are_json() {
    let project = fixture("basic");
    let output = tidemark(project.path(), &["build", "--log-format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<Json> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert!(lines.iter().any(|line| line["event"] == "node_finished"
        && line["node"] == "model.basic.person_summary"
        && line["rows_affected"] == 5));
    assert_eq!(lines.last().unwrap()["event"], "run_finished");
}

#[test]
fn debug_checks_project_profile_and_warehouse() {
    let project = fixture("basic");
    let output = tidemark(project.path(), &["debug"]);
    insta::assert_snapshot!("debug", transcript(&output, project.path()));
    assert_eq!(output.status.code(), Some(0));
    std::fs::write(
        project.path().join("profiles.yml"),
        "basic:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n",
    )
    .unwrap();
    let output = tidemark(project.path(), &["debug"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("type 'postgres'"));
}

#[test]
fn debug_opens_every_source_and_names_an_unreadable_one_where_it_is_declared() {
    let project = fixture("incremental");
    let root = project.path();
    let output = tidemark(root, &["debug"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("source     OK    raw.events (models/sources.yml:6) reads: "),
        "{text}"
    );

    // A second source over a file that is not Parquet, and the first one's files gone.
    std::fs::write(root.join("data/broken.parquet"), "not parquet at all").unwrap();
    let sources = root.join("models/sources.yml");
    let declared = std::fs::read_to_string(&sources).unwrap();
    std::fs::write(
        &sources,
        format!("{declared}      - name: broken\n        external_location: data/broken.parquet\n"),
    )
    .unwrap();
    std::fs::remove_dir_all(root.join("data/events")).unwrap();
    let output = tidemark(root, &["debug"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("source     FAIL  models/sources.yml:6: source raw.events: "),
        "{text}"
    );
    assert!(
        text.contains("source     FAIL  models/sources.yml:9: source raw.broken: "),
        "{text}"
    );
}

#[test]
fn version_help_and_completions_cover_every_command() {
    let folder = tempfile::tempdir().unwrap();
    let output = tidemark(folder.path(), &["--version"]);
    let version = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(
        version.trim(),
        format!("tidemark {} (DataFusion 55.2.0)", env!("CARGO_PKG_VERSION"))
    );
    let commands = [
        "build",
        "run",
        "seed",
        "test",
        "snapshot",
        "retry",
        "source",
        "compile",
        "docs",
        "ls",
        "show",
        "debug",
        "deps",
        "run-operation",
        "clean",
        "scheduler",
        "executor",
        "completions",
    ];
    for command in commands {
        let output = tidemark(folder.path(), &[command, "--help"]);
        let help = String::from_utf8_lossy(&output.stdout).to_string();
        assert_eq!(output.status.code(), Some(0), "{command} --help");
        assert!(
            help.contains("Examples:\n  tidemark "),
            "{command} --help has no example:\n{help}"
        );
    }
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef tidemark"),
        ("fish", "complete -c tidemark"),
    ] {
        let output = tidemark(folder.path(), &["completions", shell]);
        let script = String::from_utf8_lossy(&output.stdout).to_string();
        assert_eq!(output.status.code(), Some(0), "{shell}");
        assert!(script.contains(marker), "{shell}: {script}");
        for command in commands {
            assert!(script.contains(command), "{shell} completes no {command}");
        }
    }
}

#[test]
fn clean_removes_target_but_not_the_warehouse() {
    let project = fixture("basic");
    assert_eq!(tidemark(project.path(), &["build"]).status.code(), Some(0));
    let output = tidemark(project.path(), &["clean"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(!project.path().join("target").exists());
    assert!(project
        .path()
        .join("warehouse/main/person_summary/data.parquet")
        .exists());
}

#[test]
fn usage_errors_exit_with_code_2() {
    let project = fixture("basic");
    assert_eq!(tidemark(project.path(), &["bulid"]).status.code(), Some(2));
    assert_eq!(
        tidemark(project.path(), &["build", "--target", "prod"]).status.code(),
        Some(2)
    );
    let empty = tempfile::tempdir().unwrap();
    let output = tidemark(empty.path(), &["build"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no tidemark.yml or dbt_project.yml"));
}

#[test]
fn profiles_render_env_var_and_select_targets() {
    let project = fixture("basic");
    std::fs::write(
        project.path().join("profiles.yml"),
        "basic:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      warehouse: \"{{ env_var('BASIC_WAREHOUSE', 'default_wh') }}\"\n    other:\n      type: datafusion\n      warehouse: other_wh\n      schema: reporting\n",
    )
    .unwrap();
    let output = crate::common::command(project.path())
        .args(["seed"])
        .env("BASIC_WAREHOUSE", "custom_wh")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    assert!(project.path().join("custom_wh/main/people/data.parquet").exists());
    assert_eq!(
        tidemark(project.path(), &["seed", "--target", "other"]).status.code(),
        Some(0)
    );
    assert!(project.path().join("other_wh/reporting/people/data.parquet").exists());
    let output = tidemark(project.path(), &["seed", "--target", "prod"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("target 'prod' is not defined in profile 'basic'"));
}

#[test]
fn the_example_project_builds_and_its_alerts_find_what_was_planted() {
    let project = crate::common::example_project();
    let output = tidemark(project.path(), &["build"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    // The example project keeps its artifacts in target/tidemark (Cargo owns target/ here).
    let results: Json = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("target/tidemark/run_results.json")).unwrap(),
    )
    .unwrap();
    assert!(results["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "success" || r["status"] == "pass"));

    // The evaluation table the project builds: precision and recall against the planted truth.
    let evaluation = table(project.path(), "main", "alert_evaluation");
    let mut rows = evaluation.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let column = |row: &str, name: &str| -> String {
        let index = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        row.split(',').nth(index).unwrap().to_string()
    };
    let rows: Vec<&str> = rows.collect();
    let learner = rows.iter().find(|r| r.starts_with("learner")).expect("learner row");
    let team = rows.iter().find(|r| r.starts_with("team")).expect("team row");
    let number = |text: String| text.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {text}"));
    assert!(number(column(learner, "alert_precision")) >= 0.9, "{evaluation}");
    assert!(number(column(learner, "alert_recall")) >= 0.9, "{evaluation}");
    assert!(number(column(learner, "noise_false_alarm_rate")) < 0.05, "{evaluation}");
    assert_eq!(column(learner, "fired_in_reporting_gap"), "0", "{evaluation}");
    assert_eq!(
        number(column(team, "alert_recall")),
        1.0,
        "every planted team drop is caught: {evaluation}"
    );

    // The benefits pilot: tidemark drew the arms, the generator planted the nudge's effect,
    // and the difference-in-differences interval holds it (and excludes no effect).
    let pilot = table(project.path(), "main", "pilot_evaluation");
    let mut lines = pilot.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().expect("a pilot row").split(',').collect();
    let value = |name: &str| {
        row[header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"))]
    };
    assert_eq!(value("status"), "complete", "{pilot}");
    assert_eq!(value("covered"), "true", "{pilot}");
    assert!(number(value("ci_low").to_string()) > 0.0, "{pilot}");
    assert_eq!(
        number(value("treated").to_string()) + number(value("control").to_string()),
        1200.0,
        "{pilot}"
    );
    assert!(number(value("roi_pct").to_string()) > 0.0, "{pilot}");
}

#[test]
fn unit_tests_of_the_lms_metric_models_run_offline() {
    let project = crate::common::example_project();
    let output = tidemark(project.path(), &["test", "--select", "test_type:unit"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("unit tests only: no warehouse is read or written"),
        "{text}"
    );
    assert!(text.contains("Finished running 5 unit tests"), "{text}");
    assert!(text.contains("Done. PASS=5 WARN=0 ERROR=0 SKIP=0 TOTAL=5"), "{text}");
    assert!(
        !project.path().join("warehouse").exists(),
        "a unit test touched the warehouse"
    );
    let results: Json =
        serde_json::from_slice(&std::fs::read(project.path().join("target/tidemark/run_results.json")).unwrap())
            .unwrap();
    let ids: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["unique_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "unit_test.tidemark_lms.content_engagement_alerts.content_rules_fire_on_what_003_calls_negative",
            "unit_test.tidemark_lms.flagged_retention.retention_of_flagged_and_unflagged_learners",
            "unit_test.tidemark_lms.learner_engagement.learner_measures_from_statements",
            "unit_test.tidemark_lms.learner_engagement_alerts.sustained_drop_alerts_fire_and_noise_does_not",
            "unit_test.tidemark_lms.team_sustained_drop_alerts.team_median_drop_for_three_weeks",
        ]
    );
    let listed = |args: &[&str]| -> usize {
        let output = tidemark(project.path(), args);
        String::from_utf8_lossy(&output.stdout).lines().count()
    };
    assert_eq!(listed(&["ls", "--resource-type", "unit_test"]), 5);
    assert_eq!(listed(&["ls", "--select", "resource_type:unit_test"]), 5);
    assert_eq!(listed(&["ls", "--resource-type", "test"]), 13);
    assert_eq!(listed(&["ls", "--select", "resource_type:test"]), 13);
    // The tests can fail: a rule threshold changed in the metric model breaks its unit test.
    let spec = project.path().join("models/engagement/learner_engagement.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("activity_vs_own <= -0.35 and", "activity_vs_own <= -0.45 and"),
    )
    .unwrap();
    let output = tidemark(project.path(), &["test", "--select", "test_type:unit"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("- expected, not returned: learner_id=dropping, period_end=2026-10-25")
            || text.contains(
                "- expected, not returned: learner_id=dropping, period_end=2026-11-01, rule=disengagement_risk"
            ),
        "{text}"
    );
}

#[test]
fn unit_tests_show_differences_gate_their_model_and_explain_bad_specs() {
    let project = fixture("slim_ci");
    let project = project.path().join("base");
    std::fs::remove_file(project.join("profiles.yml")).unwrap();
    std::fs::write(
        project.join("models/unit.yml"),
        r#"unit_tests:
  - name: counts_events_per_learner
    model: learner_activity
    given:
      - input: ref('stg_learners')
        rows:
          - {learner_id: a1, team_id: t1}
          - {learner_id: a2, team_id: t1}
      - input: ref('stg_events')
        rows:
          - {id: 1, learner_id: a1, hours: 0.5}
          - {id: 2, learner_id: a1, hours: 0.25}
    expect:
      rows:
        - {learner_id: a1, events: 2, hours: 0.75}
        - {learner_id: a2, events: 0, hours: 0}
  - name: sums_teams
    model: team_activity
    given:
      - input: ref('learner_activity')
        format: csv
        rows: |
          learner_id,team_id,events,hours
          a1,t1,2,0.75
          a2,t1,0,0
          b1,t2,1,
    expect:
      format: csv
      rows: |
        team_id,learners,events
        t1,2,2
        t2,1,5
"#,
    )
    .unwrap();
    let output = tidemark(&project, &["build"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("PASS counts_events_per_learner"), "{text}");
    assert!(text.contains("FAIL 2 sums_teams"), "{text}");
    assert!(
        text.contains(
            "the model's rows differ from the expected rows (2 expected, 2 returned; comparing team_id, learners, events):\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("- expected, not returned: team_id=t2, learners=1, events=5"),
        "{text}"
    );
    assert!(
        text.contains("+ returned, not expected: team_id=t2, learners=1, events=1"),
        "{text}"
    );
    // Unit tests run before their model, and a failing one skips it (and what reads it).
    let start_unit = text.find("START test counts_events_per_learner").unwrap();
    let start_model = text.find("START sql table model main.learner_activity").unwrap();
    assert!(start_unit < start_model, "{text}");
    assert!(text.contains("SKIP sql table model main.team_activity"), "{text}");
    assert!(project.join("warehouse/main/learner_activity/data.parquet").exists());
    assert!(!project.join("warehouse/main/team_activity").exists());

    // overrides: vars render the model with other vars (and the compiled test shows it).
    std::fs::write(
        project.join("models/marts/weighted_hours.sql"),
        "select learner_id, hours * {{ var('weight', 1) }} as weighted from {{ ref('learner_activity') }}\n",
    )
    .unwrap();
    std::fs::write(
        project.join("models/unit.yml"),
        r#"unit_tests:
  - name: weight_from_vars
    model: weighted_hours
    overrides:
      vars: {weight: 10}
    given:
      - input: ref('learner_activity')
        rows: [{learner_id: a1, hours: 0.5}]
    expect:
      rows: [{learner_id: a1, weighted: 5}]
"#,
    )
    .unwrap();
    let output = tidemark(&project, &["test", "--select", "test_type:unit"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let compiled =
        std::fs::read_to_string(project.join("target/compiled/slim/models/unit.yml/weight_from_vars.sql")).unwrap();
    assert!(compiled.contains("hours * 10 as weighted"), "{compiled}");
    std::fs::remove_file(project.join("models/marts/weighted_hours.sql")).unwrap();

    // Inputs that are not given are computed from theirs; leaves must be given.
    std::fs::write(
        project.join("models/unit.yml"),
        r#"unit_tests:
  - name: needs_learners
    model: team_activity
    given:
      - input: ref('stg_events')
        rows: [{id: 1, learner_id: a1, hours: 1}]
    expect:
      rows: []
  - name: unknown_column
    model: learner_activity
    given:
      - input: ref('stg_events')
        rows: [{id: 1, learner: a1}]
      - input: ref('stg_learners')
        rows: [{learner_id: a1, team_id: t1}]
    expect:
      rows: []
"#,
    )
    .unwrap();
    let output = tidemark(&project, &["test", "--select", "test_type:unit"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("unit test 'needs_learners' of model 'team_activity': give rows for ref('learners') ('stg_learners' reads it, and a unit test never reads the warehouse)"),
        "{text}"
    );
    assert!(
        text.contains("given ref('stg_events'): column 'learner' is not a column of this input; it has id, learner_id, at, verb, course, hours"),
        "{text}"
    );

    // Specs that cannot work are errors at their line, before anything runs.
    std::fs::write(
        project.join("models/unit.yml"),
        "unit_tests:\n  - name: both\n    model: team_activity\n    given: []\n    expect: {rows: [], fixture: x.csv}\n",
    )
    .unwrap();
    let output = tidemark(&project, &["test"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("models/unit.yml:5:5: unit test 'both', expect: give either rows: or fixture:, not both"),
        "{text}"
    );
    std::fs::write(
        project.join("models/unit.yml"),
        "unit_tests:\n  - name: wrong_model\n    model: learner_activty\n    given: []\n    expect: {rows: []}\n  - name: wrong_input\n    model: team_activity\n    given:\n      - input: ref('course_summary')\n        rows: []\n    expect: {rows: []}\n",
    )
    .unwrap();
    let output = tidemark(&project, &["test"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("models/unit.yml:2"), "{text}");
    assert!(
        text.contains("unit test 'wrong_model' tests model 'learner_activty', which does not exist"),
        "{text}"
    );
    assert!(text.contains("did you mean 'learner_activity'?"), "{text}");
    assert!(
        text.contains(
            "unit test 'wrong_input': given input ref('course_summary') is not something model 'team_activity' reads"
        ),
        "{text}"
    );
}

#[test]
fn warn_if_error_if_and_stored_failures() {
    let project = fixture("failing_test");
    let schema = project.path().join("models/schema.yml");
    // Two NULL scores: a warning (more than 1), not an error (not more than 5).
    std::fs::write(
        &schema,
        "version: 2\nmodels:\n  - name: scores\n    columns:\n      - name: score\n        tests:\n          - not_null:\n              config: {warn_if: \">1\", error_if: \">5\"}\n",
    )
    .unwrap();
    let output = tidemark(project.path(), &["build", "--store-failures"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("WARN 2 not_null_scores_score"), "{text}");
    assert!(text.contains("Got 2 failing rows, configured to warn if >1"), "{text}");
    let results = run_results(project.path());
    assert_eq!(
        result_of(&results, "model.failing_test.score_report")["status"],
        "success"
    );
    // --store-failures kept the two failing rows.
    let stored = table(project.path(), "main_test_failures", "not_null_scores_score");
    assert_eq!(stored.lines().count(), 3, "{stored}");

    // error_if: >1 fails the build and skips what reads the model.
    std::fs::write(
        &schema,
        "version: 2\nmodels:\n  - name: scores\n    columns:\n      - name: score\n        tests:\n          - not_null:\n              config: {error_if: \">1\", store_failures: true}\n",
    )
    .unwrap();
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("Got 2 failing rows, configured to fail if >1"), "{text}");
    let results = run_results(project.path());
    assert_eq!(
        result_of(&results, "model.failing_test.score_report")["status"],
        "skipped"
    );
    assert_eq!(
        result_of(&results, "test.failing_test.not_null_scores_score")["failures"],
        2
    );

    // Thresholds that are not conditions on a row count are errors at their line.
    std::fs::write(
        &schema,
        "version: 2\nmodels:\n  - name: scores\n    columns:\n      - name: score\n        tests:\n          - not_null:\n              config: {warn_if: lots}\n",
    )
    .unwrap();
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("models/schema.yml:7"), "{text}");
    assert!(
        text.contains("warn_if: 'lots' is not a condition on the failing-row count"),
        "{text}"
    );
}

#[test]
fn retry_reruns_what_failed_or_was_skipped_with_the_same_options() {
    let project = fixture("failing_test");
    let output = tidemark(project.path(), &["build", "--threads", "1", "--vars", "{unused: 1}"]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output, project.path()));

    // Still failing: the same test fails again, and its model's child is skipped again.
    let output = tidemark(project.path(), &["retry"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("Retrying 2 nodes of the last `tidemark build`"), "{text}");
    let results = run_results(project.path());
    assert_eq!(results["command"], "build");
    assert_eq!(results["args"]["threads"], 1);
    assert_eq!(results["args"]["vars"], "{unused: 1}");
    let mut ids: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unique_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "model.failing_test.score_report",
            "test.failing_test.not_null_scores_score"
        ]
    );
    // The model's child still waits for the test, although the model itself is not re-run.
    assert_eq!(
        result_of(&results, "model.failing_test.score_report")["status"],
        "skipped"
    );

    // Fixed (the test now ignores the two rows): only those two run, and both succeed.
    let schema = project.path().join("models/schema.yml");
    let text = std::fs::read_to_string(&schema).unwrap();
    std::fs::write(
        &schema,
        text.replace(
            "tests: [not_null]",
            "tests: [{not_null: {where: \"id not in (2, 4)\"}}]",
        ),
    )
    .unwrap();
    let output = tidemark(project.path(), &["retry"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    let results = run_results(project.path());
    assert_eq!(
        result_of(&results, "test.failing_test.not_null_scores_score")["status"],
        "pass"
    );
    assert_eq!(
        result_of(&results, "model.failing_test.score_report")["status"],
        "success"
    );
    assert_eq!(results["results"].as_array().unwrap().len(), 2);

    let output = tidemark(project.path(), &["retry"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Nothing to retry: every node of the last `tidemark build` succeeded."),
        "{text}"
    );

    std::fs::remove_dir_all(project.path().join("target")).unwrap();
    let output = tidemark(project.path(), &["retry"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing to retry: cannot read target/run_results.json"));
}

#[test]
fn enforced_contracts_check_names_and_types_before_writing() {
    let project = fixture("slim_ci");
    let project = project.path().join("base");
    std::fs::remove_file(project.join("profiles.yml")).unwrap();
    let schema = project.join("models/schema.yml");
    let contract = |columns: &str| {
        format!(
            "version: 2\nmodels:\n  - name: learner_activity\n    config:\n      contract: {{enforced: true}}\n    columns:\n{columns}"
        )
    };
    std::fs::write(
        &schema,
        contract(
            "      - {name: team_id, data_type: varchar}\n      - {name: learner_id, data_type: varchar}\n      - {name: events, data_type: bigint}\n      - {name: hours, data_type: double}\n",
        ),
    )
    .unwrap();
    let output = tidemark(&project, &["build", "--select", "+learner_activity"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, &project));
    let table = project.join("warehouse/main/learner_activity/data.parquet");
    // The table's columns follow the contract's order.
    assert_eq!(
        crate::common::parquet_columns(&table),
        ["team_id: Utf8", "learner_id: Utf8", "events: Int64", "hours: Float64"]
    );
    let before = table_csv(&table);

    std::fs::write(
        &schema,
        contract(
            "      - {name: learner_id, data_type: varchar}\n      - {name: team_id, data_type: varchar}\n      - {name: hours, data_type: bigint}\n      - {name: courses, data_type: int}\n",
        ),
    )
    .unwrap();
    let output = tidemark(&project, &["build", "--select", "learner_activity"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the contract of model 'learner_activity' (models/marts/learner_activity.sql) is not met:"),
        "{text}"
    );
    assert!(
        text.contains("hours: declared bigint (Int64), the model returns Float64"),
        "{text}"
    );
    assert!(
        text.contains("courses: declared int, not returned by the model"),
        "{text}"
    );
    assert!(
        text.contains("events: returned by the model (Int64), not declared in the contract"),
        "{text}"
    );
    assert_eq!(table_csv(&table), before, "a broken contract wrote nothing");

    std::fs::write(
        &schema,
        contract("      - {name: learner_id, data_type: varchar}\n      - {name: team_id}\n"),
    )
    .unwrap();
    let output = tidemark(&project, &["build"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("models/schema.yml:3:5: model 'learner_activity': an enforced contract needs a data_type for every column; missing for team_id"),
        "{text}"
    );
}

#[test]
fn source_freshness_warns_and_errors_on_stale_sources_and_writes_sources_json() {
    let folder = tempfile::Builder::new()
        .prefix("tidemark-freshness-")
        .tempdir()
        .unwrap();
    let project = folder.path();
    std::fs::create_dir_all(project.join("models")).unwrap();
    std::fs::create_dir_all(project.join("data")).unwrap();
    std::fs::write(
        project.join("tidemark.yml"),
        "name: fresh\nmodels:\n  fresh:\n    +materialized: table\n",
    )
    .unwrap();
    // A table loaded two hours ago (built by a model), and a file last loaded in 2020.
    std::fs::write(
        project.join("models/loads.sql"),
        "select 1 as id, cast(now() as timestamp) - interval '2 hours' as loaded_at",
    )
    .unwrap();
    std::fs::write(
        project.join("data/old.csv"),
        "id,loaded_at\n1,2020-01-01T00:00:00\n2,2020-01-02T00:00:00\n",
    )
    .unwrap();
    std::fs::write(
        project.join("models/sources.yml"),
        r#"version: 2
sources:
  - name: app
    schema: main
    loaded_at_field: loaded_at
    freshness:
      warn_after: {count: 1, period: hour}
      error_after: {count: 1, period: day}
    tables:
      - name: loads
      - name: loads_relaxed
        identifier: loads
        freshness:
          warn_after: {count: 3, period: hour}
      - name: loads_unchecked
        identifier: loads
        freshness: null
  - name: archive
    loaded_at_field: loaded_at
    freshness:
      error_after: {count: 30, period: day}
      filter: "id = 1"
    tables:
      - name: old
        external_location: data/old.csv
"#,
    )
    .unwrap();
    assert_eq!(tidemark(project, &["run"]).status.code(), Some(0));
    let output = tidemark(project, &["source", "freshness"]);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ERROR freshness of source archive.old: newest row 2020-01-01T00:00:00"),
        "{text}"
    );
    assert!(
        text.contains("WARN freshness of source app.loads: newest row"),
        "{text}"
    );
    assert!(
        text.contains("2.0 hours old (warn after 1 hours, error after 1 days)"),
        "{text}"
    );
    assert!(text.contains("PASS freshness of source app.loads_relaxed"), "{text}");
    assert!(!text.contains("loads_unchecked"), "{text}");

    let sources: Json = serde_json::from_slice(&std::fs::read(project.join("target/sources.json")).unwrap()).unwrap();
    let status: std::collections::BTreeMap<&str, &str> = sources["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["unique_id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [
            ("source.fresh.app.loads", "warn"),
            ("source.fresh.app.loads_relaxed", "pass"),
            ("source.fresh.archive.old", "error")
        ]
        .into()
    );
    let old = sources["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == "source.fresh.archive.old")
        .unwrap();
    assert_eq!(
        old["criteria"]["error_after"],
        serde_json::json!({"count": 30, "period": "day"})
    );
    assert!(old["max_loaded_at_time_ago_in_s"].as_f64().unwrap() > 86_400.0 * 365.0);

    // Selection narrows it; only passing sources exit 0.
    let output = tidemark(
        project,
        &["source", "freshness", "--select", "source:app.loads_relaxed"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project));

    std::fs::write(
        project.join("models/sources.yml"),
        "version: 2\nsources:\n  - name: app\n    tables:\n      - name: loads\n        freshness: {warn_after: {count: 1, period: fortnight}}\n",
    )
    .unwrap();
    let output = tidemark(project, &["source", "freshness"]);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("models/sources.yml:6:9: source table app.loads"),
        "{text}"
    );
    assert!(
        text.contains("freshness warn_after is {count: <whole number>, period: minute|hour|day}"),
        "{text}"
    );
}

#[test]
fn custom_generic_tests_are_test_blocks_in_macros_or_tests_generic() {
    let project = fixture("slim_ci");
    let project = project.path().join("base");
    std::fs::remove_file(project.join("profiles.yml")).unwrap();
    std::fs::create_dir_all(project.join("tests/generic")).unwrap();
    std::fs::write(
        project.join("tests/generic/at_most.sql"),
        "{% test at_most(model, column_name, max_value) %}\nselect * from {{ model }} where {{ column_name }} > {{ max_value }}\n{% endtest %}\n",
    )
    .unwrap();
    std::fs::write(
        project.join("macros/checks.sql"),
        "{%- test has_rows_for(model, column_name, values=[]) -%}\nselect v from (values {% for v in values %}('{{ v }}'){{ ',' if not loop.last }}{% endfor %}) as t(v)\nwhere v not in (select {{ column_name }} from {{ model }})\n{%- endtest -%}\n",
    )
    .unwrap();
    std::fs::write(
        project.join("models/schema.yml"),
        r#"version: 2
models:
  - name: learner_activity
    columns:
      - name: events
        tests:
          - at_most: {max_value: 1}
          - at_most:
              max_value: 1
              config: {where: "team_id = 't2'", severity: warn}
      - name: learner_id
        tests:
          - has_rows_for: {values: [a1, a2, z9]}
"#,
    )
    .unwrap();
    let output = tidemark(&project, &["build", "--select", "+learner_activity"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let results = run_results(&project);
    let status = |id: &str| {
        let result = result_of(&results, id);
        (
            result["status"].as_str().unwrap().to_string(),
            result["failures"].as_u64().unwrap(),
        )
    };
    // a1 (3 events), a2 (2) and b1 (2) have more than one; only b1 is in team t2; z9 is missing.
    assert_eq!(status("test.slim.at_most_learner_activity_events"), ("fail".into(), 3));
    assert_eq!(
        status("test.slim.at_most_learner_activity_events_2"),
        ("warn".into(), 1)
    );
    assert_eq!(
        status("test.slim.has_rows_for_learner_activity_learner_id__a1__a2__z9"),
        ("fail".into(), 1)
    );
    // The compiled SQL is the macro's, with the where: filter applied to the model.
    let compiled = std::fs::read_to_string(
        project.join("target/compiled/slim/models/schema.yml/at_most_learner_activity_events.sql"),
    )
    .unwrap_or_default();
    assert!(
        compiled.contains("select * from \"main\".\"learner_activity\" where events > 1"),
        "{compiled}"
    );

    std::fs::write(
        project.join("models/schema.yml"),
        "version: 2\nmodels:\n  - name: learner_activity\n    columns:\n      - name: events\n        tests: [{at_mots: {max_value: 1}}]\n",
    )
    .unwrap();
    let output = tidemark(&project, &["build"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("unknown test 'at_mots'"), "{text}");
    assert!(text.contains("did you mean 'at_most'?"), "{text}");
}

#[test]
fn what_tidemark_ignores_is_a_warning_and_warn_error_makes_it_fail() {
    // Every kind of ignored setting, each a warning at its place; the build goes on.
    let project = fixture("errors/warn_error");
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    for expected in [
        "warning: tidemark.yml:2:1: 'quoting:' is a dbt feature tidemark does not implement",
        "warning: tidemark.yml:3:1: unknown key 'company-settings' in the project file; tidemark ignores it",
        "warning: tidemark.yml:6:5: model config 'grants' is a dbt feature tidemark does not implement",
        "warning: tidemark.yml:7:5: unknown model config 'owner_team'; tidemark ignores it",
        "warning: tidemark.yml:8:5: models: configuration path 'warn_error.stagng' applies to no model",
        "warning: analyses/order_counts.sql: this file is an analysis: tidemark does not compile analyses",
        "warning: models/schema.yml:4:13: model 'orders' is access: private but in no group, so nothing may ref it",
        "warning: models/schema.yml:7:9: 'constraints:' is a dbt feature",
        "warning: models/schema.yml:9:1: 'saved_queries:' is a dbt feature",
        "warning: models/marts/orders.sql:1: model config 'sql_header' is a dbt feature",
        "OK created sql table model main.orders",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // The errors fixture runs the same project with --warn-error: exit 2, nothing written.

    // --warn-error: a test that would warn fails, and what reads its model is skipped.
    let project = fixture("failing_test");
    std::fs::write(
        project.path().join("models/schema.yml"),
        "version: 2\nmodels:\n  - name: scores\n    columns:\n      - name: score\n        tests:\n          - not_null:\n              config: {severity: warn}\n",
    )
    .unwrap();
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("WARN 2 not_null_scores_score"), "{text}");
    let output = tidemark(project.path(), &["build", "--warn-error"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Got 2 failing rows, configured to warn if !=0; --warn-error makes it a failure"),
        "{text}"
    );
    let results = run_results(project.path());
    assert_eq!(
        result_of(&results, "test.failing_test.not_null_scores_score")["status"],
        "fail"
    );
    assert_eq!(
        result_of(&results, "model.failing_test.score_report")["status"],
        "skipped"
    );
    // A selection of nothing is a warning, and an error with --warn-error.
    let output = tidemark(project.path(), &["run", "--select", "tag:nothing_has_this"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("warning: nothing to do"), "{text}");
    let output = tidemark(
        project.path(),
        &["run", "--select", "tag:nothing_has_this", "--warn-error"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", transcript(&output, project.path()));
}
