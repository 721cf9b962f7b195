//! Column-level lineage from a query's logical plan: for each output column, the columns of the
//! relations it reads (`schema.table`, column) that feed it.
//!
//! The plan is walked from its scans up. A scan's columns feed themselves; a projection's or an
//! aggregate's expression is fed by what its column references are fed by; a window adds its
//! expressions to its input's columns; a join puts its two sides side by side; a union merges
//! its inputs position by position; an unnest maps each column to the input column it comes
//! from; filters, sorts, limits and aliases pass their input on. Any
//! other node maps each column to the input column of the same name, or, failing that, to
//! everything its inputs read (an over-approximation, never a miss). What a scalar subquery in
//! an expression reads is not followed.

use std::collections::BTreeSet;

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};

/// A column of a relation: (`schema.table`, column).
pub type SourceColumn = (String, String);

/// For each output column of `plan`, in order: its name and the relation columns feeding it.
pub fn column_lineage(plan: &LogicalPlan) -> Vec<(String, BTreeSet<SourceColumn>)> {
    let fed = feeds(plan);
    plan.schema()
        .fields()
        .iter()
        .zip(fed)
        .map(|(field, sources)| (field.name().clone(), sources))
        .collect()
}

type Feeds = Vec<BTreeSet<SourceColumn>>;

fn feeds(plan: &LogicalPlan) -> Feeds {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let relation = match scan.table_name.schema() {
                Some(schema) => format!("{schema}.{}", scan.table_name.table()),
                None => scan.table_name.table().to_string(),
            };
            scan.projected_schema
                .fields()
                .iter()
                .map(|field| BTreeSet::from([(relation.clone(), field.name().clone())]))
                .collect()
        }
        LogicalPlan::Projection(projection) => {
            let input = feeds(&projection.input);
            projection
                .expr
                .iter()
                .map(|expr| referenced(expr, projection.input.schema(), &input))
                .collect()
        }
        LogicalPlan::Aggregate(aggregate) => {
            let input = feeds(&aggregate.input);
            let mut out: Feeds = aggregate
                .group_expr
                .iter()
                .chain(&aggregate.aggr_expr)
                .map(|expr| referenced(expr, aggregate.input.schema(), &input))
                .collect();
            // Grouping sets add an internal grouping id.
            out.resize(plan.schema().fields().len(), BTreeSet::new());
            out
        }
        LogicalPlan::Window(window) => {
            let input = feeds(&window.input);
            let mut out = input.clone();
            out.extend(
                window
                    .window_expr
                    .iter()
                    .map(|expr| referenced(expr, window.input.schema(), &input)),
            );
            out
        }
        LogicalPlan::Join(join) => {
            let (left, right) = (feeds(&join.left), feeds(&join.right));
            match join.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => left,
                JoinType::RightSemi | JoinType::RightAnti => right,
                _ => by_position(plan, left.into_iter().chain(right).collect()),
            }
        }
        LogicalPlan::Unnest(unnest) => {
            // Each output column comes from one input column (a list unnested, or kept).
            let input = feeds(&unnest.input);
            unnest
                .dependency_indices
                .iter()
                .map(|index| input.get(*index).cloned().unwrap_or_default())
                .collect()
        }
        LogicalPlan::Union(union) => {
            let mut out: Feeds = vec![BTreeSet::new(); plan.schema().fields().len()];
            for input in &union.inputs {
                for (slot, sources) in out.iter_mut().zip(feeds(input)) {
                    slot.extend(sources);
                }
            }
            out
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_) => match plan.inputs().as_slice() {
            [input] => by_position(plan, feeds(input)),
            _ => by_name(plan),
        },
        _ => by_name(plan),
    }
}

/// `fed`, when it has one entry per output column; otherwise matched by name.
fn by_position(plan: &LogicalPlan, fed: Feeds) -> Feeds {
    if fed.len() == plan.schema().fields().len() {
        fed
    } else {
        by_name(plan)
    }
}

/// Each output column from the input column of the same (qualified, else bare) name; failing
/// that, from everything the inputs read.
fn by_name(plan: &LogicalPlan) -> Feeds {
    let inputs: Vec<(&DFSchema, Feeds)> = plan
        .inputs()
        .into_iter()
        .map(|input| (input.schema().as_ref(), feeds(input)))
        .collect();
    let everything: BTreeSet<SourceColumn> = inputs
        .iter()
        .flat_map(|(_, fed)| fed.iter().flatten().cloned())
        .collect();
    plan.schema()
        .columns()
        .iter()
        .map(|column| {
            let bare = Column::new_unqualified(column.name.clone());
            inputs
                .iter()
                .find_map(|(schema, fed)| {
                    schema
                        .index_of_column(column)
                        .or_else(|_| schema.index_of_column(&bare))
                        .ok()
                        .and_then(|index| fed.get(index).cloned())
                })
                .unwrap_or_else(|| everything.clone())
        })
        .collect()
}

/// What the columns an expression refers to are fed by.
fn referenced(expr: &Expr, schema: &DFSchema, input: &Feeds) -> BTreeSet<SourceColumn> {
    expr.column_refs()
        .into_iter()
        .filter_map(|column| schema.index_of_column(column).ok())
        .filter_map(|index| input.get(index))
        .flatten()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::empty::EmptyTable;
    use datafusion::prelude::SessionContext;

    async fn lineage(sql: &str) -> Vec<(String, Vec<String>)> {
        let ctx = SessionContext::new();
        let events = Schema::new(vec![
            Field::new("learner_id", DataType::Utf8, true),
            Field::new("minutes", DataType::Float64, true),
            Field::new("score", DataType::Float64, true),
        ]);
        let learners = Schema::new(vec![
            Field::new("learner_id", DataType::Utf8, true),
            Field::new("team_id", DataType::Utf8, true),
        ]);
        ctx.sql("create schema main").await.unwrap();
        ctx.register_table(
            "main.events",
            std::sync::Arc::new(EmptyTable::new(std::sync::Arc::new(events))),
        )
        .unwrap();
        ctx.register_table(
            "main.learners",
            std::sync::Arc::new(EmptyTable::new(std::sync::Arc::new(learners))),
        )
        .unwrap();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        column_lineage(&plan)
            .into_iter()
            .map(|(name, sources)| (name, sources.into_iter().map(|(t, c)| format!("{t}.{c}")).collect()))
            .collect()
    }

    #[tokio::test]
    async fn columns_trace_through_ctes_joins_aggregates_windows_and_unions() {
        let found = lineage(
            "with per_learner as (
                select e.learner_id, l.team_id, sum(e.minutes) as minutes, avg(e.score) * 2 as doubled
                from main.events as e join main.learners as l on l.learner_id = e.learner_id
                group by e.learner_id, l.team_id
            )
            select team_id, minutes / nullif(doubled, 0) as ratio,
                rank() over (partition by team_id order by minutes) as place
            from per_learner
            union all
            select team_id, 0.0, 1 from main.learners",
        )
        .await;
        assert_eq!(
            found,
            [
                ("team_id".to_string(), vec!["main.learners.team_id".to_string()]),
                (
                    "ratio".to_string(),
                    vec!["main.events.minutes".to_string(), "main.events.score".to_string()]
                ),
                (
                    "place".to_string(),
                    vec!["main.events.minutes".to_string(), "main.learners.team_id".to_string()]
                ),
            ]
        );
    }
}
