//! Secrets never leave the process: a project whose S3 credentials and webhook token come from
//! `env_var()` is built on a real S3 server (and on local disk), with text and JSON logs, a JUnit
//! report, notifications sent, the docs site generated, `debug` and a failing command; then every
//! byte it printed and every file it wrote in the project (and the local warehouse) is scanned
//! for the secret values.

use std::path::Path;

use crate::common::s3::{S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use crate::common::{command, fixture};

const HOOK_TOKEN: &str = "hook-token-7f3a9c51e2";

/// Everything a run printed, and its exit code.
fn run(project: &Path, server: &S3Server, args: &[&str]) -> (Option<i32>, String) {
    let output = command(project)
        .env("TIDEMARK_S3_WAREHOUSE", format!("s3://{BUCKET}/secrets"))
        .env("TIDEMARK_S3_ENDPOINT", &server.endpoint)
        .env("TIDEMARK_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("TIDEMARK_S3_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("HOOK_TOKEN", HOOK_TOKEN)
        .args(args)
        .output()
        .expect("run tidemark");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), printed)
}

#[test]
fn secrets_reach_no_log_artifact_report_ledger_or_docs_page() {
    let server = S3Server::shared();
    let project = fixture("alert_cases");
    let root = project.path();
    let (port, received) = crate::notify::receiver(0);
    // Notifications to a webhook whose path and Authorization header carry the token.
    crate::notify::notify_to(root, port, "");
    // Two targets: the S3 server (credentials from the environment) and local disk.
    std::fs::write(
        root.join("profiles.yml"),
        "alert_cases:\n  target: s3\n  outputs:\n    s3:\n      type: datafusion\n      warehouse: \"{{ env_var('TIDEMARK_S3_WAREHOUSE') }}\"\n      schema: main\n      storage:\n        endpoint: \"{{ env_var('TIDEMARK_S3_ENDPOINT') }}\"\n        region: us-east-1\n        path_style: true\n        allow_http: true\n        access_key_id: \"{{ env_var('TIDEMARK_S3_ACCESS_KEY_ID') }}\"\n        secret_access_key: \"{{ env_var('TIDEMARK_S3_SECRET_ACCESS_KEY') }}\"\n    local:\n      type: datafusion\n      warehouse: warehouse\n      schema: main\n",
    )
    .unwrap();

    let mut printed = String::new();
    for (args, expected) in [
        (&["build", "--junit", "junit.xml"][..], Some(0)),
        (&["build", "--log-format", "json", "--full-refresh"][..], Some(0)),
        (&["docs", "generate"][..], Some(0)),
        (&["debug"][..], Some(0)),
        (
            &["show", "--inline", "select * from {{ ref('nothing_here') }}"][..],
            Some(2),
        ),
        (
            &["build", "--target", "local", "--junit", "junit_local.xml"][..],
            Some(0),
        ),
        (&["docs", "generate", "--target", "local"][..], Some(0)),
    ] {
        let (code, text) = run(root, server, args);
        assert_eq!(code, expected, "tidemark {}\n{text}", args.join(" "));
        printed.push_str(&text);
    }
    // The notifications went out, with the token where it belongs (so the scan below means
    // something): in the request, never in what tidemark printed or wrote.
    let requests = received.lock().unwrap().clone();
    assert!(!requests.is_empty(), "no notification was sent\n{printed}");
    assert!(requests.iter().all(|r| r.request_line.contains(HOOK_TOKEN)));

    for secret in [SECRET_KEY, HOOK_TOKEN] {
        assert!(
            !printed.contains(secret),
            "a run printed the secret '{secret}'\n{printed}"
        );
        for entry in walkdir::WalkDir::new(root)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
        {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(secret),
                "{} holds the secret '{secret}'",
                entry.path().strip_prefix(root).unwrap_or(entry.path()).display()
            );
        }
    }
    // What the runs wrote is there to scan: artifacts, reports, the site, the local warehouse
    // with its commit log and notification ledger.
    for file in [
        "target/manifest.json",
        "target/run_results.json",
        "target/catalog.json",
        "target/docs/assets/data.js",
        "junit.xml",
        "junit_local.xml",
    ] {
        assert!(root.join(file).is_file(), "{file} was not written");
    }
    assert!(root.join("warehouse/_tidemark").is_dir());
}
