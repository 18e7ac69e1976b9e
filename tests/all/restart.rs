//! Restarting on the same data dir keeps agents, versions and executions, and
//! loads components from the compiled cache instead of recompiling; a deploy
//! made in the background that a crash cut short is made after the restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, Warden, test_config};

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
async fn a_background_deploy_cut_short_by_a_crash_is_made_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let warden = Warden::start(tmp.path());
    let client = warden.client();
    let location = client.deploy_in_background("js", "hello").await;
    // Answered once stored: the host dies while it compiles.
    warden.sigkill();

    let warden = Warden::start(tmp.path());
    let client = warden.client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let done: Value = loop {
        let (status, job) = client.get(&location).await;
        assert_eq!(status, StatusCode::OK, "the restarted host knows the deploy: {job}");
        if job["status"] != "compiling" {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "still compiling: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "deployed", "{done}");
    assert_eq!(done["deployed"]["version"]["version"], 1, "{done}");
    assert_eq!(done["agent_name"], "hello-js");
    assert!(
        warden
            .log_lines()
            .iter()
            .any(|l| l.contains("resuming deploys made in the background")),
        "the restart resumed it (it had not ended before the kill)"
    );
    let record = client.run("hello-js", json!({ "name": "Ada" })).await;
    assert_eq!(record["output"]["greeting"], "Hello, Ada!", "{record}");
    // Made once.
    let (_, agent) = client.get("/v1/agents/hello-js").await;
    assert_eq!(agent["versions"].as_array().unwrap().len(), 1, "{agent}");
    // And kept: another restart answers the same.
    warden.sigkill();
    let warden = Warden::start(tmp.path());
    let (status, again) = warden.client().get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "deployed");
    assert_eq!(again["deployed"]["version"]["id"], done["deployed"]["version"]["id"]);
    assert!(
        !warden
            .log_lines()
            .iter()
            .any(|l| l.contains("resuming deploys made in the background")),
        "nothing left to resume"
    );
    warden.sigkill();
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

/// Every `.cwasm` under a data dir's compiled cache.
fn cached_artifacts(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for engine in std::fs::read_dir(data_dir.join("compiled")).unwrap().flatten() {
        for file in std::fs::read_dir(engine.path()).unwrap().flatten() {
            if file.path().extension().is_some_and(|e| e == "cwasm") {
                out.push(file.path());
            }
        }
    }
    out
}

/// Flips bytes in the middle of a file (its header, at the start, stays valid).
fn damage(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4096] {
        *b = !*b;
    }
    std::fs::write(path, bytes).unwrap();
}

/// A damaged compiled artifact is never loaded: the host notices (its digest was
/// recorded in the database when it was written), compiles the component again,
/// and runs it. A component whose blob is gone too cannot run, and says so; the
/// host and its other agents carry on. With the real binary: a damaged artifact
/// used to kill it with SIGSEGV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_compiled_cache_is_recompiled_never_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let warden = warden_tests::Warden::start(tmp.path());
    let server = warden.client();
    let echo = server.deploy("echo", json!({})).await;
    let hello = server.deploy("hello", json!({})).await;
    assert_eq!(server.run("echo", json!({ "n": 1 })).await["status"], "completed");
    warden.sigkill();

    // (The bundled examples were deployed too: echo, hello, support, refund, chat.)
    let artifacts = cached_artifacts(tmp.path());
    assert_eq!(artifacts.len(), 5);
    for path in &artifacts {
        damage(path);
    }
    let warden = warden_tests::Warden::start(tmp.path());
    let server = warden.client();
    let record = server.run("echo", json!({ "n": 2 })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"]["echo"], json!({ "n": 2 }));
    let (_, health) = server.get("/admin/health").await;
    assert_eq!(health["components"]["compiled"], 5, "all recompiled: {health}");
    assert_eq!(health["components"]["loaded_from_cache"], 0, "{health}");
    warden.sigkill();

    // The rewritten artifacts are trusted again on the next start.
    let warden = warden_tests::Warden::start(tmp.path());
    let (_, health) = warden.client().get("/admin/health").await;
    assert_eq!(health["components"]["loaded_from_cache"], 5, "{health}");
    warden.sigkill();

    // echo's blob gone and its artifact damaged: echo cannot run, and says why.
    let hash = echo["version"]["component_hash"].as_str().unwrap();
    std::fs::remove_file(tmp.path().join("blobs/sha256").join(hash)).unwrap();
    for path in cached_artifacts(tmp.path()) {
        if path.file_stem().unwrap() == hash {
            damage(&path);
        }
    }
    let warden = warden_tests::Warden::start(tmp.path());
    let server = warden.client();
    let (status, body) = server
        .post_json("/v1/agents/echo/execute", &json!({ "input": {} }))
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "agent_unavailable");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("redeploy"),
        "{body}"
    );
    let (_, health) = server.get("/admin/health").await;
    assert_eq!(health["components"]["unavailable"], 2, "echo's two versions: {health}");
    // The host and its other agent carry on; a redeploy of echo fixes it.
    assert_eq!(hello["agent"]["name"], "hello");
    assert_eq!(server.run("hello", json!({ "name": "x" })).await["status"], "completed");
    server.deploy("echo", json!({})).await;
    assert_eq!(server.run("echo", json!({})).await["status"], "completed");
    drop(warden);
}
