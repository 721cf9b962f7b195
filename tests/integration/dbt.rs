//! dbt project features: Jinja in property files, docs blocks, naming macros.

use std::path::Path;

use crate::common::*;

fn table(project: &Path, schema: &str, name: &str) -> String {
    table_csv(&project.join("warehouse").join(schema).join(name).join("data.parquet"))
}

#[test]
fn property_files_render_jinja_docs_blocks_and_naming_macros() {
    let project = fixture("dbt_features");
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    // generate_schema_name appends the custom schema to the target's, as dbt's default does.
    assert!(text.contains("OK created sql table model main_marts.orders"), "{text}");
    assert_eq!(
        table(project.path(), "main_marts", "orders"),
        "id,status\n1,placed\n2,shipped\n"
    );
    // doc() in descriptions, of the model, its columns and the source.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path().join("target/manifest.json")).unwrap()).unwrap();
    let model = &manifest["nodes"]["model.dbt_features.orders"];
    assert_eq!(model["description"], "One row per order placed in the shop.");
    assert_eq!(
        model["columns"]["status"]["description"],
        "The order's state: placed, shipped or returned."
    );
    assert_eq!(
        manifest["sources"]["source.dbt_features.raw.orders"]["description"],
        "One row per order placed in the shop."
    );
    // Hooks ran on the engine: on-run-start, the model's post-hook (`this` is its table), and
    // on-run-end with the run's results and schemas.
    assert!(text.contains("Running 1 on-run-start hook"), "{text}");
    let hook_file = |name: &str| std::fs::read_to_string(project.path().join("hooks").join(name)).unwrap_or_default();
    assert_eq!(hook_file("start.csv"), "phase\nstarting\n");
    assert_eq!(hook_file("orders_count.csv"), "orders\n2\n");
    assert_eq!(hook_file("end.csv"), "summary\n\"2 results in main,main_marts\"\n");
    // run_query at execution time: status_counts has a column per status orders has, found by
    // querying orders once it was built (the first build of both), through a macro's return().
    assert_eq!(
        table(project.path(), "main", "status_counts"),
        "orders,placed_orders,shipped_orders\n2,1,1\n"
    );
    // run-operation: statement + load_result, log, and a query that writes a file.
    let output = tidemark(
        project.path(),
        &["run-operation", "export_orders", "--args", "{path: exports/orders.csv}"],
    );
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("exporting 2 orders to exports/orders.csv"), "{text}");
    assert_eq!(
        std::fs::read_to_string(project.path().join("exports/orders.csv")).unwrap_or_default(),
        "id,status\n1,placed\n2,shipped\n"
    );
    let output = tidemark(project.path(), &["run-operation", "export_order"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("did you mean 'export_orders'?"), "{text}");
    // var() in external_location follows --vars.
    let output = tidemark(project.path(), &["build", "--vars", "{data_dir: data_next}"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert_eq!(
        table(project.path(), "main_marts", "orders"),
        "id,status\n1,placed\n2,shipped\n3,returned\n"
    );
    // ... and the introspective model follows the new rows.
    assert_eq!(
        table(project.path(), "main", "status_counts"),
        "orders,placed_orders,returned_orders,shipped_orders\n3,1,1,1\n"
    );
    // A hook that fails fails its node; project-level hooks run before the model's own.
    let schema = std::fs::read_to_string(project.path().join("models/schema.yml")).unwrap();
    std::fs::write(
        project.path().join("models/schema.yml"),
        schema.replace(
            "      schema: marts\n",
            "      schema: marts\n      post_hook: \"select * from no_such_table\"\n",
        ),
    )
    .unwrap();
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("post_hook 2 of 2 failed"), "{text}");
    assert!(text.contains("no_such_table"), "{text}");
    std::fs::write(project.path().join("models/schema.yml"), schema).unwrap();

    // A var no one set is an error at the value that reads it.
    std::fs::write(
        project.path().join("models/sources.yml"),
        "version: 2\nsources:\n  - name: raw\n    tables:\n      - name: orders\n        external_location: \"{{ var('landing_dir') }}/raw_orders.csv\"\n",
    )
    .unwrap();
    let output = tidemark(project.path(), &["build"]);
    let text = transcript(&output, project.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("models/sources.yml:6:28: Jinja error"), "{text}");
    assert!(text.contains("required var 'landing_dir' is not set"), "{text}");
}
