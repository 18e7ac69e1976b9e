//! Hostile agents end with the right status and code, and the host keeps serving.

use std::time::Duration;

use serde_json::json;
use warden_tests::Server;

covers!(crash => crash_is_a_trap_with_the_panic_message, hog => hog_hits_the_memory_limit, sleepy => the_timeout_covers_time_parked_in_host_calls, spin => spin_runs_out_of_fuel);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_is_stopped_and_echo_keeps_being_served() {
    let server = Server::start().await;
    server.deploy("echo", json!({})).await;
    // Fuel large enough that the wall clock (1 s) stops it first.
    server
        .deploy(
            "spin",
            json!({ "limits": { "fuel": 1_000_000_000_000u64, "timeout_ms": 1000 } }),
        )
        .await;

    let (status, spinning) = server
        .post_json("/v1/agents/spin/execute", &json!({ "mode": "async" }))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    let spin_id = spinning["id"].as_str().unwrap().to_owned();

    // While it spins, echo answers, many times.
    for i in 0..20 {
        let record = server.run("echo", json!({ "i": i })).await;
        assert_eq!(record["status"], "completed");
    }
    let (_, now) = server.get(&format!("/v1/executions/{spin_id}")).await;
    assert_eq!(now["status"], "running", "echo finished while spin still ran: {now}");

    let done = server.wait_terminal(&spin_id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "timeout", "{done}");
    assert_eq!(done["error"]["source"], "host");
    let run_ms = done["timing"]["run_ms"].as_i64().unwrap();
    assert!((1000..3000).contains(&run_ms), "stopped after {run_ms} ms");
    // What it logged before it was stopped stays on the record.
    let (_, logs) = server.get(&format!("/v1/executions/{spin_id}/logs")).await;
    assert_eq!(logs["data"][0]["message"], "spinning forever");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_runs_out_of_fuel() {
    let server = Server::start().await;
    server
        .deploy("spin", json!({ "limits": { "fuel": 5_000_000, "timeout_ms": 60_000 } }))
        .await;
    let record = tokio::time::timeout(Duration::from_secs(30), server.run("spin", json!(null)))
        .await
        .expect("fuel stops it well before the timeout");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "fuel_exhausted", "{record}");
    assert_eq!(record["fuel_used"], 5_000_000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hog_hits_the_memory_limit() {
    let server = Server::start().await;
    server.deploy("hog", json!({ "limits": { "memory_mb": 24 } })).await;
    let record = server.run("hog", json!({})).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "memory_limit", "{record}");
    assert!(record["error"]["message"].as_str().unwrap().contains("24 MiB"));
    let peak = record["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak <= 24 << 20 && peak > 16 << 20, "peak {peak}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_is_a_trap_with_the_panic_message() {
    let server = Server::start().await;
    server.deploy("crash", json!({})).await;
    let record = server.run("crash", json!({})).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "trap", "{record}");
    let message = record["error"]["message"].as_str().unwrap();
    assert!(message.contains("crash agent panicked on purpose"), "{message}");
    // The panic went to stderr, which is in the run's log.
    let id = record["id"].as_str().unwrap();
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    let stderr: Vec<&str> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stream"] == "stderr")
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(stderr.iter().any(|l| l.contains("panicked on purpose")), "{logs}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_covers_time_parked_in_host_calls() {
    let server = Server::start().await;
    server
        .deploy("sleepy", json!({ "limits": { "timeout_ms": 300 } }))
        .await;
    // A short sleep finishes.
    let record = server.run("sleepy", json!({ "ms": 20 })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"]["slept_ms"], 20);
    // An hour-long sleep is cut at the deadline.
    let record = tokio::time::timeout(
        Duration::from_secs(20),
        server.run("sleepy", json!({ "ms": 3_600_000 })),
    )
    .await
    .expect("the deadline stops a parked guest");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "timeout", "{record}");
    let run_ms = record["timing"]["run_ms"].as_i64().unwrap();
    assert!((300..2000).contains(&run_ms), "stopped after {run_ms} ms");
    server.stop().await;
}
