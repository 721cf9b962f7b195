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
    // Exposures are in the manifest, with what they read.
    let exposure = &manifest["exposures"]["exposure.dbt_features.weekly_orders"];
    assert_eq!(exposure["type"], "dashboard");
    assert_eq!(
        exposure["depends_on"]["nodes"],
        serde_json::json!([
            "model.dbt_features.orders",
            "model.dbt_features.status_counts",
            "source.dbt_features.raw.orders"
        ])
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

/// The rows of a snapshot table: id, status, valid_from, valid_to (`current` or `closed at run
/// time` when that is the run's clock), in key and time order.
fn history(project: &Path, schema: &str, name: &str, run_times: &[&str]) -> Vec<String> {
    history_with(project, schema, name, run_times, "")
}

/// [`history`] with more columns after the times (`extra`: `, column` SQL).
fn history_with(project: &Path, schema: &str, name: &str, run_times: &[&str], extra: &str) -> Vec<String> {
    let ctx = datafusion::prelude::SessionContext::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let path = project.join("warehouse").join(schema).join(name).join("data.parquet");
    let batches = runtime.block_on(async {
        ctx.register_parquet("t", path.to_str().unwrap(), Default::default()).await.unwrap();
        let frame = ctx
            .sql(&format!("select cast(id as varchar) as i, status, cast(dbt_valid_from as varchar) as f, cast(dbt_valid_to as varchar) as u{extra} from t order by id, dbt_valid_from"))
            .await
            .unwrap();
        frame.collect().await.unwrap()
    });
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let value = |column: usize| {
                datafusion::arrow::util::display::array_value_to_string(batch.column(column), row).unwrap_or_default()
            };
            let time = |text: String| match text.is_empty() {
                true => "current".to_string(),
                false if !run_times.iter().any(|day| text.starts_with(day)) => text,
                false => "run time".to_string(),
            };
            let mut row = format!("{} {} {} {}", value(0), value(1), time(value(2)), time(value(3)));
            for column in 4..batch.num_columns() {
                row.push_str(&format!(" {}", value(column)));
            }
            rows.push(row);
        }
    }
    rows
}

#[test]
fn snapshots_keep_every_version_of_changed_rows() {
    let project = fixture("snapshots");
    let root = project.path();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let run_times = [today.as_str()];
    let output = tidemark(root, &["snapshot"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("OK snapshotted") || text.contains("SNAPSHOT 3"), "{text}");
    // The source changes: order 1 ships (a later updated_at), 3 disappears, 4 arrives.
    std::fs::write(
        root.join("data/orders.csv"),
        "id,status,updated_at\n1,shipped,2024-01-02 09:00:00\n2,placed,2024-01-01 11:00:00\n4,placed,2024-01-02 10:00:00\n",
    )
    .unwrap();
    let output = tidemark(root, &["build"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(0), "{text}");
    // timestamp strategy: a version is valid from its updated_at to the next one's; the deleted
    // order is closed at the run's time (invalidate_hard_deletes).
    let timestamped = vec![
        "1 placed 2024-01-01T10:00:00 2024-01-02T09:00:00",
        "1 shipped 2024-01-02T09:00:00 current",
        "2 placed 2024-01-01T11:00:00 current",
        "3 placed 2024-01-01T12:00:00 run time",
        "4 placed 2024-01-02T10:00:00 current",
    ];
    let rows = history(root, "snapshots", "orders_snapshot", &run_times);
    assert_eq!(rows, timestamped);
    // check strategy (declared in YAML): versions are valid from the run that saw them.
    let checked = vec![
        "1 placed run time run time",
        "1 shipped run time current",
        "2 placed run time current",
        "3 placed run time run time",
        "4 placed run time current",
    ];
    assert_eq!(history(root, "main", "orders_checked", &run_times), checked);
    // Models read snapshots like tables; build ran the snapshot first.
    let current = table_csv(&root.join("warehouse/main/current_orders/data.parquet"));
    assert_eq!(current.lines().count(), 4, "{current}");
    // A run with no change adds nothing, and the history stays whole.
    let output = tidemark(root, &["snapshot"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, root));
    assert_eq!(history(root, "snapshots", "orders_snapshot", &run_times), timestamped);
    assert_eq!(history(root, "main", "orders_checked", &run_times), checked);
    // dbt_scd_id is dbt's hash of the key and the version's time.
    let ids = {
        let ctx = datafusion::prelude::SessionContext::new();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let path = root.join("warehouse/snapshots/orders_snapshot/data.parquet");
        runtime.block_on(async {
            ctx.register_parquet("t", path.to_str().unwrap(), Default::default()).await.unwrap();
            let frame = ctx
                .sql("select count(*) from t where dbt_scd_id = md5(cast(id as varchar) || '|' || to_char(dbt_valid_from, '%Y-%m-%d %H:%M:%S'))")
                .await
                .unwrap();
            let batches = frame.collect().await.unwrap();
            datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
        })
    };
    assert_eq!(ids, "5");
    // hard_deletes: new_record (from the project file's snapshots: configs): the gone order's
    // version closes and a deletion record opens; dbt_valid_to_current marks current versions.
    let deletions = vec![
        "1 placed 2024-01-01T10:00:00 2024-01-02T09:00:00 False",
        "1 shipped 2024-01-02T09:00:00 9999-12-31T00:00:00 False",
        "2 placed 2024-01-01T11:00:00 9999-12-31T00:00:00 False",
        "3 placed 2024-01-01T12:00:00 run time False",
        "3 placed run time 9999-12-31T00:00:00 True",
        "4 placed 2024-01-02T10:00:00 9999-12-31T00:00:00 False",
    ];
    let deleted = |root: &Path| history_with(root, "main", "orders_deletions", &run_times, ", dbt_is_deleted");
    assert_eq!(
        deleted(root),
        deletions,
        "after the second run and a third with no change"
    );
    // The order comes back: its deletion record closes, a new version opens.
    std::fs::write(
        root.join("data/orders.csv"),
        "id,status,updated_at\n1,shipped,2024-01-02 09:00:00\n2,placed,2024-01-01 11:00:00\n3,returned,2024-01-03 08:00:00\n4,placed,2024-01-02 10:00:00\n",
    )
    .unwrap();
    let output = tidemark(root, &["snapshot", "--select", "tag:history"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, root));
    let mut returned = deletions.clone();
    returned[4] = "3 returned 2024-01-03T08:00:00 9999-12-31T00:00:00 False";
    returned.insert(5, "3 placed run time 2024-01-03T08:00:00 True");
    assert_eq!(deleted(root), returned);
    // A snapshot without unique_key is an error at its file.
    std::fs::write(
        root.join("snapshots/orders.sql"),
        "{% snapshot orders_snapshot %}\n{{ config(strategy='timestamp', updated_at='updated_at') }}\nselect * from {{ source('shop', 'orders') }}\n{% endsnapshot %}\n",
    )
    .unwrap();
    let output = tidemark(root, &["snapshot"]);
    let text = transcript(&output, root);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("snapshots/orders.sql:1: snapshot 'orders_snapshot': a snapshot needs unique_key"),
        "{text}"
    );
}
