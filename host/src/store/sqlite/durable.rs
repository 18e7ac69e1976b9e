//! The journal and approval stores on SQLite: their SQL, for the writer
//! ([`super::apply`] calls in here) and for reads.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::value::RawValue;

use super::SqliteStore;
use crate::record::{Approval, ApprovalStatus, Decision, JournalEntry, JournalKind};
use crate::store::{ApprovalFilter, ApprovalStore, JournalStore, StoreError};

pub(super) fn insert_journal(tx: &Transaction<'_>, execution_id: &str, entries: &[JournalEntry]) -> anyhow::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO journal (execution_id, seq, kind, fingerprint, done, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in entries {
        stmt.execute(params![
            execution_id,
            e.seq,
            e.kind.as_str(),
            e.fingerprint,
            e.done,
            e.data
        ])?;
    }
    Ok(())
}

/// What an execution's end does to its journal and its open requests.
pub(super) fn finish(tx: &Transaction<'_>, execution_id: &str, at: i64) -> anyhow::Result<()> {
    tx.prepare_cached("DELETE FROM journal WHERE execution_id = ?1")?
        .execute([execution_id])?;
    tx.prepare_cached(
        "UPDATE approvals SET status = 'cancelled', decided_at = ?2 WHERE execution_id = ?1 AND status = 'pending'",
    )?
    .execute(params![execution_id, at])?;
    Ok(())
}

/// What the retention sweep deletes of an execution here.
pub(super) const SWEEP: [&str; 2] = [
    "DELETE FROM journal WHERE execution_id = ?1",
    "DELETE FROM approvals WHERE execution_id = ?1",
];

pub(super) fn insert_approval(tx: &Transaction<'_>, a: &Approval) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO approvals (id, workspace, agent_id, execution_id, title, detail, approvers, status,
            created_at, expires_at, decided_at, decided_by, decided_by_name, comment, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        a.id,
        a.workspace,
        a.agent_id,
        a.execution_id,
        a.title,
        a.detail.get(),
        serde_json::to_string(&a.approvers)?,
        a.status.as_str(),
        a.created_at,
        a.expires_at,
        a.decided_at,
        a.decided_by,
        a.decided_by_name,
        a.comment,
        a.data.as_ref().map(|d| d.get()),
    ])?;
    Ok(())
}

pub(super) fn decide(tx: &Transaction<'_>, id: &str, d: &Decision) -> anyhow::Result<()> {
    tx.prepare_cached(
        "UPDATE approvals SET status = ?2, decided_at = ?3, decided_by = ?4, decided_by_name = ?5, comment = ?6,
            data = ?7
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![
        id,
        d.status.as_str(),
        d.at,
        d.by,
        d.by_name,
        d.comment,
        d.data.as_ref().map(|d| d.get()),
    ])?;
    Ok(())
}

fn journal(conn: &Connection, execution_id: &str) -> anyhow::Result<Vec<JournalEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, kind, fingerprint, done, data FROM journal WHERE execution_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([execution_id], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, bool>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut entries = Vec::new();
    for row in rows {
        let (seq, kind, fingerprint, done, data) = row?;
        let kind = JournalKind::parse(&kind)
            .ok_or_else(|| anyhow::anyhow!("journal entry {seq} of {execution_id} has an unknown kind {kind:?}"))?;
        entries.push(JournalEntry {
            seq,
            kind,
            fingerprint,
            done,
            data,
        });
    }
    Ok(entries)
}

const APPROVAL_COLUMNS: &str = "id, workspace, agent_id, execution_id, title, detail, approvers, status, created_at,
    expires_at, decided_at, decided_by, decided_by_name, comment, data";

fn raw(text: String) -> Arc<RawValue> {
    RawValue::from_string(text).map_or_else(|_| Arc::from(RawValue::NULL.to_owned()), Arc::from)
}

fn approval_from_row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    let approvers: String = r.get(6)?;
    let status: String = r.get(7)?;
    Ok(Approval {
        id: r.get(0)?,
        workspace: r.get(1)?,
        agent_id: r.get(2)?,
        execution_id: r.get(3)?,
        title: r.get(4)?,
        detail: raw(r.get(5)?),
        approvers: serde_json::from_str(&approvers).unwrap_or_default(),
        status: ApprovalStatus::parse(&status).unwrap_or(ApprovalStatus::Cancelled),
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        decided_at: r.get(10)?,
        decided_by: r.get(11)?,
        decided_by_name: r.get(12)?,
        comment: r.get(13)?,
        data: r.get::<_, Option<String>>(14)?.map(raw),
    })
}

fn approval(conn: &Connection, id: &str) -> anyhow::Result<Option<Approval>> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], approval_from_row)
        .optional()?)
}

fn approvals(conn: &Connection, f: &ApprovalFilter) -> anyhow::Result<(Vec<Approval>, bool)> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals
         WHERE workspace = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR agent_id = ?3)
           AND (?4 IS NULL OR execution_id = ?4) AND (?5 IS NULL OR id < ?5)
         ORDER BY id DESC LIMIT ?6"
    );
    let mut rows: Vec<Approval> = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                f.workspace,
                f.status.map(ApprovalStatus::as_str),
                f.agent_id,
                f.execution_id,
                f.after,
                i64::from(f.limit) + 1
            ],
            approval_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    Ok((rows, more))
}

fn due(conn: &Connection, now: i64, limit: u32) -> anyhow::Result<Vec<Approval>> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals
         WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(params![now, limit], approval_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

fn of_execution(conn: &Connection, execution_id: &str) -> anyhow::Result<Option<Approval>> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = ?1 ORDER BY id DESC LIMIT 1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([execution_id], approval_from_row)
        .optional()?)
}

fn of_executions(conn: &Connection, ids: &[String]) -> anyhow::Result<Vec<Approval>> {
    let mut found = Vec::new();
    // SQLite takes at most 32,766 parameters a statement: ask in chunks.
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id IN ({marks}) ORDER BY id");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(chunk), approval_from_row)?;
        for row in rows {
            found.push(row?);
        }
    }
    Ok(found)
}

fn answered_waiting(conn: &Connection) -> anyhow::Result<Vec<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT e.id FROM executions e WHERE e.status = 'awaiting_approval'
               AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.execution_id = e.id AND a.status = 'pending')
             ORDER BY e.id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

fn waiting(conn: &Connection) -> anyhow::Result<Vec<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT id, agent_version_id FROM executions WHERE status = 'awaiting_approval' ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

#[async_trait]
impl JournalStore for SqliteStore {
    async fn load(&self, execution_id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let id = execution_id.to_owned();
        self.query(move |c| journal(c, &id)).await
    }
}

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn get(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| approval(c, &id)).await
    }

    async fn list(&self, filter: ApprovalFilter) -> Result<(Vec<Approval>, bool), StoreError> {
        self.query(move |c| approvals(c, &filter)).await
    }

    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Approval>, StoreError> {
        self.query(move |c| due(c, now, limit)).await
    }

    async fn of_execution(&self, execution_id: &str) -> Result<Option<Approval>, StoreError> {
        let id = execution_id.to_owned();
        self.query(move |c| of_execution(c, &id)).await
    }

    async fn of_executions(&self, execution_ids: Vec<String>) -> Result<Vec<Approval>, StoreError> {
        if execution_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.query(move |c| of_executions(c, &execution_ids)).await
    }

    async fn answered_waiting(&self) -> Result<Vec<String>, StoreError> {
        self.query(answered_waiting).await
    }

    async fn waiting(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.query(waiting).await
    }
}
