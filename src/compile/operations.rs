//! What runs outside any node: `on-run-start` / `on-run-end` and `run-operation`.

use super::*;

/// The project's `on-run-start` statements, or with the run's `ended` results its `on-run-end`
/// ones, rendered (as dbt: `results`, each with `node`, `status`, `message`, `execution_time`,
/// `failures` and `rows_affected`, and `schemas`, those the run wrote tables to); empty ones are
/// left out.
pub fn run_hooks(
    project: &crate::project::Project,
    engine: &TemplateEngine,
    ended: Option<(&Graph, &[crate::documents::RunResult])>,
) -> Result<Vec<String>, Diagnostics> {
    let (key, hooks, variables) = match ended {
        None => ("on-run-start", &project.file.on_run_start, serde_json::json!({})),
        Some((graph, results)) => {
            let ran: Vec<(&Node, &crate::documents::RunResult)> = results
                .iter()
                .filter_map(|result| Some((graph.nodes.get(&result.unique_id)?, result)))
                .collect();
            let variables = serde_json::json!({
                "results": ran.iter().map(|(node, result)| serde_json::json!({
                    "node": {
                        "unique_id": node.unique_id,
                        "name": node.name,
                        "resource_type": node.resource_type.as_str(),
                        "schema": node.relation().map(|relation| relation.schema.clone()),
                    },
                    "status": result.status.as_str(),
                    "message": result.message,
                    "execution_time": result.execution_time,
                    "failures": result.failures,
                    "rows_affected": result.rows_affected,
                })).collect::<Vec<_>>(),
                "schemas": ran
                    .iter()
                    .filter(|(node, _)| node.writes_table())
                    .filter_map(|(node, _)| node.relation().map(|relation| relation.schema.clone()))
                    .collect::<BTreeSet<_>>(),
            });
            ("on-run-end", &project.file.on_run_end, variables)
        }
    };
    let variables = &variables;
    let mut problems = Diagnostics::default();
    let mut rendered = Vec::new();
    for hook in hooks {
        match engine.render_with(&project.file.file_name, hook, variables) {
            Ok(sql) if sql.trim().is_empty() => {}
            Ok(sql) => rendered.push(sql),
            Err(problem) => problems.push(problem.context(key)),
        }
    }
    problems.into_result(rendered)
}

/// `tidemark run-operation NAME --args '{...}'`: calls the project macro `name` with `args` as
/// keyword arguments, rendered as a compile-phase render (`execute` is true, so its
/// `run_query` and `statement` calls run). Returns what it renders.
pub fn run_operation(
    graph: &Graph,
    engine: &TemplateEngine,
    name: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, Diagnostic> {
    if !engine.macros().contains_key(name) {
        let mut problem = Diagnostic::new(format!("run-operation: the project has no macro '{name}'"));
        if let Some(near) = did_you_mean(name, engine.macros().keys().map(String::as_str)) {
            problem = problem.with_help(format!("did you mean '{near}'?"));
        }
        return Err(problem);
    }
    let mut keywords = Vec::new();
    for (key, value) in args {
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Diagnostic::new(format!("--args: '{key}' is not an argument name")));
        }
        keywords.push(format!("{key}={}", jinja_literal(value)));
    }
    let call = format!("{{{{ {name}({}) }}}}", keywords.join(", "));
    let context = CompileContext {
        this: RelationName {
            schema: String::new(),
            identifier: name.to_string(),
            rendered: name.to_string(),
        },
        package: graph.project_name.clone(),
        config: ConfigMap::new(),
        is_incremental: false,
        resolver: Arc::new(GraphResolver::new(graph)),
        time_filter: None,
        execute: true,
    };
    engine.compile(&format!("run-operation {name}"), &call, context)
}

/// `value` written as a Jinja literal.
fn jinja_literal(value: &serde_json::Value) -> String {
    use serde_json::Value as Json;
    match value {
        Json::Null => "none".into(),
        Json::Bool(flag) => flag.to_string(),
        Json::Number(number) => number.to_string(),
        Json::String(text) => Json::String(text.clone()).to_string(),
        Json::Array(items) => format!("[{}]", items.iter().map(jinja_literal).collect::<Vec<_>>().join(", ")),
        Json::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(key, value)| format!("{}: {}", Json::String(key.clone()), jinja_literal(value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
