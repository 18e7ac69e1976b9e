//! Deploy and execute: sync, async (polled), versions, the run record.

use reqwest::StatusCode;
use serde_json::json;
use warden_tests::{Server, error_code};

covers!(echo => echo_runs_sync_and_is_recorded, hello => typed_sdk_errors_are_recorded, liar => output_that_is_not_json_or_too_big_is_invalid_output);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_runs_sync_and_is_recorded() {
    let server = Server::start().await;
    let deployed = server.deploy("echo", json!({})).await;
    assert_eq!(deployed["agent"]["name"], "echo");
    assert_eq!(deployed["version"]["version"], 1);
    assert_eq!(deployed["version"]["label"], "0.1.0");
    assert_eq!(deployed["version"]["limits"]["memory_mb"], 16);

    let record = server.run("echo", json!({ "name": "Ada", "n": [1, 2] })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"]["greeting"], "Hello, Ada!");
    assert_eq!(record["output"]["echo"], json!({ "name": "Ada", "n": [1, 2] }));
    assert_eq!(record["trigger"], "api");
    assert_eq!(record["priority"], 50);
    assert_eq!(record["n_logs"], 1);
    assert_eq!(record["n_steps"], 1);
    assert!(record["fuel_used"].as_u64().unwrap() > 0);
    assert!(record["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert!(record["id"].as_str().unwrap().starts_with("exec_"));
    assert!(record["completed_at"].is_string());

    // The stored record is the one returned.
    let id = record["id"].as_str().unwrap();
    let (status, stored) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["output"], record["output"]);
    assert_eq!(stored["status"], "completed");

    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    let line = &logs["data"][0];
    assert_eq!(line["level"], "info");
    assert_eq!(line["stream"], "log");
    assert!(line["message"].as_str().unwrap().starts_with("echoing"), "{logs}");

    let (_, steps) = server.get(&format!("/v1/executions/{id}/steps")).await;
    assert_eq!(steps["data"][0]["name"], "greet");
    assert_eq!(steps["data"][0]["detail"], json!({ "name": "Ada" }));
    assert_eq!(steps["data"][0]["seq"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_execution_is_polled_to_completion() {
    let server = Server::start().await;
    server.deploy("echo", json!({})).await;
    let (status, accepted) = server
        .post_json(
            "/v1/agents/echo/execute",
            &json!({ "input": { "name": "Bo" }, "mode": "async", "metadata": { "ticket": 7 } }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert!(matches!(accepted["status"].as_str(), Some("queued")), "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    // Committed before the answer: readable at once.
    let (status, _) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let done = server.wait_terminal(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["greeting"], "Hello, Bo!");
    assert_eq!(done["metadata"], json!({ "ticket": 7 }));
    assert!(done["timing"]["total_ms"].as_i64().unwrap() >= 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_makes_a_new_version_and_old_ones_still_run() {
    let server = Server::start().await;
    server.deploy("hello", json!({ "version": "1.0.0" })).await;
    let second = server
        .deploy("hello", json!({ "version": "1.1.0", "description": "v2" }))
        .await;
    assert_eq!(second["version"]["version"], 2);
    assert_eq!(second["agent"]["latest_version"], 2);

    let (status, agent) = server.get("/v1/agents/hello").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent["versions"].as_array().unwrap().len(), 2);
    assert_eq!(agent["latest"]["label"], "1.1.0");
    assert_eq!(agent["description"], "v2");
    // By id as well as by name.
    let agent_id = agent["id"].as_str().unwrap();
    let (status, by_id) = server.get(&format!("/v1/agents/{agent_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["name"], "hello");

    let (status, record) = server
        .post_json(
            "/v1/agents/hello/execute",
            &json!({ "input": { "name": "Cy" }, "version": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["agent_version"], 1);
    assert_eq!(record["output"]["greeting"], "Hello, Cy!");

    let (status, body) = server
        .post_json("/v1/agents/hello/execute", &json!({ "input": {}, "version": 9 }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_sdk_errors_are_recorded() {
    let server = Server::start().await;
    server.deploy("hello", json!({})).await;
    // Input that does not fit the agent's type: invalid_input, from the agent.
    let record = server.run("hello", json!({ "nome": "typo" })).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "invalid_input");
    assert_eq!(record["error"]["source"], "agent");
    assert!(
        record["error"]["message"].as_str().unwrap().contains("name"),
        "{record}"
    );
    // An error the agent returns on purpose keeps its code.
    let record = server.run("hello", json!({ "name": "x", "times": 11 })).await;
    assert_eq!(record["error"]["code"], "too_many");
    // And the happy path.
    let record = server.run("hello", json!({ "name": "x", "times": 2 })).await;
    assert_eq!(record["output"]["greeting"], "Hello, x! Hello, x!");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_sqlite_and_uptime() {
    let server = Server::start().await;
    let (status, health) = server.get("/admin/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert!(health["sqlite_version"].as_str().unwrap().starts_with('3'), "{health}");
    assert!(health["store"].as_str().unwrap().starts_with("sqlite 3"), "{health}");
    assert!(health["uptime_sec"].is_u64());
    assert!(health["version"].is_string());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_is_not_json_or_too_big_is_invalid_output() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = warden_tests::test_config(tmp.path());
    config.capture.max_output_bytes = 1024;
    let server = Server::start_with(config).await;
    server.deploy("liar", json!({})).await;
    server.deploy("echo", json!({})).await;

    let record = server.run("liar", json!({})).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "invalid_output", "{record}");
    assert!(record["error"]["message"].as_str().unwrap().contains("not JSON"));
    assert_eq!(record["output"], serde_json::Value::Null);

    let record = server.run("echo", json!({ "blob": "x".repeat(2000) })).await;
    assert_eq!(record["error"]["code"], "invalid_output", "{record}");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over the limit of 1024 bytes")
    );
    // Small outputs still pass.
    let record = server.run("echo", json!({ "blob": "x" })).await;
    assert_eq!(record["status"], "completed");
    server.stop().await;
}
