//! Agents' own HTTP requests: the Python `fetch` agent through `wasi:http`
//! (componentize-py's bindings), its TypeScript twin and the Rust `toolbox`
//! through `warden:agent/http`; both sent by the host under the `http_fetch` policy
//! (allowlist, private addresses, size cap), recorded as `http` tool calls,
//! and in a durable run journaled, so a resumed run is answered from its
//! journal without sending the request again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{any, get};
use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, guest_agent, test_config};

use crate::durable::{approve_pending, poll, start_async};

/// A server on loopback: `/echo` answers what it was sent (and counts),
/// `/big` 64 KiB.
async fn origin() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new()
        .route(
            "/echo",
            any(move |method: axum::http::Method, headers: HeaderMap, body: String| {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    axum::Json(json!({
                        "method": method.as_str(),
                        "body": body,
                        "x_test": headers.get("x-test").and_then(|v| v.to_str().ok()),
                        "traceparent": headers.get("traceparent").and_then(|v| v.to_str().ok()),
                        "hits": n,
                    }))
                }
            }),
        )
        .route("/big", get(|| async { "x".repeat(64 << 10) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}"), hits)
}

async fn host(allow_private: bool) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.tools.allow_private_addresses = allow_private;
    config.tools.http_max_bytes = 16 << 10;
    config.durability.approval_grace_ms = 200;
    (Server::start_with(config).await, tmp)
}

async fn deployed(server: &Server, lang: &str, tweak: Value) -> String {
    let (wasm, mut manifest) = guest_agent(lang, "fetch");
    warden_tests::merge(&mut manifest, tweak);
    let (status, body) = server.deploy_bytes(wasm, &manifest).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    manifest["name"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_typescript_agents_fetch_the_hosts_their_manifest_allows() {
    let (base, hits) = origin().await;
    let (server, _tmp) = host(true).await;
    for lang in ["python", "js"] {
        for durable in [true, false] {
            let agent = deployed(
                &server,
                lang,
                json!({ "allowed_hosts": ["127.0.0.1"], "durable": durable }),
            )
            .await;
            let what = format!("{agent} (durable: {durable})");
            // A POST with a body and a header, both UTF-8 beyond ASCII.
            let record = server
                .run(
                    &agent,
                    json!({
                        "url": format!("{base}/echo?q=1"),
                        "method": "POST",
                        "body": "héllo ☃",
                        "headers": { "x-test": "yes" },
                    }),
                )
                .await;
            assert_eq!(record["status"], "completed", "{what}: {record}");
            let echoed = &record["output"]["json"];
            assert_eq!(echoed["method"], "POST", "{what}: {record}");
            assert_eq!(echoed["body"], "héllo ☃", "{what}: {record}");
            assert_eq!(echoed["x_test"], "yes", "{what}: {record}");
            // The run's trace goes along, under the span the trace shows.
            let sent = echoed["traceparent"].as_str().unwrap();
            let id = record["id"].as_str().unwrap();
            let (_, trace) = server.get(&format!("/v1/executions/{id}/trace")).await;
            let span = trace["spans"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["kind"] == "tool" && s["name"] == "http")
                .unwrap_or_else(|| panic!("{what}: no http span in {trace}"));
            let trace_id = record["trace_id"].as_str().unwrap();
            let span_id = span["span_id"].as_str().unwrap();
            assert_eq!(sent, format!("00-{trace_id}-{span_id}-01"), "{what}");
            assert_eq!(record["output"]["status"], 200);
            // Recorded as a tool call of the run.
            let call = &record["tool_calls"][0];
            assert_eq!(call["name"], "http", "{what}: {record}");
            assert_eq!(call["arguments"]["method"], "POST");
            assert_eq!(call["arguments"]["url"], format!("{base}/echo?q=1"));
            assert_eq!(call["result"]["status"], 200);
            assert_eq!(record["n_tool_calls"], 1);

            // A host off the allowlist: refused before anything is sent.
            let before = hits.load(Ordering::SeqCst);
            let port = base.rsplit(':').next().unwrap();
            let record = server
                .run(&agent, json!({ "url": format!("http://localhost:{port}/echo") }))
                .await;
            assert_eq!(record["status"], "failed", "{what}: {record}");
            assert_eq!(record["error"]["code"], "http_request_denied", "{what}: {record}");
            let why = record["tool_calls"][0]["error"].as_str().unwrap();
            assert!(why.contains("localhost is not in this agent's allowed_hosts"), "{why}");
            assert_eq!(hits.load(Ordering::SeqCst), before);

            // A body over the host's cap (16 KiB here) is not handed over.
            let record = server.run(&agent, json!({ "url": format!("{base}/big") })).await;
            assert_eq!(record["status"], "failed", "{what}: {record}");
            let code = record["error"]["code"].as_str().unwrap();
            assert!(
                ["http_response_body_size", "http_response_incomplete"].contains(&code),
                "{what}: {record}"
            );
        }
    }
    // What is not HTTP is refused by name, before anything is sent.
    for (input, code) in [
        (
            json!({ "url": format!("{base}/echo"), "method": "NO SUCH" }),
            "http_request_method_invalid",
        ),
        (
            json!({ "url": format!("{base}/echo"), "headers": { "bad name": "x" } }),
            "http_request_header_invalid",
        ),
        (json!({ "url": "http://127.0.0.1:99999/" }), "http_request_uri_invalid"),
    ] {
        let record = server.run("fetch-js", input).await;
        assert_eq!(record["error"]["code"], code, "{record}");
    }

    // A request the run's timeout cuts short is recorded as such.
    let agent = deployed(
        &server,
        "js",
        json!({ "name": "fetch-slow", "allowed_hosts": ["127.0.0.1"], "limits": { "timeout_ms": 500 } }),
    )
    .await;
    let record = server.run(&agent, json!({ "url": format!("{base}/slow") })).await;
    assert_eq!(record["error"]["code"], "timeout", "{record}");
    let call = &record["tool_calls"][0];
    assert_eq!(call["name"], "http", "{record}");
    assert!(call["error"].as_str().unwrap().contains("cut short"), "{record}");

    // Without `http_fetch` in its tools, an agent has no HTTP of its own.
    for lang in ["python", "js"] {
        let agent = deployed(&server, lang, json!({ "allowed_hosts": ["127.0.0.1"], "tools": [] })).await;
        let before = hits.load(Ordering::SeqCst);
        let record = server.run(&agent, json!({ "url": format!("{base}/echo") })).await;
        assert_eq!(record["error"]["code"], "http_request_denied", "{agent}: {record}");
        let why = record["tool_calls"][0]["error"].as_str().unwrap();
        assert!(why.contains("does not grant `http_fetch`"), "{why}");
        assert_eq!(hits.load(Ordering::SeqCst), before);
    }

    // A Rust agent, through the SDK's `http` (`warden:agent/http`).
    server
        .deploy("toolbox", json!({ "allowed_hosts": ["127.0.0.1"] }))
        .await;
    let record = server.run("toolbox", json!({ "fetch": format!("{base}/echo") })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"]["fetched"]["status"], 200, "{record}");
    let body: Value = serde_json::from_str(record["output"]["fetched"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["method"], "GET", "{record}");
    assert_eq!(record["tool_calls"][0]["name"], "http", "{record}");
    server.stop().await;

    // Allowlisted, but a private address: refused unless the host allows them.
    let (server, _tmp) = host(false).await;
    for lang in ["python", "js"] {
        let agent = deployed(&server, lang, json!({ "allowed_hosts": ["127.0.0.1"] })).await;
        let before = hits.load(Ordering::SeqCst);
        let record = server.run(&agent, json!({ "url": format!("{base}/echo") })).await;
        assert_eq!(
            record["error"]["code"], "destination_ip_prohibited",
            "{agent}: {record}"
        );
        let why = record["tool_calls"][0]["error"].as_str().unwrap();
        assert!(why.contains("private"), "{why}");
        assert_eq!(hits.load(Ordering::SeqCst), before);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_tool_calls_share_the_runs_cap() {
    let (base, _) = origin().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.tools.allow_private_addresses = true;
    config.tools.max_tool_calls = 1;
    let server = Server::start_with(config).await;
    server
        .deploy("toolbox", json!({ "allowed_hosts": ["127.0.0.1"] }))
        .await;
    // Its own request first, then a tool call: one over the cap of 1.
    let url = format!("{base}/echo");
    let record = server
        .run(
            "toolbox",
            json!({ "fetch": url, "tool": "http_fetch", "args": { "url": url } }),
        )
        .await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], "tool_error", "{record}");
    let message = record["error"]["message"].as_str().unwrap();
    assert!(message.contains("tool calls and HTTP requests, its cap"), "{message}");
    assert_eq!(record["n_tool_calls"], 1, "{record}");
    server.stop().await;
}

/// Starts a durable run of the fetch agent that waits for an approval once
/// its request is answered, and waits until it is unloaded; its id.
async fn waiting_after_a_request(server: &Server, agent: &str, input: &Value) -> String {
    let id = start_async(server, agent, input.clone()).await;
    poll(server, &id, |e| e["status"] == "awaiting_approval").await;
    // Past its grace the run is unloaded; approving resumes it by replay.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.get("/admin/health").await.1["executions"]["running"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiting run was never unloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    id
}

/// Approves the run's pending request and waits for its end.
async fn approve_and_end(server: &Server, id: &str) -> Value {
    approve_pending(server, id).await;
    poll(server, id, |e| {
        !matches!(e["status"].as_str(), Some("awaiting_approval" | "running" | "queued"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_run_resumed_is_answered_from_its_journal() {
    let (base, hits) = origin().await;
    let (server, tmp) = host(true).await;
    let agent = deployed(&server, "python", json!({ "allowed_hosts": ["127.0.0.1"] })).await;
    let url = format!("{base}/echo");
    // A POST with a body: its start is stored before it is sent, and on replay
    // the guest writes its body again, to no one.
    let input = json!({ "url": url, "method": "POST", "body": "once", "confirm": true });
    let id = waiting_after_a_request(&server, &agent, &input).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let done = approve_and_end(&server, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    // The request was sent once: the replay read its answer from the journal.
    assert_eq!(done["output"]["json"]["hits"], 1, "{done}");
    assert_eq!(done["output"]["json"]["body"], "once", "{done}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let calls: Vec<&Value> = done["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "http")
        .collect();
    assert_eq!(calls.len(), 1, "{done}");

    // A replay whose request is not its earlier life's (its headers or body:
    // here the journal's digest of them is altered, as a guest that went
    // astray would differ) is not answered from the journal: the run ends
    // `replay_divergence`, and nothing is sent again.
    let id = waiting_after_a_request(&server, &agent, &input).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let db = rusqlite::Connection::open(tmp.path().join("warden.db")).unwrap();
    let altered = db
        .execute(
            "UPDATE journal SET data = json_set(data, '$.request', 'another') \
             WHERE execution_id = ?1 AND kind = 'tool' AND json_extract(data, '$.request') IS NOT NULL",
            [&id],
        )
        .unwrap();
    assert_eq!(altered, 1, "the request's journal entry keeps a digest of it");
    drop(db);
    let done = approve_and_end(&server, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "replay_divergence", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("other headers or another body"),
        "{done}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    server.stop().await;
}
