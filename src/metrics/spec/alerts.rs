//! The alert rules of a metric model and what follows them: severities, cases (escalation,
//! recovery), notifications, control charts and the score validations.

use serde::Deserialize;

use super::EventsSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeverityLevel {
    Low,
    Medium,
    High,
}

impl SeverityLevel {
    /// Parses `low`, `medium` or `high`.
    pub fn parse(text: &str) -> Option<SeverityLevel> {
        match text {
            "low" => Some(SeverityLevel::Low),
            "medium" => Some(SeverityLevel::Medium),
            "high" => Some(SeverityLevel::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SeverityLevel::Low => "low",
            SeverityLevel::Medium => "medium",
            SeverityLevel::High => "high",
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityTier {
    pub level: SeverityLevel,
    /// Extra SQL condition for this tier; tiers are tried in order, the first that holds wins.
    #[serde(default)]
    pub when: Option<String>,
}

/// An alert rule over scorecard columns.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    pub name: String,
    /// SQL condition over scorecard columns.
    #[serde(default)]
    pub when: Option<String>,
    /// Control chart: fire when `metric` is outside mean ± k·σ of its trailing baseline.
    #[serde(default)]
    pub control_chart: Option<ControlChartSpec>,
    /// EWMA chart: fire when the exponentially weighted mean of `metric`'s standardised values
    /// (against the entity's own trailing baseline) falls below −L·σ_EWMA.
    #[serde(default)]
    pub ewma: Option<EwmaSpec>,
    /// Lower CUSUM: fire when the cumulative shortfall of `metric`'s standardised values below
    /// −k exceeds h.
    #[serde(default)]
    pub cusum: Option<CusumSpec>,
    /// Periods in a row the condition must hold (default 1).
    #[serde(rename = "for", default)]
    pub consecutive: Option<u32>,
    /// SQL condition: rows without enough data are never judged.
    #[serde(default)]
    pub min_sample: Option<String>,
    /// Tiers, most severe first (default: one `medium` tier).
    #[serde(default)]
    pub severity: Vec<SeverityTier>,
    /// Role the alert is routed to.
    #[serde(default)]
    pub owner: Option<String>,
    /// Column reported as the alert's value.
    pub value: String,
    /// SQL expression reported as the threshold or baseline.
    #[serde(default)]
    pub threshold: Option<String>,
    /// Reason text; `{column}` is replaced by the row's value (numbers rounded to 2 decimals).
    pub reason: String,
    /// Judge only periods from this date (`2026-09-01`) or from this period of the grid on
    /// (`4`: the first four are warm-up); earlier periods still count toward a streak.
    #[serde(default)]
    pub active_from: Option<ActiveFrom>,
    /// Periods in a row out of breach after which a case is resolved (default 2).
    #[serde(default)]
    pub resolve_after: Option<u32>,
    /// Who a case escalates to, once it has been open `after` periods.
    #[serde(default)]
    pub escalate: Option<EscalateSpec>,
    /// How a case's recovery is judged at 30, 60 and 90 days after it opened.
    #[serde(default)]
    pub recovery: Option<RecoverySpec>,
    /// The least severity of a new case that fails `build` (as `--fail-on-alert` does).
    #[serde(default)]
    pub gate: Option<SeverityLevel>,
    /// Where this rule's new, reopened and escalated cases are sent (instead of the metric
    /// model's `notify:`).
    #[serde(default)]
    pub notify: Option<Vec<NotifySpec>>,
}

/// A notification target: a webhook (`url` and `headers` may use `env_var()`, rendered only when
/// sending) or a command (the payload on its stdin).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// A score's validation: does it, at each period end, rank the entities whose outcome follows
/// within `horizon_days` apart from the others?
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSpec {
    pub name: String,
    /// The scorecard column judged.
    pub score: String,
    /// The outcome's events: a model (or seed) with the entity and the time each happened.
    pub outcome: EventsSpec,
    /// Days after the period end in which the outcome counts.
    pub horizon_days: u32,
    /// `higher` (default): a higher score predicts the outcome (completion); `lower`: a lower
    /// score does (attrition).
    #[serde(default)]
    pub predicts: Option<Predicts>,
    /// The least AUC a judged period may have; below it, the test `<name>_validation_floor`
    /// fails with the period.
    #[serde(default)]
    pub min_auc: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Predicts {
    Higher,
    Lower,
}

/// `active_from:` of an alert: a date, or a number of periods into the grid.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ActiveFrom {
    Periods(u32),
    Date(String),
}

/// `escalate:` of an alert.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateSpec {
    /// Periods a case has been open (counting the one it opened in as 0) before it escalates.
    pub after: u32,
    /// The role it escalates to.
    pub to: String,
}

/// `recovery:` of an alert: a case has recovered at a checkpoint when the alert's value is back
/// to within `within` (a fraction, default 0.1) of `baseline` at opening, or beyond it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySpec {
    /// Scorecard column of the entity's baseline (its value before the drop).
    pub baseline: String,
    #[serde(default)]
    pub within: Option<f64>,
    /// `down` (default: the alert is about a drop, so values above the baseline count as
    /// recovered), `up`, or `both` (only values within the band).
    #[serde(default)]
    pub direction: Option<RecoveryDirection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryDirection {
    Down,
    Up,
    Both,
}

/// `ewma:` of an alert (statistical process control, for drops).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EwmaSpec {
    pub metric: String,
    /// Weight of the newest value (default 0.2).
    #[serde(default)]
    pub lambda: Option<f64>,
    /// Width of the limit in σ of the EWMA (default 3).
    #[serde(default, rename = "L")]
    pub limit: Option<f64>,
    /// Trailing periods of the baseline (mean and σ; default 8).
    #[serde(default)]
    pub periods: Option<u32>,
    /// Periods just before the judged one left out of the baseline, so a drop in progress does
    /// not lower it (default 0).
    #[serde(default)]
    pub skip: Option<u32>,
    /// σ floor (absolute).
    #[serde(default)]
    pub sigma_floor: Option<f64>,
}

/// `cusum:` of an alert (one-sided, lower: for drops).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CusumSpec {
    pub metric: String,
    /// Allowance in σ (default 0.5).
    #[serde(default)]
    pub k: Option<f64>,
    /// Decision interval in σ (default 4).
    #[serde(default)]
    pub h: Option<f64>,
    #[serde(default)]
    pub periods: Option<u32>,
    #[serde(default)]
    pub skip: Option<u32>,
    #[serde(default)]
    pub sigma_floor: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlChartSpec {
    pub metric: String,
    /// Trailing periods forming the centre line and σ (default 8).
    #[serde(default)]
    pub periods: Option<u32>,
    /// Fire below mean − k·σ (default 3).
    #[serde(default)]
    pub sigma: Option<f64>,
    /// Also fire after this many consecutive periods below the centre line.
    #[serde(default)]
    pub run_below: Option<u32>,
    /// σ floor (absolute), as for baselines.
    #[serde(default)]
    pub sigma_floor: Option<f64>,
}
