//! The queries reads run on Postgres (on the pool's connections): executions,
//! their logs, steps, artifacts and events, agents and versions, compiled
//! artifacts, API keys, the kv tool, idempotency keys. The row-to-record
//! functions other modules share live here too.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::sql::{self, Reader, Row, ToSql};
use crate::events::Event;
use crate::record::{
    Agent, AgentVersion, ApiKey, Artifact, ErrorSource, ExecError, Execution, LogLevel, LogLine, LogStream, Role,
    Status, Step, Trigger, Usage,
};
use crate::store::chunks::EventPage;
use crate::store::{EventBudget, ExecutionFilter};

/// Stored JSON as a shared raw value.
pub(super) fn raw(text: String) -> Arc<RawValue> {
    // Only valid JSON is ever written; a damaged row shows as null, not an error.
    RawValue::from_string(text)
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
        .into()
}

pub(super) const EXECUTION_COLUMNS: &str = "id, agent_id, agent_name, agent_version_id, agent_version, status,
    trigger, priority, input, output, error_code, error_message, error_source, metadata,
    fuel_used, peak_memory_bytes, n_steps, n_logs, logs_truncated, created_at, queued_at,
    started_at, completed_at, attempt, retry_of, retried_by, run_after, prompt_tokens,
    completion_tokens, total_tokens, cache_read_tokens, cache_write_tokens, cost_usd, model_used,
    llm_provider, first_token_ms, tool_ms, n_tool_calls, tool_calls, parent_id, depth,
    n_artifacts, n_screenshots, usage_estimated, conversation_id, memory_stores, output_partial,
    turn_key, session_set, schedule_id, scheduled_for, trace_id, trace_parent, model";

/// An execution, from a row of [`EXECUTION_COLUMNS`].
pub(super) fn execution_from_row(r: &Row) -> anyhow::Result<Execution> {
    let status: String = r.try_get(5)?;
    let error_code: Option<String> = r.try_get(10)?;
    let error = match error_code {
        Some(code) => Some(ExecError {
            code,
            message: r.try_get::<_, Option<String>>(11)?.unwrap_or_default(),
            source: match r.try_get::<_, Option<&str>>(12)? {
                Some("agent") => ErrorSource::Agent,
                _ => ErrorSource::Host,
            },
        }),
        None => None,
    };
    Ok(Execution {
        id: r.try_get(0)?,
        agent_id: r.try_get(1)?,
        agent_name: r.try_get(2)?,
        agent_version_id: r.try_get(3)?,
        agent_version: sql::u32_at(r, 4)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        trigger: Trigger::parse(r.try_get::<_, &str>(6)?).unwrap_or(Trigger::Api),
        priority: u8::try_from(r.try_get::<_, i64>(7)?).unwrap_or_default(),
        input: raw(r.try_get(8)?),
        output: r.try_get::<_, Option<String>>(9)?.map(raw),
        error,
        metadata: raw(r.try_get(13)?),
        fuel_used: sql::opt_u64_at(r, 14)?,
        peak_memory_bytes: sql::opt_u64_at(r, 15)?,
        n_steps: sql::u32_at(r, 16)?,
        n_logs: sql::u32_at(r, 17)?,
        logs_truncated: r.try_get(18)?,
        created_at: r.try_get(19)?,
        queued_at: r.try_get(20)?,
        started_at: r.try_get(21)?,
        completed_at: r.try_get(22)?,
        attempt: sql::u32_at(r, 23)?,
        retry_of: r.try_get(24)?,
        retried_by: r.try_get(25)?,
        run_after: r.try_get(26)?,
        token_usage: Usage {
            prompt: sql::u64_at(r, 27)?,
            completion: sql::u64_at(r, 28)?,
            total: sql::u64_at(r, 29)?,
            cache_read: sql::u64_at(r, 30)?,
            cache_write: sql::u64_at(r, 31)?,
        },
        cost_usd: r.try_get(32)?,
        model_used: r.try_get(33)?,
        llm_provider: r.try_get(34)?,
        first_token_ms: r.try_get(35)?,
        tool_ms: r.try_get(36)?,
        n_tool_calls: sql::u32_at(r, 37)?,
        tool_calls: serde_json::from_str(r.try_get::<_, &str>(38)?).unwrap_or_default(),
        parent_id: r.try_get(39)?,
        depth: sql::u32_at(r, 40)?,
        n_artifacts: sql::u32_at(r, 41)?,
        n_screenshots: sql::u32_at(r, 42)?,
        usage_estimated: r.try_get(43)?,
        conversation_id: r.try_get(44)?,
        memory_store_ids: serde_json::from_str(r.try_get::<_, &str>(45)?).unwrap_or_default(),
        output_partial: r.try_get(46)?,
        turn_key: r.try_get(47)?,
        session_set: r.try_get::<_, Option<String>>(48)?.map(raw),
        schedule_id: r.try_get(49)?,
        scheduled_for: r.try_get(50)?,
        trace_id: r.try_get(51)?,
        trace_parent: r.try_get(52)?,
        model: r.try_get(53)?,
    })
}

/// Executions from rows of [`EXECUTION_COLUMNS`].
pub(super) fn executions_from_rows(rows: &[Row]) -> anyhow::Result<Vec<Execution>> {
    rows.iter().map(execution_from_row).collect()
}

/// The workspace of a stored execution (its agent's).
pub async fn execution_workspace(c: &Reader, id: &str) -> anyhow::Result<Option<String>> {
    let row = c
        .query_opt(
            "SELECT a.workspace FROM executions e JOIN agents a ON a.id = e.agent_id WHERE e.id = $1",
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(|r| r.try_get(0)).transpose()?)
}

pub async fn execution(c: &Reader, id: &str) -> anyhow::Result<Option<Execution>> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
    let row = c.query_opt(&sql, &[&id]).await?;
    row.as_ref().map(execution_from_row).transpose()
}

/// One page: the rows and whether more follow.
pub async fn executions(c: &Reader, f: &ExecutionFilter) -> anyhow::Result<(Vec<Execution>, bool)> {
    let status = f.status.map(Status::as_str);
    let fetch = i64::from(f.limit) + 1;
    let mut sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE agent_id IN (SELECT id FROM agents WHERE workspace = $1)"
    );
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&f.workspace];
    if let Some(v) = &f.agent_id {
        args.push(v);
        sql.push_str(&format!(" AND agent_id = ${}", args.len()));
    }
    if let Some(v) = &status {
        args.push(v);
        sql.push_str(&format!(" AND status = ${}", args.len()));
    }
    if let Some(v) = &f.trigger {
        args.push(v);
        sql.push_str(&format!(" AND trigger = ${}", args.len()));
    }
    if let Some(v) = &f.conversation_id {
        args.push(v);
        sql.push_str(&format!(" AND conversation_id = ${}", args.len()));
    }
    if let Some(v) = &f.schedule_id {
        args.push(v);
        sql.push_str(&format!(" AND schedule_id = ${}", args.len()));
    }
    if let Some(v) = &f.created_after {
        args.push(v);
        sql.push_str(&format!(" AND created_at > ${}", args.len()));
    }
    if let Some(v) = &f.created_before {
        args.push(v);
        sql.push_str(&format!(" AND created_at < ${}", args.len()));
    }
    if let Some(v) = &f.after {
        args.push(v);
        sql.push_str(&format!(" AND id < ${}", args.len()));
    }
    args.push(&fetch);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
    let rows = c.query(&sql, &args).await?;
    let mut rows = executions_from_rows(&rows)?;
    let has_more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    Ok((rows, has_more))
}

pub async fn logs(c: &Reader, id: &str, after: u32, limit: u32) -> anyhow::Result<(Vec<LogLine>, bool)> {
    let rows = c
        .query(
            "SELECT seq, ts, level, stream, message FROM logs
             WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&id, &i64::from(after), &(i64::from(limit) + 1)],
        )
        .await?;
    let mut lines = rows
        .iter()
        .map(|r| {
            Ok(LogLine {
                seq: sql::u32_at(r, 0)?,
                ts: r.try_get(1)?,
                level: LogLevel::parse(r.try_get::<_, &str>(2)?),
                stream: LogStream::parse(r.try_get::<_, &str>(3)?),
                message: r.try_get(4)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let has_more = lines.len() > limit as usize;
    lines.truncate(limit as usize);
    Ok((lines, has_more))
}

pub async fn steps(c: &Reader, id: &str) -> anyhow::Result<Vec<Step>> {
    let rows = c
        .query(
            "SELECT seq, name, detail, started_at, ended_at FROM steps
             WHERE execution_id = $1 ORDER BY seq",
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Step {
                seq: sql::u32_at(r, 0)?,
                name: r.try_get(1)?,
                detail: RawValue::from_string(r.try_get(2)?).unwrap_or_else(|_| RawValue::NULL.to_owned()),
                started_at: r.try_get(3)?,
                ended_at: r.try_get(4)?,
            })
        })
        .collect()
}

/// An agent, from `id, name, description, latest_version, created_at,
/// updated_at, workspace`.
pub(super) fn agent_from_row(r: &Row) -> anyhow::Result<Agent> {
    Ok(Agent {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        latest_version: sql::u32_at(r, 3)?,
        created_at: r.try_get(4)?,
        updated_at: r.try_get(5)?,
        workspace: r.try_get(6)?,
    })
}

pub async fn agents(c: &Reader) -> anyhow::Result<Vec<Agent>> {
    let rows = c
        .query(
            "SELECT id, name, description, latest_version, created_at, updated_at, workspace FROM agents ORDER BY name",
            &[],
        )
        .await?;
    rows.iter().map(agent_from_row).collect()
}

/// Every version of every agent, oldest first (what a restart loads).
pub async fn versions(c: &Reader) -> anyhow::Result<Vec<AgentVersion>> {
    let rows = c
        .query(
            &format!("SELECT {VERSION_COLUMNS} FROM agent_versions ORDER BY agent_id, version"),
            &[],
        )
        .await?;
    rows.iter().map(version_from_row).collect()
}

/// The columns [`version_from_row`] reads.
pub(super) const VERSION_COLUMNS: &str =
    "id, agent_id, version, label, manifest, limits, component_hash, component_size, created_at";

pub(super) fn version_from_row(r: &Row) -> anyhow::Result<AgentVersion> {
    Ok(AgentVersion {
        id: r.try_get(0)?,
        agent_id: r.try_get(1)?,
        version: sql::u32_at(r, 2)?,
        label: r.try_get(3)?,
        manifest: serde_json::from_str(r.try_get::<_, &str>(4)?)?,
        limits: serde_json::from_str(r.try_get::<_, &str>(5)?)?,
        component_hash: r.try_get(6)?,
        component_size: sql::u64_at(r, 7)?,
        created_at: r.try_get(8)?,
    })
}

/// The recorded digests of an engine's compiled artifacts, by component hash.
pub async fn compiled(c: &Reader, engine: &str) -> anyhow::Result<HashMap<String, String>> {
    let rows = c
        .query(
            "SELECT component_hash, sha256 FROM compiled_artifacts WHERE engine = $1",
            &[&engine],
        )
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Rows of events the first read of [`events`] asks for; each further read
/// asks for four times more, up to [`MAX_EVENT_ROWS`].
const FIRST_EVENT_ROWS: usize = 8;
const MAX_EVENT_ROWS: usize = 256;

/// Stored events after number `after`, in order, within `budget`. Rows (each at
/// most 64 KiB of events, or one event) are read a few at a time, and reading
/// stops once the budget is spent. Every row holds at least one event after
/// `after`, so a read never asks for more rows than events remain in the
/// budget.
pub async fn events(c: &Reader, id: &str, after: u64, budget: EventBudget) -> anyhow::Result<Vec<Arc<Event>>> {
    let after_seq = sql::int(after);
    let mut page = EventPage::new(id, after, budget);
    // The first_seq of the last row read: the next read starts after it.
    let mut cursor = i64::MIN;
    let mut rows_wanted = FIRST_EVENT_ROWS;
    while !page.spent() {
        let want = rows_wanted.min(page.wanted());
        let rows = c
            .query(
                "SELECT first_seq, events FROM event_chunks
                 WHERE execution_id = $1 AND last_seq > $2 AND first_seq > $3 ORDER BY first_seq LIMIT $4",
                &[&id, &after_seq, &cursor, &(want as i64)],
            )
            .await?;
        for row in &rows {
            if page.spent() {
                break;
            }
            cursor = row.try_get(0)?;
            page.add(row.try_get(1)?);
        }
        if rows.len() < want {
            break;
        }
        rows_wanted = (rows_wanted * 4).min(MAX_EVENT_ROWS);
    }
    Ok(page.into_events())
}

/// The number of an execution's last stored event (0 for none).
pub async fn last_event_seq(c: &Reader, id: &str) -> anyhow::Result<u64> {
    let row = c
        .query_one("SELECT max(last_seq) FROM event_chunks WHERE execution_id = $1", &[&id])
        .await?;
    Ok(sql::opt_u64_at(&row, 0)?.unwrap_or(0))
}

/// How many executions have a status.
pub async fn count(c: &Reader, status: Status) -> anyhow::Result<u64> {
    let row = c
        .query_one("SELECT count(*) FROM executions WHERE status = $1", &[&status.as_str()])
        .await?;
    sql::u64_at(&row, 0)
}

pub async fn kv_get(c: &Reader, agent_id: &str, key: &str) -> anyhow::Result<Option<String>> {
    let row = c
        .query_opt(
            "SELECT value FROM kv WHERE agent_id = $1 AND key = $2",
            &[&agent_id, &key],
        )
        .await?;
    Ok(row.as_ref().map(|r| r.try_get(0)).transpose()?)
}

pub async fn kv_list(c: &Reader, agent_id: &str, prefix: &str, limit: usize) -> anyhow::Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT key FROM kv WHERE agent_id = $1 AND starts_with(key, $2) ORDER BY key LIMIT $3",
            &[&agent_id, &prefix, &(limit as i64)],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

const KEY_COLUMNS: &str = "id, workspace, name, role, secret_sha256, created_at, revoked_at";

/// A key with its secret's digest, from a row of [`KEY_COLUMNS`].
pub(super) fn key_from_row(r: &Row) -> anyhow::Result<(ApiKey, String)> {
    Ok((
        ApiKey {
            id: r.try_get(0)?,
            workspace: r.try_get(1)?,
            name: r.try_get(2)?,
            role: Role::parse(r.try_get::<_, &str>(3)?).unwrap_or(Role::Member),
            created_at: r.try_get(5)?,
            revoked_at: r.try_get(6)?,
        },
        r.try_get(4)?,
    ))
}

/// A key with its secret's digest.
pub async fn key(c: &Reader, id: &str) -> anyhow::Result<Option<(ApiKey, String)>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
    let row = c.query_opt(&sql, &[&id]).await?;
    row.as_ref().map(key_from_row).transpose()
}

/// Keys of one workspace, or of all, oldest first.
pub async fn keys(c: &Reader, workspace: Option<&str>) -> anyhow::Result<Vec<ApiKey>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE $1::TEXT IS NULL OR workspace = $1 ORDER BY id");
    let rows = c.query(&sql, &[&workspace]).await?;
    rows.iter().map(|r| key_from_row(r).map(|(k, _)| k)).collect()
}

/// Whether any key is active (not revoked).
pub async fn any_active_key(c: &Reader) -> anyhow::Result<bool> {
    let row = c
        .query_one("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)", &[])
        .await?;
    Ok(row.try_get(0)?)
}

const ARTIFACT_COLUMNS: &str = "id, execution_id, name, media_type, size, sha256, created_at";

/// An artifact, from a row of `id, execution_id, name, media_type, size,
/// sha256, created_at`.
pub(super) fn artifact_from_row(r: &Row) -> anyhow::Result<Artifact> {
    Ok(Artifact {
        id: r.try_get(0)?,
        execution_id: r.try_get(1)?,
        name: r.try_get(2)?,
        media_type: r.try_get(3)?,
        size: sql::u64_at(r, 4)?,
        sha256: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

pub async fn artifacts(c: &Reader, execution_id: &str) -> anyhow::Result<Vec<Artifact>> {
    let sql = format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE execution_id = $1 ORDER BY created_at, id");
    let rows = c.query(&sql, &[&execution_id]).await?;
    rows.iter().map(artifact_from_row).collect()
}

pub async fn artifact(c: &Reader, execution_id: &str, id: &str) -> anyhow::Result<Option<Artifact>> {
    let sql = format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE execution_id = $1 AND id = $2");
    let row = c.query_opt(&sql, &[&execution_id, &id]).await?;
    row.as_ref().map(artifact_from_row).transpose()
}
