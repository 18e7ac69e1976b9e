//! The shared queue of hosts on one Postgres: an execution accepted by one
//! host runs on whichever has room; each agent's `max_concurrency` holds
//! across the hosts; priority orders the waiting across hosts; a caller on
//! one host hears the end of a run on another; a waiting execution is
//! cancelled from any host.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use warden_tests::postgres::PgCluster;
use warden_tests::providers::{FakeProvider, Mode, Protocol};
use warden_tests::{Server, Warden};

use super::durable::{approve_pending, ended, poll, start_async};
use super::postgres::shared_config;

/// Each row of `sql` (`|`-separated columns).
fn rows(cluster: &PgCluster, sql: &str) -> Vec<Vec<String>> {
    let out = cluster.psql_in("warden", sql).unwrap();
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

/// Starts an execution of `single`, sleeping `ms`, at `priority`.
async fn submit(server: &Server, ms: u64, priority: u8) -> String {
    let (status, body) = server
        .post_json(
            "/v1/agents/single/execute",
            &json!({ "input": { "ms": ms }, "mode": "async", "priority": priority }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

fn host_id(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("host-id")).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_share_one_queue_with_each_agents_slots_and_priority_across_them() {
    let cluster = PgCluster::start();
    cluster.psql("CREATE DATABASE warden").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // A runs one execution at a time; B up to its default.
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let config_a = shared_config(&small, &cluster, "max_concurrent_executions = 1");
    let config_b = shared_config(tmp.path(), &cluster, "");
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = Warden::start_with(&dir_a, &["--config", config_a.to_str().unwrap()]);
    let b = Warden::start_with(&dir_b, &["--config", config_b.to_str().unwrap()]);
    let (on_a, on_b) = (a.client(), b.client());
    let (id_a, id_b) = (host_id(&dir_a), host_id(&dir_b));
    // Deployed on B (a version's slots are capped by its deploying host's cap).
    on_b.deploy("sleepy", json!({})).await;
    on_b.deploy("sleepy", json!({ "name": "single", "max_concurrency": 1 }))
        .await;
    on_b.deploy("echo", json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while on_a.get("/v1/agents/echo").await.0 != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "A never loaded what B deployed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Three accepted by A, which runs one at a time: B runs the others,
    // alongside.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(start_async(&on_a, "sleepy", json!({ "ms": 1500 })).await);
    }
    for id in &ids {
        let done = poll(&on_a, id, ended).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    let ran = rows(
        &cluster,
        &format!("SELECT owner, started_at, completed_at FROM executions WHERE id IN ({list})"),
    );
    let owners: HashSet<&str> = ran.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(owners, HashSet::from([id_a.as_str(), id_b.as_str()]), "{ran:?}");
    let latest_start = ran.iter().map(|r| r[1].parse::<i64>().unwrap()).max().unwrap();
    let first_end = ran.iter().map(|r| r[2].parse::<i64>().unwrap()).min().unwrap();
    assert!(latest_start < first_end, "all three ran at once: {ran:?}");

    // A sync call on A while A is full: B runs it, A answers.
    let busy = start_async(&on_a, "sleepy", json!({ "ms": 1500 })).await;
    poll(&on_a, &busy, |e| e["status"] == "running").await;
    let answered = on_a.run("echo", json!({ "name": "Ada" })).await;
    assert_eq!(answered["status"], "completed", "{answered}");
    assert_eq!(answered["output"]["greeting"], "Hello, Ada!", "{answered}");
    let owner = rows(
        &cluster,
        &format!(
            "SELECT owner FROM executions WHERE id = '{}'",
            answered["id"].as_str().unwrap()
        ),
    );
    let busy_owner = rows(&cluster, &format!("SELECT owner FROM executions WHERE id = '{busy}'"));
    assert_ne!(owner, busy_owner, "the other host ran it");

    // One agent's single slot holds across both hosts; the waiting run in
    // priority order, wherever accepted; a waiting one cancelled from the
    // other host never runs.
    let first = submit(&on_b, 800, 50).await;
    poll(&on_b, &first, |e| e["status"] == "running").await;
    let low = submit(&on_a, 100, 10).await;
    let cancelled = submit(&on_b, 100, 50).await;
    let high = submit(&on_a, 100, 90).await;
    let mid = submit(&on_b, 100, 50).await;
    let (status, body) = on_a
        .post_json(&format!("/v1/executions/{cancelled}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    for id in [&first, &low, &high, &mid] {
        let done = poll(&on_a, id, ended).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    let ran = rows(
        &cluster,
        "SELECT id, started_at, completed_at FROM executions
         WHERE agent_name = 'single' AND started_at IS NOT NULL ORDER BY started_at",
    );
    let order: Vec<&str> = ran.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(order, [&first, &high, &mid, &low], "{ran:?}");
    for pair in ran.windows(2) {
        let (ended_at, next_start) = (pair[0][2].parse::<i64>().unwrap(), pair[1][1].parse::<i64>().unwrap());
        assert!(ended_at <= next_start, "one at a time across the hosts: {ran:?}");
    }
    let (_, never) = on_b.get(&format!("/v1/executions/{cancelled}")).await;
    assert_eq!(never["status"], "cancelled", "{never}");
    assert!(never["started_at"].is_null(), "{never}");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_turns_run_one_at_a_time_whichever_hosts_they_reach() {
    let TwoHosts {
        cluster,
        tmp: _tmp,
        a,
        b,
    } = two_hosts("");
    let (on_a, on_b) = (a.client(), b.client());
    on_a.deploy("sleepy", json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while on_b.get("/v1/agents/sleepy").await.0 != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "B never loaded what A deployed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conversation = new_conversation(&on_a).await;
    // Idle now: a turn sent to each host at the same moment.
    let body = json!({ "input": { "ms": 300 }, "conversation_id": conversation, "mode": "async" });
    for _ in 0..3 {
        let sent = futures_util::future::join_all(
            [&on_a, &on_b, &on_a, &on_b].map(|server| server.post_json("/v1/agents/sleepy/execute", &body)),
        )
        .await;
        for (status, turn) in sent {
            assert_eq!(status, StatusCode::ACCEPTED, "{turn}");
            let done = poll(&on_a, turn["id"].as_str().unwrap(), ended).await;
            assert_eq!(done["status"], "completed", "{done}");
        }
    }
    let ran = rows(
        &cluster,
        &format!(
            "SELECT id, started_at, completed_at FROM executions
             WHERE conversation_id = '{conversation}' ORDER BY started_at"
        ),
    );
    assert_eq!(ran.len(), 13, "{ran:?}");
    for pair in ran.windows(2) {
        let (ended_at, next_start) = (pair[0][2].parse::<i64>().unwrap(), pair[1][1].parse::<i64>().unwrap());
        assert!(ended_at <= next_start, "one turn at a time: {ran:?}");
    }
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_turn_waits_for_its_agents_slot_on_every_host() {
    // One run at a time on each host: a turn held back must not take the
    // room it waits in.
    let TwoHosts { cluster, tmp, a, b } = two_hosts("max_concurrent_executions = 1");
    let (on_a, on_b) = (a.client(), b.client());
    on_a.deploy("sleepy", json!({ "name": "single", "max_concurrency": 1 }))
        .await;
    wait_loaded(&on_b, "single").await;
    // One run takes the agent's one slot for 3 s, on whichever host claimed
    // it.
    let busy = submit(&on_b, 3000, 50).await;
    poll(&on_b, &busy, |e| e["status"] == "running").await;
    let owner = rows(&cluster, &format!("SELECT owner FROM executions WHERE id = '{busy}'"));
    let other = if owner[0][0] == host_id(&tmp.path().join("b")) {
        &on_a
    } else {
        &on_b
    };
    // A conversation's first turn sent to the other host waits for it,
    // though that host runs nothing.
    let body = json!({ "input": { "ms": 10 }, "conversation": true, "mode": "async" });
    let (status, turn) = other.post_json("/v1/agents/single/execute", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{turn}");
    let conversation = turn["conversation_id"].as_str().unwrap().to_owned();
    let turn = turn["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, holder) = on_a.get(&format!("/v1/executions/{busy}")).await;
    let (_, meanwhile) = on_a.get(&format!("/v1/executions/{turn}")).await;
    assert_eq!(holder["status"], "running", "{holder}");
    assert_eq!(
        meanwhile["status"], "queued",
        "{meanwhile} ran while {holder} held the slot"
    );
    let busy = poll(&on_b, &busy, ended).await;
    let turn = poll(&on_a, &turn, ended).await;
    assert_eq!(turn["status"], "completed", "{turn}");
    assert!(
        turn["started_at"].as_str().unwrap() >= busy["completed_at"].as_str().unwrap(),
        "{turn} started before {busy} ended"
    );
    // The next turn of the conversation, sent while nothing else runs, runs at once.
    let (_, next) = on_b
        .post_json(
            "/v1/agents/single/execute",
            &json!({ "input": { "ms": 10 }, "conversation_id": conversation }),
        )
        .await;
    assert_eq!(next["status"], "completed", "{next}");
    // Turns of two conversations sent to both hosts at once: neither host
    // counts the other's turn before it is claimed, so both run, one at a
    // time.
    let first = json!({ "input": { "ms": 300 }, "conversation": true });
    let body = |conversation: &str| json!({ "input": { "ms": 300 }, "conversation_id": conversation, "mode": "async" });
    let (_, on_a_first) = on_a.post_json("/v1/agents/single/execute", &first).await;
    let (_, on_b_first) = on_b.post_json("/v1/agents/single/execute", &first).await;
    let mut sent = Vec::new();
    let (to_a, to_b) = (
        body(on_a_first["conversation_id"].as_str().unwrap()),
        body(on_b_first["conversation_id"].as_str().unwrap()),
    );
    for _ in 0..3 {
        let (sa, sb) = tokio::join!(
            on_a.post_json("/v1/agents/single/execute", &to_a),
            on_b.post_json("/v1/agents/single/execute", &to_b),
        );
        for (status, turn) in [sa, sb] {
            assert_eq!(status, StatusCode::ACCEPTED, "{turn}");
            sent.push(turn["id"].as_str().unwrap().to_owned());
        }
    }
    for id in &sent {
        assert_eq!(poll(&on_a, id, ended).await["status"], "completed");
    }
    let ran = rows(
        &cluster,
        "SELECT started_at, completed_at FROM executions e JOIN agents a ON a.id = e.agent_id
         WHERE a.name = 'single' ORDER BY started_at",
    );
    assert_eq!(ran.len(), 11, "{ran:?}");
    for pair in ran.windows(2) {
        let (ended_at, next_start) = (pair[0][1].parse::<i64>().unwrap(), pair[1][0].parse::<i64>().unwrap());
        assert!(ended_at <= next_start, "one run of the agent at a time: {ran:?}");
    }
    a.sigkill();
    b.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_waiting_behind_another_takes_no_room_from_the_shared_queue() {
    // One host, two runs at a time.
    let TwoHosts {
        cluster: _cluster,
        tmp: _tmp,
        a,
        b,
    } = two_hosts("max_concurrent_executions = 2");
    b.sigkill();
    let on_a = a.client();
    on_a.deploy("sleepy", json!({})).await;
    // A long turn runs; the next one waits behind it.
    let long = json!({ "input": { "ms": 30_000 }, "conversation": true, "mode": "async" });
    let (status, first) = on_a.post_json("/v1/agents/sleepy/execute", &long).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let conversation = first["conversation_id"].as_str().unwrap();
    let first_id = first["id"].as_str().unwrap().to_owned();
    poll(&on_a, &first_id, |e| e["status"] == "running").await;
    let next = json!({ "input": { "ms": 10 }, "conversation_id": conversation, "mode": "async" });
    let (status, second) = on_a.post_json("/v1/agents/sleepy/execute", &next).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    // The host's other place runs work from the shared queue meanwhile.
    let done = on_a.run("sleepy", json!({ "ms": 10 })).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, first) = on_a.get(&format!("/v1/executions/{first_id}")).await;
    assert_eq!(first["status"], "running", "{done} waited for {first}");
    // Once the long turn is cancelled, the next one runs.
    let (status, _) = on_a
        .post_json(&format!("/v1/executions/{first_id}/cancel"), &json!({}))
        .await;
    assert!(status.is_success(), "{status}");
    let second = poll(&on_a, second["id"].as_str().unwrap(), ended).await;
    assert_eq!(second["status"], "completed", "{second}");
    a.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_is_deleted_only_while_no_host_holds_its_turns() {
    let db = Paused::start().await;
    let (on_a, cluster) = (db.a.client(), &db.cluster);
    let conversation = new_conversation(&on_a).await;
    // Another host placing a turn holds the conversation's turns (the hold's
    // advisory lock, here on a session of the test's own) for 3 s.
    let mut holder = hold_for_3s(cluster, 0x7475_726e, &conversation).await;
    let deleting = tokio::spawn({
        let (http, url) = (
            on_a.http.clone(),
            on_a.url(&format!("/v1/conversations/{conversation}")),
        );
        async move { http.delete(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    if holder.try_wait().unwrap().is_none() {
        assert!(!deleting.is_finished(), "deleted while another host held its turns");
    }
    assert!(holder.wait().unwrap().success());
    assert_eq!(deleting.await.unwrap(), StatusCode::NO_CONTENT);
    let (status, _) = on_a.get(&format!("/v1/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_changed_only_while_no_other_host_holds_it() {
    let db = Paused::start().await;
    let (on_a, cluster) = (db.a.client(), &db.cluster);
    let (status, made) = on_a
        .post_json("/v1/schedules", &json!({ "agent": "sleepy", "cron": "0 9 * * *" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    // Another host changing it (the leader firing a slot, an edit) holds it
    // (the hold's advisory lock, here on a session of the test's own) for 3 s.
    let mut holder = hold_for_3s(cluster, 0x7363_6864, &id).await;
    let editing = tokio::spawn({
        let (http, url) = (on_a.http.clone(), on_a.url(&format!("/v1/schedules/{id}")));
        async move {
            let resp = http
                .patch(url)
                .json(&json!({ "cron": "30 9 * * *" }))
                .send()
                .await
                .unwrap();
            resp.status()
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    if holder.try_wait().unwrap().is_none() {
        assert!(!editing.is_finished(), "changed while another host held it");
    }
    assert!(holder.wait().unwrap().success());
    assert_eq!(editing.await.unwrap(), StatusCode::OK);
    let (_, changed) = on_a.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(changed["cron"], "30 9 * * *", "{changed}");
}

/// Holds what a host's hold of kind `key` on `name` holds (its advisory
/// lock), from a `psql` session of the test's own, for 3 s; once it is taken.
async fn hold_for_3s(cluster: &PgCluster, key: i32, name: &str) -> std::process::Child {
    let sql = format!("SELECT pg_advisory_lock({key}, hashtext('{name}')); SELECT pg_sleep(3)");
    let holder = std::process::Command::new("psql")
        .args(["-X", "-q", "-tA", "-d", &cluster.url("warden"), "-c", &sql])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rows(
        cluster,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
    )[0][0]
        != "1"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the test's hold was never taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder
}

/// A new conversation of `sleepy` on `server`, its first turn completed.
async fn new_conversation(server: &Server) -> String {
    let (_, first) = server
        .post_json(
            "/v1/agents/sleepy/execute",
            &json!({ "input": { "ms": 10 }, "conversation": true }),
        )
        .await;
    assert_eq!(first["status"], "completed", "{first}");
    first["conversation_id"].as_str().unwrap().to_owned()
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Host A on a fresh database with `sleepy` deployed (60 s timeout), and
/// what pauses it past its lease while a second host takes over.
struct Paused {
    // Dropped in this order: the host, then its database.
    a: Warden,
    cluster: PgCluster,
    tmp: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Paused {
    async fn start() -> Paused {
        let cluster = PgCluster::start();
        cluster.psql("CREATE DATABASE warden").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let config = shared_config(tmp.path(), &cluster, "");
        let a = Warden::start_with(&tmp.path().join("a"), &["--config", config.to_str().unwrap()]);
        a.client()
            .deploy("sleepy", json!({ "limits": { "timeout_ms": 60000 } }))
            .await;
        Paused {
            cluster,
            tmp,
            config,
            a,
        }
    }

    /// The execution running on host `name`, once there is one.
    async fn running_on(&self, name: &str) -> String {
        let host = host_id(&self.tmp.path().join(name));
        let sql = format!("SELECT id FROM executions WHERE status = 'running' AND owner = '{host}'");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(mut row) = rows(&self.cluster, &sql).pop() {
                return row.remove(0);
            }
            assert!(tokio::time::Instant::now() < deadline, "nothing ran on {name}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts host B, then pauses A (a VM paused, a process stalled) until B
    /// takes A's run over and runs it again; A goes on then.
    async fn past_its_lease(&self) -> Warden {
        let b = Warden::start_with(&self.tmp.path().join("b"), &["--config", self.config.to_str().unwrap()]);
        signal(self.a.pid(), "STOP");
        self.running_on("b").await;
        signal(self.a.pid(), "CONT");
        b
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_paused_past_its_lease_stops_the_runs_another_host_took_over() {
    let paused = Paused::start().await;
    let on_a = paused.a.client();
    let id = start_async(&on_a, "sleepy", json!({ "ms": 30000 })).await;
    assert_eq!(paused.running_on("a").await, id);
    let b = paused.past_its_lease().await;
    let on_b = b.client();
    // Back, A finds the run is B's now and stops its own (which would
    // otherwise sleep on for most of its 30 s), while B's goes on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, health) = on_a.get("/admin/health").await;
        if health["executions"]["running"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A still runs what B took over: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(paused.running_on("b").await, id, "B's run should go on");
    let (_, health) = on_b.get("/admin/health").await;
    assert_eq!(health["executions"]["running"], 1, "{health}");
    // It ends once, as B ends it; a caller on A hears that end.
    let (status, body) = on_b.post_json(&format!("/v1/executions/{id}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = poll(&on_a, &id, ended).await;
    assert_eq!(done["status"], "cancelled", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_on_a_paused_host_hears_the_end_the_host_that_took_over_stores() {
    let paused = Paused::start().await;
    // A caller waits on A for a run that ends while A is paused.
    let caller = tokio::spawn({
        let on_a = paused.a.client();
        async move {
            on_a.post_json("/v1/agents/sleepy/execute", &json!({ "input": { "ms": 1500 } }))
                .await
        }
    });
    let id = paused.running_on("a").await;
    // Back, A's own run is over at once (its sleep ran out while paused);
    // its end is not stored, so its caller hears B's.
    let b = paused.past_its_lease().await;
    let (status, told) = caller.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{told}");
    let (_, stored) = b.client().get(&format!("/v1/executions/{id}")).await;
    assert_eq!(stored["status"], "completed", "{stored}");
    assert_eq!(told["status"], "completed", "{told}");
    assert_eq!(told["started_at"], stored["started_at"], "told {told}, stored {stored}");
}

/// Two hosts on the database `warden` of a cluster of their own (with
/// `extra` TOML in their config), with data dirs `a` and `b` under `tmp`.
struct TwoHosts {
    cluster: PgCluster,
    tmp: tempfile::TempDir,
    a: Warden,
    b: Warden,
}

fn two_hosts(extra: &str) -> TwoHosts {
    let cluster = PgCluster::start();
    cluster.psql("CREATE DATABASE warden").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = shared_config(tmp.path(), &cluster, extra);
    let args = ["--config", config.to_str().unwrap()];
    let a = Warden::start_with(&tmp.path().join("a"), &args);
    let b = Warden::start_with(&tmp.path().join("b"), &args);
    TwoHosts { cluster, tmp, a, b }
}

/// Waits until `server` serves `agent` (deployed on another host).
async fn wait_loaded(server: &Server, agent: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while server.get(&format!("/v1/agents/{agent}")).await.0 != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "{agent} never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a deploy on `server` until it ends.
async fn deploy_ended(server: &Server, location: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, job) = server.get(location).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["status"] != "compiling" {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "still compiling: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_deploy_is_seen_from_every_host_and_taken_over_when_its_host_dies() {
    let TwoHosts {
        cluster,
        tmp: _tmp,
        a,
        b,
    } = two_hosts("");
    let (on_a, on_b) = (a.client(), b.client());
    // Made on A, followed on B.
    let location = on_a.deploy_in_background("js", "hello").await;
    let done = deploy_ended(&on_b, &location).await;
    assert_eq!(done["status"], "deployed", "{done}");
    assert_eq!(done["deployed"]["agent"]["name"], "hello-js", "{done}");

    // A dies while it compiles another: once A's lease runs out, B takes the
    // deploy over, and makes it once.
    let location = on_a.deploy_in_background("js", "support").await;
    a.sigkill();
    let done = deploy_ended(&on_b, &location).await;
    assert_eq!(done["status"], "deployed", "{done}");
    assert!(
        b.log_lines()
            .iter()
            .any(|l| l.contains("resuming deploys made in the background")),
        "B took it over (it had not ended before the kill)"
    );
    let versions = rows(
        &cluster,
        "SELECT count(*) FROM agent_versions v JOIN agents a ON a.id = v.agent_id WHERE a.name = 'support-js'",
    );
    assert_eq!(versions, [["1"]]);
    wait_loaded(&on_b, "support-js").await;
    b.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_in_memory_for_a_decision_holds_its_slot_on_every_host() {
    let TwoHosts {
        cluster: _cluster,
        tmp: _tmp,
        a,
        b,
    } = two_hosts("");
    let (on_a, on_b) = (a.client(), b.client());
    // Not durable: a run waiting for a decision stays in its host's memory.
    on_b.deploy(
        "ledger",
        json!({ "name": "one-at-a-time", "durable": false, "max_concurrency": 1 }),
    )
    .await;
    wait_loaded(&on_a, "one-at-a-time").await;
    let first = start_async(&on_a, "one-at-a-time", json!({ "approve": "First?" })).await;
    let waiting = poll(&on_a, &first, |e| e["status"] == "awaiting_approval").await;
    // The other host does not take the agent's one slot meanwhile.
    let second = start_async(&on_b, "one-at-a-time", json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, meanwhile) = on_b.get(&format!("/v1/executions/{second}")).await;
    assert_eq!(meanwhile["status"], "queued", "{meanwhile} while {waiting} waits");
    // Decided (on the other host): the first ends, then the second runs.
    approve_pending(&on_b, &first).await;
    let first = poll(&on_a, &first, ended).await;
    assert_eq!(first["status"], "completed", "{first}");
    let second = poll(&on_b, &second, ended).await;
    assert_eq!(second["status"], "completed", "{second}");
    assert!(
        second["started_at"].as_str().unwrap() >= first["completed_at"].as_str().unwrap(),
        "{second} started before {first} ended"
    );

    // A dies with another run waiting in its memory: once its lease ran out,
    // the run ends `host_restart` (it cannot go on), and its slot is free.
    let lost = start_async(&on_a, "one-at-a-time", json!({ "approve": "Lost?" })).await;
    poll(&on_a, &lost, |e| e["status"] == "awaiting_approval").await;
    let next = start_async(&on_b, "one-at-a-time", json!({})).await;
    a.sigkill();
    let lost = poll(&on_b, &lost, ended).await;
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["error"]["code"], "host_restart", "{lost}");
    assert_eq!(poll(&on_b, &next, ended).await["status"], "completed");
    b.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_unloaded_while_it_waits_is_resumed_once_decided_on_another_host() {
    let TwoHosts { cluster, tmp, a, b } = two_hosts("[durability]\napproval_grace_ms = 200");
    let (on_a, on_b) = (a.client(), b.client());
    on_a.deploy("ledger", json!({ "max_concurrency": 1 })).await;
    wait_loaded(&on_b, "ledger").await;
    let id = start_async(&on_a, "ledger", json!({ "approve": "Go on?" })).await;
    poll(&on_a, &id, |e| e["status"] == "awaiting_approval").await;
    // Past its grace A unloads it: nobody's, and its slot free everywhere.
    wait_unloaded(&cluster, &id).await;
    let other = start_async(&on_b, "ledger", json!({})).await;
    assert_eq!(poll(&on_b, &other, ended).await["status"], "completed");
    // Decided on B: one host (B at once, or A once it read the decision)
    // takes it and resumes it; it ends once.
    approve_pending(&on_b, &id).await;
    let done = poll(&on_a, &id, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    let owner = rows(&cluster, &format!("SELECT owner FROM executions WHERE id = '{id}'"));
    let hosts = [host_id(&tmp.path().join("a")), host_id(&tmp.path().join("b"))];
    assert!(hosts.contains(&owner[0][0]), "{owner:?}");
    let resumed = on_a.get(&format!("/v1/executions/{id}/events?limit=1000")).await.1["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "status" && e["data"]["status"] == "running")
        .count();
    assert_eq!(resumed, 2, "started, then resumed once");
    // A conversation's turn that waited, unloaded, resumes the same way.
    let (status, turn) = on_a
        .post_json(
            "/v1/agents/ledger/execute",
            &json!({ "input": { "approve": "Turn?" }, "conversation": true, "mode": "async" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{turn}");
    let turn = turn["id"].as_str().unwrap().to_owned();
    poll(&on_a, &turn, |e| e["status"] == "awaiting_approval").await;
    wait_unloaded(&cluster, &turn).await;
    approve_pending(&on_b, &turn).await;
    let done = poll(&on_b, &turn, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    a.sigkill();
    b.sigkill();
}

/// Waits until the run `id`, waiting for a decision, is unloaded: held by
/// no host.
async fn wait_unloaded(cluster: &PgCluster, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rows(
        cluster,
        &format!("SELECT owner IS NULL FROM executions WHERE id = '{id}'"),
    ) != [["t"]]
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "its host never released the run it unloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decided_run_resumes_only_once_its_agent_has_a_slot_on_every_host() {
    // The model answers after 3 s: a run asking it holds its agent's slot.
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::Slow(Duration::from_secs(3))).await;
    let config = format!(
        "[durability]\napproval_grace_ms = 200\n[[llm.providers]]\nname = \"fake\"\nkind = \"openai\"\n\
         base_url = \"{}/v1\"\napi_key_env = \"CARGO_PKG_NAME\"\nmodels = [\"gpt-test\"]\n",
        fake.url()
    );
    let TwoHosts {
        cluster,
        tmp: _tmp,
        a,
        b,
    } = two_hosts(&config);
    let (on_a, on_b) = (a.client(), b.client());
    on_a.deploy("ledger", json!({ "max_concurrency": 1, "models": ["gpt-test"] }))
        .await;
    wait_loaded(&on_b, "ledger").await;
    let waiting = start_async(&on_a, "ledger", json!({ "approve": "Go on?" })).await;
    poll(&on_a, &waiting, |e| e["status"] == "awaiting_approval").await;
    wait_unloaded(&cluster, &waiting).await;
    // B runs another, which takes the agent's one slot.
    let busy = start_async(&on_b, "ledger", json!({ "calls": 1, "model": "gpt-test" })).await;
    poll(&on_b, &busy, |e| e["status"] == "running").await;
    // Decided meanwhile, on A: it does not resume while B's run holds the
    // slot, on either host.
    approve_pending(&on_a, &waiting).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, meanwhile) = on_b.get(&format!("/v1/executions/{waiting}")).await;
        let (_, holder) = on_a.get(&format!("/v1/executions/{busy}")).await;
        if holder["status"] != "running" {
            break;
        }
        assert_eq!(
            meanwhile["status"], "awaiting_approval",
            "{meanwhile} resumed while {holder} holds the slot"
        );
    }
    let (_, holder) = on_a.get(&format!("/v1/executions/{busy}")).await;
    assert_eq!(
        holder["status"], "running",
        "the run on B held the slot throughout: {holder}"
    );
    // Once B's run ended, it resumes, and ends once, approved.
    let busy = poll(&on_b, &busy, ended).await;
    assert_eq!(busy["status"], "completed", "{busy}");
    let done = poll(&on_a, &waiting, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        done["completed_at"].as_str().unwrap() >= busy["completed_at"].as_str().unwrap(),
        "{done} ended before {busy}"
    );
    a.sigkill();
    b.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_one_memory_from_two_hosts_keep_within_its_cap() {
    let TwoHosts {
        cluster: _cluster,
        tmp: _tmp,
        a,
        b,
    } = two_hosts("");
    let (on_a, on_b) = (a.client(), b.client());
    let (status, store) = on_a
        .post_json("/v1/memory-stores", &json!({ "name": "kb", "max_bytes": 1000 }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{store}");
    // Forty writes of about 100 bytes each, half to each host, all at once:
    // nine fit.
    let value = "x".repeat(96);
    let writes = (0..40).map(|i| {
        let host = if i % 2 == 0 { &on_a } else { &on_b };
        let req = host
            .http
            .put(host.url(&format!("/v1/memory-stores/kb/entries/k{i:02}")))
            .json(&json!({ "value": value }));
        host.send(req)
    });
    let answers = futures_util::future::join_all(writes).await;
    let stored = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    for (status, body) in &answers {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::UNPROCESSABLE_ENTITY,
            "{status} {body}"
        );
    }
    let (_, store) = on_b.get("/v1/memory-stores/kb").await;
    assert!(store["bytes"].as_u64().unwrap() <= 1000, "{store}");
    assert_eq!(store["entries"], stored, "{store}");
    assert_eq!(stored, 9, "{store}");
    a.sigkill();
    b.sigkill();
}
