//! Interventions (`004_*`): pilots with a treatment and a control group, their effect on a
//! scorecard column by difference-in-differences, and the return on what they cost.
//!
//! An intervention takes its arms from a declared assignment (a model or seed: entity, arm,
//! optionally a start date per entity) or draws them itself (`randomize:`): each eligible
//! entity's draw is the first 8 hex digits of `md5('<seed>:<entity>')` as a fraction of 16⁸, and
//! it is treated when the draw is below `treatment_share`. The draw depends on nothing but the
//! seed and the entity, so an entity keeps its arm when the roster grows, and anyone can
//! recompute it (`int(hashlib.md5(b"7:l1").hexdigest()[:8], 16) / 16**8`). Drawn arms are the
//! table `<name>_intervention_arms`, which reads only the roster: the pilot's delivery (and in
//! the LMS example, the generator planting its effect) can depend on it without a cycle.
//!
//! `<name>_interventions` has one row per intervention. For each entity in an arm with a value
//! of the outcome in each of the `pre_periods` periods ending before its start and in at least
//! one of the first `post_periods` periods beginning on or after it (a period the start falls
//! inside counts as neither), its change is the mean of the post
//! values minus the mean of the pre values. The estimate is the treated arm's mean change minus
//! the control arm's; its standard error `sqrt(s²_T/n_T + s²_C/n_C)` (the sample variances of
//! the changes), and the interval the estimate ± z·se with z the normal quantile of the
//! confidence. The benefit per participant is the estimate times `benefit_per_unit`, and
//! `roi_pct` = (benefit − cost) / cost × 100, with the interval's ends carried through.
//! The table is rebuilt whole on every run from the scorecard, like the alert cases.

use serde::Deserialize;

use super::spec::MetricModelSpec;
use super::syntax::sql_string;
use super::validate::ErrorAt;
use crate::diagnostics::Diagnostics;

/// A pilot: who was treated and from when, the outcome it should move, and what it costs.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterventionSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The scorecard column the intervention should move.
    pub outcome: String,
    /// The day the intervention started (`YYYY-MM-DD`), for every entity: required with
    /// `randomize:`, and with an `assignment:` that has no start column.
    #[serde(default)]
    pub start: Option<String>,
    /// Declared arms: a model or seed with one row per entity.
    #[serde(default)]
    pub assignment: Option<AssignmentSpec>,
    /// Arms drawn by tidemark from a roster.
    #[serde(default)]
    pub randomize: Option<RandomizeSpec>,
    /// Periods ending before the start that make an entity's "before".
    pub pre_periods: u32,
    /// Periods ending on or after the start that make its "after".
    pub post_periods: u32,
    #[serde(default)]
    pub cost_per_participant: Option<f64>,
    /// The money one unit of the outcome's change is worth, per participant.
    #[serde(default)]
    pub benefit_per_unit: Option<f64>,
    /// Of the interval around the estimate (default 0.95).
    #[serde(default)]
    pub confidence: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentSpec {
    pub model: String,
    /// Its column holding the entity (default: the metric model's entity column).
    #[serde(default)]
    pub entity: Option<String>,
    /// Its column holding `treatment` or `control` (default `arm`; case and spaces ignored).
    #[serde(default)]
    pub arm: Option<String>,
    /// Its column holding each entity's start date (default: the intervention's `start:`).
    #[serde(default)]
    pub start: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RandomizeSpec {
    /// The roster: a model or seed with one row (or more) per eligible entity.
    pub model: String,
    #[serde(default)]
    pub entity: Option<String>,
    pub seed: i64,
    /// The share of eligible entities treated, in expectation (default 0.5).
    #[serde(default)]
    pub treatment_share: Option<f64>,
    /// An SQL condition over the roster's columns: only rows meeting it are eligible.
    #[serde(default)]
    pub filter: Option<String>,
}

pub(super) fn name(spec: &MetricModelSpec) -> String {
    format!("{}_interventions", spec.name)
}

pub(super) fn arms_name(spec: &MetricModelSpec) -> String {
    format!("{}_intervention_arms", spec.name)
}

pub(super) fn arms_check_name(spec: &MetricModelSpec) -> String {
    format!("{}_intervention_arms_valid", spec.name)
}

/// Checks the metric model's interventions against its scorecard columns.
pub(super) fn check(spec: &MetricModelSpec, known: &[String], error: &ErrorAt<'_>, problems: &mut Diagnostics) {
    let mut names = std::collections::BTreeSet::new();
    for (index, intervention) in spec.interventions.iter().enumerate() {
        let at = |key: &str| format!("interventions/{index}/{key}");
        let fail =
            |message: String, key: &str| error(format!("intervention '{}': {message}", intervention.name), &at(key));
        if !super::syntax::is_identifier(&intervention.name) {
            problems.push(fail("the name must be a lowercase identifier".into(), "name"));
        }
        if !names.insert(intervention.name.as_str()) {
            problems.push(fail("declared twice".into(), "name"));
        }
        if !known.contains(&intervention.outcome) {
            problems.push(super::validate::unknown_column(
                error,
                &format!("intervention '{}'", intervention.name),
                &intervention.outcome,
                known,
                &at("outcome"),
            ));
        }
        if let Some(start) = &intervention.start {
            if chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").is_err() {
                problems.push(fail(format!("start '{start}' is not a date (YYYY-MM-DD)"), "start"));
            }
        }
        let start_column = intervention.assignment.as_ref().and_then(|a| a.start.as_ref());
        match (&intervention.assignment, &intervention.randomize) {
            (Some(_), Some(_)) | (None, None) => problems.push(fail(
                "declare its arms with either assignment: (a model of entity and arm) or randomize: (a roster tidemark draws from)".into(),
                "name",
            )),
            _ => {}
        }
        if intervention.start.is_none() && start_column.is_none() {
            problems.push(fail(
                "no start date: give start: (a date), or a start column in assignment:".into(),
                "name",
            ));
        }
        let columns = intervention
            .assignment
            .iter()
            .flat_map(|a| {
                [
                    ("assignment/model", Some(&a.model)),
                    ("assignment/entity", a.entity.as_ref()),
                    ("assignment/arm", a.arm.as_ref()),
                    ("assignment/start", a.start.as_ref()),
                ]
            })
            .chain(intervention.randomize.iter().flat_map(|r| {
                [
                    ("randomize/model", Some(&r.model)),
                    ("randomize/entity", r.entity.as_ref()),
                ]
            }));
        for (key, value) in columns {
            if let Some(value) = value.filter(|value| !super::syntax::is_name(value)) {
                problems.push(fail(format!("'{value}' is not a name (letters, digits and _)"), key));
            }
        }
        if let Some(share) = intervention.randomize.as_ref().and_then(|r| r.treatment_share) {
            if !(share > 0.0 && share < 1.0) {
                problems.push(fail(
                    "treatment_share is a fraction between 0 and 1".into(),
                    "randomize/treatment_share",
                ));
            }
        }
        for (value, key) in [
            (intervention.pre_periods, "pre_periods"),
            (intervention.post_periods, "post_periods"),
        ] {
            if value == 0 {
                problems.push(fail(format!("{key} must be at least 1"), key));
            }
        }
        if intervention.confidence.is_some_and(|c| !(c > 0.0 && c < 1.0)) {
            problems.push(fail(
                "confidence is a fraction between 0 and 1 (e.g. 0.95)".into(),
                "confidence",
            ));
        }
        if intervention
            .cost_per_participant
            .is_some_and(|cost| cost.is_nan() || cost <= 0.0)
        {
            problems.push(fail(
                "cost_per_participant must be above 0".into(),
                "cost_per_participant",
            ));
        }
        if intervention
            .benefit_per_unit
            .is_some_and(|benefit| !benefit.is_finite())
        {
            problems.push(fail("benefit_per_unit must be a number".into(), "benefit_per_unit"));
        }
    }
}

/// The normal quantile z with P(−z < Z < z) = `confidence`, by bisection on the normal CDF.
pub(super) fn z_for(confidence: f64) -> f64 {
    // P(0 < Z < x), by Simpson's rule over the density (error far below 1e-12 for x ≤ 10).
    let half_mass = |x: f64| {
        let steps = 2000;
        let h = x / steps as f64;
        let density = |t: f64| (-t * t / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let inner: f64 = (1..steps)
            .map(|i| density(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 })
            .sum();
        (density(0.0) + inner + density(x)) * h / 3.0
    };
    let (mut low, mut high) = (0.0_f64, 10.0_f64);
    for _ in 0..80 {
        let middle = (low + high) / 2.0;
        if 2.0 * half_mass(middle) < confidence {
            low = middle;
        } else {
            high = middle;
        }
    }
    (low + high) / 2.0
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(value) => format!("cast({value:?} as double)"),
        None => "cast(null as double)".into(),
    }
}

/// `<name>_intervention_arms`: the drawn arm of every eligible entity, per randomised
/// intervention; `None` when no intervention is randomised.
pub(super) fn arms_sql(spec: &MetricModelSpec) -> Option<String> {
    let entity = &spec.events.entity;
    let parts: Vec<String> = spec
        .interventions
        .iter()
        .filter_map(|intervention| {
            let randomize = intervention.randomize.as_ref()?;
            let key = randomize.entity.as_deref().unwrap_or(entity);
            let filter = randomize
                .filter
                .as_deref()
                .map(|filter| format!("\n    where {filter}"))
                .unwrap_or_default();
            // The first 8 hex digits of the md5 as a number, digit by digit (portable SQL).
            let digits: Vec<String> = (0..8)
                .map(|i| format!("(strpos('0123456789abcdef', substr(hash, {}, 1)) - 1) * {}", i + 1, 16_i64.pow(7 - i)))
                .collect();
            Some(format!(
                "select {name} as intervention, {entity}, case when draw < {share:?} then 'treatment' else 'control' end as arm,\n    \
                 date {start} as start_date, draw\nfrom (\n    select {entity}, ({digits}) / 4294967296.0 as draw\n    \
                 from (select {entity}, md5({seed} || cast({entity} as varchar)) as hash\n        \
                 from (select distinct {key} as {entity} from {{{{ ref('{model}') }}}}{filter}) as roster) as hashed\n) as drawn",
                name = sql_string(&intervention.name),
                share = randomize.treatment_share.unwrap_or(0.5),
                start = sql_string(intervention.start.as_deref().unwrap_or_default()),
                digits = digits.join("\n        + "),
                seed = sql_string(&format!("{}:", randomize.seed)),
                model = randomize.model,
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "-- Metric model {}: the arms tidemark drew for its randomised interventions (generated by tidemark).\n{}\n",
            spec.name,
            parts.join("\nunion all\n")
        )
    })
}

/// The arms of every intervention as `(intervention, entity as text, arm, start_date)` rows.
fn arms_cte(spec: &MetricModelSpec) -> String {
    let entity = &spec.events.entity;
    let parts: Vec<String> = spec
        .interventions
        .iter()
        .map(|intervention| {
            let name = sql_string(&intervention.name);
            let start = || format!("date {}", sql_string(intervention.start.as_deref().unwrap_or_default()));
            match &intervention.assignment {
                Some(assignment) => format!(
                    "    select {name} as intervention, cast({key} as varchar) as entity, lower(trim(cast({arm} as varchar))) as arm, {start_date} as start_date\n    \
                     from {{{{ ref('{model}') }}}}",
                    key = assignment.entity.as_deref().unwrap_or(entity),
                    arm = assignment.arm.as_deref().unwrap_or("arm"),
                    start_date = assignment
                        .start
                        .as_ref()
                        .map(|column| format!("cast({column} as date)"))
                        .unwrap_or_else(start),
                    model = assignment.model,
                ),
                None => format!(
                    "    select intervention, cast({entity} as varchar) as entity, arm, start_date\n    \
                     from {{{{ ref('{arms}') }}}}\n    where intervention = {name}",
                    arms = arms_name(spec),
                ),
            }
        })
        .collect();
    format!("arms as (\n{}\n)", parts.join("\n    union all\n"))
}

/// `<name>_interventions`: one row per intervention with its difference-in-differences and ROI.
pub(super) fn sql(spec: &MetricModelSpec) -> String {
    let entity = &spec.events.entity;
    let parameters: Vec<String> = spec
        .interventions
        .iter()
        .map(|intervention| {
            let confidence = intervention.confidence.unwrap_or(0.95);
            format!(
                "    select {name} as intervention, {outcome} as outcome, cast({pre} as bigint) as pre_periods, cast({post} as bigint) as post_periods,\n        \
                 {cost} as cost_per_participant, {benefit} as benefit_per_unit, cast({confidence:?} as double) as confidence, cast({z:?} as double) as z",
                name = sql_string(&intervention.name),
                outcome = sql_string(&intervention.outcome),
                pre = intervention.pre_periods,
                post = intervention.post_periods,
                cost = number(intervention.cost_per_participant),
                benefit = number(intervention.benefit_per_unit),
                z = z_for(confidence),
            )
        })
        .collect();
    let outcome_cases: String = spec
        .interventions
        .iter()
        .map(|intervention| {
            format!(
                " when {} then cast(s.{} as double)",
                sql_string(&intervention.name),
                intervention.outcome
            )
        })
        .collect();
    format!(
        "-- Metric model {model}: its interventions' difference-in-differences and ROI, one row per intervention (generated by tidemark).\n\
         with parameters as (\n{parameters}\n),\n{arms},\n\
         panel as (\n    -- Each entity in an arm, at each period, with the intervention's outcome.\n    \
         select a.intervention, a.entity, a.arm, a.start_date, s.period_end,\n        \
         lag(s.period_end) over (partition by a.intervention, a.entity order by s.period_end) as previous_end,\n        \
         case a.intervention{outcome_cases} end as y\n    \
         from arms as a\n    join {{{{ ref('{model}', event_time=false) }}}} as s on cast(s.{entity} as varchar) = a.entity\n    \
         where a.arm in ('treatment', 'control')\n),\n\
         sided as (\n    -- Before: periods ending before the start; after: periods beginning on or after it (the\n    \
         -- day after the previous period end); a period the start falls inside is neither.\n    \
         select *, case when period_end < start_date then 'before'\n        \
         when previous_end >= start_date - interval '1 day' then 'after' else 'across' end as side\n    \
         from panel\n),\n\
         ranked as (\n    select *,\n        \
         row_number() over (partition by intervention, entity, side order by period_end) as from_start,\n        \
         row_number() over (partition by intervention, entity, side order by period_end desc) as to_start\n    \
         from sided\n),\n\
         entities as (\n    select r.intervention, r.entity, r.arm,\n        \
         avg(case when r.side = 'before' and r.to_start <= p.pre_periods then r.y end) as before_mean,\n        \
         count(case when r.side = 'before' and r.to_start <= p.pre_periods then r.y end) as before_periods,\n        \
         avg(case when r.side = 'after' and r.from_start <= p.post_periods then r.y end) as after_mean,\n        \
         count(case when r.side = 'after' and r.from_start <= p.post_periods then r.y end) as after_periods,\n        \
         count(case when r.side = 'after' and r.from_start <= p.post_periods then 1 end) as after_seen\n    \
         from ranked as r\n    join parameters as p on p.intervention = r.intervention\n    \
         group by r.intervention, r.entity, r.arm\n),\n\
         changes as (\n    -- Entities with the whole \"before\" and some \"after\": their change.\n    \
         select e.*, after_mean - before_mean as change\n    from entities as e\n    \
         join parameters as p on p.intervention = e.intervention\n    \
         where e.before_periods = p.pre_periods and e.after_periods > 0\n),\n\
         by_arm as (\n    select intervention,\n        \
         count(case when arm = 'treatment' then 1 end) as treated,\n        \
         count(case when arm = 'control' then 1 end) as control,\n        \
         avg(case when arm = 'treatment' then before_mean end) as treated_before,\n        \
         avg(case when arm = 'treatment' then after_mean end) as treated_after,\n        \
         avg(case when arm = 'control' then before_mean end) as control_before,\n        \
         avg(case when arm = 'control' then after_mean end) as control_after,\n        \
         avg(case when arm = 'treatment' then change end) as treated_change,\n        \
         avg(case when arm = 'control' then change end) as control_change,\n        \
         var_samp(case when arm = 'treatment' then change end) as treated_variance,\n        \
         var_samp(case when arm = 'control' then change end) as control_variance\n    \
         from changes\n    group by intervention\n),\n\
         observed as (\n    -- Periods after the start the scorecard has, measured or not.\n    \
         select intervention, max(after_seen) as post_periods_observed from entities group by intervention\n),\n\
         assigned as (\n    select intervention, min(start_date) as start_date,\n        \
         count(distinct entity) as assigned\n    from arms\n    group by intervention\n),\n\
         estimates as (\n    select p.*, a.start_date, coalesce(a.assigned, 0) as assigned,\n        \
         coalesce(b.treated, 0) as treated, coalesce(b.control, 0) as control,\n        \
         coalesce(o.post_periods_observed, 0) as post_periods_observed,\n        \
         b.treated_before, b.treated_after, b.control_before, b.control_after,\n        \
         b.treated_change - b.control_change as estimate,\n        \
         sqrt(b.treated_variance / nullif(b.treated, 0) + b.control_variance / nullif(b.control, 0)) as std_error\n    \
         from parameters as p\n    left join assigned as a on a.intervention = p.intervention\n    \
         left join by_arm as b on b.intervention = p.intervention\n    \
         left join observed as o on o.intervention = p.intervention\n)\n\
         select intervention, outcome, start_date,\n    \
         case when post_periods_observed = 0 then 'planned' when post_periods_observed < post_periods then 'running' else 'complete' end as status,\n    \
         pre_periods, post_periods, post_periods_observed,\n    \
         assigned, treated, control, assigned - treated - control as excluded,\n    \
         treated_before, treated_after, control_before, control_after,\n    \
         estimate, std_error, confidence,\n    \
         estimate - z * std_error as ci_low,\n    estimate + z * std_error as ci_high,\n    \
         cost_per_participant, benefit_per_unit,\n    \
         estimate * benefit_per_unit as benefit_per_participant,\n    \
         (estimate * benefit_per_unit - cost_per_participant) / cost_per_participant * 100 as roi_pct,\n    \
         (least((estimate - z * std_error) * benefit_per_unit, (estimate + z * std_error) * benefit_per_unit) - cost_per_participant) / cost_per_participant * 100 as roi_pct_low,\n    \
         (greatest((estimate - z * std_error) * benefit_per_unit, (estimate + z * std_error) * benefit_per_unit) - cost_per_participant) / cost_per_participant * 100 as roi_pct_high,\n    \
         cost_per_participant * treated as total_cost,\n    \
         (estimate * benefit_per_unit - cost_per_participant) * treated as net_benefit\n\
         from estimates\n",
        model = spec.name,
        parameters = parameters.join("\n    union all\n"),
        arms = arms_cte(spec),
    )
}

/// The data test on the arms: a row whose arm is neither `treatment` nor `control`, an entity
/// in two arms (or twice) of one intervention, or one without a start date.
pub(super) fn arms_check_sql(spec: &MetricModelSpec) -> Option<String> {
    (!spec.interventions.is_empty()).then(|| {
        format!(
            "-- The arms of metric model {name}'s interventions (generated by tidemark): rows that cannot be used.\n\
             with {arms},\ncounted as (\n    select *, count(*) over (partition by intervention, entity) as rows_of_entity from arms\n)\n\
             select intervention, entity, arm, start_date,\n    \
             case when arm is null or arm not in ('treatment', 'control') then 'arm is neither treatment nor control'\n        \
             when rows_of_entity > 1 then 'entity assigned ' || cast(rows_of_entity as varchar) || ' times'\n        \
             else 'no start date' end as problem\n\
             from counted\nwhere arm is null or arm not in ('treatment', 'control') or rows_of_entity > 1 or start_date is null\n",
            name = spec.name,
            arms = arms_cte(spec),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::z_for;

    #[test]
    fn normal_quantiles_match_the_tables() {
        for (confidence, z) in [
            (0.95, 1.959_963_984_540_054),
            (0.9, 1.644_853_626_951_472_2),
            (0.99, 2.575_829_303_548_900_4),
        ] {
            assert!(
                (z_for(confidence) - z).abs() < 1e-9,
                "{confidence}: {}",
                z_for(confidence)
            );
        }
    }
}
