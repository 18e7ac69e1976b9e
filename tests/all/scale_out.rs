//! Three `warden serve` hosts on one Postgres (a private cluster the test
//! starts), under load, and the leading one killed with SIGKILL: every accepted
//! execution ends, each started once and its events stored once; a schedule
//! firing every second goes on from another host and never fires a slot twice.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::postgres::PgCluster;
use warden_tests::{Server, Warden};

use super::durable::{ended, start_async};

fn host_id(data: &Path) -> String {
    std::fs::read_to_string(data.join("host-id")).unwrap().trim().to_owned()
}

/// Every event of an execution.
async fn events(server: &Server, id: &str) -> Vec<Value> {
    let (status, page) = server.get(&format!("/v1/executions/{id}/events?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_lose_nothing_and_repeat_nothing_when_the_leader_is_killed() {
    let cluster = PgCluster::start();
    cluster.psql("CREATE DATABASE warden").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = super::postgres::shared_config(tmp.path(), &cluster, "");
    let args = ["--config", config.to_str().unwrap()];
    let dirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("host{i}"))).collect();
    let mut hosts: Vec<Option<Warden>> = dirs.iter().map(|d| Some(Warden::start_with(d, &args))).collect();
    let clients: Vec<Server> = hosts.iter().map(|h| h.as_ref().unwrap().client()).collect();

    clients[0].deploy("sleepy", json!({})).await;
    clients[0].deploy("echo", json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for client in &clients {
        while client.get("/v1/agents/echo").await.0 != StatusCode::OK {
            assert!(tokio::time::Instant::now() < deadline, "a host never loaded the agents");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (status, schedule) = clients[1]
        .post_json(
            "/v1/schedules",
            &json!({ "agent": "echo", "cron": "* * * * * *", "input": { "name": "tick" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let schedule = schedule["id"].as_str().unwrap().to_owned();

    // Load on every host; the leader killed halfway.
    let leader = cluster.psql_in("warden", "SELECT host FROM lead").unwrap();
    let killed = dirs
        .iter()
        .position(|d| host_id(d) == leader)
        .expect("one of the three leads");
    let mut accepted = Vec::new();
    let mut sent_to_killed = Vec::new();
    for round in 0..40 {
        if round == 20 {
            hosts[killed].take().unwrap().sigkill();
        }
        let alive: Vec<usize> = (0..3).filter(|&i| hosts[i].is_some()).collect();
        let to = alive[round % alive.len()];
        let id = start_async(&clients[to], "sleepy", json!({ "ms": 200 })).await;
        if to == killed {
            sent_to_killed.push(id.clone());
        }
        accepted.push(id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survivor = &clients[(killed + 1) % 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for id in &accepted {
        loop {
            let (_, e) = survivor.get(&format!("/v1/executions/{id}")).await;
            if ended(&e) {
                assert_eq!(e["status"], "completed", "{e}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never ended: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for id in &accepted {
        let events = events(survivor, id).await;
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{id}: {events:#?}");
        let running = events
            .iter()
            .filter(|e| e["type"] == "status" && e["data"]["status"] == "running")
            .count();
        assert_eq!(running, 1, "{id} started once: {events:#?}");
    }

    // What the killed host had not finished, another host took over.
    let list = sent_to_killed
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let taken = cluster
        .psql_in(
            "warden",
            &format!("SELECT count(*) FROM executions WHERE id IN ({list}) AND owner <> '{leader}'"),
        )
        .unwrap();
    assert!(taken.parse::<u32>().unwrap() >= 1, "nothing was taken over");

    // The schedule fires from a live host after the leader's lease ran out,
    // each slot once.
    let later = warden_host::time::now_ms();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, _) = survivor
        .post_json(&format!("/v1/schedules/{schedule}/pause"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = survivor
        .get(&format!("/v1/executions?schedule_id={schedule}&limit=500"))
        .await;
    let runs = page["data"].as_array().unwrap();
    let mut slots: HashMap<&str, usize> = HashMap::new();
    for run in runs {
        *slots.entry(run["scheduled_for"].as_str().unwrap()).or_default() += 1;
    }
    assert!(slots.values().all(|&n| n == 1), "a slot fired twice: {slots:?}");
    let after_kill = runs
        .iter()
        .filter(|r| warden_host::time::parse(r["scheduled_for"].as_str().unwrap()).unwrap() > later)
        .count();
    assert!(after_kill >= 1, "no slot fired after the leader died: {runs:#?}");
    for host in hosts.iter_mut() {
        drop(host.take());
    }
}
