//! Request ids and the access log, on a real `warden serve`: every answer
//! carries an `x-request-id` (the caller's, if short and plain; else a fresh
//! `req_…`); with `http.access_log = "all"` each request is one log line naming
//! it, its method, path (never the query), status and time; by default only
//! failed requests are, and those whose caller left before the answer (499);
//! `"off"` leaves them all out.

use std::time::Duration;

use serde_json::json;
use warden_tests::Warden;

async fn id_of(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// The log lines of served requests, once `want` of them are there.
async fn served(warden: &Warden, want: usize) -> Vec<String> {
    for _ in 0..100 {
        let lines: Vec<String> = warden
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("warden::http") && l.contains("served"))
            .collect();
        if lines.len() >= want {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {want} access log lines: {:#?}", warden.log_lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_ids_and_are_logged_once_each() {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all.toml");
    std::fs::write(&all, "[http]\naccess_log = \"all\"\n").unwrap();
    let warden = Warden::start_with(tmp.path(), &["--config", all.to_str().unwrap()]);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", warden.base);

    let fresh = http.get(url("/admin/health")).send().await.unwrap();
    let fresh_id = id_of(&fresh).await;
    assert!(fresh_id.starts_with("req_") && fresh_id.len() == 20, "{fresh_id}");
    let other = http.get(url("/admin/health")).send().await.unwrap();
    assert_ne!(id_of(&other).await, fresh_id, "each request has its own id");

    let mine = http
        .get(url("/admin/health"))
        .header("x-request-id", "trace-42:a_b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&mine).await, "trace-42:a_b.c");
    for bad in ["has space", "<b>", &"x".repeat(129)] {
        let response = http
            .get(url("/admin/health"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        assert!(id_of(&response).await.starts_with("req_"), "{bad} was kept");
    }
    // Errors carry one too, and a stream token in a query is never logged.
    let refused = http
        .get(url("/v1/executions/exec_nope/stream?access_token=wst_secret.part"))
        .header("x-request-id", "refused-1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(id_of(&refused).await, "refused-1");
    let executed = http
        .post(url("/v1/agents/echo/execute"))
        .header("x-request-id", "run-1")
        .json(&json!({"input": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(executed.status(), 200);

    let lines = served(&warden, 8).await;
    let line = |id: &str| {
        let found: Vec<&String> = lines.iter().filter(|l| l.contains(&format!("id={id}"))).collect();
        assert_eq!(found.len(), 1, "one line for {id}: {lines:#?}");
        found[0].clone()
    };
    let health = line("trace-42:a_b.c");
    assert!(
        health.contains("method=GET") && health.contains("path=/admin/health") && health.contains("status=200"),
        "{health}"
    );
    assert!(health.contains(" ms="), "{health}");
    let refused = line("refused-1");
    assert!(
        refused.contains("status=401") && refused.contains("path=/v1/executions/exec_nope/stream"),
        "{refused}"
    );
    let run = line("run-1");
    assert!(run.contains("method=POST") && run.contains("status=200"), "{run}");
    let all = warden.log_lines().join("\n");
    assert!(!all.contains("wst_secret"), "a query string was logged");
    warden.sigkill();

    // By default only what failed has a line.
    let warden = Warden::start(tmp.path());
    let base = warden.base.clone();
    for (path, id) in [("/admin/health", "fine-1"), ("/v1/nope", "missing-1")] {
        let response = http
            .get(format!("{base}{path}"))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(id_of(&response).await, id);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = served(&warden, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("id=missing-1") && lines[0].contains("status=404"),
        "{lines:#?}"
    );
    // A caller that leaves before its answer gets a line too (499, as nginx says).
    warden.client().deploy("sleepy", json!({})).await;
    let gave_up = http
        .post(format!("{base}/v1/agents/sleepy/execute"))
        .header("x-request-id", "impatient-1")
        .json(&json!({"input": {"ms": 5000}}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err(), "the caller gave up first");
    let mut left = Vec::new();
    for _ in 0..100 {
        left = warden
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("client left") && l.contains("id=impatient-1"))
            .collect();
        if !left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        left.len() == 1 && left[0].contains("status=499") && left[0].contains("path=/v1/agents/sleepy/execute"),
        "{left:#?}"
    );
    warden.sigkill();

    // Off: no access lines, ids still answered.
    let config = tmp.path().join("quiet.toml");
    std::fs::write(&config, "[http]\naccess_log = \"off\"\n").unwrap();
    let warden = Warden::start_with(tmp.path(), &["--config", config.to_str().unwrap()]);
    let response = http.get(format!("{}/v1/nope", warden.base)).send().await.unwrap();
    assert!(id_of(&response).await.starts_with("req_"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = warden.log_lines();
    assert!(!lines.iter().any(|l| l.contains("warden::http")), "{lines:#?}");
    warden.sigkill();
}
