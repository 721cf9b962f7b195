//! Metric models: YAML scorecards and alerts compiled to ordinary SQL models.
//!
//! A `metric_models:` entry in a property file becomes three table models in the DAG, so
//! selection, `compile`, `ls`, tests and materialisation treat them like any other model:
//!
//! - `<name>__daily`: one pass over the events to an entity × day roll-up of additive
//!   components (counts, sums, slope sums, drop flags, ...);
//! - `<name>`: the scorecard, one row per entity × period (every entity at every period, so
//!   periods without activity are zeros, not gaps): every measure over every window from the
//!   roll-up joined by entity with a day-range condition, then comparisons, normalisation,
//!   shrinkage and scores as window functions partitioned by entity or by cohort and period,
//!   and the data gates of the period;
//! - `<name>_alerts`: one row per entity × period × rule in breach for the required number of
//!   consecutive periods, with severity, owner, reason and status (`fired`, or `suppressed` when
//!   the period's data gate failed).
//!
//! [`spec`] is the vocabulary, [`validate`] checks a spec against itself before any SQL is
//! generated, and [`daily`], [`scorecard`] and [`alerts`] write the SQL. Nothing is computed
//! outside SQL.

mod alerts;
mod daily;
mod scorecard;
pub mod spec;
mod validate;

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
}

#[derive(Deserialize)]
struct MetricModelsOnly {
    #[serde(default)]
    metric_models: Vec<MetricModelSpec>,
}

/// Expands every metric model of the project into its generated models.
pub fn expand(project: &Project) -> Result<Vec<GeneratedModel>, Diagnostics> {
    let mut generated = Vec::new();
    let mut problems = Diagnostics::default();
    for file in project.property_files.iter().filter(|file| file.has_metric_models) {
        // Parse again from the text so shape errors carry their line and column.
        let specs = match serde_yaml::from_str::<MetricModelsOnly>(&file.text) {
            Ok(only) => only.metric_models,
            Err(error) => {
                problems.push(metric_yaml_error(&file.file, &file.text, &error));
                continue;
            }
        };
        for spec in specs {
            let line = crate::diagnostics::line_of(&file.text, &format!("name: {}", spec.name));
            match validate::validate(&spec, &file.file, &file.text, line) {
                Ok(model) => generated.extend(generate(&model, &file.file, line)),
                Err(diagnostics) => problems.extend(diagnostics),
            }
        }
    }
    problems.into_result(generated)
}

fn metric_yaml_error(file: &str, text: &str, error: &serde_yaml::Error) -> Diagnostic {
    let mut diagnostic = crate::project::yaml::yaml_diagnostic(file, error);
    diagnostic.message = diagnostic
        .message
        .replacen("invalid YAML: ", "invalid metric model: ", 1);
    if diagnostic.line.is_none() {
        diagnostic = diagnostic.at_line(crate::diagnostics::line_of(text, "metric_models:"));
    }
    diagnostic
}

fn generate(model: &ValidatedModel, path: &str, line: Option<usize>) -> Vec<GeneratedModel> {
    let spec = &model.spec;
    let mut config = spec.config.clone();
    config.insert("materialized".into(), Json::from("table"));
    let mut tags = crate::project::project_file::tags_of(config.get("tags").unwrap_or(&Json::Null));
    if !tags.iter().any(|t| t == "metric_model") {
        tags.push("metric_model".into());
    }
    config.insert("tags".into(), Json::from(tags));
    let make = |name: String, sql: String, description: String| GeneratedModel {
        name,
        path: path.to_string(),
        line,
        sql,
        config: config.clone(),
        description,
    };
    vec![
        make(
            daily::name(spec),
            daily::sql(model),
            format!("Entity × day roll-up of the events of metric model {}.", spec.name),
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
        ),
        make(
            alerts::name(spec),
            alerts::sql(model),
            format!(
                "Alerts of metric model {}: one row per entity, period and rule in breach.",
                spec.name
            ),
        ),
    ]
}
