//! The conversation and memory stores on SQLite: their SQL, for the writer
//! ([`super::apply`] calls in here) and for reads. A turn is a row; memory is
//! one table of key-values by scope, with each scope's bytes and entries
//! counted as it changes.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::value::RawValue;

use super::SqliteStore;
use crate::record::{Conversation, Execution, MemoryEntry, MemoryStoreInfo, Turn, TurnRole};
use crate::store::MemoryWrite;
use crate::store::{ConversationFilter, ConversationStore, MemoryStore, StoreError};

/// Most conversations one sweep deletes (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 1000;

pub(super) fn apply(tx: &Transaction<'_>, w: &MemoryWrite) -> anyhow::Result<()> {
    match w {
        MemoryWrite::Conversation(c, turns) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO conversations (id, workspace, agent_id, turn_count, token_count, metadata,
                    created_at, last_active_at)
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                c.id,
                c.workspace,
                c.agent_id,
                c.token_count as i64,
                c.metadata.get(),
                c.created_at,
                c.last_active_at
            ])?;
            insert_turns(tx, &c.id, turns, 0, c.last_active_at)?;
        }
        MemoryWrite::DeleteConversation(id) => delete_conversation(tx, id)?,
        MemoryWrite::SweepConversations(before) => {
            let ids: Vec<String> = tx
                .prepare_cached(
                    "SELECT c.id FROM conversations c WHERE c.last_active_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.conversation_id = c.id
                         AND e.status NOT IN ('completed', 'failed', 'cancelled', 'rejected'))
                     LIMIT ?2",
                )?
                .query_map(params![before, SWEEP_BATCH], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in &ids {
                delete_conversation(tx, id)?;
            }
            if !ids.is_empty() {
                tracing::info!(
                    conversations = ids.len(),
                    "retention sweep deleted inactive conversations"
                );
            }
        }
        MemoryWrite::Store(s) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO memory_stores (id, workspace, name, description, max_bytes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                s.id,
                s.workspace,
                s.name,
                s.description,
                s.max_bytes as i64,
                s.created_at
            ])?;
        }
        MemoryWrite::DeleteStore(id) => {
            tx.prepare_cached("DELETE FROM memory_stores WHERE id = ?1")?
                .execute([id])?;
            delete_scope(tx, id)?;
        }
        MemoryWrite::Put(scope, e) => {
            let old = old_size(tx, scope, &e.key)?;
            // Only into a memory that still exists (a store or a conversation
            // deleted meanwhile gets nothing back).
            let stored = tx
                .prepare_cached(
                    "INSERT INTO memory (scope, key, value, updated_at)
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM memory_stores WHERE id = ?1)
                        OR EXISTS (SELECT 1 FROM conversations WHERE id = ?1)
                     ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )?
                .execute(params![scope, e.key, e.value.get(), e.updated_at])?;
            if stored == 0 {
                return Ok(());
            }
            let added = i64::from(old.is_none());
            count(tx, scope, e.size() as i64 - old.unwrap_or(0), added)?;
        }
        MemoryWrite::Remove(scope, key) => {
            if let Some(old) = old_size(tx, scope, key)? {
                tx.prepare_cached("DELETE FROM memory WHERE scope = ?1 AND key = ?2")?
                    .execute([scope, key])?;
                count(tx, scope, -old, -1)?;
            }
        }
    }
    Ok(())
}

fn old_size(tx: &Transaction<'_>, scope: &str, key: &str) -> anyhow::Result<Option<i64>> {
    Ok(tx
        .prepare_cached(
            "SELECT length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) FROM memory WHERE scope = ?1 AND key = ?2",
        )?
        .query_row([scope, key], |r| r.get(0))
        .optional()?)
}

fn count(tx: &Transaction<'_>, scope: &str, bytes: i64, entries: i64) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO memory_usage (scope, bytes, entries) VALUES (?1, ?2, ?3)
         ON CONFLICT (scope) DO UPDATE SET bytes = bytes + excluded.bytes, entries = entries + excluded.entries",
    )?
    .execute(params![scope, bytes, entries])?;
    Ok(())
}

fn delete_scope(tx: &Transaction<'_>, scope: &str) -> anyhow::Result<()> {
    tx.prepare_cached("DELETE FROM memory WHERE scope = ?1")?
        .execute([scope])?;
    tx.prepare_cached("DELETE FROM memory_usage WHERE scope = ?1")?
        .execute([scope])?;
    Ok(())
}

fn delete_conversation(tx: &Transaction<'_>, id: &str) -> anyhow::Result<()> {
    tx.prepare_cached("DELETE FROM turns WHERE conversation_id = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM conversations WHERE id = ?1")?
        .execute([id])?;
    delete_scope(tx, id)
}

fn insert_turns(tx: &Transaction<'_>, id: &str, turns: &[Turn], tokens: u64, at: i64) -> anyhow::Result<()> {
    let next: Option<u32> = tx
        .prepare_cached("SELECT turn_count FROM conversations WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    // Gone (deleted while its turn ran): nothing is added back.
    let Some(count) = next else { return Ok(()) };
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO turns (conversation_id, seq, role, content, tool_calls, execution_id, ts, tokens)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (i, t) in turns.iter().enumerate() {
        stmt.execute(params![
            id,
            count + 1 + i as u32,
            t.role.as_str(),
            t.content,
            serde_json::to_string(&t.tool_calls)?,
            t.execution_id,
            t.timestamp,
            t.tokens
        ])?;
    }
    tx.prepare_cached(
        "UPDATE conversations SET turn_count = turn_count + ?2, token_count = token_count + ?3,
            last_active_at = max(last_active_at, ?4) WHERE id = ?1",
    )?
    .execute(params![id, turns.len() as i64, tokens as i64, at])?;
    Ok(())
}

/// What an execution's end adds to its conversation: its turns, its tokens,
/// and that the conversation was active.
pub(super) fn finish(tx: &Transaction<'_>, e: &Execution, turns: &[Turn]) -> anyhow::Result<()> {
    let Some(id) = &e.conversation_id else { return Ok(()) };
    insert_turns(tx, id, turns, e.token_usage.total, e.completed_at.unwrap_or_default())
}

fn raw(text: String) -> Arc<RawValue> {
    RawValue::from_string(text).map_or_else(|_| Arc::from(RawValue::NULL.to_owned()), Arc::from)
}

const CONVERSATION_COLUMNS: &str =
    "id, workspace, agent_id, turn_count, token_count, metadata, created_at, last_active_at";

fn conversation_from_row(r: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        workspace: r.get(1)?,
        agent_id: r.get(2)?,
        turn_count: r.get(3)?,
        token_count: r.get::<_, i64>(4)? as u64,
        metadata: raw(r.get(5)?),
        created_at: r.get(6)?,
        last_active_at: r.get(7)?,
    })
}

fn turn_from_row(r: &Row<'_>) -> rusqlite::Result<Turn> {
    Ok(Turn {
        seq: r.get(0)?,
        role: TurnRole::parse(&r.get::<_, String>(1)?).unwrap_or(TurnRole::User),
        content: r.get(2)?,
        tool_calls: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
        execution_id: r.get(4)?,
        timestamp: r.get(5)?,
        tokens: r.get(6)?,
    })
}

const TURN_COLUMNS: &str = "seq, role, content, tool_calls, execution_id, ts, tokens";

fn conversation(conn: &Connection, id: &str) -> anyhow::Result<Option<Conversation>> {
    let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], conversation_from_row)
        .optional()?)
}

fn conversations(conn: &Connection, f: &ConversationFilter) -> anyhow::Result<(Vec<Conversation>, bool)> {
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations
         WHERE workspace = ?1 AND (?2 IS NULL OR agent_id = ?2) AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    );
    let mut rows: Vec<Conversation> = conn
        .prepare_cached(&sql)?
        .query_map(
            params![f.workspace, f.agent_id, f.after, i64::from(f.limit) + 1],
            conversation_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    Ok((rows, more))
}

fn turns(conn: &Connection, id: &str) -> anyhow::Result<Vec<Turn>> {
    let sql = format!("SELECT {TURN_COLUMNS} FROM turns WHERE conversation_id = ?1 ORDER BY seq");
    Ok(conn
        .prepare_cached(&sql)?
        .query_map([id], turn_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

fn recent_turns(conn: &Connection, id: &str, max_turns: u32, max_tokens: u64) -> anyhow::Result<(Vec<Turn>, bool)> {
    let sql = format!("SELECT {TURN_COLUMNS} FROM turns WHERE conversation_id = ?1 ORDER BY seq DESC LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![id, i64::from(max_turns) + 1])?;
    let (mut kept, mut tokens, mut truncated) = (Vec::new(), 0u64, false);
    while let Some(row) = rows.next()? {
        let turn = turn_from_row(row)?;
        tokens += u64::from(turn.tokens);
        if kept.len() == max_turns as usize || tokens > max_tokens {
            truncated = true;
            break;
        }
        kept.push(turn);
    }
    kept.reverse();
    Ok((kept, truncated))
}

fn turns_under_way(conn: &Connection, id: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut turns: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT id, coalesce(turn_key, id) FROM executions WHERE conversation_id = ?1
               AND status NOT IN ('completed', 'failed', 'cancelled', 'rejected')",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    turns.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    Ok(turns)
}

fn exists(conn: &Connection, scope: &str) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM memory_stores WHERE id = ?1)
                 OR EXISTS (SELECT 1 FROM conversations WHERE id = ?1)",
        )?
        .query_row([scope], |r| r.get(0))?)
}

const STORE_SELECT: &str = "SELECT s.id, s.workspace, s.name, s.description, s.max_bytes, s.created_at,
    coalesce(u.bytes, 0), coalesce(u.entries, 0) FROM memory_stores s LEFT JOIN memory_usage u ON u.scope = s.id";

fn store_from_row(r: &Row<'_>) -> rusqlite::Result<MemoryStoreInfo> {
    Ok(MemoryStoreInfo {
        id: r.get(0)?,
        workspace: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        max_bytes: r.get::<_, i64>(4)? as u64,
        created_at: r.get(5)?,
        bytes: r.get::<_, i64>(6)?.max(0) as u64,
        entries: r.get::<_, i64>(7)?.max(0) as u64,
    })
}

fn store(conn: &Connection, workspace: &str, id_or_name: &str) -> anyhow::Result<Option<MemoryStoreInfo>> {
    let sql = format!("{STORE_SELECT} WHERE s.workspace = ?1 AND (s.id = ?2 OR s.name = ?2) ORDER BY s.id = ?2 DESC");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([workspace, id_or_name], store_from_row)
        .optional()?)
}

fn stores(
    conn: &Connection,
    workspace: &str,
    after: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<MemoryStoreInfo>, bool)> {
    let sql = format!("{STORE_SELECT} WHERE s.workspace = ?1 AND (?2 IS NULL OR s.name > ?2) ORDER BY s.name LIMIT ?3");
    let mut rows: Vec<MemoryStoreInfo> = conn
        .prepare_cached(&sql)?
        .query_map(params![workspace, after, i64::from(limit) + 1], store_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<MemoryEntry> {
    Ok(MemoryEntry {
        key: r.get(0)?,
        value: raw(r.get(1)?),
        updated_at: r.get(2)?,
    })
}

fn entry(conn: &Connection, scope: &str, key: &str) -> anyhow::Result<Option<MemoryEntry>> {
    Ok(conn
        .prepare_cached("SELECT key, value, updated_at FROM memory WHERE scope = ?1 AND key = ?2")?
        .query_row([scope, key], entry_from_row)
        .optional()?)
}

fn entries(
    conn: &Connection,
    scope: &str,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<MemoryEntry>, bool)> {
    // Keys from `prefix` on, in order, while they still start with it.
    let mut stmt = conn.prepare_cached(
        "SELECT key, value, updated_at FROM memory WHERE scope = ?1 AND key >= ?2 AND (?3 IS NULL OR key > ?3)
         ORDER BY key",
    )?;
    let mut rows = stmt.query(params![scope, prefix, after])?;
    let mut found = Vec::new();
    let mut more = false;
    while let Some(row) = rows.next()? {
        let e = entry_from_row(row)?;
        if !e.key.starts_with(prefix) {
            break;
        }
        if found.len() == limit as usize {
            more = true;
            break;
        }
        found.push(e);
    }
    Ok((found, more))
}

fn usage(conn: &Connection, scope: &str) -> anyhow::Result<(u64, u64)> {
    Ok(conn
        .prepare_cached("SELECT bytes, entries FROM memory_usage WHERE scope = ?1")?
        .query_row([scope], |r| {
            Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .optional()?
        .unwrap_or((0, 0)))
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn get(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| conversation(c, &id)).await
    }

    async fn list(&self, filter: ConversationFilter) -> Result<(Vec<Conversation>, bool), StoreError> {
        self.query(move |c| conversations(c, &filter)).await
    }

    async fn turns(&self, id: &str) -> Result<Vec<Turn>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| turns(c, &id)).await
    }

    async fn recent_turns(&self, id: &str, max_turns: u32, max_tokens: u64) -> Result<(Vec<Turn>, bool), StoreError> {
        let id = id.to_owned();
        self.query(move |c| recent_turns(c, &id, max_turns, max_tokens)).await
    }

    async fn turns_under_way(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| turns_under_way(c, &id)).await
    }
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn store(&self, workspace: &str, id_or_name: &str) -> Result<Option<MemoryStoreInfo>, StoreError> {
        let (workspace, id) = (workspace.to_owned(), id_or_name.to_owned());
        self.query(move |c| store(c, &workspace, &id)).await
    }

    async fn stores(
        &self,
        workspace: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<MemoryStoreInfo>, bool), StoreError> {
        let workspace = workspace.to_owned();
        self.query(move |c| stores(c, &workspace, after.as_deref(), limit))
            .await
    }

    async fn get(&self, scope: &str, key: &str) -> Result<Option<MemoryEntry>, StoreError> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.query(move |c| entry(c, &scope, &key)).await
    }

    async fn entries(
        &self,
        scope: &str,
        prefix: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<MemoryEntry>, bool), StoreError> {
        let (scope, prefix) = (scope.to_owned(), prefix.to_owned());
        self.query(move |c| entries(c, &scope, &prefix, after.as_deref(), limit))
            .await
    }

    async fn usage(&self, scope: &str) -> Result<(u64, u64), StoreError> {
        let scope = scope.to_owned();
        self.query(move |c| usage(c, &scope)).await
    }

    async fn exists(&self, scope: &str) -> Result<bool, StoreError> {
        let scope = scope.to_owned();
        self.query(move |c| exists(c, &scope)).await
    }
}
