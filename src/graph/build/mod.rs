//! Parse phase: project files → nodes with resolved configs and dependencies.
//!
//! Every model and singular test is rendered once by the template stage to learn its `ref`,
//! `source` and `config` calls; property files add descriptions, columns, configs and generic
//! tests. Unknown refs and sources are reported with their file and line and the nearest name.
//!
//! [`build()`] runs the steps in order, each in its own file: `models` (models, including those
//! metric models generate, and seeds), `sources`, `data_tests` (generic and singular tests),
//! `dependencies` (refs and sources resolved to unique ids) and `unit_tests`; they share the
//! nodes built so far and the problems found in a [`Parse`].

mod data_tests;
mod dependencies;
mod models;
mod snapshots;
mod sources;
mod unit_tests;

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde_json::Value as Json;

use super::node::{Node, ResourceType, Severity};
use super::Graph;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::project::{ConfigMap, NodeProperties, Project, SqlFile, Target};
use crate::template::{Capture, TemplateEngine};
pub use data_tests::{parse_relation_expression, RelationExpression};

/// The generic tests tidemark knows, with their required arguments.
pub const GENERIC_TESTS: &[(&str, &[&str])] = &[
    ("unique", &[]),
    ("not_null", &[]),
    ("accepted_values", &["values"]),
    ("relationships", &["to", "field"]),
    ("expression_is_true", &["expression"]),
    ("not_empty", &[]),
    ("row_count", &[]),
];

/// What the parse phase has built so far, shared by its steps.
struct Parse<'a> {
    project: &'a Project,
    engine: &'a TemplateEngine,
    target: &'a Target,
    project_name: &'a str,
    nodes: BTreeMap<String, Node>,
    /// What `ref()` can name: models, seeds and snapshots by package, name and version.
    refs: crate::graph::refs::RefIndex,
    /// Names of disabled models and seeds (a ref to one gets its own message).
    disabled: BTreeSet<String>,
    /// `(source, table)` → the source table's unique id.
    source_ids: BTreeMap<(String, String), String>,
    problems: Diagnostics,
    warnings: Vec<Diagnostic>,
}

/// Builds the graph of every enabled node in the project.
pub fn build(project: &Project, engine: &TemplateEngine, target: &Target) -> Result<Graph, Diagnostics> {
    let mut parse = Parse {
        project,
        engine,
        target,
        project_name: project.file.name.as_str(),
        nodes: BTreeMap::new(),
        refs: crate::graph::refs::RefIndex::new(project.file.name.as_str()),
        disabled: BTreeSet::new(),
        source_ids: BTreeMap::new(),
        problems: Diagnostics::default(),
        // What loading the project found it ignores comes first, in file order.
        warnings: project
            .file
            .warnings
            .iter()
            .chain(project.property_files.iter().flat_map(|file| &file.warnings))
            .cloned()
            .collect(),
    };

    // Metric models become generated SQL models, parsed like the others.
    let generated = match crate::metrics::expand(project, engine.var(crate::metrics::FAIL_ON_ALERT_VAR)) {
        Ok(generated) => generated,
        Err(diagnostics) => {
            parse.problems.extend(diagnostics);
            Vec::new()
        }
    };
    let generated_files: Vec<SqlFile> = generated
        .iter()
        .map(|model| SqlFile {
            package: None,
            path: model.path.clone(),
            parts: generated_parts(project, &model.path, &model.name),
            text: model.sql.clone(),
        })
        .collect();
    let all_models: Vec<&SqlFile> = project.models.iter().chain(generated_files.iter()).collect();

    // Models and singular tests are rendered in parallel; the rest is cheap bookkeeping.
    let parsed_models: Vec<(&SqlFile, Result<Capture, Diagnostic>)> = all_models
        .into_par_iter()
        .map(|file| (file, engine.parse(&file.path, &file.text)))
        .collect();
    let parsed_tests: Vec<(&SqlFile, Result<Capture, Diagnostic>)> = project
        .singular_tests
        .par_iter()
        .map(|file| (file, engine.parse(&file.path, &file.text)))
        .collect();

    parse.models(parsed_models, &generated);
    parse.seeds();
    parse.snapshots();
    parse.one_node_per_relation();
    parse.sources();
    let mut tests = parse.generic_tests();
    tests.extend(parse.singular_tests(parsed_tests));
    tests.extend(parse.generated_tests(&generated));
    parse.add_tests(tests);
    parse.dependencies();
    parse.unused_config_paths();
    let exposures = parse.exposures();
    let groups = parse.groups();
    let unit_tests = parse.unit_tests();
    let mut graph = parse.finish(unit_tests)?;
    graph.exposures = exposures;
    graph.groups = groups;
    Ok(graph)
}

impl Parse<'_> {
    /// Two nodes written to one relation (same-named models of two packages, a model and a seed,
    /// two versions given one alias) would overwrite each other: a problem at the second.
    fn one_node_per_relation(&mut self) {
        let mut written: BTreeMap<(String, String), &Node> = BTreeMap::new();
        for node in self.nodes.values() {
            let Some(relation) = node.relation() else { continue };
            let key = (relation.schema.clone(), relation.identifier.clone());
            if let Some(first) = written.insert(key, node) {
                self.problems.push(
                    Diagnostic::new(format!(
                        "{} '{}' ({}) and {} '{}' ({}) would both be written to {}.{}",
                        node.resource_type.as_str(),
                        node.display_name(),
                        node.unique_id,
                        first.resource_type.as_str(),
                        first.display_name(),
                        first.unique_id,
                        relation.schema,
                        relation.identifier
                    ))
                    .with_help("give one of them another alias or schema (config alias: / schema:)")
                    .in_file(&node.path)
                    .at_line(crate::diagnostics::line_of(&node.raw_code, "alias")),
                );
            }
        }
    }

    /// Groups declared under `groups:`; a node's `group` that names none, a group declared
    /// twice, or a model `access` other than private, protected and public is a problem.
    fn groups(&mut self) -> BTreeMap<String, crate::documents::Group> {
        let mut groups = BTreeMap::new();
        let mut names = BTreeMap::new();
        for file in &self.project.property_files {
            for group in &file.groups {
                if let Some(previous) = names.insert(group.name.clone(), file.file.clone()) {
                    self.problems.push(
                        Diagnostic::new(format!(
                            "group '{}' is declared twice: here and in {previous}",
                            group.name
                        ))
                        .in_file(&file.file)
                        .at_place(group.line, group.column),
                    );
                    continue;
                }
                let unique_id = format!("group.{}.{}", self.project_name, group.name);
                groups.insert(
                    unique_id.clone(),
                    crate::documents::Group {
                        unique_id,
                        name: group.name.clone(),
                        owner: group.owner.clone(),
                        description: group.description.clone(),
                        original_file_path: file.file.clone(),
                    },
                );
            }
        }
        let model_properties = properties_by_name(self.project, |file| &file.models);
        for node in self.nodes.values() {
            let what = format!("{} '{}'", node.resource_type.as_str(), node.display_name());
            // At the value in the model's properties when they set it, else in its own file.
            let at = |message: String, key: &str| {
                let yaml = (node.resource_type == ResourceType::Model)
                    .then(|| model_properties.get(&(node.package().to_string(), node.name.clone())))
                    .flatten()
                    .and_then(|properties| Some((properties, *properties.config_positions.get(key)?)));
                match yaml {
                    Some((properties, position)) => Diagnostic::new(message)
                        .in_file(&properties.file)
                        .at_position(Some(position)),
                    None => {
                        let line = node.line.or_else(|| crate::diagnostics::line_of(&node.raw_code, key));
                        Diagnostic::new(message).in_file(&node.path).at_line(line)
                    }
                }
            };
            if let Some(group) = node.group() {
                if !names.contains_key(group) {
                    let mut problem = at(
                        format!("{what}: group '{group}' is not declared under groups: in any property file"),
                        "group",
                    );
                    if let Some(near) = crate::diagnostics::did_you_mean(group, names.keys().map(String::as_str)) {
                        problem = problem.with_help(format!("did you mean '{near}'?"));
                    }
                    self.problems.push(problem);
                }
            }
            if node.resource_type == ResourceType::Model {
                match node.access() {
                    "protected" | "public" => {}
                    "private" if node.group().is_none() => self.warnings.push(at(
                        format!("{what} is access: private but in no group, so nothing may ref it"),
                        "access",
                    )),
                    "private" => {}
                    other => self.problems.push(at(
                        format!("{what}: access '{other}' is not one of private, protected or public"),
                        "access",
                    )),
                }
            }
        }
        groups
    }

    /// Exposures, each `depends_on` entry resolved to the node it names; an unknown name is a
    /// problem at its entry, with "did you mean".
    fn exposures(&mut self) -> BTreeMap<String, crate::documents::Exposure> {
        let mut exposures = BTreeMap::new();
        for file in &self.project.property_files {
            for exposure in &file.exposures {
                let mut nodes = Vec::new();
                for (text, at) in &exposure.depends_on {
                    let found = match parse_relation_expression(text) {
                        Some(RelationExpression::Ref(name)) => {
                            self.refs.get(&name).map(str::to_string).ok_or_else(|| {
                                let near = crate::diagnostics::did_you_mean(&name, self.refs.names());
                                (
                                    format!("no model, seed or snapshot named '{name}'"),
                                    near.map(str::to_string),
                                )
                            })
                        }
                        Some(RelationExpression::Source(source, table)) => self
                            .source_ids
                            .get(&(source.clone(), table.clone()))
                            .cloned()
                            .ok_or_else(|| (format!("source('{source}', '{table}') is not declared"), None)),
                        None => Err(("write ref('name') or source('source', 'table')".to_string(), None)),
                    };
                    match found {
                        Ok(id) => nodes.push(id),
                        Err((message, near)) => {
                            let mut problem = Diagnostic::new(format!(
                                "exposure '{}': depends_on '{text}': {message}",
                                exposure.name
                            ))
                            .in_file(&file.file)
                            .at_position(*at);
                            if let Some(near) = near {
                                problem = problem.with_help(format!("did you mean ref('{near}')?"));
                            }
                            self.problems.push(problem);
                        }
                    }
                }
                nodes.sort();
                nodes.dedup();
                let unique_id = format!("exposure.{}.{}", self.project_name, exposure.name);
                exposures.insert(
                    unique_id.clone(),
                    crate::documents::Exposure {
                        unique_id,
                        name: exposure.name.clone(),
                        kind: exposure.kind.clone(),
                        owner: exposure.owner.clone(),
                        description: exposure.description.clone(),
                        url: exposure.url.clone(),
                        maturity: exposure.maturity.clone(),
                        depends_on: crate::documents::DependsOn {
                            nodes,
                            macros: Vec::new(),
                        },
                        original_file_path: file.file.clone(),
                    },
                );
            }
        }
        exposures
    }

    /// Folder paths of the project file's `models:` and `seeds:` that apply to no node (a
    /// renamed folder, a typo): warned about, as dbt does, since their configs do nothing.
    fn unused_config_paths(&mut self) {
        let project = self.project;
        for (key, tree, kind) in [
            ("models", &project.file.models, ResourceType::Model),
            ("seeds", &project.file.seeds, ResourceType::Seed),
            ("snapshots", &project.file.snapshots, ResourceType::Snapshot),
        ] {
            // Disabled nodes use their paths too (the config may be what disables them).
            let owner = |package: &Option<String>| package.clone().unwrap_or_else(|| self.project_name.to_string());
            let files: Vec<Vec<String>> = match kind {
                ResourceType::Model => project
                    .models
                    .iter()
                    .map(|file| fqn_of(&owner(&file.package), &file.parts))
                    .collect(),
                ResourceType::Seed => project
                    .seeds
                    .iter()
                    .map(|seed| fqn_of(&owner(&seed.package), &seed.parts))
                    .collect(),
                _ => Vec::new(),
            };
            let fqns: Vec<&[String]> = self
                .nodes
                .values()
                .filter(|node| node.resource_type == kind)
                .map(|node| node.fqn.as_slice())
                .chain(files.iter().map(Vec::as_slice))
                .collect();
            for (path, position) in tree.paths() {
                let used = fqns.iter().any(|fqn| fqn.starts_with(&path));
                if !used {
                    self.warnings.push(
                        Diagnostic::new(format!(
                            "{key}: configuration path '{}' applies to no {}; its configs do nothing",
                            path.join("."),
                            kind.as_str()
                        ))
                        .with_help(format!(
                            "the first key under {key}: is the project name ('{}'), then folders under {}, then file names",
                            project.file.name,
                            match kind {
                                ResourceType::Model => "model-paths",
                                ResourceType::Seed => "seed-paths",
                                _ => "snapshot-paths",
                            }
                        ))
                        .in_file(project.file.file_name.clone())
                        .at_position(position),
                    );
                }
            }
        }
    }

    /// The graph, once every step found no problem: checksums, unit test specs and macros added.
    fn finish(self, unit_tests: BTreeMap<String, super::UnitTest>) -> Result<Graph, Diagnostics> {
        let (project, engine, project_name) = (self.project, self.engine, self.project_name);
        let Parse {
            mut nodes,
            mut problems,
            warnings,
            ..
        } = self;
        for node in nodes.values() {
            if let Err(problem) = check_config_values(node, project) {
                problems.push(problem);
            }
        }
        // A test of a node that does not exist was reported above; drop dangling dependencies.
        if !problems.is_empty() {
            return Err(problems);
        }
        super::state::fingerprint(&mut nodes, project, engine);
        for (id, test) in &unit_tests {
            if let Some(node) = nodes.get_mut(id) {
                node.checksum =
                    crate::project::sha256(serde_json::to_string(test).expect("unit test serialises").as_bytes());
            }
        }
        let mut graph = Graph::new(project_name.to_string(), nodes, warnings)?;
        graph.unit_tests = unit_tests;
        graph.macros = engine
            .macros()
            .iter()
            .map(|(name, definition)| {
                (
                    name.clone(),
                    (
                        definition.path.clone(),
                        crate::project::sha256(definition.text.as_bytes()),
                    ),
                )
            })
            .collect();
        Ok(graph)
    }
}

/// The properties of each model (or seed) by its package and name: a package's property files
/// describe the package's own nodes.
fn properties_by_name<'a>(
    project: &'a Project,
    pick: impl Fn(&'a crate::project::PropertyFile) -> &'a Vec<NodeProperties>,
) -> BTreeMap<(String, String), &'a NodeProperties> {
    project
        .property_files
        .iter()
        .flat_map(|file| {
            let package = file.package.as_deref().unwrap_or(project.file.name.as_str());
            pick(file)
                .iter()
                .map(move |p| ((package.to_string(), p.name.clone()), p))
        })
        .collect()
}

/// fqn parts of a model generated from a property file: the file's folders, then the name.
fn generated_parts(project: &Project, path: &str, name: &str) -> Vec<String> {
    let relative = project
        .file
        .model_paths
        .iter()
        .find_map(|folder| path.strip_prefix(&format!("{}/", folder.trim_end_matches('/'))))
        .unwrap_or(path);
    let mut parts: Vec<String> = relative.split('/').map(str::to_string).collect();
    parts.pop();
    parts.push(name.to_string());
    parts
}

/// Reports the keys a SQL file's `config()` sets that tidemark does not know (a typo is a
/// problem) or does not implement (a warning).
fn check_config_call(
    kind: crate::project::keys::ConfigKind,
    (path, text): (&str, &str),
    config: &ConfigMap,
    problems: &mut Diagnostics,
    warnings: &mut Vec<Diagnostic>,
) {
    for key in config.keys() {
        if let Some((diagnostic, error)) = crate::project::keys::config_problem(kind, key) {
            let diagnostic = diagnostic.in_file(path).at_line(crate::diagnostics::line_of(text, key));
            if error {
                problems.push(diagnostic);
            } else {
                warnings.push(diagnostic);
            }
        }
    }
}

fn fqn_of(project_name: &str, parts: &[String]) -> Vec<String> {
    std::iter::once(project_name.to_string())
        .chain(parts.iter().cloned())
        .collect()
}

fn is_enabled(config: &ConfigMap) -> bool {
    config.get("enabled").and_then(Json::as_bool).unwrap_or(true)
}

/// Config values whose type or spelling is wrong, which would otherwise be read as a default:
/// `tags` (a name or a list of names), a test's `severity` (`error` or `warn`) and
/// `partition_by` (a column or a list of columns).
fn check_config_values(node: &Node, project: &Project) -> Result<(), Diagnostic> {
    let names = |value: &Json| match value {
        Json::String(_) | Json::Null => true,
        Json::Array(items) => items.iter().all(Json::is_string),
        _ => false,
    };
    let problem = match (
        node.config.get("tags"),
        node.config.get("severity"),
        node.config.get("partition_by"),
    ) {
        (Some(tags), _, _) if !names(tags) => {
            Some(("tags", format!("tags must be a name or a list of names, not {tags}")))
        }
        (_, Some(severity), _)
            if node.resource_type == ResourceType::Test
                && !severity
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("error") || s.eq_ignore_ascii_case("warn")) =>
        {
            Some(("severity", format!("severity must be error or warn, not {severity}")))
        }
        (_, _, Some(partition_by)) if !names(partition_by) => Some((
            "partition_by",
            format!("partition_by must be a column name or a list of column names, not {partition_by}"),
        )),
        _ => None,
    };
    let Some((key, message)) = problem else {
        return Ok(());
    };
    // Where it is set, nearest first: the node's own `config()` (or, for a test, its declaration
    // and what follows it), a property file declaring the node, the project file.
    let needles = [
        format!("{key}="),
        format!("{key} ="),
        format!("+{key}:"),
        format!("{key}:"),
    ];
    let find = |text: &str, from_line: usize| -> Option<usize> {
        let offset: usize = text
            .split_inclusive('\n')
            .take(from_line.saturating_sub(1))
            .map(str::len)
            .sum();
        let rest = text.get(offset..)?;
        needles
            .iter()
            .filter_map(|needle| crate::diagnostics::line_of(rest, needle))
            .min()
            .map(|line| line + from_line.saturating_sub(1))
    };
    let own = match node.resource_type {
        ResourceType::Test => project
            .property_files
            .iter()
            .find(|file| file.file == node.path)
            .and_then(|file| find(&file.text, node.line.unwrap_or(1)))
            .or_else(|| find(&node.raw_code, 1)),
        _ => find(&node.raw_code, 1),
    };
    let declared = || {
        project.property_files.iter().find_map(|file| {
            let declares = file
                .models
                .iter()
                .chain(&file.seeds)
                .any(|entry| entry.name == node.name);
            declares
                .then(|| find(&file.text, 1).map(|line| (file.file.clone(), Some(line))))
                .flatten()
        })
    };
    let project_file = || {
        let text = std::fs::read_to_string(project.root.join(&project.file.file_name)).unwrap_or_default();
        find(&text, 1).map(|line| (project.file.file_name.clone(), Some(line)))
    };
    let (file, line) = match own {
        Some(line) => (node.path.clone(), Some(line)),
        None => declared()
            .or_else(project_file)
            .unwrap_or_else(|| (node.path.clone(), node.line)),
    };
    let kind = match node.resource_type {
        ResourceType::Test => "test",
        ResourceType::Seed => "seed",
        ResourceType::Snapshot => "snapshot",
        ResourceType::Source => "source",
        ResourceType::Model => "model",
    };
    Err(Diagnostic::new(format!("{kind} '{}': {message}", node.name))
        .in_file(file)
        .at_line(line))
}

fn severity_of(config: &ConfigMap) -> Severity {
    match config
        .get("severity")
        .and_then(Json::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("warn") => Severity::Warn,
        _ => Severity::Error,
    }
}

fn duplicate_name(name: &str, path: &str, previous: &str) -> Diagnostic {
    Diagnostic::new(format!("two nodes are named '{name}': {path} and {previous}"))
        .in_file(path)
        .with_help("rename one of them; model and seed names must be unique")
}
