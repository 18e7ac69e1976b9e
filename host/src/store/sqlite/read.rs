//! The queries reads run (on the pool's read-only connections, off the async
//! workers).

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::value::RawValue;

use crate::events::Event;
use crate::record::{
    Agent, AgentVersion, ApiKey, Artifact, ErrorSource, ExecError, Execution, LogLevel, LogLine, LogStream, Role,
    Status, Step, Trigger, Usage,
};
use crate::store::chunks::EventPage;
use crate::store::{EventBudget, ExecutionFilter, IdempotencyRecord};

fn raw(text: String) -> Arc<RawValue> {
    // Only valid JSON is ever written; a damaged row shows as null, not an error.
    RawValue::from_string(text)
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
        .into()
}

const EXECUTION_COLUMNS: &str = "id, agent_id, agent_name, agent_version_id, agent_version, status,
    trigger, priority, input, output, error_code, error_message, error_source, metadata,
    fuel_used, peak_memory_bytes, n_steps, n_logs, logs_truncated, created_at, queued_at,
    started_at, completed_at, attempt, retry_of, retried_by, run_after, prompt_tokens,
    completion_tokens, total_tokens, cache_read_tokens, cache_write_tokens, cost_usd, model_used,
    llm_provider, first_token_ms, tool_ms, n_tool_calls, tool_calls, parent_id, depth,
    n_artifacts, n_screenshots, usage_estimated, conversation_id, memory_stores, output_partial,
    turn_key, session_set, schedule_id, scheduled_for, trace_id, trace_parent, model";

fn execution_from_row(r: &Row<'_>) -> rusqlite::Result<Execution> {
    let status: String = r.get(5)?;
    let error_code: Option<String> = r.get(10)?;
    let error = match error_code {
        Some(code) => Some(ExecError {
            code,
            message: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
            source: match r.get::<_, Option<String>>(12)?.as_deref() {
                Some("agent") => ErrorSource::Agent,
                _ => ErrorSource::Host,
            },
        }),
        None => None,
    };
    Ok(Execution {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        agent_name: r.get(2)?,
        agent_version_id: r.get(3)?,
        agent_version: r.get(4)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        trigger: Trigger::parse(&r.get::<_, String>(6)?).unwrap_or(Trigger::Api),
        priority: r.get(7)?,
        input: raw(r.get(8)?),
        output: r.get::<_, Option<String>>(9)?.map(raw),
        error,
        metadata: raw(r.get(13)?),
        fuel_used: r.get::<_, Option<i64>>(14)?.map(|v| v as u64),
        peak_memory_bytes: r.get::<_, Option<i64>>(15)?.map(|v| v as u64),
        n_steps: r.get(16)?,
        n_logs: r.get(17)?,
        logs_truncated: r.get(18)?,
        created_at: r.get(19)?,
        queued_at: r.get(20)?,
        started_at: r.get(21)?,
        completed_at: r.get(22)?,
        attempt: r.get(23)?,
        retry_of: r.get(24)?,
        retried_by: r.get(25)?,
        run_after: r.get(26)?,
        token_usage: Usage {
            prompt: r.get::<_, i64>(27)? as u64,
            completion: r.get::<_, i64>(28)? as u64,
            total: r.get::<_, i64>(29)? as u64,
            cache_read: r.get::<_, i64>(30)? as u64,
            cache_write: r.get::<_, i64>(31)? as u64,
        },
        cost_usd: r.get(32)?,
        model_used: r.get(33)?,
        llm_provider: r.get(34)?,
        first_token_ms: r.get(35)?,
        tool_ms: r.get(36)?,
        n_tool_calls: r.get(37)?,
        tool_calls: serde_json::from_str(&r.get::<_, String>(38)?).unwrap_or_default(),
        parent_id: r.get(39)?,
        depth: r.get(40)?,
        n_artifacts: r.get(41)?,
        n_screenshots: r.get(42)?,
        usage_estimated: r.get(43)?,
        conversation_id: r.get(44)?,
        memory_store_ids: serde_json::from_str(&r.get::<_, String>(45)?).unwrap_or_default(),
        output_partial: r.get(46)?,
        turn_key: r.get(47)?,
        session_set: r.get::<_, Option<String>>(48)?.map(raw),
        schedule_id: r.get(49)?,
        scheduled_for: r.get(50)?,
        trace_id: r.get(51)?,
        trace_parent: r.get(52)?,
        model: r.get(53)?,
    })
}

/// The workspace of a stored execution (its agent's).
pub fn execution_workspace(conn: &Connection, id: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT a.workspace FROM executions e JOIN agents a ON a.id = e.agent_id WHERE e.id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

pub fn execution(conn: &Connection, id: &str) -> anyhow::Result<Option<Execution>> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], execution_from_row)
        .optional()?)
}

/// Executions that had not finished, oldest first (what a restart recovers).
pub fn unfinished_executions(conn: &Connection) -> anyhow::Result<Vec<Execution>> {
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions
         WHERE status IN ('pending', 'queued', 'running', 'cancel_requested') ORDER BY id"
    );
    let rows = conn
        .prepare(&sql)?
        .query_map([], execution_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Idempotency keys created at or after `since`.
pub fn idempotency_keys(conn: &Connection, since: i64) -> anyhow::Result<Vec<IdempotencyRecord>> {
    let mut stmt = conn
        .prepare("SELECT key, request_hash, execution_id, created_at FROM idempotency_keys WHERE created_at >= ?1")?;
    let rows = stmt
        .query_map([since], |r| {
            Ok(IdempotencyRecord {
                key: r.get(0)?,
                request_hash: r.get(1)?,
                execution_id: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// One page: the rows and whether more follow.
pub fn executions(conn: &Connection, f: &ExecutionFilter) -> anyhow::Result<(Vec<Execution>, bool)> {
    let mut sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE agent_id IN (SELECT id FROM agents WHERE workspace = ?1)"
    );
    let mut args: Vec<&dyn ToSql> = vec![&f.workspace];
    let status = f.status.map(Status::as_str);
    if let Some(v) = &f.agent_id {
        args.push(v);
        sql.push_str(&format!(" AND agent_id = ?{}", args.len()));
    }
    if let Some(v) = &status {
        args.push(v);
        sql.push_str(&format!(" AND status = ?{}", args.len()));
    }
    if let Some(v) = &f.trigger {
        args.push(v);
        sql.push_str(&format!(" AND trigger = ?{}", args.len()));
    }
    if let Some(v) = &f.conversation_id {
        args.push(v);
        sql.push_str(&format!(" AND conversation_id = ?{}", args.len()));
    }
    if let Some(v) = &f.schedule_id {
        args.push(v);
        sql.push_str(&format!(" AND schedule_id = ?{}", args.len()));
    }
    if let Some(v) = &f.created_after {
        args.push(v);
        sql.push_str(&format!(" AND created_at > ?{}", args.len()));
    }
    if let Some(v) = &f.created_before {
        args.push(v);
        sql.push_str(&format!(" AND created_at < ?{}", args.len()));
    }
    if let Some(v) = &f.after {
        args.push(v);
        sql.push_str(&format!(" AND id < ?{}", args.len()));
    }
    let fetch = i64::from(f.limit) + 1;
    args.push(&fetch);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<Execution> = stmt
        .query_map(args.as_slice(), execution_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let has_more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    Ok((rows, has_more))
}

pub fn logs(conn: &Connection, id: &str, after: u32, limit: u32) -> anyhow::Result<(Vec<LogLine>, bool)> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, ts, level, stream, message FROM logs
         WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let mut rows: Vec<LogLine> = stmt
        .query_map(params![id, after, i64::from(limit) + 1], |r| {
            Ok(LogLine {
                seq: r.get(0)?,
                ts: r.get(1)?,
                level: LogLevel::parse(&r.get::<_, String>(2)?),
                stream: LogStream::parse(&r.get::<_, String>(3)?),
                message: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, has_more))
}

pub fn steps(conn: &Connection, id: &str) -> anyhow::Result<Vec<Step>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, name, detail, started_at, ended_at FROM steps
         WHERE execution_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([id], |r| {
            Ok(Step {
                seq: r.get(0)?,
                name: r.get(1)?,
                detail: RawValue::from_string(r.get(2)?).unwrap_or_else(|_| RawValue::NULL.to_owned()),
                started_at: r.get(3)?,
                ended_at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(super) fn agent_from_row(r: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        latest_version: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        workspace: r.get(6)?,
    })
}

pub fn agents(conn: &Connection) -> anyhow::Result<Vec<Agent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, description, latest_version, created_at, updated_at, workspace FROM agents ORDER BY name",
    )?;
    let rows = stmt.query_map([], agent_from_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Every version of every agent, oldest first (what a restart loads).
pub fn versions(conn: &Connection) -> anyhow::Result<Vec<AgentVersion>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM agent_versions ORDER BY agent_id, version"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(version_from_row(row)?);
    }
    Ok(out)
}

/// The columns [`version_from_row`] reads.
pub(super) const VERSION_COLUMNS: &str =
    "id, agent_id, version, label, manifest, limits, component_hash, component_size, created_at";

pub(super) fn version_from_row(r: &Row<'_>) -> anyhow::Result<AgentVersion> {
    Ok(AgentVersion {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        version: r.get(2)?,
        label: r.get(3)?,
        manifest: serde_json::from_str(&r.get::<_, String>(4)?)?,
        limits: serde_json::from_str(&r.get::<_, String>(5)?)?,
        component_hash: r.get(6)?,
        component_size: r.get::<_, i64>(7)? as u64,
        created_at: r.get(8)?,
    })
}

/// The recorded digests of an engine's compiled artifacts, by component hash.
pub fn compiled(conn: &Connection, engine: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut stmt = conn.prepare_cached("SELECT component_hash, sha256 FROM compiled_artifacts WHERE engine = ?1")?;
    let rows = stmt
        .query_map([engine], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Stored events after number `after`, in order, within `budget`. Rows (each at
/// most 64 KiB of events, or one event) are read one at a time, and reading
/// stops once the budget is spent.
pub fn events(conn: &Connection, id: &str, after: u64, budget: EventBudget) -> anyhow::Result<Vec<Arc<Event>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT events FROM event_chunks WHERE execution_id = ?1 AND last_seq > ?2 ORDER BY first_seq",
    )?;
    let mut rows = stmt.query(params![id, after as i64])?;
    let mut page = EventPage::new(id, after, budget);
    while !page.spent()
        && let Some(row) = rows.next()?
    {
        page.add(&row.get::<_, String>(0)?);
    }
    Ok(page.into_events())
}

/// The number of an execution's last stored event (0 for none).
pub fn last_event_seq(conn: &Connection, id: &str) -> anyhow::Result<u64> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(last_seq) FROM event_chunks WHERE execution_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    Ok(last.unwrap_or(0).max(0) as u64)
}

/// How many executions have a status.
pub fn count(conn: &Connection, status: Status) -> anyhow::Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM executions WHERE status = ?1")?
        .query_row([status.as_str()], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

pub fn kv_get(conn: &Connection, agent_id: &str, key: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM kv WHERE agent_id = ?1 AND key = ?2")?
        .query_row(params![agent_id, key], |r| r.get(0))
        .optional()?)
}

pub fn kv_list(conn: &Connection, agent_id: &str, prefix: &str, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key FROM kv WHERE agent_id = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key LIMIT ?3",
    )?;
    let keys = stmt
        .query_map(params![agent_id, prefix, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(keys)
}

const KEY_COLUMNS: &str = "id, workspace, name, role, secret_sha256, created_at, revoked_at";

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<(ApiKey, String)> {
    let role: String = r.get(3)?;
    Ok((
        ApiKey {
            id: r.get(0)?,
            workspace: r.get(1)?,
            name: r.get(2)?,
            role: Role::parse(&role).unwrap_or(Role::Member),
            created_at: r.get(5)?,
            revoked_at: r.get(6)?,
        },
        r.get(4)?,
    ))
}

/// A key with its secret's digest.
pub fn key(conn: &Connection, id: &str) -> anyhow::Result<Option<(ApiKey, String)>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
        .query_row([id], key_from_row)
        .optional()?)
}

/// Keys of one workspace, or of all, oldest first.
pub fn keys(conn: &Connection, workspace: Option<&str>) -> anyhow::Result<Vec<ApiKey>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR workspace = ?1 ORDER BY id"
    ))?;
    let keys = stmt
        .query_map([workspace], |r| key_from_row(r).map(|(k, _)| k))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(keys)
}

/// Whether any key is active (not revoked).
pub fn any_active_key(conn: &Connection) -> anyhow::Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)",
        [],
        |r| r.get(0),
    )?)
}

fn artifact_from_row(r: &Row<'_>) -> rusqlite::Result<Artifact> {
    Ok(Artifact {
        id: r.get(0)?,
        execution_id: r.get(1)?,
        name: r.get(2)?,
        media_type: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        sha256: r.get(5)?,
        created_at: r.get(6)?,
    })
}

pub fn artifacts(conn: &Connection, execution_id: &str) -> anyhow::Result<Vec<Artifact>> {
    let rows = conn
        .prepare_cached(
            "SELECT id, execution_id, name, media_type, size, sha256, created_at FROM artifacts
             WHERE execution_id = ?1 ORDER BY created_at, id",
        )?
        .query_map([execution_id], artifact_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn artifact(conn: &Connection, execution_id: &str, id: &str) -> anyhow::Result<Option<Artifact>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, execution_id, name, media_type, size, sha256, created_at FROM artifacts
             WHERE execution_id = ?1 AND id = ?2",
        )?
        .query_row([execution_id, id], artifact_from_row)
        .optional()?)
}
