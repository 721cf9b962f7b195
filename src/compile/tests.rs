//! SQL of the generic data tests. Each query returns the failing rows.

use serde_json::Value as Json;

use crate::diagnostics::Diagnostic;
use crate::graph::{parse_relation_expression, Graph, Node, RelationExpression};
use crate::template::RelationResolver;

/// The failing-rows query of a generic test node.
pub fn generic_test_sql(graph: &Graph, node: &Node, resolver: &dyn RelationResolver) -> Result<String, Diagnostic> {
    let test = node.test.as_ref().expect("generic test node");
    let at_declaration = |message: String| Diagnostic::new(message).in_file(&node.path).at_line(node.line);
    let tested = &graph.nodes[&test.tested_node];
    let relation = tested
        .relation
        .as_ref()
        .map(|relation| relation.rendered.clone())
        .unwrap_or_else(|| format!("{}{}", super::EPHEMERAL_PREFIX, tested.name));
    let model = match &test.where_clause {
        Some(condition) => format!("(select * from {relation} where {condition}) as tidemark_subquery"),
        None => relation,
    };
    let column = test.column_name.clone().unwrap_or_default();
    let sql = match test.test_name.as_str() {
        "not_null" => format!("select *\nfrom {model}\nwhere {column} is null\n"),
        "unique" => format!(
            "select {column} as unique_field, count(*) as n_records\nfrom {model}\nwhere {column} is not null\ngroup by {column}\nhaving count(*) > 1\n"
        ),
        "accepted_values" => {
            let quote = test.arguments.get("quote").and_then(Json::as_bool).unwrap_or(true);
            let values: Vec<String> = match test.arguments.get("values") {
                Some(Json::Array(values)) => values
                    .iter()
                    .map(|value| match value {
                        Json::String(text) if quote => format!("'{}'", text.replace('\'', "''")),
                        Json::String(text) => text.clone(),
                        other if quote => format!("'{other}'"),
                        other => other.to_string(),
                    })
                    .collect(),
                _ => return Err(at_declaration("accepted_values needs 'values:' as a list".into())),
            };
            if values.is_empty() {
                return Err(at_declaration("accepted_values: 'values' must not be empty".into()));
            }
            format!(
                "with all_values as (\n    select {column} as value_field, count(*) as n_records\n    from {model}\n    group by {column}\n)\nselect *\nfrom all_values\nwhere value_field not in ({})\n",
                values.join(", ")
            )
        }
        "relationships" => {
            let to = test.arguments.get("to").and_then(Json::as_str).unwrap_or_default();
            let field = test.arguments.get("field").and_then(Json::as_str).unwrap_or_default();
            let parent = match parse_relation_expression(to) {
                Some(RelationExpression::Ref(name)) => resolver.resolve_ref(None, &name),
                Some(RelationExpression::Source(source, table)) => resolver.resolve_source(&source, &table),
                None => Err(format!("relationships: cannot read 'to: {to}'")),
            }
            .map_err(at_declaration)?;
            format!(
                "with child as (\n    select {column} as from_field\n    from {model}\n    where {column} is not null\n),\nparent as (\n    select {field} as to_field\n    from {}\n)\nselect from_field\nfrom child\nleft join parent on child.from_field = parent.to_field\nwhere parent.to_field is null\n",
                parent.rendered
            )
        }
        other => return Err(at_declaration(format!("unknown test '{other}'"))),
    };
    Ok(sql)
}
