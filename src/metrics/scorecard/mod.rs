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

mod derived;
mod windows;

use derived::{alias_of, derived_stages, output_columns, public_columns, stored_reach_days};
use windows::{gate_ctes, window_lists, Windows};

use super::daily;
use super::spec::*;
use super::validate::ValidatedModel;

/// The calendar as SQL arguments: `date '<first period>', date '<last period>', '<every>'`
/// (`tidemark_periods` and the window aggregates take these three).
///
/// With `from_range_start` (an incremental model), a time-range run's calendar begins at the
/// first period it recomputes (`tidemark_calendar`, see the template functions), so the window
/// aggregates compute only the periods the run writes.
pub(super) fn calendar(model: &ValidatedModel, from_range_start: bool) -> String {
    let first = super::calendar::date_of(model.periods.first().copied().unwrap_or(0));
    match model.spec.periods.every {
        Some(every) if model.spec.periods.as_of.is_none() => {
            let last = super::calendar::date_of(model.periods.last().copied().unwrap_or(0));
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

    let Windows {
        lists,
        windowed,
        measured,
        joins,
    } = window_lists(model, &calendar, &daily_ref, &mut query);
    gate_ctes(model, &mut query);
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

    let stages = derived_stages(model);
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
