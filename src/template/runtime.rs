//! dbt's Jinja runtime beyond relations and configs: `execute`, `run_query`, `statement` and
//! `load_result`, `return`, `log`, `run_started_at`, `invocation_id`, and the helpers dbt
//! projects use (`fromjson`, `toyaml`, `fromyaml`, `zip`, `set`, `set_strict`; `tojson` is
//! minijinja's).
//!
//! Queries run through a [`QueryRunner`] the caller provides (execute's, over the target's
//! warehouse): `run_query` and `statement` run SQL only while compiling (`execute` is true), as
//! in dbt, where they return nothing during parsing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use minijinja::value::{Kwargs, Object, ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::Value as Json;

/// The rows a query returned: column names, and each row's values in column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryTable {
    pub columns: Vec<String>,
    /// The SQL type of each column (`BIGINT`, `VARCHAR`, ...).
    pub types: Vec<String>,
    pub rows: Vec<Vec<Json>>,
}

/// Runs SQL on the target's engine for `run_query` and `statement`.
pub trait QueryRunner: Send + Sync {
    fn run(&self, sql: &str) -> Result<QueryTable, String>;
}

/// Where `log(msg, info=True)` goes.
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// What the runtime functions share: set once a run knows its warehouse and printer.
#[derive(Default)]
pub(super) struct Runtime {
    pub(super) runner: RwLock<Option<Arc<dyn QueryRunner>>>,
    pub(super) logger: RwLock<Option<Logger>>,
    /// `statement(name, fetch_result=True)` results, for `load_result(name)`.
    results: Mutex<BTreeMap<String, QueryTable>>,
    /// `--warn-error`: `exceptions.warn` raises.
    pub(super) warn_error: std::sync::atomic::AtomicBool,
    /// `--full-refresh`: what `should_full_refresh()` answers (with a model's `full_refresh`).
    pub(super) full_refresh: std::sync::atomic::AtomicBool,
}

impl Runtime {
    pub(super) fn run(&self, sql: &str) -> Result<QueryTable, Error> {
        let runner = self
            .runner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let Some(runner) = runner else {
            return Err(error(
                "run_query/statement need the target's engine, which this command does not open",
            ));
        };
        runner
            .run(sql)
            .map_err(|message| error(format!("the query failed: {message}")))
    }
}

fn error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

thread_local! {
    /// The value of the innermost `return()` being unwound to its macro.
    static RETURNED: std::cell::RefCell<Option<Value>> = const { std::cell::RefCell::new(None) };
}

/// The value a macro passed to `return()`, if the error it failed with is that return.
pub(super) fn take_returned() -> Option<Value> {
    RETURNED.with(|slot| slot.borrow_mut().take())
}

/// Installs the runtime's globals; `compiling` says whether a compile-phase render is running.
pub(super) fn install(env: &mut Environment<'static>, runtime: Arc<Runtime>, compiling: fn() -> bool) {
    env.add_global("execute", Value::from_object(ExecuteFlag(compiling)));
    env.add_global(
        "run_started_at",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string(),
    );
    env.add_global("invocation_id", uuid::Uuid::new_v4().to_string());
    env.add_global("modules", super::modules::value());
    let queries = runtime.clone();
    env.add_function("run_query", move |sql: String| -> Result<Value, Error> {
        if !compiling() {
            super::context::note_introspection();
            return Ok(Value::from(()));
        }
        Ok(Value::from_object(Table(queries.run(&sql)?)))
    });
    let statements = runtime.clone();
    env.add_function(
        "statement",
        move |state: &State, name: Option<String>, kwargs: Kwargs| -> Result<Value, Error> {
            let caller: Value = kwargs.get("caller")?;
            let fetch: Option<bool> = kwargs.get("fetch_result")?;
            let _: Option<Value> = kwargs.get("auto_begin")?;
            kwargs.assert_all_used()?;
            let sql = caller.call(state, &[])?.to_string();
            if !compiling() {
                super::context::note_introspection();
                return Ok(Value::from(""));
            }
            if sql.trim().is_empty() {
                return Ok(Value::from(""));
            }
            let table = statements.run(&sql)?;
            if fetch.unwrap_or(false) {
                let name = name.unwrap_or_else(|| "main".into());
                statements
                    .results
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(name, table);
            }
            Ok(Value::from(""))
        },
    );
    let loads = runtime.clone();
    env.add_function("load_result", move |name: String| -> Value {
        let results = loads.results.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match results.get(&name) {
            Some(table) => Value::from_iter([
                ("data", Value::from_serialize(&table.rows)),
                ("table", Value::from_object(Table(table.clone()))),
                (
                    "response",
                    Value::from_iter([("rows_affected", Value::from(table.rows.len()))]),
                ),
            ]),
            None => Value::from(()),
        }
    });
    env.add_function("return", |value: Option<Value>| -> Result<Value, Error> {
        RETURNED.with(|slot| *slot.borrow_mut() = Some(value.unwrap_or_else(|| Value::from(()))));
        Err(Error::new(ErrorKind::InvalidOperation, "return() outside a macro"))
    });
    env.add_global("exceptions", Value::from_object(Exceptions(runtime.clone())));
    // `should_full_refresh()`: the model's `full_refresh` config when set, else `--full-refresh`.
    let refresh = runtime.clone();
    env.add_function("should_full_refresh", move |state: &State| -> Result<Value, Error> {
        let config = state.lookup("config").filter(|value| !value.is_undefined());
        let configured = match config {
            Some(config) => config.call_method(state, "get", &[Value::from("full_refresh")])?,
            None => Value::from(()),
        };
        Ok(match configured.is_none() || configured.is_undefined() {
            true => Value::from(refresh.full_refresh.load(std::sync::atomic::Ordering::Relaxed)),
            false => Value::from(configured.is_true()),
        })
    });
    // `api.Relation.create(database=, schema=, identifier=)` and `load_relation(relation)`.
    env.add_global("api", Value::from_iter([("Relation", Value::from_object(RelationApi))]));
    env.add_function(
        "load_relation",
        |state: &State, relation: Value| -> Result<Value, Error> {
            let adapter = state.lookup("adapter").ok_or_else(|| error("no adapter"))?;
            adapter.call_method(
                state,
                "get_relation",
                &[
                    relation.get_attr("database")?,
                    relation.get_attr("schema")?,
                    relation.get_attr("identifier")?,
                ],
            )
        },
    );
    let logs = runtime;
    env.add_function("log", move |message: Value, kwargs: Kwargs| -> Result<Value, Error> {
        let info: Option<bool> = kwargs.get("info")?;
        kwargs.assert_all_used()?;
        // Printed once, while compiling (the parse render would print it a second time).
        if info.unwrap_or(false) && compiling() {
            if let Some(logger) = logs
                .logger
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
            {
                logger(&message.to_string());
            }
        }
        Ok(Value::from(""))
    });
    env.add_function(
        "fromjson",
        |text: String, default: Option<Value>| -> Result<Value, Error> {
            match serde_json::from_str::<Json>(&text) {
                Ok(json) => Ok(Value::from_serialize(json)),
                Err(problem) => default.ok_or_else(|| error(format!("fromjson: {problem}"))),
            }
        },
    );
    env.add_function("toyaml", |value: Value| -> Result<Value, Error> {
        serde_yaml::to_string(&value)
            .map(Value::from)
            .map_err(|problem| error(format!("toyaml: {problem}")))
    });
    env.add_function(
        "fromyaml",
        |text: String, default: Option<Value>| -> Result<Value, Error> {
            match serde_yaml::from_str::<Json>(&text) {
                Ok(json) => Ok(Value::from_serialize(json)),
                Err(problem) => default.ok_or_else(|| error(format!("fromyaml: {problem}"))),
            }
        },
    );
    env.add_function("zip", |lists: minijinja::value::Rest<Value>| -> Result<Value, Error> {
        let lists: Vec<Vec<Value>> = lists
            .iter()
            .map(|list| list.try_iter().map(Iterator::collect))
            .collect::<Result<_, _>>()?;
        let length = lists.iter().map(Vec::len).min().unwrap_or(0);
        Ok(Value::from_iter((0..length).map(|index| {
            Value::from_iter(lists.iter().map(|list| list[index].clone()))
        })))
    });
    let set = |values: Value| -> Result<Vec<Value>, Error> {
        let mut unique: Vec<Value> = Vec::new();
        for value in values.try_iter()? {
            if !unique.contains(&value) {
                unique.push(value);
            }
        }
        Ok(unique)
    };
    env.add_function("set", move |values: Value| -> Value {
        set(values).map(Value::from).unwrap_or_else(|_| Value::from(()))
    });
    env.add_function("set_strict", move |values: Value| -> Result<Value, Error> {
        set(values).map(Value::from)
    });
}

/// `exceptions.raise_compiler_error(msg)` (an error at the template's line) and
/// `exceptions.warn(msg)` (a warning; an error with `--warn-error`).
#[derive(Debug)]
struct Exceptions(Arc<Runtime>);

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Runtime")
    }
}

impl Object for Exceptions {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let message = args.first().map(|v| v.to_string()).unwrap_or_default();
        match method {
            "raise_compiler_error" => Err(error(message)),
            "warn" if self.0.warn_error.load(std::sync::atomic::Ordering::Relaxed) => {
                Err(error(format!("{message} (a warning; --warn-error)")))
            }
            "warn" => {
                let logger = self
                    .0
                    .logger
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                if let (Some(logger), true) = (logger, super::context::compiling()) {
                    logger(&format!("warning: {message}"));
                }
                Ok(Value::from(""))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("exceptions has no method '{method}'"),
            )),
        }
    }
}

/// `api.Relation`: `create(database=, schema=, identifier=)` makes a relation (`"schema"."x"`).
#[derive(Debug)]
struct RelationApi;

impl Object for RelationApi {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "create" => {
                let kwargs = args.iter().find(|arg| arg.is_kwargs());
                let part = |name: &str| {
                    kwargs
                        .and_then(|kwargs| kwargs.get_attr(name).ok())
                        .filter(|value| !value.is_undefined() && !value.is_none())
                        .map(|value| value.to_string())
                        .unwrap_or_default()
                };
                let relation = crate::relation::RelationName::table(&part("schema"), &part("identifier"));
                Ok(Value::from_object(super::context::Relation(relation)))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("api.Relation has no '{method}'"),
            )),
        }
    }
}

/// `execute`: true while compiling (and running), false while parsing.
#[derive(Debug)]
struct ExecuteFlag(fn() -> bool);

impl Object for ExecuteFlag {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        let on = (self.0)();
        // A template that asks is one that queries when compiling (dbt's `if execute` guard).
        if !on {
            super::context::note_introspection();
        }
        on
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if (self.0)() { "True" } else { "False" })
    }
}

/// A query's result as dbt's (agate) table: `rows` (each indexable by position or column
/// name), `columns` (each with `name` and `values()`), `column_names`; iterating gives rows.
#[derive(Debug)]
struct Table(QueryTable);

impl Table {
    fn row(&self, index: usize) -> Option<Value> {
        let values = self.0.rows.get(index)?;
        Some(Value::from_object(Row {
            columns: self.0.columns.clone(),
            values: values.clone(),
        }))
    }
}

impl Object for Table {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(index) = key.as_usize() {
            return self.row(index);
        }
        match key.as_str()? {
            "rows" => Some(Value::from_iter(
                (0..self.0.rows.len()).filter_map(|index| self.row(index)),
            )),
            "columns" => Some(Value::from_iter(self.0.columns.iter().enumerate().map(
                |(index, name)| {
                    Value::from_object(Column {
                        name: name.clone(),
                        values: self
                            .0
                            .rows
                            .iter()
                            .map(|row| row.get(index).cloned().unwrap_or(Json::Null))
                            .collect(),
                    })
                },
            ))),
            "column_names" => Some(Value::from_serialize(&self.0.columns)),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Seq(self.0.rows.len())
    }
}

/// One row: `row[0]`, `row['name']`, `row.name`; iterating gives its values.
#[derive(Debug)]
struct Row {
    columns: Vec<String>,
    values: Vec<Json>,
}

impl Object for Row {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let index = match key.as_usize() {
            Some(index) => index,
            None => self
                .columns
                .iter()
                .position(|column| Some(column.as_str()) == key.as_str())?,
        };
        self.values.get(index).map(Value::from_serialize)
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Seq(self.values.len())
    }
}

/// One column: `name` and `values()`.
#[derive(Debug)]
struct Column {
    name: String,
    values: Vec<Json>,
}

impl Object for Column {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" => Some(Value::from(self.name.clone())),
            _ => None,
        }
    }

    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, _args: &[Value]) -> Result<Value, Error> {
        match method {
            "values" => Ok(Value::from_serialize(&self.values)),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("a column has no method '{method}'"),
            )),
        }
    }
}
