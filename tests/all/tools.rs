//! The built-in tools through the `tools` import: `kv`, `http_fetch` (allowlist and
//! address checks), `agent_call` (child executions, depth limit), and the
//! manifest's say over which tools an agent gets.

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use warden_tests::{Server, test_config};

covers!(toolbox => kv_persists_per_agent);

fn toolbox(tool: &str, args: Value) -> Value {
    json!({ "tool": tool, "args": args })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_persists_per_agent() {
    let server = Server::start().await;
    server.deploy("toolbox", json!({})).await;
    let mut other = warden_tests::agent_manifest("toolbox");
    other["name"] = json!("toolbox-2");
    server.deploy_bytes(warden_tests::agent_wasm("toolbox"), &other).await;

    let set = server
        .run(
            "toolbox",
            toolbox("kv", json!({ "op": "set", "key": "k", "value": { "n": 1 } })),
        )
        .await;
    assert_eq!(set["status"], "completed", "{set}");
    let got = server
        .run("toolbox", toolbox("kv", json!({ "op": "get", "key": "k" })))
        .await;
    assert_eq!(got["output"]["result"], json!({ "found": true, "value": { "n": 1 } }));
    let listed = server
        .run("toolbox", toolbox("kv", json!({ "op": "list", "prefix": "" })))
        .await;
    assert_eq!(listed["output"]["result"]["keys"], json!(["k"]));
    // Another agent has its own store.
    let theirs = server
        .run("toolbox-2", toolbox("kv", json!({ "op": "get", "key": "k" })))
        .await;
    assert_eq!(theirs["output"]["result"]["found"], false);
    server
        .run("toolbox", toolbox("kv", json!({ "op": "delete", "key": "k" })))
        .await;
    let gone = server
        .run("toolbox", toolbox("kv", json!({ "op": "get", "key": "k" })))
        .await;
    assert_eq!(gone["output"]["result"]["found"], false);
    // Every call is on the record.
    assert_eq!(gone["n_tool_calls"], 1);
    assert_eq!(gone["tool_calls"][0]["name"], "kv");
    assert!(gone["tool_calls"][0]["duration_ms"].is_u64());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_is_refused_off_the_allowlist_and_to_private_addresses() {
    // A page on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            Router::new().route("/page", get(|| async { "hello from the page" })),
        )
        .await;
    });
    let url = format!("http://127.0.0.1:{port}/page");

    let server = Server::start().await;
    server
        .deploy("toolbox", json!({ "allowed_hosts": ["api.example.com"] }))
        .await;
    let record = server
        .run("toolbox", toolbox("http_fetch", json!({ "url": url })))
        .await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "tool_error");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in this agent's allowed_hosts"),
        "{record}"
    );
    assert!(record["tool_calls"][0]["error"].is_string());

    // Allowlisted, but loopback: refused unless the host allows private addresses.
    server
        .deploy(
            "toolbox",
            json!({ "allowed_hosts": ["127.0.0.1", "metadata.google.internal"] }),
        )
        .await;
    let record = server
        .run("toolbox", toolbox("http_fetch", json!({ "url": url })))
        .await;
    assert_eq!(record["error"]["code"], "tool_error");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback, private or link-local"),
        "{record}"
    );
    let record = server
        .run(
            "toolbox",
            toolbox(
                "http_fetch",
                json!({ "url": "http://169.254.169.254/latest/meta-data/" }),
            ),
        )
        .await;
    assert_eq!(record["error"]["code"], "tool_error");
    // Reserved ranges too are refused before any connection is tried (the
    // IPv6 forms that carry such an address, NAT64, 6to4 and IPv4-compatible,
    // are checked by the same rule: the unit tests of `tools::egress`).
    let reserved = ["198.18.0.1", "240.0.0.1", "192.0.0.8"];
    server.deploy("toolbox", json!({ "allowed_hosts": reserved })).await;
    for host in reserved {
        let url = format!("http://{host}:{port}/page");
        let record = server
            .run("toolbox", toolbox("http_fetch", json!({ "url": url })))
            .await;
        let message = record["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("refused"), "{host}: {record}");
    }
    server.stop().await;

    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.tools.allow_private_addresses = true;
    let server = Server::start_with(config).await;
    server
        .deploy("toolbox", json!({ "allowed_hosts": ["127.0.0.1"] }))
        .await;
    let record = server
        .run("toolbox", toolbox("http_fetch", json!({ "url": url })))
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"]["result"]["status"], 200);
    assert_eq!(record["output"]["result"]["body"], "hello from the page");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_call_runs_a_child_and_stops_at_the_depth_limit() {
    let server = Server::start().await;
    server.deploy("toolbox", json!({})).await;
    server.deploy("echo", json!({})).await;
    let record = server
        .run(
            "toolbox",
            toolbox("agent_call", json!({ "agent": "echo", "input": { "name": "child" } })),
        )
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    let result = &record["output"]["result"];
    assert_eq!(result["status"], "completed");
    assert_eq!(result["output"]["greeting"], "Hello, child!");
    let child_id = result["execution_id"].as_str().unwrap();
    let (_, child) = server.get(&format!("/v1/executions/{child_id}")).await;
    assert_eq!(child["trigger"], "agent");
    assert_eq!(child["parent_id"], record["id"]);
    assert_eq!(child["depth"], 1);
    // A child run is in its parent's trace.
    assert_eq!(child["trace_id"], record["trace_id"]);
    assert_eq!(child["trace_id"].as_str().map(str::len), Some(32));

    // toolbox → toolbox → toolbox → toolbox → echo: the fourth level is refused
    // (agent_call_max_depth = 3).
    let mut input = json!({ "name": "deep" });
    let mut agent = "echo";
    for _ in 0..4 {
        input = toolbox("agent_call", json!({ "agent": agent, "input": input }));
        agent = "toolbox";
    }
    let record = server.run("toolbox", input).await;
    // A child's failure is the caller's result to handle, not the caller's failure.
    assert_eq!(record["status"], "completed", "{record}");
    let (_, children) = server.get("/v1/executions?trigger=agent&limit=100").await;
    let children = children["data"].as_array().unwrap().clone();
    let deepest = children.iter().max_by_key(|e| e["depth"].as_u64().unwrap()).unwrap();
    assert_eq!(deepest["depth"], 3, "no execution deeper than the limit");
    assert_eq!(deepest["status"], "failed");
    assert_eq!(deepest["error"]["code"], "tool_error");
    assert!(
        deepest["error"]["message"]
            .as_str()
            .unwrap()
            .contains("depth limit of 3"),
        "{deepest}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_manifests_tools_are_available() {
    let server = Server::start().await;
    server.deploy("toolbox", json!({ "tools": ["kv"] })).await;
    let record = server.run("toolbox", json!({})).await;
    assert_eq!(record["output"]["available"], json!(["kv"]));
    let record = server
        .run("toolbox", toolbox("agent_call", json!({ "agent": "toolbox" })))
        .await;
    assert_eq!(record["error"]["code"], "tool_error");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in this agent's manifest"),
        "{record}"
    );
    server.stop().await;
}
