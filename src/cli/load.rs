//! Loading shared by the commands: project, target, vars, templates and graph.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{GlobalArgs, Printer};
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::graph::{self, Graph};
use crate::project::{self, Project, Target};
use crate::template::TemplateEngine;

/// A loaded project, ready to select and compile.
pub(super) struct Loaded {
    pub project: Project,
    pub target: Target,
    pub engine: TemplateEngine,
    pub graph: Graph,
    /// The project's vars overridden by `--vars`.
    pub vars: BTreeMap<String, Json>,
}

/// Loads everything up to the graph; problems are printed and returned as `Err`.
pub(super) fn load(global: &GlobalArgs, printer: &Printer) -> Result<Loaded, ()> {
    let report = |diagnostics: Diagnostics| printer.diagnostics(&diagnostics);
    let project = project::load(&global.project_dir).map_err(report)?;
    let target = project::load_target(&project, global.profiles_dir.as_deref(), global.target.as_deref())
        .map_err(|diagnostic| report(diagnostic.into()))?;
    let vars = merged_vars(&project, global.vars.as_deref()).map_err(|diagnostic| report(diagnostic.into()))?;
    let engine = TemplateEngine::new(&project, &target, vars.clone()).map_err(report)?;
    let graph = graph::build(&project, &engine, &target).map_err(report)?;
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

/// Project vars overridden by `--vars`.
fn merged_vars(project: &Project, overrides: Option<&str>) -> Result<BTreeMap<String, Json>, Diagnostic> {
    let mut vars = project.file.vars.clone();
    if let Some(text) = overrides {
        let parsed: BTreeMap<String, Json> = serde_yaml::from_str(text).map_err(|error| {
            Diagnostic::new(format!("--vars is not a YAML/JSON mapping: {error}"))
                .with_help("write it as --vars '{name: value, other: 2}'")
        })?;
        vars.extend(parsed);
    }
    Ok(vars)
}

impl Loaded {
    /// The nodes `selection` picks within `scope`; a bad selector is printed and returned as `Err`.
    pub(super) fn select(
        &self,
        selection: &super::SelectArgs,
        scope: crate::graph::select::Scope,
        printer: &Printer,
    ) -> Result<std::collections::BTreeSet<String>, ()> {
        let report = |diagnostic: Diagnostic| printer.diagnostics(&diagnostic.into());
        let state = self.state(selection).map_err(report)?;
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
        crate::graph::select::select(&self.graph, &select, &selection.exclude, scope, &context).map_err(report)
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
}

/// Compiles `selected` nodes of `graph`; compile errors are printed and returned as `Err`.
pub(super) fn compile_or_report(
    loaded: &Loaded,
    graph: &Graph,
    selected: &std::collections::BTreeSet<String>,
    options: &crate::compile::CompileOptions,
    printer: &Printer,
) -> Result<crate::compile::CompiledProject, ()> {
    crate::compile::compile_with_unit_test_vars(
        &loaded.project,
        &loaded.target,
        &loaded.vars,
        graph,
        &loaded.engine,
        selected,
        options,
    )
    .map_err(|diagnostics| printer.diagnostics(&diagnostics))
}
