//! Warden on Postgres: a private cluster started by the test (as a non-root
//! user when the tests run as root), and `warden serve` keeping its records
//! there (`[store] url`): deploys, runs, streams, keys and approvals, across a
//! kill.

use reqwest::StatusCode;
use serde_json::json;
use warden_tests::postgres::PgCluster;
use warden_tests::{Warden, warden_bin};

use super::durable::{poll, start_async};

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
    let config = tmp.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "deploy_examples = false\n[durability]\napproval_grace_ms = 200\n[store]\nurl = \"{}\"\n",
            cluster.url("warden")
        ),
    )
    .unwrap();
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
