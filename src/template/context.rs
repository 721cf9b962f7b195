//! The dbt Jinja context: globals backed by a thread-local render state.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Object, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::Value as Json;

use super::{CompileContext, RelationName};
use crate::project::{ConfigMap, Target};

/// A `ref()` call recorded during parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefCall {
    pub package: Option<String>,
    pub name: String,
    /// `v=` / `version=`: the model version it pins.
    pub version: Option<String>,
    pub line: Option<usize>,
}

/// A `source()` call recorded during parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCall {
    pub source: String,
    pub table: String,
    pub line: Option<usize>,
}

/// What a parse-phase render recorded.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub refs: Vec<RefCall>,
    pub sources: Vec<SourceCall>,
    /// `config(...)` arguments, later calls overriding earlier ones.
    pub config: ConfigMap,
    /// `var(...)` calls and the values they returned.
    pub vars: std::collections::BTreeMap<String, serde_json::Value>,
    /// Project macros the source calls directly (from minijinja's undeclared variables).
    pub macros: std::collections::BTreeSet<String>,
    /// Whether it runs queries while compiling (`run_query`, `statement`): its SQL depends on
    /// the warehouse, so it is compiled again right before it runs, as dbt does.
    pub introspective: bool,
}

pub(super) enum RenderState {
    Parse(Capture),
    Compile(CompileContext),
}

impl RenderState {
    pub(super) fn parse() -> RenderState {
        RenderState::Parse(Capture::default())
    }

    pub(super) fn compile(context: CompileContext) -> RenderState {
        RenderState::Compile(context)
    }
}

thread_local! {
    static CURRENT: RefCell<Vec<RenderState>> = const { RefCell::new(Vec::new()) };
}

/// Restores the previous render state when dropped.
pub(super) struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().pop());
    }
}

pub(super) fn enter(state: RenderState) -> Guard {
    CURRENT.with(|current| current.borrow_mut().push(state));
    Guard
}

/// Takes what the current parse render captured.
pub(super) fn take_capture() -> Capture {
    CURRENT.with(|current| match current.borrow_mut().last_mut() {
        Some(RenderState::Parse(capture)) => std::mem::take(capture),
        _ => Capture::default(),
    })
}

/// Records, in a parse render, that the template runs queries while compiling.
pub(super) fn note_introspection() {
    with_state(|state| {
        if let Some(RenderState::Parse(capture)) = state {
            capture.introspective = true;
        }
    });
}

/// Whether a compile-phase render is running (dbt's `execute`).
pub(super) fn compiling() -> bool {
    with_state(|state| matches!(state, Some(RenderState::Compile(context)) if context.execute))
}

fn with_state<R>(f: impl FnOnce(Option<&mut RenderState>) -> R) -> R {
    CURRENT.with(|current| f(current.borrow_mut().last_mut()))
}

/// `condition` of the time filter of the node being compiled; `true` outside a time-range run.
fn time_condition(condition: impl FnOnce(&super::TimeFilter) -> String) -> String {
    with_state(|state| match state {
        Some(RenderState::Compile(context)) => context.time_filter.as_ref().map(condition),
        _ => None,
    })
    .unwrap_or_else(|| "true".into())
}

fn error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// Installs the dbt context as globals.
pub(super) fn install_globals(
    env: &mut Environment<'static>,
    project_name: &str,
    target: &Target,
    vars: BTreeMap<String, Json>,
) {
    env.add_function("ref", ref_function);
    env.add_function("source", source_function);
    env.add_function("env_var", crate::jinja::env_var);
    env.add_function("is_incremental", || {
        with_state(|state| matches!(state, Some(RenderState::Compile(c)) if c.is_incremental))
    });
    env.add_function("event_time_filter", |column: String| {
        time_condition(|filter| filter.condition(&column))
    });
    // `event_time_range(column, days_before=0)`: the range the run recomputes, widened by
    // `days_before` days before its start.
    env.add_function("event_time_range", |column: String, days_before: Option<i64>| {
        time_condition(|filter| filter.recomputed(days_before.unwrap_or(0)).condition(&column))
    });
    // A metric model's calendar as SQL arguments (`date 'first', date 'last', 'week'`), from the
    // first period a time-range run recomputes on (daily and weekly calendars).
    env.add_function(
        "tidemark_calendar",
        |first: String, last: String, every: String| -> Result<String, Error> {
            let date = |text: &str| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| error(format!("tidemark_calendar: '{text}' is not a date")))
            };
            let (first, last) = (date(&first)?, date(&last)?);
            let cadence = crate::functions::Cadence::parse(&every)
                .ok_or_else(|| error(format!("tidemark_calendar: '{every}' is not day, week or month")))?;
            let start = with_state(|state| match state {
                Some(RenderState::Compile(context)) => context.time_filter.as_ref().and_then(|f| f.start),
                _ => None,
            });
            let first = crate::functions::first_period_from(first, last, cadence, start);
            Ok(format!("date '{first}', date '{last}', '{every}'"))
        },
    );
    let vars = Arc::new(vars);
    env.add_function(
        "var",
        move |name: String, default: Option<Value>| -> Result<Value, Error> {
            let record = |value: &Value| {
                with_state(|state| {
                    if let Some(RenderState::Parse(capture)) = state {
                        let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
                        capture.vars.insert(name.clone(), json);
                    }
                })
            };
            let value = crate::jinja::var_value(&vars, &name, default)?;
            record(&value);
            Ok(value)
        },
    );
    env.add_global("config", Value::from_object(ConfigObject));
    env.add_global("this", Value::from_object(ThisObject));
    env.add_global("project_name", project_name.to_string());
    env.add_global("target", Value::from_serialize(target.jinja_context()));
}

/// In a time-range run, an input with an `event_time` is read through a subquery that keeps only
/// the rows in the range (as dbt's microbatch models do).
fn time_filtered(relation: RelationName, event_time: Option<String>, context: &CompileContext) -> RelationName {
    match (&context.time_filter, event_time) {
        (Some(filter), Some(column)) => {
            let rendered = format!(
                "(select * from {} where {})",
                relation.rendered,
                filter.condition(&super::quote_identifier(&column))
            );
            RelationName { rendered, ..relation }
        }
        _ => relation,
    }
}

/// Makes the macro `name` defined in the template `path` callable from every template.
fn ref_function(Rest(args): Rest<Value>) -> Result<Value, Error> {
    let (args, kwargs): (Vec<Value>, Vec<Value>) = args.into_iter().partition(|arg| !arg.is_kwargs());
    let keyword = |key: &str| {
        kwargs
            .iter()
            .find_map(|kwargs| kwargs.get_attr(key).ok().filter(|v| !v.is_undefined()))
    };
    // `ref('x', event_time=false)`: the whole relation, even in a time-range run.
    let unfiltered = keyword("event_time")
        .is_some_and(|value| value.kind() == minijinja::value::ValueKind::Bool && !value.is_true());
    // `ref('x', v=2)` (or `version=2`): one version of a versioned model.
    let version = match keyword("v").or_else(|| keyword("version")) {
        None => None,
        Some(value) if value.is_none() => None,
        Some(value) => match value.as_str() {
            Some(text) => Some(text.to_string()),
            None if value.kind() == minijinja::value::ValueKind::Number => Some(value.to_string()),
            None => return Err(error("ref(..., v=...) takes a version number or string")),
        },
    };
    let names: Vec<String> = args
        .iter()
        .map(|arg| {
            arg.as_str()
                .map(str::to_string)
                .ok_or_else(|| error("ref() takes model names as strings"))
        })
        .collect::<Result<_, _>>()?;
    let (package, name) = match names.as_slice() {
        [name] => (None, name.clone()),
        [package, name] => (Some(package.clone()), name.clone()),
        _ => {
            return Err(error(
                "ref() takes one or two arguments: ref('model') or ref('package', 'model')",
            ))
        }
    };
    let call = RefCall {
        package,
        name,
        version,
        line: None,
    };
    with_state(|state| match state {
        Some(RenderState::Parse(capture)) => {
            let placeholder = Relation(RelationName::table("__ref__", &call.name));
            if !capture.refs.contains(&call) {
                capture.refs.push(call);
            }
            Ok(Value::from_object(placeholder))
        }
        Some(RenderState::Compile(context)) => context
            .resolver
            .resolve_ref(&context.package, &call)
            .map(|(relation, event_time)| {
                let event_time = event_time.filter(|_| !unfiltered);
                Value::from_object(Relation(time_filtered(relation, event_time, context)))
            })
            .map_err(|problem| error(problem.message)),
        None => Err(error("ref() is only available while rendering a model")),
    })
}

fn source_function(source: String, table: String) -> Result<Value, Error> {
    with_state(|state| match state {
        Some(RenderState::Parse(capture)) => {
            let call = SourceCall {
                source: source.clone(),
                table: table.clone(),
                line: None,
            };
            if !capture.sources.contains(&call) {
                capture.sources.push(call);
            }
            Ok(Value::from_object(Relation(RelationName::table(&source, &table))))
        }
        Some(RenderState::Compile(context)) => context
            .resolver
            .resolve_source(&source, &table)
            .map(|relation| {
                let event_time = context.resolver.source_event_time(&source, &table);
                Value::from_object(Relation(time_filtered(relation, event_time, context)))
            })
            .map_err(|problem| error(problem.message)),
        None => Err(error("source() is only available while rendering a model")),
    })
}

/// A relation: renders as SQL, exposes `schema`, `identifier`, `name` like dbt's Relation.
#[derive(Debug)]
pub(super) struct Relation(pub(super) RelationName);

impl Object for Relation {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "schema" => Some(Value::from(self.0.schema.clone())),
            "identifier" | "name" | "table" => Some(Value::from(self.0.identifier.clone())),
            "database" => Some(Value::from("tidemark")),
            _ => None,
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.rendered)
    }
}

/// `this`: the relation of the node being rendered.
#[derive(Debug)]
struct ThisObject;

impl ThisObject {
    fn current() -> RelationName {
        with_state(|state| match state {
            Some(RenderState::Compile(context)) => context.this.clone(),
            _ => RelationName::table("__this__", "__this__"),
        })
    }
}

impl Object for ThisObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Arc::new(Relation(ThisObject::current())).get_value(key)
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&ThisObject::current().rendered)
    }
}

/// `config(...)` records configs while parsing; `config.get('key', default)` reads them.
#[derive(Debug)]
struct ConfigObject;

impl Object for ConfigObject {
    fn call(self: &Arc<Self>, _state: &State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let mut entries = ConfigMap::new();
        for arg in args {
            if arg.is_kwargs() || arg.kind() == minijinja::value::ValueKind::Map {
                let json = serde_json::to_value(arg).map_err(|e| error(format!("config(): {e}")))?;
                if let Json::Object(map) = json {
                    entries.extend(map);
                }
            } else {
                return Err(error(
                    "config() takes keyword arguments, e.g. config(materialized='table')",
                ));
            }
        }
        with_state(|state| {
            if let Some(RenderState::Parse(capture)) = state {
                crate::project::project_file::merge_configs(&mut capture.config, &entries);
            }
        });
        Ok(Value::from(""))
    }

    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "get" | "require" => {
                let key = args
                    .first()
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| error("config.get() needs a key"))?;
                let found = with_state(|state| match state {
                    Some(RenderState::Compile(context)) => context.config.get(key).map(Value::from_serialize),
                    Some(RenderState::Parse(capture)) => capture.config.get(key).map(Value::from_serialize),
                    None => None,
                });
                match (found, args.get(1)) {
                    (Some(value), _) => Ok(value),
                    (None, Some(default)) if method == "get" => Ok(default.clone()),
                    (None, _) if method == "get" => Ok(Value::from(())),
                    (None, _) => Err(error(format!("config '{key}' is required but not set"))),
                }
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("config has no method '{method}'"),
            )),
        }
    }
}
