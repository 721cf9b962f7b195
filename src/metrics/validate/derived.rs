//! The derived columns of a metric model (formulas, comparisons, normalisations, shrinkage and
//! scores), each with the columns it reads, checked against the model.

use super::*;

/// Comparisons, formulas, normalisations, shrinkage and scores, with the columns each reads.
pub(super) fn derived_items(spec: &MetricModelSpec, error: &ErrorAt<'_>, problems: &mut Diagnostics) -> Vec<Item> {
    // Derived columns, in dependency order.
    let mut items: Vec<(String, Vec<String>, Derived, String)> = Vec::new();
    for (index, formula) in spec.formulas.iter().enumerate() {
        items.push((
            formula.name.clone(),
            identifiers(&formula.expr),
            Derived::Formula(formula.clone()),
            format!("formulas/{index}"),
        ));
    }
    for (index, comparison) in spec.comparisons.iter().enumerate() {
        let at = format!("comparisons/{index}");
        let mut inputs = vec![comparison.metric.clone()];
        if let Some(condition) = &comparison.exclude_when {
            inputs.extend(identifiers(condition));
        }
        let is_cohort = !matches!(comparison.against, Against::Baseline | Against::Previous);
        if is_cohort && spec.cohort.is_none() {
            problems.push(error(
                format!(
                    "comparison '{}' compares with the cohort, but the model has no cohort",
                    comparison.name
                ),
                &format!("{at}/against"),
            ));
        }
        let allowed: &[CompareAs] = match comparison.against {
            Against::Baseline => &[
                CompareAs::Zscore,
                CompareAs::RobustZ,
                CompareAs::Ratio,
                CompareAs::Difference,
                CompareAs::RelativeChange,
            ],
            _ => &[CompareAs::Ratio, CompareAs::Difference, CompareAs::RelativeChange],
        };
        if let Some(compare_as) = comparison.compare_as {
            if !allowed.contains(&compare_as) {
                problems.push(error(
                    format!(
                        "comparison '{}': as: {compare_as:?} does not apply to against: {:?}",
                        comparison.name, comparison.against
                    )
                    .to_lowercase(),
                    &format!("{at}/as"),
                ));
            }
        }
        items.push((
            comparison.name.clone(),
            inputs,
            Derived::Comparison(comparison.clone()),
            at,
        ));
    }
    for (index, normalize) in spec.normalize.iter().enumerate() {
        let at = format!("normalize/{index}");
        let name = normalize
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_{}", normalize.metric, method_name(normalize.method)));
        if normalize.within == Scope::Cohort && spec.cohort.is_none() {
            problems.push(error(
                format!("normalisation '{name}' is within the cohort, but the model has no cohort"),
                &format!("{at}/within"),
            ));
        }
        items.push((
            name.clone(),
            vec![normalize.metric.clone()],
            Derived::Normalize(normalize.clone(), name),
            at,
        ));
    }
    for (index, shrink) in spec.shrink.iter().enumerate() {
        let at = format!("shrink/{index}");
        let name = shrink
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_{}d_shrunk", shrink.measure, shrink.window));
        let measure = spec.measures.iter().find(|m| m.name == shrink.measure);
        match measure {
            Some(measure) if measure.agg == Aggregation::Ratio => {
                if !measure
                    .windows
                    .as_deref()
                    .unwrap_or(&spec.windows)
                    .contains(&shrink.window)
                {
                    problems.push(error(
                        format!(
                            "shrinkage of '{}': the measure has no {}-day window",
                            shrink.measure, shrink.window
                        ),
                        &format!("{at}/window"),
                    ));
                }
            }
            _ => problems.push(error(
                format!("shrinkage needs a ratio measure; '{}' is not one", shrink.measure),
                &format!("{at}/measure"),
            )),
        }
        if shrink.strength < 0.0 {
            problems.push(error(
                "shrinkage strength must not be negative".into(),
                &format!("{at}/strength"),
            ));
        }
        if shrink.toward == Scope::Cohort && spec.cohort.is_none() {
            problems.push(error(
                format!("shrinkage '{name}' is toward the cohort, but the model has no cohort"),
                &format!("{at}/toward"),
            ));
        }
        items.push((name.clone(), vec![], Derived::Shrink(shrink.clone(), name), at));
    }
    for (index, score) in spec.scores.iter().enumerate() {
        let at = format!("scores/{index}");
        if score.components.is_empty() {
            problems.push(error(format!("score '{}' has no components", score.name), &at));
        }
        if score.families.is_empty() {
            let weights: Vec<f64> = score.components.iter().map(|c| c.weight.unwrap_or(f64::NAN)).collect();
            if weights.iter().any(|w| w.is_nan()) {
                problems.push(error(
                    format!(
                        "score '{}': every component needs a weight (or give the score families)",
                        score.name
                    ),
                    &at,
                ));
            } else if (weights.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
                problems.push(error(
                    format!(
                        "score '{}': weights sum to {}, not 1",
                        score.name,
                        weights.iter().sum::<f64>()
                    ),
                    &at,
                ));
            }
        } else {
            let total: f64 = score.families.values().sum();
            if (total - 1.0).abs() > 1e-6 {
                problems.push(error(
                    format!("score '{}': family weights sum to {total}, not 1", score.name),
                    &format!("{at}/families"),
                ));
            }
            for (component_index, component) in score.components.iter().enumerate() {
                let component_at = format!("{at}/components/{component_index}");
                match &component.family {
                    Some(family) if score.families.contains_key(family) => {}
                    Some(family) => problems.push(error(
                        format!(
                            "score '{}': component '{}' is in family '{family}', which has no weight",
                            score.name, component.metric
                        ),
                        &format!("{component_at}/family"),
                    )),
                    None => problems.push(error(
                        format!(
                            "score '{}': component '{}' needs a family",
                            score.name, component.metric
                        ),
                        &component_at,
                    )),
                }
            }
            for family in score.families.keys() {
                if !score.components.iter().any(|c| c.family.as_deref() == Some(family)) {
                    problems.push(error(
                        format!("score '{}': family '{family}' has no components", score.name),
                        &format!("{at}/families/{family}"),
                    ));
                }
            }
        }
        if (score.within == Scope::Cohort) && spec.cohort.is_none() {
            problems.push(error(
                format!(
                    "score '{}' is normalised within the cohort, but the model has no cohort",
                    score.name
                ),
                &format!("{at}/within"),
            ));
        }
        let inputs = score.components.iter().map(|c| c.metric.clone()).collect();
        items.push((score.name.clone(), inputs, Derived::Score(score.clone()), at));
    }

    items
}
