//! `GET /v1/executions`: each filter, cursor paging, paging while new executions
//! arrive.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, error_code};

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_paging() {
    let server = Server::start().await;
    let echo = server.deploy("echo", json!({})).await;
    let echo_id = echo["agent"]["id"].as_str().unwrap().to_owned();
    server.deploy("hello", json!({})).await;

    let mut echo_runs = Vec::new();
    for i in 0..7 {
        echo_runs.push(
            server.run("echo", json!({ "i": i })).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mid = server.run("hello", json!({ "name": "ok" })).await;
    let failed = server.run("hello", json!({ "wrong": true })).await;
    assert_eq!(failed["status"], "failed");

    // Newest first, everything.
    let (status, all) = server.get("/v1/executions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["data"].as_array().unwrap().len(), 9);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["data"][0]["id"], failed["id"]);

    // By agent id, and by agent name.
    let (_, by_agent) = server.get(&format!("/v1/executions?agent_id={echo_id}")).await;
    let mut expected = echo_runs.clone();
    expected.reverse();
    assert_eq!(ids(&by_agent), expected);
    let (_, by_name) = server.get("/v1/executions?agent_id=hello").await;
    assert_eq!(by_name["data"].as_array().unwrap().len(), 2);

    // By status and trigger.
    let (_, by_status) = server.get("/v1/executions?status=failed").await;
    assert_eq!(ids(&by_status), vec![failed["id"].as_str().unwrap().to_owned()]);
    let (_, by_trigger) = server.get("/v1/executions?trigger=api").await;
    assert_eq!(by_trigger["data"].as_array().unwrap().len(), 9);
    let (_, none) = server.get("/v1/executions?trigger=schedule").await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);

    // By creation time (RFC 3339 as the records show it).
    let mid_created = mid["created_at"].as_str().unwrap();
    let (_, before) = server
        .get(&format!("/v1/executions?created_before={mid_created}"))
        .await;
    let (_, after) = server.get(&format!("/v1/executions?created_after={mid_created}")).await;
    for e in before["data"].as_array().unwrap() {
        assert!(e["created_at"].as_str().unwrap() < mid_created);
    }
    for e in after["data"].as_array().unwrap() {
        assert!(e["created_at"].as_str().unwrap() > mid_created);
    }

    // Cursor paging: pages of 4 cover all 9 once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/executions?limit=4&after={c}"),
            None => "/v1/executions?limit=4".to_owned(),
        };
        let (_, page) = server.get(&path).await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_more"], true);
                cursor = Some(c.to_owned());
            }
            None => break,
        }
        // New executions arriving mid-paging do not disturb the next pages.
        server.run("echo", json!({ "late": true })).await;
    }
    assert_eq!(seen, ids(&all));

    // Bad filters are typed errors.
    let (status, body) = server.get("/v1/executions?status=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_query");
    let (status, body) = server.get("/v1/executions?created_after=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_query");
    let (status, body) = server.get("/v1/executions?limit=ten").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_query");

    // Agents are listed too.
    let (_, agents) = server.get("/v1/agents").await;
    let names: HashSet<&str> = agents["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, HashSet::from(["echo", "hello"]));
    server.stop().await;
}
