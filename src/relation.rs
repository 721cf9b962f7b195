//! Names of relations as SQL sees them, and the time range of a time-range run.
//!
//! Plain data shared by every stage (templates render them, the graph assigns them, execute and
//! materialize read and write them); this module depends on nothing else in tidemark.

/// A relation as SQL sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationName {
    pub schema: String,
    pub identifier: String,
    /// What `{{ ref(...) }}` renders to: `"main"."stg_events"`, or a CTE name for ephemeral models.
    pub rendered: String,
}

impl RelationName {
    /// A relation in `schema` named `identifier`, rendered with quoted identifiers.
    pub fn table(schema: &str, identifier: &str) -> RelationName {
        RelationName {
            schema: schema.to_string(),
            identifier: identifier.to_string(),
            rendered: format!("{}.{}", quote_identifier(schema), quote_identifier(identifier)),
        }
    }
}

/// Quotes an identifier for DataFusion SQL.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The time range a time-range incremental run reads: SQL date expressions (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFilter {
    pub lower: Option<String>,
    pub upper: Option<String>,
    /// The first date the run recomputes (`lower` is earlier by the model's `lookback_days`);
    /// `None` when the filter is an output range itself.
    pub start: Option<chrono::NaiveDate>,
}

impl TimeFilter {
    /// The SQL condition that `column` (a date, timestamp or day number) is within the range.
    pub fn condition(&self, column: &str) -> String {
        let value = format!("cast({column} as date)");
        let mut parts = Vec::new();
        if let Some(lower) = &self.lower {
            parts.push(format!("{value} >= {lower}"));
        }
        if let Some(upper) = &self.upper {
            parts.push(format!("{value} <= {upper}"));
        }
        if parts.is_empty() {
            "true".into()
        } else {
            format!("({})", parts.join(" and "))
        }
    }
}

impl TimeFilter {
    /// The range the run recomputes (from `start`, without the lookback), widened by
    /// `days_before` days before its start: `event_time_range`.
    pub fn recomputed(&self, days_before: i64) -> TimeFilter {
        TimeFilter {
            lower: self
                .start
                .map(|date| format!("date '{}'", date - chrono::Duration::days(days_before)))
                .or_else(|| self.lower.clone()),
            upper: self.upper.clone(),
            start: None,
        }
    }
}
