//! Traces: an execution joins its caller's W3C trace (`traceparent` on
//! execute) or starts its own; its `http_fetch` calls carry it on with spans of
//! their own; `GET /v1/executions/{id}/trace` is its span tree, and the same
//! tree goes to an OpenTelemetry collector over OTLP (decoded here with
//! OpenTelemetry's own protobuf types).

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
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
    assert_eq!(spans[0]["parent_id"], "00f067aa0ba902b7", "under its caller's span");
    assert_eq!(fetched["trace_parent"], "00f067aa0ba902b7");
    assert_eq!(spans[0]["attributes"]["status"], "completed");
    let root = spans[0]["span_id"].clone();
    assert!(spans[1..].iter().all(|s| s["parent_id"] == root), "{trace}");
    assert!(spans.iter().all(|s| s["attributes"].is_object()), "{trace}");
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"queue") && kinds.contains(&"tool"), "{kinds:?}");
    let tool = spans.iter().find(|s| s["kind"] == "tool").unwrap();
    assert_eq!(tool["name"], "http_fetch");
    assert_eq!(
        tool["span_id"], parts[2],
        "the span the call sent is the one the tree shows"
    );
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

/// A collector: keeps each OTLP/HTTP export it is sent, decoded.
async fn collector() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>) {
    use prost::Message;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let keep = got.clone();
    let traces = axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| async move {
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["x-tenant"], "acme", "the configured headers are sent");
        keep.lock()
            .unwrap()
            .push(ExportTraceServiceRequest::decode(body).expect("an OTLP trace export"));
        ""
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().route("/v1/traces", traces)).await;
    });
    (port, got)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_runs_go_to_an_otlp_collector_as_span_trees() {
    let (port, got) = collector().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.otlp.endpoint = Some(format!("http://127.0.0.1:{port}"));
    config.otlp.service_name = "warden-under-test".into();
    config.otlp.headers.insert("x-tenant".into(), "acme".into());
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;
    server.deploy("toolbox", json!({ "tools": ["agent_call"] })).await;
    server.deploy("refund", json!({})).await;

    // A run that waits for a person: its wait is a span too.
    let (status, waiting) = server
        .post_json(
            "/v1/agents/refund/execute",
            &json!({ "input": { "order_id": "B-2", "amount": 250 }, "mode": "async" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{waiting}");
    let refund_id = waiting["id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let (_, record) = server.get(&format!("/v1/executions/{refund_id}")).await;
        if record["status"] == "awaiting_approval" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (status, decided) = server
        .post_json(&format!("/v1/executions/{refund_id}/approve"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(server.wait_terminal(&refund_id).await["status"], "completed");

    // A run that calls another agent: two executions, one trace.
    let input = json!({ "tool": "agent_call", "args": { "agent": "echo", "input": { "name": "child" } } });
    let parent = execute(
        &server,
        "toolbox",
        input,
        Some(&format!("00-{TRACE}-00f067aa0ba902b7-01")),
    )
    .await;
    assert_eq!(parent["status"], "completed", "{parent}");
    let child_id = parent["output"]["result"]["execution_id"].as_str().unwrap().to_owned();

    // Both ends arrive (each is sent once it is stored).
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|request| {
                request.resource_spans.iter().flat_map(|r| {
                    let service = r
                        .resource
                        .as_ref()
                        .unwrap()
                        .attributes
                        .iter()
                        .find(|a| a.key == "service.name");
                    assert_eq!(
                        format!("{:?}", service.unwrap().value),
                        format!("{:?}", Some(string_value("warden-under-test")))
                    );
                    r.scope_spans.iter().flat_map(|s| {
                        assert_eq!(s.scope.as_ref().unwrap().name, "warden");
                        s.spans.clone()
                    })
                })
            })
            .collect::<Vec<_>>();
        if spans.iter().filter(|s| s.name.starts_with("execution ")).count() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let attr = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    let executed = |id: &str| {
        spans
            .iter()
            .find(|s| {
                s.name.starts_with("execution ") && attr(s, "warden.execution_id") == Some(StringValue(id.into()))
            })
            .unwrap_or_else(|| panic!("no span of {id} in {spans:#?}"))
            .clone()
    };
    let root = executed(parent["id"].as_str().unwrap());
    let child = executed(&child_id);
    let refund = executed(&refund_id);
    let wait = spans
        .iter()
        .find(|s| s.name == "approval Refund 250.00 for order B-2")
        .unwrap_or_else(|| panic!("no approval span in {spans:#?}"));
    assert_eq!(wait.parent_span_id, refund.span_id);
    assert_eq!(attr(wait, "warden.status"), Some(StringValue("approved".into())));
    let spans: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == root.trace_id).collect();
    for span in &spans {
        assert_eq!(hex(&span.trace_id), TRACE, "one trace: {span:?}");
    }
    // The parent hangs under its caller's span (remote), as a server span.
    assert_eq!(root.name, "execution toolbox");
    assert_eq!(hex(&root.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(root.status.as_ref().unwrap().code, SpanStatus::Ok as i32);
    // Its tool call is a client span under it; the child run hangs under that call.
    let call = spans
        .iter()
        .find(|s| s.name == "tool agent_call")
        .expect("the agent_call span");
    assert_eq!(call.parent_span_id, root.span_id);
    assert_eq!(call.kind, SpanKind::Client as i32);
    assert_eq!(child.name, "execution echo");
    assert_eq!(child.parent_span_id, call.span_id, "the child run nests under the call");
    // The same ids as the trace API's tree.
    let (_, tree) = server.get(&format!("/v1/executions/{child_id}/trace")).await;
    assert_eq!(tree["spans"][0]["span_id"], hex(&child.span_id));
    assert_eq!(tree["spans"][0]["parent_id"], hex(&call.span_id));
    // Each execution's wait in the queue, under it.
    let queued = spans.iter().filter(|s| s.name == "queued").count();
    assert_eq!(queued, 2, "one each in the trace: {spans:#?}");
    assert!(spans.iter().all(|s| s.end_time_unix_nano >= s.start_time_unix_nano));

    let (_, metrics) = text(&server, "/metrics").await;
    assert!(
        metrics.contains("warden_otlp_executions_total{outcome=\"sent\"}"),
        "{metrics}"
    );
    server.stop().await;
}

async fn text(server: &Server, path: &str) -> (StatusCode, String) {
    let response = server.http.get(server.url(path)).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

fn string_value(s: &str) -> opentelemetry_proto::tonic::common::v1::AnyValue {
    opentelemetry_proto::tonic::common::v1::AnyValue {
        value: Some(StringValue(s.into())),
    }
}
