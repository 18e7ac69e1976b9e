//! The journal and approval stores on Postgres: their SQL, for the writer
//! ([`super::apply`] calls in here) and for reads. Their writes are the
//! traits' defaults (queued to the writer); only the reads are here.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::sql::{self, Reader, Row, Tx};
use super::{PgStore, read_error};
use crate::record::{Approval, ApprovalStatus, Decision, JournalEntry, JournalKind};
use crate::store::{ApprovalFilter, ApprovalStore, JournalStore, StoreError};

pub(super) fn insert_journal(tx: &mut Tx<'_>, execution_id: &str, entries: &[JournalEntry]) -> anyhow::Result<()> {
    for e in entries {
        tx.execute(
            "INSERT INTO journal (execution_id, seq, kind, fingerprint, done, data)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (execution_id, seq) DO UPDATE SET kind = EXCLUDED.kind,
                fingerprint = EXCLUDED.fingerprint, done = EXCLUDED.done, data = EXCLUDED.data",
            &[
                &execution_id,
                &i64::from(e.seq),
                &e.kind.as_str(),
                &e.fingerprint,
                &e.done,
                &e.data,
            ],
        )?;
    }
    Ok(())
}

/// What an execution's end does to its journal and its open requests.
pub(super) fn finish(tx: &mut Tx<'_>, execution_id: &str, at: i64) -> anyhow::Result<()> {
    tx.execute("DELETE FROM journal WHERE execution_id = $1", &[&execution_id])?;
    tx.execute(
        "UPDATE approvals SET status = 'cancelled', decided_at = $2 WHERE execution_id = $1 AND status = 'pending'",
        &[&execution_id, &at],
    )?;
    Ok(())
}

/// What the retention sweep deletes here of the executions it deletes (`$1`:
/// their ids, a text array).
pub(super) const SWEEP: [&str; 2] = [
    "DELETE FROM journal WHERE execution_id = ANY($1)",
    "DELETE FROM approvals WHERE execution_id = ANY($1)",
];

/// Stores a request (one stored again keeps its first version).
pub(super) fn insert_approval(tx: &mut Tx<'_>, a: &Approval) -> anyhow::Result<()> {
    let approvers = serde_json::to_string(&a.approvers)?;
    tx.execute(
        "INSERT INTO approvals (id, workspace, agent_id, execution_id, title, detail, approvers, status,
            created_at, expires_at, decided_at, decided_by, decided_by_name, comment, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT DO NOTHING",
        &[
            &a.id,
            &a.workspace,
            &a.agent_id,
            &a.execution_id,
            &a.title,
            &a.detail.get(),
            &approvers,
            &a.status.as_str(),
            &a.created_at,
            &a.expires_at,
            &a.decided_at,
            &a.decided_by,
            &a.decided_by_name,
            &a.comment,
            &a.data.as_ref().map(|d| d.get()),
        ],
    )?;
    Ok(())
}

/// Decides a request, only if it is still pending.
pub(super) fn decide(tx: &mut Tx<'_>, id: &str, d: &Decision) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE approvals SET status = $2, decided_at = $3, decided_by = $4, decided_by_name = $5, comment = $6,
            data = $7
         WHERE id = $1 AND status = 'pending'",
        &[
            &id,
            &d.status.as_str(),
            &d.at,
            &d.by,
            &d.by_name,
            &d.comment,
            &d.data.as_ref().map(|d| d.get()),
        ],
    )?;
    Ok(())
}

/// An execution's journal, in order.
pub(super) async fn journal(c: &Reader, execution_id: &str) -> anyhow::Result<Vec<JournalEntry>> {
    let rows = c
        .query(
            "SELECT seq, kind, fingerprint, done, data FROM journal WHERE execution_id = $1 ORDER BY seq",
            &[&execution_id],
        )
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq = sql::u32_at(r, 0)?;
        let kind: String = r.try_get(1)?;
        let kind = JournalKind::parse(&kind)
            .ok_or_else(|| anyhow::anyhow!("journal entry {seq} of {execution_id} has an unknown kind {kind:?}"))?;
        entries.push(JournalEntry {
            seq,
            kind,
            fingerprint: r.try_get(2)?,
            done: r.try_get(3)?,
            data: r.try_get(4)?,
        });
    }
    Ok(entries)
}

const APPROVAL_COLUMNS: &str = "id, workspace, agent_id, execution_id, title, detail, approvers, status, created_at,
    expires_at, decided_at, decided_by, decided_by_name, comment, data";

fn raw(text: String) -> Arc<RawValue> {
    RawValue::from_string(text).map_or_else(|_| Arc::from(RawValue::NULL.to_owned()), Arc::from)
}

fn approval_from_row(r: &Row) -> anyhow::Result<Approval> {
    let approvers: String = r.try_get(6)?;
    let status: String = r.try_get(7)?;
    Ok(Approval {
        id: r.try_get(0)?,
        workspace: r.try_get(1)?,
        agent_id: r.try_get(2)?,
        execution_id: r.try_get(3)?,
        title: r.try_get(4)?,
        detail: raw(r.try_get(5)?),
        approvers: serde_json::from_str(&approvers).unwrap_or_default(),
        status: ApprovalStatus::parse(&status).unwrap_or(ApprovalStatus::Cancelled),
        created_at: r.try_get(8)?,
        expires_at: r.try_get(9)?,
        decided_at: r.try_get(10)?,
        decided_by: r.try_get(11)?,
        decided_by_name: r.try_get(12)?,
        comment: r.try_get(13)?,
        data: r.try_get::<_, Option<String>>(14)?.map(raw),
    })
}

fn approvals_from_rows(rows: &[Row]) -> anyhow::Result<Vec<Approval>> {
    rows.iter().map(approval_from_row).collect()
}

pub(super) async fn approval(c: &Reader, id: &str) -> anyhow::Result<Option<Approval>> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1");
    c.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(approval_from_row)
        .transpose()
}

/// One page, newest first, and whether more follow.
pub(super) async fn approvals(c: &Reader, f: &ApprovalFilter) -> anyhow::Result<(Vec<Approval>, bool)> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals
         WHERE workspace = $1 AND ($2::TEXT IS NULL OR status = $2) AND ($3::TEXT IS NULL OR agent_id = $3)
           AND ($4::TEXT IS NULL OR execution_id = $4) AND ($5::TEXT IS NULL OR id < $5)
         ORDER BY id DESC LIMIT $6"
    );
    let rows = c
        .query(
            &sql,
            &[
                &f.workspace,
                &f.status.map(ApprovalStatus::as_str),
                &f.agent_id,
                &f.execution_id,
                &f.after,
                &(i64::from(f.limit) + 1),
            ],
        )
        .await?;
    let mut found = approvals_from_rows(&rows)?;
    let more = found.len() > f.limit as usize;
    found.truncate(f.limit as usize);
    Ok((found, more))
}

/// Pending requests whose timeout passed by `now`, at most `limit`.
pub(super) async fn due(c: &Reader, now: i64, limit: u32) -> anyhow::Result<Vec<Approval>> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals
         WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
    );
    let rows = c.query(&sql, &[&now, &i64::from(limit)]).await?;
    approvals_from_rows(&rows)
}

/// The newest request of an execution.
pub(super) async fn of_execution(c: &Reader, execution_id: &str) -> anyhow::Result<Option<Approval>> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = $1 ORDER BY id DESC LIMIT 1");
    c.query_opt(&sql, &[&execution_id])
        .await?
        .as_ref()
        .map(approval_from_row)
        .transpose()
}

/// Every request of these executions, by id.
pub(super) async fn of_executions(c: &Reader, ids: &[String]) -> anyhow::Result<Vec<Approval>> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE execution_id = ANY($1) ORDER BY id");
    let rows = c.query(&sql, &[&ids]).await?;
    approvals_from_rows(&rows)
}

/// Executions still `awaiting_approval` with no request pending (of this
/// host, nobody, or a host whose lease ran out).
pub(super) async fn answered_waiting(c: &Reader, host: &str) -> anyhow::Result<Vec<String>> {
    let sql = format!(
        "SELECT e.id FROM executions e WHERE e.status = 'awaiting_approval' AND {}
           AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.execution_id = e.id AND a.status = 'pending')
         ORDER BY e.id",
        super::hosts::free("e")
    );
    let rows = c.query(&sql, &[&host]).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Every execution `awaiting_approval` (of this host, nobody, or a host
/// whose lease ran out): its id and its version's id.
pub(super) async fn waiting(c: &Reader, host: &str) -> anyhow::Result<Vec<(String, String)>> {
    let sql = format!(
        "SELECT e.id, e.agent_version_id FROM executions e WHERE e.status = 'awaiting_approval' AND {}
         ORDER BY e.id",
        super::hosts::free("e")
    );
    let rows = c.query(&sql, &[&host]).await?;
    let mut found: Vec<(String, String)> = Vec::with_capacity(rows.len());
    for r in &rows {
        found.push((r.try_get(0)?, r.try_get(1)?));
    }
    Ok(found)
}

/// Every execution `awaiting_approval` that a host whose lease ran out held.
pub(super) async fn waiting_of_stopped_hosts(c: &Reader, host: &str) -> anyhow::Result<Vec<(String, String)>> {
    let sql = format!(
        "SELECT e.id, e.agent_version_id FROM executions e WHERE e.status = 'awaiting_approval'
           AND e.owner IS NOT NULL AND e.owner <> $1 AND {}
         ORDER BY e.id",
        super::hosts::lapsed("e")
    );
    let rows = c.query(&sql, &[&host]).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

#[async_trait]
impl JournalStore for PgStore {
    async fn load(&self, execution_id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let c = self.reader().await?;
        journal(&c, execution_id).await.map_err(read_error)
    }
}

#[async_trait]
impl ApprovalStore for PgStore {
    async fn get(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let c = self.reader().await?;
        approval(&c, id).await.map_err(read_error)
    }

    async fn list(&self, filter: ApprovalFilter) -> Result<(Vec<Approval>, bool), StoreError> {
        let c = self.reader().await?;
        approvals(&c, &filter).await.map_err(read_error)
    }

    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Approval>, StoreError> {
        let c = self.reader().await?;
        due(&c, now, limit).await.map_err(read_error)
    }

    async fn of_execution(&self, execution_id: &str) -> Result<Option<Approval>, StoreError> {
        let c = self.reader().await?;
        of_execution(&c, execution_id).await.map_err(read_error)
    }

    async fn of_executions(&self, execution_ids: Vec<String>) -> Result<Vec<Approval>, StoreError> {
        if execution_ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.reader().await?;
        of_executions(&c, &execution_ids).await.map_err(read_error)
    }

    async fn answered_waiting(&self) -> Result<Vec<String>, StoreError> {
        let c = self.reader().await?;
        answered_waiting(&c, &self.host).await.map_err(read_error)
    }

    async fn waiting(&self) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.reader().await?;
        waiting(&c, &self.host).await.map_err(read_error)
    }

    async fn waiting_of_stopped_hosts(&self) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.reader().await?;
        waiting_of_stopped_hosts(&c, &self.host).await.map_err(read_error)
    }
}
