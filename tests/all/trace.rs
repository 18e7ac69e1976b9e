//! Traces: an execution joins its caller's W3C trace (`traceparent` on
//! execute) or starts its own; its `http_fetch` calls carry it on with spans of
//! their own; `GET /v1/executions/{id}/trace` is its span tree.

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, test_config};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn execute(server: &Server, agent: &str, input: Value, traceparent: Option<&str>) -> Value {
    let mut request = server
        .http
        .post(server.url(&format!("/v1/agents/{agent}/execute")))
        .json(&json!({ "input": input }));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let (status, body) = server.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_joins_its_callers_trace_and_carries_it_on() {
    // A page that answers, after 60 ms, with the traceparent it was sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let page = |headers: HeaderMap| async move {
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
            headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned()
        };
        let _ = axum::serve(listener, Router::new().route("/page", get(page))).await;
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.tools.allow_private_addresses = true;
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;
    server
        .deploy("toolbox", json!({ "allowed_hosts": ["127.0.0.1"] }))
        .await;

    // Joined: the caller's trace id; a bad traceparent is ignored, not refused.
    let joined = execute(
        &server,
        "echo",
        json!(1),
        Some(&format!("00-{TRACE}-00f067aa0ba902b7-01")),
    )
    .await;
    assert_eq!(joined["trace_id"], TRACE);
    let own = execute(&server, "echo", json!(2), Some("00-garbage")).await;
    let other = execute(&server, "echo", json!(3), None).await;
    for record in [&own, &other] {
        let id = record["trace_id"].as_str().unwrap();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != TRACE,
            "{id}"
        );
    }
    assert_ne!(own["trace_id"], other["trace_id"]);
    // A retry is another attempt at the same request: the same trace.
    let (status, retry) = server
        .post_json(
            &format!("/v1/executions/{}/retry", joined["id"].as_str().unwrap()),
            &json!(null),
        )
        .await;
    assert!(status.is_success(), "{retry}");
    assert_eq!(retry["trace_id"], TRACE);

    // Carried on: http_fetch sends the run's trace with a span of its own.
    let input = json!({ "tool": "http_fetch", "args": { "url": format!("http://127.0.0.1:{port}/page") } });
    let fetched = execute(
        &server,
        "toolbox",
        input,
        Some(&format!("00-{TRACE}-00f067aa0ba902b7-01")),
    )
    .await;
    assert_eq!(fetched["status"], "completed", "{fetched}");
    let sent = fetched["output"]["result"]["body"].as_str().unwrap();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"));
    assert_ne!(parts[2], "00f067aa0ba902b7", "a span of its own");

    // The tree: the execution, its queue wait, the tool call and the agent's step.
    let id = fetched["id"].as_str().unwrap();
    let (status, trace) = server.get(&format!("/v1/executions/{id}/trace")).await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    assert_eq!(trace["trace_id"], TRACE);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans[0]["kind"], "execution");
    assert_eq!(spans[0]["parent_id"], Value::Null);
    assert_eq!(spans[0]["attributes"]["status"], "completed");
    let root = spans[0]["span_id"].clone();
    assert!(spans[1..].iter().all(|s| s["parent_id"] == root), "{trace}");
    assert!(spans.iter().all(|s| s["attributes"].is_object()), "{trace}");
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"queue") && kinds.contains(&"tool"), "{kinds:?}");
    let tool = spans.iter().find(|s| s["kind"] == "tool").unwrap();
    assert_eq!(tool["name"], "http_fetch");
    // The call's span covers the call: it began as long before its end as it took.
    assert!(tool["duration_ms"].as_i64().unwrap() >= 50, "{tool}");
    assert!(
        tool["start"].as_str().unwrap() < tool["end"].as_str().unwrap(),
        "{tool}"
    );
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s["span_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), spans.len(), "span ids are unique");
    let (status, _) = server.get("/v1/executions/exec_nope/trace").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}
