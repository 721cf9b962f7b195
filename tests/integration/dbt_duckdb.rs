//! A project written for dbt-duckdb, built by dbt-duckdb itself (from PyPI) and by tidemark:
//! every table, and a snapshot's whole history after a second run over changed sources, must be
//! the same. The project uses a local package and a git package in dbt_utils' style
//! (`adapter.dispatch`, `dbt.*` macros, `return`, a generic test), `run_query` introspection, a
//! post-hook, a snapshot, a docs block and Jinja in a source.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// dbt-duckdb 1.9 (its 1.10+ needs downloads from GitHub at install time).
fn dbt(project: &Path, args: &[&str]) -> (bool, String) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let present = Command::new("python3")
            .args(["-c", "import dbt.adapters.duckdb"])
            .status()
            .map(|status| status.success())
            .unwrap_or(false);
        if !present {
            let status = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "dbt-core>=1.9,<1.10",
                    "dbt-duckdb>=1.9,<1.10",
                ])
                .status()
                .expect("python3 to install dbt-duckdb");
            assert!(status.success(), "pip install dbt-duckdb failed");
        }
    });
    let output = Command::new("python3")
        .current_dir(project)
        .args(["-W", "ignore", "-m", "dbt.cli.main"])
        .args(args)
        .args(["--profiles-dir", "dbt_profiles"])
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DO_NOT_TRACK", "1")
        .output()
        .expect("run dbt");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn compare(project: &Path) -> (bool, String) {
    python_module("duckdb", "duckdb");
    let output = Command::new("python3")
        .arg(repository_root().join("tests/support/compare_with_dbt.py"))
        .arg(project)
        .args([
            "main.stg_orders",
            "main.order_facts",
            "main.status_counts",
            "main.customers_v1",
            "main.customers_v2",
            "main.customer_summary",
            "main.finance_report",
            "snapshots.orders_snapshot",
        ])
        .output()
        .expect("compare_with_dbt.py");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn a_dbt_duckdb_project_builds_the_same_tables_and_history_as_dbt_duckdb() {
    let fixture = fixture("dbt_duckdb_project");
    let root = fixture.path();
    let repository = root.join("text_utils_repo");
    for args in [
        vec!["init", "-q"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.email=tests@example.com",
            "-c",
            "user.name=tests",
            "commit",
            "-qm",
            "slugify",
        ],
        vec!["tag", "v1"],
    ] {
        let status = Command::new("git")
            .current_dir(&repository)
            .args(&args)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    }
    let project = root.join("project");
    let packages = std::fs::read_to_string(project.join("packages.yml")).unwrap();
    std::fs::write(
        project.join("packages.yml"),
        packages.replace("GIT_URL", &repository.display().to_string()),
    )
    .unwrap();
    std::fs::create_dir_all(project.join("exports")).unwrap();

    for vars in ["{data_dir: data}", "{data_dir: data_next}"] {
        let (ok, log) = dbt(&project, &["deps"]);
        assert!(ok, "dbt deps:\n{log}");
        let (ok, log) = dbt(&project, &["build", "--vars", vars]);
        assert!(ok, "dbt build:\n{log}");
        let output = tidemark(&project, &["deps"]);
        assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, &project));
        let output = tidemark(&project, &["build", "--vars", vars]);
        let text = transcript(&output, &project);
        assert_eq!(output.status.code(), Some(0), "{text}");
        let (same, report) = compare(&project);
        assert!(
            same,
            "after the build with {vars}, tidemark and dbt-duckdb differ:\n{report}"
        );
    }
    // The post-hook ran in both, each in its engine's COPY syntax.
    for engine in ["duckdb", "datafusion"] {
        let written = std::fs::read_to_string(project.join(format!("exports/{engine}_order_facts_count.csv")))
            .unwrap_or_default();
        assert_eq!(written, "n\n4\n", "{engine}");
    }
    // The docs block is the model's description.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("target/manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["nodes"]["model.shop.order_facts"]["description"],
        "One row per order, with its amount in dollars."
    );
    // Model versions, access and groups, as dbt records them.
    let version = &manifest["nodes"]["model.shop.customers.v2"];
    assert_eq!(version["name"], "customers");
    assert_eq!(version["version"], "2");
    assert_eq!(version["latest_version"], "1");
    assert_eq!(version["fqn"], serde_json::json!(["shop", "customers", "v2"]));
    assert_eq!(version["relation"], "main.customers_v2");
    assert_eq!(
        manifest["nodes"]["model.shop.customer_summary"]["depends_on"]["nodes"],
        serde_json::json!(["model.shop.customers.v1", "model.shop.customers.v2"])
    );
    assert!(manifest["nodes"]["test.shop.not_null_customers_v2_amount"].is_object());
    assert_eq!(manifest["nodes"]["model.shop.finance_margin"]["access"], "private");
    assert_eq!(manifest["nodes"]["model.shop.finance_margin"]["group"], "finance");
    assert_eq!(
        manifest["groups"]["group.shop.finance"]["owner"]["email"],
        "finance@example.com"
    );
}
