//! The queue: priorities, per-agent slots, fairness across agents, the queue's
//! bound, cancel in every state, retries (on request and by policy), idempotency.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, error_code, test_config};

async fn submit(server: &Server, agent: &str, body: Value) -> String {
    let mut body = body;
    body["mode"] = json!("async");
    let (status, accepted) = server.post_json(&format!("/v1/agents/{agent}/execute"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    accepted["id"].as_str().unwrap().to_owned()
}

async fn status_of(server: &Server, id: &str) -> String {
    let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
    e["status"].as_str().unwrap().to_owned()
}

/// Polls until the execution has `status`.
async fn wait_status(server: &Server, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
        if e["status"] == status {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never reached {status}: {e}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_orders_the_queue_fifo_within_a_priority() {
    let server = Server::start().await;
    server.deploy("sleepy", json!({ "max_concurrency": 1 })).await;
    let blocker = submit(&server, "sleepy", json!({ "input": { "ms": 300 } })).await;
    wait_status(&server, &blocker, "running").await;
    let mut ids = Vec::new();
    for (name, priority) in [("a", 10), ("b", 90), ("c", 50), ("d", 90), ("e", 50)] {
        let id = submit(
            &server,
            "sleepy",
            json!({ "input": { "ms": 10 }, "priority": priority }),
        )
        .await;
        ids.push((name, id));
    }
    let mut started = Vec::new();
    for (name, id) in &ids {
        let done = server.wait_terminal(id).await;
        assert_eq!(done["status"], "completed");
        started.push((done["started_at"].as_str().unwrap().to_owned(), *name));
    }
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, n)| *n).collect();
    assert_eq!(order, ["b", "d", "c", "e", "a"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_full_slots_waits_and_holds_nobody_else_back() {
    let server = Server::start().await;
    server.deploy("sleepy", json!({ "max_concurrency": 3 })).await;
    server.deploy("echo", json!({})).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(submit(&server, "sleepy", json!({ "input": { "ms": 600 } })).await);
    }
    for id in &ids[..3] {
        wait_status(&server, id, "running").await;
    }
    assert_eq!(status_of(&server, &ids[3]).await, "queued");
    let (_, health) = server.get("/admin/health").await;
    assert_eq!(health["executions"], json!({ "running": 3, "waiting": 1 }));
    // Another agent's executions are not held back by sleepy's full slots.
    for i in 0..5 {
        let record = server.run("echo", json!({ "i": i })).await;
        assert_eq!(record["status"], "completed");
    }
    assert_eq!(status_of(&server, &ids[3]).await, "queued");
    let last = server.wait_terminal(&ids[3]).await;
    assert_eq!(last["status"], "completed");
    // It started only once one of the first three had finished.
    let mut first_end = String::from("~");
    for id in &ids[..3] {
        let done = server.wait_terminal(id).await;
        first_end = first_end.min(done["completed_at"].as_str().unwrap().to_owned());
    }
    assert!(last["started_at"].as_str().unwrap() >= first_end.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_bound_execute_answers_429_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.max_queued_executions = 2;
    let server = Server::start_with(config).await;
    server.deploy("sleepy", json!({ "max_concurrency": 1 })).await;
    let running = submit(&server, "sleepy", json!({ "input": { "ms": 500 } })).await;
    wait_status(&server, &running, "running").await;
    submit(&server, "sleepy", json!({ "input": { "ms": 1 } })).await;
    submit(&server, "sleepy", json!({ "input": { "ms": 1 } })).await;
    let resp = server
        .http
        .post(server.url("/v1/agents/sleepy/execute"))
        .json(&json!({ "input": { "ms": 1 }, "mode": "async" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "queue_full");
    let (_, all) = server.get("/v1/executions").await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        3,
        "a refused execution was stored"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_every_state() {
    let server = Server::start().await;
    server
        .deploy(
            "spin",
            json!({ "limits": { "fuel": 1_000_000_000_000u64, "timeout_ms": 60_000 } }),
        )
        .await;
    server
        .deploy(
            "sleepy",
            json!({ "max_concurrency": 1, "limits": { "timeout_ms": 120_000 } }),
        )
        .await;
    server.deploy("echo", json!({})).await;

    // Running pure wasm: stopped at its next epoch tick; the answer waits for
    // that and gives the cancelled record; its log stays.
    let spin = submit(&server, "spin", json!({})).await;
    wait_status(&server, &spin, "running").await;
    let (status, cancelled) = server
        .post_json(&format!("/v1/executions/{spin}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    // Repeating the cancel is harmless: it is over.
    let (status, body) = server
        .post_json(&format!("/v1/executions/{spin}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let done = wait_status(&server, &spin, "cancelled").await;
    assert_eq!(done["error"]["code"], "cancelled");
    assert!(done["fuel_used"].as_u64().unwrap() > 0);
    let (_, logs) = server.get(&format!("/v1/executions/{spin}/logs")).await;
    assert_eq!(logs["data"][0]["message"], "spinning forever");

    // Running but parked in a host call (a long sleep).
    let parked = submit(&server, "sleepy", json!({ "input": { "ms": 3_600_000 } })).await;
    wait_status(&server, &parked, "running").await;
    // Queued behind it (sleepy has one slot): cancelled at once.
    let queued = submit(&server, "sleepy", json!({ "input": { "ms": 1 } })).await;
    assert_eq!(status_of(&server, &queued).await, "queued");
    let (status, cancelled) = server
        .post_json(&format!("/v1/executions/{queued}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(status_of(&server, &queued).await, "cancelled");

    let (status, body) = server
        .post_json(&format!("/v1/executions/{parked}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{body}"
    );
    let done = wait_status(&server, &parked, "cancelled").await;
    assert!(done["timing"]["run_ms"].as_i64().unwrap() < 10_000);
    let (_, logs) = server.get(&format!("/v1/executions/{parked}/logs")).await;
    assert_eq!(logs["data"][0]["message"], "sleeping 3600000 ms");

    // Terminal: 409 with the current status, however often asked.
    let finished = server.run("echo", json!({})).await;
    let id = finished["id"].as_str().unwrap();
    for _ in 0..2 {
        let (status, body) = server
            .post_json(&format!("/v1/executions/{id}/cancel"), &json!({}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(error_code(&body), "already_finished");
        assert_eq!(body["error"]["status"], "completed");
    }
    let (status, body) = server
        .post_json(&format!("/v1/executions/{queued}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["status"], "cancelled");
    let (status, _) = server.post_json("/v1/executions/exec_nope/cancel", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The slot came back: sleepy runs again.
    let again = server.run("sleepy", json!({ "ms": 1 })).await;
    assert_eq!(again["status"], "completed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_makes_a_linked_execution() {
    let server = Server::start().await;
    server.deploy("hello", json!({})).await;
    server.deploy("sleepy", json!({})).await;
    let failed = server.run("hello", json!({ "wrong": 1 })).await;
    let id = failed["id"].as_str().unwrap();
    let (status, retry) = server
        .post_json(&format!("/v1/executions/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    assert_eq!(retry["trigger"], "retry");
    assert_eq!(retry["retry_of"], id);
    assert_eq!(retry["attempt"], 2);
    assert_eq!(retry["input"], json!({ "wrong": 1 }));
    assert_eq!(retry["agent_version_id"], failed["agent_version_id"]);
    let done = server.wait_terminal(retry["id"].as_str().unwrap()).await;
    assert_eq!(done["error"]["code"], "invalid_input");
    let (_, original) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(original["retried_by"], retry["id"]);

    // Retrying a running execution cancels it first.
    let running = submit(&server, "sleepy", json!({ "input": { "ms": 60_000 }, "priority": 70 })).await;
    wait_status(&server, &running, "running").await;
    let (status, retry) = server
        .post_json(&format!("/v1/executions/{running}/retry"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(retry["priority"], 70);
    wait_status(&server, &running, "cancelled").await;
    let (_, retries) = server.get("/v1/executions?trigger=retry").await;
    assert_eq!(retries["data"].as_array().unwrap().len(), 2);
    server
        .post_json(
            &format!("/v1/executions/{}/cancel", retry["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_policy_retries_failures_that_can_succeed() {
    let server = Server::start().await;
    let policy = json!({ "retry": { "max_attempts": 3, "backoff_ms": 30, "backoff_multiplier": 2.0 } });
    server.deploy("crash", policy.clone()).await;
    server.deploy("hello", policy).await;

    // A sync caller gets the last attempt.
    let last = server.run("crash", json!({})).await;
    assert_eq!(last["status"], "failed");
    assert_eq!(last["attempt"], 3);
    assert_eq!(last["trigger"], "retry");
    let second = last["retry_of"].as_str().unwrap();
    let (_, second) = server.get(&format!("/v1/executions/{second}")).await;
    assert_eq!(second["attempt"], 2);
    assert_eq!(second["retried_by"], last["id"]);
    let first = second["retry_of"].as_str().unwrap();
    let (_, first) = server.get(&format!("/v1/executions/{first}")).await;
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["trigger"], "api");
    assert_eq!(first["error"]["code"], "trap");
    // The backoff was waited out.
    assert!(second["run_after"].is_string());

    // invalid_input cannot succeed on a retry: not retried.
    let bad = server.run("hello", json!({ "nope": true })).await;
    assert_eq!(bad["attempt"], 1);
    assert_eq!(bad["retried_by"], Value::Null);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_same_different_and_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.idempotency_ttl_secs = 1;
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;
    let execute = |key: &str, body: Value| {
        server
            .http
            .post(server.url("/v1/agents/echo/execute"))
            .header("idempotency-key", key)
            .json(&body)
    };
    let (status, first) = server.send(execute("k1", json!({ "input": { "n": 1 } }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = server.send(execute("k1", json!({ "input": { "n": 1 } }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    // Async with the same key and request: still the same execution, 200.
    let (status, again) = server
        .send(execute("k1", json!({ "input": { "n": 1 }, "mode": "async" })))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    let (status, body) = server.send(execute("k1", json!({ "input": { "n": 2 } }))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "idempotency_conflict");
    let (_, all) = server.get("/v1/executions").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1);

    // Past the key's lifetime it names a new execution.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, later) = server.send(execute("k1", json!({ "input": { "n": 2 } }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(later["id"], first["id"]);

    // Concurrent first uses of one key make one execution.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let req = execute("k2", json!({ "input": { "n": 3 } }));
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().json::<Value>().await.unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    server.stop().await;
}
