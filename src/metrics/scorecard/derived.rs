//! The scorecard's derived columns (comparisons, normalisations, shrinkage, scores) grouped by
//! dependency level, and the column lists the output and a time-range run's history need.

use super::windows::window_part;
use crate::metrics::spec::*;
use crate::metrics::validate::{Derived, ValidatedModel};

/// Derived columns, grouped by dependency level: each level is one CTE of references (window
/// functions) and one of values, so the plan has as few window stages as the dependencies allow.
pub(super) fn derived_stages(model: &ValidatedModel) -> Vec<Stage> {
    let spec = &model.spec;
    let entity = spec.events.entity.as_str();
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
                            stage
                                .lookback_inputs
                                .extend(crate::metrics::syntax::identifiers(exclude));
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
    stages
}

/// Days before a time-range run's first period that its baselines and lags look back on: the
/// longest reach of a comparison (its periods, plus those skipped) in days. A comparison of a
/// comparison reaches no further: the earlier periods' values of its input are stored.
pub(super) fn stored_reach_days(model: &ValidatedModel) -> i64 {
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
pub(super) fn output_columns(model: &ValidatedModel, public_derived: &[String]) -> Vec<String> {
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
pub(super) fn public_columns(derived: &Derived) -> Vec<String> {
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
pub(super) fn alias_of(column: &str) -> &str {
    column.rsplit_once(" as ").map_or(column, |(_, alias)| alias.trim())
}

/// `metric` put on a common scale within `partition` (`__period` or `cohort, __period`).
pub(super) fn normalized(metric: &str, method: NormalizeMethod, partition: &str) -> String {
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
pub(super) fn derived_levels(model: &ValidatedModel) -> Vec<usize> {
    let mut level_of: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut levels = Vec::new();
    for derived in &model.derived {
        let (names, inputs): (Vec<String>, Vec<String>) = match derived {
            Derived::Formula(formula) => (
                vec![formula.name.clone()],
                crate::metrics::syntax::identifiers(&formula.expr),
            ),
            Derived::Comparison(comparison) => {
                let mut inputs = vec![comparison.metric.clone()];
                if let Some(condition) = &comparison.exclude_when {
                    inputs.extend(crate::metrics::syntax::identifiers(condition));
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
pub(super) struct Stage {
    /// Lags and baselines: window functions partitioned by entity, ordered by period.
    pub(super) lookback: Vec<String>,
    /// The columns those read (metrics and `exclude_when` identifiers).
    pub(super) lookback_inputs: Vec<String>,
    /// Window functions over the level's periods (cohort and period statistics, score parts).
    pub(super) references: Vec<String>,
    /// Expressions over the references.
    pub(super) values: Vec<String>,
}

/// The stage of a dependency level, creating levels as needed.
pub(super) fn stage_at(stages: &mut Vec<Stage>, level: usize) -> &mut Stage {
    while stages.len() < level {
        stages.push(Stage::default());
    }
    &mut stages[level - 1]
}
