//! User-facing diagnostics: one problem, where it is, and what to do about it.
//!
//! Every stage reports the user's mistakes as [`Diagnostic`]s (a file and line when one is known,
//! a message, an optional hint such as "did you mean"). Loading collects all of them before
//! stopping, so one run shows every problem. A command that cannot do its work returns an
//! [`Error`]: the user's input ([`Diagnostics`]), the environment (a store or lock), or a bug in
//! tidemark itself ([`Error::Internal`], which says so). The CLI renders it once.

use std::fmt;

/// A place in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One user-facing problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Path relative to the project root (or absolute for files outside it), if known.
    pub file: Option<String>,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// 1-based column, if known.
    pub column: Option<usize>,
    pub message: String,
    /// A suggestion, e.g. "did you mean 'stg_events'?".
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            file: None,
            line: None,
            column: None,
            message: shortened(message.into()),
            help: None,
        }
    }

    /// The same problem with `context` before its message (`model 'x': …`), place and help kept.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn at(mut self, line: usize, column: Option<usize>) -> Self {
        self.line = Some(line);
        self.column = column;
        self
    }

    pub fn at_line(self, line: Option<usize>) -> Self {
        match line {
            Some(line) => self.at(line, None),
            None => self,
        }
    }

    /// At `position` when it is known (line and column).
    pub fn at_position(self, position: Option<Position>) -> Self {
        match position {
            Some(position) => self.at(position.line, Some(position.column)),
            None => self,
        }
    }

    /// At `line` and, when known, `column`.
    pub fn at_place(self, line: Option<usize>, column: Option<usize>) -> Self {
        match line {
            Some(line) => self.at(line, column),
            None => self,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `file:line:col` as far as it is known.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
            (Some(line), None) => format!("{file}:{line}"),
            _ => file.clone(),
        })
    }
}

impl From<&str> for Diagnostic {
    fn from(message: &str) -> Self {
        Diagnostic::new(message)
    }
}

impl From<String> for Diagnostic {
    fn from(message: String) -> Self {
        Diagnostic::new(message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location() {
            Some(location) => write!(f, "{location}: {}", self.message)?,
            None => write!(f, "{}", self.message)?,
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Several problems found in one pass. Never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when nothing was collected, otherwise every collected problem, sorted by place.
    pub fn into_result<T>(mut self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            self.0
                .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            self.0.dedup();
            Err(self)
        }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Self {
        Diagnostics(vec![diagnostic])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Why a command could not do its work: returned by every stage, rendered once by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What the user wrote or set is wrong (project, profile, arguments, selection): every
    /// problem found, each with its place.
    #[error("{0}")]
    Input(Diagnostics),
    /// The environment stopped the command: a warehouse, store, cluster or folder that cannot be
    /// reached or written, or a run lock held past `--lock-timeout`.
    #[error("{0}")]
    Environment(String),
    /// A bug in tidemark itself.
    #[error("internal error (a bug in tidemark; please report it): {0}")]
    Internal(String),
}

impl From<Diagnostics> for Error {
    fn from(diagnostics: Diagnostics) -> Self {
        Error::Input(diagnostics)
    }
}

impl From<Diagnostic> for Error {
    fn from(diagnostic: Diagnostic) -> Self {
        Error::Input(diagnostic.into())
    }
}

/// The closest of `candidates` to `name`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(name, candidate);
        if score >= 0.8 && best.is_none_or(|(best_score, _)| score > best_score) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// 1-based line of the first occurrence of `needle` in `text`.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|offset| text[..offset].matches('\n').count() + 1)
}

/// Secret values (profile credentials) that must never be printed or written to artifacts.
static SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Registers secret values; [`redact`] replaces them with `***` from now on.
pub fn register_secrets(secrets: impl IntoIterator<Item = String>) {
    let mut guard = SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    for secret in secrets {
        if !secret.is_empty() && !guard.contains(&secret) {
            guard.push(secret);
        }
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let guard = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !guard.iter().any(|secret| text.contains(secret.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut owned = text.to_string();
    for secret in guard.iter() {
        owned = owned.replace(secret.as_str(), "***");
    }
    std::borrow::Cow::Owned(owned)
}

/// The longest message a diagnostic prints: a message quoting a huge input (a 5 MB name) keeps
/// its start and end.
const MAX_MESSAGE: usize = 2_000;

fn shortened(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let head_end = (0..=MAX_MESSAGE / 2)
        .rev()
        .find(|i| message.is_char_boundary(*i))
        .unwrap_or(0);
    let tail_start = (message.len() - 200..message.len())
        .find(|i| message.is_char_boundary(*i))
        .unwrap_or(message.len());
    format!(
        "{} … ({} bytes left out) … {}",
        &message[..head_end],
        tail_start - head_end,
        &message[tail_start..]
    )
}
