//! Stage 7 — artifacts: the only module that writes `target/`.
//!
//! - `target/compiled/<project>/<path>`: the SQL each node ran (or would run);
//! - `target/manifest.json`: every node with its config, dependencies and compiled path —
//!   byte-identical for the same project (no timestamps, ordered maps);
//! - `target/run_results.json`: status, timing, rows written and error of every node of a run;
//! - `target/sources.json`: how fresh each checked source table is (`source freshness`).
//!
//! The three JSON documents are the typed structs of [`crate::documents`], which their readers
//! share.
//!
//! Commands that write `target/` hold `target/run.lock` while they do ([`Artifacts::lock`]).
//!
//! The JSON documents are written to a temporary name and renamed, so readers never see half a
//! file; compiled SQL files are plain copies for people to read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compile::{compiled_path, CompiledProject};
use crate::diagnostics::{Diagnostic, Error};
use crate::documents::{
    Checksum, ColumnEntry, DependsOn, GivenEntry, InvocationArgs, InvocationMetadata, MacroEntry, Manifest,
    ManifestMetadata, ManifestNode, ManifestSource, NodeEntry, RunResults, Sources, UnitTestEntry,
};
use crate::execute::NodeResult;

pub mod catalog;
pub mod docs;
use crate::graph::{Graph, Materialization, Node, ResourceType, Severity, UnitTest};
use crate::project::{Project, Target};

/// Column lineage per node: unique id → column → the columns feeding it (`<unique_id>.<column>`).
pub type ColumnLineage = BTreeMap<String, BTreeMap<String, Vec<String>>>;

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
    ) -> Result<crate::materialize::lock::Lock, Error> {
        let folder = self.folder();
        std::fs::create_dir_all(&folder)
            .map_err(|error| Error::Environment(format!("cannot create {}/: {error}", self.target_path)))?;
        let store = datafusion::object_store::local::LocalFileSystem::new_with_prefix(&folder)
            .map_err(|error| Error::Environment(format!("cannot open {}/: {error}", self.target_path)))?;
        let lock = crate::materialize::lock::Lock::wait_for(
            std::sync::Arc::new(store),
            datafusion::object_store::path::Path::from("run.lock"),
            &format!("{}/run.lock", self.target_path),
            crate::materialize::lock::Holder { run_id, command, lease },
            timeout,
            waiting,
        )
        .await?;
        Ok(lock)
    }

    /// Writes the compiled SQL of every compiled node (folders created once, files in parallel).
    pub fn write_compiled(&self, compiled: &CompiledProject) -> std::io::Result<()> {
        use rayon::prelude::*;
        let folders: std::collections::BTreeSet<PathBuf> = compiled
            .nodes
            .values()
            .filter_map(|node| self.root.join(&node.compiled_path).parent().map(Path::to_path_buf))
            .collect();
        // Folders made now hold no file yet: nothing in them to compare with.
        let mut created = std::collections::BTreeSet::new();
        for folder in folders {
            if !folder.is_dir() {
                std::fs::create_dir_all(&folder)?;
                created.insert(folder);
            }
        }
        compiled.nodes.par_iter().try_for_each(|(_, node)| {
            let mut text = node.sql.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            // Compiled SQL is a copy for people to read. A file that already holds this text is
            // left alone: reading is much cheaper than rewriting 20,000 files on every compile.
            let path = self.root.join(&node.compiled_path);
            let is_new = path.parent().is_some_and(|folder| created.contains(folder));
            if !is_new && std::fs::read(&path).is_ok_and(|existing| existing == text.as_bytes()) {
                return Ok(());
            }
            std::fs::write(path, text.as_bytes())
        })
    }

    /// Writes `manifest.json`.
    pub fn write_manifest(&self, graph: &Graph, target: &Target) -> std::io::Result<PathBuf> {
        self.write_manifest_with_lineage(graph, target, &ColumnLineage::new())
    }

    /// Writes `manifest.json` with each model's column lineage (`docs generate`).
    pub fn write_manifest_with_lineage(
        &self,
        graph: &Graph,
        target: &Target,
        lineage: &ColumnLineage,
    ) -> std::io::Result<PathBuf> {
        let path = self.folder().join("manifest.json");
        let warehouse = match target.local_warehouse(&self.root) {
            Some(folder) => folder.display().to_string(),
            None => target.warehouse.clone(),
        };
        let mut document = manifest(graph, target, &self.target_path, warehouse);
        for (id, columns) in lineage {
            if let Some(node) = document.nodes.get_mut(id) {
                node.column_lineage = Some(columns.clone());
            }
        }
        write_json(&path, &document)?;
        Ok(path)
    }

    /// Writes `sources.json` (the results of `source freshness`).
    pub fn write_sources(&self, sources: &Sources) -> std::io::Result<PathBuf> {
        let path = self.folder().join("sources.json");
        write_json(&path, sources)?;
        Ok(path)
    }

    /// Writes `run_results.json`.
    pub fn write_run_results(&self, run: &RunSummary<'_>) -> std::io::Result<PathBuf> {
        let path = self.folder().join("run_results.json");
        let document = RunResults {
            metadata: invocation_metadata(run.run_id),
            command: run.command.to_string(),
            target: run.target.name.clone(),
            args: run.args.clone(),
            elapsed_time: run.elapsed_seconds,
            results: run.results.to_vec(),
        };
        write_json(&path, &document)?;
        Ok(path)
    }

    /// Removes the project's `clean-targets` (only folders inside the project).
    pub fn clean(project: &Project) -> Result<Vec<String>, Error> {
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
                let problem =
                    format!("clean-targets entry '{folder}' is not a folder inside the project; refusing to delete it");
                return Err(Diagnostic::new(problem).in_file(project.file.file_name.clone()).into());
            }
            std::fs::remove_dir_all(&path)
                .map_err(|error| Error::Environment(format!("cannot remove '{folder}': {error}")))?;
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
    /// The options it ran with, which `tidemark retry` reuses.
    pub args: InvocationArgs,
    pub elapsed_seconds: f64,
    pub results: &'a [NodeResult],
}

/// `metadata` of a document written by invocation `invocation_id`, stamped now.
pub fn invocation_metadata(invocation_id: &str) -> InvocationMetadata {
    InvocationMetadata {
        tidemark_version: TIDEMARK_VERSION.to_string(),
        artifact_version: ARTIFACT_VERSION,
        invocation_id: invocation_id.to_string(),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// The manifest of `graph` compiled for `target`.
fn manifest(graph: &Graph, target: &Target, target_path: &str, warehouse: String) -> Manifest {
    let mut nodes = BTreeMap::new();
    let mut sources = BTreeMap::new();
    for node in graph.nodes.values() {
        let entry = node_entry(graph, node);
        match node.resource_type {
            ResourceType::Source => {
                let source = ManifestSource {
                    entry,
                    location: node.files().map(str::to_string),
                    format: node.file_format().map(|format| format.as_str().to_string()),
                };
                sources.insert(node.unique_id.clone(), source);
            }
            _ => {
                let compiled = node.is_executable() || node.materialized == Materialization::Ephemeral;
                let manifest_node = ManifestNode {
                    entry,
                    compiled_path: compiled.then(|| compiled_path(target_path, &graph.project_name, node)),
                    unit_test: graph.unit_tests.get(&node.unique_id).map(unit_test_entry),
                    test_metadata: node.generic_test().cloned(),
                    severity: node.generic_test().map(|_| severity(node.severity()).to_string()),
                    access: (node.resource_type == crate::graph::ResourceType::Model)
                        .then(|| node.access().to_string()),
                    group: node.group().map(str::to_string),
                    version: node.version.clone(),
                    latest_version: node.latest_version.clone(),
                    column_lineage: None,
                };
                nodes.insert(node.unique_id.clone(), manifest_node);
            }
        }
    }
    let macros = graph
        .macros
        .iter()
        .map(|(name, (path, checksum))| {
            let entry = MacroEntry {
                name: name.clone(),
                original_file_path: path.clone(),
                checksum: Checksum::sha256(checksum),
            };
            (format!("macro.{}.{name}", graph.project_name), entry)
        })
        .collect();
    Manifest {
        metadata: ManifestMetadata {
            tidemark_version: TIDEMARK_VERSION.to_string(),
            artifact_version: ARTIFACT_VERSION,
            project_name: graph.project_name.clone(),
            target: Some(target.name.clone()),
            schema: target.schema.clone(),
            warehouse: Some(warehouse),
        },
        nodes,
        sources,
        macros,
        parent_map: graph
            .nodes
            .values()
            .map(|node| (node.unique_id.clone(), node.depends_on.clone()))
            .collect(),
        child_map: graph.children.clone(),
        exposures: graph.exposures.clone(),
        groups: graph.groups.clone(),
    }
}

/// What the manifest records of every node and source table.
fn node_entry(graph: &Graph, node: &Node) -> NodeEntry {
    let columns = node
        .columns
        .iter()
        .map(|column| {
            let entry = ColumnEntry {
                description: column.description.clone(),
                data_type: column.data_type.clone(),
            };
            (column.name.clone(), entry)
        })
        .collect();
    NodeEntry {
        unique_id: node.unique_id.clone(),
        name: node.name.clone(),
        resource_type: node.resource_type.as_str().to_string(),
        original_file_path: node.path.clone(),
        fqn: node.fqn.clone(),
        materialized: node.materialized.as_str().to_string(),
        config: node.config.clone(),
        tags: node.tags.clone(),
        description: node.description.clone(),
        columns,
        depends_on: DependsOn {
            nodes: node.depends_on.clone(),
            macros: crate::graph::state::macro_ids(graph, node),
        },
        relation: node
            .relation()
            .map(|relation| format!("{}.{}", relation.schema, relation.identifier)),
        checksum: Checksum::sha256(&node.checksum),
        vars: node.vars.clone(),
        contract: crate::graph::state::contract_of(node),
    }
}

/// A unit test's model, given inputs and expected rows.
fn unit_test_entry(unit: &UnitTest) -> UnitTestEntry {
    UnitTestEntry {
        model: unit.model.clone(),
        given: unit
            .given
            .iter()
            .map(|(id, input, rows)| GivenEntry {
                input: input.clone(),
                node: id.clone(),
                rows: rows.clone(),
            })
            .collect(),
        expect: unit.expect.clone(),
    }
}

/// A generic test's definition.
/// A test's severity as written in the manifest.
fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warn => "warn",
    }
}

/// Writes `document` as pretty-printed JSON with a final newline, through
/// [`write_atomically`].
pub fn write_json(path: &Path, document: &impl Serialize) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(document).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
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
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let suite_name = format!("tidemark {} (target {})", run.command, run.target.name);
    let elapsed = std::time::Duration::from_secs_f64(run.elapsed_seconds.max(0.0));
    let mut suite = TestSuite::new(suite_name.as_str());
    suite.set_timestamp(chrono::Utc::now().fixed_offset());
    suite.set_time(elapsed);
    for result in run.results {
        let node = graph.nodes.get(&result.unique_id);
        let name = node.map(|n| n.name.as_str()).unwrap_or(result.unique_id.as_str());
        let detail = result.error.as_deref().unwrap_or(&result.message);
        let status = match result.status {
            NodeStatus::Fail => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_type("fail")
                    .set_message(match result.failures {
                        Some(rows) => format!("{rows} failing rows"),
                        None => result.message.clone(),
                    })
                    .set_description(detail);
                status
            }
            NodeStatus::Error => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status
                    .set_type("error")
                    .set_message(detail.lines().next().unwrap_or_default())
                    .set_description(detail);
                status
            }
            NodeStatus::Skipped => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(detail);
                status
            }
            NodeStatus::Warn | NodeStatus::Success | NodeStatus::Pass => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(name, status);
        if let Some(node) = node {
            // `model.staging` for models/staging/x.sql: the kind, then the folders.
            let folders = node.fqn.get(1..node.fqn.len().saturating_sub(1)).unwrap_or_default();
            let class: Vec<&str> = std::iter::once(node.resource_type.as_str())
                .chain(folders.iter().map(String::as_str))
                .collect();
            case.set_classname(class.join("."));
            case.extra.insert("file".into(), node.path.as_str().into());
        }
        case.set_time(std::time::Duration::from_secs_f64(result.execution_time.max(0.0)));
        if result.status == NodeStatus::Warn {
            // A warning passes; what it warned about is its output.
            case.set_system_out(detail);
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new(suite_name.as_str());
    report.set_time(elapsed);
    report.add_test_suite(suite);
    let xml = report
        .to_string()
        .unwrap_or_else(|error| format!("<!-- the JUnit report could not be written: {error} -->\n"));
    crate::diagnostics::redact(&xml).into_owned()
}
