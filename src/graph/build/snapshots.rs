//! Snapshots become nodes: `{% snapshot name %}…{% endsnapshot %}` blocks in the snapshot
//! folders, and `snapshots:` in property files (dbt 1.9: a `relation:` and `config:`).

use serde_json::Value as Json;

use super::{check_config_call, duplicate_name, fqn_of, is_enabled, Parse};
use crate::diagnostics::Diagnostic;
use crate::graph::node::{Materialization, Node, Resource, SnapshotSpec};
use crate::project::keys::ConfigKind;
use crate::project::project_file::{merge_configs, tags_of};
use crate::project::{ConfigMap, SqlFile};
use crate::relation::RelationName;

/// One snapshot as written: where, its name, its query (with its `config()`), its YAML configs.
struct Written<'a> {
    path: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    name: String,
    description: String,
    sql: String,
    config: ConfigMap,
    parts: Vec<String>,
    /// The text of a snapshot file (for the lines of its `config()` keys); none for YAML.
    file_text: Option<&'a str>,
}

impl Parse<'_> {
    /// A node per snapshot; each is a table of row versions, built by `snapshot` and `build`.
    pub(super) fn snapshots(&mut self) {
        let (project, engine, target, project_name) = (self.project, self.engine, self.target, self.project_name);
        let mut written = Vec::new();
        for file in &project.snapshots {
            match snapshot_blocks(file) {
                Ok(blocks) => written.extend(blocks),
                Err(problem) => self.problems.push(problem),
            }
        }
        for file in &project.property_files {
            for snapshot in &file.snapshots {
                written.push(Written {
                    path: &file.file,
                    line: snapshot.line,
                    column: snapshot.column,
                    name: snapshot.name.clone(),
                    description: snapshot.description.clone(),
                    sql: format!("select * from {{{{ {} }}}}", snapshot.relation),
                    config: snapshot.config.clone(),
                    parts: vec![snapshot.name.clone()],
                    file_text: None,
                });
            }
        }
        let Parse {
            nodes,
            refs,
            problems,
            warnings,
            ..
        } = self;
        for snapshot in written {
            let at = |message: String| {
                Diagnostic::new(format!("snapshot '{}': {message}", snapshot.name))
                    .in_file(snapshot.path)
                    .at_place(snapshot.line, snapshot.column)
            };
            let capture = match engine.parse(snapshot.path, &snapshot.sql) {
                Ok(capture) => capture,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            // The project file's `snapshots:` folder configs, then the YAML's, then `config()`.
            let fqn = fqn_of(project_name, &snapshot.parts);
            let mut config = project.file.snapshots.resolve(&fqn);
            merge_configs(&mut config, &snapshot.config);
            if let Some(text) = snapshot.file_text {
                check_config_call(
                    ConfigKind::Snapshot,
                    (snapshot.path, text),
                    &capture.config,
                    problems,
                    warnings,
                );
            }
            merge_configs(&mut config, &capture.config);
            if !is_enabled(&config) {
                continue;
            }
            let spec = match SnapshotSpec::from_config(&config) {
                Ok(spec) => spec,
                Err(problem) => {
                    problems.push(at(problem.message));
                    continue;
                }
            };
            config.insert("materialized".into(), Json::from("snapshot"));
            // dbt's legacy `target_schema` wins over `schema`; both name one warehouse folder.
            let schema = config
                .get("target_schema")
                .or_else(|| config.get("schema"))
                .and_then(Json::as_str)
                .unwrap_or(&target.schema)
                .to_string();
            let alias = config
                .get("alias")
                .and_then(Json::as_str)
                .unwrap_or(&snapshot.name)
                .to_string();
            if [&schema, &alias]
                .iter()
                .any(|value| value.is_empty() || *value == "." || *value == ".." || value.contains(['/', '\\', '\0']))
            {
                problems.push(at(format!(
                    "schema '{schema}' / alias '{alias}' is not a relation name (one folder of the warehouse)"
                )));
                continue;
            }
            let unique_id = format!("snapshot.{project_name}.{}", snapshot.name);
            if let Err(previous) = refs.insert(project_name, &snapshot.name, None, &unique_id) {
                problems.push(duplicate_name(&snapshot.name, snapshot.path, &nodes[&previous].path));
                continue;
            }
            let node = Node {
                line: snapshot.line,
                column: snapshot.column,
                fqn,
                tags: tags_of(config.get("tags").unwrap_or(&Json::Null)),
                description: snapshot.description,
                config,
                raw_code: snapshot.sql,
                refs: capture.refs,
                sources: capture.sources,
                vars: capture.vars,
                macros: capture.macros.into_iter().collect(),
                introspective: capture.introspective,
                ..Node::new(
                    unique_id.clone(),
                    snapshot.name,
                    snapshot.path.to_string(),
                    Materialization::Snapshot,
                    Resource::Snapshot {
                        relation: RelationName::table(&schema, &alias),
                        spec,
                    },
                )
            };
            nodes.insert(unique_id, node);
        }
    }
}

/// The `{% snapshot name %}…{% endsnapshot %}` blocks of a snapshot file.
fn snapshot_blocks(file: &SqlFile) -> Result<Vec<Written<'_>>, Diagnostic> {
    let text = &file.text;
    let mut blocks = Vec::new();
    let mut from = 0;
    let tag_at = |at: usize| -> Option<(usize, &str)> {
        let end = text[at..].find("%}")? + at + 2;
        Some((
            end,
            text[at + 2..end - 2].trim_matches(|c: char| c == '-' || c.is_whitespace()),
        ))
    };
    while let Some(start) = text[from..].find("{%").map(|at| from + at) {
        let Some((after, tag)) = tag_at(start) else { break };
        from = after;
        let Some(name) = tag
            .strip_prefix("snapshot")
            .filter(|rest| rest.starts_with(char::is_whitespace))
        else {
            continue;
        };
        let name = name.trim().to_string();
        let line = text[..start].matches('\n').count() + 1;
        // The matching end tag.
        let mut end = None;
        let mut search = after;
        while let Some(open) = text[search..].find("{%").map(|at| search + at) {
            let Some((close, inner)) = tag_at(open) else { break };
            if inner == "endsnapshot" {
                end = Some((open, close));
                break;
            }
            search = close;
        }
        let Some((body_end, block_end)) = end else {
            return Err(Diagnostic::new(format!("snapshot '{name}' has no {{% endsnapshot %}}"))
                .in_file(&file.path)
                .at_line(Some(line)));
        };
        let mut parts = file.parts.clone();
        parts.pop();
        parts.push(name.clone());
        blocks.push(Written {
            path: &file.path,
            line: Some(line),
            column: None,
            name,
            description: String::new(),
            sql: text[after..body_end].to_string(),
            config: ConfigMap::new(),
            parts,
            file_text: Some(text),
        });
        from = block_end;
    }
    Ok(blocks)
}
