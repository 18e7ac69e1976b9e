//! SIGTERM, as process managers send it, with the real binary: the host stops
//! accepting executions (503 with Retry-After), lets running ones finish within
//! `shutdown_grace_ms`, ends every stream with a final notice, commits
//! everything and exits 0. What still runs at the end of the grace ends as on a
//! crash; what waits stays queued for the next start.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Warden, error_code, read_sse};

async fn status_of(server: &warden_tests::Server, id: &str) -> Value {
    server.get(&format!("/v1/executions/{id}")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("warden.toml");
    std::fs::write(&config, "deploy_examples = false\nshutdown_grace_ms = 1500\n").unwrap();
    let data = tmp.path().join("data");
    let args = ["--config", config.to_str().unwrap()];
    let mut warden = Warden::start_with(&data, &args);
    let server = warden.client();
    server
        .deploy(
            "sleepy",
            json!({ "max_concurrency": 2, "limits": { "timeout_ms": 600_000 }, "durable": false }),
        )
        .await;
    server.deploy("echo", json!({})).await;
    let submit = |ms: u64| {
        let server = warden.client();
        async move {
            let (status, body) = server
                .post_json(
                    "/v1/agents/sleepy/execute",
                    &json!({ "input": { "ms": ms }, "mode": "async" }),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    // One run outlasts the grace; one is stuck in the queue behind the slots.
    let long = submit(600_000).await;
    let stream = tokio::spawn({
        let server = warden.client();
        let url = server.url(&format!("/v1/executions/{long}/stream"));
        async move { read_sse(server.http.get(url).send().await.unwrap()).await }
    });
    // One finishes within the grace, for a caller waiting on it.
    let short = tokio::spawn({
        let server = warden.client();
        async move {
            server
                .post_json("/v1/agents/sleepy/execute", &json!({ "input": { "ms": 800 } }))
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/admin/health").await.1["executions"]["running"] != 2 {
        assert!(Instant::now() < deadline, "the runs never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let queued = submit(1).await;

    // A client that connected and sent nothing yet is not waited for.
    let silent = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    let signalled = Instant::now();
    warden.sigterm();
    // New executions are refused while it drains.
    let refused = loop {
        let (status, body) = server
            .post_json("/v1/agents/echo/execute", &json!({ "input": {} }))
            .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break body;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "still accepting: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(error_code(&refused), "shutting_down");
    let resp = server
        .http
        .post(server.url("/v1/agents/echo/execute"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "5");

    // The caller waiting on the short run gets its end.
    let (status, record) = short.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["status"], "completed");
    // The long run's stream ends with the shutdown notice, after the grace and
    // not much later.
    let events = stream.await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event, "shutdown", "{events:?}");
    let waited = signalled.elapsed();
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    let status = warden.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    drop(silent);
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "{:?}",
        signalled.elapsed()
    );

    let warden = Warden::start_with(&data, &args);
    let server = warden.client();
    let short_id = record["id"].as_str().unwrap();
    assert_eq!(status_of(&server, short_id).await["status"], "completed");
    let long_record = status_of(&server, &long).await;
    assert_eq!(long_record["error"]["code"], "host_restart", "{long_record}");
    // The queued one waited for this start, and runs now.
    let done = server.wait_terminal(&queued).await;
    assert_eq!(done["status"], "completed", "{done}");
    drop(warden);
}
