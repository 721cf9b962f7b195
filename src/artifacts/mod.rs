//! Stage 7 — artifacts: the only module that writes `target/`.
//!
//! - `target/compiled/<project>/<path>`: the SQL each node ran (or would run);
//! - `target/manifest.json`: every node with its config, dependencies and compiled path —
//!   byte-identical for the same project (no timestamps, ordered maps);
//! - `target/run_results.json`: status, timing, rows written and error of every node of a run.
//!
//! Commands that write `target/` hold `target/run.lock` while they do ([`Artifacts::lock`]).
//!
//! `manifest.json` and `run_results.json` are written to a temporary name and renamed, so
//! readers never see half a file; compiled SQL files are plain copies for people to read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::compile::{compiled_path, CompiledProject};
use crate::execute::NodeResult;
use crate::graph::{Graph, ResourceType};
use crate::project::{Project, Target};

/// Version written into every artifact.
pub const TIDEMARK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of the layout of `manifest.json`, `run_results.json` and `sources.json`
/// (`metadata.artifact_version`): within one version fields are only ever added, never renamed,
/// removed or given another meaning.
pub const ARTIFACT_VERSION: u32 = 1;

/// Writes artifacts under one project's target folder.
pub struct Artifacts {
    root: PathBuf,
    target_path: String,
}

impl Artifacts {
    pub fn new(project: &Project) -> Artifacts {
        Artifacts {
            root: project.root.clone(),
            target_path: project.file.target_path.clone(),
        }
    }

    fn folder(&self) -> PathBuf {
        self.root.join(&self.target_path)
    }

    /// Takes `target/run.lock` for a command that writes `target/`, waiting up to `timeout`
    /// while another run in this project holds it (`waiting` is told who, once).
    pub async fn lock(
        &self,
        run_id: &str,
        command: &str,
        lease: std::time::Duration,
        timeout: std::time::Duration,
        waiting: impl FnMut(&str),
    ) -> Result<crate::materialize::lock::Lock, String> {
        let folder = self.folder();
        std::fs::create_dir_all(&folder).map_err(|error| format!("cannot create {}/: {error}", self.target_path))?;
        let store = datafusion::object_store::local::LocalFileSystem::new_with_prefix(&folder)
            .map_err(|error| format!("cannot open {}/: {error}", self.target_path))?;
        crate::materialize::lock::Lock::wait_for(
            std::sync::Arc::new(store),
            datafusion::object_store::path::Path::from("run.lock"),
            &format!("{}/run.lock", self.target_path),
            crate::materialize::lock::Holder { run_id, command, lease },
            timeout,
            waiting,
        )
        .await
    }

    /// Writes the compiled SQL of every compiled node (folders created once, files in parallel).
    pub fn write_compiled(&self, compiled: &CompiledProject) -> std::io::Result<()> {
        use rayon::prelude::*;
        let folders: std::collections::BTreeSet<PathBuf> = compiled
            .nodes
            .values()
            .filter_map(|node| self.root.join(&node.compiled_path).parent().map(Path::to_path_buf))
            .collect();
        for folder in folders {
            std::fs::create_dir_all(folder)?;
        }
        compiled.nodes.par_iter().try_for_each(|(_, node)| {
            let mut text = node.sql.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            // Compiled SQL is a copy for people to read. A file that already holds this text is
            // left alone: reading is much cheaper than rewriting 20,000 files on every compile.
            let path = self.root.join(&node.compiled_path);
            if std::fs::read(&path).is_ok_and(|existing| existing == text.as_bytes()) {
                return Ok(());
            }
            std::fs::write(path, text.as_bytes())
        })
    }

    /// Writes `manifest.json`.
    pub fn write_manifest(&self, graph: &Graph, target: &Target) -> std::io::Result<PathBuf> {
        let path = self.folder().join("manifest.json");
        let warehouse = match target.local_warehouse(&self.root) {
            Some(folder) => folder.display().to_string(),
            None => target.warehouse.clone(),
        };
        let manifest = manifest(graph, target, &self.target_path, &warehouse);
        let mut bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        bytes.push(b'\n');
        write_atomically(&path, &bytes)?;
        Ok(path)
    }

    /// Writes `sources.json` (the results of `source freshness`).
    pub fn write_sources(&self, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.folder().join("sources.json");
        write_atomically(&path, bytes)?;
        Ok(path)
    }

    /// Writes `run_results.json`.
    pub fn write_run_results(&self, run: &RunSummary<'_>) -> std::io::Result<PathBuf> {
        let path = self.folder().join("run_results.json");
        let document = json!({
            "metadata": {
                "tidemark_version": TIDEMARK_VERSION,
                "artifact_version": ARTIFACT_VERSION,
                "invocation_id": run.run_id,
                "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            "command": run.command,
            "target": run.target.name,
            "args": run.args,
            "elapsed_time": run.elapsed_seconds,
            "results": run.results,
        });
        let mut bytes = serde_json::to_vec_pretty(&document).expect("run results serialise");
        bytes.push(b'\n');
        write_atomically(&path, &bytes)?;
        Ok(path)
    }

    /// Removes the project's `clean-targets` (only folders inside the project).
    pub fn clean(project: &Project) -> Result<Vec<String>, String> {
        let mut removed = Vec::new();
        for folder in &project.file.clean_targets {
            let path = project.root.join(folder);
            let inside = path
                .canonicalize()
                .map(|resolved| resolved.starts_with(&project.root) && resolved != project.root)
                .unwrap_or(false);
            if !path.exists() {
                continue;
            }
            if !inside {
                return Err(format!(
                    "clean-targets entry '{folder}' is not a folder inside the project; refusing to delete it"
                ));
            }
            std::fs::remove_dir_all(&path).map_err(|error| format!("cannot remove '{folder}': {error}"))?;
            removed.push(folder.clone());
        }
        Ok(removed)
    }
}

/// What `run_results.json` records about one invocation.
pub struct RunSummary<'a> {
    pub run_id: &'a str,
    pub command: &'a str,
    pub target: &'a Target,
    pub args: Json,
    pub elapsed_seconds: f64,
    pub results: &'a [NodeResult],
}

fn manifest(graph: &Graph, target: &Target, target_path: &str, warehouse: &str) -> Json {
    let mut nodes = serde_json::Map::new();
    let mut sources = serde_json::Map::new();
    for node in graph.nodes.values() {
        let columns: BTreeMap<&str, Json> = node
            .columns
            .iter()
            .map(|column| {
                (
                    column.name.as_str(),
                    json!({"description": column.description, "data_type": column.data_type}),
                )
            })
            .collect();
        let mut entry = json!({
            "unique_id": node.unique_id,
            "name": node.name,
            "resource_type": node.resource_type,
            "original_file_path": node.path,
            "fqn": node.fqn,
            "materialized": node.materialized,
            "config": node.config,
            "tags": node.tags,
            "description": node.description,
            "columns": columns,
            "depends_on": {"nodes": node.depends_on, "macros": crate::graph::state::macro_ids(graph, node)},
            "relation": node.relation.as_ref().map(|relation| format!("{}.{}", relation.schema, relation.identifier)),
            "checksum": {"name": "sha256", "checksum": node.checksum},
            "vars": node.vars,
            "contract": crate::graph::state::contract_of(node),
        });
        let object = entry.as_object_mut().expect("object");
        match node.resource_type {
            ResourceType::Source => {
                object.insert("location".into(), json!(node.location));
                object.insert("format".into(), json!(node.format));
                sources.insert(node.unique_id.clone(), entry);
            }
            _ => {
                if node.is_executable() || node.materialized == crate::graph::Materialization::Ephemeral {
                    object.insert(
                        "compiled_path".into(),
                        json!(compiled_path(target_path, &graph.project_name, node)),
                    );
                }
                if let Some(unit) = graph.unit_tests.get(&node.unique_id) {
                    let given: Vec<Json> = unit
                        .given
                        .iter()
                        .map(|(id, input, rows)| json!({"input": input, "node": id, "rows": rows}))
                        .collect();
                    object.insert(
                        "unit_test".into(),
                        json!({"model": unit.model, "given": given, "expect": unit.expect}),
                    );
                }
                if let Some(test) = &node.test {
                    object.insert("test_metadata".into(), json!(test));
                    object.insert("severity".into(), json!(node.severity));
                }
                nodes.insert(node.unique_id.clone(), entry);
            }
        }
    }
    let macros: serde_json::Map<String, Json> = graph
        .macros
        .iter()
        .map(|(name, (path, checksum))| {
            (
                format!("macro.{}.{name}", graph.project_name),
                json!({"name": name, "original_file_path": path, "checksum": {"name": "sha256", "checksum": checksum}}),
            )
        })
        .collect();
    json!({
        "metadata": {
            "tidemark_version": TIDEMARK_VERSION,
            "artifact_version": ARTIFACT_VERSION,
            "project_name": graph.project_name,
            "target": target.name,
            "schema": target.schema,
            "warehouse": warehouse,
        },
        "nodes": nodes,
        "sources": sources,
        "macros": macros,
        "parent_map": graph.nodes.values().map(|n| (n.unique_id.clone(), json!(n.depends_on))).collect::<serde_json::Map<_, _>>(),
        "child_map": graph.children.iter().map(|(id, children)| (id.clone(), json!(children))).collect::<serde_json::Map<_, _>>(),
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    // Artifacts never carry a profile secret, whatever an error message quoted.
    let text = String::from_utf8_lossy(bytes);
    std::fs::write(&temporary, crate::diagnostics::redact(&text).as_bytes())?;
    std::fs::rename(&temporary, path)
}

/// A JUnit XML report of a run (`--junit FILE`): one `<testsuite>` for the invocation and one
/// `<testcase>` per node, its class the node's kind and folder (`test.marts`, `model.staging`).
/// Failing tests are `<failure>`s with their failing-row count, errors are `<error>`s with the
/// message, skipped nodes `<skipped>`, and warnings pass with the warning in `<system-out>`.
pub fn junit_xml(run: &RunSummary<'_>, graph: &Graph) -> String {
    use crate::execute::NodeStatus;
    let count = |wanted: &[NodeStatus]| run.results.iter().filter(|r| wanted.contains(&r.status)).count();
    let (failures, errors, skipped) = (
        count(&[NodeStatus::Fail]),
        count(&[NodeStatus::Error]),
        count(&[NodeStatus::Skipped]),
    );
    let suite = format!("tidemark {} (target {})", run.command, run.target.name);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        xml_escape(&suite),
        run.results.len(),
        run.elapsed_seconds
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\" timestamp=\"{}\">\n",
        xml_escape(&suite),
        run.results.len(),
        run.elapsed_seconds,
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S")
    ));
    for result in run.results {
        let node = graph.nodes.get(&result.unique_id);
        let name = node.map(|n| n.name.as_str()).unwrap_or(result.unique_id.as_str());
        let class = node
            .map(|n| {
                let folders = n.fqn.get(1..n.fqn.len().saturating_sub(1)).unwrap_or_default();
                std::iter::once(n.resource_type.as_str().to_string())
                    .chain(folders.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .unwrap_or_default();
        let file = node.map(|n| n.path.as_str()).unwrap_or_default();
        xml.push_str(&format!(
            "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{:.3}\"",
            xml_escape(name),
            xml_escape(&class),
            xml_escape(file),
            result.execution_time
        ));
        let detail = result.error.as_deref().unwrap_or(&result.message);
        let body = match result.status {
            NodeStatus::Fail => {
                let rows = match result.failures {
                    Some(rows) => format!("{rows} failing rows"),
                    None => result.message.clone(),
                };
                format!(
                    "<failure type=\"fail\" message=\"{}\">{}</failure>",
                    xml_escape(&rows),
                    xml_escape(detail)
                )
            }
            NodeStatus::Error => format!(
                "<error type=\"error\" message=\"{}\">{}</error>",
                xml_escape(detail.lines().next().unwrap_or_default()),
                xml_escape(detail)
            ),
            NodeStatus::Skipped => format!("<skipped message=\"{}\"/>", xml_escape(detail)),
            NodeStatus::Warn => format!("<system-out>{}</system-out>", xml_escape(detail)),
            NodeStatus::Success | NodeStatus::Pass => String::new(),
        };
        if body.is_empty() {
            xml.push_str("/>\n");
        } else {
            xml.push_str(&format!(">\n      {body}\n    </testcase>\n"));
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    crate::diagnostics::redact(&xml).into_owned()
}

/// Text as XML character data or attribute value: markup characters escaped, characters XML
/// cannot carry (control characters other than tab and newlines) dropped.
fn xml_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if (c as u32) < 0x20 => {}
            c => escaped.push(c),
        }
    }
    escaped
}
