//! Metric models: YAML scorecards and alerts compiled to ordinary SQL models.
//!
//! A `metric_models:` entry in a property file becomes four (or more) table models in the DAG, so
//! selection, `compile`, `ls`, tests and materialisation treat them like any other model:
//!
//! - `<name>__daily`: one pass over the events to an entity × day roll-up of additive
//!   components (counts, sums, slope sums, drop flags, ...) and lists of distinct values;
//! - `<name>`: the scorecard, one row per entity × period (every entity at every period, so
//!   periods without activity are zeros, not gaps): every measure over every window from one
//!   aggregation of the roll-up by entity (`tidemark_window_*`), then comparisons,
//!   normalisation, shrinkage and scores as window functions over the entity's periods or
//!   partitioned by cohort and period, and the data gates of the period;
//! - `<name>_alerts`: one row per entity × period × rule in breach for the required number of
//!   consecutive periods, with severity, owner, reason and status (`fired`, or `suppressed` when
//!   the period's data gate failed);
//! - `<name>_alert_cases`: the alerts grouped into cases (entity × rule × episode) with a status,
//!   owners, due dates and recovery checkpoints, rebuilt whole every run; with a gate (a rule's
//!   `gate:`, or `--fail-on-alert`), also the data test `<name>_alert_gate` over its new cases;
//! - with `validations:`, `<name>_validation` (does a score predict its outcome), and with
//!   `interventions:`, `<name>_interventions` (difference-in-differences and ROI of each pilot)
//!   plus `<name>_intervention_arms` when tidemark draws a pilot's arms (`interventions`).
//!
//! [`spec`] is the vocabulary, `validate` checks a spec against itself before any SQL is
//! generated (its derived columns in `validate/derived.rs`), `calendar` turns `periods:` into
//! period ends, `syntax` reads the identifiers and `{placeholders}` inside a spec, and `daily`,
//! `scorecard` (with `scorecard/windows.rs` and `scorecard/derived.rs`), `alerts` and `cases`
//! write the SQL. Nothing is computed outside SQL.

mod alerts;
mod calendar;
mod cases;
mod daily;
mod interventions;
mod scorecard;
pub mod spec;
mod syntax;
mod validate;
mod validation;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::project::{ConfigMap, Project};
pub use spec::MetricModelSpec;
pub use validate::{Column, ValidatedModel};

/// A SQL model generated from a metric model.
#[derive(Debug, Clone)]
pub struct GeneratedModel {
    pub name: String,
    /// The property file the metric model is declared in.
    pub path: String,
    pub line: Option<usize>,
    /// Jinja SQL, with `ref()`s to its inputs.
    pub sql: String,
    pub config: ConfigMap,
    pub description: String,
    /// Data tests generated with the model (name and SQL): for alert cases, the gate (new cases
    /// at or above a rule's `gate:` or `fail_on_alert`) and the check of the action log.
    pub tests: Vec<(String, String)>,
}

/// The config of an alert-cases model that says where each rule's new cases are sent:
/// `{rule: [{webhook, headers} | {command}]}`, templates unrendered.
pub const NOTIFY_CONFIG: &str = "tidemark_notify";

/// The var `--fail-on-alert SEVERITY` sets: new alert cases at or above it fail `build`.
pub const FAIL_ON_ALERT_VAR: &str = "fail_on_alert";

#[derive(Deserialize)]
struct MetricModelsOnly {
    #[serde(default)]
    metric_models: Vec<MetricModelSpec>,
}

/// Expands every metric model of the project into its generated models.
pub fn expand(project: &Project, fail_on_alert: Option<&Json>) -> Result<Vec<GeneratedModel>, Diagnostics> {
    let mut generated = Vec::new();
    let mut problems = Diagnostics::default();
    let fail_on_alert = match fail_on_alert {
        None | Some(Json::Null) => None,
        Some(value) => match value.as_str().and_then(spec::SeverityLevel::parse) {
            Some(level) => Some(level),
            None => {
                return Err(Diagnostic::new(format!(
                    "{FAIL_ON_ALERT_VAR} (--fail-on-alert) is {value}; use low, medium or high"
                ))
                .into())
            }
        },
    };
    let mut declared: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for file in project.property_files.iter().filter(|file| file.has_metric_models) {
        // Parse again from the text so shape errors carry their line and column.
        let specs = match serde_yaml::from_str::<MetricModelsOnly>(&file.text) {
            Ok(only) => only.metric_models,
            Err(error) => {
                problems.push(metric_yaml_error(&file.file, &file.positions, &error));
                continue;
            }
        };
        for (index, spec) in specs.into_iter().enumerate() {
            let path = format!("metric_models/{index}");
            let line = file.positions.at(&path).map(|position| position.line);
            let place = match line {
                Some(line) => format!("{}:{line}", file.file),
                None => file.file.clone(),
            };
            if let Some(first) = declared.get(&spec.name) {
                problems.push(
                    Diagnostic::new(format!(
                        "metric model '{}' is declared twice: at {first} and here",
                        spec.name
                    ))
                    .in_file(&file.file)
                    .at_line(line)
                    .with_help("rename one of them: their tables would have the same names"),
                );
                continue;
            }
            declared.insert(spec.name.clone(), place);
            match validate::validate(&spec, &file.file, &file.positions, &path) {
                Ok(model) => generated.extend(generate(&model, &file.file, line, fail_on_alert)),
                Err(diagnostics) => problems.extend(diagnostics),
            }
        }
    }
    problems.into_result(generated)
}

/// The metric models of the project as declared, each with its property file, for the docs
/// site's cards (a model whose YAML does not read is left out: loading reported it).
pub fn specs(project: &Project) -> Vec<(MetricModelSpec, String)> {
    project
        .property_files
        .iter()
        .filter(|file| file.has_metric_models)
        .flat_map(|file| {
            let specs = serde_yaml::from_str::<MetricModelsOnly>(&file.text)
                .map(|only| only.metric_models)
                .unwrap_or_default();
            specs.into_iter().map(|spec| (spec, file.file.clone()))
        })
        .collect()
}

fn metric_yaml_error(file: &str, positions: &crate::project::yaml::Positions, error: &serde_yaml::Error) -> Diagnostic {
    let mut diagnostic = crate::project::yaml::yaml_diagnostic(file, error);
    let message = diagnostic.message.trim_start_matches("invalid YAML: ");
    diagnostic.message = format!("invalid metric model: {message}");
    if diagnostic.line.is_none() {
        diagnostic = diagnostic.at_position(positions.at("metric_models"));
    }
    diagnostic
}

fn generate(
    model: &ValidatedModel,
    path: &str,
    line: Option<usize>,
    fail_on_alert: Option<spec::SeverityLevel>,
) -> Vec<GeneratedModel> {
    let spec = &model.spec;
    let mut config = spec.config.clone();
    config.insert("materialized".into(), Json::from("table"));
    let mut tags = crate::project::project_file::tags_of(config.get("tags").unwrap_or(&Json::Null));
    if !tags.iter().any(|t| t == "metric_model") {
        tags.push("metric_model".into());
    }
    config.insert("tags".into(), Json::from(tags));
    let make = |name: String, sql: String, description: String, extra: Vec<(&str, Json)>| {
        let mut config = config.clone();
        for (key, value) in extra {
            config.insert(key.into(), value);
        }
        GeneratedModel {
            name,
            path: path.to_string(),
            line,
            sql,
            config,
            description,
            tests: Vec::new(),
        }
    };
    // Scorecard and alert history are partitioned by period (`period_end=2026-11-15/`).
    let by_period = || vec![("partition_by", Json::from("period_end"))];
    let (mut daily_extra, mut scorecard_extra, mut alerts_extra) = (Vec::new(), by_period(), by_period());
    if spec.incremental {
        // A changed spec changes the tables' columns, and the periods already written hold no
        // value for a new column: the run stops and asks for `--full-refresh` unless the
        // metric model's config says otherwise.
        let on_schema_change = spec
            .config
            .get("on_schema_change")
            .cloned()
            .unwrap_or_else(|| Json::from("fail"));
        let incremental = |strategy: &str, event_time: &str, lookback: Json| {
            vec![
                ("materialized", Json::from("incremental")),
                ("incremental_strategy", Json::from(strategy)),
                ("event_time", Json::from(event_time)),
                ("lookback_days", lookback),
                ("on_schema_change", on_schema_change.clone()),
            ]
        };
        // A day of the roll-up needs the events of the longest window before it when it has
        // sequence measures or due dates (they look back that far); otherwise only its own.
        // Partitioned by day, so a time-range run of the scorecard reads only the days of its
        // lookback and a nightly run rewrites only the new days.
        // (`day` is the date of `__day`: a folder named `__day=` would be hidden from Hive readers.)
        daily_extra = incremental("insert_overwrite", "day", Json::from(daily::lookback_days(model)));
        daily_extra.push(("partition_by", Json::from("day")));
        scorecard_extra.extend(incremental(
            "insert_overwrite",
            "period_end",
            Json::from(scorecard_lookback_days(model)),
        ));
        // Streaks run over the whole scorecard history.
        alerts_extra.extend(incremental("insert_overwrite", "period_end", Json::from("all")));
    }
    let mut cases_model = make(
        cases::name(spec),
        cases::sql(model),
        format!(
            "Alert cases of metric model {}: one row per entity, rule and episode, with its status, owners, due dates and recovery.",
            spec.name
        ),
        Vec::new(),
    );
    // Where each rule's cases are sent: its own `notify:`, else the metric model's.
    let notify: serde_json::Map<String, Json> = spec
        .alerts
        .iter()
        .filter_map(|alert| {
            let targets = alert.notify.as_ref().unwrap_or(&spec.notify);
            (!targets.is_empty()).then(|| (alert.name.clone(), serde_json::to_value(targets).unwrap_or_default()))
        })
        .collect();
    if !notify.is_empty() {
        cases_model.config.insert(NOTIFY_CONFIG.into(), Json::Object(notify));
    }
    cases_model.tests = [
        cases::gate_sql(model, fail_on_alert).map(|sql| (cases::gate_name(spec), sql)),
        cases::actions_check_sql(spec).map(|sql| (cases::actions_check_name(spec), sql)),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Score validations, when declared: a table and, with `min_auc`, its floor test.
    let validation_model = (!spec.validations.is_empty()).then(|| {
        let mut validation_model = make(
            validation::name(spec),
            validation::sql(spec),
            format!(
                "Score validations of metric model {}: per validation and period, how well the score predicts its outcome (AUC, correlation).",
                spec.name
            ),
            Vec::new(),
        );
        validation_model.tests = validation::floor_test_sql(spec)
            .map(|sql| (validation::floor_test_name(spec), sql))
            .into_iter()
            .collect();
        validation_model
    });
    let mut models = vec![
        make(
            daily::name(spec),
            daily::sql(model),
            format!("Entity × day roll-up of the events of metric model {}.", spec.name),
            daily_extra,
        ),
        make(
            spec.name.clone(),
            scorecard::sql(model),
            if spec.description.is_empty() {
                format!(
                    "Scorecard of metric model {}: one row per entity and period.",
                    spec.name
                )
            } else {
                spec.description.clone()
            },
            scorecard_extra,
        ),
        make(
            alerts::name(spec),
            alerts::sql(model),
            format!(
                "Alerts of metric model {}: one row per entity, period and rule in breach.",
                spec.name
            ),
            alerts_extra,
        ),
        // Rebuilt whole on every run, incremental metric model or not (see `cases`).
        cases_model,
    ];
    models.extend(validation_model);
    // Interventions, when declared: the drawn arms (if any are randomised), the estimates and
    // the check of the arms.
    if !spec.interventions.is_empty() {
        if let Some(sql) = interventions::arms_sql(spec) {
            models.push(make(
                interventions::arms_name(spec),
                sql,
                format!(
                    "Arms drawn for the randomised interventions of metric model {}: one row per intervention and eligible entity, with its draw.",
                    spec.name
                ),
                Vec::new(),
            ));
        }
        let mut estimates = make(
            interventions::name(spec),
            interventions::sql(spec),
            format!(
                "Interventions of metric model {}: per pilot, the difference-in-differences of its outcome between treated and control entities, its interval, and ROI.",
                spec.name
            ),
            Vec::new(),
        );
        estimates.tests = interventions::arms_check_sql(spec)
            .map(|sql| (interventions::arms_check_name(spec), sql))
            .into_iter()
            .collect();
        models.push(estimates);
    }
    models
}

/// Days before the first recomputed period a time-range run of the scorecard reads the daily
/// roll-up from: the longest window. (Baselines and lags read the earlier periods from the
/// scorecard's own table, and the data gates read the whole roll-up's daily totals.)
fn scorecard_lookback_days(model: &ValidatedModel) -> i64 {
    model.max_window - 1
}
