//! The run log: guest stdout, stderr and `log` calls become ordered log lines,
//! capped per run with a marker saying what was dropped.

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, test_config};

async fn logs(server: &Server, id: &str) -> Vec<Value> {
    let (_, page) = server.get(&format!("/v1/executions/{id}/logs?limit=10000")).await;
    page["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_stderr_and_log_lines_are_captured_in_order() {
    let server = Server::start().await;
    server.deploy("chatty", json!({})).await;
    let record = server.run("chatty", json!({ "lines": 3 })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["logs_truncated"], false);
    let lines = logs(&server, record["id"].as_str().unwrap()).await;
    let shown: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_owned(),
                l["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for i in 0..3 {
        expected.push(("stdout".to_owned(), format!("stdout line {i}")));
        expected.push(("stderr".to_owned(), format!("stderr line {i}")));
        expected.push(("log".to_owned(), format!("log line {i}")));
    }
    expected.push(("stdout".to_owned(), "no newline at the end".to_owned()));
    assert_eq!(shown, expected);
    assert_eq!(record["n_logs"], 10);
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    assert_eq!(lines[1]["level"], "error");
    assert_eq!(lines[2]["level"], "debug");

    // Paging through the log.
    let id = record["id"].as_str().unwrap();
    let (_, page) = server.get(&format!("/v1/executions/{id}/logs?limit=4")).await;
    assert_eq!(page["has_more"], true);
    assert_eq!(page["next_cursor"], 4);
    let (_, rest) = server.get(&format!("/v1/executions/{id}/logs?after=4&limit=100")).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 6);
    assert_eq!(rest["has_more"], false);
    // The cursor is a non-negative int64 (as documented): past every line is an
    // empty page; a negative or larger one is a typed 400.
    let (status, past) = server.get(&format!("/v1/executions/{id}/logs?after=2147483648")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(past["data"], json!([]));
    for bad in ["-1", "9223372036854775808"] {
        let (status, body) = server.get(&format!("/v1/executions/{id}/logs?after={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "after={bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_capped_with_a_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.capture.max_log_bytes = 4096;
    config.capture.max_log_lines = 100;
    let server = Server::start_with(config).await;
    server.deploy("chatty", json!({})).await;
    // 3 x 5000 lines: far past both caps; the guest never notices.
    let record = server.run("chatty", json!({ "lines": 5000 })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"]["written"], 5000);
    assert_eq!(record["logs_truncated"], true);
    let lines = logs(&server, record["id"].as_str().unwrap()).await;
    assert!(lines.len() <= 101, "{} lines kept", lines.len());
    let bytes: usize = lines[..lines.len() - 1]
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(bytes <= 4096, "{bytes} bytes kept");
    let marker = lines.last().unwrap();
    assert_eq!(marker["stream"], "host");
    assert!(marker["message"].as_str().unwrap().contains("dropped"), "{marker}");
    server.stop().await;
}
