//! Parse phase: project files → nodes with resolved configs and dependencies.
//!
//! Every model and singular test is rendered once by the template stage to learn its `ref`,
//! `source` and `config` calls; property files add descriptions, columns, configs and generic
//! tests. Unknown refs and sources are reported with their file and line and the nearest name.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde_json::Value as Json;

use super::node::{GenericTest, Materialization, Node, ResourceType, Severity};
use super::Graph;
use crate::diagnostics::{did_you_mean, Diagnostic, Diagnostics, Position};
use crate::project::project_file::{merge_configs, tags_of};
use crate::project::{ConfigMap, NodeProperties, Project, SqlFile, Target, TestDeclaration};
use crate::relation::RelationName;
use crate::template::{Capture, TemplateEngine};

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

/// Builds the graph of every enabled node in the project.
pub fn build(project: &Project, engine: &TemplateEngine, target: &Target) -> Result<Graph, Diagnostics> {
    let project_name = project.file.name.as_str();
    let mut problems = Diagnostics::default();
    let mut warnings = Vec::new();

    let model_properties = properties_by_name(project, |file| &file.models);
    let seed_properties = properties_by_name(project, |file| &file.seeds);

    // Metric models become generated SQL models, parsed like the others.
    let generated = match crate::metrics::expand(project) {
        Ok(generated) => generated,
        Err(diagnostics) => {
            problems.extend(diagnostics);
            Vec::new()
        }
    };
    let generated_files: Vec<SqlFile> = generated
        .iter()
        .map(|model| SqlFile {
            path: model.path.clone(),
            parts: generated_parts(project, &model.path, &model.name),
            text: model.sql.clone(),
        })
        .collect();
    let generated_by_name: BTreeMap<&str, &crate::metrics::GeneratedModel> =
        generated.iter().map(|model| (model.name.as_str(), model)).collect();
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

    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    let mut disabled: BTreeSet<String> = BTreeSet::new();

    for (file, parsed) in parsed_models {
        let capture = match parsed {
            Ok(capture) => capture,
            Err(diagnostic) => {
                problems.push(diagnostic);
                continue;
            }
        };
        let name = file.name().to_string();
        let fqn = fqn_of(project_name, &file.parts);
        let mut config = project.file.models.resolve(&fqn);
        let properties = model_properties.get(name.as_str());
        if let Some(properties) = properties {
            merge_configs(&mut config, &properties.config);
        }
        merge_configs(&mut config, &capture.config);
        let generated_model = generated_by_name
            .get(name.as_str())
            .filter(|model| model.path == file.path);
        let mut capture = capture;
        if let Some(model) = generated_model {
            merge_configs(&mut config, &model.config);
            // Problems with a generated model's refs point at the metric model in its YAML file.
            for call in &mut capture.refs {
                call.line = model.line;
            }
        }
        if !is_enabled(&config) {
            disabled.insert(name);
            continue;
        }
        let materialized_name = config
            .get("materialized")
            .and_then(Json::as_str)
            .unwrap_or("view")
            .to_string();
        let materialized = match Materialization::for_model(&materialized_name) {
            Ok(materialized) => materialized,
            Err(message) => {
                problems.push(
                    Diagnostic::new(format!("model '{name}': {message}"))
                        .in_file(&file.path)
                        .at_line(crate::diagnostics::line_of(&file.text, &materialized_name)),
                );
                continue;
            }
        };
        config.insert("materialized".into(), Json::from(materialized.as_str()));
        let relation = if materialized == Materialization::Ephemeral {
            None
        } else {
            // A rejected name is reported; the node stays in the DAG (under its own name, never
            // written: the run stops at the problems) so its children report nothing more.
            Some(relation_of(&config, &name, target).unwrap_or_else(|problem| {
                // The SQL file's config() call wins over the YAML properties, which win over
                // tidemark.yml: report the place the rejected value came from.
                let in_yaml = properties
                    .filter(|_| !capture.config.contains_key(problem.1))
                    .and_then(|p| Some((p.file.as_str(), *p.config_positions.get(problem.1)?)));
                problems.push(match in_yaml {
                    Some((yaml, at)) => bad_relation_at("model", &name, yaml, at, problem.0),
                    None => bad_relation("model", &name, &file.path, &file.text, problem),
                });
                RelationName::table(&target.schema, &name)
            }))
        };
        let unique_id = format!("model.{project_name}.{name}");
        if let Some(previous) = by_name.insert(name.clone(), unique_id.clone()) {
            problems.push(duplicate_name(&name, &file.path, &nodes[&previous].path));
            continue;
        }
        let node = Node {
            unique_id: unique_id.clone(),
            tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
            description: properties
                .map(|p| p.description.clone())
                .filter(|d| !d.is_empty())
                .or_else(|| generated_model.map(|m| m.description.clone()))
                .unwrap_or_default(),
            columns: properties.map(|p| p.columns.clone()).unwrap_or_default(),
            name,
            resource_type: ResourceType::Model,
            path: file.path.clone(),
            line: generated_model.and_then(|m| m.line),
            fqn,
            materialized,
            config,
            relation,
            raw_code: file.text.clone(),
            refs: capture.refs,
            sources: capture.sources,
            vars: capture.vars,
            depends_on: Vec::new(),
            severity: Severity::Error,
            test: None,
            location: None,
            format: None,
            checksum: String::new(),
            macros: Vec::new(),
        };
        let checked = if node.materialized == Materialization::Incremental {
            node.incremental().map(|_| ())
        } else {
            Ok(())
        };
        if let Err(message) = checked.and_then(|()| node.check_partition_by()) {
            let key = [
                "incremental_strategy",
                "unique_key",
                "partition_by",
                "on_schema_change",
                "lookback_days",
            ]
            .into_iter()
            .find(|key| message.contains(key))
            .unwrap_or("materialized");
            problems.push(
                Diagnostic::new(format!("model '{}': {message}", node.name))
                    .in_file(&file.path)
                    .at_line(crate::diagnostics::line_of(&file.text, key)),
            );
            continue;
        }
        if let Err(message) = node.check_contract() {
            let (file_name, line) = match properties {
                Some(p) => (p.file.clone(), p.line),
                None => (file.path.clone(), None),
            };
            problems.push(
                Diagnostic::new(format!("model '{}': {message}", node.name))
                    .in_file(&file_name)
                    .at_line(line),
            );
            continue;
        }
        nodes.insert(unique_id, node);
    }

    for seed in &project.seeds {
        let name = seed.parts.last().cloned().unwrap_or_default();
        let fqn = fqn_of(project_name, &seed.parts);
        let mut config = project.file.seeds.resolve(&fqn);
        let properties = seed_properties.get(name.as_str());
        if let Some(properties) = properties {
            merge_configs(&mut config, &properties.config);
        }
        if !is_enabled(&config) {
            disabled.insert(name);
            continue;
        }
        config.insert("materialized".into(), Json::from("seed"));
        let unique_id = format!("seed.{project_name}.{name}");
        if let Some(previous) = by_name.insert(name.clone(), unique_id.clone()) {
            problems.push(duplicate_name(&name, &seed.path, &nodes[&previous].path));
            continue;
        }
        let relation = relation_of(&config, &name, target).unwrap_or_else(|problem| {
            let in_yaml = properties.and_then(|p| Some((p.file.as_str(), *p.config_positions.get(problem.1)?)));
            problems.push(match in_yaml {
                Some((yaml, at)) => bad_relation_at("seed", &name, yaml, at, problem.0),
                None => bad_relation("seed", &name, &seed.path, "", problem),
            });
            RelationName::table(&target.schema, &name)
        });
        nodes.insert(
            unique_id.clone(),
            Node {
                unique_id,
                relation: Some(relation),
                tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
                description: properties.map(|p| p.description.clone()).unwrap_or_default(),
                columns: properties.map(|p| p.columns.clone()).unwrap_or_default(),
                name,
                resource_type: ResourceType::Seed,
                path: seed.path.clone(),
                line: None,
                fqn,
                materialized: Materialization::Seed,
                config,
                raw_code: String::new(),
                refs: Vec::new(),
                sources: Vec::new(),
                depends_on: Vec::new(),
                severity: Severity::Error,
                test: None,
                location: Some(seed.absolute_path.to_string_lossy().into_owned()),
                format: Some("csv".into()),
                checksum: String::new(),
                macros: Vec::new(),
                vars: Default::default(),
            },
        );
    }

    // Sources.
    let mut source_ids: BTreeMap<(String, String), String> = BTreeMap::new();
    for file in &project.property_files {
        for source in &file.sources {
            for table in &source.tables {
                let unique_id = format!("source.{project_name}.{}.{}", source.name, table.name);
                if source_ids
                    .insert((source.name.clone(), table.name.clone()), unique_id.clone())
                    .is_some()
                {
                    problems.push(
                        Diagnostic::new(format!("source '{}.{}' is declared twice", source.name, table.name))
                            .in_file(&file.file)
                            .at_line(table.line),
                    );
                    continue;
                }
                let mut config = ConfigMap::new();
                config.insert("materialized".into(), Json::from("external"));
                if let Some(column) = &table.event_time {
                    config.insert("event_time".into(), Json::from(column.clone()));
                }
                if let Some(freshness) = &table.freshness {
                    config.insert(
                        "freshness".into(),
                        serde_json::to_value(freshness).expect("freshness serialises"),
                    );
                }
                if let Some(field) = &table.loaded_at_field {
                    config.insert("loaded_at_field".into(), Json::from(field.clone()));
                }
                nodes.insert(
                    unique_id.clone(),
                    Node {
                        unique_id,
                        name: table.name.clone(),
                        resource_type: ResourceType::Source,
                        path: file.file.clone(),
                        line: table.line,
                        fqn: vec![project_name.to_string(), source.name.clone(), table.name.clone()],
                        materialized: Materialization::External,
                        config,
                        tags: Vec::new(),
                        description: table.description.clone(),
                        columns: table.columns.clone(),
                        relation: Some(RelationName::table(&source.schema, &table.identifier)),
                        raw_code: String::new(),
                        refs: Vec::new(),
                        sources: Vec::new(),
                        depends_on: Vec::new(),
                        severity: Severity::Error,
                        test: None,
                        location: table
                            .location
                            .as_ref()
                            .map(|location| resolve_location(project, location)),
                        format: table.format.clone(),
                        checksum: String::new(),
                        macros: Vec::new(),
                        vars: Default::default(),
                    },
                );
            }
        }
    }

    // Generic tests declared in property files.
    let mut tests: Vec<Node> = Vec::new();
    for file in &project.property_files {
        let mut declare = |owner_kind: &str, owner: &NodeProperties| {
            let owner_id = match owner_kind {
                "model" => by_name.get(&owner.name).filter(|id| id.starts_with("model.")),
                _ => by_name.get(&owner.name).filter(|id| id.starts_with("seed.")),
            };
            let Some(owner_id) = owner_id else {
                if !disabled.contains(&owner.name) {
                    let candidates: Vec<&str> = by_name.keys().map(String::as_str).collect();
                    let mut warning = Diagnostic::new(format!(
                        "properties are declared for {owner_kind} '{}', which does not exist",
                        owner.name
                    ))
                    .in_file(&file.file)
                    .at_line(owner.line);
                    if let Some(near) = did_you_mean(&owner.name, candidates) {
                        warning = warning.with_help(format!("did you mean '{near}'?"));
                    }
                    warnings.push(warning);
                }
                return;
            };
            for declaration in &owner.tests {
                tests.push(generic_test(
                    project,
                    file.file.as_str(),
                    owner_id,
                    &owner.name,
                    None,
                    declaration,
                ));
            }
            for column in &owner.columns {
                for declaration in &column.tests {
                    tests.push(generic_test(
                        project,
                        &file.file,
                        owner_id,
                        &owner.name,
                        Some(&column.name),
                        declaration,
                    ));
                }
            }
        };
        for owner in &file.models {
            declare("model", owner);
        }
        for owner in &file.seeds {
            declare("seed", owner);
        }
        for source in &file.sources {
            for table in &source.tables {
                let owner_id = &source_ids[&(source.name.clone(), table.name.clone())];
                let owner_name = format!("{}_{}", source.name, table.name);
                for column in &table.columns {
                    for declaration in &column.tests {
                        tests.push(generic_test(
                            project,
                            &file.file,
                            owner_id,
                            &owner_name,
                            Some(&column.name),
                            declaration,
                        ));
                    }
                }
            }
        }
    }

    // Singular tests.
    for (file, parsed) in parsed_tests {
        let capture = match parsed {
            Ok(capture) => capture,
            Err(diagnostic) => {
                problems.push(diagnostic);
                continue;
            }
        };
        let name = file.name().to_string();
        let fqn = fqn_of(project_name, &file.parts);
        let mut config = project.file.data_tests.resolve(&fqn);
        merge_configs(&mut config, &capture.config);
        if !is_enabled(&config) {
            continue;
        }
        config.insert("materialized".into(), Json::from("test"));
        tests.push(Node {
            unique_id: format!("test.{project_name}.{name}"),
            severity: severity_of(&config),
            tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
            name,
            resource_type: ResourceType::Test,
            path: file.path.clone(),
            line: None,
            fqn,
            materialized: Materialization::Test,
            config,
            description: String::new(),
            columns: Vec::new(),
            relation: None,
            raw_code: file.text.clone(),
            refs: capture.refs,
            sources: capture.sources,
            vars: capture.vars,
            depends_on: Vec::new(),
            test: None,
            location: None,
            format: None,
            checksum: String::new(),
            macros: Vec::new(),
        });
    }

    let mut test_names: BTreeMap<String, usize> = BTreeMap::new();
    for mut test in tests {
        if test.test.is_some() {
            validate_generic_test(&test, engine, &mut problems);
        }
        check_thresholds(&test, &mut problems);
        if !is_enabled(&test.config) {
            continue;
        }
        let count = test_names.entry(test.unique_id.clone()).or_default();
        *count += 1;
        if *count > 1 {
            // The same test declared twice on one column (with other arguments or configs):
            // a name of its own, so its compiled SQL and stored failures are its own too.
            test.unique_id = format!("{}_{count}", test.unique_id);
            test.name = format!("{}_{count}", test.name);
        }
        nodes.insert(test.unique_id.clone(), test);
    }

    // Dependencies.
    let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
    let source_names: Vec<String> = source_ids.keys().map(|(s, t)| format!("{s}.{t}")).collect();
    for node in nodes.values_mut() {
        let mut depends_on = BTreeSet::new();
        for call in &node.refs {
            if let Some(package) = &call.package {
                if package != project_name {
                    problems.push(
                        Diagnostic::new(format!(
                            "{} '{}' refers to package '{package}', but packages are not supported; only '{project_name}'",
                            node.resource_type.as_str(),
                            node.name
                        ))
                        .in_file(&node.path)
                        .at_line(call.line),
                    );
                    continue;
                }
            }
            match by_name.get(&call.name) {
                Some(id) => {
                    depends_on.insert(id.clone());
                }
                None => problems.push(unknown_ref(node, &call.name, call.line, &names, &disabled)),
            }
        }
        for call in &node.sources {
            match source_ids.get(&(call.source.clone(), call.table.clone())) {
                Some(id) => {
                    depends_on.insert(id.clone());
                }
                None => {
                    let wanted = format!("{}.{}", call.source, call.table);
                    let mut diagnostic = Diagnostic::new(format!(
                        "{} '{}' depends on source '{wanted}', which is not declared under sources: in any property file",
                        node.resource_type.as_str(),
                        node.name
                    ))
                    .in_file(&node.path)
                    .at_line(call.line);
                    if let Some(near) = did_you_mean(&wanted, source_names.iter().map(String::as_str)) {
                        diagnostic =
                            diagnostic.with_help(format!("did you mean source('{}')?", near.replace('.', "', '")));
                    }
                    problems.push(diagnostic);
                }
            }
        }
        if let Some(test) = &node.test {
            depends_on.insert(test.tested_node.clone());
        }
        node.depends_on = depends_on.into_iter().collect();
    }

    let unit_tests = unit_tests(project, &by_name, &source_ids, &mut nodes, &mut problems);

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

/// Unit test nodes (`unit_test.<project>.<model>.<name>`, tests with `test_type: unit` that
/// depend on their model) and their specs. Every given input must be a node the model reads,
/// directly or through other models.
fn unit_tests(
    project: &Project,
    by_name: &BTreeMap<String, String>,
    source_ids: &BTreeMap<(String, String), String>,
    nodes: &mut BTreeMap<String, Node>,
    problems: &mut Diagnostics,
) -> BTreeMap<String, super::UnitTest> {
    let project_name = project.file.name.as_str();
    let mut specs = BTreeMap::new();
    for file in &project.property_files {
        for test in &file.unit_tests {
            let at = |message: String| Diagnostic::new(message).in_file(&file.file).at_line(test.line);
            let Some(model_id) = by_name.get(&test.model).filter(|id| id.starts_with("model.")).cloned() else {
                let mut diagnostic = at(format!(
                    "unit test '{}' tests model '{}', which does not exist",
                    test.name, test.model
                ));
                let models = by_name
                    .iter()
                    .filter(|(_, id)| id.starts_with("model."))
                    .map(|(name, _)| name.as_str());
                if let Some(near) = did_you_mean(&test.model, models) {
                    diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
                }
                problems.push(diagnostic);
                continue;
            };
            let ancestors = ancestors_of(nodes, &model_id);
            let mut given = Vec::new();
            for (input, rows) in &test.given {
                if input.trim() == "this" {
                    if test.incremental {
                        given.push((model_id.clone(), input.clone(), rows.clone()));
                    } else {
                        problems.push(at(format!(
                            "unit test '{}': 'this' (the model's own table) is only read with overrides: {{macros: {{is_incremental: true}}}}",
                            test.name
                        )));
                    }
                    continue;
                }
                let id = match parse_relation_expression(input) {
                    Some(RelationExpression::Ref(name)) => by_name.get(&name).cloned(),
                    Some(RelationExpression::Source(source, table)) => source_ids.get(&(source, table)).cloned(),
                    None => {
                        problems.push(at(format!(
                            "unit test '{}': given input '{input}' is not ref('name') or source('source', 'table')",
                            test.name
                        )));
                        continue;
                    }
                };
                match id {
                    Some(id) if ancestors.contains(&id) => given.push((id, input.clone(), rows.clone())),
                    _ => {
                        let mut reads: Vec<&str> = nodes[&model_id]
                            .depends_on
                            .iter()
                            .map(|id| nodes[id].name.as_str())
                            .collect();
                        reads.sort();
                        problems.push(
                            at(format!(
                                "unit test '{}': given input {input} is not something model '{}' reads",
                                test.name, test.model
                            ))
                            .with_help(format!(
                                "'{}' reads {}",
                                test.model,
                                reads.join(", ")
                            )),
                        );
                    }
                }
            }
            let mut config = test.config.clone();
            config.insert("materialized".into(), Json::from("test"));
            config.insert("test_type".into(), Json::from("unit"));
            if !is_enabled(&config) {
                continue;
            }
            let model = &nodes[&model_id];
            let unique_id = format!("unit_test.{project_name}.{}.{}", test.model, test.name);
            if nodes.contains_key(&unique_id) {
                problems.push(at(format!(
                    "unit test '{}' of model '{}' is declared twice",
                    test.name, test.model
                )));
                continue;
            }
            let mut fqn = model.fqn.clone();
            fqn.push(test.name.clone());
            let node = Node {
                unique_id: unique_id.clone(),
                name: test.name.clone(),
                resource_type: ResourceType::Test,
                path: file.file.clone(),
                line: test.line,
                fqn,
                materialized: Materialization::Test,
                tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
                severity: severity_of(&config),
                config,
                description: test.description.clone(),
                columns: Vec::new(),
                relation: None,
                raw_code: String::new(),
                refs: Vec::new(),
                sources: Vec::new(),
                depends_on: vec![model_id.clone()],
                test: None,
                location: None,
                format: None,
                checksum: String::new(),
                macros: Vec::new(),
                vars: Default::default(),
            };
            check_thresholds(&node, problems);
            nodes.insert(unique_id.clone(), node);
            specs.insert(
                unique_id,
                super::UnitTest {
                    model: model_id,
                    given,
                    expect: test.expect.clone(),
                    incremental: test.incremental,
                    vars: test.vars.clone(),
                },
            );
        }
    }
    specs
}

/// Every node `id` reads, directly or not (before the graph exists).
fn ancestors_of(nodes: &BTreeMap<String, Node>, id: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut frontier = vec![id.to_string()];
    while let Some(current) = frontier.pop() {
        for parent in nodes
            .get(&current)
            .map(|node| node.depends_on.clone())
            .unwrap_or_default()
        {
            if seen.insert(parent.clone()) {
                frontier.push(parent);
            }
        }
    }
    seen
}

fn properties_by_name<'a>(
    project: &'a Project,
    pick: impl Fn(&'a crate::project::PropertyFile) -> &'a Vec<NodeProperties>,
) -> BTreeMap<&'a str, &'a NodeProperties> {
    project
        .property_files
        .iter()
        .flat_map(|file| pick(file).iter().map(|p| (p.name.as_str(), p)))
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

fn fqn_of(project_name: &str, parts: &[String]) -> Vec<String> {
    std::iter::once(project_name.to_string())
        .chain(parts.iter().cloned())
        .collect()
}

fn is_enabled(config: &ConfigMap) -> bool {
    config.get("enabled").and_then(Json::as_bool).unwrap_or(true)
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

/// Where a model or seed lives: `config.schema` (else the target's schema), `config.alias` (else its name).
///
/// Each is one folder of the warehouse, so a value that is not a single path segment (empty,
/// `.`, `..`, or with `/`, `\` or NUL) is an error: the message, and the key and value to find
/// its line by.
fn relation_of(
    config: &ConfigMap,
    name: &str,
    target: &Target,
) -> Result<RelationName, (String, &'static str, String)> {
    let schema = config.get("schema").and_then(Json::as_str).unwrap_or(&target.schema);
    let alias = config.get("alias").and_then(Json::as_str).unwrap_or(name);
    for (key, value) in [("schema", schema), ("alias", alias)] {
        if value.is_empty() || value == "." || value == ".." || value.contains(['/', '\\', '\0']) {
            return Err((
                format!("{key} '{value}' is not a relation name: it names one folder of the warehouse, so it cannot be empty, '.' or '..', or contain '/' or '\\'"),
                key,
                value.to_string(),
            ));
        }
    }
    Ok(RelationName::table(schema, alias))
}

/// A relation name [`relation_of`] rejected, at its line (of the value, else of its key).
fn bad_relation(
    kind: &str,
    name: &str,
    path: &str,
    text: &str,
    (message, key, value): (String, &str, String),
) -> Diagnostic {
    let line = Some(value.as_str())
        .filter(|v| !v.is_empty())
        .and_then(|v| crate::diagnostics::line_of(text, v))
        .or_else(|| crate::diagnostics::line_of(text, key));
    Diagnostic::new(format!("{kind} '{name}': {message}"))
        .in_file(path)
        .at_line(line)
}

/// A relation name [`relation_of`] rejected, at the YAML value that set it.
fn bad_relation_at(kind: &str, name: &str, file: &str, at: Position, message: String) -> Diagnostic {
    Diagnostic::new(format!("{kind} '{name}': {message}"))
        .in_file(file)
        .at_position(Some(at))
}

/// Source locations that are relative paths are relative to the project root.
fn resolve_location(project: &Project, location: &str) -> String {
    if location.contains("://") || std::path::Path::new(location).is_absolute() {
        location.to_string()
    } else {
        project.root.join(location).to_string_lossy().into_owned()
    }
}

fn duplicate_name(name: &str, path: &str, previous: &str) -> Diagnostic {
    Diagnostic::new(format!("two nodes are named '{name}': {path} and {previous}"))
        .in_file(path)
        .with_help("rename one of them; model and seed names must be unique")
}

fn unknown_ref(
    node: &Node,
    name: &str,
    line: Option<usize>,
    names: &[&str],
    disabled: &BTreeSet<String>,
) -> Diagnostic {
    let what = node.resource_type.as_str();
    if disabled.contains(name) {
        return Diagnostic::new(format!(
            "{what} '{}' depends on '{name}', which is disabled (enabled: false)",
            node.name
        ))
        .in_file(&node.path)
        .at_line(line);
    }
    let mut diagnostic = Diagnostic::new(format!(
        "{what} '{}' depends on '{name}', which was not found",
        node.name
    ))
    .in_file(&node.path)
    .at_line(line);
    if let Some(near) = did_you_mean(name, names.iter().copied()) {
        diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
    }
    diagnostic
}

/// Makes the test node for one declaration.
fn generic_test(
    project: &Project,
    file: &str,
    owner_id: &str,
    owner_name: &str,
    column: Option<&str>,
    declaration: &TestDeclaration,
) -> Node {
    let project_name = project.file.name.as_str();
    // dbt's naming: test_model_column, then the arguments that tell two tests apart.
    let mut name_parts = vec![declaration.test_name.clone(), owner_name.to_string()];
    if let Some(column) = column {
        name_parts.push(column.to_string());
    }
    let mut suffix = Vec::new();
    if let Some(Json::String(field)) = declaration.arguments.get("field") {
        suffix.push(field.clone());
    }
    if let Some(Json::String(to)) = declaration.arguments.get("to") {
        suffix.push(to.replace(['\'', '"'], ""));
    }
    if let Some(Json::Array(values)) = declaration.arguments.get("values") {
        suffix.extend(
            values
                .iter()
                .map(|value| value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())),
        );
    }
    if !suffix.is_empty() {
        let joined: String = suffix
            .join("__")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
            .collect();
        name_parts.push(format!("_{joined}"));
    }
    let name = shorten_test_name(name_parts.join("_"));
    let fqn = vec![project_name.to_string(), name.clone()];
    let mut config = project.file.data_tests.resolve(&fqn);
    merge_configs(&mut config, &declaration.config);
    config.insert("materialized".into(), Json::from("test"));
    let where_clause = config.get("where").and_then(Json::as_str).map(str::to_string);
    let mut refs = Vec::new();
    let mut sources = Vec::new();
    if let Some(Json::String(to)) = declaration.arguments.get("to") {
        match parse_relation_expression(to) {
            Some(RelationExpression::Ref(name)) => refs.push(crate::template::RefCall {
                package: None,
                name,
                line: declaration.line,
            }),
            Some(RelationExpression::Source(source, table)) => sources.push(crate::template::SourceCall {
                source,
                table,
                line: declaration.line,
            }),
            None => {}
        }
    }
    Node {
        unique_id: format!("test.{project_name}.{name}"),
        severity: severity_of(&config),
        tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
        name,
        resource_type: ResourceType::Test,
        path: file.to_string(),
        line: declaration.line,
        fqn,
        materialized: Materialization::Test,
        config,
        description: String::new(),
        columns: Vec::new(),
        relation: None,
        raw_code: String::new(),
        refs,
        sources,
        depends_on: Vec::new(),
        test: Some(GenericTest {
            test_name: declaration.test_name.clone(),
            column_name: column.map(str::to_string),
            arguments: declaration.arguments.clone(),
            attached_node: owner_id.to_string(),
            tested_node: owner_id.to_string(),
            where_clause,
        }),
        location: None,
        format: None,
        checksum: String::new(),
        macros: Vec::new(),
        vars: Default::default(),
    }
}

/// `warn_if` / `error_if` must be conditions on the failing-row count.
fn check_thresholds(node: &Node, problems: &mut Diagnostics) {
    for key in ["warn_if", "error_if"] {
        if let Err(message) = node.threshold(key) {
            problems.push(
                Diagnostic::new(format!("test '{}': {message}", node.name))
                    .in_file(&node.path)
                    .at_line(node.line),
            );
        }
    }
}

fn validate_generic_test(node: &Node, engine: &TemplateEngine, problems: &mut Diagnostics) {
    let test = node.test.as_ref().expect("generic test");
    if engine.custom_test(&test.test_name).is_some() {
        // A `{% test %}` of the project: its macro's parameters are checked when it renders.
        return;
    }
    let custom: Vec<String> = engine
        .macros()
        .keys()
        .filter_map(|name| name.strip_prefix("test_"))
        .map(str::to_string)
        .collect();
    let known: Vec<&str> = GENERIC_TESTS
        .iter()
        .map(|(name, _)| *name)
        .chain(custom.iter().map(String::as_str))
        .collect();
    let Some((_, required)) = GENERIC_TESTS.iter().find(|(name, _)| *name == test.test_name) else {
        let mut diagnostic = Diagnostic::new(format!(
            "unknown test '{}'; the generic tests are {} (define others with {{% test name(model, column_name) %}} in macros/ or <test-path>/generic/)",
            test.test_name,
            known.join(", ")
        ))
        .in_file(&node.path)
        .at_line(node.line);
        if let Some(near) = did_you_mean(&test.test_name, known) {
            diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
        }
        problems.push(diagnostic);
        return;
    };
    let model_level = matches!(
        test.test_name.as_str(),
        "expression_is_true" | "not_empty" | "row_count"
    );
    if test.column_name.is_none() && !model_level {
        problems.push(
            Diagnostic::new(format!("test '{}' must be declared under a column", test.test_name))
                .in_file(&node.path)
                .at_line(node.line),
        );
    }
    for argument in *required {
        if !test.arguments.contains_key(*argument) {
            problems.push(
                Diagnostic::new(format!("test '{}' needs the argument '{argument}'", test.test_name))
                    .in_file(&node.path)
                    .at_line(node.line),
            );
        }
    }
    if test.test_name == "accepted_values" && !matches!(test.arguments.get("values"), Some(Json::Array(_)) | None) {
        problems.push(
            Diagnostic::new("accepted_values: 'values' must be a list")
                .in_file(&node.path)
                .at_line(node.line),
        );
    }
    if test.test_name == "relationships" {
        if let Some(Json::String(to)) = test.arguments.get("to") {
            if parse_relation_expression(to).is_none() {
                problems.push(
                    Diagnostic::new(format!(
                        "relationships: 'to' must be ref('model') or source('source', 'table'), not '{to}'"
                    ))
                    .in_file(&node.path)
                    .at_line(node.line),
                );
            }
        }
    }
}

/// `ref('x')` or `source('a', 'b')` as written in a test argument.
pub enum RelationExpression {
    Ref(String),
    Source(String, String),
}

pub fn parse_relation_expression(text: &str) -> Option<RelationExpression> {
    let text = text.trim();
    let text = text
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .map(str::trim)
        .unwrap_or(text);
    let (function, rest) = text.split_once('(')?;
    let arguments: Vec<String> = rest
        .strip_suffix(')')?
        .split(',')
        .map(|argument| argument.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect();
    match (function.trim(), arguments.as_slice()) {
        ("ref", [name]) => Some(RelationExpression::Ref(name.clone())),
        ("source", [source, table]) => Some(RelationExpression::Source(source.clone(), table.clone())),
        _ => None,
    }
}

/// Long test names are cut to 63 characters with a hash of the whole name, as dbt does.
fn shorten_test_name(name: String) -> String {
    if name.len() <= 63 {
        return name;
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut cut = 50;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:012x}", &name[..cut], hash & 0xffff_ffff_ffff)
}
