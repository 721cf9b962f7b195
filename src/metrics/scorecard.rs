//! `<name>`: the scorecard, one row per entity × period.
//!
//! The CTEs, in order: the period ends; every entity (from the dimension) at every period (the
//! calendar grid, so periods without activity are zeros rather than gaps); each measure over
//! each window from the daily roll-up, joined by entity with a day-range condition; distinct
//! counts from the events; the data gates of each period; then one layer per derived column
//! (comparison, normalisation, shrinkage, score) in dependency order, each a window function
//! partitioned by entity or by cohort and period.

use super::daily::{self, component};
use super::spec::*;
use super::validate::{Derived, ValidatedModel};

/// Internal columns of the windowed step: `<measure>_<w>d__<part>`.
fn window_part(measure: &str, window: i64, part: &str) -> String {
    format!("{measure}_{window}d__{part}")
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

pub fn sql(model: &ValidatedModel) -> String {
    let spec = &model.spec;
    let entity = spec.events.entity.as_str();
    let attributes: Vec<&str> = spec
        .dimension
        .as_ref()
        .map(|d| d.attributes.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let daily_ref = format!("{{{{ ref('{}') }}}}", daily::name(spec));
    let mut query = Query { ctes: Vec::new() };

    let values: Vec<String> = model
        .periods
        .iter()
        .map(|day| format!("(date '{}')", super::validate::date_of(*day)))
        .collect();
    query.add(
        "periods",
        format!(
            "    select cast(column1 as int) as __period\n    from (values {}) as period_ends\n    where {{{{ event_time_filter('column1') }}}}",
            values.join(", ")
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
    query.add(
        "grid",
        "    select entities.*, periods.__period\n    from entities\n    cross join periods".into(),
    );

    // Windowed sums of the daily components.
    let mut windowed = Vec::new();
    let mut measured = Vec::new();
    let mut rolling_joins: Vec<(String, String, String, String)> = Vec::new();
    let max_window = model.max_window;
    for measure in &spec.measures {
        let m = measure.name.as_str();
        for &w in model.windows_of(measure) {
            let in_window = format!("d.__day > g.__period - {w}");
            let total = |part: &str| format!("sum(case when {in_window} then d.{} end)", component(m, part));
            let column = format!("{m}_{w}d");
            let mut internal = |part: &str, expression: String| {
                windowed.push(format!("{expression} as {}", window_part(m, w, part)));
            };
            match measure.agg {
                Aggregation::Count | Aggregation::ActiveDays | Aggregation::Drops => {
                    let part = match measure.agg {
                        Aggregation::Count => "n",
                        Aggregation::ActiveDays => "a",
                        _ => "d",
                    };
                    windowed.push(format!("cast(coalesce({}, 0) as bigint) as {column}", total(part)));
                }
                Aggregation::Sum => windowed.push(format!("coalesce({}, 0) as {column}", total("s"))),
                Aggregation::Min => windowed.push(format!(
                    "min(case when {in_window} then d.{} end) as {column}",
                    component(m, "v")
                )),
                Aggregation::Max => windowed.push(format!(
                    "max(case when {in_window} then d.{} end) as {column}",
                    component(m, "v")
                )),
                Aggregation::CountDistinct | Aggregation::Percentile => {}
                Aggregation::RollingMean => {
                    // The latest day in the window with a value; the value is joined back below
                    // (an ordered aggregate would sort the whole join).
                    let r = component(m, "r");
                    internal(
                        "day",
                        format!("max(case when {in_window} and d.{r} is not null then d.__day end)"),
                    );
                    rolling_joins.push((format!("rolling_{m}_{w}"), window_part(m, w, "day"), r, column.clone()));
                }
                // value = numerator / denominator, both summed over the window.
                Aggregation::Avg | Aggregation::Ratio | Aggregation::OverdueShare => {
                    let (num, den, num_part, den_part) = match measure.agg {
                        Aggregation::Avg => ("s", "c", total("s"), total("c")),
                        Aggregation::Ratio => ("num", "den", total("num"), total("den")),
                        _ => ("num", "den", total("overdue"), total("due")),
                    };
                    let (num_part, den_part) = if measure.agg == Aggregation::Avg {
                        (num_part, den_part)
                    } else {
                        (format!("coalesce({num_part}, 0)"), format!("coalesce({den_part}, 0)"))
                    };
                    internal(num, num_part);
                    internal(den, den_part);
                    measured.push(format!(
                        "{} / nullif({}, 0) as {column}",
                        window_part(m, w, num),
                        window_part(m, w, den)
                    ));
                }
                Aggregation::Slope => {
                    for part in ["n", "sx", "sy", "sxy", "sxx"] {
                        internal(part, format!("coalesce({}, 0)", total(part)));
                    }
                    let p = |part: &str| window_part(m, w, part);
                    measured.push(format!(
                        "({n} * {sxy} - {sx} * {sy}) / nullif({n} * {sxx} - {sx} * {sx}, 0) as {column}",
                        n = p("n"),
                        sx = p("sx"),
                        sy = p("sy"),
                        sxy = p("sxy"),
                        sxx = p("sxx")
                    ));
                }
            }
        }
    }
    let mut group_columns: Vec<String> = vec![format!("g.{entity}")];
    group_columns.extend(attributes.iter().map(|a| format!("g.{a}")));
    group_columns.push("g.__period".into());
    let mut windowed_select = group_columns.clone();
    windowed_select.push("cast(g.__period as date) as period_end".into());
    windowed_select.extend(windowed);
    query.add(
        "windowed",
        format!(
            "    select\n        {}\n    from grid as g\n    left join {daily_ref} as d\n        on d.__entity = g.{entity} and d.__day <= g.__period and d.__day > g.__period - {max_window}\n    group by {}",
            windowed_select.join(",\n        "),
            group_columns.join(", ")
        ),
    );

    // Distinct counts and percentiles come from the events, not the roll-up.
    let mut distinct_joins = Vec::new();
    for measure in spec
        .measures
        .iter()
        .filter(|m| matches!(m.agg, Aggregation::CountDistinct | Aggregation::Percentile))
    {
        let m = &measure.name;
        let windows = model.windows_of(measure);
        let widest = windows.iter().copied().max().unwrap_or(1);
        let distinct = measure.agg == Aggregation::CountDistinct;
        let counts: Vec<String> = windows
            .iter()
            .map(|w| {
                let value = format!("case when v.__day > g.__period - {w} then v.__value end");
                if distinct {
                    format!("count(distinct {value}) as {m}_{w}d")
                } else {
                    format!(
                        "percentile_cont(cast({value} as double), {}) as {m}_{w}d",
                        measure.percentile.unwrap_or(0.5)
                    )
                }
            })
            .collect();
        let select_kind = if distinct { "select distinct" } else { "select" };
        // `event_time_filter` is `true` except in a time-range run (then: the range and its
        // lookback).
        let filter = format!(
            "\n        where {}{{{{ event_time_filter('e.{}') }}}}",
            measure
                .filter
                .as_ref()
                .map(|f| format!("({f}) and "))
                .unwrap_or_default(),
            spec.events.time
        );
        let name = query.add(
            format!("raw_{m}"),
            format!(
                "    select g.{entity}, g.__period,\n        {}\n    from grid as g\n    left join (\n        {select_kind} e.{ev_entity} as __entity, cast(cast(e.{time} as date) as int) as __day, {expr} as __value\n        from {{{{ ref('{events}') }}}} as e{filter}\n    ) as v on v.__entity = g.{entity} and v.__day <= g.__period and v.__day > g.__period - {widest}\n    group by g.{entity}, g.__period",
                counts.join(",\n        "),
                ev_entity = spec.events.entity,
                time = spec.events.time,
                expr = measure.expr.as_deref().unwrap_or_default(),
                events = spec.events.model,
            ),
        );
        let columns: Vec<String> = windows.iter().map(|w| format!("{name}.{m}_{w}d")).collect();
        distinct_joins.push((name, columns));
    }

    // Data gates per period, from the daily totals.
    let gates = &spec.gates;
    query.add(
        "activity",
        format!("    select __day, sum(__events) as __events\n    from {daily_ref}\n    group by __day"),
    );
    let volume_window = gates.volume_window.unwrap_or(7);
    query.add(
        "gate_periods",
        format!(
            "    select periods.__period, max(activity.__day) as __newest_day,\n        coalesce(sum(case when activity.__day > periods.__period - {volume_window} then activity.__events end), 0) as __volume\n    from periods\n    left join activity on activity.__day <= periods.__period\n    group by periods.__period"
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
        "gates",
        format!(
            "    select __period,\n        {fresh} and {volume_ok} as gate_ok,\n        nullif(concat_ws('; ', {freshness_reason}, {volume_reason}), '') as gate_reason\n    from gate_baselines"
        ),
    );

    // Measures, distinct counts, cohort size and gates on one row.
    let cohort_size = match &spec.cohort {
        Some(cohort) => format!("count(*) over (partition by w.{cohort}, w.__period) as cohort_size"),
        None => "count(*) over (partition by w.__period) as cohort_size".into(),
    };
    let mut select = vec!["w.*".to_string()];
    select.extend(measured);
    for (_, columns) in &distinct_joins {
        select.extend(columns.iter().cloned());
    }
    select.push(cohort_size);
    select.push("gates.gate_ok".into());
    select.push("gates.gate_reason".into());
    let mut from = "windowed as w".to_string();
    for (name, _) in &distinct_joins {
        from.push_str(&format!(
            "\n    left join {name} on {name}.{entity} = w.{entity} and {name}.__period = w.__period"
        ));
    }
    for (alias, day_column, value_column, column) in &rolling_joins {
        from.push_str(&format!(
            "\n    left join {daily_ref} as {alias} on {alias}.__entity = w.{entity} and {alias}.__day = w.{day_column}"
        ));
        select.push(format!("{alias}.{value_column} as {column}"));
    }
    from.push_str("\n    left join gates on gates.__period = w.__period");
    let mut previous = query.add(
        "measured",
        format!("    select\n        {}\n    from {from}", select.join(",\n        ")),
    );

    // Derived columns, grouped by dependency level: each level is one CTE of references (window
    // functions) and one of values, so the plan has as few window stages as the dependencies allow.
    let levels = derived_levels(model);
    let mut stages: Vec<(Vec<String>, Vec<String>)> = Vec::new();

    let cohort_partition = |scope: Scope| match (&spec.cohort, scope) {
        (Some(cohort), Scope::Cohort) => format!("{cohort}, __period"),
        _ => "__period".to_string(),
    };
    let min_cohort = spec.min_cohort_size.unwrap_or(0);
    let mut public_derived: Vec<String> = Vec::new();
    for (index, derived) in model.derived.iter().enumerate() {
        let level = levels[index];
        match derived {
            Derived::Formula(formula) => {
                stage_at(&mut stages, level)
                    .1
                    .push(format!("cast({} as double) as {}", formula.expr, formula.name));
                public_derived.push(formula.name.clone());
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
                let mut extra = String::new();
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
                        let frame = format!(
                            "over (partition by {entity} order by __period rows between {} preceding and {} preceding)",
                            comparison.periods.unwrap_or(8) + skip,
                            skip + 1
                        );
                        let kept = match &comparison.exclude_when {
                            Some(exclude) => format!("case when not coalesce(({exclude}), false) then {metric} end"),
                            None => metric.clone(),
                        };
                        let floor = comparison.sigma_floor.unwrap_or(0.0);
                        let floor_ratio = comparison.sigma_floor_ratio.unwrap_or(0.1);
                        let (centre, spread) = if compare_as == CompareAs::RobustZ {
                            (
                                format!("median({kept}) {frame}"),
                                format!("(percentile_cont({kept}, 0.75) {frame} - percentile_cont({kept}, 0.25) {frame}) / 1.349"),
                            )
                        } else {
                            (format!("avg({kept}) {frame}"), format!("stddev_samp({kept}) {frame}"))
                        };
                        extra = format!(
                            ",\n        greatest(coalesce({spread}, 0), {floor}, {floor_ratio} * abs({centre})) as {name}_sigma,\n        count({kept}) {frame} as __{name}_periods"
                        );
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
                stage_at(&mut stages, level)
                    .0
                    .push(format!("{reference_sql} as {reference}{extra}"));
                let value = match compare_as {
                    CompareAs::Ratio => format!("{metric} / nullif({reference}, 0)"),
                    CompareAs::Difference => format!("{metric} - {reference}"),
                    CompareAs::RelativeChange => format!("({metric} - {reference}) / nullif(abs({reference}), 0)"),
                    CompareAs::Zscore | CompareAs::RobustZ => {
                        format!("({metric} - {reference}) / nullif({name}_sigma, 0)")
                    }
                };
                stage_at(&mut stages, level)
                    .1
                    .push(format!("case when {condition} then {value} end as {name}"));
                public_derived.push(name.clone());
                public_derived.push(reference);
                if comparison.against == Against::Baseline {
                    public_derived.push(format!("{name}_sigma"));
                }
            }
            Derived::Normalize(normalize, name) => {
                let value = normalized(&normalize.metric, normalize.method, &cohort_partition(normalize.within));
                let value = match (normalize.within, min_cohort) {
                    (Scope::Cohort, n) if n > 0 => format!("case when cohort_size >= {n} then {value} end"),
                    _ => value,
                };
                stage_at(&mut stages, level).1.push(format!("{value} as {name}"));
                public_derived.push(name.clone());
            }
            Derived::Shrink(shrink, name) => {
                let num = window_part(&shrink.measure, shrink.window, "num");
                let den = window_part(&shrink.measure, shrink.window, "den");
                let partition = cohort_partition(shrink.toward);
                let k = shrink.strength;
                stage_at(&mut stages, level).1.push(format!(
                    "({num} + {k} * (sum({num}) over (partition by {partition}) / nullif(sum({den}) over (partition by {partition}), 0))) / nullif({den} + {k}, 0) as {name}"
                ));
                public_derived.push(name.clone());
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
                stage_at(&mut stages, level).0.extend(parts);
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
                    .1
                    .push(format!("{value} as {}", score.name));
                public_derived.push(score.name.clone());
            }
        }
    }
    for (index, (references, values)) in stages.into_iter().enumerate() {
        for (suffix, columns) in [("references", references), ("values", values)] {
            if !columns.is_empty() {
                previous = query.add(
                    format!("level_{}_{suffix}", index + 1),
                    format!(
                        "    select *,\n        {}\n    from {previous}",
                        columns.join(",\n        ")
                    ),
                );
            }
        }
    }

    // The scorecard: grain, measures, derived columns, cohort size, gates.
    let mut output = vec![entity.to_string()];
    output.extend(attributes.iter().map(|a| a.to_string()));
    output.push("period_end".into());
    for measure in &spec.measures {
        for w in model.windows_of(measure) {
            output.push(format!("{}_{w}d", measure.name));
        }
    }
    output.extend(public_derived);
    output.extend(["cohort_size".to_string(), "gate_ok".into(), "gate_reason".into()]);

    let ctes: Vec<String> = query
        .ctes
        .iter()
        .map(|(name, body)| format!("{name} as (\n{body}\n)"))
        .collect();
    format!(
        "-- Metric model {}: scorecard, one row per {entity} and period (generated by tidemark).\nwith {}\nselect\n    {}\nfrom {previous}\n",
        spec.name,
        ctes.join(",\n"),
        output.join(",\n    ")
    )
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

/// The (references, values) columns of a dependency level, creating levels as needed.
fn stage_at(stages: &mut Vec<(Vec<String>, Vec<String>)>, level: usize) -> &mut (Vec<String>, Vec<String>) {
    while stages.len() < level {
        stages.push((Vec::new(), Vec::new()));
    }
    &mut stages[level - 1]
}
