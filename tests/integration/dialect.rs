//! Projects coming from dbt-duckdb: DuckDB's functions and, with `sql_dialect: duckdb`, its
//! integer division, checked against DuckDB itself; dbt profiles.

use std::process::Command;

use crate::common::*;

/// Runs `tests/support/duckdb_reference.py`: the project's models in DuckDB, compared with the
/// tables tidemark wrote. Returns its report ("same", or what differs).
fn compare_with_duckdb(project: &std::path::Path, models: &[&str]) -> (bool, String) {
    python_module("duckdb", "duckdb");
    python_module("yaml", "pyyaml");
    let script = repository_root().join("tests/support/duckdb_reference.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(project)
        .arg(project.join("warehouse"))
        .args(models)
        .output()
        .expect("run duckdb_reference.py");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[test]
fn a_dbt_duckdb_style_project_gives_duckdbs_results() {
    let project = fixture("duckdb_dialect");
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    let (same, report) = compare_with_duckdb(project.path(), &["order_facts", "customer_facts"]);
    assert!(same, "tidemark and DuckDB differ:\n{report}");
    // The comparison can fail: DataFusion's own division truncates.
    let profiles = project.path().join("profiles.yml");
    let text = std::fs::read_to_string(&profiles).unwrap();
    std::fs::write(&profiles, text.replace("      sql_dialect: duckdb\n", "")).unwrap();
    let output = tidemark(project.path(), &["build"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, project.path()));
    let (same, report) = compare_with_duckdb(project.path(), &["order_facts", "customer_facts"]);
    assert!(!same, "{report}");
    assert!(
        report.contains("order_facts.amount_units (key 1): tidemark 19, DuckDB 19.99"),
        "{report}"
    );
    // Only the division differs: every function is DuckDB's either way.
    for line in report.lines() {
        assert!(
            [
                "amount_units",
                "unit_price",
                "rounded_twice",
                "mean_amount",
                "half_count"
            ]
            .iter()
            .any(|column| line.contains(&format!(".{column} "))),
            "{line}"
        );
    }
}

#[test]
fn profiles_are_found_in_the_dbt_folder_and_dbt_adapters_are_explained() {
    // No profiles.yml in the project: ~/.dbt/profiles.yml, when it defines the profile.
    let project = fixture("basic");
    let home = project.path().join(".dbt");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("profiles.yml"),
        "other_project:\n  outputs:\n    dev: {type: duckdb, path: other.duckdb}\n",
    )
    .unwrap();
    let _ = std::fs::remove_file(project.path().join("profiles.yml"));
    let output = tidemark(project.path(), &["debug"]);
    let text = transcript(&output, project.path());
    assert!(text.contains("no profiles.yml: built-in embedded default"), "{text}");
    let profile = std::fs::read_to_string(project.path().join("tidemark.yml"))
        .unwrap()
        .lines()
        .find_map(|line| {
            line.strip_prefix("name:")
                .map(|name| name.trim().trim_matches('\'').to_string())
        })
        .unwrap();
    std::fs::write(
        home.join("profiles.yml"),
        format!("{profile}:\n  target: dev\n  outputs:\n    dev: {{type: datafusion, schema: from_home}}\n"),
    )
    .unwrap();
    let output = tidemark(project.path(), &["debug"]);
    let text = transcript(&output, project.path());
    assert!(text.contains(".dbt/profiles.yml"), "{text}");
    assert!(text.contains("schema from_home"), "{text}");
    // A dbt-duckdb target: the one setting to change, not a list of unknown keys.
    std::fs::write(
        home.join("profiles.yml"),
        format!("{profile}:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: dev.duckdb\n      threads: 4\n"),
    )
    .unwrap();
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("~/.dbt/profiles.yml:5:13: target 'dev' is a dbt-duckdb target (type: duckdb)"),
        "{text}"
    );
    assert!(text.contains("change `type: duckdb` to `type: datafusion`"), "{text}");
}
