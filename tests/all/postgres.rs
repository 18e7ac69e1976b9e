//! Warden on Postgres: a private cluster started by the test (as a non-root
//! user when the tests run as root), and `warden serve` keeping its records
//! there (`[store] url`): deploys, runs, streams, keys and approvals, across a
//! kill; and two hosts on one database, one serving what the other deployed
//! and taking over its runs when it is killed.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::postgres::PgCluster;
use warden_tests::providers::{ANSWER, FakeProvider, Mode, Protocol};
use warden_tests::{Server, Warden, warden_bin};

use super::durable::{ended, poll, start_async};

#[test]
fn a_private_postgres_cluster_starts_answers_and_stops() {
    let cluster = PgCluster::start();
    assert_eq!(cluster.psql("select 1 + 1").unwrap(), "2");
    assert_eq!(cluster.psql("show fsync").unwrap(), "off");
    assert_eq!(cluster.psql("select current_user").unwrap(), "warden");
    cluster.psql("create database warden_a").unwrap();
    assert!(
        cluster
            .psql("select datname from pg_database")
            .unwrap()
            .contains("warden_a")
    );
    let port = cluster.port;
    drop(cluster);
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(refused.is_err(), "the cluster still listens on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_on_postgres_keeps_its_records_there_across_a_kill() {
    let cluster = PgCluster::start();
    cluster.psql("CREATE DATABASE warden").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = shared_config(tmp.path(), &cluster, "[durability]\napproval_grace_ms = 200");
    let data = tmp.path().join("data");
    let args = ["--config", config.to_str().unwrap()];

    let warden = Warden::start_with(&data, &args);
    let server = warden.client();
    let (_, health) = server.get("/admin/health").await;
    assert!(health["store"].as_str().unwrap().starts_with("postgres 1"), "{health}");
    assert_eq!(health["status"], "ok");
    assert!(!data.join("warden.db").exists(), "no SQLite database beside Postgres");

    server.deploy("echo", json!({})).await;
    let done = server.run("echo", json!({ "name": "pg" })).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["greeting"], "Hello, pg!");
    let id = done["id"].as_str().unwrap().to_owned();
    let events = server.stream(&id, None).await;
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    assert_eq!(logs["data"].as_array().unwrap().len(), 1, "{logs}");

    // A run waiting for a person, killed meanwhile.
    server.deploy("ledger", json!({})).await;
    let waiting = start_async(&server, "ledger", json!({ "calls": 1, "approve": "Ship it?" })).await;
    poll(&server, &waiting, |e| e["status"] == "awaiting_approval").await;
    let rows = cluster.psql_in("warden", "SELECT count(*) FROM executions").unwrap();
    assert_eq!(rows, "2", "the records are in Postgres");
    warden.sigkill();

    let warden = Warden::start_with(&data, &args);
    let server = warden.client();
    let (_, agents) = server.get("/v1/agents").await;
    assert_eq!(agents["data"].as_array().unwrap().len(), 2, "{agents}");
    let (_, stored) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(stored["output"]["greeting"], "Hello, pg!", "{stored}");
    let (status, page) = server.get("/v1/approvals?status=pending").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let approval = page["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, decided) = server
        .post_json(
            &format!("/v1/approvals/{approval}/approve"),
            &json!({ "data": { "carrier": "DHL" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let done = poll(&server, &waiting, |e| {
        e["status"] != "awaiting_approval" && e["status"] != "running"
    })
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["decision"], json!({ "carrier": "DHL" }), "{done}");
    drop(warden);

    // The keys command works on the same store.
    let out = std::process::Command::new(warden_bin())
        .args(["keys", "--config", config.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .args(["create", "--workspace", "w1", "--name", "ops", "--admin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = cluster.psql_in("warden", "SELECT name FROM api_keys").unwrap();
    assert_eq!(listed, "ops");
}

/// A config file for hosts on the cluster's database `warden`, with `extra` TOML.
pub(crate) fn shared_config(dir: &Path, cluster: &PgCluster, extra: &str) -> std::path::PathBuf {
    let path = dir.join("warden.toml");
    std::fs::write(
        &path,
        format!(
            "deploy_examples = false\n{extra}\n[store]\nurl = \"{}\"\nlease_ms = 1000\n",
            cluster.url("warden")
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_one_database_and_one_takes_over_when_the_other_is_killed() {
    // The second model request hangs: host A is killed while it waits.
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::SlowAt(2, Duration::from_secs(600))).await;
    let cluster = PgCluster::start();
    cluster.psql("CREATE DATABASE warden").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let provider = format!(
        "[[llm.providers]]\nname = \"fake\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"CARGO_PKG_NAME\"\n\
         models = [\"gpt-test\"]\n",
        fake.url()
    );
    let config = shared_config(tmp.path(), &cluster, &provider);
    let args = ["--config", config.to_str().unwrap()];
    let a = Warden::start_with(&tmp.path().join("a"), &args);
    let b = Warden::start_with(&tmp.path().join("b"), &args);
    let (on_a, on_b) = (a.client(), b.client());

    // Deployed on A, served by B (its bytes come from the database).
    on_a.deploy("echo", json!({})).await;
    on_a.deploy("ledger", json!({ "models": ["gpt-test"] })).await;
    on_a.deploy("sleepy", json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while on_b.get("/v1/agents/ledger").await.0 != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "B never loaded what A deployed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = on_b.run("echo", json!({ "name": "B" })).await;
    assert_eq!(done["output"]["greeting"], "Hello, B!", "{done}");
    let id = done["id"].as_str().unwrap();
    let (_, seen) = on_a.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(seen["status"], "completed", "A reads what B ran: {seen}");

    // One idempotency key across hosts: one execution, another request under
    // it refused, concurrent first uses on both hosts one execution.
    let keyed = |server: &Server, key: &str, body: Value| {
        server
            .http
            .post(server.url("/v1/agents/echo/execute"))
            .header("idempotency-key", key)
            .json(&body)
    };
    let (status, first) = on_a.send(keyed(&on_a, "k1", json!({ "input": { "n": 1 } }))).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = on_b.send(keyed(&on_b, "k1", json!({ "input": { "n": 1 } }))).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"], "{again}");
    let (status, body) = on_b.send(keyed(&on_b, "k1", json!({ "input": { "n": 2 } }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let server = if i % 2 == 0 { &on_a } else { &on_b };
        let req = keyed(server, "k2", json!({ "input": { "n": 3 } }));
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().json::<Value>().await.unwrap()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        let id = answer["id"].as_str().unwrap_or_else(|| panic!("{answer}"));
        ids.push(id.to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // Cancelled on B while it runs on A: A stops it.
    let sleeping = start_async(&on_a, "sleepy", json!({ "ms": 4000 })).await;
    poll(&on_a, &sleeping, |e| e["status"] == "running").await;
    let (status, asked) = on_b
        .post_json(&format!("/v1/executions/{sleeping}/cancel"), &json!({}))
        .await;
    assert!(status.is_success(), "{status} {asked}");
    assert_eq!(asked["status"], "cancel_requested", "{asked}");
    let began = std::time::Instant::now();
    let cancelled = poll(&on_a, &sleeping, ended).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        began.elapsed()
    );

    // A durable run on A, killed in its second model call.
    let input = json!({ "calls": 3, "model": "gpt-test" });
    let id = start_async(&on_a, "ledger", input).await;
    // Followed from B all along: B reads A's events from the database.
    let streamed = {
        let (base, id) = (b.base.clone(), id.clone());
        tokio::spawn(async move { Server::attach(&base).stream(&id, None).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fake.requests.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never reached its second model call"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.sigkill();

    // Past A's lease, B takes the run over and completes it by replay, once.
    let done = poll(&on_b, &id, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["answers"], json!([ANSWER, ANSWER, ANSWER]), "{done}");
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        4,
        "the journaled call was not repeated"
    );
    let statuses: Vec<String> = on_b.get(&format!("/v1/executions/{id}/events?limit=1000")).await.1["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "status")
        .filter_map(|e| e["data"]["status"].as_str().map(String::from))
        .collect();
    assert_eq!(statuses, ["queued", "running", "completed"]);
    let streamed = tokio::time::timeout(Duration::from_secs(10), streamed)
        .await
        .expect("the stream on B ends with the run")
        .unwrap();
    assert_eq!(streamed.last().unwrap().event, "done", "{streamed:?}");
    let seqs: Vec<u64> = streamed.iter().map(|e| e.id).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "each event once, in order"
    );
    let owner = cluster
        .psql_in("warden", &format!("SELECT owner FROM executions WHERE id = '{id}'"))
        .unwrap();
    let b_id = std::fs::read_to_string(tmp.path().join("b").join("host-id")).unwrap();
    assert_eq!(owner, b_id.trim(), "the run is B's now");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_host_keeps_its_lease_and_its_runs_to_the_end() {
    let cluster = PgCluster::start();
    cluster.psql("CREATE DATABASE warden").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = shared_config(tmp.path(), &cluster, "shutdown_grace_ms = 20000");
    let args = ["--config", config.to_str().unwrap()];
    let mut a = Warden::start_with(&tmp.path().join("a"), &args);
    let b = Warden::start_with(&tmp.path().join("b"), &args);
    let (on_a, on_b) = (a.client(), b.client());
    on_a.deploy("sleepy", json!({})).await;
    let id = start_async(&on_a, "sleepy", json!({ "ms": 3000 })).await;
    poll(&on_a, &id, |e| e["status"] == "running").await;
    // A drains for longer than a lease (1 s): its run is not taken over.
    a.sigterm();
    let status = a.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let done = poll(&on_b, &id, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    let events = on_b.get(&format!("/v1/executions/{id}/events?limit=1000")).await.1;
    let running = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "status" && e["data"]["status"] == "running")
        .count();
    assert_eq!(running, 1, "started once: {events}");
    let a_id = std::fs::read_to_string(tmp.path().join("a").join("host-id")).unwrap();
    let owner = cluster
        .psql_in("warden", &format!("SELECT owner FROM executions WHERE id = '{id}'"))
        .unwrap();
    assert_eq!(owner, a_id.trim(), "A finished its own run");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_reaches_postgres_over_tls_and_checks_its_certificate() {
    let cluster = PgCluster::start_tls();
    cluster.psql("CREATE DATABASE warden").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let url = |mode: &str, root: &str| {
        format!(
            "{}?sslmode={mode}&sslrootcert={}",
            cluster.url("warden"),
            cluster.tls_file(root).display()
        )
    };
    // A certificate that does not chain to the named root: refused, saying why.
    let mut config = warden_tests::test_config(tmp.path());
    config.store.url = Some(url("verify-full", "other-ca.crt"));
    let refused = warden_host::app::App::open(config.clone())
        .await
        .err()
        .expect("a server whose certificate is not trusted is refused");
    assert!(
        format!("{refused:#}").contains("invalid peer certificate"),
        "{refused:#}"
    );
    // The right root: it serves, and every connection of the host is encrypted.
    config.store.url = Some(url("verify-full", "ca.crt"));
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;
    let record = server.run("echo", json!({ "name": "tls" })).await;
    assert_eq!(record["status"], "completed", "{record}");
    let ssl = cluster
        .psql_in(
            "warden",
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = 'warden' AND a.backend_type = 'client backend' AND a.application_name <> 'psql'",
        )
        .unwrap();
    assert!(!ssl.is_empty() && ssl.lines().all(|l| l == "t"), "{ssl}");
    server.stop().await;
}
