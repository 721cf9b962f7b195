//! Metric models: golden tests on a tiny event set whose scorecards and alerts were computed by
//! hand (see `tests/fixtures/metrics_golden/expected/README.md` for the arithmetic).
//!
//! The expected CSVs are regenerated with `TIDEMARK_BLESS=1 cargo test --test metrics`; review the
//! diff against the hand computations before committing.

use crate::common::{fixture, table_csv_ordered, tidemark, transcript};

fn check_table(project: &std::path::Path, table: &str) {
    check_fixture_table("metrics_golden", project, table);
}

/// Compares `table` with `tests/fixtures/<fixture>/expected/<table>.csv`.
fn check_fixture_table(fixture: &str, project: &std::path::Path, table: &str) {
    let expected_path = crate::common::repository_root()
        .join("tests/fixtures")
        .join(fixture)
        .join("expected")
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
fn a_metric_models_events_can_be_a_source() {
    // The golden events as a CSV source instead of a seed: the same scorecards and alerts.
    let project = fixture("metrics_golden");
    let root = project.path();
    std::fs::create_dir_all(root.join("data")).expect("data folder");
    std::fs::rename(root.join("seeds/events.csv"), root.join("data/events.csv")).expect("move events");
    std::fs::write(
        root.join("models/sources.yml"),
        "version: 2\nsources:\n  - name: lms\n    tables:\n      - name: events\n        external_location: data/events.csv\n",
    )
    .expect("sources.yml");
    let metrics = root.join("models/metrics.yml");
    let text = std::fs::read_to_string(&metrics).expect("metrics.yml");
    assert!(text.contains("events: {model: events,"));
    std::fs::write(
        &metrics,
        text.replace(
            "events: {model: events,",
            "events: {model: \"source('lms', 'events')\",",
        ),
    )
    .expect("metrics.yml");
    let output = tidemark(root, &["build"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, root));
    for table in ["measures_card", "compare_card", "alert_card", "alert_card_alerts"] {
        check_table(root, table);
    }
    // The lineage runs through the source.
    let manifest = std::fs::read_to_string(root.join("target/manifest.json")).expect("manifest");
    assert!(
        manifest.contains("source.metrics_golden.lms.events"),
        "the source is in the graph"
    );

    // A source that is not declared is named, at the metric model's line.
    std::fs::write(
        &metrics,
        text.replace(
            "events: {model: events,",
            "events: {model: \"source('lms', 'missing')\",",
        ),
    )
    .expect("metrics.yml");
    let output = tidemark(root, &["compile"]);
    let shown = transcript(&output, root);
    assert_eq!(output.status.code(), Some(2), "{shown}");
    assert!(shown.contains("missing"), "{shown}");
}

/// The test of one node in a run_results.json: its status and failing rows.
fn result_of(project: &std::path::Path, unique_id: &str) -> Option<(String, u64)> {
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("target/run_results.json")).ok()?).ok()?;
    let result = results["results"]
        .as_array()?
        .iter()
        .find(|result| result["unique_id"] == unique_id)?;
    Some((
        result["status"].as_str()?.to_string(),
        result["failures"].as_u64().unwrap_or(0),
    ))
}

#[test]
fn alert_cases_have_a_lifecycle_and_gate_builds() {
    // Six learners with planned quiet weeks (tests/fixtures/alert_cases/expected/README.md).
    let project = fixture("alert_cases");
    let root = project.path();
    let output = tidemark(root, &["build"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(0), "{text}");
    // active_from: quiet_late judges weeks from 2026-04-05 on, with the streaks begun before.
    check_fixture_table("alert_cases", root, "case_card_alerts");
    // Cases: resolved, a case kept open across a one-week gap, reopened, ongoing, open;
    // escalation, due dates, recovery at 30/60/90 days, and the action log's steps and overdue
    // flags.
    check_fixture_table("alert_cases", root, "case_card_alert_cases");
    // EWMA and lower-CUSUM rules against each learner's own trailing baseline.
    check_fixture_table("alert_cases", root, "spc_card_alerts");
    // Score validation: per period, how well a week's activity ranks next week's (AUC).
    check_fixture_table("alert_cases", root, "case_card_validation");
    assert_eq!(
        result_of(root, "test.alert_cases.case_card_validation_floor"),
        Some(("pass".to_string(), 0))
    );
    // Without a gate, no gate test runs; the action log is valid.
    assert!(
        result_of(root, "test.alert_cases.case_card_alert_gate").is_none(),
        "{text}"
    );
    assert_eq!(
        result_of(root, "test.alert_cases.case_card_alert_actions_valid"),
        Some(("pass".to_string(), 0))
    );
    // An action for no case, and one before its case opened: the check fails and names them.
    let log = root.join("seeds/alert_actions.csv");
    let actions = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &log,
        format!(
            "{actions}00000000000000000000000000000000,triaged,hrbp.anna,2026-02-01T09:00:00\n\
             d87dc372b1a5ec84ccbd6392adc489b7,triaged,hrbp.anna,2026-04-01T09:00:00\n"
        ),
    )
    .unwrap();
    let output = tidemark(root, &["build", "--store-failures"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL 2 case_card_alert_actions_valid"), "{text}");
    let failures =
        crate::common::table_csv(&root.join("warehouse/main_test_failures/case_card_alert_actions_valid/data.parquet"));
    for row in [
        "00000000000000000000000000000000,triaged,hrbp.anna,2026-02-01T09:00:00,unknown case id",
        "d87dc372b1a5ec84ccbd6392adc489b7,triaged,hrbp.anna,2026-04-01T09:00:00,before its case opened on 2026-05-03",
    ] {
        assert!(failures.contains(row), "{failures}");
    }
    std::fs::write(&log, actions).unwrap();

    // --fail-on-alert high: the one new high case (l4, quiet_late) fails the build, in
    // run_results.json and the JUnit report.
    let output = tidemark(root, &["build", "--fail-on-alert", "high", "--junit", "junit.xml"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL 1 case_card_alert_gate"), "{text}");
    assert_eq!(
        result_of(root, "test.alert_cases.case_card_alert_gate"),
        Some(("fail".to_string(), 1))
    );
    let junit = std::fs::read_to_string(root.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("case_card_alert_gate"), "{junit}");
    assert!(junit.contains("<failure"), "{junit}");
    // At medium, the new medium cases count too: l3 (reopened) and l5 (open).
    let output = tidemark(root, &["build", "--fail-on-alert", "medium"]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output, root));
    assert_eq!(
        result_of(root, "test.alert_cases.case_card_alert_gate"),
        Some(("fail".to_string(), 3))
    );
    // A rule's own gate: works without the flag; ongoing and resolved cases never gate.
    let yaml = std::fs::read_to_string(root.join("models/metrics.yml")).unwrap();
    std::fs::write(
        root.join("models/metrics.yml"),
        yaml.replace("        for: 2\n", "        for: 2\n        gate: high\n"),
    )
    .unwrap();
    let output = tidemark(root, &["build"]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output, root));
    assert_eq!(
        result_of(root, "test.alert_cases.case_card_alert_gate"),
        Some(("fail".to_string(), 1))
    );
    // A floor the score misses fails its test with the period (04-05: AUC 0.4).
    let yaml = std::fs::read_to_string(root.join("models/metrics.yml")).unwrap();
    std::fs::write(
        root.join("models/metrics.yml"),
        yaml.replace("min_auc: 0.4", "min_auc: 0.5"),
    )
    .unwrap();
    let output = tidemark(root, &["build", "--select", "case_card_validation+"]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output, root));
    assert_eq!(
        result_of(root, "test.alert_cases.case_card_validation_floor"),
        Some(("fail".to_string(), 1))
    );
    // A severity that is not one is refused before anything runs.
    let output = tidemark(root, &["build", "--vars", "{fail_on_alert: urgent}"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("fail_on_alert (--fail-on-alert) is \"urgent\"; use low, medium or high"),
        "{text}"
    );
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
        )
        // Case settings: a date that is not one, a zero resolution, an unknown baseline.
        .replace(
            "        owner: HRBP\n",
            "        owner: HRBP\n        active_from: \"2026-13-01\"\n        resolve_after: 0\n        recovery: {baseline: acts_7d, within: 0.1}\n",
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

#[test]
fn interventions_estimate_difference_in_differences_and_roi() {
    // Eight learners and three pilots (tests/fixtures/interventions/expected/README.md).
    let project = fixture("interventions");
    let root = project.path();
    let output = tidemark(root, &["build"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(0), "{text}");
    // Declared arms with per-learner starts (complete), drawn arms (running), and a pilot that
    // has not started (planned): counts, means, estimate, interval and ROI.
    check_fixture_table("interventions", root, "pilot_card_interventions");
    // The draws: md5 of "7:<learner>", managers excluded by the filter.
    check_fixture_table("interventions", root, "pilot_card_intervention_arms");
    assert_eq!(
        result_of(root, "test.interventions.pilot_card_intervention_arms_valid"),
        Some(("pass".to_string(), 0))
    );
    // An unknown arm and a learner in both arms: the check fails and names the rows (twice:
    // coaching and refresher read the same arms).
    let arms = root.join("seeds/coaching_arms.csv");
    let declared = std::fs::read_to_string(&arms).unwrap();
    std::fs::write(
        &arms,
        format!("{declared}l7,placebo,2026-02-02\nl1,control,2026-02-02\n"),
    )
    .unwrap();
    let output = tidemark(root, &["build", "--store-failures"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL 6 pilot_card_intervention_arms_valid"), "{text}");
    let failures = crate::common::table_csv(
        &root.join("warehouse/main_test_failures/pilot_card_intervention_arms_valid/data.parquet"),
    );
    for row in [
        "coaching,l7,placebo,2026-02-02,arm is neither treatment nor control",
        "coaching,l1,control,2026-02-02,entity assigned 2 times",
        "refresher,l1,treatment,2026-03-02,entity assigned 2 times",
    ] {
        assert!(failures.contains(row), "{failures}");
    }
}
