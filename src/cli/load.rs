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
    pub engine: TemplateEngine,
    pub graph: Graph,
    /// The project's vars overridden by `--vars`.
    pub vars: BTreeMap<String, Json>,
}

/// Loads everything up to the graph; its warnings are printed.
pub(super) fn load(global: &GlobalArgs, printer: &Printer) -> Result<Loaded, Error> {
    let project::Loaded { project, target, vars } = project::load_for_target(
        &global.project_dir,
        global.profiles_dir.as_deref(),
        global.target.as_deref(),
        global.vars.as_deref(),
    )?;
    let engine = TemplateEngine::new(&project, &target, vars.clone())?;
    let graph = graph::build(&project, &engine, &target)?;
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
