//! `target/docs/`: the static documentation site `tidemark docs generate` writes and
//! `tidemark docs serve` serves.
//!
//! The site is a page (`index.html`) with its own script and style (`assets/app.js`,
//! `assets/app.css`, written here from `assets/` in the source tree) and the project as data:
//! `assets/data.js` (every node with its columns, types, tests, last results, SQL, lineage and
//! table facts; every metric model's spec) and `assets/metric_<name>.js` per metric model (the
//! rows its charts draw, read from the materialised tables). Data files are scripts rather than
//! JSON so the site opens from disk (`file://`) with no server and no network.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value as Json};

use crate::compile::CompiledProject;
use crate::documents::RunResults;
use crate::execute::catalog::TableFacts;
use crate::graph::{Graph, MetricModelSpec, ResourceType};

mod charts;
pub mod serve;

pub use charts::metric_chart_data;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// What the site is made of.
pub struct Site<'a> {
    pub graph: &'a Graph,
    pub compiled: &'a CompiledProject,
    pub tables: &'a [TableFacts],
    pub lineage: &'a super::ColumnLineage,
    pub run_results: Option<&'a RunResults>,
    /// Each metric model's spec, property file and chart data.
    pub metric_models: Vec<(MetricModelSpec, String, Json)>,
    pub invocation_id: &'a str,
}

/// Where the site goes: `<target-path>/docs`.
pub fn folder(artifacts: &super::Artifacts) -> PathBuf {
    artifacts.folder().join("docs")
}

/// Writes the site; returns its `index.html`.
pub fn write_site(artifacts: &super::Artifacts, site: &Site<'_>) -> std::io::Result<PathBuf> {
    let root = folder(artifacts);
    let assets = root.join("assets");
    std::fs::create_dir_all(&assets)?;
    super::write_atomically(&assets.join("app.js"), APP_JS.as_bytes())?;
    super::write_atomically(&assets.join("app.css"), APP_CSS.as_bytes())?;
    let data = project_data(site);
    super::write_atomically(
        &assets.join("data.js"),
        format!("window.TIDEMARK = {};\n", script_json(&data)).as_bytes(),
    )?;
    for (spec, _, charts) in &site.metric_models {
        let name = &spec.name;
        super::write_atomically(
            &assets.join(format!("metric_{name}.js")),
            format!(
                "window.TIDEMARK_METRICS = window.TIDEMARK_METRICS || {{}};\nwindow.TIDEMARK_METRICS[{}] = {};\n",
                script_json(&Json::from(name.as_str())),
                script_json(charts)
            )
            .as_bytes(),
        )?;
    }
    let index = root.join("index.html");
    super::write_atomically(&index, INDEX_HTML.as_bytes())?;
    Ok(index)
}

/// JSON safe inside a `<script>`: no `</script>` can end it early.
fn script_json(value: &Json) -> String {
    value.to_string().replace("</", "<\\/")
}

/// Everything the pages show, as one JSON value.
fn project_data(site: &Site<'_>) -> Json {
    let graph = site.graph;
    let facts: BTreeMap<&str, &TableFacts> = site.tables.iter().map(|t| (t.unique_id.as_str(), t)).collect();
    let results: BTreeMap<&str, &crate::documents::RunResult> = site
        .run_results
        .map(|run| run.results.iter().map(|r| (r.unique_id.as_str(), r)).collect())
        .unwrap_or_default();
    // Which metric model generated each node: the names metric models give what they generate.
    let mut generated_by: BTreeMap<String, String> = BTreeMap::new();
    for (spec, _, _) in &site.metric_models {
        let names: Vec<String> = std::iter::once(spec.name.clone())
            .chain(
                [
                    "_daily",
                    "alerts",
                    "alert_cases",
                    "alert_gate",
                    "alert_actions_valid",
                    "validation",
                    "validation_floor",
                    "interventions",
                    "intervention_arms",
                    "intervention_arms_valid",
                ]
                .iter()
                .map(|suffix| format!("{}_{suffix}", spec.name)),
            )
            .collect();
        for node in graph.nodes.values().filter(|node| names.contains(&node.name)) {
            generated_by.insert(node.unique_id.clone(), spec.name.clone());
        }
    }
    let nodes: Vec<Json> = graph
        .order
        .iter()
        .map(|id| {
            let node = &graph.nodes[id];
            let table = facts.get(id.as_str());
            let lineage = site.lineage.get(id);
            let mut columns: Vec<Json> = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            let described = |name: &str| {
                node.columns
                    .iter()
                    .find(|column| column.name.eq_ignore_ascii_case(name))
                    .map(|column| column.description.clone())
                    .unwrap_or_default()
            };
            for (name, data_type) in table.map(|t| t.columns.as_slice()).unwrap_or_default() {
                seen.insert(name.to_lowercase());
                columns.push(json!({
                    "name": name,
                    "type": data_type,
                    "description": described(name),
                    "lineage": lineage.and_then(|l| l.get(name)).cloned().unwrap_or_default(),
                }));
            }
            // Documented columns the warehouse does not have (yet).
            for column in &node.columns {
                if seen.insert(column.name.to_lowercase()) {
                    columns.push(json!({
                        "name": column.name,
                        "type": column.data_type.clone().unwrap_or_default(),
                        "description": column.description,
                        "lineage": lineage.and_then(|l| l.get(&column.name)).cloned().unwrap_or_default(),
                    }));
                }
            }
            let result = results.get(id.as_str()).map(|r| {
                json!({
                    "status": r.status,
                    "message": r.message,
                    "seconds": r.execution_time,
                    "completed_at": r.completed_at,
                    "rows": r.rows_affected,
                    "failures": r.failures,
                    "error": r.error,
                })
            });
            let tested = node
                .generic_test()
                .map(|test| (test.tested_node.clone(), test.column_name.clone()));
            json!({
                "id": id,
                "name": node.name,
                "resource_type": resource_type(node.resource_type),
                "package": node.fqn.first(),
                "fqn": node.fqn,
                "path": node.path,
                "line": node.line,
                "description": node.description,
                "materialized": node.materialized.as_str(),
                "tags": node.tags,
                "relation": node.relation().map(|r| format!("{}.{}", r.schema, r.identifier)),
                "depends_on": node.depends_on,
                "columns": columns,
                "raw_sql": node.raw_code,
                "compiled_sql": site.compiled.nodes.get(id).map(|c| c.sql.clone()),
                "rows": table.and_then(|t| t.rows),
                "bytes": table.and_then(|t| t.bytes),
                "last_run": result,
                "tests_node": tested.as_ref().map(|(node, _)| node),
                "tests_column": tested.and_then(|(_, column)| column),
                "metric_model": generated_by.get(id),
            })
        })
        .collect();
    let metric_models: Vec<Json> = site
        .metric_models
        .iter()
        .map(|(spec, file, _)| {
            json!({
                "name": spec.name,
                "file": file,
                "spec": public_spec(spec),
                "nodes": generated_by.iter().filter(|(_, name)| *name == &spec.name).map(|(id, _)| id).collect::<Vec<_>>(),
            })
        })
        .collect();
    let metadata = super::invocation_metadata(site.invocation_id);
    json!({
        "project": graph.project_name,
        "tidemark_version": metadata.tidemark_version,
        "generated_at": metadata.generated_at,
        "nodes": nodes,
        "metric_models": metric_models,
    })
}

/// A spec as the site shows it: notification targets (webhook URLs, headers, commands) are
/// left out, only their number kept, so no secret written in them is published.
fn public_spec(spec: &MetricModelSpec) -> Json {
    let mut value = serde_json::to_value(spec).unwrap_or(Json::Null);
    let hide = |object: &mut serde_json::Map<String, Json>| {
        if let Some(Json::Array(targets)) = object.get("notify") {
            let count = targets.len();
            object.insert("notify".into(), Json::Array(vec![Json::Null; count]));
        }
    };
    if let Json::Object(object) = &mut value {
        hide(object);
        if let Some(Json::Array(alerts)) = object.get_mut("alerts") {
            for alert in alerts.iter_mut() {
                if let Json::Object(alert) = alert {
                    hide(alert);
                }
            }
        }
    }
    value
}

fn resource_type(kind: ResourceType) -> &'static str {
    match kind {
        ResourceType::Model => "model",
        ResourceType::Seed => "seed",
        ResourceType::Test => "test",
        ResourceType::Source => "source",
        ResourceType::Snapshot => "snapshot",
    }
}
