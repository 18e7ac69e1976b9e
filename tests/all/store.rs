//! The store's conformance suite: what every backend must do, written against
//! the store traits alone (`warden_host::store`). The embedded SQLite store runs
//! it here; another backend runs the same `conformance` with its own `Stores`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::value::RawValue;
use warden_host::config::{HostLimits, StoreConfig};
use warden_host::digest::sha256_hex;
use warden_host::events::{EventData, EventLog, EventSink};
use warden_host::manifest::Manifest;
use warden_host::record::{
    Agent, AgentVersion, ApiKey, Approval, ApprovalStatus, Artifact, Decision, DeployJob, Deployed, ExecError,
    Execution, JobError, JobStatus, JournalEntry, JournalKind, LogLevel, LogLine, LogStream, Role, Status, Step,
};
use warden_host::store::{
    ApprovalFilter, BlobError, EventBudget, ExecutionFilter, FinalRecord, IdempotencyRecord, Slots, StoreError, Stores,
};
use warden_tests::postgres::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    conformance(|dir| async move { Stores::open(&dir).expect("the SQLite store opens") }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let cluster = PgCluster::start();
    let databases = AtomicUsize::new(0);
    conformance(|dir| {
        // A fresh database for each check.
        let db = format!("conformance_{}", databases.fetch_add(1, Ordering::Relaxed));
        cluster.psql(&format!("CREATE DATABASE {db}")).unwrap();
        let config = StoreConfig {
            url: Some(cluster.url(&db)),
            ..StoreConfig::default()
        };
        async move { Stores::connect(&dir, &config).await.expect("the Postgres store opens") }
    })
    .await;
}

/// Every check, each on a fresh store from `open` (given a fresh data dir).
pub async fn conformance<F, Fut>(open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = Stores>,
{
    type Check = fn(Stores) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    let checks: [(&str, Check); 18] = [
        ("executions", |s| Box::pin(executions(s))),
        ("the shared queue", |s| Box::pin(shared_queue(s))),
        ("finish and the run record", |s| Box::pin(finish(s))),
        ("events", |s| Box::pin(events(s))),
        ("agents", |s| Box::pin(agents(s))),
        ("deploys made in the background", |s| Box::pin(deploy_jobs(s))),
        ("keys", |s| Box::pin(keys(s))),
        ("kv", |s| Box::pin(kv(s))),
        ("idempotency", |s| Box::pin(idempotency(s))),
        ("writes commit in order", |s| Box::pin(order(s))),
        ("blobs and the sweep", |s| Box::pin(sweep(s))),
        ("journals", |s| Box::pin(journals(s))),
        ("approvals", |s| Box::pin(approvals(s))),
        ("conversations", |s| {
            Box::pin(super::store_conversations::conversations(s))
        }),
        ("memory", |s| Box::pin(super::store_conversations::memory(s))),
        ("schedules", |s| Box::pin(super::store_triggers::schedules(s))),
        ("hooks", |s| Box::pin(super::store_triggers::hooks(s))),
        ("webhooks", |s| Box::pin(super::store_triggers::webhooks(s))),
    ];
    for (name, check) in checks {
        let tmp = tempfile::tempdir().unwrap();
        let stores = open(tmp.path().to_owned()).await;
        eprintln!("conformance: {name}");
        check(stores.clone()).await;
        stores.close().await;
        // After close, writes are refused, not lost in silence.
        assert!(
            matches!(stores.kv.delete("a", "k").await, Err(StoreError::Closed)),
            "{name}"
        );
    }
}

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

pub fn agent(id: &str, workspace: &str) -> Agent {
    Agent {
        id: id.into(),
        workspace: workspace.into(),
        name: format!("name-{id}"),
        description: "d".into(),
        latest_version: 1,
        created_at: 1,
        updated_at: 1,
    }
}

pub fn version(id: &str, agent_id: &str, n: u32, hash: &str) -> AgentVersion {
    let manifest = Manifest::from_json(r#"{"name":"x","tools":["kv"]}"#).unwrap();
    AgentVersion {
        id: id.into(),
        agent_id: agent_id.into(),
        version: n,
        label: Some("1.0".into()),
        limits: manifest.effective_limits(&HostLimits::default(), 8),
        manifest,
        component_hash: hash.into(),
        component_size: 3,
        created_at: n as i64,
    }
}

pub fn execution(id: &str, agent_id: &str, status: Status, created_at: i64) -> Execution {
    Execution {
        status,
        input: raw(r#"{"n":1}"#).into(),
        ..Execution::queued(
            id.into(),
            &agent(agent_id, "w"),
            &version("ver_1", agent_id, 1, "h"),
            created_at,
        )
    }
}

/// The ids of what a restart recovers.
async fn unfinished_ids(s: &Stores) -> Vec<String> {
    let unfinished = s.executions.unfinished().await.unwrap();
    unfinished.into_iter().map(|e| e.id).collect()
}

/// Agent `agt_a` may run 3 at once, others 5; version `ver_x` is not known;
/// what runs on this host, and the decided runs it would resume, as set.
#[derive(Default)]
struct Caps(
    std::sync::Mutex<std::collections::HashMap<String, usize>>,
    std::sync::Mutex<Vec<String>>,
);

impl Caps {
    fn set(&self, here: &[(&str, usize)]) {
        *self.0.lock().unwrap() = here.iter().map(|(a, n)| (a.to_string(), *n)).collect();
    }
}

impl Slots for Caps {
    fn here(&self) -> std::collections::HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
    fn of_agent(&self, agent_id: &str) -> Option<usize> {
        Some(if agent_id == "agt_a" { 3 } else { 5 })
    }
    fn runnable(&self) -> Vec<String> {
        vec!["ver_1".into()]
    }
    fn held_back(&self) -> Vec<String> {
        self.1.lock().unwrap().clone()
    }
}

/// Claims from the shared queue: best first, within each agent's slots
/// across hosts, not before `run_after`, each once. (A store of one host has
/// no shared queue: nothing to claim.)
async fn shared_queue(s: Stores) {
    let waiting = |id: &str, agent: &str, priority: u8, created_at: i64| Execution {
        priority,
        ..execution(id, agent, Status::Queued, created_at)
    };
    for e in [
        execution("run_1", "agt_a", Status::Running, 1),
        execution("run_2", "agt_a", Status::Running, 2),
        waiting("low", "agt_a", 10, 3),
        waiting("high_1", "agt_a", 90, 4),
        waiting("high_2", "agt_a", 90, 5),
        waiting("other", "agt_b", 50, 6),
        Execution {
            run_after: Some(10_000),
            ..waiting("later", "agt_b", 100, 7)
        },
        Execution {
            agent_version_id: "ver_x".into(),
            ..waiting("unknown_version", "agt_b", 100, 8)
        },
    ] {
        s.executions.save(e).await.unwrap();
    }
    let caps = std::sync::Arc::new(Caps::default());
    caps.set(&[("agt_a", 2)]);
    let claim = |room| {
        let (s, caps) = (s.clone(), caps.clone());
        async move {
            let claimed = s.executions.claim(room, 1_000, caps.as_ref(), false).await.unwrap();
            claimed.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    if let Some(hinted) = s.executions.hinted() {
        // A hint reaches the listeners (this host's too): sent until heard,
        // as the listener may not listen yet.
        let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                s.executions.hint().await.unwrap();
                if tokio::time::timeout(std::time::Duration::from_millis(200), hinted.notified())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        });
        heard.await.expect("a hint is heard");
    }
    if !s.executions.shares_queue() {
        assert!(s.executions.hinted().is_none());
        assert!(claim(10).await.is_empty());
        assert!(s.executions.claim_one("low").await.unwrap().is_none());
        return;
    }
    // agt_a runs 2 of its 3: one more, its best; agt_b's due one; not the
    // one due later nor the version this host cannot run.
    assert_eq!(claim(10).await, ["high_1", "other"]);
    caps.set(&[("agt_a", 3), ("agt_b", 1)]);
    assert!(claim(10).await.is_empty(), "agt_a is full; nothing else is due");
    // Room limits a claim.
    s.executions.save(waiting("b1", "agt_b", 50, 9)).await.unwrap();
    s.executions.save(waiting("b2", "agt_b", 50, 10)).await.unwrap();
    assert_eq!(claim(1).await, ["b1"]);
    caps.set(&[("agt_a", 3), ("agt_b", 2)]);
    // A waiting one is claimed alone (to cancel it), once.
    assert_eq!(
        s.executions.claim_one("b2").await.unwrap().map(|e| e.id).as_deref(),
        Some("b2")
    );
    assert!(s.executions.claim_one("b2").await.unwrap().is_none());
    // A claimed one's end frees its agent's slot.
    s.executions
        .save(execution("run_1", "agt_a", Status::Completed, 1))
        .await
        .unwrap();
    caps.set(&[("agt_a", 2), ("agt_b", 3)]);
    assert_eq!(claim(10).await, ["high_2"]);
    // Whereabouts: ended (as stored), not stored; claimed here is not elsewhere.
    let found = s
        .executions
        .whereabouts(&["run_1".into(), "high_2".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(found.ended.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["run_1"]);
    assert_eq!(found.gone, ["nope"]);
    assert!(found.elsewhere.is_empty());
    // A write of a claimed execution, still queued, keeps the claim.
    s.executions.save(waiting("high_2", "agt_a", 90, 5)).await.unwrap();
    assert!(s.executions.claim_one("high_2").await.unwrap().is_none());
    // What this host held, after a restart, waits again for any host.
    let unfinished = unfinished_ids(&s).await;
    assert_eq!(unfinished, ["run_2"]);
    caps.set(&[("agt_a", 1)]);
    assert_eq!(claim(10).await, ["high_1", "high_2", "other", "b1", "b2"]);

    // A decided run, unloaded while it waited (released: nobody holds it),
    // is claimed to resume only when named, within its agent's slots, by
    // its priority among the waiting, and once.
    let decided = Execution {
        priority: 100,
        ..execution("decided", "agt_b", Status::AwaitingApproval, 11)
    };
    s.executions.save(decided).await.unwrap();
    s.executions.release_waiting().await.unwrap();
    s.executions.save(waiting("b3", "agt_b", 50, 12)).await.unwrap();
    caps.set(&[("agt_a", 3), ("agt_b", 4)]);
    assert_eq!(claim(10).await, ["b3"], "not named: left alone");
    s.executions.save(waiting("b4", "agt_b", 50, 13)).await.unwrap();
    // One still asked (its request pending) is not taken, named or not.
    let asked = Execution {
        priority: 100,
        ..execution("asked", "agt_b", Status::AwaitingApproval, 11)
    };
    s.executions.save(asked).await.unwrap();
    s.executions.release_waiting().await.unwrap();
    s.approvals
        .create(request("apr_asked", "w1", "asked", None), Vec::new())
        .await
        .unwrap();
    *caps.1.lock().unwrap() = vec!["decided".into(), "asked".into(), "nope".into()];
    caps.set(&[("agt_a", 3), ("agt_b", 5)]);
    assert!(claim(10).await.is_empty(), "agt_b is full");
    // One slot left: the decided run goes first (priority 100 over 50).
    caps.set(&[("agt_a", 3), ("agt_b", 4)]);
    let claimed = s.executions.claim(10, 1_000, caps.as_ref(), false).await.unwrap();
    let claimed: Vec<_> = claimed.iter().map(|e| (e.id.as_str(), e.status)).collect();
    assert_eq!(claimed, [("decided", Status::AwaitingApproval)]);
    caps.set(&[("agt_a", 3), ("agt_b", 3)]);
    assert_eq!(claim(10).await, ["b4"], "taken once; the asked one left");

    // A conversation's turn, this host's, waits for a slot the same way
    // when held back (it is not in the shared queue).
    let turn = Execution {
        conversation_id: Some("conv_1".into()),
        ..waiting("turn", "agt_b", 50, 14)
    };
    s.executions.save(turn).await.unwrap();
    caps.set(&[("agt_a", 3), ("agt_b", 4)]);
    assert!(claim(10).await.is_empty(), "not in the shared queue");
    *caps.1.lock().unwrap() = vec!["turn".into()];
    caps.set(&[("agt_a", 3), ("agt_b", 5)]);
    assert!(claim(10).await.is_empty(), "agt_b is full");
    caps.set(&[("agt_a", 3), ("agt_b", 4)]);
    let claimed = s.executions.claim(10, 1_000, caps.as_ref(), true).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, "turn");
    assert_eq!(claimed[0].conversation_id.as_deref(), Some("conv_1"));
    // Named again (the answer to its claim lost), it is claimed again; no
    // longer named, it is left to its host.
    assert_eq!(claim(10).await, ["turn"]);
    caps.1.lock().unwrap().clear();
    assert!(claim(10).await.is_empty(), "not named: left to its host");
}

fn line(seq: u32, message: &str) -> LogLine {
    LogLine {
        seq,
        ts: 5,
        level: LogLevel::Info,
        stream: LogStream::Log,
        message: message.into(),
    }
}

async fn executions(s: Stores) {
    s.agents
        .deploy(agent("agt_a", "w1"), version("ver_1", "agt_a", 1, "h"), None)
        .await
        .unwrap();
    s.agents
        .deploy(agent("agt_b", "w2"), version("ver_2", "agt_b", 1, "h"), None)
        .await
        .unwrap();
    for (i, (agent, status)) in [
        ("agt_a", Status::Queued),
        ("agt_a", Status::Running),
        ("agt_b", Status::Queued),
    ]
    .into_iter()
    .enumerate()
    {
        s.executions
            .save(execution(&format!("exec_{i}"), agent, status, 100 + i as i64))
            .await
            .unwrap();
    }
    // A run is of the host that claimed it from a shared queue: a write of
    // one nobody claimed is dropped, but for its waiting record.
    let mut e = execution("exec_0", "agt_a", Status::Running, 100);
    if s.executions.shares_queue() {
        s.executions.save(e.clone()).await.unwrap();
        let got = s.executions.get("exec_0").await.unwrap().unwrap();
        assert_eq!(got.status, Status::Queued, "not claimed: not started");
        assert!(s.executions.claim_one("exec_0").await.unwrap().is_some());
    }
    // Writes keep their order: the later save of the same row wins; what an
    // execution is created with stays.
    e.status = Status::Running;
    e.started_at = Some(150);
    s.executions.save(e.clone()).detach();
    e.fuel_used = Some(7);
    e.priority = 70;
    s.executions.save(e).await.unwrap();
    let got = s.executions.get("exec_0").await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.started_at, got.fuel_used),
        (Status::Running, Some(150), Some(7))
    );
    assert_eq!(got.priority, 50, "fixed at creation");
    assert_eq!(got.input.get(), r#"{"n":1}"#);
    assert!(s.executions.get("exec_nope").await.unwrap().is_none());
    assert_eq!(
        s.executions.workspace_of("exec_2").await.unwrap().as_deref(),
        Some("w2")
    );
    assert_eq!(s.executions.workspace_of("exec_nope").await.unwrap(), None);

    // A status change applies only from the status it names.
    s.executions
        .set_status("exec_1", Status::Queued, Status::Cancelled)
        .await
        .unwrap();
    assert_eq!(
        s.executions.get("exec_1").await.unwrap().unwrap().status,
        Status::Running
    );
    s.executions
        .set_status("exec_1", Status::Running, Status::CancelRequested)
        .await
        .unwrap();
    assert_eq!(s.executions.count(Status::CancelRequested).await.unwrap(), 1);
    s.executions.link_retry("exec_1", "exec_9").await.unwrap();
    assert_eq!(
        s.executions.get("exec_1").await.unwrap().unwrap().retried_by.as_deref(),
        Some("exec_9")
    );
    let unfinished = unfinished_ids(&s).await;
    // Waiting ones stay in a shared queue for any host to claim.
    let expected: &[&str] = if s.executions.shares_queue() {
        &["exec_0", "exec_1"]
    } else {
        &["exec_0", "exec_1", "exec_2"]
    };
    assert_eq!(unfinished, expected, "oldest first");

    // Listing: the workspace's only, newest first, filtered, in cursor pages.
    let filter = |limit| ExecutionFilter {
        workspace: "w1".into(),
        limit,
        ..Default::default()
    };
    let (page, more) = s.executions.list(filter(1)).await.unwrap();
    assert_eq!((page[0].id.as_str(), more), ("exec_1", true));
    let (page, more) = s
        .executions
        .list(ExecutionFilter {
            after: Some("exec_1".into()),
            ..filter(1)
        })
        .await
        .unwrap();
    assert_eq!((page[0].id.as_str(), more), ("exec_0", false));
    let (page, _) = s
        .executions
        .list(ExecutionFilter {
            status: Some(Status::Running),
            ..filter(10)
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let (page, _) = s
        .executions
        .list(ExecutionFilter {
            created_after: Some(100),
            trigger: Some("api".into()),
            agent_id: Some("agt_a".into()),
            ..filter(10)
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
}

async fn finish(s: Stores) {
    s.agents
        .deploy(agent("agt_a", "w1"), version("ver_1", "agt_a", 1, "h"), None)
        .await
        .unwrap();
    let mut e = execution("exec_f", "agt_a", Status::Running, 10);
    s.executions.save(e.clone()).await.unwrap();
    let log = EventLog::new("exec_f", 0, Some(s.events.clone() as Arc<dyn EventSink>));
    log.emit(EventData::Status(Status::Running));
    e.status = Status::Failed;
    e.error = Some(ExecError::host("trap", "it trapped"));
    e.completed_at = Some(20);
    e.n_logs = 3;
    let events = log.end(&EventData::end_of(&e));
    let logs = vec![line(1, "a"), line(2, "b"), line(3, "c")];
    let steps = vec![Step {
        seq: 1,
        name: "s".into(),
        detail: raw(r#"{"k":1}"#),
        started_at: 1,
        ended_at: 2,
    }];
    s.executions
        .finish(FinalRecord {
            deliveries: Vec::new(),
            turns: Vec::new(),
            execution: e,
            logs,
            steps,
            events,
        })
        .await
        .unwrap();
    let got = s.executions.get("exec_f").await.unwrap().unwrap();
    assert_eq!(got.status, Status::Failed);
    assert_eq!(got.error.unwrap().code, "trap");
    let (page, more) = s.executions.logs("exec_f", 1, 1).await.unwrap();
    assert_eq!((page[0].message.as_str(), more), ("b", true));
    assert_eq!(
        s.executions.steps("exec_f").await.unwrap()[0].detail.get(),
        r#"{"k":1}"#
    );
    // The last events came with the record.
    let stored = s.events.read("exec_f", 0, n(100)).await.unwrap();
    let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["status", "status", "error"]);
    assert_eq!(s.events.last_seq("exec_f").await.unwrap(), 3);
    assert_eq!(s.executions.unfinished().await.unwrap().len(), 0);

    let artifact = Artifact {
        id: "art_1".into(),
        execution_id: "exec_f".into(),
        name: "a.png".into(),
        media_type: "image/png".into(),
        size: 3,
        sha256: "abc".into(),
        created_at: 3,
    };
    s.executions.put_artifact(artifact).await.unwrap();
    assert_eq!(s.executions.artifacts("exec_f").await.unwrap()[0].name, "a.png");
    assert!(s.executions.artifact("exec_f", "art_1").await.unwrap().is_some());
    assert!(s.executions.artifact("exec_other", "art_1").await.unwrap().is_none());
}

/// A read budget of `events` events, however many bytes.
fn n(events: usize) -> EventBudget {
    EventBudget {
        events,
        bytes: usize::MAX,
    }
}

async fn events(s: Stores) {
    assert_eq!(s.events.last_seq("exec_e").await.unwrap(), 0);
    let sink: Arc<dyn EventSink> = s.events.clone();
    let log = EventLog::new("exec_e", 0, Some(Arc::clone(&sink)));
    log.flush();
    for i in 0..25 {
        log.emit(EventData::Log(&line(i, &format!("line {i}"))));
        if i % 10 == 9 {
            // A later write, awaited: everything handed over before it is stored.
            s.kv.set("agt", "barrier", i.to_string(), 0).await.unwrap();
        }
    }
    s.kv.set("agt", "barrier", "end".into(), 0).await.unwrap();
    let all = s.events.read("exec_e", 0, n(1000)).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=25).collect::<Vec<_>>()
    );
    let page = s.events.read("exec_e", 9, n(5)).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [10, 11, 12, 13, 14]);
    let v: serde_json::Value = serde_json::from_str(page[0].json()).unwrap();
    assert_eq!(v["data"]["message"], "line 9");
    assert!(s.events.read("exec_e", 25, n(10)).await.unwrap().is_empty());
    assert_eq!(s.events.last_seq("exec_e").await.unwrap(), 25);
    // A log continued after a restart numbers on from the stored ones.
    let continued = EventLog::new("exec_e", 25, Some(sink));
    continued.emit(EventData::Status(Status::Queued));
    continued.emit(EventData::Status(Status::Running));
    assert_eq!(s.events.read("exec_e", 25, n(10)).await.unwrap().len(), 0, "held back");
    continued.flush();
    s.kv.set("agt", "barrier", "again".into(), 0).await.unwrap();
    assert_eq!(s.events.read("exec_e", 24, n(10)).await.unwrap().len(), 3);
    assert!(s.events.read("exec_other", 0, n(10)).await.unwrap().is_empty());

    // A read stops once its bytes are spent (with at least one event), and a
    // large log handed over at once is read page by page all the same.
    let big = EventLog::new("exec_big", 0, Some(s.events.clone()));
    big.flush();
    let text = "b".repeat(10_000);
    for i in 0..200 {
        big.emit(EventData::Log(&line(i, &text)));
    }
    s.kv.set("agt", "barrier", "big".into(), 0).await.unwrap();
    let budget = |bytes| EventBudget { events: 1000, bytes };
    let one = s.events.read("exec_big", 0, budget(1)).await.unwrap();
    assert_eq!(one.iter().map(|e| e.seq).collect::<Vec<_>>(), [1], "at least one event");
    let some = s.events.read("exec_big", 10, budget(50_000)).await.unwrap();
    assert_eq!(some.iter().map(|e| e.seq).collect::<Vec<_>>(), [11, 12, 13, 14, 15]);
    assert_eq!(s.events.read("exec_big", 0, n(1000)).await.unwrap().len(), 200);
}

async fn agents(s: Stores) {
    let mut a = agent("agt_a", "w1");
    s.agents
        .deploy(a.clone(), version("ver_1", "agt_a", 1, "h1"), None)
        .await
        .unwrap();
    a.latest_version = 2;
    a.description = "newer".into();
    s.agents
        .deploy(a, version("ver_2", "agt_a", 2, "h2"), None)
        .await
        .unwrap();
    let agents = s.agents.agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!((agents[0].latest_version, agents[0].description.as_str()), (2, "newer"));
    let versions = s.agents.versions().await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(versions[1].manifest.tools[..], ["kv"]);
    assert_eq!(versions[1].component_hash, "h2");
    // A version number is the agent's once.
    assert!(
        s.agents
            .deploy(agent("agt_a", "w1"), version("ver_3", "agt_a", 2, "h"), None)
            .await
            .is_err()
    );
}

fn deploy_job(id: &str, hash: &str, created_at: i64) -> DeployJob {
    DeployJob {
        id: id.into(),
        workspace: "w1".into(),
        agent_name: "x".into(),
        status: JobStatus::Compiling,
        component_bytes: 4,
        component_hash: hash.into(),
        manifest: r#"{"name":"x"}"#.into(),
        created_at,
        ended_at: None,
        elapsed_ms: 0,
        deployed: None,
        error: None,
    }
}

async fn deploy_jobs(s: Stores) {
    let (good, bad) = (sha256_hex(b"good"), sha256_hex(b"bad"));
    let blobs = s.blobs.clone();
    let (g, b) = (good.clone(), bad.clone());
    tokio::task::spawn_blocking(move || {
        blobs.put(&g, b"good").unwrap();
        blobs.put(&b, b"bad").unwrap();
    })
    .await
    .unwrap();
    s.agents.save_deploy_job(deploy_job("dep_2", &bad, 20)).await.unwrap();
    s.agents.save_deploy_job(deploy_job("dep_1", &good, 10)).await.unwrap();
    let first = s.agents.deploy_job("dep_1").await.unwrap().expect("stored");
    assert_eq!(first.status, JobStatus::Compiling);
    assert_eq!((first.workspace.as_str(), first.agent_name.as_str()), ("w1", "x"));
    assert_eq!(
        (first.component_hash.as_str(), first.component_bytes),
        (good.as_str(), 4)
    );
    assert_eq!(first.manifest, r#"{"name":"x"}"#, "the manifest as it was sent");
    assert!(first.ended_at.is_none() && first.deployed.is_none() && first.error.is_none());
    assert!(s.agents.deploy_job("dep_nope").await.unwrap().is_none());
    // What a restart resumes: what still compiles, oldest first. Nothing is
    // another host's.
    let taken = s.agents.take_deploy_jobs(true).await.unwrap();
    assert_eq!(
        taken.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["dep_1", "dep_2"]
    );
    assert!(s.agents.take_deploy_jobs(false).await.unwrap().is_empty());

    // Deployed: the job ends with its version, in one write.
    let mut deployed = first;
    let (a, v) = (agent("agt_a", "w1"), version("ver_1", "agt_a", 1, &good));
    let outcome = Deployed {
        agent: a.clone(),
        version: v.clone(),
        warnings: vec!["a warning".into()],
    };
    deployed.end(Ok(outcome), 50);
    s.agents.deploy(a, v, Some(deployed)).await.unwrap();
    let got = s.agents.deploy_job("dep_1").await.unwrap().unwrap();
    assert_eq!(got.status, JobStatus::Deployed);
    assert_eq!((got.ended_at, got.elapsed_ms), (Some(50), 40));
    let outcome = got.deployed.expect("what it deployed");
    assert_eq!(
        (outcome.agent.id.as_str(), outcome.version.id.as_str()),
        ("agt_a", "ver_1")
    );
    assert_eq!(outcome.version.component_hash, good);
    assert_eq!(outcome.warnings, ["a warning"]);
    assert_eq!(s.agents.versions().await.unwrap().len(), 1);
    // Failed.
    let mut failed = s.agents.deploy_job("dep_2").await.unwrap().unwrap();
    failed.end(
        Err(JobError {
            code: "wrong_world".into(),
            message: "no".into(),
        }),
        60,
    );
    s.agents.save_deploy_job(failed).await.unwrap();
    let got = s.agents.deploy_job("dep_2").await.unwrap().unwrap();
    assert_eq!(got.status, JobStatus::Failed);
    let error = got.error.expect("why");
    assert_eq!((error.code.as_str(), error.message.as_str()), ("wrong_world", "no"));
    assert!(got.deployed.is_none());
    assert!(
        s.agents.take_deploy_jobs(true).await.unwrap().is_empty(),
        "none compiles"
    );

    // The sweep takes ended jobs, and a failed one's component nothing else
    // refers to; one still compiling and its component stay.
    s.agents.save_deploy_job(deploy_job("dep_3", &bad, 70)).await.unwrap();
    s.executions.sweep(100).await.unwrap();
    for id in ["dep_1", "dep_2"] {
        assert!(s.agents.deploy_job(id).await.unwrap().is_none(), "{id} swept");
    }
    assert!(s.agents.deploy_job("dep_3").await.unwrap().is_some(), "still compiling");
    let blobs = s.blobs.clone();
    let (g, b) = (good.clone(), bad.clone());
    tokio::task::spawn_blocking(move || {
        assert!(blobs.get(&g).is_ok(), "a version refers to it");
        assert!(blobs.get(&b).is_ok(), "a deploy still compiling refers to it");
    })
    .await
    .unwrap();
    let mut failed = s.agents.deploy_job("dep_3").await.unwrap().unwrap();
    failed.end(
        Err(JobError {
            code: "component_too_costly".into(),
            message: "no".into(),
        }),
        80,
    );
    s.agents.save_deploy_job(failed).await.unwrap();
    s.executions.sweep(100).await.unwrap();
    let blobs = s.blobs.clone();
    tokio::task::spawn_blocking(move || {
        assert!(blobs.get(&bad).is_err(), "nothing refers to it any more");
        assert!(blobs.get(&good).is_ok());
    })
    .await
    .unwrap();
}

async fn keys(s: Stores) {
    assert!(!s.keys.any_active().await.unwrap());
    let key = |id: &str, workspace: &str| ApiKey {
        id: id.into(),
        workspace: workspace.into(),
        name: "n".into(),
        role: Role::Admin,
        created_at: 1,
        revoked_at: None,
    };
    s.keys.insert(key("key_1", "w1"), "d1".into()).await.unwrap();
    s.keys.insert(key("key_2", "w2"), "d2".into()).await.unwrap();
    assert!(s.keys.any_active().await.unwrap());
    let (found, digest) = s.keys.find("key_1").await.unwrap().unwrap();
    assert_eq!(
        (found.workspace.as_str(), found.role, digest.as_str()),
        ("w1", Role::Admin, "d1")
    );
    assert_eq!(s.keys.list(Some("w2")).await.unwrap().len(), 1);
    assert_eq!(s.keys.list(None).await.unwrap().len(), 2);
    // Another workspace's key is not revoked, and not shown.
    assert!(s.keys.revoke("key_1", Some("w2"), 5).await.unwrap().is_none());
    assert!(s.keys.find("key_1").await.unwrap().unwrap().0.revoked_at.is_none());
    let revoked = s.keys.revoke("key_1", Some("w1"), 5).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(5));
    // Revoking twice keeps the first time.
    assert_eq!(
        s.keys.revoke("key_1", None, 9).await.unwrap().unwrap().revoked_at,
        Some(5)
    );
    s.keys.revoke("key_2", None, 9).await.unwrap();
    assert!(!s.keys.any_active().await.unwrap());
    assert!(s.keys.revoke("key_nope", None, 9).await.unwrap().is_none());
}

async fn kv(s: Stores) {
    for k in ["b", "a1", "a2"] {
        s.kv.set("agt_x", k, format!("\"{k}\""), 1).detach();
    }
    s.kv.set("agt_y", "a1", "1".into(), 1).await.unwrap();
    assert_eq!(s.kv.get("agt_x", "a1").await.unwrap().as_deref(), Some("\"a1\""));
    assert_eq!(s.kv.list("agt_x", "a", 10).await.unwrap(), ["a1", "a2"]);
    assert_eq!(s.kv.list("agt_x", "", 2).await.unwrap(), ["a1", "a2"]);
    s.kv.set("agt_x", "a1", "2".into(), 2).await.unwrap();
    assert_eq!(s.kv.get("agt_x", "a1").await.unwrap().as_deref(), Some("2"));
    s.kv.delete("agt_x", "a1").await.unwrap();
    assert!(s.kv.get("agt_x", "a1").await.unwrap().is_none());
    assert_eq!(
        s.kv.get("agt_y", "a1").await.unwrap().as_deref(),
        Some("1"),
        "per agent"
    );
}

/// A write is never committed before the writes made earlier, whichever store
/// they went to: a run's kv writes and artifacts need only come after its start
/// is made, not after it is committed.
async fn order(s: Stores) {
    s.agents
        .deploy(agent("agt_a", "w"), version("ver_1", "agt_a", 1, "h"), None)
        .await
        .unwrap();
    for i in 0..200 {
        let id = format!("exec_{i}");
        let saved = s.executions.save(execution(&id, "agt_a", Status::Queued, i));
        if s.executions.shares_queue() {
            // A run starts once its host claimed it from the shared queue.
            saved.await.unwrap();
            assert!(s.executions.claim_one(&id).await.unwrap().is_some());
        } else {
            saved.detach();
        }
        s.executions.set_running(&id, 1_000 + i).detach();
        s.kv.set("agt_a", &id, "1".into(), 1).await.unwrap();
        let stored = s.executions.get(&id).await.unwrap().expect("saved before");
        assert_eq!(stored.status, Status::Running, "{id}");
        assert_eq!(stored.started_at, Some(1_000 + i), "{id}");
    }
}

async fn idempotency(s: Stores) {
    let record = |key: &str, execution_id: &str, at| IdempotencyRecord {
        key: key.into(),
        request_hash: "h".into(),
        execution_id: execution_id.into(),
        created_at: at,
    };
    s.idempotency.put(record("k1", "exec_1", 10)).detach();
    s.idempotency.put(record("k2", "exec_2", 20)).await.unwrap();
    assert_eq!(s.idempotency.load(15).await.unwrap(), [record("k2", "exec_2", 20)]);
    // Forgotten only while it names that execution.
    s.idempotency.forget("k2", "exec_other").await.unwrap();
    assert_eq!(s.idempotency.load(0).await.unwrap().len(), 2);
    s.idempotency.forget("k2", "exec_2").await.unwrap();
    assert_eq!(s.idempotency.load(0).await.unwrap(), [record("k1", "exec_1", 10)]);
    s.idempotency.expire(11).await.unwrap();
    assert!(s.idempotency.load(0).await.unwrap().is_empty());
}

async fn sweep(s: Stores) {
    let (component, png) = (sha256_hex(b"wasm"), sha256_hex(b"png"));
    let blobs = s.blobs.clone();
    let (c, p) = (component.clone(), png.clone());
    tokio::task::spawn_blocking(move || {
        blobs.put(&c, b"wasm").unwrap();
        blobs.put(&c, b"wasm").unwrap();
        blobs.put(&p, b"png").unwrap();
        assert_eq!(blobs.get(&p).unwrap(), b"png");
        assert!(matches!(blobs.get(&sha256_hex(b"never")), Err(BlobError::Missing)));
        // Bytes stored under another hash are not served as that hash.
        let wrong = sha256_hex(b"other");
        blobs.put(&wrong, b"not other").unwrap();
        assert!(matches!(blobs.get(&wrong), Err(BlobError::Damaged)));
    })
    .await
    .unwrap();
    s.agents
        .deploy(agent("agt_a", "w1"), version("ver_1", "agt_a", 1, &component), None)
        .await
        .unwrap();
    let mut old = execution("exec_old", "agt_a", Status::Completed, 1);
    old.completed_at = Some(100);
    let mut recent = execution("exec_new", "agt_a", Status::Completed, 1);
    recent.completed_at = Some(10_000);
    let running = execution("exec_run", "agt_a", Status::Running, 1);
    for e in [old, recent, running] {
        let id = e.id.clone();
        let finished = e.status.is_terminal();
        let log = EventLog::new(&id, 0, None);
        let events = log.end(&EventData::end_of(&e));
        s.executions
            .finish(FinalRecord {
                deliveries: Vec::new(),
                turns: Vec::new(),
                execution: e,
                logs: vec![line(1, "x")],
                steps: Vec::new(),
                events,
            })
            .await
            .unwrap();
        for (aid, hash) in [("a", &png), ("c", &component)].into_iter().filter(|_| finished) {
            let artifact = Artifact {
                id: format!("art_{aid}_{id}"),
                execution_id: id.clone(),
                name: "f".into(),
                media_type: "image/png".into(),
                size: 3,
                sha256: hash.to_string(),
                created_at: 1,
            };
            s.executions.put_artifact(artifact).await.unwrap();
        }
    }
    s.executions.sweep(1_000).await.unwrap();
    assert!(s.executions.get("exec_old").await.unwrap().is_none());
    assert!(s.events.read("exec_old", 0, n(10)).await.unwrap().is_empty());
    assert!(s.executions.logs("exec_old", 0, 10).await.unwrap().0.is_empty());
    assert!(s.executions.artifacts("exec_old").await.unwrap().is_empty());
    assert!(
        s.executions.get("exec_new").await.unwrap().is_some(),
        "finished after the cut-off"
    );
    assert!(s.executions.get("exec_run").await.unwrap().is_some(), "not finished");
    // Blobs still referred to stay.
    let blobs = s.blobs.clone();
    let (c, p) = (component.clone(), png.clone());
    tokio::task::spawn_blocking(move || {
        assert!(blobs.get(&p).is_ok());
        assert!(blobs.get(&c).is_ok());
    })
    .await
    .unwrap();
    s.executions.sweep(100_000).await.unwrap();
    let blobs = s.blobs.clone();
    tokio::task::spawn_blocking(move || {
        assert!(blobs.get(&png).is_err(), "nothing refers to it any more");
        assert!(blobs.get(&component).is_ok(), "a deployed version refers to it");
    })
    .await
    .unwrap();
    assert!(s.executions.get("exec_run").await.unwrap().is_some());
}

fn entry(seq: u32, kind: JournalKind, done: bool, data: &str) -> JournalEntry {
    JournalEntry {
        seq,
        kind,
        fingerprint: format!("fp{seq}"),
        done,
        data: data.into(),
    }
}

/// Journals: entries in order, a start replaced by its result, gone with the
/// execution's final record.
async fn journals(s: Stores) {
    s.agents
        .deploy(agent("agt_a", "w1"), version("ver_1", "agt_a", 1, "h"), None)
        .await
        .unwrap();
    let e = execution("exec_j", "agt_a", Status::Running, 10);
    s.executions.save(e.clone()).await.unwrap();
    s.journal
        .append("exec_j", vec![entry(1, JournalKind::Seed, true, "\"00\"")])
        .detach();
    s.journal
        .append(
            "exec_j",
            vec![
                entry(2, JournalKind::WallClock, true, "5"),
                entry(3, JournalKind::Tool, false, r#"{"child":null}"#),
            ],
        )
        .await
        .unwrap();
    s.journal
        .append("exec_other", vec![entry(1, JournalKind::Llm, true, "{}")])
        .await
        .unwrap();
    let got = s.journal.load("exec_j").await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], entry(3, JournalKind::Tool, false, r#"{"child":null}"#));
    s.journal
        .append("exec_j", vec![entry(3, JournalKind::Tool, true, r#"{"ok":1}"#)])
        .await
        .unwrap();
    let got = s.journal.load("exec_j").await.unwrap();
    assert_eq!(
        got.iter().map(|e| (e.seq, e.done)).collect::<Vec<_>>(),
        [(1, true), (2, true), (3, true)]
    );
    assert_eq!(got[2].data, r#"{"ok":1}"#);
    // A finished execution is never replayed: its journal goes with its end.
    let mut ended = e;
    ended.status = Status::Completed;
    ended.completed_at = Some(20);
    s.executions
        .finish(FinalRecord {
            deliveries: Vec::new(),
            turns: Vec::new(),
            execution: ended,
            logs: Vec::new(),
            steps: Vec::new(),
            events: Vec::new(),
        })
        .await
        .unwrap();
    assert!(s.journal.load("exec_j").await.unwrap().is_empty());
    assert_eq!(s.journal.load("exec_other").await.unwrap().len(), 1);
}

fn request(id: &str, workspace: &str, execution_id: &str, expires_at: Option<i64>) -> Approval {
    Approval {
        id: id.into(),
        workspace: workspace.into(),
        agent_id: "agt_a".into(),
        execution_id: execution_id.into(),
        title: format!("title {id}"),
        detail: raw(r#"{"amount":5}"#).into(),
        approvers: vec!["finance".into()],
        status: ApprovalStatus::Pending,
        created_at: 1,
        expires_at,
        decided_at: None,
        decided_by: None,
        decided_by_name: None,
        comment: None,
        data: None,
    }
}

fn decision(status: ApprovalStatus, by: &str) -> Decision {
    Decision {
        status,
        at: 50,
        by: Some(by.into()),
        by_name: Some(format!("name-{by}")),
        comment: Some("because".into()),
        data: Some(raw(r#"{"x":1}"#).into()),
    }
}

/// Approvals: the first decision wins; listing by workspace, status, agent and
/// execution in cursor pages; due ones; waiting executions; cancelled with
/// their execution's end.
async fn approvals(s: Stores) {
    s.agents
        .deploy(agent("agt_a", "w1"), version("ver_1", "agt_a", 1, "h"), None)
        .await
        .unwrap();
    for id in ["exec_1", "exec_2", "exec_3"] {
        s.executions
            .save(execution(id, "agt_a", Status::Running, 10))
            .await
            .unwrap();
        s.executions
            .set_status(id, Status::Running, Status::AwaitingApproval)
            .await
            .unwrap();
    }
    s.approvals
        .create(request("apr_1", "w1", "exec_1", Some(100)), Vec::new())
        .await
        .unwrap();
    s.approvals
        .create(request("apr_2", "w1", "exec_2", None), Vec::new())
        .await
        .unwrap();
    s.approvals
        .create(request("apr_3", "w2", "exec_3", Some(10)), Vec::new())
        .await
        .unwrap();
    // Created again (a replay opening it anew): the first stays.
    let mut again = request("apr_1", "w1", "exec_1", Some(999));
    again.title = "other".into();
    s.approvals.create(again, Vec::new()).await.unwrap();
    let got = s.approvals.get("apr_1").await.unwrap().unwrap();
    assert_eq!((got.title.as_str(), got.expires_at), ("title apr_1", Some(100)));
    assert_eq!(got.detail.get(), r#"{"amount":5}"#);
    assert_eq!(got.approvers, ["finance"]);
    assert!(s.approvals.get("apr_nope").await.unwrap().is_none());

    // The first decision wins.
    s.approvals
        .decide("apr_1", decision(ApprovalStatus::Approved, "key_a"))
        .await
        .unwrap();
    s.approvals
        .decide("apr_1", decision(ApprovalStatus::Rejected, "key_b"))
        .await
        .unwrap();
    let got = s.approvals.get("apr_1").await.unwrap().unwrap();
    assert_eq!(got.status, ApprovalStatus::Approved);
    assert_eq!(got.decided_by.as_deref(), Some("key_a"));
    assert_eq!(got.decided_by_name.as_deref(), Some("name-key_a"));
    assert_eq!((got.decided_at, got.comment.as_deref()), (Some(50), Some("because")));
    assert_eq!(got.data.unwrap().get(), r#"{"x":1}"#);

    // Listing: the workspace's only, newest first, filtered, in cursor pages.
    let filter = |limit| ApprovalFilter {
        workspace: "w1".into(),
        limit,
        ..Default::default()
    };
    let (page, more) = s.approvals.list(filter(1)).await.unwrap();
    assert_eq!((page[0].id.as_str(), more), ("apr_2", true));
    let (page, more) = s
        .approvals
        .list(ApprovalFilter {
            after: Some("apr_2".into()),
            ..filter(1)
        })
        .await
        .unwrap();
    assert_eq!((page[0].id.as_str(), more), ("apr_1", false));
    let ids = |page: Vec<Approval>| page.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let pending = ApprovalFilter {
        status: Some(ApprovalStatus::Pending),
        ..filter(10)
    };
    assert_eq!(ids(s.approvals.list(pending).await.unwrap().0), ["apr_2"]);
    let of_one = ApprovalFilter {
        execution_id: Some("exec_1".into()),
        agent_id: Some("agt_a".into()),
        ..filter(10)
    };
    assert_eq!(ids(s.approvals.list(of_one).await.unwrap().0), ["apr_1"]);
    assert_eq!(
        s.approvals
            .of_execution("exec_2")
            .await
            .unwrap()
            .map(|a| a.id)
            .as_deref(),
        Some("apr_2")
    );

    // Due: pending with a timeout passed.
    assert_eq!(ids(s.approvals.due(50, 10).await.unwrap()), ["apr_3"]);
    assert!(s.approvals.due(5, 10).await.unwrap().is_empty());
    // Waiting executions, and those decided while nobody resumed them.
    let waiting = s.approvals.waiting().await.unwrap();
    assert_eq!(waiting.len(), 3);
    assert_eq!(waiting[0], ("exec_1".to_owned(), "ver_1".to_owned()));
    assert_eq!(s.approvals.answered_waiting().await.unwrap(), ["exec_1"]);

    // An execution's end cancels its pending request.
    let mut ended = execution("exec_2", "agt_a", Status::AwaitingApproval, 10);
    ended.status = Status::Cancelled;
    ended.completed_at = Some(60);
    s.executions
        .finish(FinalRecord {
            deliveries: Vec::new(),
            turns: Vec::new(),
            execution: ended,
            logs: Vec::new(),
            steps: Vec::new(),
            events: Vec::new(),
        })
        .await
        .unwrap();
    let got = s.approvals.get("apr_2").await.unwrap().unwrap();
    assert_eq!((got.status, got.decided_at), (ApprovalStatus::Cancelled, Some(60)));
    assert_eq!(s.approvals.waiting().await.unwrap().len(), 2);
}
