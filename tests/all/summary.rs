//! An agent's activity summary (`GET /v1/agents/{id}/summary`), checked figure
//! by figure against the runs it counts.

use reqwest::StatusCode;
use serde_json::json;
use warden_tests::Server;

/// The agent's summary, figure by figure: counts by status, run durations'
/// p50 and p95, tokens and cost summed over its runs, its most frequent error
/// codes, its last run, and a period that starts later leaving older runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_summary_counts_what_its_runs_did() {
    let server = Server::start().await;
    server.deploy("sleepy", json!({ "max_concurrency": 8 })).await;
    server.deploy("crash", json!({})).await;
    server.deploy("chat", json!({})).await;
    for wait in [100, 100, 100, 100, 600] {
        server.run("sleepy", json!({ "ms": wait })).await;
    }
    let (_, summary) = server.get("/v1/agents/sleepy/summary").await;
    assert_eq!(summary["executions"], 5, "{summary}");
    assert_eq!(summary["by_status"]["completed"], 5, "{summary}");
    let p50 = summary["duration_ms"]["p50"].as_i64().unwrap();
    let p95 = summary["duration_ms"]["p95"].as_i64().unwrap();
    assert!((100..400).contains(&p50), "p50 {p50}: {summary}");
    assert!(p95 >= 600, "p95 {p95}: {summary}");
    assert!(summary["top_errors"].as_array().unwrap().is_empty());

    let crashed = server.run("crash", json!({})).await;
    server.run("crash", json!({})).await;
    let code = crashed["error"]["code"].as_str().unwrap();
    let (_, summary) = server.get("/v1/agents/crash/summary").await;
    assert_eq!(summary["by_status"]["failed"], 2, "{summary}");
    assert_eq!(
        summary["top_errors"],
        json!([{ "code": code, "count": 2 }]),
        "{summary}"
    );

    let mut tokens = 0;
    let mut cost = 0.0;
    let mut last = String::new();
    for message in ["hello", "again"] {
        let run = server.run("chat", json!({ "message": message })).await;
        tokens += run["token_usage"]["total"].as_u64().unwrap();
        cost += run["cost_usd"].as_f64().unwrap_or(0.0);
        last = run["id"].as_str().unwrap().to_owned();
    }
    assert!(tokens > 0);
    let (_, summary) = server.get("/v1/agents/chat/summary").await;
    assert_eq!(summary["token_usage"]["total"], tokens, "{summary}");
    assert!((summary["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9, "{summary}");
    assert_eq!(summary["last_run"]["id"], last.as_str(), "{summary}");
    // A period starting now holds none of them; the last run is still named.
    let now = warden_host::time::to_rfc3339(warden_host::time::now_ms() + 1000);
    let (status, later) = server.get(&format!("/v1/agents/chat/summary?since={now}")).await;
    assert_eq!(status, StatusCode::OK, "{later}");
    assert_eq!(later["executions"], 0, "{later}");
    assert_eq!(later["last_run"]["id"], last.as_str());
}
