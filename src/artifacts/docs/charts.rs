//! The rows a metric model's charts draw, read from its materialised tables: the cohort ×
//! period heatmap of its first score, alerts per period by rule and severity, cases by status,
//! each score's distribution per period, and per entity the series the drill-down plots.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use crate::execute::catalog::WarehouseReader;
use crate::graph::{Graph, MetricModelSpec};

/// At most this many entities get a drill-down (those with alerts first).
const DRILL_DOWN_ENTITIES: usize = 2000;

/// The chart data of one metric model; a table that was never built is left out, with the
/// reason in `problems`.
pub async fn metric_chart_data(reader: &WarehouseReader, graph: &Graph, spec: &MetricModelSpec) -> Json {
    let relation = |name: String| {
        graph
            .nodes
            .values()
            .find(|node| node.name == name)
            .and_then(|node| node.relation())
            .map(|relation| relation.rendered.clone())
    };
    let mut out = Map::new();
    let mut problems = Vec::new();
    let mut run = |rows: Result<Vec<Map<String, Json>>, String>, what: &str| match rows {
        Ok(rows) => Some(rows),
        Err(error) => {
            problems.push(format!("{what}: {error}"));
            None
        }
    };
    let entity = quote(&spec.events.entity);
    let scores: Vec<String> = spec.scores.iter().map(|score| score.name.clone()).collect();
    if let Some(scorecard) = relation(spec.name.clone()) {
        // The heatmap: the first score (else the first measure's longest window) by cohort.
        let headline = scores.first().cloned().or_else(|| {
            let measure = spec.measures.first()?;
            let window = measure.windows.as_ref().unwrap_or(&spec.windows).first()?;
            Some(format!("{}_{window}d", measure.name))
        });
        if let (Some(cohort), Some(value)) = (&spec.cohort, &headline) {
            let sql = format!(
                "select cast({} as varchar) as cohort, cast(period_end as varchar) as period_end, avg(cast({} as double)) as value, count(*) as entities \
                 from {scorecard} group by 1, 2 order by 1, 2",
                quote(cohort),
                quote(value)
            );
            if let Some(rows) = run(reader.rows(&sql).await, "heatmap") {
                out.insert(
                    "heatmap".into(),
                    json!({"metric": value, "cohort": cohort, "rows": rows}),
                );
            }
        }
        // Each score's distribution per period.
        let mut distributions = Vec::new();
        for score in &scores {
            let sql = format!(
                "select cast(period_end as varchar) as period_end, cast({} as double) as value from {scorecard} where {} is not null",
                quote(score),
                quote(score)
            );
            if let Some(rows) = run(reader.rows(&sql).await, "distribution") {
                distributions.push(json!({"score": score, "periods": quantiles(&rows)}));
            }
        }
        out.insert("distributions".into(), Json::Array(distributions));
        // The drill-down: per entity, each rule's value over time with its baseline.
        let series = drill_down_columns(spec);
        if !series.is_empty() {
            let mut columns: Vec<String> = series
                .iter()
                .flat_map(|(value, reference, sigma)| [Some(value.clone()), reference.clone(), sigma.clone()])
                .flatten()
                .collect();
            columns.sort();
            columns.dedup();
            let select: Vec<String> = columns
                .iter()
                .map(|column| format!("cast({} as double) as {}", quote(column), quote(column)))
                .collect();
            let sql = format!(
                "select cast({entity} as varchar) as entity, cast(period_end as varchar) as period_end, {} from {scorecard} order by 1, 2",
                select.join(", ")
            );
            if let Some(rows) = run(reader.rows(&sql).await, "drill-down") {
                out.insert(
                    "drill_down".into(),
                    json!({
                        "series": series.iter().map(|(value, reference, sigma)| json!({"rule_value": value, "reference": reference, "sigma": sigma})).collect::<Vec<_>>(),
                        "columns": columns,
                        "entities": by_entity(&rows, &columns),
                    }),
                );
            }
        }
    }
    if let Some(alerts) = relation(format!("{}_alerts", spec.name)) {
        let sql = format!(
            "select cast(period_end as varchar) as period_end, rule, coalesce(cast(severity as varchar), '') as severity, count(*) as alerts \
             from {alerts} where status = 'fired' group by 1, 2, 3 order by 1, 2, 3"
        );
        if let Some(rows) = run(reader.rows(&sql).await, "alerts") {
            out.insert(
                "alerts".into(),
                Json::Array(rows.into_iter().map(Json::Object).collect()),
            );
        }
        let sql = format!(
            "select cast({entity} as varchar) as entity, cast(period_end as varchar) as period_end, rule, coalesce(cast(severity as varchar), '') as severity \
             from {alerts} where status = 'fired' order by 1, 2, 3"
        );
        if let Some(rows) = run(reader.rows(&sql).await, "breaches") {
            let mut breaches: BTreeMap<String, Vec<Json>> = BTreeMap::new();
            for row in rows {
                let key = text(&row, "entity");
                breaches.entry(key).or_default().push(json!([
                    text(&row, "period_end"),
                    text(&row, "rule"),
                    text(&row, "severity")
                ]));
            }
            // Keep the drill-down to the entities with alerts when there are too many.
            if let Some(Json::Object(drill)) = out.get_mut("drill_down") {
                if let Some(Json::Object(entities)) = drill.get_mut("entities") {
                    if entities.len() > DRILL_DOWN_ENTITIES {
                        let mut kept: Map<String, Json> = Map::new();
                        for (key, value) in std::mem::take(entities) {
                            if kept.len() < DRILL_DOWN_ENTITIES && breaches.contains_key(&key) {
                                kept.insert(key, value);
                            }
                        }
                        *entities = kept;
                    }
                }
            }
            out.insert("breaches".into(), json!(breaches));
        }
    }
    if let Some(cases) = relation(format!("{}_alert_cases", spec.name)) {
        let sql = format!("select rule, status, count(*) as cases from {cases} group by 1, 2 order by 1, 2");
        if let Some(rows) = run(reader.rows(&sql).await, "cases") {
            out.insert(
                "cases".into(),
                Json::Array(rows.into_iter().map(Json::Object).collect()),
            );
        }
    }
    out.insert("problems".into(), json!(problems));
    Json::Object(out)
}

/// Per alert rule: the column its value is, and the reference and σ of a baseline comparison of
/// that column (the baseline and control limits the drill-down draws).
fn drill_down_columns(spec: &MetricModelSpec) -> Vec<(String, Option<String>, Option<String>)> {
    let mut series = Vec::new();
    for alert in &spec.alerts {
        let value = Some(alert.value.clone())
            .filter(|value| !value.is_empty())
            .or_else(|| alert.control_chart.as_ref().map(|chart| chart.metric.clone()))
            .or_else(|| alert.ewma.as_ref().map(|ewma| ewma.metric.clone()))
            .or_else(|| alert.cusum.as_ref().map(|cusum| cusum.metric.clone()));
        let Some(value) = value else { continue };
        let baseline = spec.comparisons.iter().find(|comparison| {
            comparison.metric == value && matches!(comparison.against, crate::graph::metric_spec::Against::Baseline)
        });
        let entry = (
            value,
            baseline.map(|comparison| format!("{}_reference", comparison.name)),
            baseline.map(|comparison| format!("{}_sigma", comparison.name)),
        );
        if !series.contains(&entry) {
            series.push(entry);
        }
    }
    series
}

/// Rows of (entity, period_end, columns...) as `{entity: {period_end: [values...]}}`, numbers
/// rounded to 6 significant digits.
fn by_entity(rows: &[Map<String, Json>], columns: &[String]) -> Json {
    let mut entities: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    for row in rows {
        let values: Vec<Json> = columns
            .iter()
            .map(|column| match row.get(column).and_then(Json::as_f64) {
                Some(number) => json!(round(number)),
                None => Json::Null,
            })
            .collect();
        entities
            .entry(text(row, "entity"))
            .or_default()
            .insert(text(row, "period_end"), Json::Array(values));
    }
    json!(entities)
}

fn round(number: f64) -> f64 {
    if number == 0.0 || !number.is_finite() {
        return number;
    }
    let digits = 6 - number.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits.clamp(0, 12));
    (number * scale).round() / scale
}

/// Per period: count, min, 10th, 25th, 50th, 75th, 90th percentile and max of `value`.
fn quantiles(rows: &[Map<String, Json>]) -> Json {
    let mut periods: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for row in rows {
        if let Some(value) = row.get("value").and_then(Json::as_f64) {
            periods.entry(text(row, "period_end")).or_default().push(value);
        }
    }
    let at = |sorted: &[f64], fraction: f64| {
        let position = fraction * (sorted.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
    };
    Json::Array(
        periods
            .into_iter()
            .map(|(period, mut values)| {
                values.sort_by(f64::total_cmp);
                let q: Vec<f64> = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
                    .iter()
                    .map(|fraction| round(at(&values, *fraction)))
                    .collect();
                json!({
                    "period_end": period,
                    "n": values.len(),
                    "q": q,
                })
            })
            .collect(),
    )
}

fn text(row: &Map<String, Json>, key: &str) -> String {
    match row.get(key) {
        Some(Json::String(text)) => text.clone(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn quote(name: &str) -> String {
    crate::relation::quote_identifier(name)
}
