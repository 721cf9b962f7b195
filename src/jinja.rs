//! The Jinja environment every template starts from, and Jinja errors as diagnostics.
//!
//! Shared by the project stage (which renders `env_var()` in `tidemark.yml` and `profiles.yml`
//! before parsing them) and the template stage (models, tests and macros); it depends only on
//! [`crate::diagnostics`].

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

use crate::diagnostics::{Diagnostic, Diagnostics};

/// A Jinja environment that renders SQL and YAML verbatim, as dbt does.
pub(crate) fn base_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // SQL and YAML are rendered verbatim: no HTML or JSON escaping by file extension.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_keep_trailing_newline(false);
    env.set_trim_blocks(false);
    // A bounded amount of work per render: nested loops that would run for hours stop with an
    // error instead (about half a second of rendering in a release build).
    env.set_fuel(Some(MAX_JINJA_STEPS));
    env
}

/// The most Jinja instructions one render may run.
pub const MAX_JINJA_STEPS: u64 = 30_000_000;

/// Renders `env_var()` in a configuration file (project file, profiles) before it is parsed.
pub fn render_config_text(file: &str, text: &str) -> Result<String, Diagnostics> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    let mut env = base_environment();
    env.set_keep_trailing_newline(true);
    env.add_function("env_var", env_var);
    let template = env
        .template_from_named_str(file, text)
        .map_err(|error| jinja_diagnostic(&error, file))?;
    template
        .render(())
        .map_err(|error| jinja_diagnostic(&error, file).into())
}

/// A diagnostic at the template's file and line, with minijinja's explanation.
pub(crate) fn jinja_diagnostic(error: &minijinja::Error, fallback_name: &str) -> Diagnostic {
    // The innermost error with a location is the one the user has to fix.
    let mut located: &minijinja::Error = error;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = current {
        if let Some(jinja) = inner.downcast_ref::<minijinja::Error>() {
            if jinja.line().is_some() {
                located = jinja;
            }
        }
        current = inner.source();
    }
    // The source the error points at, e.g. the undefined name (`{{ foo.bar }}`: `foo.bar`).
    let culprit = match (located.template_source(), located.range()) {
        (Some(source), Some(range)) => source.get(range).map(str::trim).filter(|text| !text.is_empty()),
        _ => None,
    };
    let message = match (located.detail(), culprit) {
        _ if located.kind() == ErrorKind::OutOfFuel => format!(
            "the template runs more than {MAX_JINJA_STEPS} steps (loops nested too deep?), so its rendering was stopped{}",
            culprit.map(|text| format!(" at '{text}'")).unwrap_or_default()
        ),
        (Some(detail), _) => format!("{}: {detail}", located.kind()),
        (None, Some(culprit)) if located.kind() == ErrorKind::UndefinedError => {
            format!("'{culprit}' is undefined")
        }
        (None, Some(culprit)) => format!("{} (at '{culprit}')", located.kind()),
        (None, None) => located.kind().to_string(),
    };
    Diagnostic::new(format!("Jinja error: {message}"))
        .in_file(located.name().unwrap_or(fallback_name))
        .at_line(located.line())
}

/// `env_var('NAME', default)`: the variable's value, else the default, else an error.
pub(crate) fn env_var(name: String, default: Option<Value>) -> Result<Value, Error> {
    match std::env::var(&name) {
        Ok(value) => Ok(Value::from(value)),
        Err(_) => match default {
            Some(default) => Ok(default),
            None => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("environment variable '{name}' is required but not set, and no default was given"),
            )),
        },
    }
}

/// `var('name', default)`: the project's var (with `--vars` applied), else the default, else an
/// error that says where to set it.
pub(crate) fn var_value(
    vars: &std::collections::BTreeMap<String, serde_json::Value>,
    name: &str,
    default: Option<Value>,
) -> Result<Value, Error> {
    match (vars.get(name), default) {
        (Some(value), _) => Ok(Value::from_serialize(value)),
        (None, Some(default)) => Ok(default),
        (None, None) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "required var '{name}' is not set: define it under vars: in the project file or pass --vars '{{{name}: ...}}'"
            ),
        )),
    }
}

/// The `var` function over `vars`.
pub(crate) fn var_function(
    vars: std::sync::Arc<std::collections::BTreeMap<String, serde_json::Value>>,
) -> impl Fn(String, Option<Value>) -> Result<Value, Error> + Send + Sync + 'static {
    move |name, default| var_value(&vars, &name, default)
}
