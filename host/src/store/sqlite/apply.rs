//! What each write does in SQL, applied a batch at a time inside one transaction.
//! Within a batch, only the last write of each execution's row is applied, and an
//! execution's events become one chunk row (a JSON array of consecutive events).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use rusqlite::{Connection, ErrorCode, Transaction, params};

use super::conversations;
use super::deploys;
use super::durable;
use super::outbox;
use super::triggers;
use crate::record::{Agent, AgentVersion, Execution, LogLine, Step};
use crate::store::chunks::Chunks;
use crate::store::writer::{Dropped, Sink};
use crate::store::{BlobStore, Write};

/// The writer thread's connection, with what its writes need.
pub struct SqliteSink {
    pub conn: Connection,
    pub blobs: Arc<dyn BlobStore>,
    pub wal_frames: Arc<AtomicI64>,
}

impl Sink for SqliteSink {
    fn apply(&mut self, writes: &[&Write]) -> anyhow::Result<Dropped> {
        apply(&mut self.conn, self.blobs.as_ref(), writes)?;
        Ok(Dropped::new())
    }

    /// Whether a write failed because storage did (full, unwritable, I/O), not
    /// because of the write itself.
    fn storage_failed(&self, e: &anyhow::Error) -> bool {
        e.chain().any(|cause| {
            cause
                .downcast_ref::<rusqlite::Error>()
                .and_then(rusqlite::Error::sqlite_error_code)
                .is_some_and(|code| {
                    matches!(
                        code,
                        ErrorCode::DiskFull
                            | ErrorCode::SystemIoFailure
                            | ErrorCode::CannotOpen
                            | ErrorCode::ReadOnly
                            | ErrorCode::DatabaseBusy
                            | ErrorCode::DatabaseLocked
                            | ErrorCode::PermissionDenied
                    )
                })
                || cause.downcast_ref::<std::io::Error>().is_some()
        })
    }

    fn settled(&mut self) {
        super::checkpoint::restart_if_long(&self.conn, &self.wal_frames);
    }
}

/// Applies writes in one transaction.
fn apply(conn: &mut Connection, blobs: &dyn BlobStore, writes: &[&Write]) -> anyhow::Result<()> {
    // The last write of each execution's row in the batch wins.
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        if let Some(id) = w.execution_id() {
            last.insert(id, i);
        }
    }
    let mut chunks = Chunks::default();
    let tx = conn.transaction()?;
    for (i, w) in writes.iter().enumerate() {
        match w {
            Write::Deploy { agent, version, job } => {
                deploy(&tx, agent, version)?;
                if let Some(job) = job {
                    deploys::save(&tx, job)?;
                }
            }
            Write::DeployJob(job) => deploys::save(&tx, job)?,
            Write::Execution(e) => {
                if last.get(e.id.as_str()) == Some(&i) {
                    upsert_execution(&tx, e)?;
                }
            }
            Write::Finish(f) => {
                if last.get(f.execution.id.as_str()) == Some(&i) {
                    upsert_execution(&tx, &f.execution)?;
                }
                insert_run_record(&tx, &f.execution.id, &f.logs, &f.steps)?;
                durable::finish(&tx, &f.execution.id, f.execution.completed_at.unwrap_or_default())?;
                conversations::finish(&tx, &f.execution, &f.turns)?;
                outbox::deliver(&tx, &f.deliveries)?;
                for event in &f.events {
                    chunks.add(&f.execution.id, event);
                }
            }
            Write::Events { execution_id, events } => {
                for event in events {
                    chunks.add(execution_id, event);
                }
            }
            Write::Artifact(a) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO artifacts (id, execution_id, name, media_type, size, sha256, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    a.id,
                    a.execution_id,
                    a.name,
                    a.media_type,
                    a.size as i64,
                    a.sha256,
                    a.created_at
                ])?;
            }
            Write::Compiled {
                engine,
                component_hash,
                sha256,
            } => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO compiled_artifacts (engine, component_hash, sha256) VALUES (?1, ?2, ?3)",
                )?
                .execute([engine, component_hash, sha256])?;
            }
            Write::Sweep { before } => sweep(&tx, blobs, *before)?,
            Write::Status { id, from, to } => {
                tx.prepare_cached("UPDATE executions SET status = ?1 WHERE id = ?2 AND status = ?3")?
                    .execute(params![to.as_str(), id, from.as_str()])?;
            }
            Write::Running { id, started_at } => {
                tx.prepare_cached(
                    "UPDATE executions SET status = 'running', started_at = ?2
                     WHERE id = ?1 AND status IN ('pending', 'queued')",
                )?
                .execute(params![id, started_at])?;
            }
            // One host: nobody else counts its slots.
            Write::Release(_) => {}
            Write::LinkRetry { id, retried_by } => {
                tx.prepare_cached("UPDATE executions SET retried_by = ?1 WHERE id = ?2")?
                    .execute(params![retried_by, id])?;
            }
            Write::IdempotencyKey(r) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO idempotency_keys (key, request_hash, execution_id, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![r.key, r.request_hash, r.execution_id, r.created_at])?;
            }
            Write::ForgetIdempotencyKey { key, execution_id } => {
                tx.prepare_cached("DELETE FROM idempotency_keys WHERE key = ?1 AND execution_id = ?2")?
                    .execute([key, execution_id])?;
            }
            Write::ExpireIdempotencyKeys { before } => {
                tx.prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                    .execute([before])?;
            }
            Write::KvSet {
                agent_id,
                key,
                value,
                updated_at,
            } => {
                tx.prepare_cached(
                    "INSERT INTO kv (agent_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (agent_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )?
                .execute(params![agent_id, key, value, updated_at])?;
            }
            Write::KvDelete { agent_id, key } => {
                tx.prepare_cached("DELETE FROM kv WHERE agent_id = ?1 AND key = ?2")?
                    .execute([agent_id, key])?;
            }
            Write::ApiKey { key, secret_sha256 } => {
                tx.prepare_cached(
                    "INSERT INTO api_keys (id, workspace, name, role, secret_sha256, created_at, revoked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                )?
                .execute(params![
                    key.id,
                    key.workspace,
                    key.name,
                    key.role.as_str(),
                    secret_sha256,
                    key.created_at
                ])?;
            }
            Write::RevokeApiKey { id, workspace, at } => {
                tx.prepare_cached(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3)
                     WHERE id = ?1 AND (?2 IS NULL OR workspace = ?2)",
                )?
                .execute(params![id, workspace, at])?;
            }
            Write::Journal { execution_id, entries } => durable::insert_journal(&tx, execution_id, entries)?,
            Write::Approval(a, deliveries) => {
                durable::insert_approval(&tx, a)?;
                outbox::deliver(&tx, deliveries)?;
            }
            Write::Decide { id, decision } => durable::decide(&tx, id, decision)?,
            Write::Memory(w) => conversations::apply(&tx, w)?,
            Write::Schedule(s) => triggers::save(&tx, s)?,
            Write::DeleteSchedule(id) => {
                tx.prepare_cached("DELETE FROM schedules WHERE id = ?1")?
                    .execute([id])?;
            }
            Write::Hook(h) => triggers::insert_hook(&tx, h)?,
            Write::DeleteHook(id) => {
                tx.prepare_cached("DELETE FROM hooks WHERE id = ?1")?.execute([id])?;
            }
            Write::Subscribe(s) => outbox::subscribe(&tx, s)?,
            Write::Unsubscribe(id) => outbox::unsubscribe(&tx, id)?,
            Write::Deliver(d) => outbox::deliver(&tx, d)?,
            Write::SweepDeliveries(before) => outbox::sweep(&tx, *before)?,
        }
    }
    if !chunks.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO event_chunks (execution_id, first_seq, last_seq, events)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        chunks.rows(|r| {
            stmt.execute(params![r.execution_id, r.first as i64, r.last as i64, r.json])?;
            Ok(())
        })?;
    }
    tx.commit()?;
    Ok(())
}

fn deploy(tx: &Transaction<'_>, agent: &Agent, version: &AgentVersion) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO agents (id, name, description, latest_version, created_at, updated_at, workspace)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET description = excluded.description,
            latest_version = excluded.latest_version, updated_at = excluded.updated_at",
    )?
    .execute(params![
        agent.id,
        agent.name,
        agent.description,
        agent.latest_version,
        agent.created_at,
        agent.updated_at,
        agent.workspace
    ])?;
    tx.prepare_cached(
        "INSERT INTO agent_versions (id, agent_id, version, label, manifest, limits,
            component_hash, component_size, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        version.id,
        version.agent_id,
        version.version,
        version.label,
        serde_json::to_string(&version.manifest)?,
        serde_json::to_string(&version.limits)?,
        version.component_hash,
        version.component_size as i64,
        version.created_at
    ])?;
    Ok(())
}
fn upsert_execution(tx: &Transaction<'_>, e: &Execution) -> anyhow::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO executions (id, agent_id, agent_name, agent_version_id, agent_version,
            status, trigger, priority, input, output, error_code, error_message, error_source,
            metadata, fuel_used, peak_memory_bytes, n_steps, n_logs, logs_truncated,
            created_at, queued_at, started_at, completed_at, attempt, retry_of, retried_by, run_after,
            prompt_tokens, completion_tokens, total_tokens, cache_read_tokens, cache_write_tokens,
            cost_usd, model_used, llm_provider, first_token_ms, tool_ms, n_tool_calls, tool_calls,
            parent_id, depth, n_artifacts, n_screenshots, usage_estimated, conversation_id, memory_stores,
            output_partial, turn_key, session_set, schedule_id, scheduled_for, trace_id, trace_parent, model)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
            ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34,
            ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, ?44, ?45, ?46, ?47, ?48, ?49, ?50, ?51, ?52, ?53, ?54)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, output = excluded.output,
            error_code = excluded.error_code, error_message = excluded.error_message,
            error_source = excluded.error_source, fuel_used = excluded.fuel_used,
            peak_memory_bytes = excluded.peak_memory_bytes, n_steps = excluded.n_steps,
            n_logs = excluded.n_logs, logs_truncated = excluded.logs_truncated,
            queued_at = excluded.queued_at, started_at = excluded.started_at,
            completed_at = excluded.completed_at, retried_by = coalesce(excluded.retried_by, retried_by),
            run_after = excluded.run_after, prompt_tokens = excluded.prompt_tokens,
            completion_tokens = excluded.completion_tokens, total_tokens = excluded.total_tokens,
            cache_read_tokens = excluded.cache_read_tokens, cache_write_tokens = excluded.cache_write_tokens,
            cost_usd = excluded.cost_usd, model_used = excluded.model_used,
            llm_provider = excluded.llm_provider, first_token_ms = excluded.first_token_ms,
            tool_ms = excluded.tool_ms, n_tool_calls = excluded.n_tool_calls,
            tool_calls = excluded.tool_calls, n_artifacts = excluded.n_artifacts,
            n_screenshots = excluded.n_screenshots, usage_estimated = excluded.usage_estimated,
            output_partial = excluded.output_partial",
    )?;
    stmt.execute(params![
        e.id,
        e.agent_id,
        e.agent_name,
        e.agent_version_id,
        e.agent_version,
        e.status.as_str(),
        e.trigger.as_str(),
        e.priority,
        e.input.get(),
        e.output.as_ref().map(|o| o.get()),
        e.error.as_ref().map(|x| x.code.as_str()),
        e.error.as_ref().map(|x| x.message.as_str()),
        e.error.as_ref().map(|x| x.source.as_str()),
        e.metadata.get(),
        e.fuel_used.map(|v| v as i64),
        e.peak_memory_bytes.map(|v| v as i64),
        e.n_steps,
        e.n_logs,
        e.logs_truncated,
        e.created_at,
        e.queued_at,
        e.started_at,
        e.completed_at,
        e.attempt,
        e.retry_of,
        e.retried_by,
        e.run_after,
        e.token_usage.prompt as i64,
        e.token_usage.completion as i64,
        e.token_usage.total as i64,
        e.token_usage.cache_read as i64,
        e.token_usage.cache_write as i64,
        e.cost_usd,
        e.model_used,
        e.llm_provider,
        e.first_token_ms,
        e.tool_ms,
        e.n_tool_calls,
        serde_json::to_string(&e.tool_calls)?,
        e.parent_id,
        e.depth,
        e.n_artifacts,
        e.n_screenshots,
        e.usage_estimated,
        e.conversation_id,
        serde_json::to_string(&e.memory_store_ids)?,
        e.output_partial,
        e.turn_key,
        e.session_set.as_ref().map(|s| s.get()),
        e.schedule_id,
        e.scheduled_for,
        e.trace_id,
        e.trace_parent,
        e.model
    ])?;
    Ok(())
}

fn insert_run_record(tx: &Transaction<'_>, id: &str, logs: &[LogLine], steps: &[Step]) -> anyhow::Result<()> {
    if !logs.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO logs (execution_id, seq, ts, level, stream, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for l in logs {
            stmt.execute(params![id, l.seq, l.ts, l.level.as_str(), l.stream.as_str(), l.message])?;
        }
    }
    if !steps.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO steps (execution_id, seq, name, detail, started_at, ended_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for s in steps {
            stmt.execute(params![id, s.seq, s.name, s.detail.get(), s.started_at, s.ended_at])?;
        }
    }
    Ok(())
}

/// Most executions one sweep deletes (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 5000;

fn sweep(tx: &Transaction<'_>, blobs: &dyn BlobStore, before: i64) -> anyhow::Result<()> {
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM executions WHERE completed_at < ?1
             AND status IN ('completed', 'failed', 'cancelled', 'rejected') LIMIT ?2",
        )?
        .query_map(params![before, SWEEP_BATCH], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut hashes = Vec::new();
    for id in &ids {
        let mut stmt = tx.prepare_cached("SELECT sha256 FROM artifacts WHERE execution_id = ?1")?;
        let found = stmt
            .query_map([id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        hashes.extend(found);
        for sql in [
            "DELETE FROM logs WHERE execution_id = ?1",
            "DELETE FROM steps WHERE execution_id = ?1",
            "DELETE FROM event_chunks WHERE execution_id = ?1",
            "DELETE FROM artifacts WHERE execution_id = ?1",
            "DELETE FROM executions WHERE id = ?1",
        ]
        .into_iter()
        .chain(durable::SWEEP)
        {
            tx.prepare_cached(sql)?.execute([id])?;
        }
    }
    hashes.extend(deploys::sweep(tx, before)?);
    hashes.sort();
    hashes.dedup();
    for hash in hashes {
        let used: i64 = tx
            .prepare_cached(
                "SELECT (SELECT count(*) FROM artifacts WHERE sha256 = ?1)
                  + (SELECT count(*) FROM agent_versions WHERE component_hash = ?1)
                  + (SELECT count(*) FROM deploys WHERE component_hash = ?1 AND status <> 'failed')",
            )?
            .query_row([&hash], |r| r.get(0))?;
        if used == 0 {
            blobs.remove(&hash);
        }
    }
    if !ids.is_empty() {
        tracing::info!(executions = ids.len(), "retention sweep deleted finished executions");
    }
    Ok(())
}
