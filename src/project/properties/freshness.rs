//! Source freshness (`freshness: {warn_after, error_after}`): limits as a count and a period.

use super::*;
use crate::diagnostics::Diagnostic;

/// `freshness: {warn_after: {count: 12, period: hour}, error_after: {...}, filter: "..."}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Freshness {
    pub warn_after: Option<FreshnessLimit>,
    pub error_after: Option<FreshnessLimit>,
    pub filter: Option<String>,
}

/// `{count: 12, period: hour}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FreshnessLimit {
    pub count: u64,
    pub period: String,
}

impl FreshnessLimit {
    pub fn seconds(&self) -> u64 {
        let unit = match self.period.as_str() {
            "minute" => 60,
            "hour" => 3600,
            _ => 86_400,
        };
        self.count * unit
    }
}

/// A field given explicitly, even as `null` (which `Option` alone would read as absent).
pub(super) fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_yaml::Value>, D::Error> {
    serde_yaml::Value::deserialize(deserializer).map(Some)
}

/// Reads a `freshness:` value (`null`: no freshness check).
pub(super) fn freshness_of(value: &serde_yaml::Value) -> Result<Option<Freshness>, Diagnostic> {
    let json = super::super::project_file::yaml_to_json(value)?;
    let map = match json {
        Json::Null => return Ok(None),
        Json::Object(map) => map,
        other => {
            return Err(Diagnostic::new(format!(
                "freshness is a mapping with warn_after/error_after, not {other}"
            )))
        }
    };
    let limit = |key: &str| -> Result<Option<FreshnessLimit>, Diagnostic> {
        let Some(value) = map.get(key) else { return Ok(None) };
        if value.is_null() {
            return Ok(None);
        }
        let count = value.get("count").and_then(Json::as_u64);
        let period = value.get("period").and_then(Json::as_str);
        match (count, period) {
            (Some(count), Some(period)) if ["minute", "hour", "day"].contains(&period) => Ok(Some(FreshnessLimit {
                count,
                period: period.to_string(),
            })),
            _ => Err(Diagnostic::new(format!(
                "freshness {key} is {{count: <whole number>, period: minute|hour|day}}, not {value}"
            ))),
        }
    };
    for key in map.keys() {
        if !["warn_after", "error_after", "filter"].contains(&key.as_str()) {
            return Err(Diagnostic::new(format!(
                "unknown freshness key '{key}'; use warn_after, error_after and filter"
            )));
        }
    }
    let freshness = Freshness {
        warn_after: limit("warn_after")?,
        error_after: limit("error_after")?,
        filter: map.get("filter").and_then(Json::as_str).map(str::to_string),
    };
    Ok((freshness.warn_after.is_some() || freshness.error_after.is_some()).then_some(freshness))
}
