//! Data tests: generic tests declared in property files and singular tests in `tests/`.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{check_config_call, fqn_of, is_enabled, severity_of, Parse, GENERIC_TESTS};
use crate::diagnostics::{did_you_mean, Diagnostic, Diagnostics};
use crate::graph::node::{GenericTest, Materialization, Node, Resource};
use crate::project::keys::ConfigKind;
use crate::project::project_file::{merge_configs, tags_of};
use crate::project::{NodeProperties, Project, SqlFile, TestDeclaration};
use crate::template::{Capture, TemplateEngine};

impl Parse<'_> {
    /// The test nodes of every generic test declared on a model, seed or source column; a
    /// property entry for a node that does not exist is a warning.
    pub(super) fn generic_tests(&mut self) -> Vec<Node> {
        let project = self.project;
        let Parse {
            nodes,
            refs,
            disabled,
            source_ids,
            warnings,
            ..
        } = self;
        let mut tests: Vec<Node> = Vec::new();
        for file in &project.property_files {
            let mut declare = |owner_kind: &str, owner: &NodeProperties| {
                let prefix = format!("{owner_kind}.");
                // The file's package's node (a package's properties describe its own); for a
                // versioned model, any of its versions (the latest may be disabled).
                let package = file.package.as_deref().unwrap_or(project.file.name.as_str());
                let owner_id = refs
                    .resolve(package, Some(package), &owner.name, None)
                    .ok()
                    .filter(|id| id.starts_with(&prefix))
                    .or_else(|| {
                        (!owner.versions.is_empty())
                            .then(|| refs.all_versions(package, &owner.name).first().copied())
                            .flatten()
                    });
                let Some(owner_id) = owner_id else {
                    if !disabled.contains(&owner.name) {
                        let mut warning = Diagnostic::new(format!(
                            "properties are declared for {owner_kind} '{}', which does not exist",
                            owner.name
                        ))
                        .in_file(&file.file)
                        .at_place(owner.line, owner.column);
                        if let Some(near) = did_you_mean(&owner.name, refs.names()) {
                            warning = warning.with_help(format!("did you mean '{near}'?"));
                        }
                        warnings.push(warning);
                    }
                    return;
                };
                // Each version of a versioned model gets the model's tests, its own, and the
                // tests of the columns it has (named `<model>_v<version>` as dbt names them).
                let Some(owner_node) = nodes.get(owner_id) else {
                    return;
                };
                let owners: Vec<&Node> = match owner_node.version {
                    None => vec![owner_node],
                    Some(_) => refs
                        .all_versions(owner_node.package(), &owner.name)
                        .into_iter()
                        .filter_map(|id| nodes.get(id))
                        .collect(),
                };
                for node in owners {
                    let version = owner
                        .versions
                        .iter()
                        .find(|version| node.version.as_ref() == Some(&version.v));
                    let (owner_name, columns) = match version {
                        Some(version) => (format!("{}_v{}", owner.name, version.v), &version.columns),
                        None => (owner.name.clone(), &owner.columns),
                    };
                    let own_tests = version.map(|version| version.tests.as_slice()).unwrap_or_default();
                    for declaration in owner.tests.iter().chain(own_tests) {
                        tests.push(generic_test(
                            project,
                            file.file.as_str(),
                            &node.unique_id,
                            &owner_name,
                            None,
                            declaration,
                        ));
                    }
                    for column in columns {
                        for declaration in &column.tests {
                            tests.push(generic_test(
                                project,
                                &file.file,
                                &node.unique_id,
                                &owner_name,
                                Some(&column.name),
                                declaration,
                            ));
                        }
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
        tests
    }

    /// A node per enabled singular test (a SQL file under the test paths).
    pub(super) fn singular_tests(&mut self, parsed_tests: Vec<(&SqlFile, Result<Capture, Diagnostic>)>) -> Vec<Node> {
        let (project, project_name) = (self.project, self.project_name);
        let Parse { problems, warnings, .. } = self;
        let mut tests = Vec::new();
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
            check_config_call(
                ConfigKind::Test,
                (&file.path, &file.text),
                &capture.config,
                problems,
                warnings,
            );
            merge_configs(&mut config, &capture.config);
            if !is_enabled(&config) {
                continue;
            }
            config.insert("materialized".into(), Json::from("test"));
            let severity = severity_of(&config);
            tests.push(Node {
                tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
                fqn,
                config,
                raw_code: file.text.clone(),
                refs: capture.refs,
                sources: capture.sources,
                vars: capture.vars,
                macros: capture.macros.into_iter().collect(),
                ..Node::new(
                    format!("test.{project_name}.{name}"),
                    name,
                    file.path.clone(),
                    Materialization::Test,
                    Resource::Test {
                        severity,
                        generic: None,
                    },
                )
            });
        }
        tests
    }

    /// The data tests metric models generate: the gate of a metric model whose alerts gate
    /// `build` (a rule's `gate:`, or `--fail-on-alert`), failing on the new cases at or above
    /// it, and the check of its action log.
    pub(super) fn generated_tests(&mut self, generated: &[crate::metrics::GeneratedModel]) -> Vec<Node> {
        let (engine, project_name) = (self.engine, self.project_name);
        let mut tests = Vec::new();
        for (model, (name, sql)) in generated
            .iter()
            .flat_map(|model| model.tests.iter().map(move |test| (model, test)))
        {
            // A disabled metric model's tests go with it.
            if !self
                .nodes
                .values()
                .any(|node| node.name == model.name && node.path == model.path)
            {
                continue;
            }
            let capture = match engine.parse(&model.path, sql) {
                Ok(capture) => capture,
                Err(problem) => {
                    self.problems.push(problem);
                    continue;
                }
            };
            let mut config = self
                .project
                .file
                .data_tests
                .resolve(&[project_name.to_string(), name.clone()]);
            config.insert("materialized".into(), Json::from("test"));
            // They report: what reads the cases runs even when they fail (see `execute::plan`).
            config.insert(crate::graph::REPORT_ONLY.into(), Json::Bool(true));
            let severity = severity_of(&config);
            let mut refs = capture.refs;
            for call in &mut refs {
                call.line = model.line;
            }
            tests.push(Node {
                line: model.line,
                fqn: vec![project_name.to_string(), name.clone()],
                tags: vec!["metric_model".to_string()],
                description: format!("Generated with {} by its metric model.", model.name),
                config,
                raw_code: sql.clone(),
                refs,
                ..Node::new(
                    format!("test.{project_name}.{name}"),
                    name.clone(),
                    model.path.clone(),
                    Materialization::Test,
                    Resource::Test {
                        severity,
                        generic: None,
                    },
                )
            });
        }
        tests
    }

    /// Checks each test and adds the enabled ones; a test declared twice with other arguments
    /// gets a numbered name of its own.
    pub(super) fn add_tests(&mut self, tests: Vec<Node>) {
        let engine = self.engine;
        let Parse { nodes, problems, .. } = self;
        let mut test_names: BTreeMap<String, usize> = BTreeMap::new();
        for mut test in tests {
            if let Some(generic) = test.generic_test() {
                validate_generic_test(&test, generic, engine, problems);
            }
            check_thresholds(&test, problems);
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
    }
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
    // A package's test (`my_utils.at_least`) is named with an underscore, as dbt names it.
    let mut name_parts = vec![declaration.test_name.replace('.', "_"), owner_name.to_string()];
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
                version: None,
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
    let generic = GenericTest {
        test_name: declaration.test_name.clone(),
        column_name: column.map(str::to_string),
        arguments: declaration.arguments.clone(),
        attached_node: owner_id.to_string(),
        tested_node: owner_id.to_string(),
        where_clause,
    };
    let severity = severity_of(&config);
    Node {
        tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
        line: declaration.line,
        column: declaration.column,
        fqn,
        config,
        refs,
        sources,
        ..Node::new(
            format!("test.{project_name}.{name}"),
            name,
            file.to_string(),
            Materialization::Test,
            Resource::Test {
                severity,
                generic: Some(generic),
            },
        )
    }
}

/// `warn_if` / `error_if` must be conditions on the failing-row count.
pub(super) fn check_thresholds(node: &Node, problems: &mut Diagnostics) {
    for key in ["warn_if", "error_if"] {
        if let Err(message) = node.threshold(key) {
            problems.push(
                Diagnostic::new(format!("test '{}': {message}", node.name))
                    .in_file(&node.path)
                    .at_place(node.line, node.column),
            );
        }
    }
}

fn validate_generic_test(node: &Node, test: &GenericTest, engine: &TemplateEngine, problems: &mut Diagnostics) {
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
        .at_place(node.line, node.column);
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
                .at_place(node.line, node.column),
        );
    }
    for argument in *required {
        if !test.arguments.contains_key(*argument) {
            problems.push(
                Diagnostic::new(format!("test '{}' needs the argument '{argument}'", test.test_name))
                    .in_file(&node.path)
                    .at_place(node.line, node.column),
            );
        }
    }
    if test.test_name == "accepted_values" && !matches!(test.arguments.get("values"), Some(Json::Array(_)) | None) {
        problems.push(
            Diagnostic::new("accepted_values: 'values' must be a list")
                .in_file(&node.path)
                .at_place(node.line, node.column),
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
                    .at_place(node.line, node.column),
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
