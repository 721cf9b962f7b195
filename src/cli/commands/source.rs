//! `source freshness`: how old the newest row of each source table with a `freshness:` is,
//! against its `warn_after`/`error_after`; results in `target/sources.json`.

use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};

use crate::artifacts::Artifacts;
use crate::cli::load::load;
use crate::cli::{ExitStatus, GlobalArgs, Printer, SelectArgs};
use crate::diagnostics::Error;
use crate::documents::{self, FreshnessCriteria, SourceFreshness, Sources};
use crate::execute::freshness::FreshnessCheck;
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

pub(crate) async fn execute(
    global: &GlobalArgs,
    printer: &Arc<Printer>,
    command: SourceCommand,
) -> Result<ExitStatus, Error> {
    let SourceCommand::Freshness(args) = command;
    let clock = Instant::now();
    let loaded = load(global, printer)?;
    let scope = Scope {
        models: false,
        seeds: false,
        tests: false,
        sources: true,
        snapshots: false,
    };
    let selected = loaded.select(&args.selection, scope)?;
    let checked_sources: Vec<&Node> = selected
        .iter()
        .map(|id| &loaded.graph.nodes[id])
        .filter(|node| node.resource_type == ResourceType::Source && node.config.contains_key("freshness"))
        .collect();
    if checked_sources.is_empty() {
        printer.info("Nothing to do: no selected source table has a freshness: configuration.");
        return Ok(ExitStatus::Success);
    }
    let checker = FreshnessCheck::open(&loaded.project, &loaded.target, loaded.graph.clone(), global.warn_error)?;
    let invocation = uuid::Uuid::new_v4().to_string();
    let artifacts = Artifacts::new(&loaded.project);
    let waiting = |holder: &str| printer.info(&format!("Waiting for another run to finish ({holder})"));
    let lock = artifacts
        .lock(
            &invocation,
            "tidemark source freshness",
            loaded.target.lock_lease,
            std::time::Duration::from_secs(600),
            waiting,
        )
        .await?;
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
        let checked = checker.check(node, &freshness, snapshotted_at).await;
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
    let path = written.map_err(|error| Error::Environment(format!("cannot write the freshness results: {error}")))?;
    printer.info(&format!("Wrote {}", path.display()));
    Ok(worst)
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
