//! Guests calling MCP servers through their manifest's `mcp_servers`: a
//! server made with the official Python SDK, reached at the checked
//! address with the host's credential.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use warden_host::config::McpCredential;
use warden_tests::{Server, agent_manifest, agent_wasm, error_code, merge, test_config};

/// The credential: any variable of the host's environment does; `HOME` is
/// always set, here and in the server's environment.
const CREDENTIAL: &str = "HOME";

/// Starts `server.py`; returns it (killed on drop) and its MCP URL.
async fn python_server(token: &str) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(crate::mcp::python())
        .arg(crate::mcp::script("server.py"))
        .arg(token)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap_or_default();
    let port = first
        .strip_prefix("PORT=")
        .unwrap_or_else(|| panic!("server.py said {first:?}"));
    (child, format!("http://127.0.0.1:{port}/mcp"))
}

/// A server whose config binds the credential to `host` (and `workspace`).
async fn credentialed(allow_private: bool, host: &str, workspace: Option<&str>) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.tools.allow_private_addresses = allow_private;
    config.mcp.credentials = vec![McpCredential {
        env: CREDENTIAL.into(),
        hosts: vec![host.into()],
        workspaces: workspace.map(|w| vec![w.to_owned()]),
    }];
    (Server::start_with(config).await, tmp)
}

fn toolbox(url: &str, auth: bool) -> Value {
    let mut manifest = agent_manifest("toolbox");
    let mut server = json!({ "name": "calc", "url": url, "allowed_tools": ["add", "boom", "traced"] });
    if auth {
        server["auth_env"] = json!(CREDENTIAL);
    }
    merge(
        &mut manifest,
        json!({ "allowed_hosts": ["127.0.0.1"], "mcp_servers": [server], "durable": false }),
    );
    manifest
}

async fn execute(server: &Server, input: Value) -> Value {
    let (status, record) = server
        .post_json("/v1/agents/toolbox/execute", &json!({ "input": input }))
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_lists_and_calls_the_tools_of_its_mcp_servers() {
    let token = std::env::var(CREDENTIAL).expect("HOME is set");
    let (_python, url) = python_server(&token).await;
    let (server, _tmp) = credentialed(true, "127.0.0.1", None).await;
    let (status, body) = server.deploy_bytes(agent_wasm("toolbox"), &toolbox(&url, true)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Listed as mcp.<server>.<tool> (only the allowed ones), and called.
    let record = execute(&server, json!({ "tool": "mcp.calc.add", "args": { "a": 2, "b": 40 } })).await;
    assert_eq!(record["status"], "completed", "{record}");
    let output = &record["output"];
    let available: Vec<&str> = output["available"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        available.contains(&"mcp.calc.add") && available.contains(&"mcp.calc.boom"),
        "{available:?}"
    );
    assert!(!available.contains(&"mcp.calc.secret"), "{available:?}");
    assert!(available.contains(&"kv"), "the built-in tools stay: {available:?}");
    assert_eq!(output["result"]["structuredContent"], json!({ "sum": 42 }), "{output}");
    // Recorded like any tool call.
    let call = &record["tool_calls"][0];
    assert_eq!(call["name"], "mcp.calc.add");
    assert_eq!(call["arguments"], json!({ "a": 2, "b": 40 }));
    assert_eq!(call["result"]["structuredContent"]["sum"], 42);
    assert!(call["duration_ms"].is_u64());
    // A call is a span of the run's trace, sent to the server as `traceparent`.
    let record = execute(&server, json!({ "tool": "mcp.calc.traced", "args": {} })).await;
    let sent = record["output"]["result"]["structuredContent"]["result"]
        .as_str()
        .unwrap_or("none");
    let (_, tree) = server
        .get(&format!("/v1/executions/{}/trace", record["id"].as_str().unwrap()))
        .await;
    let call = tree["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "tool")
        .expect("the call's span");
    assert_eq!(
        sent,
        format!(
            "00-{}-{}-01",
            record["trace_id"].as_str().unwrap(),
            call["span_id"].as_str().unwrap()
        ),
        "{record}"
    );

    // The server's error is the tool's failure; a tool not allowed is unknown.
    let record = execute(
        &server,
        json!({ "tool": "mcp.calc.boom", "args": { "why": "testing" } }),
    )
    .await;
    assert_eq!(record["status"], "failed");
    assert!(
        record["error"]["message"].as_str().unwrap().contains("boom: testing"),
        "{record}"
    );
    let record = execute(&server, json!({ "tool": "mcp.calc.secret", "args": {} })).await;
    assert_eq!(record["status"], "failed");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in this agent's manifest"),
        "{record}"
    );
    assert_eq!(record["n_tool_calls"], 0, "{record}");

    // Without the credential the server refuses: the listing is noted on the
    // run's log, and the call fails.
    let (status, body) = server.deploy_bytes(agent_wasm("toolbox"), &toolbox(&url, false)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let record = execute(&server, json!({ "tool": "mcp.calc.add", "args": { "a": 1, "b": 1 } })).await;
    assert_eq!(record["status"], "failed", "{record}");
    let id = record["id"].as_str().unwrap();
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    assert!(logs.to_string().contains("could not be listed"), "{logs}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_and_the_egress_rules_police_mcp_servers() {
    let (server, _tmp) = credentialed(false, "mcp.example.com", None).await;
    let deploy = |manifest: Value| {
        let server = &server;
        async move { server.deploy_bytes(agent_wasm("toolbox"), &manifest).await }
    };
    // A host outside allowed_hosts, a credential bound to another host, a
    // credential the host does not have, a credential over plain http, a
    // bad name: refused at deploy.
    let mut outside = toolbox("http://127.0.0.1:9/mcp", false);
    outside["allowed_hosts"] = json!(["api.example.com"]);
    let mut elsewhere = toolbox("http://127.0.0.1:9/mcp", true);
    elsewhere["allowed_hosts"] = json!(["127.0.0.1"]);
    let mut unknown = toolbox("http://127.0.0.1:9/mcp", false);
    unknown["mcp_servers"][0]["auth_env"] = json!("NOT_A_CREDENTIAL");
    let mut plain = toolbox("http://mcp.example.com/mcp", true);
    plain["allowed_hosts"] = json!(["mcp.example.com"]);
    let mut bad_name = toolbox("http://127.0.0.1:9/mcp", false);
    bad_name["mcp_servers"][0]["name"] = json!("Calc Server");
    for (manifest, field) in [
        (outside, "mcp_servers[0].url"),
        (elsewhere, "mcp_servers[0].auth_env"),
        (unknown, "mcp_servers[0].auth_env"),
        (plain, "https only"),
        (bad_name, "mcp_servers[0].name"),
    ] {
        let (status, body) = deploy(manifest).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {body}"
        );
        assert_eq!(error_code(&body), "invalid_manifest", "{body}");
    }
    // Loopback is a private address: refused unless the host allows them.
    let (status, body) = deploy(toolbox("http://127.0.0.1:9/mcp", false)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let record = execute(&server, json!({ "tool": "mcp.calc.add", "args": {} })).await;
    assert_eq!(record["status"], "failed");
    let message = record["error"]["message"].as_str().unwrap();
    assert!(message.contains("loopback, private or link-local"), "{record}");
    server.stop().await;

    // A credential bound to other workspaces is not this one's.
    let (server, _tmp) = credentialed(true, "127.0.0.1", Some("other")).await;
    let (status, body) = server
        .deploy_bytes(agent_wasm("toolbox"), &toolbox("http://127.0.0.1:9/mcp", true))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("workspace"),
        "{body}"
    );
    server.stop().await;
}
