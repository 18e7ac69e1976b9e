//! What each write does in SQL on Postgres, applied a batch at a time inside
//! the writer's transaction (begun and committed by the writer). Within a
//! batch, only the last write of each execution's row is applied, and an
//! execution's events become one chunk row (a JSON array of consecutive events).

use std::collections::{HashMap, HashSet};

use super::conversations;
use super::deploys;
use super::durable;
use super::outbox;
use super::sql::{self, Tx};
use super::sweep;
use super::triggers;
use crate::record::{Agent, AgentVersion, Execution, LogLine, Status, Step};
use crate::store::Write;
use crate::store::chunks::Chunks;

/// Applies writes in the writer's transaction; `host` is this host, the
/// owner of every execution row it writes. Returns the executions whose run
/// writes were dropped because another host holds their rows.
pub fn apply(tx: &mut Tx<'_>, host: &str, writes: &[&Write]) -> anyhow::Result<HashSet<String>> {
    // The last write of each execution's row in the batch wins.
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        if let Some(id) = w.execution_id() {
            last.insert(id, i);
        }
    }
    let (mut taken, waiting) = taken_by_others(tx, host, writes)?;
    let mut chunks = Chunks::default();
    for (i, w) in writes.iter().enumerate() {
        if let Some(id) = run_of(w)
            && (taken.contains(id) || (waiting.contains(id) && !is_waiting_record(w)))
        {
            tracing::warn!(
                execution = id,
                "another host took this execution over: this host's write of it is dropped"
            );
            continue;
        }
        match w {
            Write::Deploy { agent, version, job } => match job {
                Some(job) if !deploys::end_deployed(tx, host, job)? => {
                    tracing::warn!(deploy = %job.id, "another host took this deploy over: its version is not added here");
                    taken.insert(job.id.clone());
                }
                _ => deploy(tx, agent, version)?,
            },
            Write::DeployJob(job) => deploys::save(tx, host, job)?,
            Write::Execution(e) => {
                if last.get(e.id.as_str()) == Some(&i) {
                    upsert_execution(tx, host, e)?;
                }
            }
            Write::Finish(f) => {
                if last.get(f.execution.id.as_str()) == Some(&i) {
                    upsert_execution(tx, host, &f.execution)?;
                }
                insert_run_record(tx, &f.execution.id, &f.logs, &f.steps)?;
                durable::finish(tx, &f.execution.id, f.execution.completed_at.unwrap_or_default())?;
                conversations::finish(tx, &f.execution, &f.turns)?;
                outbox::deliver(tx, &f.deliveries)?;
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
                tx.execute(
                    "INSERT INTO artifacts (id, execution_id, name, media_type, size, sha256, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (id) DO UPDATE SET execution_id = EXCLUDED.execution_id, name = EXCLUDED.name,
                        media_type = EXCLUDED.media_type, size = EXCLUDED.size, sha256 = EXCLUDED.sha256,
                        created_at = EXCLUDED.created_at",
                    &[
                        &a.id,
                        &a.execution_id,
                        &a.name,
                        &a.media_type,
                        &sql::int(a.size),
                        &a.sha256,
                        &a.created_at,
                    ],
                )?;
            }
            Write::Compiled {
                engine,
                component_hash,
                sha256,
            } => {
                tx.execute(
                    "INSERT INTO compiled_artifacts (engine, component_hash, sha256) VALUES ($1, $2, $3)
                     ON CONFLICT (engine, component_hash) DO UPDATE SET sha256 = EXCLUDED.sha256",
                    &[engine, component_hash, sha256],
                )?;
            }
            Write::Sweep { before } => sweep::sweep(tx, *before)?,
            // A run that goes on (resumed after a decision) is the resuming
            // host's, which took it first: not a host whose lease ran out
            // meanwhile, and another took it.
            Write::Status { id, from, to } => {
                tx.execute(
                    "UPDATE executions SET status = $1, owner = CASE WHEN $1 = 'running' THEN $4 ELSE owner END
                     WHERE id = $2 AND status = $3 AND ($1 <> 'running' OR owner IS NULL OR owner = $4)",
                    &[&to.as_str(), id, &from.as_str(), &host],
                )?;
            }
            Write::Running { id, started_at } => {
                tx.execute(
                    "UPDATE executions SET status = 'running', started_at = $2, owner = $3
                     WHERE id = $1 AND status IN ('pending', 'queued') AND owner = $3",
                    &[id, started_at, &host],
                )?;
            }
            Write::Release(id) => {
                tx.execute(
                    "UPDATE executions SET owner = NULL
                     WHERE id = $1 AND owner = $2 AND status = 'awaiting_approval'",
                    &[id, &host],
                )?;
            }
            Write::LinkRetry { id, retried_by } => {
                tx.execute("UPDATE executions SET retried_by = $1 WHERE id = $2", &[retried_by, id])?;
            }
            Write::IdempotencyKey(r) => {
                tx.execute(
                    "INSERT INTO idempotency_keys (key, request_hash, execution_id, created_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
                        execution_id = EXCLUDED.execution_id, created_at = EXCLUDED.created_at
                     WHERE idempotency_keys.execution_id = EXCLUDED.execution_id",
                    &[&r.key, &r.request_hash, &r.execution_id, &r.created_at],
                )?;
            }
            Write::ForgetIdempotencyKey { key, execution_id } => {
                tx.execute(
                    "DELETE FROM idempotency_keys WHERE key = $1 AND execution_id = $2",
                    &[key, execution_id],
                )?;
            }
            Write::ExpireIdempotencyKeys { before } => {
                tx.execute("DELETE FROM idempotency_keys WHERE created_at < $1", &[before])?;
            }
            Write::KvSet {
                agent_id,
                key,
                value,
                updated_at,
            } => {
                tx.execute(
                    "INSERT INTO kv (agent_id, key, value, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (agent_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
                    &[agent_id, key, value, updated_at],
                )?;
            }
            Write::KvDelete { agent_id, key } => {
                tx.execute("DELETE FROM kv WHERE agent_id = $1 AND key = $2", &[agent_id, key])?;
            }
            Write::ApiKey { key, secret_sha256 } => {
                tx.execute(
                    "INSERT INTO api_keys (id, workspace, name, role, secret_sha256, created_at, revoked_at)
                     VALUES ($1, $2, $3, $4, $5, $6, NULL)",
                    &[
                        &key.id,
                        &key.workspace,
                        &key.name,
                        &key.role.as_str(),
                        secret_sha256,
                        &key.created_at,
                    ],
                )?;
            }
            Write::RevokeApiKey { id, workspace, at } => {
                tx.execute(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)
                     WHERE id = $1 AND ($2::TEXT IS NULL OR workspace = $2)",
                    &[id, workspace, at],
                )?;
            }
            Write::Journal { execution_id, entries } => durable::insert_journal(tx, execution_id, entries)?,
            Write::Approval(a, deliveries) => {
                durable::insert_approval(tx, a)?;
                outbox::deliver(tx, deliveries)?;
            }
            Write::Decide { id, decision } => durable::decide(tx, id, decision)?,
            Write::Memory(w) => conversations::apply(tx, w)?,
            Write::Schedule(s) => triggers::save(tx, s)?,
            Write::DeleteSchedule(id) => {
                tx.execute("DELETE FROM schedules WHERE id = $1", &[id])?;
            }
            Write::Hook(h) => triggers::insert_hook(tx, h)?,
            Write::DeleteHook(id) => {
                tx.execute("DELETE FROM hooks WHERE id = $1", &[id])?;
            }
            Write::Subscribe(s) => outbox::subscribe(tx, s)?,
            Write::Unsubscribe(id) => outbox::unsubscribe(tx, id)?,
            Write::Deliver(d) => outbox::deliver(tx, d)?,
            Write::SweepDeliveries(before) => outbox::sweep(tx, *before)?,
        }
    }
    chunks.rows(|r| {
        tx.execute(
            "INSERT INTO event_chunks (execution_id, first_seq, last_seq, events)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (execution_id, first_seq) DO UPDATE SET last_seq = EXCLUDED.last_seq,
                events = EXCLUDED.events",
            &[&r.execution_id, &sql::int(r.first), &sql::int(r.last), &r.json],
        )?;
        Ok(())
    })?;
    Ok(taken)
}

fn deploy(tx: &mut Tx<'_>, agent: &Agent, version: &AgentVersion) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO agents (id, name, description, latest_version, created_at, updated_at, workspace)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET description = EXCLUDED.description,
            latest_version = EXCLUDED.latest_version, updated_at = EXCLUDED.updated_at",
        &[
            &agent.id,
            &agent.name,
            &agent.description,
            &i64::from(agent.latest_version),
            &agent.created_at,
            &agent.updated_at,
            &agent.workspace,
        ],
    )?;
    let manifest = serde_json::to_string(&version.manifest)?;
    let limits = serde_json::to_string(&version.limits)?;
    tx.execute(
        "INSERT INTO agent_versions (id, agent_id, version, label, manifest, limits,
            component_hash, component_size, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &version.id,
            &version.agent_id,
            &i64::from(version.version),
            &version.label,
            &manifest,
            &limits,
            &version.component_hash,
            &sql::int(version.component_size),
            &version.created_at,
        ],
    )?;
    Ok(())
}

/// The execution a write of a run's own record is about (its row, its
/// events, journal, artifacts).
fn run_of(w: &Write) -> Option<&str> {
    match w {
        Write::Execution(e) => Some(&e.id),
        Write::Finish(f) => Some(&f.execution.id),
        Write::Events { execution_id, .. } => Some(execution_id),
        Write::Running { id, .. } => Some(id),
        Write::Journal { execution_id, .. } => Some(execution_id),
        Write::Artifact(a) => Some(&a.execution_id),
        _ => None,
    }
}

/// Whether a write is an execution's record as it waits (what the host that
/// accepts it writes, before any host claims it).
fn is_waiting_record(w: &Write) -> bool {
    matches!(w, Write::Execution(e) if matches!(e.status, Status::Pending | Status::Queued))
}

/// The executions of the batch's run writes that another host took over
/// (this host's lease ran out meanwhile), and those back in the shared
/// queue: a run's writes from here are dropped (but for its waiting record).
/// Their rows stay locked until the batch commits, so no takeover slips in
/// between. (A run resumed here was taken by this host before it resumed.)
fn taken_by_others(
    tx: &mut Tx<'_>,
    host: &str,
    writes: &[&Write],
) -> anyhow::Result<(HashSet<String>, HashSet<String>)> {
    let ids: Vec<&str> = writes.iter().filter_map(|w| run_of(w)).collect();
    if ids.is_empty() {
        return Ok((HashSet::new(), HashSet::new()));
    }
    let rows = tx.query(
        "SELECT id, owner IS NULL FROM executions WHERE id = ANY($1)
           AND ((owner IS NOT NULL AND owner <> $2)
             OR (owner IS NULL AND status IN ('pending', 'queued') AND conversation_id IS NULL))
         FOR UPDATE",
        &[&ids, &host],
    )?;
    let mut taken = HashSet::new();
    let mut waiting = HashSet::new();
    for row in &rows {
        let id: String = row.try_get(0)?;
        if row.try_get::<_, bool>(1)? {
            waiting.insert(id);
        } else {
            taken.insert(id);
        }
    }
    // An end decided here of a row back in the shared queue and not claimed
    // since (a cancel of one waiting here, a run that ended before its start
    // was stored): stored, as this host's again.
    for w in writes {
        if let Write::Finish(f) = w {
            waiting.remove(&f.execution.id);
        }
    }
    Ok((taken, waiting))
}

/// Creates or updates an execution's row, as this host's; a row another
/// host took over meanwhile (this host's lease ran out) is left to it.
fn upsert_execution(tx: &mut Tx<'_>, host: &str, e: &Execution) -> anyhow::Result<()> {
    let tool_calls = serde_json::to_string(&e.tool_calls)?;
    // Waiting in the shared queue, it is nobody's until a host claims it (a
    // conversation's turn stays with the host that accepted it); a write
    // never gives back a claim.
    let owner =
        (!(matches!(e.status, Status::Pending | Status::Queued) && e.conversation_id.is_none())).then_some(host);
    let memory_stores = serde_json::to_string(&e.memory_store_ids)?;
    let u = &e.token_usage;
    tx.execute(
        "INSERT INTO executions (id, agent_id, agent_name, agent_version_id, agent_version,
            status, trigger, priority, input, output, error_code, error_message, error_source,
            metadata, fuel_used, peak_memory_bytes, n_steps, n_logs, logs_truncated,
            created_at, queued_at, started_at, completed_at, attempt, retry_of, retried_by, run_after,
            prompt_tokens, completion_tokens, total_tokens, cache_read_tokens, cache_write_tokens,
            cost_usd, model_used, llm_provider, first_token_ms, tool_ms, n_tool_calls, tool_calls,
            parent_id, depth, n_artifacts, n_screenshots, usage_estimated, conversation_id, memory_stores,
            output_partial, turn_key, session_set, schedule_id, scheduled_for, trace_id, trace_parent, model, owner)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34,
            $35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45, $46, $47, $48, $49, $50, $51, $52, $53, $54, $55)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, output = EXCLUDED.output,
            error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
            error_source = EXCLUDED.error_source, fuel_used = EXCLUDED.fuel_used,
            peak_memory_bytes = EXCLUDED.peak_memory_bytes, n_steps = EXCLUDED.n_steps,
            n_logs = EXCLUDED.n_logs, logs_truncated = EXCLUDED.logs_truncated,
            queued_at = EXCLUDED.queued_at, started_at = EXCLUDED.started_at,
            completed_at = EXCLUDED.completed_at, retried_by = coalesce(EXCLUDED.retried_by, executions.retried_by),
            run_after = EXCLUDED.run_after, prompt_tokens = EXCLUDED.prompt_tokens,
            completion_tokens = EXCLUDED.completion_tokens, total_tokens = EXCLUDED.total_tokens,
            cache_read_tokens = EXCLUDED.cache_read_tokens, cache_write_tokens = EXCLUDED.cache_write_tokens,
            cost_usd = EXCLUDED.cost_usd, model_used = EXCLUDED.model_used,
            llm_provider = EXCLUDED.llm_provider, first_token_ms = EXCLUDED.first_token_ms,
            tool_ms = EXCLUDED.tool_ms, n_tool_calls = EXCLUDED.n_tool_calls,
            tool_calls = EXCLUDED.tool_calls, n_artifacts = EXCLUDED.n_artifacts,
            n_screenshots = EXCLUDED.n_screenshots, usage_estimated = EXCLUDED.usage_estimated,
            output_partial = EXCLUDED.output_partial, owner = coalesce(EXCLUDED.owner, executions.owner)
         WHERE executions.owner IS NULL OR executions.owner = $56",
        &[
            &e.id,
            &e.agent_id,
            &e.agent_name,
            &e.agent_version_id,
            &i64::from(e.agent_version),
            &e.status.as_str(),
            &e.trigger.as_str(),
            &i64::from(e.priority),
            &e.input.get(),
            &e.output.as_ref().map(|o| o.get()),
            &e.error.as_ref().map(|x| x.code.as_str()),
            &e.error.as_ref().map(|x| x.message.as_str()),
            &e.error.as_ref().map(|x| x.source.as_str()),
            &e.metadata.get(),
            &e.fuel_used.map(sql::int),
            &e.peak_memory_bytes.map(sql::int),
            &i64::from(e.n_steps),
            &i64::from(e.n_logs),
            &e.logs_truncated,
            &e.created_at,
            &e.queued_at,
            &e.started_at,
            &e.completed_at,
            &i64::from(e.attempt),
            &e.retry_of,
            &e.retried_by,
            &e.run_after,
            &sql::int(u.prompt),
            &sql::int(u.completion),
            &sql::int(u.total),
            &sql::int(u.cache_read),
            &sql::int(u.cache_write),
            &e.cost_usd,
            &e.model_used,
            &e.llm_provider,
            &e.first_token_ms,
            &e.tool_ms,
            &i64::from(e.n_tool_calls),
            &tool_calls,
            &e.parent_id,
            &i64::from(e.depth),
            &i64::from(e.n_artifacts),
            &i64::from(e.n_screenshots),
            &e.usage_estimated,
            &e.conversation_id,
            &memory_stores,
            &e.output_partial,
            &e.turn_key,
            &e.session_set.as_ref().map(|s| s.get()),
            &e.schedule_id,
            &e.scheduled_for,
            &e.trace_id,
            &e.trace_parent,
            &e.model,
            &owner,
            &host,
        ],
    )?;
    Ok(())
}

fn insert_run_record(tx: &mut Tx<'_>, id: &str, logs: &[LogLine], steps: &[Step]) -> anyhow::Result<()> {
    for l in logs {
        tx.execute(
            "INSERT INTO logs (execution_id, seq, ts, level, stream, message)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (execution_id, seq) DO UPDATE SET ts = EXCLUDED.ts, level = EXCLUDED.level,
                stream = EXCLUDED.stream, message = EXCLUDED.message",
            &[
                &id,
                &i64::from(l.seq),
                &l.ts,
                &l.level.as_str(),
                &l.stream.as_str(),
                &l.message,
            ],
        )?;
    }
    for s in steps {
        tx.execute(
            "INSERT INTO steps (execution_id, seq, name, detail, started_at, ended_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (execution_id, seq) DO UPDATE SET name = EXCLUDED.name, detail = EXCLUDED.detail,
                started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at",
            &[
                &id,
                &i64::from(s.seq),
                &s.name,
                &s.detail.get(),
                &s.started_at,
                &s.ended_at,
            ],
        )?;
    }
    Ok(())
}
