//! dbt's `modules`: the parts of Python's `datetime`, `re` and `itertools` dbt projects use.
//!
//! - `modules.datetime.datetime.now()`, `.utcnow()`, `.strptime(text, format)`,
//!   `modules.datetime.date.today()`: values with `year`, `month`, `day`, `hour`, `minute`,
//!   `second`, `strftime(format)`, `isoformat()` and `date()`; they render as ISO text.
//! - `modules.datetime.timedelta(days=, hours=, minutes=, seconds=, weeks=)`: added to or
//!   subtracted from a datetime with `.plus(delta)` / `.minus(delta)` (Jinja has no operator
//!   overloading), or read as `.total_seconds()`.
//! - `modules.re.search(pattern, text)`, `.match(pattern, text)` (a match with `group(n)` and
//!   `groups()`, or none), `.findall`, `.sub(pattern, replacement, text)`, `.split`.
//! - `modules.itertools.chain(a, b, …)`, `.product(a, b, …)`, `.combinations(items, n)`.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use minijinja::value::{Object, Value};
use minijinja::{Error, ErrorKind, State};

fn error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

fn text(args: &[Value], index: usize, what: &str) -> Result<String, Error> {
    args.get(index)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| error(format!("{what} is text")))
}

/// `modules`.
pub(super) fn value() -> Value {
    Value::from_iter([
        ("datetime", Value::from_object(DatetimeModule)),
        ("re", Value::from_object(ReModule)),
        ("itertools", Value::from_object(Itertools)),
    ])
}

#[derive(Debug)]
struct DatetimeModule;

impl Object for DatetimeModule {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "datetime" => Some(Value::from_object(DatetimeClass)),
            "date" => Some(Value::from_object(DateClass)),
            _ => None,
        }
    }

    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "timedelta" => {
                let kwargs = args.iter().find(|arg| arg.is_kwargs());
                let amount = |name: &str| -> f64 {
                    kwargs
                        .and_then(|kwargs| kwargs.get_attr(name).ok())
                        .and_then(|value| f64::try_from(value).ok())
                        .unwrap_or(0.0)
                };
                let positional = args
                    .first()
                    .filter(|arg| !arg.is_kwargs())
                    .and_then(|v| f64::try_from(v.clone()).ok());
                let seconds = (positional.unwrap_or(0.0) + amount("days") + 7.0 * amount("weeks")) * 86_400.0
                    + amount("hours") * 3_600.0
                    + amount("minutes") * 60.0
                    + amount("seconds");
                Ok(Value::from_object(Delta(seconds)))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.datetime has no '{method}' in tidemark"),
            )),
        }
    }
}

#[derive(Debug)]
struct DatetimeClass;

impl Object for DatetimeClass {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "now" | "utcnow" => Ok(Value::from_object(Moment(chrono::Utc::now().naive_utc()))),
            "strptime" => {
                let (value, format) = (text(args, 0, "strptime's text")?, text(args, 1, "strptime's format")?);
                NaiveDateTime::parse_from_str(&value, &format)
                    .or_else(|_| {
                        NaiveDate::parse_from_str(&value, &format)
                            .map(|date| date.and_hms_opt(0, 0, 0).unwrap_or_default())
                    })
                    .map(|moment| Value::from_object(Moment(moment)))
                    .map_err(|problem| error(format!("strptime('{value}', '{format}'): {problem}")))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.datetime.datetime has no '{method}' in tidemark"),
            )),
        }
    }
}

#[derive(Debug)]
struct DateClass;

impl Object for DateClass {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, _args: &[Value]) -> Result<Value, Error> {
        match method {
            "today" => Ok(Value::from_object(Day(chrono::Utc::now().date_naive()))),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.datetime.date has no '{method}' in tidemark"),
            )),
        }
    }
}

/// A `timedelta`, in seconds.
#[derive(Debug)]
struct Delta(f64);

impl Object for Delta {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, _args: &[Value]) -> Result<Value, Error> {
        match method {
            "total_seconds" => Ok(Value::from(self.0)),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("a timedelta has no '{method}'"),
            )),
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "days" => Some(Value::from((self.0 / 86_400.0).floor() as i64)),
            "seconds" => Some(Value::from((self.0.rem_euclid(86_400.0)) as i64)),
            _ => None,
        }
    }
}

/// A `datetime`.
#[derive(Debug)]
struct Moment(NaiveDateTime);

impl Moment {
    fn shifted(&self, delta: &Value, sign: f64) -> Result<Value, Error> {
        let seconds = delta
            .downcast_object_ref::<Delta>()
            .map(|delta| delta.0)
            .ok_or_else(|| error("plus/minus take a modules.datetime.timedelta"))?;
        let micros = (seconds * sign * 1_000_000.0).round() as i64;
        Ok(Value::from_object(Moment(
            self.0 + chrono::Duration::microseconds(micros),
        )))
    }
}

impl Object for Moment {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::{Datelike, Timelike};
        let moment = self.0;
        Some(Value::from(match key.as_str()? {
            "year" => i64::from(moment.year()),
            "month" => i64::from(moment.month()),
            "day" => i64::from(moment.day()),
            "hour" => i64::from(moment.hour()),
            "minute" => i64::from(moment.minute()),
            "second" => i64::from(moment.second()),
            _ => return None,
        }))
    }

    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "strftime" => Ok(Value::from(
                self.0.format(&text(args, 0, "strftime's format")?).to_string(),
            )),
            "isoformat" => Ok(Value::from(self.0.format("%Y-%m-%dT%H:%M:%S%.f").to_string())),
            "date" => Ok(Value::from_object(Day(self.0.date()))),
            "plus" => self.shifted(args.first().unwrap_or(&Value::UNDEFINED), 1.0),
            "minus" => self.shifted(args.first().unwrap_or(&Value::UNDEFINED), -1.0),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("a datetime has no '{method}' in tidemark"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.f"))
    }
}

/// A `date`.
#[derive(Debug)]
struct Day(NaiveDate);

impl Object for Day {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::Datelike;
        Some(Value::from(match key.as_str()? {
            "year" => i64::from(self.0.year()),
            "month" => i64::from(self.0.month()),
            "day" => i64::from(self.0.day()),
            _ => return None,
        }))
    }

    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "strftime" => Ok(Value::from(
                self.0.format(&text(args, 0, "strftime's format")?).to_string(),
            )),
            "isoformat" => Ok(Value::from(self.0.to_string())),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("a date has no '{method}' in tidemark"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug)]
struct ReModule;

fn pattern(args: &[Value]) -> Result<regex::Regex, Error> {
    let pattern = text(args, 0, "the pattern")?;
    regex::Regex::new(&pattern).map_err(|problem| error(format!("modules.re: '{pattern}': {problem}")))
}

impl Object for ReModule {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "search" | "match" => {
                let (regex, haystack) = (pattern(args)?, text(args, 1, "the text")?);
                let found = regex
                    .captures(&haystack)
                    .filter(|captures| method == "search" || captures.get(0).is_some_and(|whole| whole.start() == 0));
                Ok(match found {
                    Some(captures) => Value::from_object(Match(
                        captures
                            .iter()
                            .map(|group| group.map(|group| group.as_str().to_string()))
                            .collect(),
                    )),
                    None => Value::from(()),
                })
            }
            "findall" => {
                let (regex, haystack) = (pattern(args)?, text(args, 1, "the text")?);
                Ok(Value::from_iter(regex.captures_iter(&haystack).map(|captures| {
                    let group = if captures.len() > 1 {
                        captures.get(1)
                    } else {
                        captures.get(0)
                    };
                    Value::from(group.map(|group| group.as_str()).unwrap_or_default().to_string())
                })))
            }
            "sub" => {
                let regex = pattern(args)?;
                let (replacement, haystack) = (text(args, 1, "the replacement")?, text(args, 2, "the text")?);
                // Python's \1 is regex's ${1}; a literal $ is $$.
                let mut converted = String::new();
                let mut chars = replacement.chars().peekable();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                            let mut group = String::new();
                            while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                                group.push(digit);
                            }
                            converted.push_str(&format!("${{{group}}}"));
                        }
                        '$' => converted.push_str("$$"),
                        other => converted.push(other),
                    }
                }
                let replacement = converted;
                Ok(Value::from(
                    regex.replace_all(&haystack, replacement.as_str()).into_owned(),
                ))
            }
            "split" => {
                let (regex, haystack) = (pattern(args)?, text(args, 1, "the text")?);
                Ok(Value::from_iter(
                    regex.split(&haystack).map(|part| Value::from(part.to_string())),
                ))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.re has no '{method}' in tidemark"),
            )),
        }
    }
}

/// A match: `group(n)` (0: the whole match), `groups()`.
#[derive(Debug)]
struct Match(Vec<Option<String>>);

impl Object for Match {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let group = |index: usize| Value::from(self.0.get(index).cloned().flatten());
        match method {
            "group" => Ok(group(args.first().and_then(Value::as_usize).unwrap_or(0))),
            "groups" => Ok(Value::from_iter((1..self.0.len()).map(group))),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("a match has no '{method}'"),
            )),
        }
    }
}

#[derive(Debug)]
struct Itertools;

impl Object for Itertools {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let lists: Vec<Vec<Value>> = args
            .iter()
            .filter(|arg| !arg.is_kwargs())
            .map(|arg| arg.try_iter().map(Iterator::collect))
            .collect::<Result<_, _>>()?;
        match method {
            "chain" => Ok(Value::from_iter(lists.into_iter().flatten())),
            "product" => {
                let mut rows: Vec<Vec<Value>> = vec![Vec::new()];
                for list in &lists {
                    rows = rows
                        .into_iter()
                        .flat_map(|row| {
                            list.iter().map(move |item| {
                                let mut next = row.clone();
                                next.push(item.clone());
                                next
                            })
                        })
                        .collect();
                }
                Ok(Value::from_iter(rows.into_iter().map(Value::from)))
            }
            "combinations" => {
                let items = lists.first().cloned().unwrap_or_default();
                let size = args.get(1).and_then(Value::as_usize).unwrap_or(2);
                let mut result = Vec::new();
                combinations(&items, size, 0, &mut Vec::new(), &mut result);
                Ok(Value::from_iter(result.into_iter().map(Value::from)))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.itertools has no '{method}' in tidemark"),
            )),
        }
    }
}

fn combinations(items: &[Value], size: usize, from: usize, current: &mut Vec<Value>, result: &mut Vec<Vec<Value>>) {
    if current.len() == size {
        result.push(current.clone());
        return;
    }
    for index in from..items.len() {
        current.push(items[index].clone());
        combinations(items, size, index + 1, current, result);
        current.pop();
    }
}
