//! `source freshness`: how old the newest row of each source table with a `freshness:` is,
//! against its `warn_after`/`error_after`; results in `target/sources.json`.

use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};
use datafusion::arrow::array::{Array, Int64Array, StringArray};
use serde_json::Value as Json;

use crate::artifacts::Artifacts;
use crate::cli::load::load;
use crate::cli::{ExitStatus, GlobalArgs, Printer, SelectArgs};
use crate::documents::{self, FreshnessCriteria, SourceFreshness, Sources};
use crate::execute::{run_query_preview, Session};
use crate::graph::select::Scope;
use crate::graph::{Node, ResourceType};
use crate::project::properties::{Freshness, FreshnessLimit};

#[derive(Debug, Subcommand)]
pub(crate) enum SourceCommand {
    /// Check how fresh source tables are (their `freshness:` and `loaded_at_field`) and write
    /// target/sources.json.
    Freshness(FreshnessArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FreshnessArgs {
    #[command(flatten)]
    pub selection: SelectArgs,
    /// Write the results here instead of target/sources.json.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

/// One source table's freshness.
struct Checked {
    status: &'static str,
    max_loaded_at: Option<String>,
    age_seconds: Option<f64>,
    error: Option<String>,
}

pub(crate) async fn execute(global: &GlobalArgs, printer: &Arc<Printer>, command: SourceCommand) -> ExitStatus {
    let SourceCommand::Freshness(args) = command;
    let clock = Instant::now();
    let Ok(loaded) = load(global, printer) else {
        return ExitStatus::Error;
    };
    let scope = Scope {
        models: false,
        seeds: false,
        tests: false,
        sources: true,
    };
    let Ok(selected) = loaded.select(&args.selection, scope, printer) else {
        return ExitStatus::Error;
    };
    let checked_sources: Vec<&Node> = selected
        .iter()
        .map(|id| &loaded.graph.nodes[id])
        .filter(|node| node.resource_type == ResourceType::Source && node.config.contains_key("freshness"))
        .collect();
    if checked_sources.is_empty() {
        printer.info("Nothing to do: no selected source table has a freshness: configuration.");
        return ExitStatus::Success;
    }
    let Ok(warehouse) = super::open_warehouse(&loaded.project, &loaded.target, printer) else {
        return ExitStatus::Error;
    };
    let invocation = uuid::Uuid::new_v4().to_string();
    let artifacts = Artifacts::new(&loaded.project);
    let waiting = |holder: &str| printer.info(&format!("Waiting for another run to finish ({holder})"));
    let lock = match artifacts
        .lock(
            &invocation,
            "tidemark source freshness",
            loaded.target.lock_lease,
            std::time::Duration::from_secs(600),
            waiting,
        )
        .await
    {
        Ok(lock) => lock,
        Err(message) => {
            printer.fatal(&message);
            return ExitStatus::Error;
        }
    };
    let graph = Arc::new(loaded.graph.clone());
    let session = match Session::new(&loaded.target, warehouse, graph.clone(), Arc::new(Default::default())) {
        Ok(session) => session,
        Err(error) => {
            lock.release().await;
            printer.fatal(&error.to_string());
            return ExitStatus::Error;
        }
    };
    let snapshotted_at = chrono::Utc::now();
    let total = checked_sources.len();
    let mut results = Vec::new();
    let mut worst = ExitStatus::Success;
    for (index, node) in checked_sources.iter().enumerate() {
        let freshness: Freshness = serde_json::from_value(node.config["freshness"].clone()).unwrap_or(Freshness {
            warn_after: None,
            error_after: None,
            filter: None,
        });
        let name = format!("{}.{}", node.fqn[1], node.name);
        let checked = check(&session, node, &freshness, snapshotted_at).await;
        let detail = match (&checked.max_loaded_at, checked.age_seconds) {
            (Some(max), Some(age)) => format!("newest row {max}, {} old", describe_age(age)),
            _ => checked.error.clone().unwrap_or_else(|| "no rows".into()),
        };
        let limits: Vec<String> = [("warn", &freshness.warn_after), ("error", &freshness.error_after)]
            .iter()
            .filter_map(|(word, limit)| {
                limit
                    .as_ref()
                    .map(|l| format!("{word} after {} {}s", l.count, l.period))
            })
            .collect();
        printer.info(&format!(
            "{} of {total} {} freshness of source {name}: {detail} ({})",
            index + 1,
            checked.status.to_uppercase(),
            limits.join(", ")
        ));
        if matches!(checked.status, "error" | "runtime error") {
            worst = ExitStatus::Failure;
        }
        results.push(SourceFreshness {
            unique_id: node.unique_id.clone(),
            status: checked.status.to_string(),
            max_loaded_at: checked.max_loaded_at,
            snapshotted_at: snapshotted_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            max_loaded_at_time_ago_in_s: checked.age_seconds,
            criteria: FreshnessCriteria {
                warn_after: freshness.warn_after.as_ref().map(limit),
                error_after: freshness.error_after.as_ref().map(limit),
                filter: freshness.filter,
            },
            loaded_at_field: node.config.get("loaded_at_field").cloned(),
            error: checked.error,
        });
    }
    let document = Sources {
        metadata: crate::artifacts::invocation_metadata(&invocation),
        elapsed_time: clock.elapsed().as_secs_f64(),
        results,
    };
    let written = match &args.output {
        Some(path) => crate::artifacts::write_json(path, &document).map(|()| path.clone()),
        None => artifacts.write_sources(&document),
    };
    lock.release().await;
    match written {
        Ok(path) => printer.info(&format!("Wrote {}", path.display())),
        Err(error) => {
            printer.fatal(&format!("cannot write the freshness results: {error}"));
            return ExitStatus::Error;
        }
    }
    worst
}

/// A `warn_after`/`error_after` as `sources.json` records it.
fn limit(limit: &FreshnessLimit) -> documents::FreshnessLimit {
    documents::FreshnessLimit {
        count: limit.count,
        period: limit.period.clone(),
    }
}

/// `3.5 hours`, `2 days`, `40 minutes`.
fn describe_age(seconds: f64) -> String {
    if seconds >= 2.0 * 86_400.0 {
        format!("{:.1} days", seconds / 86_400.0)
    } else if seconds >= 3_600.0 {
        format!("{:.1} hours", seconds / 3_600.0)
    } else {
        format!("{:.0} minutes", seconds / 60.0)
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
    let relation = node.relation.as_ref().expect("sources have relations");
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
