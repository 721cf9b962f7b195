//! `docs generate` and `docs serve` on the example project: catalog.json with the real column
//! types, row counts and sizes; column lineage in the manifest; typed readers (DuckDB through
//! duckdb_views.sql and hive partitions, Polars, pyarrow with its one-line partitioning); and the
//! site itself, drawn by a real browser (Chromium, headless) from disk and over `docs serve`.

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use crate::common::{example_project, python_module, tidemark, transcript};

fn run_ok(project: &Path, args: &[&str]) -> String {
    let output = tidemark(project, args);
    let text = transcript(&output, project);
    assert_eq!(output.status.code(), Some(0), "{text}");
    text
}

fn json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("json")
}

/// Chromium, as Debian installs it (`apt-get install chromium`; `.ci/run` does).
fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("the docs site is tested in a real browser: install Chromium (apt-get install chromium)");
}

/// The page at `url` after its scripts ran, as Chromium serialises it.
fn rendered(url: &str) -> String {
    let output = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        dom.contains("data-route"),
        "{url}: the page did not render\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

#[test]
fn docs_generate_writes_a_catalog_typed_views_lineage_and_a_site_a_browser_draws() {
    let project = example_project();
    let root = project.path();
    run_ok(root, &["build", "--vars", "{lms_learners: 240}"]);
    let text = run_ok(root, &["docs", "generate", "--vars", "{lms_learners: 240}"]);
    assert!(text.contains("Wrote target/tidemark/catalog.json"), "{text}");
    let target = root.join("target/tidemark");

    // catalog.json: dbt's shape, the types DataFusion reads (the partition column a DATE), and
    // the row counts and sizes of the warehouse.
    let catalog = json(&target.join("catalog.json"));
    assert_eq!(
        catalog["metadata"]["dbt_schema_version"],
        "https://schemas.getdbt.com/dbt/catalog/v1.json"
    );
    let scorecard = &catalog["nodes"]["model.tidemark_lms.learner_engagement"];
    assert_eq!(scorecard["metadata"]["type"], "BASE TABLE");
    assert_eq!(scorecard["metadata"]["schema"], "main");
    assert_eq!(scorecard["columns"]["period_end"]["type"], "DATE", "{scorecard}");
    assert_eq!(scorecard["columns"]["learner_id"]["type"], "VARCHAR");
    assert_eq!(scorecard["columns"]["learner_id"]["index"], 1);
    assert_eq!(scorecard["columns"]["engagement_score"]["type"], "DOUBLE");
    // 240 learners × 21 weekly periods.
    assert_eq!(scorecard["stats"]["row_count"]["value"], 240 * 21, "{scorecard}");
    let size: u64 = crate::common::files_under(&root.join("warehouse/main/learner_engagement"))
        .iter()
        .map(|file| {
            std::fs::metadata(root.join("warehouse/main/learner_engagement").join(file))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(scorecard["stats"]["bytes"]["value"], size);
    assert_eq!(
        catalog["nodes"]["model.tidemark_lms.stg_events"]["metadata"]["type"],
        "VIEW"
    );
    assert_eq!(
        catalog["nodes"]["seed.tidemark_lms.alert_actions"]["columns"]["at"]["type"],
        "TIMESTAMP"
    );
    assert!(catalog["errors"].is_null(), "{}", catalog["errors"]);

    // Column lineage from the logical plans, in the manifest: the pass rate reads the daily
    // roll-up's pass counts, which read the statements' verb (through the staging view).
    let manifest = json(&target.join("manifest.json"));
    let lineage = |node: &str, column: &str| -> Vec<String> {
        manifest["nodes"][node]["column_lineage"][column]
            .as_array()
            .unwrap_or_else(|| panic!("no lineage for {node}.{column}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        lineage("model.tidemark_lms.learner_engagement", "pass_rate_30d"),
        [
            "model.tidemark_lms.learner_engagement__daily.__day",
            "model.tidemark_lms.learner_engagement__daily.pass_rate__den",
            "model.tidemark_lms.learner_engagement__daily.pass_rate__num",
        ]
    );
    assert_eq!(
        lineage("model.tidemark_lms.learner_engagement__daily", "pass_rate__num"),
        ["model.tidemark_lms.synthetic_events.verb"]
    );
    assert_eq!(
        lineage("model.tidemark_lms.team_heatmap", "team_id"),
        ["model.tidemark_lms.team_engagement.team_id"]
    );

    // Typed readers: DuckDB through the views file and through hive partitions, Polars, and
    // pyarrow with the explicit partitioning the README gives (it infers strings by itself).
    python_module("duckdb", "duckdb");
    python_module("polars", "polars");
    python_module("pyarrow", "pyarrow");
    let table = root.join("warehouse/main/learner_engagement");
    let check = format!(
        r#"
import duckdb, polars as pl, pyarrow as pa, pyarrow.dataset as ds
con = duckdb.connect()
con.execute(open({views:?}).read())
types = dict(con.sql("select column_name, data_type from information_schema.columns where table_name = 'learner_engagement'").fetchall())
assert types["period_end"] == "DATE", types
assert con.sql("select count(*) from main.learner_engagement").fetchall()[0][0] == 240 * 21
hive = duckdb.sql("select * from read_parquet('{table}/*/data.parquet', hive_partitioning = true)")
assert dict(zip(hive.columns, hive.types))["period_end"] == "DATE"
assert pl.scan_parquet("{table}/**/*.parquet", hive_partitioning=True).collect_schema()["period_end"] == pl.Date
assert ds.dataset("{table}", format="parquet", partitioning="hive").schema.field("period_end").type == pa.string()
part = ds.partitioning(pa.schema([("period_end", pa.date32())]), flavor="hive")
assert ds.dataset("{table}", format="parquet", partitioning=part).schema.field("period_end").type == pa.date32()
print("typed")
"#,
        views = target.join("duckdb_views.sql").display().to_string(),
        table = table.display(),
    );
    let output = Command::new("python3").args(["-c", &check]).output().expect("python3");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("typed"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The site, opened from disk in a real browser: every page draws from the generated data.
    let index = format!("file://{}", target.join("docs/index.html").display());
    let overview = rendered(&index);
    assert!(overview.contains(r#"data-route="overview""#), "{overview}");
    assert!(
        overview.contains("learner_engagement_interventions"),
        "overview lists the nodes"
    );
    let node = rendered(&format!("{index}#/node/model.tidemark_lms.learner_engagement"));
    assert!(
        node.contains(r#"id="columns""#) && node.contains("<td>DATE</td>"),
        "columns with types"
    );
    assert!(node.contains(r#"id="tests""#), "the node's tests");
    assert!(node.contains("Compiled SQL"), "compiled SQL");
    assert!(node.contains("learner_engagement__daily"), "upstream");
    let graph = rendered(&format!("{index}#/lineage?select=%2Bstg_events"));
    // +stg_events: the view, the generator and everything it reads.
    for name in [
        "stg_events",
        "synthetic_events",
        "synthetic_learners",
        "learner_engagement_intervention_arms",
        "stg_learners",
    ] {
        assert!(
            graph.contains(&format!(">{name}</text>")),
            "{name} in the lineage of +stg_events"
        );
    }
    assert!(
        !graph.contains(">learner_engagement</text>"),
        "only the selection is drawn"
    );
    let column = rendered(&format!(
        "{index}#/column/model.tidemark_lms.learner_engagement/pass_rate_30d"
    ));
    assert!(
        column.contains(r#"id="roots""#) && column.contains("<b>verb</b>"),
        "pass_rate_30d is fed by the verb"
    );
    let card = rendered(&format!("{index}#/metric/learner_engagement"));
    assert!(card.contains("30/30/40"), "the score's weights");
    assert!(card.contains("<b>disengagement_risk</b>"), "the alert rules in words");
    for chart in [
        r#"id="heatmap""#,
        r#"class="cell""#,
        r#"id="alerts-by-rule""#,
        r#"id="cases""#,
        r#"class="box""#,
        r#"class="value""#,
    ] {
        assert!(card.contains(chart), "{chart} on the metric model's card");
    }

    // docs serve: the same site on 127.0.0.1; nothing outside target/docs is served.
    let mut server = crate::common::command(root)
        .args(["docs", "serve", "--port", "0", "--no-progress"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docs serve");
    let mut lines = std::io::BufReader::new(server.stdout.take().expect("stdout")).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split_whitespace()
                .find(|w| w.starts_with("http://127.0.0.1:"))
                .map(str::to_string)
        })
        .expect("the address it serves");
    let get = |path: &str| -> String {
        let address = url.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(get("/").starts_with("HTTP/1.1 200"));
    assert!(get("/assets/data.js").contains("window.TIDEMARK"));
    assert!(get("/../manifest.json").starts_with("HTTP/1.1 404"));
    assert!(get("/%2e%2e/manifest.json").starts_with("HTTP/1.1 404"));
    let served = rendered(&format!("{url}#/metric/team_engagement"));
    assert!(served.contains(r#"id="heatmap""#), "the served site draws too");
    server.kill().unwrap();
    let _ = server.wait();
}
