//! Source tables declared under `sources:` become nodes.

use serde_json::Value as Json;

use super::Parse;
use crate::diagnostics::Diagnostic;
use crate::graph::node::{Materialization, Node, Resource};
use crate::project::{ConfigMap, Project};
use crate::relation::RelationName;

impl Parse<'_> {
    /// A node per declared source table; a table declared twice is a problem.
    pub(super) fn sources(&mut self) {
        let (project, project_name) = (self.project, self.project_name);
        let Parse {
            nodes,
            source_ids,
            problems,
            ..
        } = self;
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
                            line: table.line,
                            fqn: vec![project_name.to_string(), source.name.clone(), table.name.clone()],
                            config,
                            description: table.description.clone(),
                            columns: table.columns.clone(),
                            ..Node::new(
                                unique_id,
                                table.name.clone(),
                                file.file.clone(),
                                Materialization::External,
                                Resource::Source {
                                    relation: RelationName::table(&source.schema, &table.identifier),
                                    location: table
                                        .location
                                        .as_ref()
                                        .map(|location| resolve_location(project, location)),
                                    format: table.format,
                                },
                            )
                        },
                    );
                }
            }
        }
    }
}

/// Source locations that are relative paths are relative to the project root.
fn resolve_location(project: &Project, location: &str) -> String {
    if location.contains("://") || std::path::Path::new(location).is_absolute() {
        location.to_string()
    } else {
        project.root.join(location).to_string_lossy().into_owned()
    }
}
