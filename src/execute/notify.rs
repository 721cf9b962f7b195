//! Notifications of alert cases: after a run's nodes have committed, each new (`open`),
//! `reopened` or escalated (in the latest period) case of an alert-cases model whose rule has
//! `notify:` targets is sent to each target, once.
//!
//! - A webhook gets a POST of the payload as JSON: a Slack-compatible `text` and the structured
//!   `tidemark` object (model, kind, the case's row). Its URL and headers may use `env_var()`;
//!   they are rendered only to send and never printed.
//! - A command (run by `sh -c`) gets the payload on its stdin; exit 0 is success.
//!
//! Each is tried up to [`ATTEMPTS`] times with doubling pauses. A target that still fails is a
//! warning and the case stays unsent for it, so the next run sends it again; nothing is lost.
//! What was sent is recorded per case, kind and target in the warehouse's notification ledger
//! (`_tidemark/notifications/<schema>/<table>/`), so no case is sent twice across runs and
//! retries.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value as Json};

use super::{NodeResult, NodeStatus, Session};
use crate::compile::TemplateEngine;
use crate::graph::Node;

/// Tries per target and notification.
pub const ATTEMPTS: u32 = 4;

/// The first pause between tries; each next one is twice as long.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// What notifying did: one line per notification sent, one warning per one that failed.
#[derive(Debug, Default)]
pub struct Notified {
    pub sent: Vec<String>,
    pub warnings: Vec<String>,
}

/// A target as declared (templates unrendered).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct Target {
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    command: Option<String>,
}

impl Target {
    /// A short stable id of the target as declared (so each target is deduplicated on its own).
    fn id(&self) -> String {
        let declared = serde_json::to_string(self).unwrap_or_default();
        crate::project::sha256(declared.as_bytes())[..12].to_string()
    }

    fn kind(&self) -> &'static str {
        match self.webhook {
            Some(_) => "webhook",
            None => "command",
        }
    }
}

/// Sends the notifications of every alert-cases model that `results` shows built this run.
pub async fn notify(session: &Session, results: &[NodeResult], engine: &TemplateEngine) -> Notified {
    let mut notified = Notified::default();
    let graph = session.graph();
    for result in results.iter().filter(|result| result.status == NodeStatus::Success) {
        let Some(node) = graph.nodes.get(&result.unique_id) else {
            continue;
        };
        let Some(Json::Object(by_rule)) = node.config.get(crate::graph::NOTIFY_CONFIG) else {
            continue;
        };
        let targets: BTreeMap<String, Vec<Target>> = by_rule
            .iter()
            .map(|(rule, targets)| {
                (
                    rule.clone(),
                    serde_json::from_value(targets.clone()).unwrap_or_default(),
                )
            })
            .collect();
        if let Err(message) = notify_model(session, node, &targets, engine, &mut notified).await {
            notified.warnings.push(format!(
                "cannot notify the cases of {}: {message}; they are sent next run",
                node.name
            ));
        }
    }
    notified
}

/// The notifications of one alert-cases model.
async fn notify_model(
    session: &Session,
    node: &Node,
    targets: &BTreeMap<String, Vec<Target>>,
    engine: &TemplateEngine,
    notified: &mut Notified,
) -> Result<(), String> {
    let relation = node.relation().ok_or("it has no table")?;
    session
        .register_written_table(relation)
        .await
        .map_err(|error| error.to_string())?;
    let rows = case_rows(session, &relation.rendered).await?;
    let sent = session
        .warehouse
        .notified(relation)
        .await
        .map_err(|error| error.to_string())?;
    for (entity, row) in rows {
        let text = |key: &str| row.get(key).and_then(Json::as_str).unwrap_or_default().to_string();
        let (case_id, rule) = (text("case_id"), text("rule"));
        let kind = match text("status").as_str() {
            "open" => "new",
            "reopened" => "reopened",
            _ => "escalated",
        };
        for target in targets.get(&rule).into_iter().flatten() {
            let key = format!("{case_id}.{kind}.{}", target.id());
            if sent.contains(&key) {
                continue;
            }
            let summary = format!(
                "[{}] {rule}: {entity} {} — a {} case of {} (opened {}; owner {}; triage due {}, plan due {})",
                text("max_severity"),
                row.get(&entity).map(plain).unwrap_or_default(),
                kind,
                node.name,
                text("opened_period"),
                text("owner"),
                text("triage_due"),
                text("plan_due"),
            );
            let payload = json!({
                "text": summary,
                "tidemark": {"model": node.name, "kind": kind, "case": row},
            });
            match send(target, &payload, engine).await {
                Ok(()) => {
                    let record = json!({
                        "case_id": case_id,
                        "kind": kind,
                        "target": target.kind(),
                        "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    });
                    if let Err(error) = session.warehouse.record_notified(relation, &key, &record).await {
                        notified.warnings.push(format!(
                            "sent case {case_id} of {} but could not record it: {error}; it may be sent again",
                            node.name
                        ));
                    }
                    notified.sent.push(format!(
                        "{kind} case {case_id} of {} ({rule}) via {}",
                        node.name,
                        target.kind()
                    ));
                }
                Err(message) => notified.warnings.push(format!(
                    "could not notify the {kind} case {case_id} of {} ({rule}) via {}: {message}; it is sent next run",
                    node.name,
                    target.kind()
                )),
            }
        }
    }
    Ok(())
}

/// The cases to notify: new, reopened, or escalated in the latest period; each as a JSON object,
/// with the name of its entity column.
async fn case_rows(session: &Session, table: &str) -> Result<Vec<(String, serde_json::Map<String, Json>)>, String> {
    let sql = format!(
        "select * from {table} where status in ('open', 'reopened') or escalated_period = as_of order by case_id"
    );
    let frame = session.ctx.sql(&sql).await.map_err(|error| error.strip_backtrace())?;
    let entity = frame.schema().field(1).name().clone();
    let batches = frame.collect().await.map_err(|error| error.strip_backtrace())?;
    let rows = super::catalog::json_rows(&batches)?;
    Ok(rows.into_iter().map(|row| (entity.clone(), row)).collect())
}

fn plain(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Sends `payload` to one target, with retries; the message of the last failure (never the
/// rendered URL or headers).
async fn send(target: &Target, payload: &Json, engine: &TemplateEngine) -> Result<(), String> {
    let body = serde_json::to_vec(payload).map_err(|error| error.to_string())?;
    let render = |template: &str| {
        engine
            .render_with("notify", template, &json!({}))
            .map_err(|problem| format!("cannot render it: {}", problem.message))
    };
    let mut pause = FIRST_PAUSE;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let outcome = match (&target.webhook, &target.command) {
            (Some(url), _) => {
                let url = render(url)?;
                let mut headers = Vec::new();
                for (name, value) in &target.headers {
                    headers.push((name.clone(), render(value)?));
                }
                post(&url, &headers, body.clone()).await
            }
            (None, Some(command)) => run_command(command.clone(), body.clone()).await,
            (None, None) => return Err("the target has neither webhook: nor command:".into()),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(message) => last = format!("{message} (after {attempt} of {ATTEMPTS} tries)"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    Err(last)
}

async fn post(url: &str, headers: &[(String, String)], body: Vec<u8>) -> Result<(), String> {
    let mut request = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(10))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    // reqwest's errors name the URL, which may hold a secret: dropped.
    let response = request
        .send()
        .await
        .map_err(|error| format!("the request failed: {}", error.without_url()))?;
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(format!("the webhook answered {status}")),
    }
}

async fn run_command(command: String, body: Vec<u8>) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .args(["-c", &command])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start the command: {error}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&body);
        }
        let status = child.wait().map_err(|error| error.to_string())?;
        match status.success() {
            true => Ok(()),
            false => Err(format!("the command exited with {status}")),
        }
    })
    .await
    .map_err(|error| error.to_string())?
}
