//! The trigger stores on SQLite (schedules, incoming hooks): their SQL, for
//! the writer ([`super::apply`] calls in here) and for reads.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::value::RawValue;

use super::SqliteStore;
use crate::record::{Hook, Overlap, Schedule};
use crate::store::{HookStore, ScheduleFilter, ScheduleStore, StoreError};

const COLUMNS: &str = "id, workspace, agent_id, version, cron, timezone, input, metadata, priority, overlap,
    catchup_window_secs, enabled, end_at, next_run_at, last_slot, last_execution_id, buffered_slot,
    pending_execution_id, runs, skipped, last_error, created_at, updated_at";

pub(super) fn save(tx: &Transaction<'_>, s: &Schedule) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT OR REPLACE INTO schedules ({COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
            ?21, ?22, ?23)"
    );
    tx.prepare_cached(&sql)?.execute(params![
        s.id,
        s.workspace,
        s.agent_id,
        s.version,
        s.cron,
        s.timezone,
        s.input.get(),
        s.metadata.get(),
        s.priority,
        s.overlap.as_str(),
        s.catchup_window_secs as i64,
        s.enabled,
        s.end_at,
        s.next_run_at,
        s.last_slot,
        s.last_execution_id,
        s.buffered_slot,
        s.pending_execution_id,
        s.runs as i64,
        s.skipped as i64,
        s.last_error,
        s.created_at,
        s.updated_at
    ])?;
    Ok(())
}

fn raw(text: String) -> Arc<RawValue> {
    RawValue::from_string(text).map_or_else(|_| Arc::from(RawValue::NULL.to_owned()), Arc::from)
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        id: r.get(0)?,
        workspace: r.get(1)?,
        agent_id: r.get(2)?,
        version: r.get(3)?,
        cron: r.get(4)?,
        timezone: r.get(5)?,
        input: raw(r.get(6)?),
        metadata: raw(r.get(7)?),
        priority: r.get(8)?,
        overlap: Overlap::parse(&r.get::<_, String>(9)?).unwrap_or_default(),
        catchup_window_secs: r.get::<_, i64>(10)?.max(0) as u64,
        enabled: r.get(11)?,
        end_at: r.get(12)?,
        next_run_at: r.get(13)?,
        last_slot: r.get(14)?,
        last_execution_id: r.get(15)?,
        buffered_slot: r.get(16)?,
        pending_execution_id: r.get(17)?,
        runs: r.get::<_, i64>(18)?.max(0) as u64,
        skipped: r.get::<_, i64>(19)?.max(0) as u64,
        last_error: r.get(20)?,
        created_at: r.get(21)?,
        updated_at: r.get(22)?,
    })
}

fn get(conn: &Connection, id: &str) -> anyhow::Result<Option<Schedule>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], from_row).optional()?)
}

fn list(conn: &Connection, f: &ScheduleFilter) -> anyhow::Result<(Vec<Schedule>, bool)> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules
         WHERE workspace = ?1 AND (?2 IS NULL OR agent_id = ?2) AND (?3 IS NULL OR enabled = ?3)
           AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5"
    );
    let mut rows: Vec<Schedule> = conn
        .prepare_cached(&sql)?
        .query_map(
            params![f.workspace, f.agent_id, f.enabled, f.after, i64::from(f.limit) + 1],
            from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    Ok((rows, more))
}

fn due(conn: &Connection, now: i64, limit: u32) -> anyhow::Result<Vec<Schedule>> {
    // Three indexed reads: the slots due, and the rare runs fixed or slots
    // buffered.
    let sql = format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM schedules WHERE enabled = 1 AND next_run_at <= ?1
                        ORDER BY next_run_at LIMIT ?2)
         UNION SELECT {COLUMNS} FROM schedules WHERE pending_execution_id IS NOT NULL
         UNION SELECT {COLUMNS} FROM schedules WHERE buffered_slot IS NOT NULL"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(params![now, limit], from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

fn next_due(conn: &Connection) -> anyhow::Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT min(next_run_at) FROM schedules WHERE enabled = 1")?
        .query_row([], |r| r.get(0))?)
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| get(c, &id)).await
    }

    async fn list(&self, filter: ScheduleFilter) -> Result<(Vec<Schedule>, bool), StoreError> {
        self.query(move |c| list(c, &filter)).await
    }

    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Schedule>, StoreError> {
        self.query(move |c| due(c, now, limit)).await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.query(next_due).await
    }
}

pub(super) fn insert_hook(tx: &Transaction<'_>, h: &Hook) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO hooks (id, workspace, agent_id, description, secret, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        h.id,
        h.workspace,
        h.agent_id,
        h.description,
        h.secret,
        h.created_at
    ])?;
    Ok(())
}

fn hook_from_row(r: &Row<'_>) -> rusqlite::Result<Hook> {
    let id: String = r.get(0)?;
    Ok(Hook {
        url: Hook::url_of(&id),
        id,
        workspace: r.get(1)?,
        agent_id: r.get(2)?,
        description: r.get(3)?,
        secret: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const HOOK_COLUMNS: &str = "id, workspace, agent_id, description, secret, created_at";

#[async_trait]
impl HookStore for SqliteStore {
    async fn get(&self, id: &str) -> Result<Option<Hook>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| {
            let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks WHERE id = ?1");
            Ok(c.prepare_cached(&sql)?.query_row([&id], hook_from_row).optional()?)
        })
        .await
    }

    async fn list(&self, workspace: &str) -> Result<Vec<Hook>, StoreError> {
        let workspace = workspace.to_owned();
        self.query(move |c| {
            let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks WHERE workspace = ?1 ORDER BY id");
            Ok(c.prepare_cached(&sql)?
                .query_map([&workspace], hook_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}
