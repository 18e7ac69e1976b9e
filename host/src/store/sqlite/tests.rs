//! The writer's batching: one transaction per batch, the last write of an
//! execution's row wins, an execution's events become one chunk, and one bad
//! write does not sink the others.

use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::apply::SqliteSink;
use super::schema;
use crate::events::{EventData, EventLog};
use crate::manifest::Manifest;
use crate::record::{Agent, AgentVersion, Execution, Status};
use crate::store::Write;
use crate::store::blobs::FileBlobs;
use crate::store::writer::{Sink, commit_batch};
use crate::store::{BlobStore, FinalRecord, StoreError};

fn open(dir: &std::path::Path) -> SqliteSink {
    let mut conn = Connection::open(dir.join("warden.db")).unwrap();
    schema::configure(&conn).unwrap();
    schema::migrate(&mut conn).unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(FileBlobs::open(dir).unwrap());
    SqliteSink {
        conn,
        blobs,
        wal_frames: Arc::default(),
    }
}

fn execution(id: &str, status: Status) -> Execution {
    let Write::Deploy { agent, version, .. } = deploy(1) else {
        unreachable!("deploy makes a deploy")
    };
    Execution {
        status,
        ..Execution::queued(id.into(), &agent, &version, 1)
    }
}

fn deploy(version: u32) -> Write {
    let manifest = Manifest::from_json(r#"{"name":"a"}"#).unwrap();
    Write::Deploy {
        agent: Agent {
            id: "agt".into(),
            workspace: "w".into(),
            name: "a".into(),
            description: String::new(),
            latest_version: version,
            created_at: 1,
            updated_at: 1,
        },
        version: Box::new(AgentVersion {
            id: format!("ver_{version}_{}", crate::ids::agent_version()),
            agent_id: "agt".into(),
            version,
            label: None,
            limits: manifest.effective_limits(&Default::default(), 4),
            manifest,
            component_hash: "h".into(),
            component_size: 1,
            created_at: 1,
        }),
        job: None,
    }
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn the_last_write_of_a_row_wins_and_events_become_one_chunk_per_execution() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(tmp.path());
    let log_a = EventLog::new("exec_a", 0, None);
    let log_b = EventLog::new("exec_b", 0, None);
    let ev_a = log_a.end(&[EventData::Status(Status::Running), EventData::Content("x")]);
    let ev_b = log_b.end(&[EventData::Status(Status::Queued)]);
    let event = |id: &str, e: &Arc<crate::events::Event>| Write::Events {
        execution_id: id.into(),
        events: vec![Arc::clone(e)],
    };
    let mut done = execution("exec_a", Status::Completed);
    done.n_logs = 9;
    let writes = [
        Write::Execution(Box::new(execution("exec_a", Status::Queued))),
        event("exec_a", &ev_a[0]),
        event("exec_b", &ev_b[0]),
        Write::Execution(Box::new(execution("exec_a", Status::Running))),
        event("exec_a", &ev_a[1]),
        Write::Finish(Box::new(FinalRecord {
            deliveries: Vec::new(),
            turns: Vec::new(),
            execution: done,
            logs: Vec::new(),
            steps: Vec::new(),
            events: Vec::new(),
        })),
        Write::Execution(Box::new(execution("exec_b", Status::Queued))),
    ];
    sink.apply(&writes.iter().collect::<Vec<_>>()).unwrap();
    let conn = &sink.conn;
    let (status, n_logs): (String, i64) = conn
        .query_row("SELECT status, n_logs FROM executions WHERE id = 'exec_a'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), n_logs), ("completed", 9));
    assert_eq!(count(&sink.conn, "SELECT count(*) FROM executions"), 2);
    let (first, last, json): (i64, i64, String) = conn
        .query_row(
            "SELECT first_seq, last_seq, events FROM event_chunks WHERE execution_id = 'exec_a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((first, last), (1, 2));
    let events: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(events[1]["data"]["delta"], "x");
    assert_eq!(
        count(&sink.conn, "SELECT count(*) FROM event_chunks"),
        2,
        "one chunk per execution"
    );
}

#[test]
fn one_bad_write_does_not_sink_its_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(tmp.path());
    let mut batch = Vec::new();
    let mut answers = Vec::new();
    // The second deploy of version 1 breaks the agent's unique version numbers.
    for write in [
        deploy(1),
        Write::Execution(Box::new(execution("exec_ok", Status::Queued))),
        deploy(1),
        Write::Execution(Box::new(execution("exec_ok2", Status::Queued))),
    ] {
        let (ack, answer) = oneshot::channel::<Result<(), StoreError>>();
        batch.push((write, Some(ack)));
        answers.push(answer);
    }
    commit_batch(&mut sink, &mut batch).expect("no storage failure");
    let results: Vec<bool> = answers.into_iter().map(|mut a| a.try_recv().unwrap().is_ok()).collect();
    assert_eq!(results, [true, true, false, true]);
    assert_eq!(count(&sink.conn, "SELECT count(*) FROM executions"), 2);
    assert_eq!(count(&sink.conn, "SELECT count(*) FROM agent_versions"), 1);
    assert!(batch.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_together_commit_together_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let stores = super::SqliteStore::open(tmp.path()).unwrap();
    // Many writes handed over at once, awaited only at the end.
    let mut commits = Vec::new();
    for i in 0..2000 {
        let mut e = execution(&format!("exec_{}", i % 10), Status::Running);
        e.fuel_used = Some(i);
        commits.push(stores.executions.save(e));
    }
    for commit in commits {
        commit.await.unwrap();
    }
    for i in 0..10 {
        let e = stores.executions.get(&format!("exec_{i}")).await.unwrap().unwrap();
        assert_eq!(e.fuel_used, Some(1990 + i), "the last write of each row wins");
    }
    stores.close().await;
}

#[test]
fn a_batch_that_storage_cannot_take_is_kept_whole_until_it_can() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(tmp.path());
    // The database may not grow: it is "full".
    let pages: i64 = sink.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    sink.conn.pragma_update(None, "max_page_count", pages).unwrap();
    let mut batch = Vec::new();
    let mut answers = Vec::new();
    for i in 0..50 {
        let mut e = execution(&format!("exec_{i}"), Status::Queued);
        e.input = serde_json::value::RawValue::from_string(format!("\"{}\"", "z".repeat(4000)))
            .unwrap()
            .into();
        let (ack, answer) = oneshot::channel::<Result<(), StoreError>>();
        batch.push((Write::Execution(Box::new(e)), Some(ack)));
        answers.push(answer);
    }
    let failure = commit_batch(&mut sink, &mut batch).unwrap_err();
    assert!(failure.contains("full"), "{failure}");
    assert_eq!(batch.len(), 50, "nothing answered, nothing dropped");
    assert!(answers.iter_mut().all(|a| a.try_recv().is_err()));
    // Room again: the same batch commits, in full.
    sink.conn.pragma_update(None, "max_page_count", 1_000_000).unwrap();
    commit_batch(&mut sink, &mut batch).unwrap();
    assert!(batch.is_empty());
    assert!(answers.into_iter().all(|mut a| a.try_recv().unwrap().is_ok()));
    assert_eq!(count(&sink.conn, "SELECT count(*) FROM executions"), 50);
}
