//! The shared queue on Postgres. An execution waits with no `owner` (its
//! `queued` record committed); a host with room claims a batch in one
//! transaction: under one advisory lock (so that two hosts never both fill
//! an agent's last slot), it counts each agent's runs and claims across the
//! hosts (a conversation's turn once its host claimed it; a run waiting for
//! a decision while its host holds it in memory: its row keeps that host as
//! `owner` until it is unloaded), reads
//! the best waiting rows of the agents with room, and takes those rows not
//! locked by another writer (`FOR UPDATE SKIP LOCKED`). What a host holds
//! back until its agent has a slot is claimed the same way, among the waiting
//! rows by its priority and age: a durable run unloaded while it waited for a
//! decision, once decided, and a conversation's turn whose turns before it
//! ended (turns are not in the shared queue: the host that accepted them runs
//! them, in order).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::hosts::{free, lapsed};
use super::read::{EXECUTION_COLUMNS, executions_from_rows};
use super::{PgStore, read_error};
use crate::record::{Execution, Status};
use crate::store::{Claims, Slots, StoreError, Whereabouts};

/// The advisory lock claims are made under (any constant no other lock uses).
const CLAIM_LOCK: i64 = 0x7761_7264_656e_0002;

/// Rows waiting in the shared queue, by their alias `e`.
const WAITING: &str = "e.owner IS NULL AND e.status IN ('pending', 'queued') AND e.conversation_id IS NULL";

/// Of the executions `$2` a host (`$1`) held back for a slot, those it may
/// still take (by their alias `e`): runs waiting for a decision, unloaded and
/// decided, held by nobody or by a host whose lease ran out; and this host's
/// own conversation turns, still waiting.
fn held_back() -> String {
    format!(
        "e.id = ANY($2) AND ((e.status = 'awaiting_approval' AND {unheld}
            AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.execution_id = e.id AND a.status = 'pending'))
          OR {TURN})",
        unheld = unheld()
    )
}

/// A conversation's turn of this host (`$1`), waiting, by its alias `e`
/// (other hosts count it against its agent's slots once claimed:
/// `turn_claimed`). One claimed already is claimed again when named: its
/// host holds it back still (its claim's answer was lost).
const TURN: &str = "(e.owner = $1 AND e.status IN ('pending', 'queued') AND e.conversation_id IS NOT NULL)";

/// A row `e` waiting for a decision is held by no live host (its own host,
/// `$1`, holds it in memory).
fn unheld() -> String {
    format!("(e.owner IS NULL OR (e.owner <> $1 AND {}))", lapsed("e"))
}

/// How many waiting rows one claim reads per place it has room for (some may
/// be of an agent that fills up within the batch).
const READ_AHEAD: usize = 4;

#[async_trait]
impl Claims for PgStore {
    fn shares_queue(&self) -> bool {
        true
    }

    fn hinted(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.hints))
    }

    async fn hint(&self) -> Result<(), StoreError> {
        let c = self.reader().await?;
        c.query(&format!("NOTIFY {}", super::hints::CHANNEL), &[])
            .await
            .map_err(read_error)?;
        Ok(())
    }

    async fn claim(
        &self,
        room: usize,
        now: i64,
        slots: &dyn Slots,
        surely: bool,
    ) -> Result<Vec<Execution>, StoreError> {
        if room == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.reader().await?;
        claim(&mut c.0, &self.host, (room, now, surely), slots)
            .await
            .map_err(read_error)
    }

    async fn give_back(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.reader().await?;
        // Turns stay with this host, not counted by others until claimed again.
        c.query(
            "UPDATE executions SET turn_claimed = false
             WHERE id = ANY($2) AND owner = $1 AND status IN ('pending', 'queued') AND conversation_id IS NOT NULL",
            &[&self.host, &ids],
        )
        .await
        .map_err(read_error)?;
        ids_of(
            &c,
            "UPDATE executions SET owner = NULL
             WHERE id = ANY($2) AND owner = $1
               AND ((status IN ('pending', 'queued') AND conversation_id IS NULL) OR status = 'awaiting_approval')
             RETURNING id",
            &self.host,
            ids,
        )
        .await
    }

    async fn claim_one(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let c = self.reader().await?;
        let sql =
            format!("UPDATE executions e SET owner = $1 WHERE e.id = $2 AND {WAITING} RETURNING {EXECUTION_COLUMNS}");
        let rows = c.query(&sql, &[&self.host, &id]).await.map_err(read_error)?;
        Ok(executions_from_rows(&rows).map_err(read_error)?.pop())
    }

    async fn release_waiting(&self) -> Result<(), StoreError> {
        let c = self.reader().await?;
        c.query(
            "UPDATE executions SET owner = NULL WHERE owner = $1 AND status = 'awaiting_approval'",
            &[&self.host],
        )
        .await
        .map_err(read_error)?;
        Ok(())
    }

    async fn take_waiting(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.reader().await?;
        let sql = format!(
            "UPDATE executions e SET owner = $1
             WHERE e.id = $2 AND e.status IN ('awaiting_approval', 'cancel_requested') AND {}
             RETURNING e.id",
            free("e")
        );
        let taken = c.query_opt(&sql, &[&self.host, &id]).await.map_err(read_error)?;
        Ok(taken.is_some())
    }

    async fn taken_over(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.reader().await?;
        // Back in the shared queue and not yet claimed by another host: this
        // host's again (a row lock decides a race with another host's claim).
        c.query(
            &format!("UPDATE executions e SET owner = $1 WHERE e.id = ANY($2) AND {WAITING}"),
            &[&self.host, &ids],
        )
        .await
        .map_err(read_error)?;
        ids_of(
            &c,
            "SELECT id FROM executions WHERE id = ANY($2) AND owner IS NOT NULL AND owner <> $1",
            &self.host,
            ids,
        )
        .await
    }

    async fn whereabouts(&self, ids: &[String]) -> Result<Whereabouts, StoreError> {
        let mut found = Whereabouts::default();
        if ids.is_empty() {
            return Ok(found);
        }
        let c = self.reader().await?;
        let rows = c
            .query(
                "SELECT id, status, owner IS NOT NULL AND owner <> $1 FROM executions WHERE id = ANY($2)",
                &[&self.host, &ids],
            )
            .await
            .map_err(read_error)?;
        let mut ended = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            let id: String = row.try_get(0).map_err(|e| read_error(e.into()))?;
            let status: String = row.try_get(1).map_err(|e| read_error(e.into()))?;
            let taken: bool = row.try_get(2).map_err(|e| read_error(e.into()))?;
            // Waiting for a decision, unloaded, it is as good as over for
            // whoever waits for it (as on the host that ran it).
            let over = Status::parse(&status).is_some_and(|s| s.is_terminal() || s == Status::AwaitingApproval);
            if over {
                ended.push(id.clone());
            } else if taken {
                found.elsewhere.push(id.clone());
            }
            seen.insert(id);
        }
        found.gone = ids.iter().filter(|id| !seen.contains(*id)).cloned().collect();
        if !ended.is_empty() {
            let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ANY($1)");
            let rows = c.query(&sql, &[&ended]).await.map_err(read_error)?;
            found.ended = executions_from_rows(&rows).map_err(read_error)?;
        }
        Ok(found)
    }
}

/// The ids `sql` (with this host as `$1` and `ids` as `$2`) answers.
async fn ids_of(c: &super::sql::Reader, sql: &str, host: &str, ids: &[String]) -> Result<Vec<String>, StoreError> {
    let rows = c.query(sql, &[&host, &ids]).await.map_err(read_error)?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(|e| read_error(e.into())))
        .collect()
}

async fn claim(
    client: &mut deadpool_postgres::ClientWrapper,
    host: &str,
    (room, now, surely): (usize, i64, bool),
    slots: &dyn Slots,
) -> anyhow::Result<Vec<Execution>> {
    // The count after the lock must see what others committed before it:
    // each statement its own snapshot, whatever the server's default.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await?;
    // Most polls find nothing: they end here, without the lock.
    let held = slots.held_back();
    if !surely {
        let look = tx
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM executions e WHERE {WAITING} AND (e.run_after IS NULL OR e.run_after <= $3))
                     OR EXISTS (SELECT 1 FROM executions e WHERE {held})",
                held = held_back()
            ))
            .await?;
        if !tx
            .query_one(&look, &[&host, &held, &now])
            .await?
            .try_get::<_, bool>(0)?
        {
            tx.commit().await?;
            return Ok(Vec::new());
        }
    }
    // The lock, then other hosts' runs and claims by agent (this host's
    // own it knows better: a run that ended here is no longer one, even
    // before its end is stored), sent together.
    let best_sql = format!(
        "SELECT e.id, e.agent_id, e.priority, e.created_at FROM executions e
         WHERE {WAITING} AND (e.run_after IS NULL OR e.run_after <= $1) AND e.agent_id <> ALL($2)
           AND e.agent_version_id = ANY($4)
         ORDER BY e.priority DESC, e.created_at, e.id LIMIT $3"
    );
    // What this host held back, among them by the same order.
    let held_sql = format!(
        "SELECT e.id, e.agent_id, e.priority, e.created_at FROM executions e
         WHERE {held} AND e.agent_id <> ALL($3) AND e.agent_version_id = ANY($4)",
        held = held_back()
    );
    let busy_sql = format!(
        "SELECT agent_id, count(*) FROM (
            SELECT agent_id FROM executions
             WHERE owner IS NOT NULL AND owner <> $1 AND status IN ('pending', 'queued', 'running', 'cancel_requested')
               AND (conversation_id IS NULL OR turn_claimed OR status IN ('running', 'cancel_requested'))
            UNION ALL
            SELECT e.agent_id FROM executions e
             WHERE e.owner IS NOT NULL AND e.owner <> $1 AND e.status = 'awaiting_approval' AND NOT {lapsed}
         ) busy GROUP BY agent_id",
        lapsed = lapsed("e")
    );
    let (lock, others, best) = futures_util::try_join!(
        tx.prepare_cached("SELECT pg_advisory_xact_lock($1)"),
        tx.prepare_cached(&busy_sql),
        tx.prepare_cached(&best_sql),
    )?;
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&CLAIM_LOCK];
    let host_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&host];
    let (_, busy_rows) = futures_util::try_join!(tx.execute(&lock, &lock_params), tx.query(&others, &host_params))?;
    let mut busy = slots.here();
    for row in &busy_rows {
        let n: i64 = row.try_get(1)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        *busy.entry(row.try_get(0)?).or_default() += n;
    }
    let full: Vec<&str> = busy
        .iter()
        .filter(|(agent, n)| slots.of_agent(agent).is_some_and(|max| **n >= max))
        .map(|(agent, _)| agent.as_str())
        .collect();
    let limit = i64::try_from(room.saturating_mul(READ_AHEAD).max(32)).unwrap_or(i64::MAX);
    let runnable = slots.runnable();
    let mut candidates = Vec::new();
    for row in tx.query(&best, &[&now, &full, &limit, &runnable]).await? {
        candidates.push(Candidate::of(&row)?);
    }
    if !held.is_empty() {
        let held_back = tx.prepare_cached(&held_sql).await?;
        for row in tx.query(&held_back, &[&host, &held, &full, &runnable]).await? {
            candidates.push(Candidate::of(&row)?);
        }
        candidates.sort_by(|a, b| a.order().cmp(&b.order()));
    }
    let mut picked: Vec<String> = Vec::new();
    for Candidate { id, agent, .. } in candidates {
        if picked.len() >= room {
            break;
        }
        let Some(max) = slots.of_agent(&agent) else {
            continue;
        };
        let n = busy.entry(agent).or_default();
        if *n < max {
            *n += 1;
            picked.push(id);
        }
    }
    if picked.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let take = tx
        .prepare_cached(&format!(
            "UPDATE executions SET owner = $1, turn_claimed = conversation_id IS NOT NULL WHERE id IN
                (SELECT e.id FROM executions e
                  WHERE e.id = ANY($2) AND ({WAITING} OR (e.status = 'awaiting_approval' AND {unheld}) OR {TURN})
                  FOR UPDATE SKIP LOCKED)
             RETURNING {EXECUTION_COLUMNS}",
            unheld = unheld()
        ))
        .await?;
    let rows = tx.query(&take, &[&host, &picked]).await?;
    tx.commit().await?;
    let mut claimed = executions_from_rows(&rows)?;
    claimed.sort_by(|a, b| {
        (std::cmp::Reverse(a.priority), a.created_at, &a.id).cmp(&(std::cmp::Reverse(b.priority), b.created_at, &b.id))
    });
    Ok(claimed)
}

/// A row a claim may take: its id, agent, priority and age.
struct Candidate {
    id: String,
    agent: String,
    priority: i64,
    created_at: i64,
}

impl Candidate {
    fn of(row: &tokio_postgres::Row) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.try_get(0)?,
            agent: row.try_get(1)?,
            priority: row.try_get(2)?,
            created_at: row.try_get(3)?,
        })
    }

    /// Highest priority first, then the oldest.
    fn order(&self) -> (std::cmp::Reverse<i64>, i64, &str) {
        (std::cmp::Reverse(self.priority), self.created_at, &self.id)
    }
}
