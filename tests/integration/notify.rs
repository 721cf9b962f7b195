//! Notifications of alert cases: a real HTTP receiver on 127.0.0.1 (one that fails twice and
//! then succeeds) and a command target; each case is sent once across runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::common::{command, fixture, transcript};

/// One request the receiver got: its answer, request line, headers and body.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    answered: u16,
    pub(crate) request_line: String,
    headers: String,
    body: String,
}

/// An HTTP receiver on 127.0.0.1 that answers 500 to its first `failures` requests, then 200.
pub(crate) fn receiver(failures: usize) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("address").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut headers = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                headers.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut log = log.lock().expect("log");
            let answered = if log.len() < failures { 500 } else { 200 };
            log.push(Received {
                answered,
                request_line: request_line.trim().to_string(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let reason = if answered == 200 { "OK" } else { "Internal Server Error" };
            let _ = write!(
                stream,
                "HTTP/1.1 {answered} {reason}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        }
    });
    (port, received)
}

/// Makes the `alert_cases` fixture's metric model notify a webhook on 127.0.0.1:`port` whose
/// path and Authorization header carry `env_var('HOOK_TOKEN')`, then the targets in `more`.
pub(crate) fn notify_to(root: &std::path::Path, port: u16, more: &str) {
    let spec = root.join("models/metrics.yml");
    let yaml = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        yaml.replace(
            "    actions: alert_actions\n",
            &format!(
                "    actions: alert_actions\n    notify:\n      - webhook: \"http://127.0.0.1:{port}/hook/{{{{ env_var('HOOK_TOKEN') }}}}\"\n        headers: {{Authorization: \"Bearer {{{{ env_var('HOOK_TOKEN') }}}}\"}}\n{more}"
            ),
        ),
    )
    .unwrap();
}

fn run(project: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let output = command(project)
        .env("HOOK_TOKEN", "s3cr3t-token")
        .args(args)
        .output()
        .expect("run tidemark");
    (output.status.code(), transcript(&output, project))
}

#[test]
fn new_cases_are_notified_once_by_webhook_and_command_with_retries() {
    let project = fixture("alert_cases");
    let root = project.path();
    let (port, received) = receiver(2);
    let spec = root.join("models/metrics.yml");
    notify_to(
        root,
        port,
        "      - command: \"cat >> notified.jsonl; echo >> notified.jsonl\"\n",
    );

    // --no-notify: nothing is sent.
    let (code, text) = run(root, &["build", "--no-notify"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(received.lock().unwrap().is_empty());
    assert!(!root.join("notified.jsonl").exists());

    // The three new cases (l3 reopened, l4's quiet_late and l5 open), after the receiver failed
    // twice: the first case's webhook is retried.
    let (code, text) = run(root, &["build"]);
    assert_eq!(code, Some(0), "{text}");
    let log = received.lock().unwrap().clone();
    let answers: Vec<u16> = log.iter().map(|r| r.answered).collect();
    assert_eq!(answers, [500, 500, 200, 200, 200], "{log:?}");
    let delivered: Vec<serde_json::Value> = log
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| serde_json::from_str(&r.body).expect("JSON body"))
        .collect();
    let mut kinds: Vec<(String, String)> = delivered
        .iter()
        .map(|body| {
            (
                body["tidemark"]["case"]["learner_id"].as_str().unwrap().to_string(),
                body["tidemark"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("l3".to_string(), "reopened".to_string()),
            ("l4".to_string(), "new".to_string()),
            ("l5".to_string(), "new".to_string())
        ]
    );
    // A Slack-compatible text, the rendered URL and header; the secret in no output.
    assert!(delivered
        .iter()
        .all(|body| body["text"].as_str().unwrap().contains("case of case_card")));
    assert!(log
        .iter()
        .all(|r| r.request_line.starts_with("POST /hook/s3cr3t-token ")));
    assert!(log.iter().all(|r| r.headers.contains("Bearer s3cr3t-token")));
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("Notified the reopened case"), "{text}");
    let manifest = std::fs::read_to_string(root.join("target/manifest.json")).unwrap();
    assert!(!manifest.contains("s3cr3t"));
    // The command got the same three payloads on its stdin.
    let lines = std::fs::read_to_string(root.join("notified.jsonl")).unwrap();
    assert_eq!(lines.lines().filter(|line| !line.is_empty()).count(), 3, "{lines}");

    // Another run (and a retry of it) sends nothing again.
    let (code, text) = run(root, &["build"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(received.lock().unwrap().len(), 5);
    let lines = std::fs::read_to_string(root.join("notified.jsonl")).unwrap();
    assert_eq!(lines.lines().filter(|line| !line.is_empty()).count(), 3, "{lines}");

    // A target that keeps failing is a warning, the build passes, and the case is kept for the
    // next run.
    let (dead_port, dead) = receiver(usize::MAX);
    let yaml = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        yaml.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{dead_port}")),
    )
    .unwrap();
    let (code, text) = run(root, &["build"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("could not notify the reopened case"), "{text}");
    assert!(
        text.contains("the webhook answered 500 Internal Server Error (after 4 of 4 tries)"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    assert_eq!(dead.lock().unwrap().len(), 12, "3 cases × 4 tries");
}
