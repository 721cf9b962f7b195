//! Checks a metric model spec before any SQL is written, and works out what the SQL needs:
//! the period ends, the scorecard's columns, and the order derived columns are computed in.

use std::collections::BTreeSet;

use super::calendar::period_ends;
use super::spec::*;
use super::syntax::{identifiers, is_identifier, method_name, placeholders};
use crate::diagnostics::{did_you_mean, Diagnostic, Diagnostics};
use crate::project::yaml::Positions;

mod derived;
mod inputs;
use derived::*;
use inputs::*;

/// A scorecard column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// Numbers are rounded when they appear in an alert's reason.
    pub numeric: bool,
}

/// A derived column (comparison, normalisation, shrinkage, score) in dependency order.
#[derive(Debug, Clone)]
pub enum Derived {
    Formula(FormulaSpec),
    Comparison(ComparisonSpec),
    Normalize(NormalizeSpec, String),
    Shrink(ShrinkSpec, String),
    Score(ScoreSpec),
}

/// A spec that passed validation, with what SQL generation needs.
#[derive(Debug, Clone)]
pub struct ValidatedModel {
    pub spec: MetricModelSpec,
    /// Period ends, as days since 1970-01-01, ascending.
    pub periods: Vec<i64>,
    /// Day 0 of slope x-values: the first day any window reaches.
    pub origin_day: i64,
    pub max_window: i64,
    /// Columns of the scorecard a user may refer to.
    pub columns: Vec<Column>,
    pub derived: Vec<Derived>,
}

impl ValidatedModel {
    pub fn windows_of<'a>(&'a self, measure: &'a MeasureSpec) -> &'a [i64] {
        measure.windows.as_deref().unwrap_or(&self.spec.windows)
    }

    pub fn is_numeric(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c.name == column && c.numeric)
    }
}

/// Where an offending node is within the model (`measures/2/percentile`) → the diagnostic.
pub(super) type ErrorAt<'a> = dyn Fn(String, &str) -> Diagnostic + 'a;

/// A derived column's name, its input columns, the definition, and its node's path.
type Item = (String, Vec<String>, Derived, String);

/// Validates `spec` from `file`, whose nodes are at `positions`; the model is the node at `path`
/// (`metric_models/<index>`).
pub(super) fn validate(
    spec: &MetricModelSpec,
    file: &str,
    positions: &Positions,
    path: &str,
) -> Result<ValidatedModel, Diagnostics> {
    let mut problems = Diagnostics::default();
    // `at` is the offending node's path within the model, e.g. `measures/2/percentile`.
    let error = |message: String, at: &str| {
        Diagnostic::new(format!("metric model '{}': {message}", spec.name))
            .in_file(file)
            .at_position(positions.at(&format!("{path}/{at}")))
    };
    let periods = check_model(spec, &error, &mut problems);
    let mut columns = grain_columns(spec, &error, &mut problems);
    let max_window = measure_columns(spec, &mut columns, &error, &mut problems);
    let origin_day = periods.first().copied().unwrap_or(0) - max_window;
    let items = derived_items(spec, &error, &mut problems);
    for (name, numeric) in [("cohort_size", true), ("gate_ok", false), ("gate_reason", false)] {
        columns.push(Column {
            name: name.into(),
            numeric,
        });
    }
    let ordered = order_derived(spec, &items, &mut columns, &error, &mut problems);
    check_alerts(spec, &columns, &error, &mut problems);
    for (index, target) in spec.notify.iter().enumerate() {
        check_notify(target, &format!("notify/{index}"), &error, &mut problems);
    }
    let known: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    for (index, validation) in spec.validations.iter().enumerate() {
        let at = format!("validations/{index}");
        if !known.contains(&validation.score) {
            problems.push(unknown_column(
                &error,
                &format!("validation {}", validation.name),
                &validation.score,
                &known,
                &format!("{at}/score"),
            ));
        }
        if validation.horizon_days == 0 {
            problems.push(error(
                format!("validation '{}': horizon_days must be at least 1", validation.name),
                &format!("{at}/horizon_days"),
            ));
        }
        if validation.min_auc.is_some_and(|floor| !(0.0..=1.0).contains(&floor)) {
            problems.push(error(
                format!("validation '{}': min_auc is an AUC, from 0 to 1", validation.name),
                &format!("{at}/min_auc"),
            ));
        }
    }
    super::interventions::check(spec, &known, &error, &mut problems);

    problems.into_result(ValidatedModel {
        spec: spec.clone(),
        periods,
        origin_day,
        max_window: max_window.max(1),
        columns,
        derived: ordered,
    })
}

/// The model's own fields: its name, windows, that it has measures, and its period ends.
fn check_model(spec: &MetricModelSpec, error: &ErrorAt<'_>, problems: &mut Diagnostics) -> Vec<i64> {
    if !is_identifier(&spec.name) {
        problems.push(error(
            format!("name '{}' must be a lowercase identifier", spec.name),
            "name",
        ));
    } else if spec.name.len() > MAX_NAME {
        problems.push(error(
            format!(
                "the name is {} characters long; at most {MAX_NAME} (it names tables and folders)",
                spec.name.len()
            ),
            "name",
        ));
    }
    for (index, window) in spec.windows.iter().enumerate() {
        if *window <= 0 || *window > MAX_WINDOW_DAYS {
            problems.push(error(
                format!("window {window} must be a positive number of days, at most {MAX_WINDOW_DAYS}"),
                &format!("windows/{index}"),
            ));
        }
    }
    if spec.measures.is_empty() {
        problems.push(error("needs at least one measure".into(), "measures"));
    }

    check_names(spec, error, problems);
    check_expressions(spec, error, problems);
    // Periods.
    match period_ends(&spec.periods) {
        Ok(periods) => periods,
        Err(problem) => {
            problems.push(error(problem.message, "periods"));
            Vec::new()
        }
    }
}

/// The grain's columns: the entity, `period_end` and the dimension's attributes; the cohort
/// must be one of them.
fn grain_columns(spec: &MetricModelSpec, error: &ErrorAt<'_>, problems: &mut Diagnostics) -> Vec<Column> {
    // Grain.
    let mut columns: Vec<Column> = vec![
        Column {
            name: spec.events.entity.clone(),
            numeric: false,
        },
        Column {
            name: "period_end".into(),
            numeric: false,
        },
    ];
    if let Some(dimension) = &spec.dimension {
        for attribute in &dimension.attributes {
            columns.push(Column {
                name: attribute.clone(),
                numeric: false,
            });
        }
    }
    if let Some(cohort) = &spec.cohort {
        let known = spec.dimension.as_ref().is_some_and(|d| d.attributes.contains(cohort));
        if !known {
            problems.push(error(
                format!("cohort '{cohort}' must be one of the dimension's attributes"),
                "cohort",
            ));
        }
    }

    columns
}

/// One column per measure and window; returns the longest window.
fn measure_columns(
    spec: &MetricModelSpec,
    columns: &mut Vec<Column>,
    error: &ErrorAt<'_>,
    problems: &mut Diagnostics,
) -> i64 {
    // Measures.
    let mut measure_names = BTreeSet::new();
    let mut max_window = 0;
    for (index, measure) in spec.measures.iter().enumerate() {
        let at = format!("measures/{index}");
        if !is_identifier(&measure.name) {
            problems.push(error(
                format!("measure name '{}' must be a lowercase identifier", measure.name),
                &at,
            ));
        }
        if !measure_names.insert(measure.name.clone()) {
            problems.push(error(format!("measure '{}' is defined twice", measure.name), &at));
        }
        let windows = measure.windows.as_deref().unwrap_or(&spec.windows);
        for window in windows {
            // The model's own windows were checked above.
            if (*window <= 0 || *window > MAX_WINDOW_DAYS) && measure.windows.is_some() {
                problems.push(error(
                    format!(
                        "measure '{}': window {window} must be a positive number of days, at most {MAX_WINDOW_DAYS}",
                        measure.name
                    ),
                    &format!("{at}/windows"),
                ));
            }
            max_window = max_window.max(*window);
            columns.push(Column {
                name: format!("{}_{window}d", measure.name),
                numeric: true,
            });
        }
        let needs = |field: &str, present: bool, problems: &mut Diagnostics| {
            if !present {
                problems.push(error(
                    format!("measure '{}' ({:?}) needs '{field}'", measure.name, measure.agg).to_lowercase(),
                    &at,
                ));
            }
        };
        match measure.agg {
            Aggregation::Count | Aggregation::ActiveDays => {}
            Aggregation::Percentile => {
                needs("expr", measure.expr.is_some(), problems);
                if measure.percentile.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                    problems.push(error(
                        format!("measure '{}': percentile must be between 0 and 1", measure.name),
                        &format!("{at}/percentile"),
                    ));
                }
            }
            Aggregation::CountDistinct
            | Aggregation::Sum
            | Aggregation::Avg
            | Aggregation::Min
            | Aggregation::Max
            | Aggregation::Slope => needs("expr", measure.expr.is_some(), problems),
            Aggregation::Ratio => {
                needs("numerator", measure.numerator.is_some(), problems);
                needs("denominator", measure.denominator.is_some(), problems);
            }
            Aggregation::RollingMean => {
                needs("expr", measure.expr.is_some(), problems);
                needs("last", measure.last.is_some_and(|n| n > 0), problems);
            }
            Aggregation::Drops => {
                needs("expr", measure.expr.is_some(), problems);
                needs("threshold", measure.threshold.is_some(), problems);
            }
            Aggregation::OverdueShare => {
                needs("item", measure.item.is_some(), problems);
                needs("due", measure.due.is_some(), problems);
                needs("completed", measure.completed.is_some(), problems);
            }
        }
    }
    max_window
}

/// Derived columns in the order their inputs allow; unknown inputs and cycles are problems.
/// Adds the derived columns (and each comparison's reference and sigma) to `columns`.
fn order_derived(
    spec: &MetricModelSpec,
    items: &[Item],
    columns: &mut Vec<Column>,
    error: &ErrorAt<'_>,
    problems: &mut Diagnostics,
) -> Vec<Derived> {
    // Order derived columns by their inputs; report unknown inputs and cycles.
    let base: BTreeSet<String> = columns.iter().map(|c| c.name.clone()).collect();
    let derived_names: Vec<String> = items.iter().map(|(name, ..)| name.clone()).collect();
    let mut seen_names = BTreeSet::new();
    for (name, _, _, at) in items {
        if base.contains(name) || !seen_names.insert(name.clone()) {
            problems.push(error(format!("column '{name}' is defined twice"), at));
        }
        if !is_identifier(name) {
            problems.push(error(
                format!("column name '{name}' must be a lowercase identifier"),
                at,
            ));
        }
    }
    let mut all_names: Vec<String> = base.iter().cloned().chain(derived_names.iter().cloned()).collect();
    for comparison in &spec.comparisons {
        all_names.push(format!("{}_reference", comparison.name));
    }
    for (name, inputs, _, at) in items {
        for input in inputs {
            if !all_names.contains(input) {
                problems.push(unknown_column(&error, name, input, &all_names, at));
            }
        }
    }
    let mut ordered: Vec<Derived> = Vec::new();
    let mut available = base.clone();
    let mut pending: Vec<&(String, Vec<String>, Derived, String)> = items.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|(name, inputs, derived, _)| {
            if inputs
                .iter()
                .all(|input| available.contains(input) || !all_names.contains(input))
            {
                available.insert(name.clone());
                available.insert(format!("{name}_reference"));
                ordered.push(derived.clone());
                false
            } else {
                true
            }
        });
        if pending.len() == before {
            let names: Vec<&str> = pending.iter().map(|(name, ..)| name.as_str()).collect();
            problems.push(error(
                format!("derived columns depend on each other in a cycle: {}", names.join(", ")),
                &pending[0].3,
            ));
            break;
        }
    }
    for name in &derived_names {
        columns.push(Column {
            name: name.clone(),
            numeric: true,
        });
    }
    for comparison in &spec.comparisons {
        columns.push(Column {
            name: format!("{}_reference", comparison.name),
            numeric: true,
        });
        if comparison.against == Against::Baseline {
            columns.push(Column {
                name: format!("{}_sigma", comparison.name),
                numeric: true,
            });
        }
    }
    ordered
}

/// Alerts refer to scorecard columns (in their conditions, values and reason templates).
fn check_alerts(spec: &MetricModelSpec, columns: &[Column], error: &ErrorAt<'_>, problems: &mut Diagnostics) {
    // Alerts refer to scorecard columns.
    let known: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let alert_outputs = [
        "value",
        "threshold",
        "consecutive_periods",
        "first_period_in_breach",
        "severity",
        "owner",
        "rule",
    ];
    let mut alert_names = BTreeSet::new();
    for (index, alert) in spec.alerts.iter().enumerate() {
        let at = format!("alerts/{index}");
        if !alert_names.insert(alert.name.clone()) {
            problems.push(error(format!("alert '{}' is defined twice", alert.name), &at));
        }
        let kinds = [
            alert.when.is_some(),
            alert.control_chart.is_some(),
            alert.ewma.is_some(),
            alert.cusum.is_some(),
        ];
        match kinds.iter().filter(|set| **set).count() {
            0 => problems.push(error(
                format!(
                    "alert '{}' needs 'when', 'control_chart', 'ewma' or 'cusum'",
                    alert.name
                ),
                &at,
            )),
            1 => {}
            _ => problems.push(error(
                format!(
                    "alert '{}' has more than one of 'when', 'control_chart', 'ewma' and 'cusum'; use one",
                    alert.name
                ),
                &at,
            )),
        }
        if let Some(ewma) = &alert.ewma {
            if ewma.lambda.is_some_and(|lambda| !(lambda > 0.0 && lambda <= 1.0)) {
                problems.push(error(
                    format!("alert '{}': ewma lambda is a weight above 0 and at most 1", alert.name),
                    &format!("{at}/ewma/lambda"),
                ));
            }
        }

        if alert.consecutive == Some(0) {
            problems.push(error(
                format!("alert '{}': for must be at least 1", alert.name),
                &format!("{at}/for"),
            ));
        }
        // Each column an alert reads, with the key it is read in.
        let mut referenced: Vec<(String, String)> = vec![(alert.value.clone(), format!("{at}/value"))];
        for (key, expression) in [
            ("when", &alert.when),
            ("min_sample", &alert.min_sample),
            ("threshold", &alert.threshold),
        ] {
            if let Some(expression) = expression {
                referenced.extend(identifiers(expression).into_iter().map(|c| (c, format!("{at}/{key}"))));
            }
        }
        for (index, tier) in alert.severity.iter().enumerate() {
            if let Some(condition) = &tier.when {
                let key = format!("{at}/severity/{index}/when");
                referenced.extend(identifiers(condition).into_iter().map(|c| (c, key.clone())));
            }
        }
        if let Some(chart) = &alert.control_chart {
            referenced.push((chart.metric.clone(), format!("{at}/control_chart/metric")));
        }
        if let Some(ewma) = &alert.ewma {
            referenced.push((ewma.metric.clone(), format!("{at}/ewma/metric")));
        }
        if let Some(cusum) = &alert.cusum {
            referenced.push((cusum.metric.clone(), format!("{at}/cusum/metric")));
        }
        if let Some(super::spec::ActiveFrom::Date(date)) = &alert.active_from {
            if chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
                problems.push(error(
                    format!(
                        "alert '{}': active_from '{date}' is neither a date (YYYY-MM-DD) nor a number of periods",
                        alert.name
                    ),
                    &format!("{at}/active_from"),
                ));
            }
        }
        for (index, target) in alert.notify.iter().flatten().enumerate() {
            check_notify(target, &format!("{at}/notify/{index}"), error, problems);
        }
        if alert.resolve_after == Some(0) {
            problems.push(error(
                format!("alert '{}': resolve_after must be at least 1 period", alert.name),
                &format!("{at}/resolve_after"),
            ));
        }
        if alert.escalate.as_ref().is_some_and(|escalate| escalate.after == 0) {
            problems.push(error(
                format!("alert '{}': escalate after must be at least 1 period", alert.name),
                &format!("{at}/escalate/after"),
            ));
        }
        if let Some(recovery) = &alert.recovery {
            referenced.push((recovery.baseline.clone(), format!("{at}/recovery/baseline")));
            if recovery.within.is_some_and(|within| !(0.0..=1.0).contains(&within)) {
                problems.push(error(
                    format!(
                        "alert '{}': recovery within must be a fraction from 0 to 1 (0.1 is 10%)",
                        alert.name
                    ),
                    &format!("{at}/recovery/within"),
                ));
            }
        }
        for (column, key) in referenced {
            if !known.contains(&column) {
                problems.push(unknown_column(
                    &error,
                    &format!("alert {}", alert.name),
                    &column,
                    &known,
                    &key,
                ));
            }
        }
        for placeholder in placeholders(&alert.reason) {
            if !known.contains(&placeholder) && !alert_outputs.contains(&placeholder.as_str()) {
                problems.push(unknown_column(
                    &error,
                    &format!("alert {} reason", alert.name),
                    &placeholder,
                    &known,
                    &format!("{at}/reason"),
                ));
            }
        }
    }
}

/// A notification target has exactly one of `webhook` and `command`; headers go with a webhook.
pub(super) fn check_notify(
    target: &super::spec::NotifySpec,
    at: &str,
    error: &ErrorAt<'_>,
    problems: &mut Diagnostics,
) {
    let message = match (&target.webhook, &target.command) {
        (Some(_), Some(_)) | (None, None) => "a notify target has either webhook: (a URL) or command:",
        (None, Some(_)) if !target.headers.is_empty() => "headers: go with a webhook:, not a command:",
        _ => return,
    };
    problems.push(error(message.to_string(), at));
}

pub(super) fn unknown_column(
    error: &dyn Fn(String, &str) -> Diagnostic,
    owner: &str,
    column: &str,
    known: &[String],
    at: &str,
) -> Diagnostic {
    let mut diagnostic = error(format!("{owner} refers to unknown column '{column}'"), at);
    if let Some(near) = did_you_mean(column, known.iter().map(String::as_str)) {
        diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
    } else {
        diagnostic = diagnostic.with_help(format!("scorecard columns are: {}", known.join(", ")));
    }
    diagnostic
}
