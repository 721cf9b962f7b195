//! Metric models: golden tests on a tiny event set whose scorecards and alerts were computed by
//! hand (see `tests/fixtures/metrics_golden/expected/README.md` for the arithmetic).
//!
//! The expected CSVs are regenerated with `TIDEMARK_BLESS=1 cargo test --test metrics`; review the
//! diff against the hand computations before committing.

use crate::common::{fixture, table_csv_ordered, tidemark, transcript};

fn check_table(project: &std::path::Path, table: &str) {
    let expected_path = crate::common::repository_root()
        .join("tests/fixtures/metrics_golden/expected")
        .join(format!("{table}.csv"));
    // Scorecards and alerts are partitioned by period: read the folder, columns as expected.
    let header = std::fs::read_to_string(&expected_path)
        .ok()
        .and_then(|text| text.lines().next().map(str::to_string));
    let order: Option<Vec<&str>> = header.as_deref().map(|h| h.split(',').collect());
    let folder = project.join("warehouse/main").join(table);
    let actual = if folder.join("data.parquet").is_file() {
        table_csv_ordered(&folder.join("data.parquet"), order.as_deref())
    } else {
        table_csv_ordered(&folder, order.as_deref())
    };
    if std::env::var_os("TIDEMARK_BLESS").is_some() {
        std::fs::write(&expected_path, &actual).expect("write expected");
    }
    let expected = std::fs::read_to_string(&expected_path).expect("expected csv");
    assert_eq!(
        actual,
        expected,
        "table {table} differs from {}",
        expected_path.display()
    );
}

#[test]
fn metric_models_match_hand_computed_scorecards_and_alerts() {
    let project = fixture("metrics_golden");
    let output = tidemark(project.path(), &["build"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    for table in ["measures_card", "compare_card", "alert_card", "alert_card_alerts"] {
        check_table(project.path(), table);
    }
}

#[test]
fn metric_models_are_listed_and_compiled_like_models() {
    let project = fixture("metrics_golden");
    let output = tidemark(
        project.path(),
        &["ls", "--select", "tag:metric_model", "--output", "name"],
    );
    insta::assert_snapshot!("metric_model_nodes", String::from_utf8_lossy(&output.stdout));
    let output = tidemark(project.path(), &["compile", "--select", "+alert_card_alerts"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    let compiled = project.path().join("target/compiled/metrics_golden/models/metrics.yml");
    for name in ["alert_card__daily", "alert_card", "alert_card_alerts"] {
        let sql = std::fs::read_to_string(compiled.join(format!("{name}.sql"))).expect("compiled metric SQL");
        insta::assert_snapshot!(format!("metric_sql_{name}"), sql);
    }
}

#[test]
fn invalid_metric_specs_are_reported_at_their_line() {
    let project = fixture("metrics_golden");
    let spec = project.path().join("models/metrics.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let broken = text
        .replace("windows: [3, 7]", "windows: [3, 0]")
        .replace("- {metric: acts_1d, weight: 0.6}", "- {metric: acts_1d, weight: 0.5}")
        .replace("when: \"acts_1d = 0\"", "when: \"act_1d = 0\"")
        .replace(
            "metric: acts_1d, against: previous",
            "metric: acts_2d, against: previous",
        );
    std::fs::write(&spec, broken).unwrap();
    let output = tidemark(project.path(), &["build"]);
    insta::assert_snapshot!("metric_spec_errors", transcript(&output, project.path()));
    assert_eq!(output.status.code(), Some(2));
    assert!(!project.path().join("warehouse").exists());

    std::fs::write(&spec, text.replace("agg: count_distinct", "agg: count_distinc")).unwrap();
    let output = tidemark(project.path(), &["build"]);
    insta::assert_snapshot!("metric_spec_shape_error", transcript(&output, project.path()));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn the_lms_project_compiles_to_readable_sql() {
    let project = crate::common::example_project();
    let output = tidemark(project.path(), &["compile", "--select", "tag:metric_model"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    let compiled = project
        .path()
        .join("target/tidemark/compiled/tidemark_lms/models/engagement");
    for (file, name) in [
        ("learner_engagement.yml", "learner_engagement__daily"),
        ("learner_engagement.yml", "learner_engagement"),
        ("learner_engagement.yml", "learner_engagement_alerts"),
        ("team_engagement.yml", "team_sustained_drop"),
    ] {
        let sql = std::fs::read_to_string(compiled.join(file).join(format!("{name}.sql"))).expect("compiled SQL");
        insta::assert_snapshot!(format!("lms_sql_{name}"), sql);
    }
}
