//! SQL of the generic data tests (`unique`, `not_null`, `accepted_values`, `relationships`,
//! `expression_is_true`, `not_empty`, `row_count`). Each query returns the failing rows.

use serde_json::Value as Json;

use crate::diagnostics::Diagnostic;
use crate::graph::{parse_relation_expression, GenericTest, Graph, Node, RelationExpression};
use crate::template::RelationResolver;

/// The relation a generic test reads: the tested node, filtered by the test's `where:`.
fn tested_relation(graph: &Graph, test: &GenericTest) -> String {
    let tested = &graph.nodes[&test.tested_node];
    let relation = tested
        .relation()
        .map(|relation| relation.rendered.clone())
        .unwrap_or_else(|| super::cte_name(tested));
    match &test.where_clause {
        Some(condition) => format!("(select * from {relation} where {condition}) as tidemark_subquery"),
        None => relation,
    }
}

/// The Jinja call of a custom generic test (`{% test name(model, column_name, ...) %}`):
/// `model` is the tested relation (filtered by `where:`), `column_name` the column it is
/// declared under, and every argument a keyword argument.
pub(super) fn custom_test_call(graph: &Graph, test: &GenericTest) -> String {
    let literal = |value: &Json| match value {
        Json::Null => "none".to_string(),
        other => other.to_string(),
    };
    let mut arguments = vec![format!("model={}", literal(&Json::from(tested_relation(graph, test))))];
    if let Some(column) = &test.column_name {
        arguments.push(format!("column_name={}", literal(&Json::from(column.clone()))));
    }
    for (key, value) in &test.arguments {
        arguments.push(format!("{key}={}", literal(value)));
    }
    // A package's test (`my_utils.at_least`) is its namespace's macro.
    let callee = match test.test_name.split_once('.') {
        Some((package, name)) => format!("{package}.test_{name}"),
        None => format!("test_{}", test.test_name),
    };
    format!("{{{{ {callee}({}) }}}}", arguments.join(", "))
}

/// The failing-rows query of a generic test node.
pub(super) fn generic_test_sql(
    graph: &Graph,
    node: &Node,
    test: &GenericTest,
    resolver: &dyn RelationResolver,
) -> Result<String, Diagnostic> {
    let at_declaration = |problem: Diagnostic| problem.in_file(&node.path).at_place(node.line, node.column);
    let model = tested_relation(graph, test);
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
                Some(RelationExpression::Ref(name)) => resolver
                    .resolve_ref(
                        node.package(),
                        &crate::template::RefCall {
                            package: None,
                            name,
                            version: None,
                            line: None,
                        },
                    )
                    .map(|(relation, _)| relation),
                Some(RelationExpression::Source(source, table)) => resolver.resolve_source(&source, &table),
                None => Err(Diagnostic::new(format!("relationships: cannot read 'to: {to}'"))),
            }
            .map_err(at_declaration)?;
            format!(
                "with child as (\n    select {column} as from_field\n    from {model}\n    where {column} is not null\n),\nparent as (\n    select {field} as to_field\n    from {}\n)\nselect from_field\nfrom child\nleft join parent on child.from_field = parent.to_field\nwhere parent.to_field is null\n",
                parent.rendered
            )
        }
        "expression_is_true" => {
            let expression = test
                .arguments
                .get("expression")
                .and_then(Json::as_str)
                .filter(|text| !text.trim().is_empty())
                .ok_or_else(|| at_declaration("expression_is_true needs 'expression:' as SQL text".into()))?;
            // On a column the expression continues the column (`expression: ">= 0"`), as in
            // dbt_utils; on a model it is a whole condition.
            let condition = match &test.column_name {
                Some(column) => format!("{column} {expression}"),
                None => expression.to_string(),
            };
            format!("select *\nfrom {model}\nwhere not ({condition})\n")
        }
        "not_empty" => format!("select 'no rows' as problem\nwhere not exists (select 1 from {model})\n"),
        "row_count" => {
            let bound = |key: &str| -> Result<Option<String>, Diagnostic> {
                match test.arguments.get(key) {
                    None | Some(Json::Null) => Ok(None),
                    Some(Json::Number(number)) => Ok(Some(number.to_string())),
                    Some(other) => Err(at_declaration(format!("row_count: '{key}' must be a number, not {other}").into())),
                }
            };
            let (min, max) = (bound("min_value")?, bound("max_value")?);
            let conditions: Vec<String> = [min.map(|min| format!("n_records < {min}")), max.map(|max| format!("n_records > {max}"))]
                .into_iter()
                .flatten()
                .collect();
            if conditions.is_empty() {
                return Err(at_declaration("row_count needs 'min_value:', 'max_value:' or both".into()));
            }
            format!(
                "select n_records\nfrom (select count(*) as n_records from {model}) as counted\nwhere {}\n",
                conditions.join(" or ")
            )
        }
        other => return Err(at_declaration(format!("unknown test '{other}'").into())),
    };
    Ok(sql)
}
