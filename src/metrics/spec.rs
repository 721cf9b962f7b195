//! The `metric_models:` YAML vocabulary, as read from property files.
//!
//! Everything here is data: the SQL it compiles to is built in `daily`, `scorecard` and `alerts`. Field docs are
//! the reference; the README shows a full example.

use std::collections::BTreeMap;

use serde::Deserialize;

mod alerts;
pub use super::interventions::{AssignmentSpec, InterventionSpec, RandomizeSpec};
pub use alerts::*;

use crate::project::ConfigMap;

/// One metric model: events rolled up per entity and day, evaluated at every period end over
/// rolling windows, compared, normalised, scored, and turned into alerts.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricModelSpec {
    /// Name of the scorecard table; `<name>__daily` and `<name>_alerts` are built beside it.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub events: EventsSpec,
    /// Where the entities and their attributes come from (default: the entities seen in events).
    #[serde(default)]
    pub dimension: Option<DimensionSpec>,
    /// The attribute entities are compared within (e.g. `team_id`); needs `dimension`.
    #[serde(default)]
    pub cohort: Option<String>,
    pub periods: PeriodsSpec,
    /// Rolling windows in days, for every measure without its own `windows`.
    #[serde(default = "default_windows")]
    pub windows: Vec<i64>,
    /// Cohorts smaller than this get no cohort figures (people data: no tiny groups).
    #[serde(default)]
    pub min_cohort_size: Option<u32>,
    pub measures: Vec<MeasureSpec>,
    #[serde(default)]
    pub comparisons: Vec<ComparisonSpec>,
    /// Columns computed from other scorecard columns with an SQL expression.
    #[serde(default)]
    pub formulas: Vec<FormulaSpec>,
    #[serde(default)]
    pub normalize: Vec<NormalizeSpec>,
    #[serde(default)]
    pub shrink: Vec<ShrinkSpec>,
    #[serde(default)]
    pub scores: Vec<ScoreSpec>,
    #[serde(default)]
    pub gates: GatesSpec,
    #[serde(default)]
    pub alerts: Vec<AlertSpec>,
    /// The action log of the alert cases: a seed or model (kept in git, edited through pull
    /// requests) with `case_id`, `action` (`triaged`, `planned`, `resolved` or `note`), `actor`
    /// and `at` (a date or timestamp).
    #[serde(default)]
    pub actions: Option<String>,
    /// Where new, reopened and escalated cases of every rule are sent (a rule's own `notify:`
    /// replaces it).
    #[serde(default)]
    pub notify: Vec<NotifySpec>,
    /// Checks that a score predicts the lagging outcome it claims to (`<name>_validation`).
    #[serde(default)]
    pub validations: Vec<ValidationSpec>,
    /// Pilots with a treatment and a control group, and their measured effect
    /// (`<name>_interventions`).
    #[serde(default)]
    pub interventions: Vec<InterventionSpec>,
    /// Configs of the generated tables (`tags`, `schema`, ...).
    #[serde(default)]
    pub config: ConfigMap,
    /// Keep the three tables up to date with time-range incremental runs: each run recomputes
    /// from the latest period it holds (or `--event-time-start`), reading inputs from that
    /// date minus the windows' and comparisons' lookback, and replaces only those periods.
    #[serde(default)]
    pub incremental: bool,
}

pub fn default_windows() -> Vec<i64> {
    vec![90, 30, 7]
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSpec {
    /// Model (or seed) holding one row per event, or a source table written as in SQL:
    /// `source('lms', 'statements')`.
    pub model: String,
    /// Column identifying the entity (learner, team, course).
    pub entity: String,
    /// Event timestamp (or date) column.
    pub time: String,
}

impl EventsSpec {
    /// The events' relation as the Jinja call the generated SQL reads it with: `ref('model')`, or
    /// `source('name', 'table')`.
    pub fn relation(&self) -> String {
        match self.source() {
            Some((source, table)) => format!("source('{source}', '{table}')"),
            None => format!("ref('{}')", self.model),
        }
    }

    /// The source and table of `model` when it is written `source('name', 'table')` (either
    /// quote), else `None`.
    pub fn source(&self) -> Option<(String, String)> {
        let inner = self
            .model
            .trim()
            .strip_prefix("source")?
            .trim_start()
            .strip_prefix('(')?
            .strip_suffix(')')?;
        let (source, table) = inner.split_once(',')?;
        let unquote = |text: &str| {
            let text = text.trim();
            ['\'', '"'].into_iter().find_map(|quote| {
                text.strip_prefix(quote)?
                    .strip_suffix(quote)
                    .filter(|name| !name.contains(['\'', '"']))
                    .map(str::to_string)
            })
        };
        Some((unquote(source)?, unquote(table)?))
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionSpec {
    pub model: String,
    /// Column of the dimension that matches `events.entity`.
    pub key: String,
    /// Attributes copied into every scorecard row (segments, cohort levels).
    #[serde(default)]
    pub attributes: Vec<String>,
}

/// When the scorecard is evaluated: every `every` from `start` to `end`, or once `as_of`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodsSpec {
    #[serde(default)]
    pub every: Option<Cadence>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    Day,
    Week,
    Month,
}

/// How a measure aggregates events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Events matching `filter`.
    Count,
    /// Distinct values of `expr` among events matching `filter`.
    CountDistinct,
    /// The `percentile` (default 0.5, the median) of `expr` over the events in the window.
    Percentile,
    Sum,
    Avg,
    Min,
    Max,
    /// Days with at least one event matching `filter`.
    ActiveDays,
    /// `numerator` / `denominator`, each a filtered count or sum.
    Ratio,
    /// Mean of `expr` over the entity's last `last` events (as of the period end, within the window).
    RollingMean,
    /// Least-squares slope of `expr` against the event day over the window (units per day).
    Slope,
    /// Consecutive events whose `expr` fell by more than `threshold`.
    Drops,
    /// Share of items (`item`) due in the window (`due`) that were not completed (`completed`) by their due date.
    OverdueShare,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// Column prefix: the measure over a window of W days is `<name>_<W>d`.
    pub name: String,
    pub agg: Aggregation,
    /// SQL expression over event columns (sum, avg, min, max, count_distinct, slope, drops, rolling_mean).
    #[serde(default)]
    pub expr: Option<String>,
    /// SQL condition selecting the events the measure looks at.
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub numerator: Option<RatioPart>,
    #[serde(default)]
    pub denominator: Option<RatioPart>,
    /// Windows of this measure (default: the model's).
    #[serde(default)]
    pub windows: Option<Vec<i64>>,
    /// `drops`: the fall between consecutive events that counts.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// `percentile`: which one, between 0 and 1 (default 0.5).
    #[serde(default)]
    pub percentile: Option<f64>,
    /// `rolling_mean`: how many events.
    #[serde(default)]
    pub last: Option<u32>,
    /// `overdue_share`: the item column, the due-date column, and the condition of a completing event.
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default)]
    pub due: Option<String>,
    #[serde(default)]
    pub completed: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// One side of a ratio: a filtered count (no `expr`) or a filtered sum of `expr`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RatioPart {
    #[serde(default)]
    pub expr: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
}

/// What a metric column is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Against {
    CohortMedian,
    CohortMean,
    CohortP25,
    CohortP50,
    CohortP75,
    CohortP90,
    /// The entity's own trailing periods (excluding the period judged).
    Baseline,
    /// The entity's value `periods` periods ago.
    Previous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareAs {
    /// value / reference
    Ratio,
    /// value − reference
    Difference,
    /// (value − reference) / reference
    RelativeChange,
    /// Baseline only: (value − mean) / max(std, floor)
    Zscore,
    /// Baseline only: (value − median) / max(1.4826 · MAD, floor)
    RobustZ,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonSpec {
    /// Output column.
    pub name: String,
    /// The column compared (`completions_30d`, a score, ...).
    pub metric: String,
    pub against: Against,
    #[serde(rename = "as", default)]
    pub compare_as: Option<CompareAs>,
    /// Baseline: trailing periods (default 8); previous: how many periods back (default 1).
    #[serde(default)]
    pub periods: Option<u32>,
    /// Baseline: leave out this many periods just before the one judged (default 0), so a drop
    /// that began recently is judged against how things were before it.
    #[serde(default)]
    pub skip: Option<u32>,
    /// Baseline: periods where this SQL condition held are left out of the baseline.
    #[serde(default)]
    pub exclude_when: Option<String>,
    /// Baseline: σ is at least this much (default 0: only `sigma_floor_ratio` applies)...
    #[serde(default)]
    pub sigma_floor: Option<f64>,
    /// ...and at least this share of |baseline mean| (default 0.1).
    #[serde(default)]
    pub sigma_floor_ratio: Option<f64>,
    /// Baseline: fewer trailing periods with data than this gives no figure (default 3).
    #[serde(default)]
    pub min_periods: Option<u32>,
}

/// `name: expr`: a column computed row by row from other scorecard columns.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormulaSpec {
    pub name: String,
    /// SQL expression over scorecard columns (divisions are done in floating point).
    pub expr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalizeMethod {
    Zscore,
    PercentRank,
    MinMax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Across all entities at the same period.
    #[default]
    All,
    /// Within the entity's cohort at the same period.
    Cohort,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeSpec {
    pub metric: String,
    pub method: NormalizeMethod,
    #[serde(default)]
    pub within: Scope,
    /// Output column (default `<metric>_<method>`).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShrinkSpec {
    /// A `ratio` measure.
    pub measure: String,
    pub window: i64,
    /// Prior strength: pseudo-observations of the parent rate added to every entity.
    pub strength: f64,
    /// Parent: the cohort (default) or all entities.
    #[serde(default = "cohort_scope")]
    pub toward: Scope,
    /// Output column (default `<measure>_<window>d_shrunk`).
    #[serde(default)]
    pub name: Option<String>,
}

fn cohort_scope() -> Scope {
    Scope::Cohort
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    HigherIsBetter,
    LowerIsBetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// Leave missing components out and rescale the remaining weights.
    #[default]
    Renormalize,
    /// Count a missing component as 0 (the worst).
    Zero,
    /// No score when any component is missing.
    Null,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSpec {
    pub name: String,
    pub components: Vec<ScoreComponent>,
    /// Weights per family (must sum to 1); components then share their family's weight equally.
    #[serde(default)]
    pub families: BTreeMap<String, f64>,
    /// How components are put on a 0–1 scale before weighting (default percent_rank over all entities).
    #[serde(default)]
    pub normalize: Option<NormalizeMethod>,
    #[serde(default)]
    pub within: Scope,
    #[serde(default)]
    pub missing: MissingPolicy,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreComponent {
    pub metric: String,
    /// Weight of the component (when the score has no `families`); weights must sum to 1.
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub direction: Direction,
}

/// Data gates: checks on the inputs per period. Alerts in a period whose gate fails are written
/// with status `suppressed` and the reason instead of firing.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatesSpec {
    /// The newest event must be at most this many days before the period end.
    #[serde(default)]
    pub freshness_days: Option<i64>,
    /// Events in the period's last `volume_window` days must be at least this share of the
    /// average of the previous `volume_periods` periods.
    #[serde(default)]
    pub min_volume_ratio: Option<f64>,
    #[serde(default)]
    pub volume_window: Option<i64>,
    #[serde(default)]
    pub volume_periods: Option<u32>,
}
