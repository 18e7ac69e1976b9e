//! Webhooks in and out, checked by an implementation nobody on the team wrote:
//! the `standardwebhooks` package from PyPI (installed by `scripts/test` into
//! `target/webhooks-venv`). A signed message runs the hook's agent once per
//! `webhook-id`; unsigned, badly signed, stale and replayed-with-another-body
//! messages are refused. Events go out signed (verified by the package),
//! retried after a failure, recorded attempt by attempt, redelivered on
//! request; private addresses are refused unless allowed.

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
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ),
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
    // The sender's trace, under its span.
    assert_eq!(record["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(record["trace_parent"], "00f067aa0ba902b7");
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

/// A loopback receiver: answers each message with the next status of
/// `statuses` (then 200), and keeps what it was sent.
struct Receiver {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
}

async fn receiver(statuses: Vec<u16>) -> Receiver {
    use axum::http::StatusCode as S;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(statuses.into_iter()));
    let app = axum::Router::new().route(
        "/in",
        axum::routing::post({
            let seen = std::sync::Arc::clone(&seen);
            move |headers: axum::http::HeaderMap, body: String| {
                let (seen, statuses) = (std::sync::Arc::clone(&seen), std::sync::Arc::clone(&statuses));
                async move {
                    seen.lock().unwrap().push((headers, body));
                    let next = statuses.lock().unwrap().next().unwrap_or(200);
                    S::from_u16(next).unwrap()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { url, seen }
}

/// Whether the reference package accepts a received message for `secret`.
fn verified(secret: &str, headers: &axum::http::HeaderMap, body: &str) -> bool {
    let header = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
    let out = Command::new(python())
        .args([
            "-c",
            "import sys; from standardwebhooks import Webhook; \
             Webhook(sys.argv[1]).verify(sys.argv[2], {'webhook-id': sys.argv[3], 'webhook-timestamp': sys.argv[4], \
             'webhook-signature': sys.argv[5]})",
            secret,
            body,
            &header("webhook-id"),
            &header("webhook-timestamp"),
            &header("webhook-signature"),
        ])
        .output()
        .expect("python runs");
    out.status.success()
}

/// The subscription's newest delivery, once it is delivered.
async fn delivered(server: &Server, subscription: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, page) = server.get(&format!("/v1/webhooks/{subscription}/deliveries")).await;
        if page["data"][0]["status"] == "delivered" {
            return page["data"][0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The HTTP status of each attempt of a delivery.
fn attempt_codes(delivery: &Value) -> Vec<u64> {
    delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap_or(0))
        .collect()
}

async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: never");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_signed_retried_recorded_and_redelivered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.webhooks.allow_private_addresses = true;
    config.webhooks.retry_schedule_secs = vec![1, 1];
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;
    server.deploy("ledger", json!({})).await;
    let receiving = receiver(vec![500]).await;
    let (status, made) = server
        .post_json(
            "/v1/webhooks",
            &json!({ "url": receiving.url, "events": ["execution.completed", "approval.requested"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    let (status, bad) = server
        .post_json(
            "/v1/webhooks",
            &json!({ "url": receiving.url, "events": ["execution.exploded"] }),
        )
        .await;
    assert_eq!(
        (status, error_code(&bad)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );

    // A run ends: its message fails once (500), then is retried and delivered.
    let run = server.run("echo", json!({ "n": 7 })).await;
    let seen = std::sync::Arc::clone(&receiving.seen);
    let sent = until("two attempts", || {
        let s = seen.lock().unwrap();
        (s.len() >= 2).then(|| s.clone())
    })
    .await;
    let (headers, body) = &sent[1];
    assert!(verified(&secret, headers, body), "the reference package verifies it");
    assert_eq!(
        sent[0].0["webhook-id"], sent[1].0["webhook-id"],
        "a retry is the same message"
    );
    let message: Value = serde_json::from_str(body).unwrap();
    assert_eq!(message["type"], "execution.completed");
    assert_eq!(message["data"]["id"], run["id"]);
    assert_eq!(message["data"]["output"]["echo"], json!({ "n": 7 }));
    let delivery = &delivered(&server, &id).await;
    assert_eq!(attempt_codes(delivery), [500, 200], "{delivery}");
    assert!(delivery["attempts"][0]["error"].as_str().unwrap().contains("500"));

    // Redelivered by hand: the same message again.
    let (status, again) = server
        .post_json(
            &format!(
                "/v1/webhooks/{id}/deliveries/{}/redeliver",
                delivery["id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending")),
        "{again}"
    );
    until("redelivered", || (seen.lock().unwrap().len() >= 3).then_some(())).await;
    assert_eq!(
        seen.lock().unwrap()[2].0["webhook-id"],
        delivery["id"].as_str().unwrap()
    );

    // An approval request is announced too.
    let (_, waiting) = server
        .post_json(
            "/v1/agents/ledger/execute",
            &json!({ "input": { "approve": "Ship it?" }, "mode": "async" }),
        )
        .await;
    let approval = until("the approval message", || {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap())
            .find(|m| m["type"] == "approval.requested")
    })
    .await;
    assert_eq!(approval["data"]["execution_id"], waiting["id"]);
    assert_eq!(approval["data"]["title"], "Ship it?");
    let (status, _) = server.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_address_is_refused_unless_allowed_and_failures_end_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.webhooks.retry_schedule_secs = vec![1];
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;
    let receiving = receiver(vec![]).await;
    let (_, made) = server
        .post_json(
            "/v1/webhooks",
            &json!({ "url": receiving.url, "events": ["execution.completed"] }),
        )
        .await;
    let id = made["id"].as_str().unwrap().to_owned();
    server.run("echo", json!({})).await;
    let delivery = loop {
        let (_, page) = server.get(&format!("/v1/webhooks/{id}/deliveries")).await;
        if page["data"][0]["status"] == "failed" {
            break page["data"][0].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "one try and one retry: {delivery}");
    assert!(attempts[0]["error"].as_str().unwrap().contains("refused"), "{delivery}");
    assert!(
        receiving.seen.lock().unwrap().is_empty(),
        "nothing reached the private address"
    );
}

/// A delivery still owed when the host is killed is sent after the restart:
/// the same message, its attempts recorded across both lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_owed_survives_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("warden.toml");
    std::fs::write(
        &config,
        "[webhooks]\nallow_private_addresses = true\nretry_schedule_secs = [3, 1]\n",
    )
    .unwrap();
    let start = || warden_tests::Warden::start_with(&data, &["--config", config.to_str().unwrap()]);
    let receiving = receiver(vec![503]).await;
    let warden = start();
    let server = warden.client();
    server.deploy("echo", json!({})).await;
    let (status, made) = server
        .post_json(
            "/v1/webhooks",
            &json!({ "url": receiving.url, "events": ["execution.completed"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (secret, id) = (
        made["secret"].as_str().unwrap().to_owned(),
        made["id"].as_str().unwrap().to_owned(),
    );
    let run = server.run("echo", json!({ "n": 1 })).await;
    let seen = std::sync::Arc::clone(&receiving.seen);
    // The failed attempt recorded; killed before the retry is due (3 s after).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, page) = server.get(&format!("/v1/webhooks/{id}/deliveries")).await;
        if attempt_codes(&page["data"][0]) == [503] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the first attempt: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    warden.sigkill();
    assert_eq!(seen.lock().unwrap().len(), 1);
    let warden = start();
    let server = warden.client();
    let sent = until("the retry after the restart", || {
        let s = seen.lock().unwrap();
        (s.len() >= 2).then(|| s.clone())
    })
    .await;
    assert_eq!(sent[0].0["webhook-id"], sent[1].0["webhook-id"], "the same message");
    assert!(verified(&secret, &sent[1].0, &sent[1].1));
    let message: Value = serde_json::from_str(&sent[1].1).unwrap();
    assert_eq!(message["data"]["id"], run["id"]);
    let delivery = delivered(&server, &id).await;
    assert_eq!(attempt_codes(&delivery), [503, 200], "{delivery}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "sent once more, not twice");
    drop(warden);
}
