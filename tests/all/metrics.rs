//! `GET /metrics`: Prometheus text for admin keys, counting what the host did
//! (executions by agent, status, trigger and code; queue wait and run time;
//! models and tools; components; the store's commits; HTTP by route) and
//! nothing when metrics are off. The recorder is one per process, so these
//! checks look at series of agents no other test names.

use reqwest::StatusCode;
use serde_json::json;
use warden_tests::{Warden, create_key};

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
    // A process of its own: the recorder is one per process, so every count
    // below is exact.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let admin = create_key(&data, "default", "ops", true);
    let member = create_key(&data, "default", "dev", false);
    let warden = Warden::start(&data);
    let host = warden.client();
    let server = host.with_key(&admin);
    server.deploy("echo", json!({ "name": "metered" })).await;
    server.deploy("crash", json!({ "name": "metered-crash" })).await;
    server.deploy("support", json!({ "name": "metered-support" })).await;
    for n in 0..3 {
        server.run("metered", json!({ "n": n })).await;
    }
    let crashed = server.run("metered-crash", json!({})).await;
    let supported = server
        .run(
            "metered-support",
            json!({ "question": "Where is order A-7?", "orders": { "A-7": "late" } }),
        )
        .await;
    assert_eq!(supported["status"], "completed", "{supported}");
    // A live stream, opened and over.
    let events = server
        .http
        .get(server.url(&format!("/v1/executions/{}/stream", supported["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    events.text().await.unwrap();
    let (status, _) = host.with_key(&member).get("/metrics").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = host.get("/metrics").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let odd = reqwest::Method::from_bytes(b"BREW").unwrap();
    server.http.request(odd, server.url("/mcp")).send().await.unwrap();
    // Requests no route takes count too: 404, 405, and 413 by Content-Length.
    let nowhere = server
        .http
        .get(server.url("/v1/nowhere"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    let wrong = server.http.put(server.url("/admin/health")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    let huge = server
        .http
        .post(server.url("/v1/agents/echo/execute"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(vec![b' '; 9 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);

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
    let code = format!("error_code=\"{}\"", crashed["error"]["code"].as_str().unwrap());
    let failed = ["agent=\"metered-crash\"", "status=\"failed\"", code.as_str()];
    assert_eq!(get("warden_executions_total", &failed), Some(1.0), "{text}");
    assert_eq!(
        get("warden_execution_queue_wait_seconds_count", &["agent=\"metered\""]),
        Some(3.0)
    );
    assert_eq!(
        get("warden_execution_duration_seconds_count", &["agent=\"metered\""]),
        Some(3.0)
    );
    assert_eq!(get("warden_execution_fuel_count", &["agent=\"metered\""]), Some(3.0));
    let model = ["provider=\"scripted\"", "model=\"scripted\"", "outcome=\"ok\""];
    // The example asks the model twice per run.
    assert_eq!(get("warden_model_calls_total", &model), Some(2.0), "{text}");
    let prompt = supported["token_usage"]["prompt"].as_f64().unwrap();
    let tokens = get(
        "warden_model_tokens_total",
        &["provider=\"scripted\"", "kind=\"prompt\""],
    );
    assert_eq!(tokens, Some(prompt), "{text}");
    let kv = supported["tool_calls"].as_array().unwrap().len() as f64;
    assert_eq!(
        get("warden_tool_calls_total", &["tool=\"kv\"", "outcome=\"ok\""]),
        Some(kv),
        "{text}"
    );
    // Summed over their sources (compiled, the disk cache, memory).
    let components: f64 = text
        .lines()
        .filter(|l| l.starts_with("warden_components_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(components >= 3.0, "{text}");
    assert!(get("warden_store_commit_seconds_count", &[]).is_some_and(|n| n > 0.0));
    let execute = ["method=\"POST\"", "route=\"/v1/agents/{id}/execute\"", "status=\"200\""];
    assert_eq!(get("warden_http_requests_total", &execute), Some(5.0), "{text}");
    let refused = |status: &str| get("warden_http_requests_total", &["route=\"/metrics\"", status]);
    assert_eq!(
        (refused("status=\"401\""), refused("status=\"403\"")),
        (Some(1.0), Some(1.0)),
        "{text}"
    );
    assert_eq!(
        get("warden_http_requests_total", &["method=\"other\"", "route=\"/mcp\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get("warden_stream_subscribers", &[]),
        Some(0.0),
        "the stream was counted, then not: {text}"
    );
    assert_eq!(get("warden_execution_slots", &[]), Some(256.0));
    assert_eq!(get("warden_executions_running", &[]), Some(0.0));
    let unrouted = |method: &str, status: &str| {
        let (method, status) = (format!("method=\"{method}\""), format!("status=\"{status}\""));
        get("warden_http_requests_total", &["route=\"unmatched\"", &method, &status])
    };
    assert_eq!(
        (unrouted("GET", "404"), unrouted("PUT", "405"), unrouted("POST", "413")),
        (Some(1.0), Some(1.0), Some(1.0)),
        "{text}"
    );
    for line in text.lines().filter(|l| l.starts_with("warden_http_requests_total{")) {
        assert!(!line.contains("exec_"), "a route, never a path: {line}");
    }
    drop(warden);
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
