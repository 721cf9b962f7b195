//! The parts of a spec that go into the generated SQL as they are written: model and column
//! names (each must be a plain name) and SQL expressions (each must parse as one expression),
//! and the limits on names and windows.

use super::super::spec::MetricModelSpec;
use super::super::syntax::{expression_problem, is_name};
use super::ErrorAt;
use crate::diagnostics::Diagnostics;

/// The longest metric-model name: its tables are named after it.
pub(super) const MAX_NAME: usize = 100;

/// The longest window a measure may have: a century of days.
pub(super) const MAX_WINDOW_DAYS: i64 = 36_525;

/// Model and column names that go into the generated SQL (and its `ref()`s) as they are: each
/// must be a plain name, so nothing can be spliced in through them.
pub(super) fn check_names(spec: &MetricModelSpec, error: &ErrorAt<'_>, problems: &mut Diagnostics) {
    let source = spec.events.source();
    let mut names: Vec<(&str, String)> = match &source {
        Some((name, table)) => vec![
            (name.as_str(), "events/model".into()),
            (table.as_str(), "events/model".into()),
        ],
        None if spec.events.model.trim_start().starts_with("source") && spec.events.model.contains('(') => {
            problems.push(error(
                "write a source as source('name', 'table'): two quoted names".into(),
                "events/model",
            ));
            Vec::new()
        }
        None => vec![(spec.events.model.as_str(), "events/model".into())],
    };
    names.push((spec.events.entity.as_str(), "events/entity".into()));
    names.push((spec.events.time.as_str(), "events/time".into()));
    if let Some(dimension) = &spec.dimension {
        names.push((dimension.model.as_str(), "dimension/model".into()));
        names.push((dimension.key.as_str(), "dimension/key".into()));
        for (index, attribute) in dimension.attributes.iter().enumerate() {
            names.push((attribute.as_str(), format!("dimension/attributes/{index}")));
        }
    }
    if let Some(cohort) = &spec.cohort {
        names.push((cohort.as_str(), "cohort".into()));
    }
    if let Some(actions) = &spec.actions {
        names.push((actions.as_str(), "actions".into()));
    }
    for (index, measure) in spec.measures.iter().enumerate() {
        for (value, key) in [(&measure.item, "item"), (&measure.due, "due")] {
            if let Some(value) = value {
                names.push((value.as_str(), format!("measures/{index}/{key}")));
            }
        }
    }
    for (index, validation) in spec.validations.iter().enumerate() {
        names.push((
            validation.outcome.model.as_str(),
            format!("validations/{index}/outcome/model"),
        ));
        names.push((
            validation.outcome.entity.as_str(),
            format!("validations/{index}/outcome/entity"),
        ));
        names.push((
            validation.outcome.time.as_str(),
            format!("validations/{index}/outcome/time"),
        ));
    }
    for (value, at) in names {
        if !is_name(value) {
            let shown: String = value.chars().take(80).collect();
            problems.push(error(
                format!(
                    "'{shown}' is not a model or column name (letters, digits and _, not starting with a digit){}",
                    if at == "events/model" {
                        "; a source table is written source('name', 'table')"
                    } else {
                        ""
                    }
                ),
                &at,
            ));
        }
    }
}

/// Every SQL expression of the spec must be one expression (see `syntax::expression_problem`).
pub(super) fn check_expressions(spec: &MetricModelSpec, error: &ErrorAt<'_>, problems: &mut Diagnostics) {
    let mut expressions: Vec<(String, String)> = Vec::new();
    let mut add = |value: Option<&String>, at: String| {
        if let Some(value) = value {
            expressions.push((value.clone(), at));
        }
    };
    for (index, measure) in spec.measures.iter().enumerate() {
        let at = |key: &str| format!("measures/{index}/{key}");
        add(measure.expr.as_ref(), at("expr"));
        add(measure.filter.as_ref(), at("filter"));
        add(measure.completed.as_ref(), at("completed"));
        for (part, key) in [(&measure.numerator, "numerator"), (&measure.denominator, "denominator")] {
            if let Some(part) = part {
                add(part.expr.as_ref(), at(&format!("{key}/expr")));
                add(part.filter.as_ref(), at(&format!("{key}/filter")));
            }
        }
    }
    for (index, formula) in spec.formulas.iter().enumerate() {
        add(Some(&formula.expr), format!("formulas/{index}/expr"));
    }
    for (index, comparison) in spec.comparisons.iter().enumerate() {
        add(
            comparison.exclude_when.as_ref(),
            format!("comparisons/{index}/exclude_when"),
        );
    }
    for (index, alert) in spec.alerts.iter().enumerate() {
        let at = |key: &str| format!("alerts/{index}/{key}");
        add(alert.when.as_ref(), at("when"));
        add(alert.min_sample.as_ref(), at("min_sample"));
        add(alert.threshold.as_ref(), at("threshold"));
        for (tier, severity) in alert.severity.iter().enumerate() {
            add(severity.when.as_ref(), at(&format!("severity/{tier}/when")));
        }
    }
    for (index, intervention) in spec.interventions.iter().enumerate() {
        add(
            intervention.randomize.as_ref().and_then(|r| r.filter.as_ref()),
            format!("interventions/{index}/randomize/filter"),
        );
    }
    for (expression, at) in expressions {
        if let Some(problem) = expression_problem(&expression) {
            let shown: String = expression.chars().take(80).collect();
            problems.push(error(format!("'{shown}' is not one SQL expression: {problem}"), &at));
        }
    }
}
