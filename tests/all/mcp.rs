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
    assert_eq!(seen["run"]["is_error"], true, "not a tool of this workspace: {seen}");
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

mod tasks {
    //! Tasks, taken by the official Rust SDK's client (`rmcp`).

    use std::time::Duration;

    use rmcp::model::{
        CallToolRequestParams, CallToolResponse, CancelTaskParams, ClientCapabilities, ClientConfig, GetTaskParams,
        GetTaskResult, Implementation, JsonObject, ProtocolVersion, TaskPayload, TaskStatus, UpdateTaskParams,
    };
    use rmcp::service::RunningService;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::{RoleClient, ServiceExt};
    use serde_json::{Value, json};
    use warden_tests::{Server, create_key, test_config};

    type Client = RunningService<RoleClient, ClientConfig>;

    async fn connect(server: &Server, token: &str) -> Client {
        let mut capabilities = ClientCapabilities::default();
        capabilities.extensions = Some(
            [(rmcp::model::TASKS_EXTENSION_ID.to_owned(), JsonObject::new())]
                .into_iter()
                .collect(),
        );
        let info = ClientConfig::new(capabilities, Implementation::new("warden-tests", "1"))
            .with_protocol_version(ProtocolVersion::V_2025_11_25);
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")).auth_header(token.to_owned()),
        );
        info.serve(transport).await.expect("connects")
    }

    fn call(name: &str, arguments: Value) -> CallToolRequestParams {
        let Value::Object(arguments) = arguments else {
            unreachable!()
        };
        CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
    }

    /// Polls the task until `done` says so (within 20 s).
    async fn poll(client: &Client, id: &str, done: impl Fn(&GetTaskResult) -> bool) -> GetTaskResult {
        for _ in 0..200 {
            let task = client.get_task(GetTaskParams::new(id)).await.expect("tasks/get");
            if done(&task) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("task {id} never got there");
    }

    fn task_id(response: CallToolResponse) -> String {
        match response {
            CallToolResponse::Task(created) => {
                assert!(
                    matches!(created.task.status, TaskStatus::Working | TaskStatus::InputRequired),
                    "{created:?}"
                );
                created.task.task_id
            }
            other => panic!("expected a task, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_runs_become_tasks_that_are_read_cancelled_and_approved() {
        let tmp = tempfile::tempdir().unwrap();
        let token = create_key(tmp.path(), "default", "ops", true);
        let mut config = test_config(tmp.path());
        config.mcp.task_after_ms = 300;
        let host = Server::start_with(config).await;
        let server = host.with_key(&token);
        server.deploy("sleepy", json!({})).await;
        server.deploy("refund", json!({})).await;
        let client = connect(&server, &token).await;

        // A short run answers at once.
        let quick = client.call_tool_once(call("sleepy", json!({ "ms": 5 }))).await.unwrap();
        let CallToolResponse::Complete(quick) = quick else {
            panic!("{quick:?}")
        };
        assert_eq!(quick.structured_content, Some(json!({ "slept_ms": 5 })));

        // A long one becomes a task, whose id is the execution's.
        let slow = client
            .call_tool_once(call("sleepy", json!({ "ms": 1500 })))
            .await
            .unwrap();
        let id = task_id(slow);
        let (_, record) = server.get(&format!("/v1/executions/{id}")).await;
        assert_eq!(record["trigger"], "mcp", "{record}");
        let done = poll(&client, &id, |t| t.task.status() == TaskStatus::Completed).await;
        let TaskPayload::Completed { result } = &done.task.payload else {
            unreachable!()
        };
        assert_eq!(result["structuredContent"], json!({ "slept_ms": 1500 }), "{result:?}");

        // Cancelling the task cancels the execution.
        let id = task_id(
            client
                .call_tool_once(call("sleepy", json!({ "ms": 30000 })))
                .await
                .unwrap(),
        );
        client.cancel_task(CancelTaskParams::new(&id)).await.unwrap();
        poll(&client, &id, |t| t.task.status() == TaskStatus::Cancelled).await;
        assert_eq!(server.wait_terminal(&id).await["status"], "cancelled");

        // Waiting for an approval is input_required; the answer decides it.
        let id = task_id(
            client
                .call_tool_once(call("refund", json!({ "order_id": "o-7", "amount": 250 })))
                .await
                .unwrap(),
        );
        let waiting = poll(&client, &id, |t| t.task.status() == TaskStatus::InputRequired).await;
        let TaskPayload::InputRequired { input_requests } = &waiting.task.payload else {
            unreachable!()
        };
        assert_eq!(input_requests.len(), 1);
        let (approval_id, request) = input_requests.iter().next().unwrap();
        assert!(approval_id.starts_with("apr_"), "{approval_id}");
        let request = serde_json::to_value(request).unwrap();
        assert_eq!(request["method"], "elicitation/create", "{request}");
        let answer = json!({ "action": "accept", "content": { "approve": true, "comment": "fine" } });
        client
            .update_task(UpdateTaskParams::new(
                &id,
                [(approval_id.clone(), answer)].into_iter().collect(),
            ))
            .await
            .unwrap();
        let done = poll(&client, &id, |t| t.task.status() == TaskStatus::Completed).await;
        let TaskPayload::Completed { result } = &done.task.payload else {
            unreachable!()
        };
        assert_ne!(result.get("isError"), Some(&json!(true)), "{result:?}");
        let (_, approval) = server.get(&format!("/v1/approvals/{approval_id}")).await;
        assert_eq!(approval["status"], "approved", "{approval}");

        // Someone else's task is not found.
        let other = create_key(tmp.path(), "other", "ops", true);
        let stranger = connect(&server, &other).await;
        assert!(stranger.get_task(GetTaskParams::new(&id)).await.is_err());
        client.cancel().await.unwrap();
        stranger.cancel().await.unwrap();
        host.stop().await;
    }
}

mod guests {
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
        let mut child = tokio::process::Command::new(super::python())
            .arg(super::script("server.py"))
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

    fn toolbox(url: &str, auth: bool) -> Value {
        let mut manifest = agent_manifest("toolbox");
        let mut server = json!({ "name": "calc", "url": url, "allowed_tools": ["add", "boom"] });
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
        let tmp = tempfile::tempdir().unwrap();
        let mut config = test_config(tmp.path());
        config.tools.allow_private_addresses = true;
        config.mcp.credentials = vec![McpCredential {
            env: CREDENTIAL.into(),
            hosts: vec!["127.0.0.1".into()],
        }];
        let server = Server::start_with(config).await;
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
        let tmp = tempfile::tempdir().unwrap();
        let mut config = test_config(tmp.path());
        config.mcp.credentials = vec![McpCredential {
            env: CREDENTIAL.into(),
            hosts: vec!["mcp.example.com".into()],
        }];
        let server = Server::start_with(config).await;
        let deploy = |manifest: Value| {
            let server = &server;
            async move { server.deploy_bytes(agent_wasm("toolbox"), &manifest).await }
        };
        // A host outside allowed_hosts, a credential bound to another host, a
        // credential the host does not have, a bad name: refused at deploy.
        let mut outside = toolbox("http://127.0.0.1:9/mcp", false);
        outside["allowed_hosts"] = json!(["api.example.com"]);
        let mut elsewhere = toolbox("http://127.0.0.1:9/mcp", true);
        elsewhere["allowed_hosts"] = json!(["127.0.0.1"]);
        let mut unknown = toolbox("http://127.0.0.1:9/mcp", false);
        unknown["mcp_servers"][0]["auth_env"] = json!("NOT_A_CREDENTIAL");
        let mut bad_name = toolbox("http://127.0.0.1:9/mcp", false);
        bad_name["mcp_servers"][0]["name"] = json!("Calc Server");
        for (manifest, field) in [
            (outside, "mcp_servers[0].url"),
            (elsewhere, "mcp_servers[0].auth_env"),
            (unknown, "mcp_servers[0].auth_env"),
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
        assert!(
            record["error"]["message"].as_str().unwrap().contains("refused"),
            "{record}"
        );
        server.stop().await;
    }
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
