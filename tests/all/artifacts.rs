//! Artifacts (stored, listed, served with their media type, counted, capped, names
//! checked), the record's URLs, and the retention sweep.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, error_code, test_config};

covers!(web_snapshot => web_snapshot_takes_a_real_screenshot);

fn with_artifacts(list: Value) -> Value {
    json!({ "artifacts": list })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_stored_served_and_counted() {
    let server = Server::start().await;
    server.deploy("toolbox", json!({})).await;
    let png = "\u{89}PNG fake image";
    let record = server
        .run(
            "toolbox",
            with_artifacts(json!([
                { "name": "shot.png", "media_type": "image/png", "text": png },
                { "name": "report.txt", "media_type": "text/plain; charset=utf-8", "text": "line\n", "repeat": 3 },
            ])),
        )
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["n_artifacts"], 2);
    assert_eq!(record["n_screenshots"], 1);
    let id = record["id"].as_str().unwrap();
    assert_eq!(record["artifacts_url"], format!("/v1/executions/{id}/artifacts"));
    assert_eq!(record["logs_url"], format!("/v1/executions/{id}/logs"));
    assert_eq!(record["output_url"], format!("/v1/executions/{id}"));

    let (_, list) = server.get(&format!("/v1/executions/{id}/artifacts")).await;
    let list = list["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["name"], "report.txt");
    assert_eq!(list[1]["size"], 15);
    let report_id = list[1]["id"].as_str().unwrap();
    let resp = server
        .http
        .get(server.url(&format!("/v1/executions/{id}/artifacts/{report_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    // What an agent wrote runs nothing on the host's origin, opened directly.
    let policy = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("sandbox; default-src 'none'"), "{policy}");
    assert_eq!(resp.text().await.unwrap(), "line\nline\nline\n");
    let shot_id = list[0]["id"].as_str().unwrap();
    let resp = server
        .http
        .get(server.url(&format!("/v1/executions/{id}/artifacts/{shot_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), png.as_bytes());
    let (status, _) = server.get(&format!("/v1/executions/{id}/artifacts/art_nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Each artifact was announced as an event.
    let events = server.stream(id, None).await;
    let announced: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "artifact")
        .map(|e| &e.data["data"])
        .collect();
    assert_eq!(announced.len(), 2);
    assert_eq!(announced[0]["media_type"], "image/png");

    // Only bytes that match their SHA-256 are served: a damaged blob is refused,
    // a deleted one is gone, each with a typed error.
    let blob = |a: &Value| server.data_dir.join("blobs/sha256").join(a["sha256"].as_str().unwrap());
    std::fs::write(blob(&list[1]), "line\nLINE\nline\n").unwrap();
    let (status, body) = server.get(&format!("/v1/executions/{id}/artifacts/{report_id}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(error_code(&body), "artifact_damaged");
    std::fs::remove_file(blob(&list[0])).unwrap();
    let (status, body) = server.get(&format!("/v1/executions/{id}/artifacts/{shot_id}")).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(error_code(&body), "artifact_missing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_names_and_caps_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.capture.max_artifacts = 2;
    config.capture.max_artifact_bytes = 1000;
    let server = Server::start_with(config).await;
    server.deploy("toolbox", json!({})).await;
    for bad in ["../escape.txt", "dir/file.txt", ".hidden", ""] {
        let record = server
            .run(
                "toolbox",
                with_artifacts(json!([{ "name": bad, "media_type": "text/plain", "text": "x" }])),
            )
            .await;
        assert_eq!(record["status"], "failed", "{bad}: {record}");
        assert_eq!(record["error"]["code"], "artifact_error");
    }
    let record = server
        .run(
            "toolbox",
            with_artifacts(json!([{ "name": "a.txt", "media_type": "plain", "text": "x" }])),
        )
        .await;
    assert_eq!(record["error"]["code"], "artifact_error", "{record}");
    // Count cap.
    let three = json!([
        { "name": "1.txt", "media_type": "text/plain", "text": "x" },
        { "name": "2.txt", "media_type": "text/plain", "text": "x" },
        { "name": "3.txt", "media_type": "text/plain", "text": "x" },
    ]);
    let record = server.run("toolbox", with_artifacts(three)).await;
    assert_eq!(record["error"]["code"], "artifact_error");
    assert!(record["error"]["message"].as_str().unwrap().contains("cap"), "{record}");
    assert_eq!(record["n_artifacts"], 2, "what was stored before the cap stays");
    // Byte cap.
    let record = server
        .run(
            "toolbox",
            with_artifacts(json!([{ "name": "big.txt", "media_type": "text/plain", "text": "x", "repeat": 1001 }])),
        )
        .await;
    assert_eq!(record["error"]["code"], "artifact_error");
    assert_eq!(record["n_artifacts"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_sweep_removes_old_executions_and_their_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.retention_secs = 1;
    config.retention_sweep_ms = 200;
    let server = Server::start_with(config).await;
    server.deploy("toolbox", json!({})).await;
    let record = server
        .run(
            "toolbox",
            with_artifacts(json!([{ "name": "gone.txt", "media_type": "text/plain", "text": "soon gone" }])),
        )
        .await;
    let id = record["id"].as_str().unwrap().to_owned();
    let (_, list) = server.get(&format!("/v1/executions/{id}/artifacts")).await;
    let sha = list["data"][0]["sha256"].as_str().unwrap().to_owned();
    let blob = tmp.path().join("blobs").join("sha256").join(&sha);
    assert!(blob.exists());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = server.get(&format!("/v1/executions/{id}")).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = server.get(&format!("/v1/executions/{id}/logs")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!blob.exists(), "the unreferenced blob was not deleted");
    // The agent's own component blob stays: it still runs.
    let again = server.run("toolbox", json!({})).await;
    assert_eq!(again["status"], "completed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_snapshot_takes_a_real_screenshot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // While the browser loads the page, note which users its processes run as.
    let browser_uids = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&browser_uids);
    let page = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            seen.lock().unwrap().extend(browser_process_uids());
            async {
                axum::response::Html(
                    "<html><head><title>Hello Warden</title></head>\
                     <body style='background:#2a6'><h1>Snapshot me</h1></body></html>",
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, page).await;
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.tools.allow_private_addresses = true;
    let server = Server::start_with(config).await;
    server
        .deploy("web-snapshot", json!({ "allowed_hosts": ["127.0.0.1"] }))
        .await;
    let url = format!("http://127.0.0.1:{port}/");
    let record = server.run("web-snapshot", json!({ "urls": [url] })).await;
    assert_eq!(record["status"], "completed", "{record}");
    let snap = &record["output"]["snapshots"][0];
    assert_eq!(snap["title"], "Hello Warden");
    assert_eq!(record["n_screenshots"], 1);
    assert_eq!(record["n_agent_actions"], 1);
    let id = record["id"].as_str().unwrap();
    let aid = snap["artifact_id"].as_str().unwrap();
    let resp = server
        .http
        .get(server.url(&format!("/v1/executions/{id}/artifacts/{aid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/png");
    let png = resp.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert!(png.len() > 1000, "{} bytes", png.len());
    // Never as root: a root host starts it as `nobody`, with its sandbox.
    let uids = browser_uids.lock().unwrap().clone();
    assert!(!uids.is_empty(), "the browser's processes were seen");
    assert!(uids.iter().all(|uid| *uid != 0), "the browser ran as root: {uids:?}");

    // Off the allowlist: refused before any browser starts.
    let record = server
        .run("web-snapshot", json!({ "urls": ["http://10.1.2.3/"] }))
        .await;
    assert_eq!(record["error"]["code"], "tool_error");
    assert!(record["error"]["message"].as_str().unwrap().contains("allowed_hosts"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_browser_is_a_clear_tool_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.tools.allow_private_addresses = true;
    config.tools.browser_path = Some("/nonexistent/chromium".into());
    let server = Server::start_with(config).await;
    server
        .deploy("web-snapshot", json!({ "allowed_hosts": ["127.0.0.1"] }))
        .await;
    let record = tokio::time::timeout(
        Duration::from_secs(30),
        server.run("web-snapshot", json!({ "urls": ["http://127.0.0.1:9/"] })),
    )
    .await
    .expect("no hang");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "tool_error");
    assert!(
        record["error"]["message"].as_str().unwrap().contains("no browser"),
        "{record}"
    );
    server.stop().await;
}

/// The real user ids of the running Chromium processes.
fn browser_process_uids() -> Vec<u32> {
    let mut uids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !matches!(comm.trim(), "chromium" | "chrome") {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(uid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
        {
            uids.push(uid);
        }
    }
    uids
}
