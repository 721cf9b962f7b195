//! `<name>`: the scorecard, one row per entity × period.
//!
//! The CTEs, in order: the period ends (`tidemark_periods(start, end, every)`); the entities
//! (from the dimension, with their attributes); `windows`, one aggregation of the daily roll-up
//! by entity in which each `tidemark_window_*` aggregate gives a measure component over each
//! of its windows at every period end, as lists (see [`crate::functions`]); the same from the
//! roll-up's daily lists of distinct values for distinct counts, and from the events for
//! percentiles; the data gates of each period, as lists in period order; `window_rows`, which
//! unnests all those lists side by side into entity × period rows (an entity without activity
//! gets zeros, never gaps); `windowed`, the measures; then the derived columns (comparison,
//! normalisation, shrinkage, score) by dependency level: the level's lags and baselines over one
//! ordering by entity and period (`level_<n>_lookback`, in a time-range run over the stored
//! earlier periods too, `level_<n>_history`), its cohort and period window functions
//! (`level_<n>_references`), then its values (`level_<n>_values`).

use super::daily::{self, component};
use super::spec::*;
use super::validate::{Derived, ValidatedModel};

/// The calendar as SQL arguments: `date '<first period>', date '<last period>', '<every>'`
/// (`tidemark_periods` and the window aggregates take these three).
///
/// With `from_range_start` (an incremental model), a time-range run's calendar begins at the
/// first period it recomputes (`tidemark_calendar`, see the template functions), so the window
/// aggregates compute only the periods the run writes.
fn calendar(model: &ValidatedModel, from_range_start: bool) -> String {
    let first = super::validate::date_of(model.periods.first().copied().unwrap_or(0));
    match model.spec.periods.every {
        Some(every) if model.spec.periods.as_of.is_none() => {
            let last = super::validate::date_of(model.periods.last().copied().unwrap_or(0));
            let every = match every {
                Cadence::Day => "day",
                Cadence::Week => "week",
                Cadence::Month => "month",
            };
            if from_range_start {
                format!("{{{{ tidemark_calendar('{first}', '{last}', '{every}') }}}}")
            } else {
                format!("date '{first}', date '{last}', '{every}'")
            }
        }
        _ => format!("date '{first}', date '{first}', 'day'"),
    }
}

/// Internal columns of the windowed step: `<measure>_<w>d__<part>`.
fn window_part(measure: &str, window: i64, part: &str) -> String {
    format!("{measure}_{window}d__{part}")
}

/// The lists of a window aggregation (one per window length), each unnested into one value
/// per period.
struct WindowList {
    /// The aggregate's column: the measure component (`<measure>__<part>`).
    name: String,
    /// `tidemark_window_*(...)`.
    aggregate: String,
    /// The CTE that aggregates it: `windows` (the daily roll-up) or `events_<measure>`.
    from: String,
    /// `unnest({from}.<name>[k]) as __<name>_<w>d`, one per window length.
    unnested: Vec<String>,
}

struct Query {
    ctes: Vec<(String, String)>,
}

impl Query {
    fn add(&mut self, name: impl Into<String>, body: String) -> String {
        let name = name.into();
        self.ctes.push((name.clone(), body));
        name
    }
}

pub(super) fn sql(model: &ValidatedModel) -> String {
    let spec = &model.spec;
    let entity = spec.events.entity.as_str();
    let attributes: Vec<&str> = spec
        .dimension
        .as_ref()
        .map(|d| d.attributes.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let daily_ref = format!("{{{{ ref('{}') }}}}", daily::name(spec));
    let mut query = Query { ctes: Vec::new() };

    // An incremental scorecard's time-range run computes only the periods it recomputes and
    // reads the earlier periods, which baselines and lags look back on, from its own table.
    let incremental = spec.incremental;
    let calendar = calendar(model, incremental);
    let period_list = format!("tidemark_periods({calendar})");
    query.add(
        "periods",
        format!(
            "    select cast(__period_end as int) as __period\n    from (select unnest({period_list}) as __period_end) as period_ends"
        ),
    );

    let entities = match &spec.dimension {
        Some(dimension) => {
            let mut columns = vec![format!("dimension.{} as {entity}", dimension.key)];
            columns.extend(attributes.iter().map(|a| format!("dimension.{a}")));
            format!(
                "    select distinct {}\n    from {{{{ ref('{}') }}}} as dimension\n    where dimension.{} is not null",
                columns.join(", "),
                dimension.model,
                dimension.key
            )
        }
        // Every entity ever seen, even in a time-range run.
        None => format!(
            "    select distinct __entity as {entity}\n    from {{{{ ref('{}', event_time=false) }}}}",
            daily::name(spec)
        ),
    };
    query.add("entities", entities);

    // Every window of every entity at every period: one aggregation of the daily roll-up by
    // entity, each window aggregate giving a measure component's lists (one per window length,
    // one value per period; see `crate::functions`); distinct counts and percentiles aggregate
    // the events themselves.
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
                "    select e.__entity,\n        {}\n    from (\n        select events.{ev_entity} as __entity, cast(cast(events.{time} as date) as int) as __day, {expr} as __value\n        from {{{{ ref('{model}') }}}} as events\n        {filter}\n    ) as e\n    group by e.__entity",
                aggregates_of(source).join(",\n        "),
                ev_entity = spec.events.entity,
                time = spec.events.time,
                expr = measure.expr.as_deref().unwrap_or_default(),
                model = spec.events.model,
            ),
        );
        joins.push(source.clone());
    }
    // Data gates per period (every period of the calendar), from the daily totals.
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
                self::calendar(model, false)
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

    let mut unnested = vec![
        "entities.*".to_string(),
        format!("unnest({period_list}) as __period_end"),
    ];
    unnested.push("unnest(gates.gate_ok) as gate_ok".into());
    unnested.push("unnest(gates.gate_reason) as gate_reason".into());
    for list in &lists {
        unnested.extend(list.unnested.iter().map(|u| u.replace("{from}", &list.from)));
    }
    let mut from = "entities\n    cross join gates".to_string();
    for join in &joins {
        from.push_str(&format!(
            "\n    left join {join} on {join}.__entity = entities.{entity}"
        ));
    }
    query.add(
        "window_rows",
        format!("    select\n        {}\n    from {from}", unnested.join(",\n        ")),
    );
    let mut windowed_select: Vec<String> = vec![entity.to_string()];
    windowed_select.extend(attributes.iter().map(|a| a.to_string()));
    windowed_select.push("cast(__period_end as int) as __period".into());
    windowed_select.push("__period_end as period_end".into());
    windowed_select.extend(windowed);
    windowed_select.extend(["gate_ok".to_string(), "gate_reason".into()]);
    query.add(
        "windowed",
        format!(
            "    select\n        {}\n    from window_rows\n    where {{{{ event_time_range('__period_end') }}}}",
            windowed_select.join(",\n        ")
        ),
    );

    // Measures, distinct counts, cohort size and gates on one row.
    let cohort_size = match &spec.cohort {
        Some(cohort) => format!("count(*) over (partition by w.{cohort}, w.__period) as cohort_size"),
        None => "count(*) over (partition by w.__period) as cohort_size".into(),
    };
    let mut select = vec!["w.*".to_string()];
    select.extend(measured.iter().cloned());
    select.push(cohort_size);
    let public_derived: Vec<String> = model.derived.iter().flat_map(public_columns).collect();
    // A time-range run reads the periods a baseline or lag of a recomputed period looks back on
    // from the scorecard's own table (none: nothing to read).
    let reach_days = stored_reach_days(model);
    let stored_history = incremental && reach_days > 0;
    let mut previous = query.add(
        "measured",
        format!(
            "    select\n        {}\n    from windowed as w",
            select.join(",\n        ")
        ),
    );
    // The columns of `previous`, in order.
    let mut columns: Vec<String> = windowed_select
        .iter()
        .chain(&measured)
        .map(|column| alias_of(column).to_string())
        .chain(["cohort_size".to_string()])
        .collect();

    // Derived columns, grouped by dependency level: each level is one CTE of references (window
    // functions) and one of values, so the plan has as few window stages as the dependencies allow.
    let levels = derived_levels(model);
    let mut stages: Vec<Stage> = Vec::new();

    let cohort_partition = |scope: Scope| match (&spec.cohort, scope) {
        (Some(cohort), Scope::Cohort) => format!("{cohort}, __period"),
        _ => "__period".to_string(),
    };
    let min_cohort = spec.min_cohort_size.unwrap_or(0);
    for (index, derived) in model.derived.iter().enumerate() {
        let level = levels[index];
        match derived {
            Derived::Formula(formula) => {
                stage_at(&mut stages, level)
                    .values
                    .push(format!("cast({} as double) as {}", formula.expr, formula.name));
            }
            Derived::Comparison(comparison) => {
                let name = &comparison.name;
                let metric = &format!("cast({} as double)", comparison.metric);
                let reference = format!("{name}_reference");
                let default_as = match comparison.against {
                    Against::Baseline => CompareAs::Zscore,
                    Against::Previous => CompareAs::RelativeChange,
                    _ => CompareAs::Ratio,
                };
                let compare_as = comparison.compare_as.unwrap_or(default_as);
                let mut extra = Vec::new();
                let mut condition = "true".to_string();
                let reference_sql = match comparison.against {
                    Against::Previous => {
                        format!(
                            "lag({metric}, {}) over (partition by {entity} order by __period)",
                            comparison.periods.unwrap_or(1)
                        )
                    }
                    Against::Baseline => {
                        let skip = comparison.skip.unwrap_or(0);
                        // The `periods` rows before the skipped ones: what `rows between
                        // {start} preceding and {end} preceding` frames, a partition at a time.
                        let (start, end) = (comparison.periods.unwrap_or(8) + skip, skip + 1);
                        // In one pass over the rows ordered by entity, the entity as the key
                        // (not a partition per entity: see `crate::functions`).
                        let over = format!("over (order by {entity}, __period)");
                        let kept = match &comparison.exclude_when {
                            Some(exclude) => format!("case when not coalesce(({exclude}), false) then {metric} end"),
                            None => metric.clone(),
                        };
                        // Every statistic of the frame in one window function (a struct); the
                        // reference, spread and count read its fields.
                        let summary = format!("__{name}_trailing");
                        stage_at(&mut stages, level).lookback.push(format!(
                            "tidemark_trailing_summary({kept}, {start}, {end}, {entity}) {over} as {summary}"
                        ));
                        let field = |name: &str| format!("{summary}['{name}']");
                        let floor = comparison.sigma_floor.unwrap_or(0.0);
                        let floor_ratio = comparison.sigma_floor_ratio.unwrap_or(0.1);
                        let (centre, spread) = if compare_as == CompareAs::RobustZ {
                            (
                                field("median"),
                                format!("({} - {}) / 1.349", field("p75"), field("p25")),
                            )
                        } else {
                            (field("avg"), field("stddev"))
                        };
                        extra = vec![
                            format!("greatest(coalesce({spread}, 0), {floor}, {floor_ratio} * abs({centre})) as {name}_sigma"),
                            format!("{} as __{name}_periods", field("count")),
                        ];
                        condition = format!("__{name}_periods >= {}", comparison.min_periods.unwrap_or(3));
                        centre
                    }
                    against => {
                        let cohort = spec.cohort.as_deref().unwrap_or("__period");
                        let statistic = match against {
                            Against::CohortMedian | Against::CohortP50 => format!("median({metric})"),
                            Against::CohortMean => format!("avg({metric})"),
                            Against::CohortP25 => format!("percentile_cont({metric}, 0.25)"),
                            Against::CohortP75 => format!("percentile_cont({metric}, 0.75)"),
                            _ => format!("percentile_cont({metric}, 0.9)"),
                        };
                        format!("case when cohort_size >= {min_cohort} then {statistic} over (partition by {cohort}, __period) end")
                    }
                };
                let stage = stage_at(&mut stages, level);
                let references = match comparison.against {
                    // Along the entity's own periods, reading earlier ones in a time-range run
                    // (a baseline's summary is there already; its fields are references).
                    Against::Previous | Against::Baseline => {
                        stage.lookback_inputs.push(comparison.metric.clone());
                        if let Some(exclude) = &comparison.exclude_when {
                            stage.lookback_inputs.extend(super::validate::identifiers(exclude));
                        }
                        if comparison.against == Against::Previous {
                            &mut stage.lookback
                        } else {
                            &mut stage.references
                        }
                    }
                    _ => &mut stage.references,
                };
                references.push(format!("{reference_sql} as {reference}"));
                references.extend(extra);
                let value = match compare_as {
                    CompareAs::Ratio => format!("{metric} / nullif({reference}, 0)"),
                    CompareAs::Difference => format!("{metric} - {reference}"),
                    CompareAs::RelativeChange => format!("({metric} - {reference}) / nullif(abs({reference}), 0)"),
                    CompareAs::Zscore | CompareAs::RobustZ => {
                        format!("({metric} - {reference}) / nullif({name}_sigma, 0)")
                    }
                };
                stage_at(&mut stages, level)
                    .values
                    .push(format!("case when {condition} then {value} end as {name}"));
            }
            Derived::Normalize(normalize, name) => {
                let value = normalized(&normalize.metric, normalize.method, &cohort_partition(normalize.within));
                let value = match (normalize.within, min_cohort) {
                    (Scope::Cohort, n) if n > 0 => format!("case when cohort_size >= {n} then {value} end"),
                    _ => value,
                };
                stage_at(&mut stages, level).values.push(format!("{value} as {name}"));
            }
            Derived::Shrink(shrink, name) => {
                let num = window_part(&shrink.measure, shrink.window, "num");
                let den = window_part(&shrink.measure, shrink.window, "den");
                let partition = cohort_partition(shrink.toward);
                let k = shrink.strength;
                stage_at(&mut stages, level).values.push(format!(
                    "({num} + {k} * (sum({num}) over (partition by {partition}) / nullif(sum({den}) over (partition by {partition}), 0))) / nullif({den} + {k}, 0) as {name}"
                ));
            }
            Derived::Score(score) => {
                let method = score.normalize.unwrap_or(NormalizeMethod::PercentRank);
                let partition = cohort_partition(score.within);
                let mut parts = Vec::new();
                let mut weights = Vec::new();
                for (position, component) in score.components.iter().enumerate() {
                    let mut value = normalized(&component.metric, method, &partition);
                    if component.direction == Direction::LowerIsBetter {
                        value = match method {
                            NormalizeMethod::Zscore => format!("-({value})"),
                            _ => format!("1 - ({value})"),
                        };
                    }
                    let column = format!("__{}_{position}", score.name);
                    parts.push(format!("{value} as {column}"));
                    let weight = match &component.family {
                        Some(family) if !score.families.is_empty() => {
                            let members = score
                                .components
                                .iter()
                                .filter(|c| c.family.as_ref() == Some(family))
                                .count();
                            score.families[family] / members as f64
                        }
                        _ => component.weight.unwrap_or(0.0),
                    };
                    weights.push((column, weight));
                }
                stage_at(&mut stages, level).references.extend(parts);
                let weighted: Vec<String> = weights.iter().map(|(c, w)| format!("{w} * coalesce({c}, 0)")).collect();
                let value = match score.missing {
                    MissingPolicy::Zero => format!("({})", weighted.join(" + ")),
                    MissingPolicy::Null => {
                        let strict: Vec<String> = weights.iter().map(|(c, w)| format!("{w} * {c}")).collect();
                        format!("({})", strict.join(" + "))
                    }
                    MissingPolicy::Renormalize => {
                        let present: Vec<String> = weights
                            .iter()
                            .map(|(c, w)| format!("case when {c} is null then 0 else {w} end"))
                            .collect();
                        format!("({}) / nullif({}, 0)", weighted.join(" + "), present.join(" + "))
                    }
                };
                stage_at(&mut stages, level)
                    .values
                    .push(format!("{value} as {}", score.name));
            }
        }
    }
    let stored_columns = output_columns(model, &public_derived);
    let select_all = |columns: &[String], from: &str, filter: &str| {
        format!(
            "    select *,\n        {}\n    from {from}{filter}",
            columns.join(",\n        ")
        )
    };
    for (index, stage) in stages.into_iter().enumerate() {
        let level = index + 1;
        if !stage.lookback.is_empty() {
            // In a time-range run, the earlier periods the lags and baselines look back on come
            // from the table, with the columns they read (the others NULL); they pass through
            // these window functions only and leave at the next step.
            let mut filter = "";
            if stored_history {
                let had_stored = columns.iter().any(|c| c == "__stored");
                if !had_stored {
                    columns.push("__stored".into());
                }
                let fresh: Vec<String> = columns
                    .iter()
                    .map(|name| match name.as_str() {
                        "__stored" if !had_stored => "false as __stored".into(),
                        _ => name.clone(),
                    })
                    .collect();
                let stored: Vec<String> = columns
                    .iter()
                    .map(|name| match name.as_str() {
                        "__stored" => "true as __stored".to_string(),
                        "__period" => "cast(cast(stored.period_end as date) as int) as __period".into(),
                        "period_end" => "cast(stored.period_end as date) as period_end".into(),
                        _ if name == entity => format!("stored.{name}"),
                        _ if stage.lookback_inputs.contains(name) && stored_columns.contains(name) => {
                            format!("stored.{name}")
                        }
                        _ => format!("null as {name}"),
                    })
                    .collect();
                previous = query.add(
                    format!("level_{level}_history"),
                    format!(
                        "    select\n        {}\n    from {previous}{{%- if is_incremental() %}}\n    union all\n    select\n        {}\n    from {{{{ this }}}} as stored\n    where {{{{ event_time_range('stored.period_end', {reach_days}) }}}} and not {{{{ event_time_range('stored.period_end') }}}}{{%- endif %}}",
                        fresh.join(",\n        "),
                        stored.join(",\n        ")
                    ),
                );
                filter = "\n    where not __stored";
            }
            let lookback = query.add(
                format!("level_{level}_lookback"),
                select_all(&stage.lookback, &previous, ""),
            );
            columns.extend(stage.lookback.iter().map(|c| alias_of(c).to_string()));
            previous = if stage.references.is_empty() {
                query.add(
                    format!("level_{level}_references"),
                    format!("    select *\n    from {lookback}{filter}"),
                )
            } else {
                query.add(
                    format!("level_{level}_references"),
                    select_all(&stage.references, &lookback, filter),
                )
            };
        } else if !stage.references.is_empty() {
            previous = query.add(
                format!("level_{level}_references"),
                select_all(&stage.references, &previous, ""),
            );
        }
        columns.extend(stage.references.iter().map(|c| alias_of(c).to_string()));
        if !stage.values.is_empty() {
            previous = query.add(
                format!("level_{level}_values"),
                select_all(&stage.values, &previous, ""),
            );
            columns.extend(stage.values.iter().map(|c| alias_of(c).to_string()));
        }
    }

    let output = output_columns(model, &public_derived);

    let ctes: Vec<String> = query
        .ctes
        .iter()
        .map(|(name, body)| format!("{name} as (\n{body}\n)"))
        .collect();
    format!(
        "-- Metric model {}: scorecard, one row per {entity} and period (generated by tidemark).\nwith {}\nselect\n    {}\nfrom {previous}\n",
        spec.name,
        ctes.join(",\n"),
        output.join(",\n    "),
    )
}

/// Days before a time-range run's first period that its baselines and lags look back on: the
/// longest reach of a comparison (its periods, plus those skipped) in days. A comparison of a
/// comparison reaches no further: the earlier periods' values of its input are stored.
fn stored_reach_days(model: &ValidatedModel) -> i64 {
    let spec = &model.spec;
    let period_days = match spec.periods.every {
        Some(Cadence::Day) => 1,
        // A bound on any month's length.
        Some(Cadence::Month) => 31,
        _ => 7,
    };
    let periods = spec
        .comparisons
        .iter()
        .map(|comparison| match comparison.against {
            Against::Baseline => i64::from(comparison.periods.unwrap_or(8) + comparison.skip.unwrap_or(0)),
            Against::Previous => i64::from(comparison.periods.unwrap_or(1)),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    periods * period_days
}

/// The scorecard's columns: grain, measures, derived columns, cohort size, gates.
fn output_columns(model: &ValidatedModel, public_derived: &[String]) -> Vec<String> {
    let spec = &model.spec;
    let mut output = vec![spec.events.entity.clone()];
    if let Some(dimension) = &spec.dimension {
        output.extend(dimension.attributes.iter().cloned());
    }
    output.push("period_end".into());
    for measure in &spec.measures {
        for w in model.windows_of(measure) {
            output.push(format!("{}_{w}d", measure.name));
        }
    }
    output.extend(public_derived.iter().cloned());
    output.extend(["cohort_size".to_string(), "gate_ok".into(), "gate_reason".into()]);
    output
}

/// The scorecard columns a derived column adds.
fn public_columns(derived: &Derived) -> Vec<String> {
    match derived {
        Derived::Formula(formula) => vec![formula.name.clone()],
        Derived::Comparison(comparison) => {
            let name = &comparison.name;
            let mut columns = vec![name.clone(), format!("{name}_reference")];
            if comparison.against == Against::Baseline {
                columns.push(format!("{name}_sigma"));
            }
            columns
        }
        Derived::Normalize(_, name) | Derived::Shrink(_, name) => vec![name.clone()],
        Derived::Score(score) => vec![score.name.clone()],
    }
}

/// The name a select-list column is given: what follows its last ` as `.
fn alias_of(column: &str) -> &str {
    column.rsplit_once(" as ").map_or(column, |(_, alias)| alias.trim())
}

/// `metric` put on a common scale within `partition` (`__period` or `cohort, __period`).
fn normalized(metric: &str, method: NormalizeMethod, partition: &str) -> String {
    let metric = &format!("cast({metric} as double)");
    match method {
        NormalizeMethod::Zscore => format!(
            "({metric} - avg({metric}) over (partition by {partition})) / nullif(stddev_pop({metric}) over (partition by {partition}), 0)"
        ),
        // Ranked on the value rounded to 9 decimals: floating sums that differ only in their last
        // bits (summation order varies between runs and engines) are ties, not a rank apart.
        NormalizeMethod::PercentRank => format!(
            "case when {metric} is not null then percent_rank() over (partition by {partition}, {metric} is null order by round({metric}, 9)) end"
        ),
        NormalizeMethod::MinMax => format!(
            "({metric} - min({metric}) over (partition by {partition})) / nullif(max({metric}) over (partition by {partition}) - min({metric}) over (partition by {partition}), 0)"
        ),
    }
}

/// Dependency level of each derived column (1 = reads only measures and attributes).
fn derived_levels(model: &ValidatedModel) -> Vec<usize> {
    let mut level_of: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut levels = Vec::new();
    for derived in &model.derived {
        let (names, inputs): (Vec<String>, Vec<String>) = match derived {
            Derived::Formula(formula) => (vec![formula.name.clone()], super::validate::identifiers(&formula.expr)),
            Derived::Comparison(comparison) => {
                let mut inputs = vec![comparison.metric.clone()];
                if let Some(condition) = &comparison.exclude_when {
                    inputs.extend(super::validate::identifiers(condition));
                }
                (
                    vec![comparison.name.clone(), format!("{}_reference", comparison.name)],
                    inputs,
                )
            }
            Derived::Normalize(normalize, name) => (vec![name.clone()], vec![normalize.metric.clone()]),
            Derived::Shrink(_, name) => (vec![name.clone()], Vec::new()),
            Derived::Score(score) => (
                vec![score.name.clone()],
                score.components.iter().map(|c| c.metric.clone()).collect(),
            ),
        };
        let level = 1 + inputs
            .iter()
            .filter_map(|input| level_of.get(input))
            .copied()
            .max()
            .unwrap_or(0);
        for name in names {
            level_of.insert(name, level);
        }
        levels.push(level);
    }
    levels
}

/// The columns a dependency level adds, in the order its CTEs compute them.
#[derive(Default)]
struct Stage {
    /// Lags and baselines: window functions partitioned by entity, ordered by period.
    lookback: Vec<String>,
    /// The columns those read (metrics and `exclude_when` identifiers).
    lookback_inputs: Vec<String>,
    /// Window functions over the level's periods (cohort and period statistics, score parts).
    references: Vec<String>,
    /// Expressions over the references.
    values: Vec<String>,
}

/// The stage of a dependency level, creating levels as needed.
fn stage_at(stages: &mut Vec<Stage>, level: usize) -> &mut Stage {
    while stages.len() < level {
        stages.push(Stage::default());
    }
    &mut stages[level - 1]
}
