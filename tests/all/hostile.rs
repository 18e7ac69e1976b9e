//! Hostile guests beyond spin, hog and crash: no ambient environment, files or
//! network, and a stack overflow is a trap; the host keeps serving.

use serde_json::json;
use warden_tests::Server;

covers!(deep => a_stack_overflow_is_a_trap_and_the_host_keeps_serving, rogue => floods_of_logs_steps_artifacts_and_tool_calls_hit_their_caps, snoop => a_guest_sees_no_environment_files_or_network);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sees_no_environment_files_or_network() {
    let server = Server::start().await;
    server.deploy("snoop", json!({})).await;
    let record = server.run("snoop", json!({})).await;
    assert_eq!(record["status"], "completed", "{record}");
    let seen = &record["output"];
    assert_eq!(seen["env"], json!([]), "the host's environment leaked: {seen}");
    assert_eq!(seen["args"], json!([]));
    assert_eq!(seen["opened"], json!([]), "files were reachable: {seen}");
    assert_eq!(seen["created"], false);
    assert_eq!(seen["socket"], false, "a socket was opened: {seen}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_overflow_is_a_trap_and_the_host_keeps_serving() {
    let server = Server::start().await;
    server.deploy("deep", json!({})).await;
    server.deploy("echo", json!({})).await;
    let record = server.run("deep", json!({})).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "trap", "{record}");
    assert!(
        record["error"]["message"].as_str().unwrap().contains("stack"),
        "{record}"
    );
    let echo = server.run("echo", json!({ "name": "after" })).await;
    assert_eq!(echo["output"]["greeting"], "Hello, after!");
    server.stop().await;
}

/// Runs `rogue` with one attack; returns the final record.
async fn rogue(server: &Server, attack: &str) -> serde_json::Value {
    server.run("rogue", json!(attack)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_logs_steps_artifacts_and_tool_calls_hit_their_caps() {
    let server = Server::start().await;
    server.deploy("rogue", json!({})).await;
    let caps = warden_host::config::Config::default();

    let logs = rogue(&server, "logs 200000").await;
    assert_eq!(logs["status"], "completed", "{logs}");
    assert_eq!(logs["logs_truncated"], true);
    assert!(
        logs["n_logs"].as_u64().unwrap() <= caps.capture.max_log_lines as u64 + 1,
        "{logs}"
    );

    let steps = rogue(&server, "steps 20000").await;
    assert_eq!(steps["status"], "completed", "{steps}");
    assert_eq!(steps["n_steps"], caps.capture.max_steps as u64);

    let artifacts = rogue(&server, "artifacts 500").await;
    assert_eq!(artifacts["status"], "completed", "{artifacts}");
    assert_eq!(artifacts["output"]["accepted"], caps.capture.max_artifacts as u64);
    assert_eq!(artifacts["n_artifacts"], caps.capture.max_artifacts as u64);

    let storm = rogue(&server, "tools 5000").await;
    assert_eq!(storm["status"], "completed", "{storm}");
    assert_eq!(storm["output"]["accepted"], caps.tools.max_tool_calls as u64);
    assert_eq!(storm["n_tool_calls"], caps.tools.max_tool_calls as u64);

    // Every record is whole and readable afterwards.
    let id = logs["id"].as_str().unwrap();
    let (status, page) = server.get(&format!("/v1/executions/{id}/logs?limit=10")).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigantic_or_invalid_output_and_stdin_are_handled() {
    let server = Server::start().await;
    server.deploy("rogue", json!({})).await;

    let huge = rogue(&server, "output 6").await;
    assert_eq!(huge["status"], "failed", "{huge}");
    assert_eq!(huge["error"]["code"], "invalid_output");
    assert!(huge["error"]["message"].as_str().unwrap().contains("over the limit"));
    assert_eq!(huge["output"], serde_json::Value::Null);

    let bad = rogue(&server, "utf8").await;
    assert_eq!(bad["status"], "failed", "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_output", "{bad}");
    assert_eq!(bad["error"]["source"], "host");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("utf-8"),
        "{bad}"
    );

    // No stdin is wired in: reading it ends at once with nothing.
    let stdin = rogue(&server, "stdin").await;
    assert_eq!(stdin["status"], "completed", "{stdin}");
    assert_eq!(stdin["output"]["accepted"], 0);
    server.stop().await;
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_crowd_does_not_stop_benign_work() {
    let server = Server::start().await;
    // One slot per hostile agent: however many runs they queue, they hold at
    // most 8 of the host's 16 slots, and echo keeps its own.
    for name in ["spin", "hog", "deep", "crash", "chatty", "rogue", "liar", "sleepy"] {
        server
            .deploy(name, json!({"max_concurrency": 1, "limits": {"timeout_ms": 3000}}))
            .await;
    }
    server.deploy("echo", json!({})).await;
    let before = rss_mib();
    // Three waves of every hostile kind at once, all async.
    let hostile: Vec<(&str, serde_json::Value, &[&str])> = vec![
        ("spin", json!({}), &["timeout", "fuel_exhausted"]),
        ("hog", json!({}), &["memory_limit"]),
        ("deep", json!({}), &["trap"]),
        ("crash", json!({}), &["trap"]),
        ("liar", json!({}), &["invalid_output"]),
        ("rogue", json!("output 6"), &["invalid_output"]),
        ("rogue", json!("logs 50000"), &[]),
        ("chatty", json!({"lines": 20000}), &[]),
        ("sleepy", json!({"ms": 3_600_000}), &["timeout"]),
    ];
    let mut launched = Vec::new();
    for _ in 0..3 {
        for (agent, input, expect) in &hostile {
            let (status, body) = server
                .post_json(
                    &format!("/v1/agents/{agent}/execute"),
                    &json!({"input": input, "mode": "async"}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            launched.push((body["id"].as_str().unwrap().to_owned(), *agent, *expect));
        }
    }
    // Meanwhile (2 s, while the first wave spins, sleeps and floods) a benign
    // agent keeps answering, correctly.
    let mut latencies = Vec::new();
    for i in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        let record = server.run("echo", json!({"name": format!("n{i}")})).await;
        latencies.push(started.elapsed());
        assert_eq!(record["status"], "completed", "{record}");
        assert_eq!(record["output"]["greeting"], format!("Hello, n{i}!"));
    }
    latencies.sort();
    println!(
        "echo among hostile runs: p50 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    for (id, agent, expect) in launched {
        let record = server.wait_terminal(&id).await;
        if expect.is_empty() {
            assert_eq!(record["status"], "completed", "{agent}: {record}");
        } else {
            assert_eq!(record["status"], "failed", "{agent}: {record}");
            let code = record["error"]["code"].as_str().unwrap();
            assert!(expect.contains(&code), "{agent}: {record}");
        }
    }
    let after = rss_mib();
    println!("resident memory: {before} MiB before, {after} MiB after");
    assert!(
        after < before + 1024,
        "resident memory grew from {before} to {after} MiB"
    );
    // The host still serves.
    let (status, health) = server.get("/admin/health").await;
    assert_eq!(status, 200, "{health}");
    server.stop().await;
}
