//! The printer: every line tidemark shows goes through here.
//!
//! Text mode prints dbt-style lines (`HH:MM:SS  1 of 9 START sql table model main.x .... [RUN]`)
//! and, on a terminal, a progress bar on stderr. JSON mode prints one object per line with an
//! `event` field. Write errors (a closed pipe) are ignored: output is best-effort, exit codes
//! carry the result.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value as Json};

use super::LogFormat;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::execute::{NodeResult, NodeStatus, Reporter};
use crate::graph::{Materialization, Node, ResourceType};

/// Width of the dotted status lines.
const LINE_WIDTH: usize = 80;

pub struct Printer {
    format: LogFormat,
    progress_allowed: bool,
    bar: Mutex<Option<ProgressBar>>,
    out: Mutex<()>,
}

impl Printer {
    pub fn new(format: LogFormat, progress_allowed: bool) -> Printer {
        Printer {
            format,
            progress_allowed,
            bar: Mutex::new(None),
            out: Mutex::new(()),
        }
    }

    fn timestamp() -> String {
        chrono::Local::now().format("%H:%M:%S").to_string()
    }

    fn emit_json(&self, level: &str, event: &str, mut fields: Json) {
        let object = fields.as_object_mut().expect("json fields are an object");
        let mut line = serde_json::Map::new();
        line.insert(
            "ts".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert("level".into(), json!(level));
        line.insert("event".into(), json!(event));
        line.append(object);
        self.write_stdout(&Json::Object(line).to_string());
    }

    fn write_stdout(&self, text: &str) {
        let text = crate::diagnostics::redact(text);
        let _lock = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let write = || {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{text}");
            let _ = stdout.flush();
        };
        match self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    fn write_stderr(&self, text: &str) {
        let text = crate::diagnostics::redact(text);
        let _lock = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{text}");
    }

    /// An informational line (text: timestamped; JSON: `{"event": "info", "message": ...}`).
    pub fn info(&self, message: &str) {
        match self.format {
            LogFormat::Text => {
                let timestamp = Self::timestamp();
                let text: Vec<String> = message
                    .lines()
                    .map(|line| format!("{timestamp}  {line}").trim_end().to_string())
                    .collect();
                self.write_stdout(&if text.is_empty() { timestamp } else { text.join("\n") });
            }
            LogFormat::Json => self.emit_json("info", "info", json!({"message": message})),
        }
    }

    /// Output that is the command's result (compiled SQL, `ls` lines, previews): no decoration.
    pub fn result(&self, text: &str) {
        self.write_stdout(text.trim_end_matches('\n'));
    }

    /// Problems that stop a command before it runs (exit code 2), on stderr.
    pub fn diagnostics(&self, diagnostics: &Diagnostics) {
        match self.format {
            LogFormat::Text => {
                let count = diagnostics.0.len();
                let heading = if count == 1 {
                    "error".to_string()
                } else {
                    format!("{count} errors")
                };
                self.write_stderr(&format!("{heading}:"));
                for diagnostic in &diagnostics.0 {
                    self.write_stderr(&indent(&diagnostic.to_string(), "  "));
                }
            }
            LogFormat::Json => {
                for diagnostic in &diagnostics.0 {
                    self.emit_json("error", "diagnostic", diagnostic_json(diagnostic));
                }
            }
        }
    }

    pub fn warning(&self, diagnostic: &Diagnostic) {
        match self.format {
            LogFormat::Text => self.write_stderr(&format!(
                "warning: {}",
                indent(&diagnostic.to_string(), "  ").trim_start()
            )),
            LogFormat::Json => self.emit_json("warn", "diagnostic", diagnostic_json(diagnostic)),
        }
    }

    /// An error that is not tied to a file.
    pub fn fatal(&self, message: &str) {
        self.diagnostics(&Diagnostic::new(message).into());
    }

    /// Why a command could not do its work (the one place errors are rendered).
    pub fn error(&self, error: &crate::diagnostics::Error) {
        match error {
            crate::diagnostics::Error::Input(diagnostics) => self.diagnostics(diagnostics),
            other => self.fatal(&other.to_string()),
        }
    }

    /// Starts the progress bar for `total` nodes (only on a terminal, in text mode).
    pub fn start_progress(&self, total: usize) {
        if !self.progress_allowed || self.format != LogFormat::Text || !std::io::stderr().is_terminal() || total == 0 {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    pub fn finish_progress(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    /// The dbt-style summary after a run.
    pub fn run_summary(&self, nodes: &[(&Node, &NodeResult)], elapsed: f64) {
        let count = |status: NodeStatus| nodes.iter().filter(|(_, r)| r.status == status).count();
        let pass = count(NodeStatus::Success) + count(NodeStatus::Pass);
        let warn = count(NodeStatus::Warn);
        let error = count(NodeStatus::Error) + count(NodeStatus::Fail);
        let skip = count(NodeStatus::Skipped);
        let total = nodes.len();
        if self.format == LogFormat::Json {
            self.emit_json(
                if error > 0 { "error" } else { "info" },
                "run_finished",
                json!({"elapsed": round(elapsed), "pass": pass, "warn": warn, "error": error, "skip": skip, "total": total}),
            );
            return;
        }
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for (node, _) in nodes {
            let kind = match (node.resource_type, node.materialized) {
                (ResourceType::Model, materialized) => format!("{} model", materialized.as_str()),
                (ResourceType::Seed, _) => "seed".into(),
                (ResourceType::Test, _) if node.is_unit_test() => "unit test".into(),
                (ResourceType::Test, _) => "data test".into(),
                (ResourceType::Source, _) => "source".into(),
                (ResourceType::Snapshot, _) => "snapshot".into(),
            };
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((kind, 1)),
            }
        }
        let kinds: Vec<String> = kinds.iter().map(|(kind, n)| plural(*n, kind)).collect();
        self.info("");
        self.info(&format!(
            "Finished running {} in {:.2}s.",
            if kinds.is_empty() {
                "nothing".to_string()
            } else {
                kinds.join(", ")
            },
            elapsed
        ));
        let problems: Vec<&(&Node, &NodeResult)> = nodes
            .iter()
            .filter(|(_, r)| matches!(r.status, NodeStatus::Error | NodeStatus::Fail | NodeStatus::Warn))
            .collect();
        self.info("");
        if error == 0 && warn == 0 {
            self.info("Completed successfully");
        } else {
            self.info(&format!(
                "Completed with {} and {}:",
                plural(error, "error"),
                plural(warn, "warning")
            ));
            for (node, result) in problems {
                self.info("");
                let place = node.path.clone();
                match result.status {
                    NodeStatus::Fail | NodeStatus::Warn => {
                        let word = if result.status == NodeStatus::Fail {
                            "Failure"
                        } else {
                            "Warning"
                        };
                        self.info(&format!("{word} in test {} ({place})", node.name));
                        match &result.error {
                            Some(difference) => self.info(&indent(difference, "  ")),
                            None => {
                                // A warning that --warn-error made a failure says so.
                                let warned =
                                    result.status == NodeStatus::Warn || result.message.contains("--warn-error");
                                let (key, verb) = if warned {
                                    ("warn_if", "warn")
                                } else {
                                    ("error_if", "fail")
                                };
                                let condition = node.threshold(key).map(|t| t.to_string()).unwrap_or_default();
                                let promoted = if result.status == NodeStatus::Fail && warned {
                                    "; --warn-error makes it a failure"
                                } else {
                                    ""
                                };
                                self.info(&format!(
                                    "  Got {}, configured to {verb} if {condition}{promoted}",
                                    plural(result.failures.unwrap_or(0) as usize, "failing row"),
                                ))
                            }
                        }
                        if let Some(path) = &result.compiled_path {
                            self.info(&format!("  compiled SQL: {path}"));
                        }
                    }
                    _ => {
                        self.info(&format!(
                            "Error in {} {} ({place})",
                            node.resource_type.as_str(),
                            node.name
                        ));
                        self.info(&indent(result.error.as_deref().unwrap_or("unknown error"), "  "));
                    }
                }
            }
        }
        self.info("");
        self.info(&format!(
            "Done. PASS={pass} WARN={warn} ERROR={error} SKIP={skip} TOTAL={total}"
        ));
    }
}

fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn diagnostic_json(diagnostic: &Diagnostic) -> Json {
    json!({
        "file": diagnostic.file,
        "line": diagnostic.line,
        "column": diagnostic.column,
        "message": diagnostic.message,
        "help": diagnostic.help,
    })
}

/// `sql table model main.x`, `seed file main.teams`, `test unique_x_id`.
fn describe(node: &Node) -> String {
    match (node.resource_type, node.materialized) {
        (ResourceType::Model, Materialization::View) => format!("sql view model {}", node.display_relation()),
        (ResourceType::Model, Materialization::Incremental) => {
            format!("sql incremental model {}", node.display_relation())
        }
        (ResourceType::Model, _) => format!("sql table model {}", node.display_relation()),
        (ResourceType::Seed, _) => format!("seed file {}", node.display_relation()),
        (ResourceType::Test, _) => format!("test {}", node.name),
        (ResourceType::Source, _) => format!("source {}", node.display_relation()),
        (ResourceType::Snapshot, _) => format!("snapshot {}", node.display_relation()),
    }
}

fn dotted(left: &str, right: &str) -> String {
    let dots = LINE_WIDTH.saturating_sub(left.len() + right.len() + 2).max(3);
    format!("{left} {} {right}", ".".repeat(dots))
}

impl Reporter for Printer {
    fn node_started(&self, position: usize, total: usize, node: &Node) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            bar.set_message(node.name.clone());
        }
        match self.format {
            LogFormat::Text => self.info(&dotted(&format!("{position} of {total} START {}", describe(node)), "[RUN]")),
            LogFormat::Json => self.emit_json(
                "info",
                "node_started",
                json!({"node": node.unique_id, "position": position, "total": total, "resource_type": node.resource_type, "materialized": node.materialized}),
            ),
        }
    }

    fn node_finished(&self, position: usize, total: usize, node: &Node, result: &NodeResult) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            bar.inc(1);
        }
        match self.format {
            LogFormat::Text => {
                let seconds = result.execution_time;
                let (left, right) = match result.status {
                    NodeStatus::Success => {
                        let verb = match node.resource_type {
                            ResourceType::Seed => "loaded",
                            _ => "created",
                        };
                        (
                            format!("OK {verb} {}", describe(node)),
                            format!("[{} in {seconds:.2}s]", result.message),
                        )
                    }
                    NodeStatus::Error => {
                        let verb = match node.resource_type {
                            ResourceType::Seed => "loading",
                            ResourceType::Test => "running",
                            _ => "creating",
                        };
                        (
                            format!("ERROR {verb} {}", describe(node)),
                            format!("[ERROR in {seconds:.2}s]"),
                        )
                    }
                    NodeStatus::Pass => (format!("PASS {}", node.name), format!("[PASS in {seconds:.2}s]")),
                    NodeStatus::Fail => (
                        format!("FAIL {} {}", result.failures.unwrap_or(0), node.name),
                        format!("[FAIL {} in {seconds:.2}s]", result.failures.unwrap_or(0)),
                    ),
                    NodeStatus::Warn => (
                        format!("WARN {} {}", result.failures.unwrap_or(0), node.name),
                        format!("[WARN {} in {seconds:.2}s]", result.failures.unwrap_or(0)),
                    ),
                    NodeStatus::Skipped => (format!("SKIP {}", describe(node)), "[SKIP]".to_string()),
                };
                self.info(&dotted(&format!("{position} of {total} {left}"), &right));
            }
            LogFormat::Json => self.emit_json(
                if result.status.is_failure() { "error" } else { "info" },
                "node_finished",
                json!({
                    "node": node.unique_id,
                    "position": position,
                    "total": total,
                    "status": result.status,
                    "execution_time": round(result.execution_time),
                    "rows_affected": result.rows_affected,
                    "failures": result.failures,
                    "message": result.message,
                    "error": result.error,
                }),
            ),
        }
    }

    fn notice(&self, message: &str) {
        match self.format {
            LogFormat::Text => self.info(&format!("note: {message}")),
            LogFormat::Json => self.emit_json("warn", "notice", json!({"message": message})),
        }
    }
}
