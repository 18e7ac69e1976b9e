//! Incoming webhooks, signed by an implementation nobody on the team wrote:
//! the `standardwebhooks` package from PyPI (installed by `scripts/test` into
//! `target/webhooks-venv`). A signed message runs the hook's agent once per
//! `webhook-id`; unsigned, badly signed, stale and replayed-with-another-body
//! messages are refused.

use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, create_key, error_code, test_config};

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/webhooks-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/standardwebhooks (scripts/test does)",
        python.display()
    );
    python
}

/// The Standard Webhooks headers for `body`, made by the reference package,
/// at `timestamp` (Unix seconds).
fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys; from datetime import datetime, timezone; from standardwebhooks import Webhook; \
             print(Webhook(sys.argv[1]).sign(sys.argv[2], datetime.fromtimestamp(int(sys.argv[3]), tz=timezone.utc), \
             sys.argv[4]))",
            secret,
            id,
            &timestamp.to_string(),
            body,
        ])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn send(server: &Server, url: &str, headers: &[(&str, String)], body: &str) -> (StatusCode, Value) {
    let mut req = server
        .http
        .post(server.url(url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    server.send(req).await
}

fn now() -> i64 {
    warden_host::time::now_ms() / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_messages_run_the_agent_once_and_others_are_refused() {
    // Keys are required: the hook URL needs none, its signature is the credential.
    let tmp = tempfile::tempdir().unwrap();
    let token = create_key(tmp.path(), "default", "ops", true);
    let host = Server::start_with(test_config(tmp.path())).await;
    let server = host.with_key(&token);
    server.deploy("echo", json!({})).await;
    let (status, hook) = server
        .post_json("/v1/hooks", &json!({ "agent": "echo", "description": "orders" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let url = hook["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("/v1/hooks/{}", hook["id"].as_str().unwrap()));
    let (_, listed) = server.get("/v1/hooks").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(
        listed["data"][0].get("secret").is_none(),
        "the secret is shown once: {listed}"
    );

    // Signed by the reference package: accepted, the body is the input.
    let body = r#"{"order": "A-1001", "event": "paid"}"#;
    let at = now();
    let headers = vec![
        ("webhook-id", "msg_1".to_owned()),
        ("webhook-timestamp", at.to_string()),
        ("webhook-signature", sign(&secret, "msg_1", at, body)),
    ];
    let anonymous = Server::attach(&server.base);
    let (status, _) = anonymous.get("/v1/hooks").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the rest of the API still needs a key"
    );
    let (status, received) = send(&anonymous, &url, &headers, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{received}");
    let execution = received["execution_id"].as_str().unwrap().to_owned();
    let record = server.wait_terminal(&execution).await;
    assert_eq!(record["trigger"], "webhook");
    assert_eq!(record["input"], json!({ "order": "A-1001", "event": "paid" }));
    assert_eq!(record["metadata"]["webhook_id"], "msg_1");
    assert_eq!(record["status"], "completed");
    // The sender's retry of the same message: the same execution.
    let (status, again) = send(&anonymous, &url, &headers, body).await;
    assert_eq!(
        (status, again["execution_id"].as_str()),
        (StatusCode::ACCEPTED, Some(execution.as_str()))
    );
    let (_, listed) = server.get("/v1/executions?trigger=webhook").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // Refused: unsigned, signed with another secret, tampered, stale, and a
    // message id used again with another body.
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let stale = now() - 600;
    for (headers, body, expected) in [
        (vec![], body, StatusCode::UNAUTHORIZED),
        (
            vec![
                ("webhook-id", "msg_2".to_owned()),
                ("webhook-timestamp", at.to_string()),
                ("webhook-signature", sign(other, "msg_2", at, body)),
            ],
            body,
            StatusCode::UNAUTHORIZED,
        ),
        (
            headers.clone(),
            r#"{"order": "A-9999", "event": "paid"}"#,
            StatusCode::UNAUTHORIZED,
        ),
        (
            vec![
                ("webhook-id", "msg_3".to_owned()),
                ("webhook-timestamp", stale.to_string()),
                ("webhook-signature", sign(&secret, "msg_3", stale, body)),
            ],
            body,
            StatusCode::UNAUTHORIZED,
        ),
        (
            vec![
                ("webhook-id", "msg_1".to_owned()),
                ("webhook-timestamp", at.to_string()),
                ("webhook-signature", sign(&secret, "msg_1", at, "{}")),
            ],
            "{}",
            StatusCode::CONFLICT,
        ),
    ] {
        let (status, error) = send(&anonymous, &url, &headers, body).await;
        assert_eq!(status, expected, "{headers:?}: {error}");
        assert!(error["error"]["code"].is_string(), "{error}");
    }
    // A body that is not JSON, properly signed.
    let at = now();
    let (status, error) = send(
        &anonymous,
        &url,
        &[
            ("webhook-id", "msg_4".to_owned()),
            ("webhook-timestamp", at.to_string()),
            ("webhook-signature", sign(&secret, "msg_4", at, "not json")),
        ],
        "not json",
    )
    .await;
    assert_eq!(
        (status, error_code(&error)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        "{error}"
    );
    // Deleting needs a key; then its URL is gone.
    let (status, _) = anonymous.delete(&url).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = server.delete(&url).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(&anonymous, &url, &headers, body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.post_json("/v1/hooks", &json!({ "agent": "nobody" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
