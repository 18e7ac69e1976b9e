//! Crash recovery with a real SIGKILL of a real `warden serve` process: queued
//! executions run after the restart, running ones of agents that are not
//! durable end `failed` with `host_restart`, or are retried when their agent's
//! policy allows. (Durable runs resume instead: see `durable`.)

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, Warden, agent_manifest, agent_wasm};

covers!(ticker => the_events_of_a_killed_run_are_readable_after_restart);

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn wait_for(http: &reqwest::Client, base: &str, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let e = get(http, format!("{base}/v1/executions/{id}")).await;
        if pred(&e) {
            return e;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id}: {e}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_accepted_execution() {
    let tmp = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let warden = Warden::start(tmp.path());
    let base = warden.base.clone();
    // Deploy over HTTP through the test helper (it only needs the base URL).
    let deployer = Server::attach(&base);
    deployer
        .deploy(
            "sleepy",
            json!({ "max_concurrency": 1, "limits": { "timeout_ms": 120_000 }, "durable": false }),
        )
        .await;
    let mut retrying = agent_manifest("sleepy");
    retrying["name"] = json!("sleepy-retry");
    retrying["retry"] = json!({ "max_attempts": 2, "backoff_ms": 10 });
    retrying["durable"] = json!(false);
    let (status, _) = deployer.deploy_bytes(agent_wasm("sleepy"), &retrying).await;
    assert_eq!(status, StatusCode::CREATED);

    let submit = |agent: &'static str, input: Value, priority: u8| {
        let http = http.clone();
        let url = format!("{base}/v1/agents/{agent}/execute");
        async move {
            let body = json!({ "input": input, "mode": "async", "priority": priority });
            let accepted: Value = http.post(url).json(&body).send().await.unwrap().json().await.unwrap();
            accepted["id"].as_str().unwrap().to_owned()
        }
    };
    let running = submit("sleepy", json!({ "ms": 600_000 }), 50).await;
    let queued_low = submit("sleepy", json!({ "ms": 5 }), 10).await;
    let queued_high = submit("sleepy", json!({ "ms": 5 }), 90).await;
    let retried = submit("sleepy-retry", json!({ "ms": 600_000 }), 50).await;
    wait_for(&http, &base, &running, |e| e["status"] == "running").await;
    wait_for(&http, &base, &retried, |e| e["status"] == "running").await;
    assert_eq!(
        get(&http, format!("{base}/v1/executions/{queued_low}")).await["status"],
        "queued"
    );

    warden.sigkill();
    let warden = Warden::start(tmp.path());
    let base = warden.base.clone();

    let e = wait_for(&http, &base, &running, |e| e["status"] == "failed").await;
    assert_eq!(e["error"]["code"], "host_restart", "{e}");
    let high = wait_for(&http, &base, &queued_high, |e| e["status"] == "completed").await;
    let low = wait_for(&http, &base, &queued_low, |e| e["status"] == "completed").await;
    assert!(
        high["started_at"].as_str() < low["started_at"].as_str(),
        "priority kept across the restart"
    );
    let e = wait_for(&http, &base, &retried, |e| e["status"] == "failed").await;
    assert_eq!(e["error"]["code"], "host_restart");
    let next = e["retried_by"]
        .as_str()
        .expect("the retry policy re-queued it")
        .to_owned();
    let next = wait_for(&http, &base, &next, |e| e["status"] == "running").await;
    assert_eq!(next["retry_of"], json!(retried));
    assert_eq!(next["attempt"], 2);
    // Nothing else is left unfinished.
    let open: Value = get(&http, format!("{base}/v1/executions?status=queued")).await;
    assert_eq!(open["data"], json!([]));
    drop(warden);
}

/// Events are stored as they happen: after a SIGKILL, every event of an
/// interrupted run from before the crash is still there, numbered as it was, and
/// the run's stream continues from them to its end (`host_restart`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_a_killed_run_are_readable_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let warden = Warden::start(tmp.path());
    let server = Server::attach(&warden.base);
    server.deploy("ticker", json!({ "durable": false })).await;
    let (status, accepted) = server
        .post_json(
            "/v1/agents/ticker/execute",
            &json!({ "input": { "n": 100_000, "ms": 5 }, "mode": "async" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let events_url = |base: &str| format!("{base}/v1/executions/{id}/events?limit=10000");
    // Wait for a few dozen ticks, note them, and give the writer ample time
    // (200 ms; it commits within a few) before the kill.
    let seen = loop {
        let page = get(&http, events_url(&warden.base)).await;
        let events = page["data"].as_array().unwrap().clone();
        if events.len() >= 30 {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    warden.sigkill();

    let warden = Warden::start(tmp.path());
    let base = warden.base.clone();
    let ended = wait_for(&http, &base, &id, |e| e["status"] == "failed").await;
    assert_eq!(ended["error"]["code"], "host_restart");
    let stored = get(&http, events_url(&base)).await["data"].as_array().unwrap().clone();
    // Everything seen before the crash, unchanged, then more, then the end.
    assert_eq!(stored[..seen.len()], seen[..], "the events from before the crash");
    assert_eq!(seen[0]["data"]["status"], "queued");
    assert_eq!(seen[1]["data"]["status"], "running");
    assert_eq!(seen[2]["type"], "log");
    let seqs: Vec<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
    let n = stored.len();
    assert_eq!(stored[n - 2]["data"]["status"], "failed");
    assert_eq!(stored[n - 1]["type"], "error");
    assert_eq!(stored[n - 1]["data"]["error"]["code"], "host_restart");
    // The stream replays them all and closes; resumed from the middle, the rest.
    let server = Server::attach(&base);
    let streamed = server.stream(&id, None).await;
    assert_eq!(streamed.len(), n);
    assert_eq!(streamed.last().unwrap().event, "error");
    let resumed = server.stream(&id, Some(10)).await;
    assert_eq!(resumed.first().unwrap().id, 11);
    assert_eq!(resumed.len(), n - 10);
    drop(warden);
}

/// What a run does beyond its sandbox is never done twice by the host: a run's
/// start is stored before its first model, tool or artifact call, so after a
/// SIGKILL the restart ends it `host_restart` instead of running it again. The
/// kill comes as soon as the last of a dozen runs reaches a page that counts its
/// visitors and never answers (before: runs whose `running` record was still on
/// its way were queued again and fetched the page a second time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_acted_is_never_started_again_after_a_kill() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const RUNS: usize = 12;
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counter = Arc::clone(&hits);
    let page = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<&'static str>()
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, page).await;
    });

    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("warden.toml");
    std::fs::write(
        &config,
        "deploy_examples = false\n[tools]\nallow_private_addresses = true\nhttp_timeout_ms = 600000\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let args = ["--config", config.to_str().unwrap()];
    let warden = Warden::start_with(&data, &args);
    let server = warden.client();
    server
        .deploy(
            "toolbox",
            json!({
                "allowed_hosts": ["127.0.0.1"],
                "max_concurrency": RUNS,
                "limits": { "timeout_ms": 600_000 },
                "durable": false,
            }),
        )
        .await;
    let input = json!({ "tool": "http_fetch", "args": { "url": format!("http://127.0.0.1:{port}/slow") } });
    let mut ids = Vec::new();
    for _ in 0..RUNS {
        let (status, accepted) = server
            .post_json(
                "/v1/agents/toolbox/execute",
                &json!({ "input": input, "mode": "async" }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hits.load(Ordering::SeqCst) < RUNS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runs never reached the page"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    warden.sigkill();

    let warden = Warden::start_with(&data, &args);
    let http = reqwest::Client::new();
    for id in &ids {
        let e = wait_for(&http, &warden.base, id, |e| {
            e["status"] != "queued" && e["status"] != "running"
        })
        .await;
        assert_eq!(e["status"], "failed", "{e}");
        assert_eq!(e["error"]["code"], "host_restart", "{e}");
    }
    // Nothing was queued again: no run fetched the page a second time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), RUNS);
    drop(warden);
}
