//! The trigger stores on Postgres (schedules, incoming hooks): their SQL, for
//! the writer (the batch applier calls in here) and for reads.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::sql::{Reader, Row, Tx, int, u64_at};
use super::{PgStore, read_error};
use crate::record::{Hook, Overlap, Schedule};
use crate::store::{HookStore, ScheduleFilter, ScheduleStore, StoreError};

const COLUMNS: &str = "id, workspace, agent_id, version, cron, timezone, input, metadata, priority, overlap,
    catchup_window_secs, enabled, end_at, next_run_at, last_slot, last_execution_id, buffered_slot,
    pending_execution_id, runs, skipped, last_error, created_at, updated_at";

/// Creates or replaces a schedule (every column but its id).
pub(super) fn save(tx: &mut Tx<'_>, s: &Schedule) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO schedules ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
            $21, $22, $23)
         ON CONFLICT (id) DO UPDATE SET workspace = EXCLUDED.workspace, agent_id = EXCLUDED.agent_id,
            version = EXCLUDED.version, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
            input = EXCLUDED.input, metadata = EXCLUDED.metadata, priority = EXCLUDED.priority,
            overlap = EXCLUDED.overlap, catchup_window_secs = EXCLUDED.catchup_window_secs,
            enabled = EXCLUDED.enabled, end_at = EXCLUDED.end_at, next_run_at = EXCLUDED.next_run_at,
            last_slot = EXCLUDED.last_slot, last_execution_id = EXCLUDED.last_execution_id,
            buffered_slot = EXCLUDED.buffered_slot, pending_execution_id = EXCLUDED.pending_execution_id,
            runs = EXCLUDED.runs, skipped = EXCLUDED.skipped, last_error = EXCLUDED.last_error,
            created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
    );
    tx.execute(
        &sql,
        &[
            &s.id,
            &s.workspace,
            &s.agent_id,
            &s.version.map(i64::from),
            &s.cron,
            &s.timezone,
            &s.input.get(),
            &s.metadata.get(),
            &i64::from(s.priority),
            &s.overlap.as_str(),
            &int(s.catchup_window_secs),
            &s.enabled,
            &s.end_at,
            &s.next_run_at,
            &s.last_slot,
            &s.last_execution_id,
            &s.buffered_slot,
            &s.pending_execution_id,
            &int(s.runs),
            &int(s.skipped),
            &s.last_error,
            &s.created_at,
            &s.updated_at,
        ],
    )?;
    Ok(())
}

fn raw(text: String) -> Arc<RawValue> {
    RawValue::from_string(text).map_or_else(|_| Arc::from(RawValue::NULL.to_owned()), Arc::from)
}

fn from_row(r: &Row) -> anyhow::Result<Schedule> {
    Ok(Schedule {
        id: r.try_get(0)?,
        workspace: r.try_get(1)?,
        agent_id: r.try_get(2)?,
        version: r.try_get::<_, Option<i64>>(3)?.map(u32::try_from).transpose()?,
        cron: r.try_get(4)?,
        timezone: r.try_get(5)?,
        input: raw(r.try_get(6)?),
        metadata: raw(r.try_get(7)?),
        priority: u8::try_from(r.try_get::<_, i64>(8)?)?,
        overlap: Overlap::parse(&r.try_get::<_, String>(9)?).unwrap_or_default(),
        catchup_window_secs: u64_at(r, 10)?,
        enabled: r.try_get(11)?,
        end_at: r.try_get(12)?,
        next_run_at: r.try_get(13)?,
        last_slot: r.try_get(14)?,
        last_execution_id: r.try_get(15)?,
        buffered_slot: r.try_get(16)?,
        pending_execution_id: r.try_get(17)?,
        runs: u64_at(r, 18)?,
        skipped: u64_at(r, 19)?,
        last_error: r.try_get(20)?,
        created_at: r.try_get(21)?,
        updated_at: r.try_get(22)?,
    })
}

pub(super) async fn get(c: &Reader, id: &str) -> anyhow::Result<Option<Schedule>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = $1");
    let row = c.query_opt(&sql, &[&id]).await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn list(c: &Reader, f: &ScheduleFilter) -> anyhow::Result<(Vec<Schedule>, bool)> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules
         WHERE workspace = $1 AND ($2::TEXT IS NULL OR agent_id = $2) AND ($3::BOOLEAN IS NULL OR enabled = $3)
           AND ($4::TEXT IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5"
    );
    let rows = c
        .query(
            &sql,
            &[
                &f.workspace,
                &f.agent_id,
                &f.enabled,
                &f.after,
                &(i64::from(f.limit) + 1),
            ],
        )
        .await?;
    let mut found = rows.iter().map(from_row).collect::<anyhow::Result<Vec<_>>>()?;
    let more = found.len() > f.limit as usize;
    found.truncate(f.limit as usize);
    Ok((found, more))
}

pub(super) async fn due(c: &Reader, now: i64, limit: u32) -> anyhow::Result<Vec<Schedule>> {
    // Three indexed reads: the slots due, and the rare runs fixed or slots
    // buffered.
    let sql = format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM schedules WHERE enabled AND next_run_at <= $1
                        ORDER BY next_run_at LIMIT $2) AS due
         UNION SELECT {COLUMNS} FROM schedules WHERE pending_execution_id IS NOT NULL
         UNION SELECT {COLUMNS} FROM schedules WHERE buffered_slot IS NOT NULL"
    );
    let rows = c.query(&sql, &[&now, &i64::from(limit)]).await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn next_due(c: &Reader) -> anyhow::Result<Option<i64>> {
    let row = c
        .query_one("SELECT min(next_run_at) FROM schedules WHERE enabled", &[])
        .await?;
    Ok(row.try_get(0)?)
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn hold_schedule(&self, id: &str) -> Result<Option<Box<dyn crate::store::Hold>>, StoreError> {
        super::holds::hold_schedule(self, id).await.map(Some)
    }

    async fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let c = self.reader().await?;
        get(&c, id).await.map_err(read_error)
    }

    async fn list(&self, filter: ScheduleFilter) -> Result<(Vec<Schedule>, bool), StoreError> {
        let c = self.reader().await?;
        list(&c, &filter).await.map_err(read_error)
    }

    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Schedule>, StoreError> {
        let c = self.reader().await?;
        due(&c, now, limit).await.map_err(read_error)
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let c = self.reader().await?;
        next_due(&c).await.map_err(read_error)
    }
}

pub(super) fn insert_hook(tx: &mut Tx<'_>, h: &Hook) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO hooks (id, workspace, agent_id, description, secret, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
        &[
            &h.id,
            &h.workspace,
            &h.agent_id,
            &h.description,
            &h.secret,
            &h.created_at,
        ],
    )?;
    Ok(())
}

fn hook_from_row(r: &Row) -> anyhow::Result<Hook> {
    let id: String = r.try_get(0)?;
    Ok(Hook {
        url: Hook::url_of(&id),
        id,
        workspace: r.try_get(1)?,
        agent_id: r.try_get(2)?,
        description: r.try_get(3)?,
        secret: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

const HOOK_COLUMNS: &str = "id, workspace, agent_id, description, secret, created_at";

pub(super) async fn hook(c: &Reader, id: &str) -> anyhow::Result<Option<Hook>> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks WHERE id = $1");
    let row = c.query_opt(&sql, &[&id]).await?;
    row.as_ref().map(hook_from_row).transpose()
}

pub(super) async fn hooks(c: &Reader, workspace: &str) -> anyhow::Result<Vec<Hook>> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks WHERE workspace = $1 ORDER BY id");
    let rows = c.query(&sql, &[&workspace]).await?;
    rows.iter().map(hook_from_row).collect()
}

#[async_trait]
impl HookStore for PgStore {
    async fn get(&self, id: &str) -> Result<Option<Hook>, StoreError> {
        let c = self.reader().await?;
        hook(&c, id).await.map_err(read_error)
    }

    async fn list(&self, workspace: &str) -> Result<Vec<Hook>, StoreError> {
        let c = self.reader().await?;
        hooks(&c, workspace).await.map_err(read_error)
    }
}
