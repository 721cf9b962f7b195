//! Stage 2 — template: renders models, tests and macros with minijinja, dbt-style.
//!
//! Rendering happens in two phases, as in dbt:
//! - **parse** renders each model once to record what it calls: `ref`, `source` and `config`
//!   ([`Capture`]). `ref` and `source` render placeholders; `is_incremental()` is false.
//! - **compile** renders again once every node's config is known, with a [`RelationResolver`]
//!   that turns `ref('x')` into the relation it names (or the CTE name of an ephemeral model),
//!   and `is_incremental()` true for incremental models whose table exists.
//!
//! The dbt context (`ref`, `source`, `config`, `var`, `env_var`, `this`, `is_incremental`,
//! `target`, `log`, `exceptions`) and every project macro are globals of one shared
//! [`Environment`]; per-render state lives in a thread-local set around each render, so macros
//! defined in `macros/` see the same context as the model that calls them.

mod adapter;
mod context;
mod modules;
mod mutable;
mod runtime;

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::Environment;
use serde_json::Value as Json;

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::jinja::{base_environment, jinja_diagnostic};
use crate::project::{ConfigMap, Project, Target};
use crate::relation::{quote_identifier, RelationName, TimeFilter};
pub use context::{Capture, RefCall, SourceCall};
pub use runtime::{Logger, QueryRunner, QueryTable};

/// Resolves `ref` and `source` calls during the compile phase.
pub trait RelationResolver: Send + Sync {
    /// The relation `call` names when a node of package `from_package` makes it, and the
    /// `event_time` column of the model, seed or snapshot it names, if it declares one.
    fn resolve_ref(&self, from_package: &str, call: &RefCall) -> Result<(RelationName, Option<String>), Diagnostic>;
    fn resolve_source(&self, source: &str, table: &str) -> Result<RelationName, Diagnostic>;
    /// The `event_time` column of a source table, if it declares one.
    fn source_event_time(&self, _source: &str, _table: &str) -> Option<String> {
        None
    }
}

/// What a compile-phase render of one node needs to know about it.
pub struct CompileContext {
    pub this: RelationName,
    /// The package of the node being compiled: an unpinned `ref()` looks there after the
    /// root project.
    pub package: String,
    pub config: ConfigMap,
    pub is_incremental: bool,
    pub resolver: Arc<dyn RelationResolver>,
    /// Set in a time-range run: refs and sources with an `event_time` read only this range,
    /// `event_time_filter(column)` renders its condition and `event_time_range(column)` the
    /// condition of the dates the run recomputes.
    pub time_filter: Option<TimeFilter>,
    /// dbt's `execute`: `run_query` and `statement` run (false: they return nothing).
    pub execute: bool,
}

/// The shared Jinja environment of a project: dbt context plus project macros.
pub struct TemplateEngine {
    env: Environment<'static>,
    /// Where `run_query` runs and `log` prints, once the caller sets them.
    runtime: Arc<runtime::Runtime>,
    /// Project macros by name: the file defining each and its `{% macro %}…{% endmacro %}` text.
    macros: BTreeMap<String, MacroDefinition>,
    /// The project's vars with `--vars` applied.
    vars: BTreeMap<String, Json>,
}

/// A project macro as written.
#[derive(Debug, Clone)]
pub struct MacroDefinition {
    pub path: String,
    /// The macro's definition, from `{% macro` to its `endmacro %}`.
    pub text: String,
}

impl TemplateEngine {
    /// The value of a var (the project's, or `--vars`), if set.
    pub fn var(&self, name: &str) -> Option<&Json> {
        self.vars.get(name)
    }

    /// Builds the environment. `vars` are the project's vars already overridden by `--vars`.
    pub fn new(project: &Project, target: &Target, vars: BTreeMap<String, Json>) -> Result<Self, Diagnostics> {
        let mut env = base_environment();
        context::install_globals(&mut env, &project.file.name, target, vars.clone());
        let runtime = Arc::new(runtime::Runtime::default());
        runtime::install(&mut env, runtime.clone(), context::compiling);
        mutable::install(&mut env);
        let mut problems = Diagnostics::default();
        let root = project.file.name.clone();
        let mut macros = BTreeMap::new();
        let mut registry: adapter::Macros = BTreeMap::new();
        // The project's macros, then each package's under its name (its own unqualified
        // calls resolve too, unless the project defines a macro of that name).
        let namespaces = std::iter::once((None, &project.macros)).chain(
            project
                .packages
                .iter()
                .map(|package| (Some(package.name.as_str()), &package.macros)),
        );
        for (package, files) in namespaces {
            let mut namespace = BTreeMap::new();
            for (name, (path, text)) in add_macro_files(&mut env, files, &mut problems) {
                let value = adapter::macro_value(name.clone(), path.clone());
                let qualified = match package {
                    None => name.clone(),
                    Some(package) => format!("{package}.{name}"),
                };
                if package.is_none() || !registry.get(&root).is_some_and(|own| own.contains_key(&name)) {
                    env.add_global(name.clone(), value.clone());
                }
                macros.insert(qualified, MacroDefinition { path, text });
                namespace.insert(name, value);
            }
            let namespace_name = package.map(str::to_string).unwrap_or_else(|| root.clone());
            if let Some(package) = package {
                env.add_global(
                    package.to_string(),
                    Value::from_object(adapter::Namespace {
                        name: package.to_string(),
                        macros: namespace.clone(),
                    }),
                );
            }
            registry.insert(namespace_name, namespace);
        }
        // dbt's own macros (`dbt.concat`, ...): also unqualified, unless the project or a
        // package defines the name.
        let builtin = crate::project::SqlFile {
            package: Some("dbt".into()),
            path: DBT_MACROS_PATH.to_string(),
            parts: vec!["dbt_macros".into()],
            text: include_str!("dbt_macros.sql").to_string(),
        };
        let mut dbt = BTreeMap::new();
        for (name, (path, _)) in add_macro_files(&mut env, std::slice::from_ref(&builtin), &mut problems) {
            let value = adapter::macro_value(name.clone(), path);
            if !registry.values().any(|namespace| namespace.contains_key(&name)) {
                env.add_global(name.clone(), value.clone());
            }
            dbt.insert(name, value);
        }
        env.add_global(
            "dbt",
            Value::from_object(adapter::Namespace {
                name: "dbt".into(),
                macros: dbt.clone(),
            }),
        );
        registry.insert("dbt".into(), dbt);
        env.add_global(
            "adapter",
            Value::from_object(adapter::Adapter {
                root,
                macros: registry,
                dispatch: project.file.dispatch.clone(),
                runtime: runtime.clone(),
            }),
        );
        problems.into_result(TemplateEngine {
            env,
            runtime,
            macros,
            vars,
        })
    }

    /// Where `run_query` and `statement` run their SQL from now on.
    pub fn set_query_runner(&self, runner: Arc<dyn QueryRunner>) {
        *self
            .runtime
            .runner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(runner);
    }

    /// `--full-refresh`: what `should_full_refresh()` answers for models without a
    /// `full_refresh` config.
    pub fn set_full_refresh(&self, on: bool) {
        self.runtime
            .full_refresh
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// `--warn-error`: `exceptions.warn(msg)` raises.
    pub fn set_warn_error(&self, on: bool) {
        self.runtime.warn_error.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Where `log(msg, info=True)` and `exceptions.warn(msg)` print from now on.
    pub fn set_logger(&self, logger: Logger) {
        *self
            .runtime
            .logger
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(logger);
    }

    /// The macro of a custom generic test `name` (`{% test name(model, column_name) %}`), or of
    /// a package's (`package.name`).
    pub fn custom_test(&self, name: &str) -> Option<&MacroDefinition> {
        match name.split_once('.') {
            Some((package, test)) => self.macros.get(&format!("{package}.test_{test}")),
            None => self.macros.get(&format!("test_{name}")),
        }
    }

    /// Calls the project macro `name` with `args` and returns what it renders, trimmed (as dbt
    /// does with `generate_schema_name` and `generate_alias_name`); `None` when the project does
    /// not define it.
    pub fn call_macro(&self, name: &str, args: &[Json]) -> Option<Result<String, Diagnostic>> {
        let definition = self.macros.get(name)?;
        let names: Vec<String> = (0..args.len()).map(|index| format!("__argument_{index}")).collect();
        let call = format!("{{{{ {name}({}) }}}}", names.join(", "));
        let values: BTreeMap<&str, minijinja::Value> = names
            .iter()
            .map(String::as_str)
            .zip(args.iter().map(minijinja::Value::from_serialize))
            .collect();
        let rendered = self
            .env
            .render_str(&call, values)
            .map_err(|error| jinja_diagnostic(&error, &definition.path));
        Some(rendered.map(|text| text.trim().to_string()))
    }

    /// Renders `source` (named `name` for errors) with `variables` as its context: hooks that run
    /// outside any node (`on-run-start`, `on-run-end` with `results` and `schemas`).
    pub fn render_with(&self, name: &str, source: &str, variables: &Json) -> Result<String, Diagnostic> {
        self.env
            .render_named_str(
                name,
                &mutable::mutable_literals(source),
                minijinja::Value::from_serialize(variables),
            )
            .map_err(|error| jinja_diagnostic(&error, name))
    }

    /// The project's macros by name.
    pub fn macros(&self) -> &BTreeMap<String, MacroDefinition> {
        &self.macros
    }

    /// The project macros each project macro calls directly.
    pub fn macro_calls(&self) -> BTreeMap<&str, std::collections::BTreeSet<String>> {
        self.macros
            .iter()
            .map(|(name, definition)| {
                let calls = match self.env.template_from_str(&definition.text) {
                    Ok(template) => self.macros_in(&template),
                    Err(_) => Default::default(),
                };
                (name.as_str(), calls)
            })
            .collect()
    }

    /// The project macros `template` refers to: the names it uses without declaring them
    /// (minijinja's own analysis, so names in comments and strings do not count).
    fn macros_in(&self, template: &minijinja::Template<'_, '_>) -> std::collections::BTreeSet<String> {
        template
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| self.macros.contains_key(name))
            .collect()
    }

    /// Parse phase: renders `source` (named `name` for errors) and records its calls.
    pub fn parse(&self, name: &str, source: &str) -> Result<Capture, Diagnostic> {
        let _guard = context::enter(context::RenderState::parse());
        let rewritten = mutable::mutable_literals(source);
        let template = self
            .env
            .template_from_named_str(name, &rewritten)
            .map_err(|error| jinja_diagnostic(&error, name))?;
        template.render(()).map_err(|error| jinja_diagnostic(&error, name))?;
        let mut capture = context::take_capture();
        capture.macros = self.macros_in(&template);
        for call in &mut capture.refs {
            call.line = ref_line(source, &call.name);
        }
        for call in &mut capture.sources {
            call.line = ref_line(source, &call.table);
        }
        Ok(capture)
    }

    /// Compile phase: renders `source` with relations resolved. Returns the SQL and the
    /// relations it referenced (in call order, duplicates removed).
    pub fn compile(&self, name: &str, source: &str, context: CompileContext) -> Result<String, Diagnostic> {
        let _guard = context::enter(context::RenderState::compile(context));
        let rewritten = mutable::mutable_literals(source);
        let template = self
            .env
            .template_from_named_str(name, &rewritten)
            .map_err(|error| jinja_diagnostic(&error, name))?;
        template.render(()).map_err(|error| jinja_diagnostic(&error, name))
    }
}

/// The name dbt's built-in macros are registered under (see `dbt_macros.sql`).
const DBT_MACROS_PATH: &str = "<tidemark>/dbt_macros.sql";

/// Adds macro files to `env`; returns each macro's name with its file and definition text.
fn add_macro_files(
    env: &mut Environment<'static>,
    files: &[crate::project::SqlFile],
    problems: &mut Diagnostics,
) -> BTreeMap<String, (String, String)> {
    let mut found: BTreeMap<String, (String, String)> = BTreeMap::new();
    for file in files {
        // `{% test name(...) %}…{% endtest %}` defines the macro `test_name` (as in dbt).
        let text = mutable::mutable_literals(&test_blocks_as_macros(&file.text)).into_owned();
        if let Err(error) = env.add_template_owned(file.path.clone(), text.clone()) {
            problems.push(jinja_diagnostic(&error, &file.path));
            continue;
        }
        let exports = env.get_template(&file.path).and_then(|template| {
            template.render_captured(()).map(|captured| {
                captured
                    .state()
                    .exports()
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
        });
        match exports {
            Ok(names) => {
                for name in names {
                    let definition = macro_text(&text, &name).unwrap_or(&text).to_string();
                    if let Some((previous, _)) = found.insert(name.clone(), (file.path.clone(), definition)) {
                        problems.push(
                            Diagnostic::new(format!("macro '{name}' is defined twice (also in {previous})"))
                                .in_file(&file.path)
                                .at_line(crate::diagnostics::line_of(&file.text, &format!("macro {name}"))),
                        );
                    }
                }
            }
            Err(error) => problems.push(jinja_diagnostic(&error, &file.path)),
        }
    }
    found
}

/// Line of `ref('name')`-style calls naming `name`, for diagnostics.
fn ref_line(source: &str, name: &str) -> Option<usize> {
    crate::diagnostics::line_of(source, &format!("'{name}'"))
        .or_else(|| crate::diagnostics::line_of(source, &format!("\"{name}\"")))
}

/// The text of macro `name` in a macro file: from its `{% macro name(` tag to the end of the
/// following `endmacro` tag.
fn macro_text<'a>(file_text: &'a str, name: &str) -> Option<&'a str> {
    let mut search = 0;
    while let Some(found) = file_text[search..].find("{%") {
        let open = search + found;
        let rest = file_text[open + 2..].trim_start_matches(['-', '+']).trim_start();
        search = open + 2;
        let Some(after_keyword) = rest.strip_prefix("macro") else {
            continue;
        };
        if !after_keyword.starts_with(char::is_whitespace) {
            continue;
        }
        if after_keyword
            .trim_start()
            .strip_prefix(name)
            .is_some_and(|tail| tail.trim_start().starts_with('('))
        {
            let end = file_text[open..].find("endmacro").map(|at| open + at)?;
            let close = file_text[end..].find("%}").map(|at| end + at + 2)?;
            return Some(&file_text[open..close]);
        }
    }
    None
}

/// Rewrites dbt's generic test blocks into macros: `{% test name(` → `{% macro test_name(` and
/// `{% endtest %}` → `{% endmacro %}`, keeping whitespace control and line numbers.
pub fn test_blocks_as_macros(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(found) = rest.find("{%") {
        out.push_str(&rest[..found + 2]);
        rest = &rest[found + 2..];
        let control = rest.len() - rest.trim_start_matches(['-', '+']).len();
        out.push_str(&rest[..control]);
        rest = &rest[control..];
        let space = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..space]);
        rest = &rest[space..];
        let keyword_end = |keyword: &str, rest: &str| {
            rest.starts_with(keyword)
                && rest[keyword.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| !(c.is_alphanumeric() || c == '_'))
        };
        if keyword_end("test", rest) {
            let after = rest["test".len()..].trim_start();
            out.push_str("macro test_");
            rest = after;
        } else if keyword_end("endtest", rest) {
            out.push_str("endmacro");
            rest = &rest["endtest".len()..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine for a project with one macro and a var.
    fn engine() -> (tempfile::TempDir, TemplateEngine) {
        let folder = tempfile::tempdir().expect("temp");
        let root = folder.path();
        std::fs::write(root.join("tidemark.yml"), "name: t\nvars:\n  window: 7\n").expect("project file");
        std::fs::create_dir_all(root.join("macros")).expect("macros");
        std::fs::write(
            root.join("macros/twice.sql"),
            "{% macro twice(column) %}({{ column }} * 2){% endmacro %}\n{% macro quadruple(column) %}{{ twice(twice(column)) }}{% endmacro %}\n",
        )
        .expect("macro");
        let project = crate::project::load(root).expect("project loads");
        let target = crate::project::load_target(&project, None, None).expect("target");
        let engine = TemplateEngine::new(&project, &target, project.file.vars.clone()).expect("engine");
        (folder, engine)
    }

    #[test]
    fn the_parse_render_records_refs_sources_config_and_vars_with_their_lines() {
        let (_folder, engine) = engine();
        let sql = "{{ config(materialized='table', tags=['x']) }}\nselect {{ twice('a') }}\nfrom {{ ref('orders') }}\njoin {{ source('raw', 'events') }} using (id)\nwhere d > {{ var('window') }}\n";
        let capture = engine.parse("models/m.sql", sql).expect("parses");
        let refs: Vec<(&str, Option<usize>)> = capture.refs.iter().map(|r| (r.name.as_str(), r.line)).collect();
        assert_eq!(refs, [("orders", Some(3))]);
        let sources: Vec<(&str, &str, Option<usize>)> = capture
            .sources
            .iter()
            .map(|s| (s.source.as_str(), s.table.as_str(), s.line))
            .collect();
        assert_eq!(sources, [("raw", "events", Some(4))]);
        assert_eq!(capture.config.get("materialized"), Some(&Json::from("table")));
        assert_eq!(capture.vars.get("window"), Some(&Json::from(7)));
    }

    #[test]
    fn modules_return_fromjson_and_the_dbt_namespace_render() {
        let (_folder, engine) = engine();
        let render = |source: &str| {
            engine
                .render_with("t.sql", source, &serde_json::json!({}))
                .expect(source)
        };
        let parsed = "{% set d = modules.datetime.datetime.strptime('2024-03-05 07:08:09', '%Y-%m-%d %H:%M:%S') %}{{ d.year }}/{{ d.strftime('%m') }} {{ d.plus(modules.datetime.timedelta(days=1, hours=2)).isoformat() }}";
        assert_eq!(render(parsed), "2024/03 2024-03-06T09:08:09");
        let found = "{% set m = modules.re.search('([a-z]+)-(\\d+)', 'order rush-12') %}{{ m.group(0) }} {{ m.group(2) }} {{ modules.re.sub('(\\d)', 'n\\\\1', 'a1b2') }} {{ modules.re.findall('\\d', 'a1b22') | join(',') }}";
        assert_eq!(render(found), "rush-12 12 an1bn2 1,2,2");
        assert_eq!(
            render("{{ modules.itertools.product([1, 2], ['a']) | map('join', '') | join(' ') }} {{ modules.itertools.chain([1], [2, 3]) | join(',') }}"),
            "1a 2a 1,2,3"
        );
        assert_eq!(render("{{ (fromjson('{\"a\": [1, 2]}')).a | length }} {{ zip([1, 2], ['x', 'y']) | map('join', '') | join(',') }} {{ set([1, 1, 2]) | join(',') }}"), "2 1x,2y 1,2");
        assert_eq!(
            render("{{ dbt.concat(['a', 'b']) }} {{ dbt.safe_cast('x', dbt.type_int()) }}"),
            "a || b try_cast(x as integer)"
        );
        assert_eq!(render("{{ execute }}"), "False");
        assert_eq!(
            render("{{ api.Relation.create(database='x', schema='s', identifier='t') }}"),
            "\"s\".\"t\""
        );
        assert_eq!(render("{{ should_full_refresh() }}"), "False");
        engine.set_full_refresh(true);
        assert_eq!(render("{{ should_full_refresh() }}"), "True");
    }

    #[test]
    fn macro_calls_come_from_the_template_not_from_its_text() {
        let (_folder, engine) = engine();
        let sql = "-- twice(x) in a SQL comment is text\n{# quadruple(x) in a Jinja comment #}\nselect {{ quadruple('a') }}, 'twice(b)' as s, sum(c)\n";
        let capture = engine.parse("models/m.sql", sql).expect("parses");
        assert_eq!(capture.macros.into_iter().collect::<Vec<_>>(), ["quadruple"]);
        let calls = engine.macro_calls();
        assert_eq!(calls["quadruple"].iter().collect::<Vec<_>>(), ["twice"]);
        assert!(calls["twice"].is_empty());
    }

    #[test]
    fn a_jinja_error_is_a_diagnostic_at_its_file_and_line() {
        let (_folder, engine) = engine();
        let error = engine
            .parse("models/broken.sql", "select 1\nfrom {{ ref('a' }}\n")
            .expect_err("a syntax error");
        assert_eq!(error.file.as_deref(), Some("models/broken.sql"));
        assert_eq!(error.line, Some(2));
        assert!(
            error.message.starts_with("Jinja error: syntax error"),
            "{}",
            error.message
        );
    }

    #[test]
    fn config_files_render_env_var_with_a_default_and_fail_without_one() {
        let text = "warehouse: \"{{ env_var('TIDEMARK_TEST_UNSET_VARIABLE', 'warehouse') }}\"\n";
        assert_eq!(
            crate::jinja::render_config_text("profiles.yml", text).expect("renders"),
            "warehouse: \"warehouse\"\n"
        );
        let missing = "a: 1\nb: \"{{ env_var('TIDEMARK_TEST_UNSET_VARIABLE') }}\"\n";
        let error = crate::jinja::render_config_text("profiles.yml", missing).expect_err("unset");
        let diagnostic = &error.0[0];
        assert_eq!(
            (diagnostic.file.as_deref(), diagnostic.line),
            (Some("profiles.yml"), Some(2))
        );
        assert!(
            diagnostic.message.contains("TIDEMARK_TEST_UNSET_VARIABLE"),
            "{}",
            diagnostic.message
        );
        // Text without Jinja is returned as it is.
        assert_eq!(
            crate::jinja::render_config_text("tidemark.yml", "name: x\n").expect("plain"),
            "name: x\n"
        );
    }
}
