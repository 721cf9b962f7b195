//! Run planning for incremental models: which run incrementally, and for time-range runs which
//! dates each model recomputes and reads.
//!
//! An incremental model with an `event_time` whose table exists recomputes the rows from a
//! start date on (and replaces the table's rows from that date): `--event-time-start` when
//! given; otherwise the latest date its table holds, or the start of any time-range model
//! upstream of it, whichever is earlier (a scorecard must recompute every period whose days
//! its daily roll-up recomputes). Starts are read from the tables before anything runs. Its
//! inputs with an `event_time` are read from the start minus its `lookback_days`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::NaiveDate;

use super::Session;
use crate::compile::CompiledProject;
use crate::diagnostics::{Diagnostic, Error};
use crate::graph::Graph;
use crate::materialize::Warehouse;
use crate::project::Target;
use crate::relation::{quote_identifier, TimeFilter};

/// Time filters of the inputs (for compiling) and the output range condition of each
/// time-range model (for writing), by unique id.
pub(super) type Plan = (BTreeMap<String, TimeFilter>, BTreeMap<String, String>);

/// The selected incremental models that run incrementally (`is_incremental()` is true): those
/// whose table exists, unless `full_refresh` rebuilds them (and their config does not forbid it).
pub(super) async fn incremental_models(
    graph: &Graph,
    selected: &BTreeSet<String>,
    warehouse: &Warehouse,
    full_refresh: bool,
) -> Result<BTreeSet<String>, Error> {
    let mut incremental = BTreeSet::new();
    for id in selected {
        let node = &graph.nodes[id];
        let (crate::graph::Materialization::Incremental, Some(relation)) = (node.materialized, node.relation()) else {
            continue;
        };
        let protected = node.incremental().ok().and_then(|c| c.full_refresh) == Some(false);
        if full_refresh && !protected {
            continue;
        }
        if warehouse
            .table_exists(relation)
            .await
            .map_err(|error| Error::Environment(format!("warehouse {}: {error}", warehouse.display())))?
        {
            incremental.insert(id.clone());
        }
    }
    Ok(incremental)
}

/// `--event-time-start` / `--event-time-end` as a date (`flag` names it in the error).
pub(super) fn date_flag(flag: &str, value: &Option<String>) -> Result<Option<NaiveDate>, Diagnostic> {
    match value {
        None => Ok(None),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| Diagnostic::new(format!("--{flag} '{text}' is not a date such as 2026-11-16"))),
    }
}

/// The time range of each time-range model among `incremental` (the models that run
/// incrementally): from `start_flag` when given, else from what its table holds (see the module
/// notes), up to `end_flag`. The error says which model's table could not be read.
pub(super) async fn plan(
    target: &Target,
    graph: &Graph,
    warehouse: &Warehouse,
    incremental: &BTreeSet<String>,
    start_flag: Option<NaiveDate>,
    end_flag: Option<NaiveDate>,
) -> Result<Plan, Error> {
    let candidates: BTreeSet<&String> = incremental
        .iter()
        .filter(|id| graph.nodes[*id].event_time().is_some())
        .collect();
    let mut filters = BTreeMap::new();
    let mut ranges = BTreeMap::new();
    if candidates.is_empty() {
        return Ok((filters, ranges));
    }

    // The latest date each table holds (only needed without --event-time-start).
    let mut latest: BTreeMap<String, Option<NaiveDate>> = BTreeMap::new();
    if start_flag.is_none() {
        let empty = Arc::new(Graph::empty(graph.project_name.clone()));
        let probe = Session::new(target, warehouse.clone(), empty, Arc::new(CompiledProject::default()))
            .map_err(|error| Error::Environment(error.to_string()))?;
        for id in &candidates {
            let node = &graph.nodes[*id];
            let (Some(relation), Some(column)) = (node.relation(), node.event_time()) else {
                continue;
            };
            let date = async {
                probe.register_written_table(relation).await?;
                let frame = probe
                    .ctx
                    .sql(&format!(
                        "select cast(max(cast({} as date)) as varchar) from {}",
                        quote_identifier(&column),
                        relation.rendered
                    ))
                    .await
                    .map_err(super::ExecuteError::from_datafusion)?;
                let batches = frame.collect().await.map_err(super::ExecuteError::from_datafusion)?;
                let text = batches
                    .first()
                    .and_then(|batch| datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0).ok());
                Ok::<_, super::ExecuteError>(text.and_then(|t| NaiveDate::parse_from_str(&t, "%Y-%m-%d").ok()))
            }
            .await
            .map_err(|error| {
                Error::Environment(format!(
                    "model '{}': cannot read the latest {column} of {}: {error}",
                    node.name,
                    node.display_relation()
                ))
            })?;
            latest.insert((*id).clone(), date);
        }
    }

    // Starts, upstream first (graph order is topological).
    let mut starts: BTreeMap<String, Option<NaiveDate>> = BTreeMap::new();
    for id in &graph.order {
        if !candidates.contains(id) {
            continue;
        }
        let start = match start_flag {
            Some(date) => Some(date),
            None => {
                let upstream = upstream_candidates(graph, id, &candidates)
                    .into_iter()
                    .filter_map(|up| starts.get(&up).copied().flatten());
                latest.get(id).copied().flatten().into_iter().chain(upstream).min()
            }
        };
        starts.insert(id.clone(), start);
    }

    for (id, start) in starts {
        let node = &graph.nodes[&id];
        let Some(column) = node.event_time() else { continue };
        let lookback = node
            .lookback_days()
            .map_err(|diagnostic| diagnostic.in_file(node.path.clone()).at_place(node.line, node.column))?;
        let literal = |date: NaiveDate| format!("date '{date}'");
        // An empty table recomputes everything.
        let Some(start) = start else { continue };
        let lower = lookback.map(|days| literal(start - chrono::Duration::days(days)));
        filters.insert(
            id.clone(),
            TimeFilter {
                lower,
                upper: end_flag.map(literal),
                start: Some(start),
            },
        );
        ranges.insert(
            id,
            TimeFilter {
                lower: Some(literal(start)),
                upper: end_flag.map(literal),
                start: None,
            }
            .condition(&quote_identifier(&column)),
        );
    }
    Ok((filters, ranges))
}

/// Time-range models upstream of `id` (through any other nodes).
fn upstream_candidates(graph: &Graph, id: &str, candidates: &BTreeSet<&String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<&str> = graph.nodes[id].depends_on.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    while let Some(next) = stack.pop() {
        if !seen.insert(next.to_string()) {
            continue;
        }
        if candidates.iter().any(|c| c.as_str() == next) {
            found.insert(next.to_string());
        }
        if let Some(node) = graph.nodes.get(next) {
            stack.extend(node.depends_on.iter().map(String::as_str));
        }
    }
    found
}
