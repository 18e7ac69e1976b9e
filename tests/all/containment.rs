//! Containment, second round: whatever a guest or a client sends, the host's
//! memory, CPU and file descriptors stay bounded, every cap holds on every path,
//! and nothing panics. Each class has its attack in `rogue` (or a client here).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_host::config::Config;
use warden_tests::{Server, Warden, error_code, test_config};

/// A server on a fresh data dir with `tweak` applied to the test config.
async fn server_with(tweak: impl FnOnce(&mut Config)) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    tweak(&mut config);
    (Server::start_with(config).await, tmp)
}

/// Asks for an execution's event stream on a socket with a 4 KiB receive
/// buffer, then reads nothing.
async fn stalled_subscriber(base: &str, id: &str) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    stream
        .write_all(format!("GET /v1/executions/{id}/stream HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

/// Runs `rogue` with one attack; returns the final record.
async fn rogue(server: &Server, attack: &str) -> Value {
    server.run("rogue", json!(attack)).await
}

/// The record's events, read whole from the stream (which must close with a
/// terminal event) and page by page from the events API.
async fn events_close(server: &Server, record: &Value) {
    let id = record["id"].as_str().unwrap();
    let streamed = server.stream(id, None).await;
    let last = streamed.last().expect("events");
    assert!(
        matches!(last.event.as_str(), "done" | "error"),
        "{id}: ended with {last:?}"
    );
    let (status, page) = server.get(&format!("/v1/executions/{id}/events")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), streamed.len(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_json_not_every_reader_takes_is_refused_where_it_arrives() {
    let server = Server::start().await;
    server.deploy("rogue", json!({})).await;
    for attack in ["bignum", "surrogate", "deepjson 100"] {
        let record = rogue(&server, attack).await;
        assert_eq!(record["status"], "failed", "{attack}: {record}");
        assert_eq!(record["error"]["code"], "invalid_output", "{attack}: {record}");
        events_close(&server, &record).await;
    }
    // As deep as the stated limit is fine, and reads back.
    let deep = rogue(&server, "deepjson 64").await;
    assert_eq!(deep["status"], "completed", "{deep}");
    events_close(&server, &deep).await;

    // Step details that are such JSON are kept as strings.
    let steps = rogue(&server, "badsteps").await;
    assert_eq!(steps["status"], "completed", "{steps}");
    let (_, page) = server
        .get(&format!("/v1/executions/{}/steps", steps["id"].as_str().unwrap()))
        .await;
    let details: Vec<&Value> = page["data"].as_array().unwrap().iter().map(|s| &s["detail"]).collect();
    assert_eq!(details.len(), 3, "{page}");
    assert!(details.iter().all(|d| d.is_string()), "{page}");
    events_close(&server, &steps).await;

    // Tool arguments too large or too deep are refused as arguments.
    let args = rogue(&server, "bigargs 2").await;
    assert_eq!(args["output"]["accepted"], 2, "{args}");

    // A child whose output was refused is a failed child to its caller.
    let parent = rogue(&server, "child bignum").await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(parent["output"]["status"], "failed", "{parent}");
    assert_eq!(parent["output"]["error"]["code"], "invalid_output", "{parent}");

    // A client's input is held to the same rules.
    let (status, body) = server
        .send(
            reqwest::Client::new()
                .post(server.url("/v1/agents/rogue/execute"))
                .header("content-type", "application/json")
                .body(r#"{"input":[1e999]}"#),
        )
        .await;
    assert!(status == 400 || status == 422, "{status} {body}");
    let (status, body) = server
        .send(
            reqwest::Client::new()
                .post(server.url("/v1/agents/rogue/execute"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"input":{}{}}}"#, "[".repeat(100), "]".repeat(100))),
        )
        .await;
    assert!(status == 400 || status == 422, "{status} {body}");
    server.stop().await;
}

/// The longest a health check took while `work` ran.
async fn health_during<F: std::future::Future>(server: &Server, work: F) -> (F::Output, Duration) {
    let http = reqwest::Client::new();
    let url = server.url("/admin/health");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let pings = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            let ok = http.get(&url).send().await.is_ok_and(|r| r.status().is_success());
            assert!(ok, "health did not answer");
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worst
    });
    let out = work.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, pings.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_floods_take_bounded_work_per_call_and_the_timeout_holds() {
    let server = Server::start().await;
    server
        .deploy("rogue", json!({ "limits": { "timeout_ms": 1000 } }))
        .await;

    // One write past what check-write permits traps at once.
    let started = Instant::now();
    let (record, worst) = health_during(&server, rogue(&server, "stdout 16")).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], "trap", "{record}");
    assert!(
        record["error"]["message"].as_str().unwrap().contains("check-write"),
        "{record}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(worst < Duration::from_millis(500), "health took {worst:?}");

    // Newlines as fast as permitted writes go: the 1 s timeout holds, the log
    // keeps its caps, and health answers all along.
    let started = Instant::now();
    let (record, worst) = health_during(&server, rogue(&server, "newlines 0")).await;
    let took = started.elapsed();
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], "timeout", "{record}");
    assert!(took < Duration::from_millis(2500), "a 1 s timeout took {took:?}");
    assert!(worst < Duration::from_millis(500), "health took {worst:?}");
    assert_eq!(record["logs_truncated"], true, "{record}");
    assert!(record["n_logs"].as_u64().unwrap() <= 10_001, "{record}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cap_holds_on_every_path() {
    let (server, _tmp) = server_with(|c| c.http.max_input_bytes = 4096).await;
    server.deploy("rogue", json!({})).await;

    // An agent's error message is capped like its output.
    let err = rogue(&server, "errmsg 20").await;
    assert_eq!(err["status"], "failed", "{}", &err.to_string()[..200]);
    assert_eq!(err["error"]["code"], "too_much");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.len() < 17 << 10, "{} bytes", message.len());
    assert!(
        message.ends_with("bytes, over the limit of 16384]"),
        "{}",
        &message[message.len() - 100..]
    );

    // Model calls: too many bytes or tools are refused; the scripted provider
    // does not multiply what it is sent.
    let chat = rogue(&server, "bigchat 5").await;
    assert_eq!(chat["status"], "completed", "{chat}");
    assert_eq!(chat["output"]["big_refused"], true, "{chat}");
    assert_eq!(chat["output"]["tools_refused"], true, "{chat}");
    let amplified = chat["output"]["amplified_bytes"].as_i64().unwrap();
    assert!((1..=20_000).contains(&amplified), "{chat}");

    // Steps: all details together stay within their cap.
    let steps = rogue(&server, "bigsteps 100").await;
    assert_eq!(steps["n_steps"], 100, "{steps}");
    let (_, page) = server
        .get(&format!("/v1/executions/{}/steps", steps["id"].as_str().unwrap()))
        .await;
    let bytes: usize = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["detail"].to_string().len())
        .sum();
    assert!(bytes <= (2 << 20) + 100 * 64, "{bytes} bytes of step details");

    // agent_call inputs obey max_input_bytes like an HTTP execute.
    let parent = rogue(&server, "bigchild 5000").await;
    let refused = parent["output"]["tool_error"].as_str().unwrap_or_default();
    assert!(
        refused.contains("InvalidArguments") && refused.contains("limit"),
        "{parent}"
    );

    // Manifests: a size cap and a cap on each list.
    let mut manifest = warden_tests::agent_manifest("rogue");
    manifest["models"] = json!((0..65).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let (status, body) = server.deploy_bytes(warden_tests::agent_wasm("rogue"), &manifest).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("manifest.models"),
        "{body}"
    );
    let mut manifest = warden_tests::agent_manifest("rogue");
    manifest["description"] = json!("d".repeat(300 << 10));
    let (status, body) = server.deploy_bytes(warden_tests::agent_wasm("rogue"), &manifest).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(error_code(&body), "invalid_manifest");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_whose_checks_could_explode_are_refused_at_deploy() {
    let server = Server::start().await;
    let mut defs = serde_json::Map::new();
    for i in 0..40 {
        let next = json!({ "$ref": format!("#/$defs/d{}", i + 1) });
        defs.insert(format!("d{i}"), json!({ "allOf": [next.clone(), next] }));
    }
    defs.insert("d40".into(), json!({ "type": "string" }));
    let mut manifest = warden_tests::agent_manifest("echo");
    manifest["input_schema"] = json!({ "$defs": defs, "$ref": "#/$defs/d0" });
    let started = Instant::now();
    let (status, body) = server.deploy_bytes(warden_tests::agent_wasm("echo"), &manifest).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expand"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A recursive schema (a tree) is fine, and checks inputs.
    manifest["input_schema"] = json!({
        "$defs": { "node": { "type": "object", "required": ["name"], "properties": {
            "name": { "type": "string" },
            "children": { "type": "array", "items": { "$ref": "#/$defs/node" } }
        }}},
        "$ref": "#/$defs/node"
    });
    let (status, body) = server.deploy_bytes(warden_tests::agent_wasm("echo"), &manifest).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = server
        .post_json(
            "/v1/agents/echo/execute",
            &json!({ "input": { "name": "a", "children": [{ "name": "b" }] } }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post_json(
            "/v1/agents/echo/execute",
            &json!({ "input": { "name": "a", "children": [{}] } }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiling_is_bounded_in_time_and_memory() {
    type Tweak = fn(&mut Config);
    let limits: [(&str, Tweak); 2] = [
        ("deploy.timeout_ms", |c| c.deploy.timeout_ms = 1),
        ("deploy.max_memory_mb", |c| c.deploy.max_memory_mb = 64),
    ];
    for (limit, tweak) in limits {
        let (server, _tmp) = server_with(tweak).await;
        let (status, body) = server
            .deploy_bytes(warden_tests::agent_wasm("echo"), &warden_tests::agent_manifest("echo"))
            .await;
        assert_eq!(status, 422, "{limit}: {body}");
        assert_eq!(error_code(&body), "component_too_costly", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(limit), "{body}");
        // Nothing of the refused deploy stayed, and the host serves on.
        let (status, agents) = server.get("/v1/agents").await;
        assert_eq!(status, 200);
        assert_eq!(agents["data"], json!([]), "{agents}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiles_take_turns() {
    let (server, _tmp) = server_with(|c| c.deploy.max_concurrent = 1).await;
    let mut jobs = Vec::new();
    for dir in ["hello", "support"] {
        jobs.push(server.deploy_in_background("js", dir).await);
    }
    // One compiles while the other waits its turn; never two at once.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut waited = false;
    loop {
        let (_, health) = server.get("/admin/health").await;
        let components = &health["components"];
        assert!(components["compiling"].as_u64().unwrap() <= 1, "{health}");
        waited |= components["compiles_waiting"] == 1;
        let mut compiling = 0;
        for job in &jobs {
            let (_, job) = server.get(job).await;
            if job["status"] == "compiling" {
                compiling += 1;
            } else {
                assert_eq!(job["status"], "deployed", "{job}");
            }
        }
        if compiling == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still compiling");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waited, "the second compile never waited for the first");
    let (_, health) = server.get("/admin/health").await;
    assert_eq!(health["components"]["compiled"], 2, "{health}");
    assert_eq!(health["components"]["compiles_waiting"], 0, "{health}");
    let record = server.run("hello-js", json!({ "name": "Ada" })).await;
    assert_eq!(record["status"], "completed", "{record}");
    server.stop().await;
}

/// Opens a raw TCP connection to the server.
async fn connect(server: &Server) -> tokio::net::TcpStream {
    let addr = server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// Reads until the peer closes (or `within` passes: then `None`).
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    read.ok().map(|_| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_cannot_starve_the_server() {
    let (server, _tmp) = server_with(|c| {
        c.http.header_timeout_ms = 500;
        c.http.body_timeout_ms = 500;
        c.http.max_connections = 20;
    })
    .await;

    // The open-file limit was raised to its hard limit.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let numbers: Vec<&str> = files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "{files}");

    // Headers that never finish: the connection is closed after the timeout.
    let mut slow = connect(&server).await;
    slow.write_all(b"GET /admin/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(read_until_closed(&mut slow, Duration::from_secs(5)).await.is_some());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // A body that never finishes: the request fails after the body timeout.
    let mut dribble = connect(&server).await;
    dribble
        .write_all(b"POST /v1/agents/x/execute HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"in")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = vec![0; 4096];
        let n = dribble.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("an answer to a body that never came");
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // More idle connections than the cap: health still answers, at worst once
    // the header timeout has closed the idle ones.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(connect(&server).await);
    }
    let started = Instant::now();
    let (status, _) = server.get("/admin/health").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    drop(idle);
    server.stop().await;
}

/// Resident memory of a process, in KiB: (now, peak).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The resident set once it stops moving (under 256 KiB in half a second, or
/// after 15 s): what the host holds when it has done all it will.
async fn settled_rss_kib(pid: u32) -> u64 {
    let mut last = rss_kib(pid).0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(pid).0;
        if now.abs_diff(last) < 256 {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_at_full_caps_stay_within_the_stated_memory_bound() {
    const RUNS: usize = 24;
    /// The README's bound on host memory per running execution at the default
    /// caps (26 MiB), plus the guest's own memory (this guest touches < 16 MiB).
    const PER_RUN_KIB: u64 = (26 + 16) << 10;
    let tmp = tempfile::tempdir().unwrap();
    let warden = Warden::start(tmp.path());
    let client = warden.client();
    // Memory is measured here, not time: a loaded machine gets a minute.
    client
        .deploy(
            "rogue",
            json!({ "max_concurrency": RUNS, "limits": { "timeout_ms": 60_000 } }),
        )
        .await;
    client.run("rogue", json!("logs 10")).await;
    let (before, _) = rss_kib(warden.pid());
    let runs = (0..RUNS).map(|_| {
        let client = warden.client();
        async move { client.run("rogue", json!("full")).await }
    });
    let records = futures_util::future::join_all(runs).await;
    for record in &records {
        assert_eq!(record["status"], "completed", "{}", record["error"]);
        assert_eq!(record["logs_truncated"], true);
        assert!(
            record["peak_memory_bytes"].as_u64().unwrap() < 16 << 20,
            "{}",
            record["peak_memory_bytes"]
        );
    }
    let (_, peak) = rss_kib(warden.pid());
    let grew = peak.saturating_sub(before);
    eprintln!(
        "{RUNS} runs at full caps: resident {before} KiB before, peak {peak} KiB ({} KiB a run)",
        grew / RUNS as u64
    );
    assert!(grew <= RUNS as u64 * PER_RUN_KIB, "grew {grew} KiB for {RUNS} runs");

    // Reading a finished full run's events, twice at once, costs pages, not the log.
    let id = records[0]["id"].as_str().unwrap().to_owned();
    let (now, _) = rss_kib(warden.pid());
    let reads = (0..2).map(|_| {
        let client = warden.client();
        let id = id.clone();
        async move { client.stream(&id, None).await.len() }
    });
    let counts = futures_util::future::join_all(reads).await;
    assert!(counts.iter().all(|&n| n > 10_000), "{counts:?}");
    let (after, _) = rss_kib(warden.pid());
    // As JSON pages: at most about 1 MiB each, chained by their cursors, all of it.
    let (mut cursor, mut total, mut pages) = (0, 0, 0);
    loop {
        let (status, page) = client
            .get(&format!("/v1/executions/{id}/events?after={cursor}&limit=10000"))
            .await;
        assert_eq!(status, 200);
        assert!(
            page.to_string().len() < 2 << 20,
            "a page of {} bytes",
            page.to_string().len()
        );
        let data = page["data"].as_array().unwrap();
        total += data.len();
        pages += 1;
        if page["has_more"] == false {
            assert_eq!(data.last().unwrap()["type"], "done");
            break;
        }
        cursor = page["next_cursor"].as_u64().unwrap();
    }
    assert_eq!(total, counts[0]);
    assert!(pages >= 3, "{pages} pages");
    assert!(
        after.saturating_sub(now) < 64 << 10,
        "reading events grew {} KiB",
        after - now
    );
    drop(client);
    warden.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_holds_a_bounded_buffer() {
    let tmp = tempfile::tempdir().unwrap();
    let warden = Warden::start(tmp.path());
    let client = warden.client();
    client.deploy("rogue", json!({})).await;
    let record = client.run("rogue", json!("logs 10000")).await;
    let id = record["id"].as_str().unwrap();
    let (before, _) = rss_kib(warden.pid());
    // 100 subscribers ask for its whole event log and never read a byte.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        stalled.push(stalled_subscriber(&warden.base, id).await);
    }
    let first = settled_rss_kib(warden.pid()).await;
    // 100 more: what the first hundred warmed up (the store's readers, at
    // most 16 connections with a 2 MiB page cache each, and the allocator's
    // arenas of the threads they run on) is there already, so this is what a
    // subscriber itself holds.
    for _ in 0..100 {
        stalled.push(stalled_subscriber(&warden.base, id).await);
    }
    let second = settled_rss_kib(warden.pid()).await;
    eprintln!("stalled subscribers: none {before}, 100 {first}, 200 {second} KiB");
    // The first hundred also warm up the store's readers and the allocator's
    // arenas (about 32 MiB here, more on a busy machine); a subscriber that
    // held the whole log (a megabyte of events each) would take twice this.
    assert!(
        first.saturating_sub(before) <= 64 << 10,
        "100 stalled subscribers grew the host {} KiB",
        first - before
    );
    // Each holds its connection, at most its 64 KiB write buffer and a batch
    // of stored events (256, or 32 KiB of their JSON, with the records that
    // hold it): under 256 KiB, where the whole log would be megabytes. The rest
    // waits in the kernel's socket buffer.
    assert!(
        second.saturating_sub(first) <= 100 * 256,
        "100 more stalled subscribers grew the host {} KiB",
        second - first
    );
    // The host serves others meanwhile, and a reader gets everything.
    let events = client.stream(id, None).await;
    assert!(events.len() > 9_000, "{}", events.len());
    assert_eq!(events.last().unwrap().event, "done");
    drop(stalled);
    warden.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_takes_nothing_for_long_is_dropped() {
    let (server, _tmp) = server_with(|c| c.http.write_stall_ms = 500).await;
    server.deploy("rogue", json!({})).await;
    // The events of a run at every cap: more than the kernel's socket buffers hold.
    let record = rogue(&server, "full").await;
    let id = record["id"].as_str().unwrap();
    let mut stream = stalled_subscriber(&server.url(""), id).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // By now the server gave up on it: what it had sent, then the end.
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0; 64 << 10];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled subscriber was not dropped");
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains("event: done"),
        "it got the whole stream ({} bytes)",
        got.len()
    );
    // Readers are served meanwhile, whole.
    let events = server.stream(id, None).await;
    assert_eq!(events.last().unwrap().event, "done");
    server.stop().await;
}
