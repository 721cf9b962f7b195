//! `source freshness`: how old the newest row of a source table is, against its
//! `warn_after` / `error_after`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use serde_json::Value as Json;

use super::{run_query_preview, Session};
use crate::diagnostics::Error;
use crate::graph::{Graph, Node};
use crate::project::properties::{Freshness, FreshnessLimit};
use crate::project::{Project, Target};

/// One source table's freshness.
pub struct Checked {
    /// `pass`, `warn`, `error` or `runtime error`.
    pub status: &'static str,
    /// The newest `loaded_at_field` value (ISO 8601).
    pub max_loaded_at: Option<String>,
    pub age_seconds: Option<f64>,
    pub error: Option<String>,
}

/// Measures source tables in the target's warehouse.
pub struct FreshnessCheck {
    session: Session,
    /// `--warn-error`: a table past its `warn_after` is an error.
    warn_error: bool,
}

impl FreshnessCheck {
    /// A session reading the target's warehouse, for the sources of `graph`.
    pub fn open(
        project: &Project,
        target: &Target,
        graph: Arc<Graph>,
        warn_error: bool,
    ) -> Result<FreshnessCheck, Error> {
        let warehouse = super::run::open_warehouse(project, target)?;
        let session = Session::new(target, warehouse, graph, Arc::new(Default::default()))
            .map_err(|error| Error::Environment(error.to_string()))?;
        Ok(FreshnessCheck { session, warn_error })
    }

    /// How fresh the source table `node` is against `freshness`, at `now`.
    pub async fn check(&self, node: &Node, freshness: &Freshness, now: chrono::DateTime<chrono::Utc>) -> Checked {
        let mut checked = check(&self.session, node, freshness, now).await;
        if self.warn_error && checked.status == "warn" {
            checked.status = "error";
        }
        checked
    }
}

async fn check(session: &Session, node: &Node, freshness: &Freshness, now: chrono::DateTime<chrono::Utc>) -> Checked {
    let runtime_error = |error: String| Checked {
        status: "runtime error",
        max_loaded_at: None,
        age_seconds: None,
        error: Some(error),
    };
    let Some(field) = node.config.get("loaded_at_field").and_then(Json::as_str) else {
        return runtime_error(format!(
            "source {}.{} has a freshness: but no loaded_at_field (on the table or its source) to measure it by",
            node.fqn[1], node.name
        ));
    };
    let Some(relation) = node.relation() else {
        return runtime_error(format!("{} is not a source table", node.unique_id));
    };
    let filter = freshness
        .filter
        .as_deref()
        .map(|f| format!(" where {f}"))
        .unwrap_or_default();
    let sql = format!(
        "select cast(max(cast({field} as timestamp)) as varchar) as max_loaded_at, \
         cast(max(cast({field} as timestamp)) as bigint) as max_nanos from {}{filter}",
        relation.rendered
    );
    // The query reads the source as a node reading it would.
    let mut reader = node.clone();
    reader.depends_on = vec![node.unique_id.clone()];
    let batches = match run_query_preview(session, &reader, &sql, 1).await {
        Ok(batches) => batches,
        Err(error) => return runtime_error(error.to_string()),
    };
    let Some(batch) = batches.first().filter(|batch| batch.num_rows() > 0) else {
        return runtime_error("the freshness query returned nothing".into());
    };
    let text = batch.column(0).as_any().downcast_ref::<StringArray>();
    let nanos = batch.column(1).as_any().downcast_ref::<Int64Array>();
    let (Some(text), Some(nanos)) = (text, nanos) else {
        return runtime_error("unexpected result types of the freshness query".into());
    };
    if nanos.is_null(0) {
        // No rows: as stale as can be.
        let status = if freshness.error_after.is_some() {
            "error"
        } else {
            "warn"
        };
        return Checked {
            status,
            max_loaded_at: None,
            age_seconds: None,
            error: Some(format!("{field} has no value (the table is empty or filtered out)")),
        };
    }
    let age = (now.timestamp_nanos_opt().unwrap_or_default() - nanos.value(0)) as f64 / 1e9;
    let over = |limit: &Option<FreshnessLimit>| limit.as_ref().is_some_and(|l| age > l.seconds() as f64);
    let status = if over(&freshness.error_after) {
        "error"
    } else if over(&freshness.warn_after) {
        "warn"
    } else {
        "pass"
    };
    Checked {
        status,
        max_loaded_at: Some(text.value(0).replace(' ', "T")),
        age_seconds: Some(age),
        error: None,
    }
}
