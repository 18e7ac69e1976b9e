//! `GET /metrics`: Prometheus text for admin keys, counting what the host did
//! (executions by agent, status, trigger and code; queue wait and run time;
//! models and tools; components; the store's commits; HTTP by route) and
//! nothing when metrics are off. The recorder is one per process, so these
//! checks look at series of agents no other test names.

use reqwest::StatusCode;
use serde_json::json;
use warden_tests::{Server, Warden, create_key, test_config};

/// The value of the first series of `name` whose labels include every one of
/// `labels` (`key="value"`).
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_models_tools_and_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let admin = create_key(tmp.path(), "default", "ops", true);
    let member = create_key(tmp.path(), "default", "dev", false);
    let host = Server::start_with(test_config(tmp.path())).await;
    let server = host.with_key(&admin);
    server.deploy("echo", json!({ "name": "metered" })).await;
    server.deploy("crash", json!({ "name": "metered-crash" })).await;
    server.deploy("support", json!({ "name": "metered-support" })).await;
    for n in 0..3 {
        server.run("metered", json!({ "n": n })).await;
    }
    server.run("metered-crash", json!({})).await;
    let supported = server
        .run(
            "metered-support",
            json!({ "question": "Where is order A-7?", "orders": { "A-7": "late" } }),
        )
        .await;
    assert_eq!(supported["status"], "completed", "{supported}");

    let (status, _) = host.with_key(&member).get("/metrics").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = host.get("/metrics").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let res = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = res.text().await.unwrap();
    let get = |name: &str, labels: &[&str]| value(&text, name, labels);

    let done = ["agent=\"metered\"", "status=\"completed\"", "trigger=\"api\""];
    assert_eq!(get("warden_executions_total", &done), Some(3.0), "{text}");
    let failed = get(
        "warden_executions_total",
        &["agent=\"metered-crash\"", "status=\"failed\""],
    );
    assert_eq!(failed, Some(1.0), "{text}");
    let crashed_code = text
        .lines()
        .find(|l| l.starts_with("warden_executions_total{") && l.contains("agent=\"metered-crash\""))
        .unwrap_or_default();
    assert!(
        !crashed_code.contains("error_code=\"\""),
        "the failure's code is named: {crashed_code}"
    );
    assert_eq!(
        get("warden_execution_queue_wait_seconds_count", &["agent=\"metered\""]),
        Some(3.0)
    );
    assert_eq!(
        get("warden_execution_duration_seconds_count", &["agent=\"metered\""]),
        Some(3.0)
    );
    assert!(get("warden_execution_fuel_count", &["agent=\"metered\""]).is_some_and(|n| n >= 3.0));
    let model = ["provider=\"scripted\"", "model=\"scripted\"", "outcome=\"ok\""];
    assert!(
        get("warden_model_calls_total", &model).is_some_and(|n| n >= 2.0),
        "{text}"
    );
    let prompt = ["provider=\"scripted\"", "kind=\"prompt\""];
    assert!(
        get("warden_model_tokens_total", &prompt).is_some_and(|n| n > 0.0),
        "{text}"
    );
    assert!(get("warden_tool_calls_total", &["tool=\"kv\"", "outcome=\"ok\""]).is_some_and(|n| n >= 2.0));
    assert!(get("warden_components_total", &[]).is_some_and(|n| n >= 3.0), "{text}");
    assert!(get("warden_store_commit_seconds_count", &[]).is_some_and(|n| n > 0.0));
    let execute = ["method=\"POST\"", "route=\"/v1/agents/{id}/execute\"", "status=\"200\""];
    assert!(
        get("warden_http_requests_total", &execute).is_some_and(|n| n >= 5.0),
        "{text}"
    );
    assert!(get("warden_http_requests_total", &["route=\"/metrics\"", "status=\"403\""]).is_some());
    assert_eq!(get("warden_execution_slots", &[]), Some(16.0));
    assert_eq!(get("warden_executions_running", &[]), Some(0.0));
    for line in text.lines().filter(|l| l.starts_with("warden_http_requests_total{")) {
        assert!(!line.contains("exec_"), "a route, never a path: {line}");
    }
    host.stop().await;
}

/// With metrics off, nothing is counted and a scrape is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_count_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("warden.toml");
    std::fs::write(&config, "[metrics]\nenabled = false\n").unwrap();
    let warden = Warden::start_with(&tmp.path().join("data"), &["--config", config.to_str().unwrap()]);
    let server = warden.client();
    server.deploy("echo", json!({})).await;
    server.run("echo", json!({})).await;
    let res = server.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "");
    drop(warden);
}
