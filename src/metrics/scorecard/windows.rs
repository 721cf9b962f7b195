//! The scorecard's window aggregations and data gates: every window of every entity at every
//! period, as lists one aggregation computes, and each period's gate as lists in period order.

use super::Query;
use crate::metrics::daily::{self, component};
use crate::metrics::spec::*;
use crate::metrics::validate::ValidatedModel;

/// Internal columns of the windowed step: `<measure>_<w>d__<part>`.
pub(super) fn window_part(measure: &str, window: i64, part: &str) -> String {
    format!("{measure}_{window}d__{part}")
}

/// The lists of a window aggregation (one per window length), each unnested into one value
/// per period.
pub(super) struct WindowList {
    /// The aggregate's column: the measure component (`<measure>__<part>`).
    pub(super) name: String,
    /// `tidemark_window_*(...)`.
    pub(super) aggregate: String,
    /// The CTE that aggregates it: `windows` (the daily roll-up) or `events_<measure>`.
    pub(super) from: String,
    /// `unnest({from}.<name>[k]) as __<name>_<w>d`, one per window length.
    pub(super) unnested: Vec<String>,
}

/// What the window aggregations give the scorecard: the aggregated lists, the window columns
/// (`<measure>_<w>d` and components), the measures computed from components, and the CTEs to
/// join beside the entities.
pub(super) struct Windows {
    pub(super) lists: Vec<WindowList>,
    pub(super) windowed: Vec<String>,
    pub(super) measured: Vec<String>,
    pub(super) joins: Vec<String>,
}

/// Every window of every entity at every period: one aggregation of the daily roll-up by
/// entity, each window aggregate giving a measure component's lists (one per window length, one
/// value per period; see `crate::functions`); distinct counts and percentiles aggregate the
/// events themselves.
pub(super) fn window_lists(model: &ValidatedModel, calendar: &str, daily_ref: &str, query: &mut Query) -> Windows {
    let spec = &model.spec;
    let mut lists: Vec<WindowList> = Vec::new();
    let mut windowed = Vec::new();
    let mut measured = Vec::new();
    let mut event_sources: Vec<String> = Vec::new();
    let mut value_sources: Vec<String> = Vec::new();
    for measure in &spec.measures {
        let m = measure.name.as_str();
        let windows = model.windows_of(measure);
        let lengths = windows.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let source = format!("events_{m}");
        // One aggregate per component: `part` of the daily roll-up through `function`, or a
        // distinct count / percentile of the events.
        let aggregate = |lists: &mut Vec<WindowList>, part: &str, call: String, from: &str| {
            lists.push(WindowList {
                name: component(m, part),
                aggregate: call,
                from: from.to_string(),
                unnested: Vec::new(),
            });
            component(m, part)
        };
        let daily_call = |function: &str, part: &str| {
            format!(
                "tidemark_window_{function}(d.{}, d.__day, {calendar}, {lengths})",
                component(m, part)
            )
        };
        // (list column, window) → the unnested value's column.
        let unnest = |list: &str, index: usize, w: i64| {
            let column = format!("__{list}_{w}d");
            (format!("unnest({{from}}.{list}[{}]) as {column}", index + 1), column)
        };
        match measure.agg {
            Aggregation::Count | Aggregation::ActiveDays | Aggregation::Drops => {
                let part = match measure.agg {
                    Aggregation::Count => "n",
                    Aggregation::ActiveDays => "a",
                    _ => "d",
                };
                let list = aggregate(&mut lists, part, daily_call("sum", part), "windows");
                for (index, &w) in windows.iter().enumerate() {
                    let (expression, column) = unnest(&list, index, w);
                    lists.last_mut().expect("list").unnested.push(expression);
                    windowed.push(format!("cast(coalesce({column}, 0) as bigint) as {m}_{w}d"));
                }
            }
            Aggregation::Sum | Aggregation::Min | Aggregation::Max | Aggregation::RollingMean => {
                let (function, part) = match measure.agg {
                    Aggregation::Sum => ("sum", "s"),
                    Aggregation::Min => ("min", "v"),
                    Aggregation::Max => ("max", "v"),
                    // The value of the latest day in the window that has one.
                    _ => ("last", "r"),
                };
                let list = aggregate(&mut lists, part, daily_call(function, part), "windows");
                for (index, &w) in windows.iter().enumerate() {
                    let (expression, column) = unnest(&list, index, w);
                    lists.last_mut().expect("list").unnested.push(expression);
                    let value = if measure.agg == Aggregation::Sum {
                        format!("coalesce({column}, 0)")
                    } else {
                        column
                    };
                    windowed.push(format!("{value} as {m}_{w}d"));
                }
            }
            Aggregation::CountDistinct | Aggregation::Percentile => {
                let call = if measure.agg == Aggregation::CountDistinct {
                    format!("tidemark_window_count_distinct(e.__value, e.__day, {calendar}, {lengths})")
                } else {
                    format!(
                        "tidemark_window_percentile(e.__value, e.__day, {}, {calendar}, {lengths})",
                        measure.percentile.unwrap_or(0.5)
                    )
                };
                // Distinct counts read the roll-up's daily lists of distinct values; percentiles
                // the events.
                let from = if measure.agg == Aggregation::CountDistinct {
                    format!("values_{m}")
                } else {
                    source.clone()
                };
                let list = aggregate(&mut lists, "values", call, &from);
                for (index, &w) in windows.iter().enumerate() {
                    let (expression, column) = unnest(&list, index, w);
                    lists.last_mut().expect("list").unnested.push(expression);
                    let value = if measure.agg == Aggregation::CountDistinct {
                        format!("coalesce({column}, 0)")
                    } else {
                        column
                    };
                    windowed.push(format!("{value} as {m}_{w}d"));
                }
                if measure.agg == Aggregation::CountDistinct {
                    value_sources.push(from);
                } else {
                    event_sources.push(source.clone());
                }
            }
            // Components summed over the window; the value is computed from them below.
            Aggregation::Avg | Aggregation::Ratio | Aggregation::OverdueShare | Aggregation::Slope => {
                let parts: Vec<(&str, &str)> = match measure.agg {
                    Aggregation::Avg => vec![("s", "s"), ("c", "c")],
                    Aggregation::Ratio => vec![("num", "num"), ("den", "den")],
                    Aggregation::OverdueShare => vec![("num", "overdue"), ("den", "due")],
                    _ => ["n", "sx", "sy", "sxy", "sxx"].iter().map(|p| (*p, *p)).collect(),
                };
                for (name, part) in &parts {
                    let list = aggregate(&mut lists, part, daily_call("sum", part), "windows");
                    for (index, &w) in windows.iter().enumerate() {
                        let (expression, column) = unnest(&list, index, w);
                        lists.last_mut().expect("list").unnested.push(expression);
                        windowed.push(format!("coalesce({column}, 0) as {}", window_part(m, w, name)));
                    }
                }
                for &w in windows {
                    let p = |part: &str| window_part(m, w, part);
                    measured.push(match measure.agg {
                        Aggregation::Avg => format!("{} / nullif({}, 0) as {m}_{w}d", p("s"), p("c")),
                        Aggregation::Slope => format!(
                            "({n} * {sxy} - {sx} * {sy}) / nullif({n} * {sxx} - {sx} * {sx}, 0) as {m}_{w}d",
                            n = p("n"),
                            sx = p("sx"),
                            sy = p("sy"),
                            sxy = p("sxy"),
                            sxx = p("sxx")
                        ),
                        _ => format!("{} / nullif({}, 0) as {m}_{w}d", p("num"), p("den")),
                    });
                }
            }
        }
    }
    let aggregates_of = |from: &str| -> Vec<String> {
        lists
            .iter()
            .filter(|list| list.from == from)
            .map(|list| format!("{} as {}", list.aggregate, list.name))
            .collect()
    };
    let mut joins = Vec::new();
    let daily_lists = aggregates_of("windows");
    if !daily_lists.is_empty() {
        query.add(
            "windows",
            format!(
                "    select d.__entity,\n        {}\n    from {daily_ref} as d\n    group by d.__entity",
                daily_lists.join(",\n        ")
            ),
        );
        joins.push("windows".to_string());
    }
    // Distinct counts: the values of each day's list.
    for source in &value_sources {
        let list = component(source.trim_start_matches("values_"), "values");
        query.add(
            source.clone(),
            format!(
                "    select e.__entity,\n        {}\n    from (\n        select d.__entity, d.__day, unnest(d.{list}) as __value\n        from {daily_ref} as d\n    ) as e\n    group by e.__entity",
                aggregates_of(source).join(",\n        "),
            ),
        );
        joins.push(source.clone());
    }
    // Percentiles come from the events, not the roll-up.
    for source in &event_sources {
        let measure = spec
            .measures
            .iter()
            .find(|x| format!("events_{}", x.name) == *source)
            .expect("measure of source");
        // `event_time_filter` is `true` except in a time-range run (then: the range and its
        // lookback).
        let filter = format!(
            "where {}{{{{ event_time_filter('events.{}') }}}}",
            measure
                .filter
                .as_ref()
                .map(|f| format!("({f}) and "))
                .unwrap_or_default(),
            spec.events.time
        );
        query.add(
            source.clone(),
            format!(
                "    select e.__entity,\n        {}\n    from (\n        select events.{ev_entity} as __entity, cast(cast(events.{time} as date) as int) as __day, {expr} as __value\n        from {{{{ {events} }}}} as events\n        {filter}\n    ) as e\n    group by e.__entity",
                aggregates_of(source).join(",\n        "),
                ev_entity = spec.events.entity,
                time = spec.events.time,
                expr = measure.expr.as_deref().unwrap_or_default(),
                events = spec.events.relation(),
            ),
        );
        joins.push(source.clone());
    }
    Windows {
        lists,
        windowed,
        measured,
        joins,
    }
}

/// Data gates per period (every period of the calendar), from the daily totals: `gates` holds
/// `gate_ok` and `gate_reason` as lists in period order.
pub(super) fn gate_ctes(model: &ValidatedModel, query: &mut Query) {
    let spec = &model.spec;
    let incremental = spec.incremental;
    let gates = &spec.gates;
    // Every day of the roll-up, even in a time-range run: a gate looks back without limit for
    // the newest event, and over earlier periods for the volume baseline.
    query.add(
        "activity",
        format!(
            "    select __day, sum(__events) as __events\n    from {{{{ ref('{}', event_time=false) }}}}\n    group by __day",
            daily::name(spec)
        ),
    );
    let gate_calendar = if incremental {
        let calendar_periods = query.add(
            "calendar_periods",
            format!(
                "    select cast(__period_end as int) as __period\n    from (select unnest(tidemark_periods({})) as __period_end) as period_ends",
                super::calendar(model, false)
            ),
        );
        format!("{calendar_periods} as periods")
    } else {
        "periods".to_string()
    };
    let volume_window = gates.volume_window.unwrap_or(7);
    query.add(
        "gate_periods",
        format!(
            "    select periods.__period, max(activity.__day) as __newest_day,\n        coalesce(sum(case when activity.__day > periods.__period - {volume_window} then activity.__events end), 0) as __volume\n    from {gate_calendar}\n    left join activity on activity.__day <= periods.__period\n    group by periods.__period"
        ),
    );
    let fresh = match gates.freshness_days {
        Some(days) => format!("(__newest_day is not null and __period - __newest_day <= {days})"),
        None => "true".into(),
    };
    let volume_ok = match gates.min_volume_ratio {
        Some(ratio) => format!("(__volume_baseline is null or __volume >= {ratio} * __volume_baseline)"),
        None => "true".into(),
    };
    let freshness_reason = match gates.freshness_days {
        Some(days) => format!(
            "case when not {fresh} then 'data freshness: newest event ' || coalesce(cast(__period - __newest_day as varchar) || ' days', 'missing') || ' before the period end (limit {days} days)' end"
        ),
        None => "cast(null as varchar)".into(),
    };
    let volume_reason = match gates.min_volume_ratio {
        Some(ratio) => format!(
            "case when not {volume_ok} then 'data volume: ' || cast(cast(__volume as bigint) as varchar) || ' events in the last {volume_window} days, below {ratio} × the trailing average of ' || cast(round(__volume_baseline, 1) as varchar) end"
        ),
        None => "cast(null as varchar)".into(),
    };
    query.add(
        "gate_baselines",
        format!(
            "    select *,\n        avg(cast(__volume as double)) over (order by __period rows between {} preceding and 1 preceding) as __volume_baseline\n    from gate_periods",
            gates.volume_periods.unwrap_or(4)
        ),
    );
    query.add(
        "gate_rows",
        format!(
            "    select __period,\n        {fresh} and {volume_ok} as gate_ok,\n        nullif(concat_ws('; ', {freshness_reason}, {volume_reason}), '') as gate_reason\n    from gate_baselines"
        ),
    );
    // As lists in period order, unnested beside the windows' lists (no join of every row).
    // (Only the calendar's periods: a time-range run's calendar starts later than the gates'.)
    query.add(
        "gates",
        if incremental {
            "    select array_agg(g.gate_ok order by g.__period) as gate_ok,\n        array_agg(g.gate_reason order by g.__period) as gate_reason\n    from gate_rows as g\n    join periods on periods.__period = g.__period".into()
        } else {
            "    select array_agg(gate_ok order by __period) as gate_ok,\n        array_agg(gate_reason order by __period) as gate_reason\n    from gate_rows".into()
        },
    );
}
