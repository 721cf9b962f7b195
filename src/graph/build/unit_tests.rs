//! Unit tests (`unit_tests:`): a test node per spec, depending on the model it tests, and the
//! spec with its given inputs resolved to unique ids.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::data_tests::{check_thresholds, parse_relation_expression, RelationExpression};
use super::{is_enabled, severity_of, Parse};
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::graph::node::{Materialization, Node, Resource};
use crate::project::project_file::tags_of;

impl Parse<'_> {
    /// Unit test nodes (`unit_test.<project>.<model>.<name>`, tests with `test_type: unit` that
    /// depend on their model) and their specs. Every given input must be a node the model reads,
    /// directly or through other models.
    pub(super) fn unit_tests(&mut self) -> BTreeMap<String, crate::graph::UnitTest> {
        let (project, project_name) = (self.project, self.project_name);
        let Parse {
            nodes,
            refs,
            source_ids,
            problems,
            ..
        } = self;
        let mut specs = BTreeMap::new();
        for file in &project.property_files {
            for test in &file.unit_tests {
                let at = |message: String| {
                    Diagnostic::new(message)
                        .in_file(&file.file)
                        .at_place(test.line, test.column)
                };
                let Some(model_id) = refs
                    .get(&test.model)
                    .filter(|id| id.starts_with("model."))
                    .map(str::to_string)
                else {
                    let mut diagnostic = at(format!(
                        "unit test '{}' tests model '{}', which does not exist",
                        test.name, test.model
                    ));
                    let models = refs
                        .resolved()
                        .filter(|(_, id)| id.starts_with("model."))
                        .map(|(name, _)| name);
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
                        Some(RelationExpression::Ref(name)) => refs.get(&name).map(str::to_string),
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
                let severity = severity_of(&config);
                let node = Node {
                    line: test.line,
                    column: test.column,
                    fqn,
                    tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
                    config,
                    description: test.description.clone(),
                    depends_on: vec![model_id.clone()],
                    ..Node::new(
                        unique_id.clone(),
                        test.name.clone(),
                        file.file.clone(),
                        Materialization::Test,
                        Resource::Test {
                            severity,
                            generic: None,
                        },
                    )
                };
                check_thresholds(&node, problems);
                nodes.insert(unique_id.clone(), node);
                specs.insert(
                    unique_id,
                    crate::graph::UnitTest {
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
