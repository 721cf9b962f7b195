//! Lists and dicts templates can change in place, as dbt's Jinja (Python) allows:
//! `{% set cols = [] %}{% do cols.append(c) %}`, `{% do config.update({...}) %}`.
//!
//! minijinja's own lists and maps are immutable (and an empty `[]` literal is one shared
//! constant), so a template's `{% set name = [] %}` and `{% set name = {} %}` are read as
//! `tidemark_list()` and `tidemark_dict()`, which make a new mutable value each time they run.
//! The rewrite touches only those exact statements and keeps every line where it was. Lists and
//! dicts written with items (`[a, b]`) stay immutable: `+` builds a new one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

/// Reads `{% set name = [] %}` / `{% set name = {} %}` (any whitespace control) as the mutable
/// constructors.
pub(super) fn mutable_literals(text: &str) -> std::borrow::Cow<'_, str> {
    static SET_EMPTY: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = SET_EMPTY.get_or_init(|| {
        regex::Regex::new(r"(\{%[-+]?\s*set\s+[A-Za-z_][A-Za-z0-9_]*\s*=\s*)(\[\s*\]|\{\s*\})(\s*[-+]?%\})")
            .expect("valid pattern")
    });
    pattern.replace_all(text, |captures: &regex::Captures<'_>| {
        let constructor = match captures[2].starts_with('[') {
            true => "tidemark_list()",
            false => "tidemark_dict()",
        };
        format!("{}{constructor}{}", &captures[1], &captures[3])
    })
}

/// Registers the constructors.
pub(super) fn install(env: &mut minijinja::Environment<'static>) {
    env.add_function("tidemark_list", || Value::from_object(MutableList::default()));
    env.add_function("tidemark_dict", || Value::from_object(MutableDict::default()));
}

#[derive(Debug, Default)]
struct MutableList(Mutex<Vec<Value>>);

impl MutableList {
    fn items(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// The position `index` (negative from the end) names in a sequence of `len` items.
fn position(index: &Value, len: usize) -> Option<usize> {
    let index = i64::try_from(index.clone()).ok()?;
    let resolved = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&resolved).then_some(resolved as usize)
}

impl Object for MutableList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.items();
        position(key, items.len()).map(|at| items[at].clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.items().clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.items().len())
    }

    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let mut items = self.items();
        match (method, args) {
            ("append", [item]) => items.push(item.clone()),
            ("extend", [more]) => items.extend(more.try_iter()?),
            ("insert", [at, item]) => {
                let at = i64::try_from(at.clone())?;
                let at = if at < 0 { (items.len() as i64 + at).max(0) } else { at } as usize;
                let at = at.min(items.len());
                items.insert(at, item.clone());
            }
            ("pop", []) => return items.pop().ok_or_else(|| error("pop from an empty list")),
            ("pop", [at]) => {
                let at = position(at, items.len()).ok_or_else(|| error("pop index out of range"))?;
                return Ok(items.remove(at));
            }
            ("remove", [item]) => {
                let at = items
                    .iter()
                    .position(|candidate| candidate == item)
                    .ok_or_else(|| error(format!("list.remove({item}): not in the list")))?;
                items.remove(at);
            }
            ("index", [item]) => {
                return items
                    .iter()
                    .position(|candidate| candidate == item)
                    .map(|at| Value::from(at as i64))
                    .ok_or_else(|| error(format!("{item} is not in the list")))
            }
            ("count", [item]) => return Ok(Value::from(items.iter().filter(|c| *c == item).count() as i64)),
            ("reverse", []) => items.reverse(),
            ("sort", []) => items.sort(),
            ("clear", []) => items.clear(),
            ("copy", []) => return Ok(Value::from_object(MutableList(Mutex::new(items.clone())))),
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        }
        Ok(Value::from(()))
    }
}

#[derive(Debug, Default)]
struct MutableDict(Mutex<BTreeMap<Value, Value>>);

impl MutableDict {
    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<Value, Value>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Object for MutableDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.entries().get(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.entries().keys().cloned().collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.entries().len())
    }

    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let mut entries = self.entries();
        let pairs = |entries: &BTreeMap<Value, Value>| -> Vec<Value> {
            entries
                .iter()
                .map(|(key, value)| Value::from(vec![key.clone(), value.clone()]))
                .collect()
        };
        match (method, args) {
            ("update", [other]) => {
                for key in other.try_iter()? {
                    let value = other.get_item(&key)?;
                    entries.insert(key, value);
                }
            }
            ("get", [key]) => return Ok(entries.get(key).cloned().unwrap_or(Value::from(()))),
            ("get", [key, default]) => return Ok(entries.get(key).cloned().unwrap_or_else(|| default.clone())),
            ("pop", [key]) => {
                return entries
                    .remove(key)
                    .ok_or_else(|| error(format!("dict.pop({key}): no such key")))
            }
            ("pop", [key, default]) => return Ok(entries.remove(key).unwrap_or_else(|| default.clone())),
            ("setdefault", [key, default]) => return Ok(entries.entry(key.clone()).or_insert(default.clone()).clone()),
            ("keys", []) => return Ok(Value::from(entries.keys().cloned().collect::<Vec<_>>())),
            ("values", []) => return Ok(Value::from(entries.values().cloned().collect::<Vec<_>>())),
            ("items", []) => return Ok(Value::from(pairs(&entries))),
            ("clear", []) => entries.clear(),
            ("copy", []) => return Ok(Value::from_object(MutableDict(Mutex::new(entries.clone())))),
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        }
        Ok(Value::from(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str) -> String {
        let mut env = minijinja::Environment::new();
        install(&mut env);
        let source = mutable_literals(template).into_owned();
        env.render_str(&source, ()).expect("renders")
    }

    #[test]
    fn set_empty_literals_become_mutable_and_fresh_each_time() {
        assert_eq!(
            mutable_literals("{%- set cols = [] -%}{% set seen = {} %}{% set both = [1] %}"),
            "{%- set cols = tidemark_list() -%}{% set seen = tidemark_dict() %}{% set both = [1] %}"
        );
        // Each loop iteration's list is its own (a shared constant would keep growing).
        let rendered = render(
            "{% for n in [1, 2] %}{% set cols = [] %}{% do cols.append(n) %}{% do cols.extend(['x']) %}{{ cols | join(',') }};{% endfor %}",
        );
        assert_eq!(rendered, "1,x;2,x;");
    }

    #[test]
    fn lists_and_dicts_change_in_place_like_python() {
        let rendered = render(
            "{% set l = [] %}{% do l.append('b') %}{% do l.insert(0, 'a') %}{{ l | length }} {{ l[0] }} {{ l[-1] }} {{ 'b' in l }} {{ l.pop() }} {{ l | list }}|\
             {% set d = {} %}{% do d.update({'k': 1}) %}{% do d.setdefault('j', 2) %}{{ d['k'] }} {{ d.get('z', 0) }} {{ d | length }} {% for k, v in d.items() %}{{ k }}={{ v }} {% endfor %}",
        );
        assert_eq!(rendered, "2 a b True b [\"a\"]|1 0 2 j=2 k=1 ");
    }
}
