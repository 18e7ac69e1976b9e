//! The Postgres schema and its versioned migrations (tracked in the one row of
//! `warden_schema`). Migration 1 is the SQLite schema as its migrations left
//! it, plus the table of blobs. Append new migrations; never edit a released
//! one.

use anyhow::Context;

use super::sql::{Session, Tx};

/// The advisory lock every migration takes first: hosts that start at once
/// migrate one after the other ("warden" and 1).
const MIGRATION_LOCK: i64 = 0x7761_7264_656e_0001;

const MIGRATIONS: &[&str] = &[
    // 1: agents and versions, executions with their logs, steps, artifacts and
    // events, idempotency keys, the kv tool, API keys, compiled artifacts,
    // journals, approvals, conversations and memory, schedules, webhooks,
    // blobs.
    r#"
    CREATE TABLE agents (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        description TEXT COLLATE "C" NOT NULL,
        latest_version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        UNIQUE (workspace, name)
    );
    CREATE TABLE agent_versions (
        id TEXT COLLATE "C" PRIMARY KEY,
        agent_id TEXT COLLATE "C" NOT NULL REFERENCES agents(id),
        version BIGINT NOT NULL,
        label TEXT COLLATE "C",
        manifest TEXT COLLATE "C" NOT NULL,
        limits TEXT COLLATE "C" NOT NULL,
        component_hash TEXT COLLATE "C" NOT NULL,
        component_size BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (agent_id, version)
    );
    CREATE TABLE executions (
        id TEXT COLLATE "C" PRIMARY KEY,
        agent_id TEXT COLLATE "C" NOT NULL,
        agent_name TEXT COLLATE "C" NOT NULL,
        agent_version_id TEXT COLLATE "C" NOT NULL,
        agent_version BIGINT NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        trigger TEXT COLLATE "C" NOT NULL,
        priority BIGINT NOT NULL,
        input TEXT COLLATE "C" NOT NULL,
        output TEXT COLLATE "C",
        error_code TEXT COLLATE "C",
        error_message TEXT COLLATE "C",
        error_source TEXT COLLATE "C",
        metadata TEXT COLLATE "C" NOT NULL,
        fuel_used BIGINT,
        peak_memory_bytes BIGINT,
        n_steps BIGINT NOT NULL,
        n_logs BIGINT NOT NULL,
        logs_truncated BOOLEAN NOT NULL,
        created_at BIGINT NOT NULL,
        queued_at BIGINT,
        started_at BIGINT,
        completed_at BIGINT,
        attempt BIGINT NOT NULL DEFAULT 1,
        retry_of TEXT COLLATE "C",
        retried_by TEXT COLLATE "C",
        run_after BIGINT,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        total_tokens BIGINT NOT NULL DEFAULT 0,
        cache_read_tokens BIGINT NOT NULL DEFAULT 0,
        cache_write_tokens BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        model_used TEXT COLLATE "C",
        llm_provider TEXT COLLATE "C",
        first_token_ms BIGINT,
        tool_ms BIGINT NOT NULL DEFAULT 0,
        n_tool_calls BIGINT NOT NULL DEFAULT 0,
        tool_calls TEXT COLLATE "C" NOT NULL DEFAULT '[]',
        parent_id TEXT COLLATE "C",
        depth BIGINT NOT NULL DEFAULT 0,
        n_artifacts BIGINT NOT NULL DEFAULT 0,
        n_screenshots BIGINT NOT NULL DEFAULT 0,
        usage_estimated BOOLEAN NOT NULL DEFAULT FALSE,
        conversation_id TEXT COLLATE "C",
        memory_stores TEXT COLLATE "C" NOT NULL DEFAULT '[]',
        output_partial TEXT COLLATE "C",
        turn_key TEXT COLLATE "C",
        session_set TEXT COLLATE "C",
        schedule_id TEXT COLLATE "C",
        scheduled_for BIGINT,
        trace_id TEXT COLLATE "C",
        trace_parent TEXT COLLATE "C",
        model TEXT COLLATE "C"
    );
    CREATE INDEX executions_by_agent ON executions (agent_id, id);
    CREATE INDEX executions_by_status ON executions (status, id);
    CREATE INDEX executions_by_completion ON executions (completed_at);
    CREATE INDEX executions_by_conversation ON executions (conversation_id, status)
        WHERE conversation_id IS NOT NULL;
    CREATE TABLE logs (
        execution_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        ts BIGINT NOT NULL,
        level TEXT COLLATE "C" NOT NULL,
        stream TEXT COLLATE "C" NOT NULL,
        message TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (execution_id, seq)
    );
    CREATE TABLE steps (
        execution_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        detail TEXT COLLATE "C" NOT NULL,
        started_at BIGINT NOT NULL,
        ended_at BIGINT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    );
    CREATE TABLE idempotency_keys (
        key TEXT COLLATE "C" PRIMARY KEY,
        request_hash TEXT COLLATE "C" NOT NULL,
        execution_id TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE kv (
        agent_id TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value TEXT COLLATE "C" NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (agent_id, key)
    );
    CREATE TABLE artifacts (
        id TEXT COLLATE "C" PRIMARY KEY,
        execution_id TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        media_type TEXT COLLATE "C" NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX artifacts_by_execution ON artifacts (execution_id);
    CREATE INDEX artifacts_by_blob ON artifacts (sha256);
    CREATE TABLE api_keys (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        role TEXT COLLATE "C" NOT NULL,
        secret_sha256 TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX api_keys_by_workspace ON api_keys (workspace, id);
    CREATE TABLE event_chunks (
        execution_id TEXT COLLATE "C" NOT NULL,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        events TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (execution_id, first_seq)
    );
    CREATE TABLE compiled_artifacts (
        engine TEXT COLLATE "C" NOT NULL,
        component_hash TEXT COLLATE "C" NOT NULL,
        sha256 TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (engine, component_hash)
    );
    CREATE TABLE journal (
        execution_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        fingerprint TEXT COLLATE "C" NOT NULL,
        done BOOLEAN NOT NULL,
        data TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (execution_id, seq)
    );
    CREATE TABLE approvals (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT COLLATE "C" NOT NULL,
        agent_id TEXT COLLATE "C" NOT NULL,
        execution_id TEXT COLLATE "C" NOT NULL,
        title TEXT COLLATE "C" NOT NULL,
        detail TEXT COLLATE "C" NOT NULL,
        approvers TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        decided_at BIGINT,
        decided_by TEXT COLLATE "C",
        decided_by_name TEXT COLLATE "C",
        comment TEXT COLLATE "C",
        data TEXT COLLATE "C"
    );
    CREATE INDEX approvals_by_workspace ON approvals (workspace, id);
    CREATE INDEX approvals_by_execution ON approvals (execution_id, id);
    CREATE INDEX approvals_due ON approvals (status, expires_at);
    CREATE TABLE conversations (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT COLLATE "C" NOT NULL,
        agent_id TEXT COLLATE "C" NOT NULL,
        turn_count BIGINT NOT NULL,
        token_count BIGINT NOT NULL,
        metadata TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        last_active_at BIGINT NOT NULL
    );
    CREATE INDEX conversations_by_workspace ON conversations (workspace, id);
    CREATE INDEX conversations_by_activity ON conversations (last_active_at);
    CREATE TABLE turns (
        conversation_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        role TEXT COLLATE "C" NOT NULL,
        content TEXT COLLATE "C" NOT NULL,
        tool_calls TEXT COLLATE "C" NOT NULL,
        execution_id TEXT COLLATE "C",
        ts BIGINT NOT NULL,
        tokens BIGINT NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    );
    CREATE TABLE memory_stores (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        description TEXT COLLATE "C" NOT NULL,
        max_bytes BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (workspace, name)
    );
    CREATE TABLE memory (
        scope TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value TEXT COLLATE "C" NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE TABLE memory_usage (
        scope TEXT COLLATE "C" PRIMARY KEY,
        bytes BIGINT NOT NULL,
        entries BIGINT NOT NULL
    );
    CREATE TABLE schedules (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT COLLATE "C" NOT NULL,
        agent_id TEXT COLLATE "C" NOT NULL,
        version BIGINT,
        cron TEXT COLLATE "C" NOT NULL,
        timezone TEXT COLLATE "C" NOT NULL,
        input TEXT COLLATE "C" NOT NULL,
        metadata TEXT COLLATE "C" NOT NULL,
        priority BIGINT NOT NULL,
        overlap TEXT COLLATE "C" NOT NULL,
        catchup_window_secs BIGINT NOT NULL,
        enabled BOOLEAN NOT NULL,
        end_at BIGINT,
        next_run_at BIGINT,
        last_slot BIGINT,
        last_execution_id TEXT COLLATE "C",
        buffered_slot BIGINT,
        pending_execution_id TEXT COLLATE "C",
        runs BIGINT NOT NULL,
        skipped BIGINT NOT NULL,
        last_error TEXT COLLATE "C",
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX schedules_by_workspace ON schedules (workspace, id);
    CREATE INDEX schedules_due ON schedules (enabled, next_run_at);
    CREATE INDEX schedules_pending ON schedules (pending_execution_id) WHERE pending_execution_id IS NOT NULL;
    CREATE INDEX schedules_buffered ON schedules (buffered_slot) WHERE buffered_slot IS NOT NULL;
    CREATE TABLE hooks (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT COLLATE "C" NOT NULL,
        agent_id TEXT COLLATE "C" NOT NULL,
        description TEXT COLLATE "C" NOT NULL,
        secret TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX hooks_by_workspace ON hooks (workspace, id);
    CREATE TABLE webhook_subscriptions (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT COLLATE "C" NOT NULL,
        url TEXT COLLATE "C" NOT NULL,
        events TEXT COLLATE "C" NOT NULL,
        description TEXT COLLATE "C" NOT NULL,
        secret TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id TEXT COLLATE "C" NOT NULL,
        subscription_id TEXT COLLATE "C" NOT NULL,
        event TEXT COLLATE "C" NOT NULL,
        payload TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        attempts TEXT COLLATE "C" NOT NULL,
        next_attempt_at BIGINT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (subscription_id, id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE TABLE blobs (
        hash TEXT COLLATE "C" PRIMARY KEY,
        bytes BYTEA NOT NULL
    );
    "#,
    // 2: hosts sharing the database, with their leases; the host that last
    // wrote each execution (who runs it, or ran it last); the host that leads.
    r#"
    CREATE TABLE hosts (
        id TEXT COLLATE "C" PRIMARY KEY,
        started_at BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    ALTER TABLE executions ADD COLUMN owner TEXT COLLATE "C";
    CREATE INDEX executions_unfinished ON executions (owner)
        WHERE status IN ('pending', 'queued', 'running', 'cancel_requested');
    CREATE TABLE lead (
        duty TEXT COLLATE "C" PRIMARY KEY,
        host TEXT COLLATE "C" NOT NULL,
        expires_at BIGINT NOT NULL
    );
    "#,
    // 3: the shared queue: executions waiting for any host to claim them
    // (no owner), best first.
    r#"
    CREATE INDEX executions_waiting ON executions (priority DESC, created_at, id)
        WHERE owner IS NULL AND status IN ('pending', 'queued') AND conversation_id IS NULL;
    "#,
    // 4: deploys made in the background, kept across restarts and seen from
    // every host; the host compiling each (a restart resumes its own, and
    // those of hosts whose lease ran out are taken over).
    r#"
    CREATE TABLE deploys (
        id TEXT COLLATE "C" PRIMARY KEY,
        workspace TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        status TEXT NOT NULL,
        component_hash TEXT COLLATE "C" NOT NULL,
        component_bytes BIGINT NOT NULL,
        manifest TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        ended_at BIGINT,
        version_id TEXT COLLATE "C",
        warnings TEXT,
        error_code TEXT,
        error_message TEXT,
        owner TEXT COLLATE "C"
    );
    CREATE INDEX deploys_compiling ON deploys (created_at) WHERE status = 'compiling';
    CREATE INDEX deploys_ended ON deploys (ended_at) WHERE ended_at IS NOT NULL;
    CREATE INDEX deploys_component ON deploys (component_hash);
    "#,
    // 5: a run waiting for a decision keeps its host as owner only while the
    // host holds it in memory (unloaded, it is nobody's), so that other hosts
    // count its slot meanwhile. Those of stopped hosts are nobody's now (a
    // running host releases its own as it restarts).
    r#"
    UPDATE executions e SET owner = NULL WHERE e.status = 'awaiting_approval'
        AND NOT EXISTS (SELECT 1 FROM hosts h WHERE h.id = e.owner
            AND h.expires_at >= (extract(epoch from clock_timestamp()) * 1000)::BIGINT);
    CREATE INDEX executions_held_waits ON executions (owner)
        WHERE status = 'awaiting_approval' AND owner IS NOT NULL;
    "#,
    // 6: a conversation's turn is its host's from its acceptance, but other
    // hosts count it against its agent's slots only once its host claimed it
    // (the turns before it ended and the agent had a slot), or once it runs.
    r#"
    ALTER TABLE executions ADD COLUMN turn_claimed BOOLEAN NOT NULL DEFAULT false;
    "#,
];

/// Brings the database up to the newest schema: one transaction per
/// migration, each under the migration lock, so hosts starting together
/// neither race nor apply a migration twice.
pub fn migrate(session: &mut Session) -> anyhow::Result<()> {
    loop {
        let mut tx = Tx::begin(session)?;
        tx.batch(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS warden_schema (version BIGINT NOT NULL);
             INSERT INTO warden_schema (version)
                 SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM warden_schema);"
        ))
        .context("reading the schema version")?;
        let current: i64 = tx
            .query_opt("SELECT version FROM warden_schema", &[])?
            .context("no schema version")?
            .try_get(0)?;
        let current = usize::try_from(current).context("a negative schema version")?;
        anyhow::ensure!(
            current <= MIGRATIONS.len(),
            "the database is at schema version {current}, newer than this warden ({}); upgrade warden",
            MIGRATIONS.len()
        );
        let Some(sql) = MIGRATIONS.get(current) else {
            tx.commit()?;
            return Ok(());
        };
        tx.batch(sql)
            .with_context(|| format!("schema migration {}", current + 1))?;
        let version = i64::try_from(current + 1)?;
        tx.execute("UPDATE warden_schema SET version = $1", &[&version])?;
        tx.commit()?;
    }
}
