//! Restarting on the same data dir keeps agents, versions and executions, and
//! loads components from the compiled cache instead of recompiling.

use serde_json::json;
use warden_tests::{Server, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_does_not_recompile() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(test_config(tmp.path())).await;
    server.deploy("echo", json!({})).await;
    server.deploy("echo", json!({ "version": "0.2.0" })).await;
    server.deploy("hello", json!({})).await;
    let first = server.run("echo", json!({ "before": "restart" })).await;
    let (_, health) = server.get("/admin/health").await;
    // echo's two versions share their bytes: compiled once.
    assert_eq!(health["components"]["compiled"], 2, "{health}");
    server.stop().await;

    let server = Server::start_with(test_config(tmp.path())).await;
    let (_, health) = server.get("/admin/health").await;
    assert_eq!(
        health["components"]["compiled"], 0,
        "recompiled after restart: {health}"
    );
    assert_eq!(health["components"]["loaded_from_cache"], 2, "{health}");
    assert_eq!(health["agents"], 2);

    let (_, echo) = server.get("/v1/agents/echo").await;
    assert_eq!(echo["versions"].as_array().unwrap().len(), 2);
    assert_eq!(echo["latest"]["label"], "0.2.0");
    let id = first["id"].as_str().unwrap();
    let (_, stored) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["output"], first["output"]);
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    assert_eq!(logs["data"].as_array().unwrap().len(), 1);

    // And the loaded components run.
    let again = server.run("echo", json!({ "after": "restart" })).await;
    assert_eq!(again["status"], "completed");
    assert_eq!(again["agent_version"], 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_deploys_the_bundled_examples_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.deploy_examples = true;
    let server = Server::start_with(config.clone()).await;
    let record = server.run("echo", json!({ "name": "bundled" })).await;
    assert_eq!(record["output"]["greeting"], "Hello, bundled!");
    let record = server.run("hello", json!({ "name": "bundled" })).await;
    assert_eq!(record["status"], "completed");
    let record = server.run("support", json!({ "question": "What can you do?" })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["llm_provider"], "scripted");
    server.stop().await;

    let server = Server::start_with(config).await;
    let (_, echo) = server.get("/v1/agents/echo").await;
    assert_eq!(
        echo["versions"].as_array().unwrap().len(),
        1,
        "examples redeployed on restart"
    );
    server.stop().await;
}
