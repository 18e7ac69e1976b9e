//! The SQLite schema and its versioned migrations (tracked in `PRAGMA user_version`).
//! Append new migrations; never edit a released one.

use anyhow::Context;
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: agents, versions, executions, logs, steps.
    r#"
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL,
        latest_version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE agent_versions (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL REFERENCES agents(id),
        version INTEGER NOT NULL,
        label TEXT,
        manifest TEXT NOT NULL,
        limits TEXT NOT NULL,
        component_hash TEXT NOT NULL,
        component_size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (agent_id, version)
    );
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        agent_version_id TEXT NOT NULL,
        agent_version INTEGER NOT NULL,
        status TEXT NOT NULL,
        trigger TEXT NOT NULL,
        priority INTEGER NOT NULL,
        input TEXT NOT NULL,
        output TEXT,
        error_code TEXT,
        error_message TEXT,
        error_source TEXT,
        metadata TEXT NOT NULL,
        fuel_used INTEGER,
        peak_memory_bytes INTEGER,
        n_steps INTEGER NOT NULL,
        n_logs INTEGER NOT NULL,
        logs_truncated INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        queued_at INTEGER,
        started_at INTEGER,
        completed_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX executions_by_agent ON executions (agent_id, id);
    CREATE INDEX executions_by_status ON executions (status, id);
    CREATE TABLE logs (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        level TEXT NOT NULL,
        stream TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE steps (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        detail TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID;
    "#,
    // 2: retries, delayed runs, idempotency keys.
    r#"
    ALTER TABLE executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE executions ADD COLUMN retry_of TEXT;
    ALTER TABLE executions ADD COLUMN retried_by TEXT;
    ALTER TABLE executions ADD COLUMN run_after INTEGER;
    CREATE INDEX executions_by_trigger ON executions (trigger, id);
    CREATE TABLE idempotency_keys (
        key TEXT PRIMARY KEY,
        request_hash TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 3: model usage and cost, tool calls, child executions, the kv tool.
    r#"
    ALTER TABLE executions ADD COLUMN prompt_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN total_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN model_used TEXT;
    ALTER TABLE executions ADD COLUMN llm_provider TEXT;
    ALTER TABLE executions ADD COLUMN first_token_ms INTEGER;
    ALTER TABLE executions ADD COLUMN tool_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN n_tool_calls INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN tool_calls TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE executions ADD COLUMN parent_id TEXT;
    ALTER TABLE executions ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE kv (
        agent_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (agent_id, key)
    ) WITHOUT ROWID;
    "#,
    // 4: the event log of each finished execution, as one JSON array; the trigger
    // index cost every write more than it saved the rare trigger-only listing.
    r#"
    DROP INDEX executions_by_trigger;
    CREATE TABLE execution_events (
        execution_id TEXT PRIMARY KEY,
        events TEXT NOT NULL
    );
    "#,
    // 5: artifacts; the retention sweep's index.
    r#"
    CREATE TABLE artifacts (
        id TEXT PRIMARY KEY,
        execution_id TEXT NOT NULL,
        name TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX artifacts_by_execution ON artifacts (execution_id);
    CREATE INDEX artifacts_by_blob ON artifacts (sha256);
    ALTER TABLE executions ADD COLUMN n_artifacts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN n_screenshots INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX executions_by_completion ON executions (completed_at);
    "#,
    // 6: workspaces (agent names are unique within one; existing agents join
    // `default`) and API keys, stored as SHA-256 digests of their secrets.
    r#"
    CREATE TABLE agents_v6 (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        latest_version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (workspace, name)
    );
    INSERT INTO agents_v6 (id, workspace, name, description, latest_version, created_at, updated_at)
        SELECT id, 'default', name, description, latest_version, created_at, updated_at FROM agents;
    DROP TABLE agents;
    ALTER TABLE agents_v6 RENAME TO agents;
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX api_keys_by_workspace ON api_keys (workspace, id);
    "#,
    // 7: events stored as they happen, in chunks: one row per execution per
    // writer batch, holding a JSON array of consecutive events. The one array
    // per finished execution of migration 4 becomes its first chunk. A rowid
    // table: its rows are large (SQLite advises against WITHOUT ROWID there).
    r#"
    CREATE TABLE event_chunks (
        execution_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        events TEXT NOT NULL,
        PRIMARY KEY (execution_id, first_seq)
    );
    INSERT INTO event_chunks (execution_id, first_seq, last_seq, events)
        SELECT execution_id, 1, json_array_length(events), events FROM execution_events
        WHERE json_valid(events) AND json_array_length(events) > 0;
    DROP TABLE execution_events;
    "#,
    // 8: the SHA-256 of each compiled artifact, by engine compatibility class,
    // recorded when it is written and checked before it is loaded.
    r#"
    CREATE TABLE compiled_artifacts (
        engine TEXT NOT NULL,
        component_hash TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (engine, component_hash)
    ) WITHOUT ROWID;
    "#,
    // 9: whether a run's token usage is partly the host's estimate.
    r#"
    ALTER TABLE executions ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
    "#,
    // 10: the journals of durable runs; approval requests.
    r#"
    CREATE TABLE journal (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        done INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        title TEXT NOT NULL,
        detail TEXT NOT NULL,
        approvers TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        decided_at INTEGER,
        decided_by TEXT,
        decided_by_name TEXT,
        comment TEXT,
        data TEXT
    ) WITHOUT ROWID;
    CREATE INDEX approvals_by_workspace ON approvals (workspace, id);
    CREATE INDEX approvals_by_execution ON approvals (execution_id, id);
    CREATE INDEX approvals_due ON approvals (status, expires_at);
    "#,
    // 11: conversations (a turn a row), memory stores, memory entries by scope
    // (a conversation's session memory or a store's); executions as turns,
    // with their attached stores and their partial output.
    r#"
    ALTER TABLE executions ADD COLUMN conversation_id TEXT;
    ALTER TABLE executions ADD COLUMN memory_stores TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE executions ADD COLUMN output_partial TEXT;
    CREATE INDEX executions_by_conversation ON executions (conversation_id, status)
        WHERE conversation_id IS NOT NULL;
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        turn_count INTEGER NOT NULL,
        token_count INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_active_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX conversations_by_workspace ON conversations (workspace, id);
    CREATE INDEX conversations_by_activity ON conversations (last_active_at);
    CREATE TABLE turns (
        conversation_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        tool_calls TEXT NOT NULL,
        execution_id TEXT,
        ts INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE memory_stores (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        max_bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (workspace, name)
    ) WITHOUT ROWID;
    CREATE TABLE memory (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    CREATE TABLE memory_usage (
        scope TEXT PRIMARY KEY,
        bytes INTEGER NOT NULL,
        entries INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 12: a turn's place in its conversation (its own id; a policy retry's is
    // its original's), and the session memory its request sets when it starts.
    r#"
    ALTER TABLE executions ADD COLUMN turn_key TEXT;
    ALTER TABLE executions ADD COLUMN session_set TEXT;
    "#,
    // 13: schedules, and the schedule and slot of each run they make.
    r#"
    ALTER TABLE executions ADD COLUMN schedule_id TEXT;
    ALTER TABLE executions ADD COLUMN scheduled_for INTEGER;
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        version INTEGER,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        input TEXT NOT NULL,
        metadata TEXT NOT NULL,
        priority INTEGER NOT NULL,
        overlap TEXT NOT NULL,
        catchup_window_secs INTEGER NOT NULL,
        enabled INTEGER NOT NULL,
        end_at INTEGER,
        next_run_at INTEGER,
        last_slot INTEGER,
        last_execution_id TEXT,
        buffered_slot INTEGER,
        pending_execution_id TEXT,
        runs INTEGER NOT NULL,
        skipped INTEGER NOT NULL,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX schedules_by_workspace ON schedules (workspace, id);
    CREATE INDEX schedules_due ON schedules (enabled, next_run_at);
    CREATE INDEX schedules_pending ON schedules (pending_execution_id) WHERE pending_execution_id IS NOT NULL;
    CREATE INDEX schedules_buffered ON schedules (buffered_slot) WHERE buffered_slot IS NOT NULL;
    "#,
    // 14: incoming webhooks.
    r#"
    CREATE TABLE hooks (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        description TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX hooks_by_workspace ON hooks (workspace, id);
    CREATE TABLE webhook_subscriptions (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        description TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE webhook_deliveries (
        id TEXT NOT NULL,
        subscription_id TEXT NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts TEXT NOT NULL,
        next_attempt_at INTEGER,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (subscription_id, id)
    ) WITHOUT ROWID;
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
    "#,
    // 15: the W3C trace of each execution.
    r#"
    ALTER TABLE executions ADD COLUMN trace_id TEXT;
    "#,
    // 16: the caller's span each execution hangs under; the model its caller
    // picked.
    r#"
    ALTER TABLE executions ADD COLUMN trace_parent TEXT;
    ALTER TABLE executions ADD COLUMN model TEXT;
    "#,
    // 17: deploys made in the background, kept across restarts (a restart
    // resumes those still compiling).
    r#"
    CREATE TABLE deploys (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        status TEXT NOT NULL,
        component_hash TEXT NOT NULL,
        component_bytes INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        ended_at INTEGER,
        version_id TEXT,
        warnings TEXT,
        error_code TEXT,
        error_message TEXT
    ) WITHOUT ROWID;
    CREATE INDEX deploys_compiling ON deploys (created_at) WHERE status = 'compiling';
    CREATE INDEX deploys_ended ON deploys (ended_at) WHERE ended_at IS NOT NULL;
    CREATE INDEX deploys_component ON deploys (component_hash);
    "#,
];

/// Connection settings every connection gets.
pub fn configure(conn: &Connection) -> anyhow::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    Ok(())
}

/// Brings the database up to the newest schema.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    anyhow::ensure!(
        current <= MIGRATIONS.len(),
        "the database is at schema version {current}, newer than this warden ({}); upgrade warden",
        MIGRATIONS.len()
    );
    // Rebuilding a table (SQLite's way to change constraints) drops the old one
    // while others still refer to it; keys are checked again after.
    conn.pragma_update(None, "foreign_keys", false)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("schema migration {}", i + 1))?;
        let broken: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
        anyhow::ensure!(
            broken == 0,
            "schema migration {} left {broken} broken references",
            i + 1
        );
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}
