//! Durable runs over real `warden serve` processes killed with SIGKILL: a run
//! parked in a slow model call resumes by replaying its journal (the provider
//! never sees a journaled call again, the clocks and randomness read the same,
//! the stream shows nothing twice); a write whose start was journaled is never
//! made again; a run waiting for an approval survives the kill and completes
//! when approved afterwards.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::providers::{ANSWER, FakeProvider, Mode, Protocol};
use warden_tests::{Server, Warden, error_code};

covers!(ledger => a_run_killed_in_a_slow_model_call_resumes_by_replay_and_completes_once);

/// A data dir and a config file for `warden serve` (with `extra` TOML),
/// started again after each kill.
struct Host {
    _tmp: tempfile::TempDir,
    data: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Host {
    fn new(extra: &str) -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("warden.toml");
        let text = format!(
            "deploy_examples = false\n[durability]\napproval_grace_ms = 200\n[tools]\nallow_private_addresses = true\n\
             http_timeout_ms = 600000\n{extra}"
        );
        std::fs::write(&config, text).unwrap();
        Host {
            data: tmp.path().join("data"),
            config,
            _tmp: tmp,
        }
    }

    fn start(&self) -> Warden {
        Warden::start_with(&self.data, &["--config", self.config.to_str().unwrap()])
    }
}

/// Whether an execution has ended.
pub fn ended(e: &Value) -> bool {
    !matches!(
        e["status"].as_str(),
        Some("queued" | "running" | "awaiting_approval" | "cancel_requested")
    )
}

/// Polls an execution until `done` says so (30 s at most).
pub async fn poll(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get(&format!("/v1/executions/{id}")).await;
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "execution {id} never got there: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn start_async(server: &Server, agent: &str, input: Value) -> String {
    let (status, accepted) = server
        .post_json(
            &format!("/v1/agents/{agent}/execute"),
            &json!({ "input": input, "mode": "async" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    accepted["id"].as_str().unwrap().to_owned()
}

/// Approves the pending request of execution `id` on `server`.
pub async fn approve_pending(server: &Server, id: &str) {
    let (_, page) = server
        .get(&format!("/v1/approvals?status=pending&execution_id={id}"))
        .await;
    let approval = page["data"][0]["id"].as_str().expect("a pending request").to_owned();
    let (status, decided) = server
        .post_json(&format!("/v1/approvals/{approval}/approve"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
}

/// Every stored event of an execution, in order.
async fn events(server: &Server, id: &str) -> Vec<Value> {
    let (status, body) = server.get(&format!("/v1/executions/{id}/events?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// Event numbers run 1, 2, 3, … and no log line or step shows twice.
fn assert_no_duplicates(events: &[Value]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"],
            i as u64 + 1,
            "events are numbered without gaps or repeats: {events:#?}"
        );
    }
    let mut seen = HashSet::new();
    for e in events.iter().filter(|e| e["type"] == "log" || e["type"] == "step") {
        let key = (e["type"].to_string(), e["data"]["seq"].to_string());
        assert!(
            seen.insert(key),
            "{} {} shows twice: {events:#?}",
            e["type"],
            e["data"]["seq"]
        );
    }
}

/// The `start wall=… random=…` line the run logged in its first life.
fn start_line(events: &[Value]) -> (u64, u64) {
    let lines: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "log")
        .filter_map(|e| e["data"]["message"].as_str())
        .filter(|m| m.starts_with("start "))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let field = |name: &str| -> u64 {
        lines[0]
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("wall"), field("random"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_in_a_slow_model_call_resumes_by_replay_and_completes_once() {
    // The second model request hangs: the host is killed while it waits.
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::SlowAt(2, Duration::from_secs(600))).await;
    let provider = format!(
        "[[llm.providers]]\nname = \"fake\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"CARGO_PKG_NAME\"\n\
         models = [\"gpt-test\"]\n",
        fake.url()
    );
    let host = Host::new(&provider);
    let warden = host.start();
    let server = warden.client();
    server.deploy("ledger", json!({ "models": ["gpt-test"] })).await;
    let input = json!({ "calls": 3, "model": "gpt-test" });
    let id = start_async(&server, "ledger", input.clone()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fake.requests.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never reached its second model call"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Its first call's answer is journaled (committed in order before the
    // second call's events); give the writer its moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = events(&server, &id).await;
    warden.sigkill();

    let warden = host.start();
    let server = warden.client();
    let done = poll(&server, &id, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    let output = &done["output"];
    assert_eq!(output["answers"], json!([ANSWER, ANSWER, ANSWER]), "{done}");
    // Requests: 1 (journaled, never again), 2 (cut short), 2 again, 3.
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        4,
        "the journaled call was not repeated"
    );
    assert_eq!(done["token_usage"]["total"], 3 * 150, "{done}");
    assert_eq!(done["n_steps"], 6, "three llm steps and three of its own: {done}");
    // The clocks and randomness read on replay what they read the first time.
    let after = events(&server, &id).await;
    let (wall, random) = start_line(&before);
    assert_eq!(start_line(&after), (wall, random));
    assert_eq!(output["wall"], wall);
    assert_eq!(output["random"], random);
    assert_eq!(output["later"], true);
    assert_no_duplicates(&after);
    // The events of the first life are kept as they were, and continued.
    assert_eq!(after[..before.len()], before[..]);
    let statuses: Vec<&str> = after
        .iter()
        .filter(|e| e["type"] == "status")
        .filter_map(|e| e["data"]["status"].as_str())
        .collect();
    assert_eq!(statuses, ["queued", "running", "completed"], "{after:#?}");
    let logs = server.get(&format!("/v1/executions/{id}/logs")).await.1;
    let messages: Vec<&str> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(messages.len(), 4, "{messages:?}");

    // An undisturbed run of the same input gives the same answers.
    let calm = server
        .post_json("/v1/agents/ledger/execute", &json!({ "input": input }))
        .await
        .1;
    assert_eq!(calm["status"], "completed", "{calm}");
    assert_eq!(calm["output"]["answers"], output["answers"]);
    assert_eq!(calm["n_steps"], done["n_steps"]);
    drop(warden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_start_was_journaled_is_never_made_again() {
    // A loopback endpoint that takes POSTs and never answers them.
    let hits = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&hits);
    let hold = axum::Router::new().route(
        "/hold",
        axum::routing::post(move || {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(600)).await;
                "late"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, hold).await;
    });
    let host = Host::new("");
    let warden = host.start();
    let server = warden.client();
    server.deploy("ledger", json!({ "allowed_hosts": ["127.0.0.1"] })).await;
    let id = start_async(
        &server,
        "ledger",
        json!({ "calls": 2, "post_url": format!("http://127.0.0.1:{port}/hold") }),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hits.load(Ordering::SeqCst) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the run never posted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    warden.sigkill();

    let warden = host.start();
    let server = warden.client();
    let done = poll(&server, &id, ended).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "unfinished_write", "{done}");
    assert!(
        done["error"]["message"].as_str().unwrap().contains("http_fetch"),
        "{done}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the POST was made once only");
    assert_no_duplicates(&events(&server, &id).await);
    drop(warden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_awaiting_approval_survives_a_kill_and_completes_when_approved_after() {
    let host = Host::new("");
    let warden = host.start();
    let server = warden.client();
    server.deploy("ledger", json!({})).await;
    let id = start_async(&server, "ledger", json!({ "calls": 2, "approve": "Ship it?" })).await;
    let waiting = poll(&server, &id, |e| e["status"] == "awaiting_approval").await;
    assert!(waiting["output"].is_null());
    // Past its grace it is unloaded: nothing runs, nothing waits in the queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = server.get("/admin/health").await.1;
        if health["executions"]["running"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiting run was never unloaded: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    warden.sigkill();

    let warden = host.start();
    let server = warden.client();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = server.get(&format!("/v1/executions/{id}")).await.1;
    assert_eq!(
        still["status"], "awaiting_approval",
        "a restart does not end a waiting run: {still}"
    );
    let (status, page) = server.get("/v1/approvals?status=pending").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let requests = page["data"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{page}");
    assert_eq!(requests[0]["execution_id"], id.as_str());
    assert_eq!(requests[0]["title"], "Ship it?");
    assert_eq!(requests[0]["detail"], json!({ "answers": 2 }));
    let approval = requests[0]["id"].as_str().unwrap();
    let (status, decided) = server
        .post_json(
            &format!("/v1/approvals/{approval}/approve"),
            &json!({ "comment": "go", "data": { "carrier": "DHL" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["comment"], "go");
    assert!(decided["decided_at"].is_string(), "{decided}");
    let done = poll(&server, &id, |e| {
        e["status"] != "awaiting_approval" && e["status"] != "running"
    })
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["decision"], json!({ "carrier": "DHL" }), "{done}");
    // The same decision again is fine; another is refused.
    let (status, _) = server
        .post_json(&format!("/v1/approvals/{approval}/approve"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .post_json(
            &format!("/v1/approvals/{approval}/reject"),
            &json!({ "reason": "late" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "already_decided");
    let events = events(&server, &id).await;
    assert_no_duplicates(&events);
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "status")
        .filter_map(|e| e["data"]["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        ["queued", "running", "awaiting_approval", "running", "completed"],
        "{events:#?}"
    );
    let approvals: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "approval")
        .filter_map(|e| e["data"]["status"].as_str())
        .collect();
    assert_eq!(approvals, ["pending", "approved"]);
    drop(warden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_call_cut_short_by_a_kill_finds_its_child_again() {
    let host = Host::new("");
    let warden = host.start();
    let server = warden.client();
    server.deploy("toolbox", json!({})).await;
    server
        .deploy("sleepy", json!({ "limits": { "timeout_ms": 60_000 } }))
        .await;
    let input = json!({ "tool": "agent_call", "args": { "agent": "sleepy", "input": { "ms": 1500 } } });
    let parent = start_async(&server, "toolbox", input).await;
    // Its child is running: the host dies under both.
    let child = loop {
        let (_, page) = server.get("/v1/executions?agent_id=sleepy").await;
        if let Some(child) = page["data"]
            .as_array()
            .and_then(|d| d.first())
            .filter(|c| c["status"] == "running")
        {
            break child["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    warden.sigkill();

    let warden = host.start();
    let server = warden.client();
    let done = poll(&server, &parent, |e| {
        e["status"] != "running" && e["status"] != "queued"
    })
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    let result = &done["output"]["result"];
    assert_eq!(
        result["execution_id"],
        child.as_str(),
        "the call reattached to its child: {done}"
    );
    assert_eq!(result["status"], "completed", "{done}");
    assert_eq!(result["output"], json!({ "slept_ms": 1500 }));
    let (_, page) = server.get("/v1/executions?agent_id=sleepy").await;
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        1,
        "one child, never two: {page}"
    );
    drop(warden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_journal_fails_its_run_and_an_agent_may_opt_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = warden_tests::test_config(tmp.path());
    config.durability.max_journal_entries = 20;
    let server = Server::start_with(config).await;
    server.deploy("ledger", json!({})).await;
    let record = server.run("ledger", json!({ "calls": 30 })).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], "journal_limit", "{record}");
    // The same agent, not durable: no journal, no cap.
    let mut manifest = warden_tests::agent_manifest("ledger");
    manifest["durable"] = json!(false);
    let (status, _) = server.deploy_bytes(warden_tests::agent_wasm("ledger"), &manifest).await;
    assert_eq!(status, StatusCode::CREATED);
    let record = server.run("ledger", json!({ "calls": 30 })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"]["answers"].as_array().unwrap().len(), 30);
}
