//! MCP, checked with software nobody on the team wrote: the official Python SDK
//! (`mcp` on PyPI, in `target/mcp-venv`, installed by `scripts/test`) as a
//! client of `/mcp`, over the newest protocol revision and over the handshake
//! ones; and the official Rust SDK (`rmcp`) as a client taking tasks. Agents are
//! tools, the execution tools read what ran, keys are required and scoped,
//! foreign `Host` and `Origin` values are refused, and the tool list follows
//! deploys.

use std::path::PathBuf;
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use warden_tests::{Server, create_key, create_role_key, test_config};

pub(crate) fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/mcp-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/mcp-sdk (scripts/test does)",
        python.display()
    );
    python
}

pub(crate) fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp").join(name)
}

/// Runs the Python client's `scenario`; returns what it printed last (JSON).
async fn client(server: &Server, key: &str, mode: &str, scenario: &str) -> Value {
    let out = tokio::process::Command::new(python())
        .arg(script("client.py"))
        .args([&server.url("/mcp"), key, mode, scenario])
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client.py {scenario} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Session termination failed"),
        "a session ends cleanly: {stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("client.py printed {last:?}: {e}"))
}

/// A server that requires keys, with the agents the client's tour calls.
async fn tour_server() -> (Server, Server, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let token = create_key(tmp.path(), "default", "ops", true);
    let host = Server::start_with(test_config(tmp.path())).await;
    let server = host.with_key(&token);
    server
        .deploy("echo", json!({ "description": "Echoes its input." }))
        .await;
    server
        .deploy("echo", json!({ "name": "typed", "input_schema": { "type": "string" } }))
        .await;
    server
        .deploy(
            "echo",
            json!({ "name": "strict", "input_schema": {
                "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } }),
        )
        .await;
    server.deploy("crash", json!({})).await;
    (host, server, token, tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_lists_and_calls_agents_and_the_execution_tools() {
    let (host, server, token, _tmp) = tour_server().await;
    for (mode, protocol) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let seen = client(&server, &token, mode, "tour").await;
        assert_eq!(seen["protocol"], protocol, "{seen}");
        let tools = seen["tools"].as_object().unwrap();
        let mut names: Vec<&str> = tools.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "crash",
                "echo",
                "get_agent_activity_summary",
                "get_execution_result",
                "list_recent_executions",
                "strict",
                "typed"
            ]
        );
        // Agents: their description and input schema (a non-object one is the
        // `input` argument); the execution tools have output schemas.
        assert_eq!(tools["echo"]["description"], "Echoes its input.");
        assert_eq!(tools["echo"]["input_schema"]["type"], "object");
        assert_eq!(tools["strict"]["input_schema"]["required"], json!(["city"]));
        assert_eq!(
            tools["typed"]["input_schema"]["properties"]["input"],
            json!({ "type": "string" })
        );
        for name in [
            "list_recent_executions",
            "get_execution_result",
            "get_agent_activity_summary",
        ] {
            assert_eq!(tools[name]["output_schema"]["type"], "object", "{name}");
        }

        // A run: the output as structured content and text, the execution named.
        let echo = &seen["echo"];
        assert_eq!(echo["is_error"], false, "{echo}");
        assert_eq!(echo["structured"]["echo"], json!({ "hello": "mcp" }), "{echo}");
        let text: Value = serde_json::from_str(echo["text"].as_str().unwrap()).unwrap();
        assert_eq!(text, echo["structured"]);
        let id = echo["meta"]["warden/execution_id"].as_str().unwrap();
        let (status, record) = server.get(&format!("/v1/executions/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(record["trigger"], "mcp");
        assert_eq!(record["status"], "completed");
        assert!(
            record["metadata"]["mcp_client"].as_str().unwrap().starts_with("mcp "),
            "{record}"
        );
        // A non-object input came as the `input` argument; a non-object output
        // is structured as `result`.
        assert_eq!(seen["typed"]["structured"]["echo"], "plain text", "{}", seen["typed"]);
        // Failures are tool errors with the execution's code.
        let crash = &seen["crash"];
        assert_eq!(crash["is_error"], true, "{crash}");
        assert_eq!(crash["structured"]["status"], "failed", "{crash}");
        assert!(crash["text"].as_str().unwrap().contains("failed"), "{crash}");
        let invalid = &seen["invalid"];
        assert_eq!(invalid["is_error"], true, "{invalid}");
        assert_eq!(invalid["structured"]["error"]["code"], "invalid_input", "{invalid}");
        // Execution tools, validated by the SDK against their output schemas.
        let recent = seen["recent"]["structured"]["executions"].as_array().unwrap();
        assert!(
            recent.iter().any(|e| e["id"] == id && e["trigger"] == "mcp"),
            "{recent:?}"
        );
        assert_eq!(seen["result"]["structured"]["output"], echo["structured"]);
        assert_eq!(seen["result"]["structured"]["status"], "completed");
        assert!(seen["summary"]["structured"]["executions"].as_u64().unwrap() >= 1);
        assert_eq!(seen["missing"]["is_error"], true);
        assert_eq!(seen["unknown_tool"], -32602, "{seen}");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_needs_a_key_of_the_workspace_and_an_approver_only_reads() {
    let (host, server, _token, tmp) = tour_server().await;
    for key in ["-", "wk_not_a_key"] {
        let seen = client(&server, key, "auto", "connect").await;
        assert_eq!(seen["refused"], true, "{key}: {seen}");
    }
    let (status, body) = server.send(host.http.post(host.url("/mcp")).json(&json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Another workspace sees its own agents only.
    let other = create_key(tmp.path(), "other", "ops", true);
    let seen = client(&server, &other, "legacy", "connect").await;
    assert_eq!(seen["refused"], false, "{seen}");
    assert!(!seen["tools"].as_array().unwrap().contains(&json!("echo")), "{seen}");
    assert_eq!(seen["run"]["code"], -32602, "not a tool of this workspace: {seen}");
    let approver = create_role_key(tmp.path(), "default", "reviewer", "approver");
    let seen = client(&server, &approver, "legacy", "connect").await;
    assert_eq!(
        seen["tools"],
        json!([
            "get_agent_activity_summary",
            "get_execution_result",
            "list_recent_executions"
        ]),
        "an approver reads: {seen}"
    );
    assert_eq!(seen["run"]["is_error"], true, "an approver does not run agents: {seen}");
    assert!(seen["run"]["text"].as_str().unwrap().contains("approver"), "{seen}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused() {
    let host = Server::start().await;
    let port = host.base.rsplit(':').next().unwrap().to_owned();
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let post = |headers: Vec<(&'static str, String)>| {
        let mut req = host
            .http
            .post(host.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.send()
    };
    let ok = post(vec![]).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let rebound = post(vec![("host", format!("evil.example:{port}"))]).await.unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let foreign = post(vec![("origin", "http://evil.example".into())]).await.unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let local = post(vec![("origin", format!("http://localhost:{port}"))])
        .await
        .unwrap();
    assert_eq!(local.status(), StatusCode::OK);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_list_follows_deploys() {
    let host = Server::start().await;
    host.deploy("echo", json!({})).await;
    for (mode, name) in [("legacy", "hello"), ("auto", "sleepy")] {
        let mut child = tokio::process::Command::new(python())
            .arg(script("client.py"))
            .args([&host.url("/mcp"), "-", mode, "follow"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next_line().await.unwrap();
        assert_eq!(ready.as_deref(), Some("ready"), "{mode}");
        host.deploy(name, json!({})).await;
        let seen: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(child.wait().await.unwrap().success(), "{mode}");
        assert!(!seen["before"].as_array().unwrap().contains(&json!(name)), "{seen}");
        assert!(
            seen["after"].as_array().unwrap().contains(&json!(name)),
            "{mode}: {seen}"
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_mcp_prints_a_configuration_that_connects() {
    let (host, server, token, _tmp) = tour_server().await;
    let out = tokio::process::Command::new(warden_tests::warden_bin())
        .args(["mcp", "--server", &host.base, "--api-key", &token, "--name", "agents"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let entry = &config["mcpServers"]["agents"];
    assert_eq!(entry["type"], "http");
    assert_eq!(entry["url"], host.url("/mcp"));
    let header = entry["headers"]["Authorization"].as_str().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("claude mcp add --transport http agents"), "{stderr}");
    assert!(stderr.contains("echo"), "the agents it will see: {stderr}");
    // What it printed is what a client needs.
    let key = header.strip_prefix("Bearer ").unwrap();
    let seen = client(&Server::attach(&host.base), key, "auto", "connect").await;
    assert_eq!(seen["refused"], false, "{seen}");
    assert!(seen["tools"].as_array().unwrap().contains(&json!("echo")), "{seen}");
    drop(server);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_answers_only_the_key_that_opened_it() {
    let (host, server, token, tmp) = tour_server().await;
    let other = create_key(tmp.path(), "default", "other", true);
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let opened = server
        .http
        .post(host.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    let session = opened.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let end = |key: &str| {
        host.http
            .delete(host.url("/mcp"))
            .bearer_auth(key)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
    };
    // Another key of the same workspace cannot end it (nor read its stream).
    assert_eq!(end(&other).await.unwrap().status(), StatusCode::NOT_FOUND);
    let stream = host
        .http
        .get(host.url("/mcp"))
        .bearer_auth(&other)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::NOT_FOUND);
    // Its own key ends it: 204, and then it is gone.
    assert_eq!(end(&token).await.unwrap().status(), StatusCode::NO_CONTENT);
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let gone = server
        .http
        .post(host.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    host.stop().await;
}

/// Execution ids (which differ between two runs) as one placeholder.
fn without_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("exec_") {
        out.push_str(&rest[..at]);
        out.push_str("exec_X");
        rest = rest[at + 5..].trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    out
}

/// A stateless (2026-07-28) `tools/call` of an agent is answered without
/// `rmcp`'s serve loop; the same request with a loopback `Origin` goes through
/// `rmcp`. Both answer alike, call by call: results, tool errors, protocol
/// errors, header mismatches; the client's name is recorded either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_calls_answer_as_rmcp_does() {
    let (host, server, token, _tmp) = tour_server().await;
    let port = host.base.rsplit(':').next().unwrap().to_owned();
    let meta = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "probe", "version": "9" } });
    let call = |name: &str, arguments: Value| {
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": { "name": name, "arguments": arguments, "_meta": meta } })
    };
    let mut no_capabilities = call("echo", json!({}));
    no_capabilities["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let mut anonymous = call("echo", json!({ "q": "who" }));
    anonymous["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientInfo");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("object output", call("echo", json!({ "q": "hi" })), "echo"),
        ("wrapped input", call("typed", json!({ "input": "hello" })), "typed"),
        ("failed run", call("crash", json!({})), "crash"),
        ("invalid input", call("strict", json!({ "town": 1 })), "strict"),
        ("no such tool", call("nope", json!({})), "nope"),
        ("header against body", call("echo", json!({})), "typed"),
        ("meta incomplete", no_capabilities, "echo"),
        ("no client named", anonymous, "echo"),
    ];
    for (case, body, name_header) in cases {
        let mut answers = Vec::new();
        for origin in [None, Some(format!("http://127.0.0.1:{port}"))] {
            let mut req = host
                .http
                .post(host.url("/mcp"))
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", name_header)
                .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .json(&body);
            if let Some(origin) = origin {
                req = req.header("origin", origin);
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            let text = res.text().await.unwrap();
            answers.push((status, without_ids(&text)));
        }
        assert_eq!(answers[0], answers[1], "{case}: direct then through rmcp");
        let answer: Value = serde_json::from_str(&answers[0].1).unwrap_or(Value::Null);
        match case {
            "object output" => assert_eq!(answer["result"]["structuredContent"]["echo"]["q"], "hi", "{answer}"),
            "no client named" => assert_eq!(answer["result"]["structuredContent"]["echo"]["q"], "who", "{answer}"),
            "wrapped input" => assert_eq!(answer["result"]["structuredContent"]["echo"], "hello", "{answer}"),
            "failed run" | "invalid input" => assert_eq!(answer["result"]["isError"], true, "{case}: {answer}"),
            "no such tool" | "meta incomplete" => assert_eq!(answer["error"]["code"], -32602, "{case}: {answer}"),
            _ => assert_eq!(answers[0].0, StatusCode::BAD_REQUEST, "{case}: {answer}"),
        }
    }
    // The client's name is recorded by both paths (newest first: the two
    // calls naming none, then the two naming it).
    let (_, runs) = server.get("/v1/executions?agent_id=echo&limit=4").await;
    let named: Vec<&Value> = runs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["metadata"]["mcp_client"])
        .collect();
    assert_eq!(
        named,
        [&Value::Null, &Value::Null, &json!("probe 9"), &json!("probe 9")],
        "{runs}"
    );
    for run in runs["data"].as_array().unwrap() {
        assert_eq!(run["trigger"], "mcp");
        // Both paths join the caller's W3C trace, under its span.
        assert_eq!(run["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{run}");
        assert_eq!(run["trace_parent"], "00f067aa0ba902b7", "{run}");
    }
    // A foreign Host is refused on this path too.
    let rebound = host
        .http
        .post(host.url("/mcp"))
        .bearer_auth(&token)
        .header("host", format!("evil.example:{port}"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .json(&call("echo", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    host.stop().await;
}
