//! YAML parsing with positions: every syntax or shape error becomes a diagnostic at `file:line:col`.

use serde::de::DeserializeOwned;

use crate::diagnostics::Diagnostic;

/// Parses `text` (the contents of `file`) into `T`, reporting errors with their location.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Diagnostic> {
    serde_yaml::from_str(text).map_err(|error| yaml_diagnostic(file, &error))
}

/// A diagnostic for a serde_yaml error, located when serde_yaml knows where it happened.
pub fn yaml_diagnostic(file: &str, error: &serde_yaml::Error) -> Diagnostic {
    // serde_yaml appends " at line L column C" to its message; the location is reported separately.
    let message = error.to_string();
    let message = match message.find(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message,
    };
    let diagnostic = Diagnostic::new(format!("invalid YAML: {message}")).in_file(file);
    match error.location() {
        Some(location) => diagnostic.at(location.line(), Some(location.column())),
        None => diagnostic,
    }
}
