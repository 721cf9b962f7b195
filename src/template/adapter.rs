//! Package namespaces (`{{ my_utils.star(...) }}`) and dbt's `adapter` object: `dispatch`,
//! `quote`, `get_columns_in_relation`, `get_relation`.
//!
//! `adapter.dispatch('name', 'namespace')` finds the implementation of a macro in dbt's order:
//! for each package of the search order (the project's `dispatch:` entry for the namespace,
//! else the root project, then the namespace), the macro `datafusion__name`, then
//! `default__name`. The adapter's type is `datafusion`.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Object, Rest, Value};
use minijinja::{Error, ErrorKind, State};

use super::context::Relation;
use super::runtime::Runtime;
use crate::relation::{quote_identifier, RelationName};

/// A project macro as a callable value: renders its file and calls it; `return(value)` in it
/// returns the value.
pub(super) fn macro_value(name: String, path: String) -> Value {
    Value::from_function(move |state: &State, Rest(args): Rest<Value>| -> Result<Value, Error> {
        let template = state.env().get_template(&path)?;
        let captured = template.render_captured(())?;
        match captured.state().call_macro(&name, &args) {
            Ok(output) => Ok(Value::from_safe_string(output)),
            // `return(value)` unwinds to its macro with the value.
            Err(error) => match super::runtime::take_returned() {
                Some(value) => Ok(value),
                None => Err(error),
            },
        }
    })
}

fn error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// Every macro by namespace (the root project's name, each package's), as callable values.
pub(super) type Macros = BTreeMap<String, BTreeMap<String, Value>>;

/// A package's macros: `package.macro(...)`.
#[derive(Debug)]
pub(super) struct Namespace {
    pub(super) name: String,
    pub(super) macros: BTreeMap<String, Value>,
}

impl Object for Namespace {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.macros.get(key.as_str()?).cloned()
    }

    fn call_method(self: &Arc<Self>, state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match self.macros.get(method) {
            Some(function) => function.call(state, args),
            None => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("package '{}' has no macro '{method}'", self.name),
            )),
        }
    }
}

/// dbt's `adapter`.
pub(super) struct Adapter {
    pub(super) root: String,
    pub(super) macros: Macros,
    /// The project's `dispatch:` search orders, by namespace.
    pub(super) dispatch: BTreeMap<String, Vec<String>>,
    pub(super) runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("adapter")
    }
}

impl Adapter {
    fn dispatch(&self, name: &str, namespace: Option<&str>) -> Result<Value, Error> {
        let order: Vec<String> = match namespace.and_then(|namespace| self.dispatch.get(namespace)) {
            Some(order) => order.clone(),
            None => std::iter::once(self.root.clone())
                .chain(namespace.map(str::to_string))
                .collect(),
        };
        let candidates = [format!("datafusion__{name}"), format!("default__{name}")];
        for package in &order {
            let Some(macros) = self.macros.get(package) else {
                continue;
            };
            for candidate in &candidates {
                if let Some(found) = macros.get(candidate) {
                    return Ok(found.clone());
                }
            }
        }
        Err(error(format!(
            "adapter.dispatch('{name}'{}): no macro datafusion__{name} or default__{name} in {}",
            namespace
                .map(|namespace| format!(", '{namespace}'"))
                .unwrap_or_default(),
            order.join(", ")
        )))
    }

    /// The columns of `relation`: each with `name`, `data_type` and `dtype`.
    fn columns(&self, relation: &Value) -> Result<Value, Error> {
        let table = self.runtime.run(&format!("select * from {relation} limit 0"))?;
        Ok(Value::from_iter(table.columns.iter().zip(&table.types).map(
            |(name, data_type)| {
                Value::from_iter([
                    ("name", Value::from(name.clone())),
                    ("column", Value::from(name.clone())),
                    ("data_type", Value::from(data_type.clone())),
                    ("dtype", Value::from(data_type.clone())),
                ])
            },
        )))
    }
}

impl Object for Adapter {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "type" => Some(Value::from("datafusion")),
            _ => None,
        }
    }

    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let (positional, keywords): (Vec<&Value>, Vec<&Value>) = args.iter().partition(|arg| !arg.is_kwargs());
        let keyword = |name: &str| {
            keywords
                .iter()
                .find_map(|kwargs| kwargs.get_attr(name).ok().filter(|v| !v.is_undefined()))
        };
        let argument = |index: usize, name: &str| {
            positional
                .get(index)
                .map(|value| (*value).clone())
                .or_else(|| keyword(name))
        };
        match method {
            "dispatch" => {
                let name = argument(0, "macro_name").ok_or_else(|| error("adapter.dispatch needs a macro name"))?;
                let namespace = argument(1, "macro_namespace").filter(|value| !value.is_none());
                self.dispatch(
                    name.as_str()
                        .ok_or_else(|| error("adapter.dispatch: the macro name is text"))?,
                    namespace.as_ref().and_then(Value::as_str),
                )
            }
            "quote" => {
                let identifier = argument(0, "identifier").ok_or_else(|| error("adapter.quote needs an identifier"))?;
                Ok(Value::from(quote_identifier(&identifier.to_string())))
            }
            "get_columns_in_relation" => {
                let relation =
                    argument(0, "relation").ok_or_else(|| error("get_columns_in_relation needs a relation"))?;
                self.columns(&relation)
            }
            "get_relation" => {
                let schema = argument(1, "schema").map(|value| value.to_string()).unwrap_or_default();
                let identifier = argument(2, "identifier")
                    .map(|value| value.to_string())
                    .unwrap_or_default();
                let relation = RelationName::table(&schema, &identifier);
                match self
                    .runtime
                    .run(&format!("select * from {} limit 0", relation.rendered))
                {
                    Ok(_) => Ok(Value::from_object(Relation(relation))),
                    Err(_) => Ok(Value::from(())),
                }
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("adapter has no method '{method}' in tidemark"),
            )),
        }
    }
}
