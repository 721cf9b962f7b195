//! `<name>__daily`: one pass over the events to an entity × day roll-up.
//!
//! Every measure is reduced to components that add up over days (counts, sums, the sums a
//! least-squares slope needs, drop flags, due and overdue items), that pick one value per day
//! (min, max, the latest rolling mean) or that list the day's distinct values (distinct counts). Event-level steps (the previous score for drops, the
//! rolling mean of the last N events, the first completion of an item) are computed in their own
//! branch and unioned in, so the events are grouped once.

use super::spec::{Aggregation, MeasureSpec, MetricModelSpec};
use super::validate::ValidatedModel;

pub(super) fn name(spec: &MetricModelSpec) -> String {
    format!("{}__daily", spec.name)
}

/// How a component is combined within a day.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum DayAggregate {
    Sum,
    Min,
    Max,
    /// The value of the day's last event (rolling means): its branch keeps only that event.
    Last,
    /// The list of the day's distinct non-NULL values, as text (distinct counts).
    Distinct,
}

/// Where a component's rows come from.
#[derive(Clone, PartialEq, Eq)]
enum Branch {
    Events,
    /// The distinct values of a distinct count, one row per entity, day and value.
    Distinct(String),
    /// The events of a sequence (drops, rolling means) in order: one branch per filter and
    /// expression, however many measures read it.
    Sequence {
        filter: String,
        expr: String,
    },
    Overdue(String),
}

struct Component {
    column: String,
    expression: String,
    aggregate: DayAggregate,
    branch: Branch,
}

fn filter_of(filter: &Option<String>) -> String {
    filter
        .as_ref()
        .map(|f| format!("({f})"))
        .unwrap_or_else(|| "true".into())
}

/// Column of a measure's daily component.
pub(super) fn component(measure: &str, part: &str) -> String {
    format!("{measure}__{part}")
}

fn components(model: &ValidatedModel) -> Vec<Component> {
    let mut list = vec![Component {
        column: "__events".into(),
        expression: "1".into(),
        aggregate: DayAggregate::Sum,
        branch: Branch::Events,
    }];
    for measure in &model.spec.measures {
        list.extend(components_of(measure, model.origin_day));
    }
    list
}

fn components_of(measure: &MeasureSpec, origin_day: i64) -> Vec<Component> {
    let m = &measure.name;
    let f = filter_of(&measure.filter);
    let expr = measure.expr.clone().unwrap_or_default();
    let value = format!("cast({expr} as double)");
    let events = |part: &str, expression: String, aggregate: DayAggregate| Component {
        column: component(m, part),
        expression,
        aggregate,
        branch: Branch::Events,
    };
    match measure.agg {
        Aggregation::Count => vec![events(
            "n",
            format!("case when {f} then 1 else 0 end"),
            DayAggregate::Sum,
        )],
        // A window's distinct values are the union of its days' lists. (Compared as text: the
        // lists of every measure share one type whatever their expressions' types.)
        Aggregation::CountDistinct => vec![Component {
            column: component(m, "values"),
            expression: "__value".into(),
            aggregate: DayAggregate::Distinct,
            branch: Branch::Distinct(m.clone()),
        }],
        // Percentiles are computed from the events themselves (see the scorecard).
        Aggregation::Percentile => vec![],
        Aggregation::Sum => vec![events(
            "s",
            format!("case when {f} then {value} end"),
            DayAggregate::Sum,
        )],
        Aggregation::Avg => vec![
            events("s", format!("case when {f} then {value} end"), DayAggregate::Sum),
            events(
                "c",
                format!("case when {f} and ({expr}) is not null then 1 else 0 end"),
                DayAggregate::Sum,
            ),
        ],
        Aggregation::Min => vec![events(
            "v",
            format!("case when {f} then {value} end"),
            DayAggregate::Min,
        )],
        Aggregation::Max => vec![events(
            "v",
            format!("case when {f} then {value} end"),
            DayAggregate::Max,
        )],
        Aggregation::ActiveDays => vec![events(
            "a",
            format!("case when {f} then 1 else 0 end"),
            DayAggregate::Max,
        )],
        Aggregation::Ratio => {
            let part = |side: &Option<super::spec::RatioPart>| {
                let side = side.as_ref().expect("validated");
                let amount = side
                    .expr
                    .as_ref()
                    .map(|e| format!("cast({e} as double)"))
                    .unwrap_or_else(|| "1".into());
                format!("case when {} then {amount} else 0 end", filter_of(&side.filter))
            };
            vec![
                events("num", part(&measure.numerator), DayAggregate::Sum),
                events("den", part(&measure.denominator), DayAggregate::Sum),
            ]
        }
        Aggregation::Slope => {
            let point = format!("{f} and ({expr}) is not null");
            let x = format!("cast(__day - {origin_day} as double)");
            vec![
                events("n", format!("case when {point} then 1 else 0 end"), DayAggregate::Sum),
                events("sx", format!("case when {point} then {x} end"), DayAggregate::Sum),
                events("sy", format!("case when {point} then {value} end"), DayAggregate::Sum),
                events(
                    "sxy",
                    format!("case when {point} then {x} * {value} end"),
                    DayAggregate::Sum,
                ),
                events(
                    "sxx",
                    format!("case when {point} then {x} * {x} end"),
                    DayAggregate::Sum,
                ),
            ]
        }
        Aggregation::Drops => vec![Component {
            column: component(m, "d"),
            expression: format!(
                "case when __delta < -({}) then 1 else 0 end",
                measure.threshold.unwrap_or_default()
            ),
            aggregate: DayAggregate::Sum,
            branch: sequence_of(measure),
        }],
        // Only the day's last event of the sequence keeps its rolling mean.
        Aggregation::RollingMean => vec![Component {
            column: component(m, "r"),
            expression: format!(
                "case when __next_day is null or __next_day <> __day or __next_entity <> __entity then __rolling_{m} end"
            ),
            aggregate: DayAggregate::Last,
            branch: sequence_of(measure),
        }],
        Aggregation::OverdueShare => vec![
            Component {
                column: component(m, "due"),
                expression: "1".into(),
                aggregate: DayAggregate::Sum,
                branch: Branch::Overdue(m.clone()),
            },
            Component {
                column: component(m, "overdue"),
                expression: "__overdue".into(),
                aggregate: DayAggregate::Sum,
                branch: Branch::Overdue(m.clone()),
            },
        ],
    }
}

/// Days before its range a time-range run of the roll-up reads the events from: the longest
/// window when an event-level step (previous score, last N scores, due items) looks back, else 0.
pub(super) fn lookback_days(model: &ValidatedModel) -> i64 {
    let looks_back = components(model)
        .iter()
        .any(|c| !matches!(c.branch, Branch::Events | Branch::Distinct(_)));
    if looks_back {
        model.max_window
    } else {
        0
    }
}

fn sequence_of(measure: &MeasureSpec) -> Branch {
    Branch::Sequence {
        filter: filter_of(&measure.filter),
        expr: measure.expr.clone().unwrap_or_default(),
    }
}

/// The SQL source of the rows of one branch.
fn branch_source(model: &ValidatedModel, branch: &Branch) -> String {
    let measure = |name: &str| {
        model
            .spec
            .measures
            .iter()
            .find(|m| m.name == *name)
            .expect("measure of branch")
    };
    match branch {
        Branch::Events => "events".into(),
        Branch::Distinct(name) => {
            let measure = measure(name);
            let expr = measure.expr.as_deref().unwrap_or_default();
            // Made distinct by a grouping of native values first: far cheaper than a
            // distinct list aggregate.
            format!(
                "(\n        select __entity, __day, min(__time) as __time, cast({expr} as varchar) as __value\n        from events\n        where {} and ({expr}) is not null\n        group by __entity, __day, {expr}\n    ) as distinct_values",
                filter_of(&measure.filter)
            )
        }
        Branch::Sequence { filter, expr } => {
            let history = model.max_window;
            // Ordered by time, then value: events at the same instant give the same results
            // whatever order the engine reads them in. `tidemark_change` is the value minus the
            // previous one within the longest window, `tidemark_recent_mean` the mean of the
            // value and the previous `last - 1` within it (see `crate::functions`); `lead` of
            // the entity and day finds the day's last event in the same ordering (no further
            // sort), the one whose rolling means the roll-up keeps (a `last_value` ordered
            // aggregate instead is slow for millions of groups).
            let value = format!("cast({expr} as double)");
            // One ordering of all the rows, the entity as the functions' key (one pass rather
            // than one per entity, see `crate::functions`).
            let over = format!("over (order by __entity, __time, {value})");
            let readers: Vec<&MeasureSpec> = model
                .spec
                .measures
                .iter()
                .filter(|m| sequence_of(m) == *branch && matches!(m.agg, Aggregation::Drops | Aggregation::RollingMean))
                .collect();
            let mut columns = Vec::new();
            if readers.iter().any(|m| m.agg == Aggregation::Drops) {
                columns.push(format!(
                    "tidemark_change({value}, __time, {history}, __entity) {over} as __delta"
                ));
            }
            for reader in readers.iter().filter(|m| m.agg == Aggregation::RollingMean) {
                columns.push(format!(
                    "tidemark_recent_mean({value}, __time, {}, {history}, __entity) {over} as __rolling_{}",
                    reader.last.unwrap_or(1).max(1),
                    reader.name
                ));
            }
            if readers.iter().any(|m| m.agg == Aggregation::RollingMean) {
                columns.push(format!("lead(__entity) {over} as __next_entity"));
                columns.push(format!("lead(__day) {over} as __next_day"));
            }
            format!(
                "(\n        select __entity, __day, __time,\n            {}\n        from events\n        where {filter} and ({expr}) is not null\n    ) as sequence",
                columns.join(",\n            ")
            )
        }
        Branch::Overdue(name) => {
            let measure = measure(name);
            let item = measure.item.as_deref().unwrap_or_default();
            let due = measure.due.as_deref().unwrap_or_default();
            let completed = measure.completed.as_deref().unwrap_or("false");
            let history = model.max_window;
            // Each (item, due date) assigned at most `history` days before it is due counts on
            // its due day; it is overdue unless the item was completed in the `history` days up
            // to the due date. Everything it needs lies within `history` days of the due day.
            format!(
                "(\n        select assigned.__entity,\n            cast(cast(assigned.__due as date) as int) as __day,\n            assigned.__due as __time,\n            case when max(case when done.__completed is not null then 1 else 0 end) = 1 then 0 else 1 end as __overdue\n        from (\n            select distinct __entity, {item} as __item, cast({due} as timestamp) as __due\n            from events\n            where {} and ({due}) is not null\n                and __time >= cast({due} as timestamp) - interval '{history} days'\n        ) as assigned\n        left join (\n            select __entity, {item} as __item, __time as __completed\n            from events\n            where ({completed})\n        ) as done on done.__entity = assigned.__entity and done.__item = assigned.__item\n            and done.__completed <= assigned.__due and done.__completed > assigned.__due - interval '{history} days'\n        group by assigned.__entity, assigned.__item, assigned.__due\n    ) as overdue",
                filter_of(&measure.filter)
            )
        }
    }
}

pub(super) fn sql(model: &ValidatedModel) -> String {
    let spec = &model.spec;
    let components = components(model);
    let mut branches: Vec<Branch> = Vec::new();
    for component in &components {
        if !branches.contains(&component.branch) {
            branches.push(component.branch.clone());
        }
    }
    let selects: Vec<String> = branches
        .iter()
        .map(|branch| {
            let columns: Vec<String> = components
                .iter()
                .map(|component| {
                    let kind = if component.aggregate == DayAggregate::Distinct {
                        "varchar"
                    } else {
                        "double"
                    };
                    if &component.branch == branch {
                        format!("cast({} as {kind}) as {}", component.expression, component.column)
                    } else {
                        format!("cast(null as {kind}) as {}", component.column)
                    }
                })
                .collect();
            // Every branch reads the lookback its event-level steps need, but gives only the
            // days the run recomputes (`true` outside a time-range run).
            format!(
                "    select __entity, __day, __time,\n        {}\n    from {}\n    where {{{{ event_time_range('__time') }}}}",
                columns.join(",\n        "),
                branch_source(model, branch)
            )
        })
        .collect();
    let aggregates: Vec<String> = components
        .iter()
        .map(|component| {
            let column = &component.column;
            match component.aggregate {
                DayAggregate::Sum => format!("sum({column}) as {column}"),
                DayAggregate::Min => format!("min({column}) as {column}"),
                DayAggregate::Max => format!("max({column}) as {column}"),
                // Its branch keeps one row per entity and day.
                DayAggregate::Last => format!("max({column}) as {column}"),
                // Its branch keeps one row per entity, day and value; sorted, so the table is
                // the same whatever order the engine reads the rows in.
                DayAggregate::Distinct => {
                    format!("array_sort(array_agg({column}) filter (where {column} is not null)) as {column}")
                }
            }
        })
        .collect();
    format!(
        "-- Metric model {name}: entity × day roll-up of {events} (generated by tidemark).\nwith events as (\n    select\n        e.*,\n        e.{entity} as __entity,\n        cast(e.{time} as timestamp) as __time,\n        cast(cast(e.{time} as date) as int) as __day\n    from {{{{ {relation} }}}} as e\n    where e.{entity} is not null and e.{time} is not null\n        and {{{{ event_time_filter('e.{time}') }}}}\n),\ncomponents as (\n{}\n)\nselect\n    __entity,\n    __day,\n    cast(__day as date) as day,\n    {}\nfrom components\ngroup by __entity, __day\n",
        selects.join("\n    union all\n"),
        aggregates.join(",\n    "),
        name = spec.name,
        events = spec.events.model,
        relation = spec.events.relation(),
        entity = spec.events.entity,
        time = spec.events.time,
    )
}
