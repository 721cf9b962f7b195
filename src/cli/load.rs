//! Loading shared by the commands: project, target, vars, templates and graph.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::{GlobalArgs, Printer};
use crate::compile::{CompileOptions, CompiledProject, TemplateEngine};
use crate::diagnostics::{Diagnostic, Error};
use crate::graph::select::Scope;
use crate::graph::{self, Graph};
use crate::project::{self, Project, Target};

/// A loaded project, ready to select and compile.
pub(super) struct Loaded {
    pub project: Project,
    pub target: Target,
    /// Shared with the run's recompiling of introspective nodes.
    pub engine: std::sync::Arc<TemplateEngine>,
    /// Shared with the engine's queries (`run_query`).
    pub graph: std::sync::Arc<Graph>,
    /// The project's vars overridden by `--vars`.
    pub vars: BTreeMap<String, Json>,
}

/// Loads everything up to the graph; its warnings are printed.
pub(super) fn load(global: &GlobalArgs, printer: &std::sync::Arc<Printer>) -> Result<Loaded, Error> {
    let project::Loaded { project, target, vars } = project::load_for_target(
        &global.project_dir,
        global.profiles_dir.as_deref(),
        global.target.as_deref(),
        global.vars.as_deref(),
    )?;
    let engine = std::sync::Arc::new(TemplateEngine::new(&project, &target, vars.clone())?);
    let graph = std::sync::Arc::new(graph::build(&project, &engine, &target)?);
    // What templates print, and where their queries run (opened on the first one).
    let logs = printer.clone();
    engine.set_logger(std::sync::Arc::new(move |message: &str| logs.info(message)));
    engine.set_warn_error(global.warn_error);
    if let Ok(queries) = crate::execute::introspect::WarehouseQueries::new(&project, &target, graph.clone()) {
        engine.set_query_runner(std::sync::Arc::new(queries));
    }
    // --warn-error: every warning is an error (listed by file and line).
    if global.warn_error {
        crate::diagnostics::Diagnostics(graph.warnings.clone()).into_result(())?;
    }
    for warning in &graph.warnings {
        printer.warning(warning);
    }
    Ok(Loaded {
        project,
        target,
        engine,
        graph,
        vars,
    })
}

impl Loaded {
    /// The nodes `selection` picks within `scope`.
    pub(super) fn select(&self, selection: &super::SelectArgs, scope: Scope) -> Result<BTreeSet<String>, Diagnostic> {
        let state = self.state(selection)?;
        let context = crate::graph::select::Context {
            state: state.as_ref(),
            selectors: &self.project.selectors,
        };
        // --selector NAME, else --select, else the selector marked `default: true`.
        let select = match (&selection.selector, selection.select.is_empty()) {
            (Some(name), _) => vec![format!("selector:{name}")],
            (None, false) => selection.select.clone(),
            (None, true) => self
                .project
                .selectors
                .iter()
                .find(|selector| selector.default)
                .map(|selector| vec![format!("selector:{}", selector.name)])
                .unwrap_or_default(),
        };
        crate::graph::select::select(&self.graph, &select, &selection.exclude, scope, &context)
    }

    /// The saved run of `--state`, if given.
    pub(super) fn state(
        &self,
        selection: &super::SelectArgs,
    ) -> Result<Option<crate::graph::state::State>, Diagnostic> {
        selection
            .state
            .as_ref()
            .map(|folder| crate::graph::state::State::load(folder))
            .transpose()
    }

    /// Compiles one node again, with `options`, for a run's introspective nodes (see
    /// [`crate::execute::session::Recompile`]).
    pub(super) fn recompiler(&self, options: CompileOptions) -> crate::execute::session::Recompile {
        let (project, target, vars) = (self.project.clone(), self.target.clone(), self.vars.clone());
        let (graph, engine) = (self.graph.clone(), self.engine.clone());
        std::sync::Arc::new(move |node| {
            let selected: BTreeSet<String> = [node.unique_id.clone()].into();
            let compiled = crate::compile::compile_with_unit_test_vars(
                &project, &target, &vars, &graph, &engine, &selected, &options,
            )
            .map_err(|problems| problems.to_string())?;
            compiled
                .nodes
                .get(&node.unique_id)
                .map(|compiled| compiled.sql.clone())
                .ok_or_else(|| format!("{} was not compiled again", node.unique_id))
        })
    }

    /// Compiles the `selected` nodes of `graph` (this project's, or a copy with more nodes),
    /// unit tests with their own vars.
    pub(super) fn compile(
        &self,
        graph: &Graph,
        selected: &BTreeSet<String>,
        options: &CompileOptions,
    ) -> Result<CompiledProject, Error> {
        let compiled = crate::compile::compile_with_unit_test_vars(
            &self.project,
            &self.target,
            &self.vars,
            graph,
            &self.engine,
            selected,
            options,
        )?;
        Ok(compiled)
    }
}
