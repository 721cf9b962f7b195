//! Slim CI: a two-commit git history of a project (tests/fixtures/slim_ci). `state:` selectors
//! compare the change with the production run's manifest, and `--defer` builds only the change
//! against the production tables.

use std::path::Path;
use std::process::Command;

use crate::common::{copy_tree, repository_root, table_csv, tidemark, transcript};

fn git(repository: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(repository)
        .args([
            "-c",
            "user.name=tidemark tests",
            "-c",
            "user.email=tests@tidemark.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git is installed");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `tidemark ls` output lines.
fn ls(project: &Path, args: &[&str]) -> Vec<String> {
    let mut full = vec!["ls"];
    full.extend_from_slice(args);
    let output = tidemark(project, &full);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Tables (folders holding data) under a warehouse schema.
fn tables(schema_folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(schema_folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn state_modified_and_defer_build_only_the_change() {
    let fixture = repository_root().join("tests/fixtures/slim_ci");
    let folder = tempfile::Builder::new().prefix("tidemark-slim-ci-").tempdir().unwrap();
    let project = folder.path().join("project");
    std::fs::create_dir_all(&project).unwrap();

    // Commit 1: the project as production builds it.
    copy_tree(&fixture.join("base"), &project);
    std::fs::write(project.join(".gitignore"), "target/\n*_wh/\n").unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "-m", "base"]);
    let output = tidemark(&project, &["build"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, &project));
    // CI keeps production's target/ as the state to compare with.
    let state = folder.path().join("prod-state");
    copy_tree(&project.join("target"), &state);
    let state_arg = state.to_str().unwrap();

    // Commit 2: the pull request.
    copy_tree(&fixture.join("changed"), &project);
    git(&project, &["add", "-A"]);
    git(
        &project,
        &[
            "commit",
            "-q",
            "-m",
            "change learner_activity, a macro, a config and an alert rule",
        ],
    );
    let changed_files = git(&project, &["diff", "--name-only", "HEAD~1", "HEAD"]);
    assert_eq!(
        changed_files.lines().collect::<Vec<_>>(),
        [
            "macros/helpers.sql",
            "models/marts/learner_activity.sql",
            "models/marts/learner_streaks.sql",
            "models/metrics.yml",
            "models/schema.yml"
        ]
    );

    // Exactly the changed models and their children.
    let modified_models = ls(
        &project,
        &[
            "--select",
            "state:modified+",
            "--state",
            state_arg,
            "--resource-type",
            "model",
            "--output",
            "name",
        ],
    );
    assert_eq!(
        modified_models,
        [
            "course_summary",
            "engagement_alerts",
            "engagement_alert_cases",
            "learner_activity",
            "learner_streaks",
            "team_activity",
            "team_labels"
        ]
    );

    // The selection grammar around state, selectors and results, as a snapshot.
    let mut text = String::new();
    for args in [
        vec!["--select", "state:modified+"],
        vec!["--select", "state:modified", "--resource-type", "model"],
        vec!["--select", "state:new"],
        vec!["--select", "state:modified.body", "--resource-type", "model"],
        vec!["--select", "state:modified.configs"],
        vec!["--select", "state:modified.macros"],
        vec!["--select", "state:unmodified", "--resource-type", "model", "seed"],
        vec![
            "--select",
            "state:modified+1",
            "--exclude",
            "state:new",
            "--resource-type",
            "model",
        ],
        vec!["--select", "state:modified,tag:weekly"],
        vec!["--select", "+state:modified.body", "--resource-type", "model", "seed"],
        vec!["--select", "result:success", "--resource-type", "seed"],
        vec!["--select", "test_type:generic,state:modified+"],
        vec!["--selector", "marts", "--resource-type", "model"],
        vec!["--select", "selector:metrics,state:modified"],
    ] {
        let mut full = args.clone();
        full.extend(["--state", state_arg]);
        let lines = ls(&project, &full);
        text.push_str(&format!("$ tidemark ls {}\n{}\n\n", args.join(" "), lines.join("\n")));
    }
    insta::assert_snapshot!("state_selection", text);

    // Without --defer the CI target has none of the unchanged upstream tables.
    let without = tidemark(
        &project,
        &["build", "-t", "ci", "-s", "state:modified+", "--state", state_arg],
    );
    let without_text = transcript(&without, &project);
    assert_eq!(without.status.code(), Some(1), "{without_text}");
    assert!(without_text.contains("has not been built yet"), "{without_text}");
    std::fs::remove_dir_all(project.join("ci_wh")).unwrap();

    // With --defer it builds only the change, reading the rest from production's warehouse.
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
            state_arg,
        ],
    );
    let output_text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(0), "{output_text}");
    assert!(
        output_text.contains("Deferring 5 unselected tables to the --state run's warehouse"),
        "{output_text}"
    );
    let mut sorted = modified_models.clone();
    sorted.sort();
    assert_eq!(tables(&project.join("ci_wh/pr_42")), sorted);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(project.join("target/run_results.json")).unwrap()).unwrap();
    assert_eq!(
        results["results"].as_array().unwrap().len(),
        10,
        "7 models and their 3 data tests"
    );

    // What it built equals a full build of the changed project.
    let output = tidemark(&project, &["build", "-t", "full"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, &project));
    for table in &modified_models {
        assert_eq!(
            table_csv(&project.join("ci_wh/pr_42").join(table)),
            table_csv(&project.join("full_wh/main").join(table)),
            "{table}"
        );
    }
    // The new column and the new macro output are really there.
    assert!(
        table_csv(&project.join("ci_wh/pr_42/learner_activity")).starts_with("learner_id,team_id,events,hours,courses")
    );
    assert!(table_csv(&project.join("ci_wh/pr_42/team_labels")).contains("T1 team"));
}

#[test]
fn state_selectors_need_a_state_and_bad_states_are_explained() {
    let fixture = repository_root().join("tests/fixtures/slim_ci/base");
    let folder = tempfile::Builder::new().prefix("tidemark-state-").tempdir().unwrap();
    copy_tree(&fixture, folder.path());
    let project = folder.path();

    let output = tidemark(project, &["ls", "--select", "state:modified"]);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("'state:modified' compares with a saved run: pass --state DIR"),
        "{text}"
    );

    let output = tidemark(project, &["ls", "--select", "state:changed", "--state", "."]);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("cannot read manifest.json"), "{text}");

    assert_eq!(tidemark(project, &["compile"]).status.code(), Some(0));
    let output = tidemark(project, &["ls", "--select", "state:changed", "--state", "target"]);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("unknown state 'changed'; use new, old, modified"),
        "{text}"
    );

    // A compiled project compared with itself: nothing modified, everything old.
    assert!(ls(project, &["--select", "state:modified", "--state", "target"]).is_empty());
    assert_eq!(
        ls(project, &["--select", "state:old", "--state", "target"]).len(),
        ls(project, &[]).len()
    );

    // A var read by one model (directly or through a macro) changes: only that model is
    // modified, as modified.vars.
    std::fs::write(
        project.join("models/weighted.sql"),
        "select {{ var('weight', 1) }} * 2 as w",
    )
    .unwrap();
    assert_eq!(tidemark(project, &["compile"]).status.code(), Some(0));
    assert!(ls(project, &["--select", "state:modified", "--state", "target"]).is_empty());
    let modified = |vars: &str, selector: &str| {
        let output = tidemark(
            project,
            &[
                "ls", "--select", selector, "--state", "target", "--vars", vars, "--output", "name",
            ],
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(modified("{weight: 3}", "state:modified"), ["weighted"]);
    assert_eq!(modified("{weight: 3}", "state:modified.vars"), ["weighted"]);
    assert!(modified("{weight: 3}", "state:modified.body").is_empty());
    assert!(modified("{weight: 1}", "state:modified").is_empty());

    let output = tidemark(project, &["ls", "--select", "result:fail", "--state", "target"]);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("run_results.json, which is missing"), "{text}");

    let output = tidemark(project, &["build", "--defer"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--state"));

    let output = tidemark(project, &["ls", "--selector", "mart"]);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("no selector named 'mart' in selectors.yml"), "{text}");
    assert!(text.contains("did you mean 'marts'?"), "{text}");

    std::fs::write(
        project.join("selectors.yml"),
        "selectors:\n  - name: x\n    definitoin: tag:a\n",
    )
    .unwrap();
    let output = tidemark(project, &["ls"]);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("selectors.yml:3"), "{text}");
}
