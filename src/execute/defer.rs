//! `--defer`: which unselected tables a run reads from the `--state` run's warehouse instead of
//! its own. Only where a table is registered from changes; compiled SQL and the manifest do not.

use std::collections::BTreeSet;
use std::path::Path;

use crate::diagnostics::Diagnostic;
use crate::graph::state::State;
use crate::graph::Graph;
use crate::materialize::Warehouse;
use crate::project::{Project, Target};
use crate::relation::RelationName;

/// An unselected node read from another warehouse: its unique id, that warehouse, and the
/// relation the `--state` run stored it as.
pub(super) type Deferred = (String, Warehouse, RelationName);

/// What deciding the deferrals reads besides the saved run.
pub(super) struct Needs<'a> {
    pub project: &'a Project,
    /// This run's target (its storage settings reach the saved run's store when its own target
    /// is not in this project's profiles).
    pub target: &'a Target,
    pub profiles_dir: Option<&'a Path>,
    pub graph: &'a Graph,
    pub selected: &'a BTreeSet<String>,
    /// `--favor-state`: defer a table even when this target has built it.
    pub favor_state: bool,
}

/// The `--state` run's warehouse and the tables to read from it: every table the selection
/// reads (directly or through views and ephemeral models) that is not selected and that this
/// target has not built (all of them with `--favor-state`).
pub(super) async fn deferrals(
    state: &State,
    needs: &Needs<'_>,
    warehouse: &Warehouse,
) -> Result<(Warehouse, Vec<Deferred>), Diagnostic> {
    let Some(location) = state.warehouse() else {
        return Err(Diagnostic::new(format!(
            "--defer: {}/manifest.json does not record its warehouse",
            state.folder.display()
        ))
        .with_help("write the state with this version of tidemark (any build, run or compile does)"));
    };
    let base = if location.contains("://") && !location.starts_with("file://") {
        // The saved run's own target (by name, from this project's profiles) knows how to reach
        // its store; else this target's settings are tried.
        let settings = state
            .target_name()
            .and_then(|name| crate::project::load_target(needs.project, needs.profiles_dir, Some(name)).ok())
            .filter(|target| target.warehouse == location)
            .map(|target| target.storage)
            .unwrap_or_else(|| needs.target.storage.clone());
        Warehouse::open_url(location, &settings)
    } else {
        Warehouse::open_local(location.trim_start_matches("file://").into())
    }
    .map_err(|error| {
        Diagnostic::new(format!(
            "--defer: cannot open the --state run's warehouse {location}: {error}"
        ))
    })?;
    let graph = needs.graph;
    let mut needed = BTreeSet::new();
    for id in needs.selected {
        needed.extend(graph.ancestors(id, None));
    }
    let mut deferred = Vec::new();
    for id in needed.difference(needs.selected) {
        let node = &graph.nodes[id];
        let Some(relation) = node.relation().filter(|_| node.writes_table()) else {
            continue;
        };
        let Some(stored) = state.relation(id).and_then(|text| text.split_once('.')) else {
            continue;
        };
        let built_here = warehouse
            .table_exists(relation)
            .await
            .map_err(|error| Diagnostic::new(format!("warehouse {}: {error}", warehouse.display())))?;
        if built_here && !needs.favor_state {
            continue;
        }
        deferred.push((id.clone(), base.clone(), RelationName::table(stored.0, stored.1)));
    }
    Ok((base, deferred))
}
