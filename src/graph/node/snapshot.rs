//! Snapshots' configs: how a new version of a row is told, and what a deleted row does.

use serde_json::Value as Json;

use super::string_list;
use crate::diagnostics::Diagnostic;
use crate::project::ConfigMap;

/// How a snapshot tells a new version of a row (dbt's snapshot configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSpec {
    /// `unique_key`: the columns that identify a row.
    pub unique_key: Vec<String>,
    pub strategy: SnapshotStrategy,
    /// What a row gone from the source does to its history.
    pub hard_deletes: HardDeletes,
    /// `dbt_valid_to_current`: the SQL value current versions have as `dbt_valid_to` (NULL
    /// without it).
    pub valid_to_current: Option<String>,
}

/// `hard_deletes:` of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardDeletes {
    /// Nothing: its current version stays current (the default).
    Ignore,
    /// Its current version is closed at the run's time (also `invalidate_hard_deletes: true`).
    Invalidate,
    /// Its current version is closed and a version marked `dbt_is_deleted = 'True'` opens; every
    /// version has the `dbt_is_deleted` column.
    NewRecord,
}

/// `strategy:` of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStrategy {
    /// A row changed when its `updated_at` is later than its current version's.
    Timestamp { updated_at: String },
    /// A row changed when any of `check_cols` differs (`None`: `all` columns).
    Check { columns: Option<Vec<String>> },
}

impl SnapshotSpec {
    /// Reads a snapshot's configs; the message says which is missing or wrong.
    pub fn from_config(config: &ConfigMap) -> Result<SnapshotSpec, Diagnostic> {
        let unique_key = string_list(config.get("unique_key"));
        if unique_key.is_empty() {
            return Err(Diagnostic::new(
                "a snapshot needs unique_key: the column(s) that identify a row",
            ));
        }
        let text = |key: &str| config.get(key).and_then(Json::as_str).map(str::to_string);
        let strategy = match text("strategy").as_deref() {
            Some("timestamp") => match text("updated_at") {
                Some(updated_at) => SnapshotStrategy::Timestamp { updated_at },
                None => {
                    return Err(Diagnostic::new(
                        "strategy 'timestamp' needs updated_at: the column of each row's last change",
                    ))
                }
            },
            Some("check") => match config.get("check_cols") {
                Some(Json::String(all)) if all == "all" => SnapshotStrategy::Check { columns: None },
                Some(Json::Array(_)) => SnapshotStrategy::Check {
                    columns: Some(string_list(config.get("check_cols"))),
                },
                _ => {
                    return Err(Diagnostic::new(
                        "strategy 'check' needs check_cols: a list of columns, or 'all'",
                    ))
                }
            },
            Some(other) => {
                return Err(Diagnostic::new(format!(
                    "unknown snapshot strategy '{other}'; use timestamp or check"
                )))
            }
            None => return Err(Diagnostic::new("a snapshot needs strategy: timestamp or check")),
        };
        let hard_deletes = match (text("hard_deletes").as_deref(), config.get("invalidate_hard_deletes")) {
            (Some("invalidate"), _) | (None, Some(Json::Bool(true))) => HardDeletes::Invalidate,
            (Some("new_record"), _) => HardDeletes::NewRecord,
            (Some("ignore"), _) | (None, _) => HardDeletes::Ignore,
            (Some(other), _) => {
                return Err(Diagnostic::new(format!(
                    "unknown hard_deletes '{other}'; use ignore, invalidate or new_record"
                )))
            }
        };
        let valid_to_current = match config.get("dbt_valid_to_current") {
            None | Some(Json::Null) => None,
            Some(Json::String(sql)) if !sql.trim().is_empty() => Some(sql.clone()),
            Some(other) => {
                return Err(Diagnostic::new(format!(
                    "dbt_valid_to_current must be a SQL expression in a string, such as \"to_date('9999-12-31')\", not {other}"
                )))
            }
        };
        Ok(SnapshotSpec {
            unique_key,
            strategy,
            hard_deletes,
            valid_to_current,
        })
    }
}
