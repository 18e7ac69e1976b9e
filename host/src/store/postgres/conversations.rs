//! The conversation and memory stores on Postgres: their SQL, for the writer
//! (the batch applier calls in here) and for reads. A turn is a row; memory is
//! one table of key-values by scope, with each scope's bytes and entries
//! counted as it changes.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::sql::{Reader, Row, Tx, int, u32_at, u64_at};
use super::{PgStore, read_error};
use crate::record::{Conversation, Execution, MemoryEntry, MemoryStoreInfo, Turn, TurnRole};
use crate::store::{ConversationFilter, ConversationStore, MemoryStore, MemoryWrite, StoreError};

/// Most conversations one sweep deletes (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 1000;

pub(super) fn apply(tx: &mut Tx<'_>, w: &MemoryWrite) -> anyhow::Result<()> {
    match w {
        MemoryWrite::Conversation(c, turns) => {
            tx.execute(
                "INSERT INTO conversations (id, workspace, agent_id, turn_count, token_count, metadata,
                    created_at, last_active_at)
                 VALUES ($1, $2, $3, 0, $4, $5, $6, $7)
                 ON CONFLICT DO NOTHING",
                &[
                    &c.id,
                    &c.workspace,
                    &c.agent_id,
                    &int(c.token_count),
                    &c.metadata.get(),
                    &c.created_at,
                    &c.last_active_at,
                ],
            )?;
            insert_turns(tx, &c.id, turns, 0, c.last_active_at)?;
        }
        MemoryWrite::DeleteConversation(id) => delete_conversations(tx, std::slice::from_ref(id))?,
        MemoryWrite::SweepConversations(before) => {
            let ids: Vec<String> = tx
                .query(
                    "SELECT c.id FROM conversations c WHERE c.last_active_at < $1
                       AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.conversation_id = c.id
                         AND e.status NOT IN ('completed', 'failed', 'cancelled', 'rejected'))
                     LIMIT $2",
                    &[before, &SWEEP_BATCH],
                )?
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<Result<_, _>>()?;
            if !ids.is_empty() {
                delete_conversations(tx, &ids)?;
                tracing::info!(
                    conversations = ids.len(),
                    "retention sweep deleted inactive conversations"
                );
            }
        }
        MemoryWrite::Store(s) => {
            tx.execute(
                "INSERT INTO memory_stores (id, workspace, name, description, max_bytes, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING",
                &[
                    &s.id,
                    &s.workspace,
                    &s.name,
                    &s.description,
                    &int(s.max_bytes),
                    &s.created_at,
                ],
            )?;
        }
        MemoryWrite::DeleteStore(id) => {
            tx.execute("DELETE FROM memory_stores WHERE id = $1", &[id])?;
            delete_scopes(tx, std::slice::from_ref(id))?;
        }
        MemoryWrite::Put(scope, e) => {
            let old = old_size(tx, scope, &e.key)?;
            // Only into a memory that still exists (a store or a conversation
            // deleted meanwhile gets nothing back).
            let stored = tx.query_opt(
                "INSERT INTO memory (scope, key, value, updated_at)
                 SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BIGINT
                 WHERE EXISTS (SELECT 1 FROM memory_stores WHERE id = $1::TEXT)
                    OR EXISTS (SELECT 1 FROM conversations WHERE id = $1::TEXT)
                 ON CONFLICT (scope, key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
                 RETURNING 1",
                &[scope, &e.key, &e.value.get(), &e.updated_at],
            )?;
            if stored.is_none() {
                return Ok(());
            }
            let added = i64::from(old.is_none());
            count(tx, scope, int(e.size()) - old.unwrap_or(0), added)?;
        }
        MemoryWrite::Remove(scope, key) => {
            if let Some(old) = old_size(tx, scope, key)? {
                tx.execute("DELETE FROM memory WHERE scope = $1 AND key = $2", &[scope, key])?;
                count(tx, scope, -old, -1)?;
            }
        }
    }
    Ok(())
}

/// The bytes an entry counts (its key's and its value's), if it is stored.
fn old_size(tx: &mut Tx<'_>, scope: &str, key: &str) -> anyhow::Result<Option<i64>> {
    let row = tx.query_opt(
        "SELECT (octet_length(key) + octet_length(value))::BIGINT FROM memory WHERE scope = $1 AND key = $2",
        &[&scope, &key],
    )?;
    Ok(row.map(|r| r.try_get::<_, i64>(0)).transpose()?)
}

fn count(tx: &mut Tx<'_>, scope: &str, bytes: i64, entries: i64) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO memory_usage (scope, bytes, entries) VALUES ($1, $2, $3)
         ON CONFLICT (scope) DO UPDATE SET bytes = memory_usage.bytes + EXCLUDED.bytes,
            entries = memory_usage.entries + EXCLUDED.entries",
        &[&scope, &bytes, &entries],
    )?;
    Ok(())
}

/// Deletes the memory of these scopes, with their counts.
fn delete_scopes(tx: &mut Tx<'_>, scopes: &[String]) -> anyhow::Result<()> {
    tx.execute("DELETE FROM memory WHERE scope = ANY($1)", &[&scopes])?;
    tx.execute("DELETE FROM memory_usage WHERE scope = ANY($1)", &[&scopes])?;
    Ok(())
}

/// Deletes conversations with their turns and their session memory.
fn delete_conversations(tx: &mut Tx<'_>, ids: &[String]) -> anyhow::Result<()> {
    tx.execute("DELETE FROM turns WHERE conversation_id = ANY($1)", &[&ids])?;
    tx.execute("DELETE FROM conversations WHERE id = ANY($1)", &[&ids])?;
    delete_scopes(tx, ids)
}

fn insert_turns(tx: &mut Tx<'_>, id: &str, turns: &[Turn], tokens: u64, at: i64) -> anyhow::Result<()> {
    let next = tx.query_opt("SELECT turn_count FROM conversations WHERE id = $1", &[&id])?;
    // Gone (deleted while its turn ran): nothing is added back.
    let Some(row) = next else { return Ok(()) };
    let count: i64 = row.try_get(0)?;
    for (i, t) in turns.iter().enumerate() {
        let tool_calls = serde_json::to_string(&t.tool_calls)?;
        tx.execute(
            "INSERT INTO turns (conversation_id, seq, role, content, tool_calls, execution_id, ts, tokens)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (conversation_id, seq) DO UPDATE SET role = EXCLUDED.role, content = EXCLUDED.content,
                tool_calls = EXCLUDED.tool_calls, execution_id = EXCLUDED.execution_id, ts = EXCLUDED.ts,
                tokens = EXCLUDED.tokens",
            &[
                &id,
                &(count + 1 + i as i64),
                &t.role.as_str(),
                &t.content,
                &tool_calls,
                &t.execution_id,
                &t.timestamp,
                &i64::from(t.tokens),
            ],
        )?;
    }
    tx.execute(
        "UPDATE conversations SET turn_count = turn_count + $2, token_count = token_count + $3,
            last_active_at = GREATEST(last_active_at, $4::BIGINT) WHERE id = $1",
        &[&id, &(turns.len() as i64), &int(tokens), &at],
    )?;
    Ok(())
}

/// What an execution's end adds to its conversation: its turns, its tokens,
/// and that the conversation was active.
pub(super) fn finish(tx: &mut Tx<'_>, e: &Execution, turns: &[Turn]) -> anyhow::Result<()> {
    let Some(id) = &e.conversation_id else { return Ok(()) };
    insert_turns(tx, id, turns, e.token_usage.total, e.completed_at.unwrap_or_default())
}

fn raw(text: String) -> Arc<RawValue> {
    RawValue::from_string(text).map_or_else(|_| Arc::from(RawValue::NULL.to_owned()), Arc::from)
}

const CONVERSATION_COLUMNS: &str =
    "id, workspace, agent_id, turn_count, token_count, metadata, created_at, last_active_at";

fn conversation_from_row(r: &Row) -> anyhow::Result<Conversation> {
    Ok(Conversation {
        id: r.try_get(0)?,
        workspace: r.try_get(1)?,
        agent_id: r.try_get(2)?,
        turn_count: u32_at(r, 3)?,
        token_count: u64_at(r, 4)?,
        metadata: raw(r.try_get(5)?),
        created_at: r.try_get(6)?,
        last_active_at: r.try_get(7)?,
    })
}

fn turn_from_row(r: &Row) -> anyhow::Result<Turn> {
    Ok(Turn {
        seq: u32_at(r, 0)?,
        role: TurnRole::parse(&r.try_get::<_, String>(1)?).unwrap_or(TurnRole::User),
        content: r.try_get(2)?,
        tool_calls: serde_json::from_str(&r.try_get::<_, String>(3)?).unwrap_or_default(),
        execution_id: r.try_get(4)?,
        timestamp: r.try_get(5)?,
        tokens: u32_at(r, 6)?,
    })
}

const TURN_COLUMNS: &str = "seq, role, content, tool_calls, execution_id, ts, tokens";

pub(super) async fn conversation(c: &Reader, id: &str) -> anyhow::Result<Option<Conversation>> {
    let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1");
    c.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(conversation_from_row)
        .transpose()
}

pub(super) async fn conversations(c: &Reader, f: &ConversationFilter) -> anyhow::Result<(Vec<Conversation>, bool)> {
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations
         WHERE workspace = $1 AND ($2::TEXT IS NULL OR agent_id = $2) AND ($3::TEXT IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    );
    let mut rows = c
        .query(&sql, &[&f.workspace, &f.agent_id, &f.after, &(i64::from(f.limit) + 1)])
        .await?
        .iter()
        .map(conversation_from_row)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    Ok((rows, more))
}

pub(super) async fn turns(c: &Reader, id: &str) -> anyhow::Result<Vec<Turn>> {
    let sql = format!("SELECT {TURN_COLUMNS} FROM turns WHERE conversation_id = $1 ORDER BY seq");
    c.query(&sql, &[&id]).await?.iter().map(turn_from_row).collect()
}

pub(super) async fn recent_turns(
    c: &Reader,
    id: &str,
    max_turns: u32,
    max_tokens: u64,
) -> anyhow::Result<(Vec<Turn>, bool)> {
    let sql = format!("SELECT {TURN_COLUMNS} FROM turns WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2");
    let rows = c.query(&sql, &[&id, &(i64::from(max_turns) + 1)]).await?;
    let (mut kept, mut tokens, mut truncated) = (Vec::new(), 0u64, false);
    for row in &rows {
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

pub(super) async fn turns_under_way(c: &Reader, id: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut turns: Vec<(String, String)> = c
        .query(
            "SELECT id, coalesce(turn_key, id) FROM executions WHERE conversation_id = $1
               AND status NOT IN ('completed', 'failed', 'cancelled', 'rejected')",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| -> anyhow::Result<(String, String)> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .collect::<anyhow::Result<_>>()?;
    turns.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    Ok(turns)
}

pub(super) async fn exists(c: &Reader, scope: &str) -> anyhow::Result<bool> {
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM memory_stores WHERE id = $1)
                 OR EXISTS (SELECT 1 FROM conversations WHERE id = $1)",
            &[&scope],
        )
        .await?;
    Ok(row.try_get(0)?)
}

const STORE_SELECT: &str = "SELECT s.id, s.workspace, s.name, s.description, s.max_bytes, s.created_at,
    coalesce(u.bytes, 0), coalesce(u.entries, 0) FROM memory_stores s LEFT JOIN memory_usage u ON u.scope = s.id";

fn store_from_row(r: &Row) -> anyhow::Result<MemoryStoreInfo> {
    Ok(MemoryStoreInfo {
        id: r.try_get(0)?,
        workspace: r.try_get(1)?,
        name: r.try_get(2)?,
        description: r.try_get(3)?,
        max_bytes: u64_at(r, 4)?,
        created_at: r.try_get(5)?,
        bytes: u64_at(r, 6)?,
        entries: u64_at(r, 7)?,
    })
}

pub(super) async fn store(c: &Reader, workspace: &str, id_or_name: &str) -> anyhow::Result<Option<MemoryStoreInfo>> {
    // By id first, should another store be named after it.
    let sql = format!(
        "{STORE_SELECT} WHERE s.workspace = $1 AND (s.id = $2 OR s.name = $2) ORDER BY (s.id = $2) DESC LIMIT 1"
    );
    c.query_opt(&sql, &[&workspace, &id_or_name])
        .await?
        .as_ref()
        .map(store_from_row)
        .transpose()
}

pub(super) async fn stores(
    c: &Reader,
    workspace: &str,
    after: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<MemoryStoreInfo>, bool)> {
    let sql =
        format!("{STORE_SELECT} WHERE s.workspace = $1 AND ($2::TEXT IS NULL OR s.name > $2) ORDER BY s.name LIMIT $3");
    let mut rows = c
        .query(&sql, &[&workspace, &after, &(i64::from(limit) + 1)])
        .await?
        .iter()
        .map(store_from_row)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

fn entry_from_row(r: &Row) -> anyhow::Result<MemoryEntry> {
    Ok(MemoryEntry {
        key: r.try_get(0)?,
        value: raw(r.try_get(1)?),
        updated_at: r.try_get(2)?,
    })
}

pub(super) async fn entry(c: &Reader, scope: &str, key: &str) -> anyhow::Result<Option<MemoryEntry>> {
    c.query_opt(
        "SELECT key, value, updated_at FROM memory WHERE scope = $1 AND key = $2",
        &[&scope, &key],
    )
    .await?
    .as_ref()
    .map(entry_from_row)
    .transpose()
}

pub(super) async fn entries(
    c: &Reader,
    scope: &str,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<MemoryEntry>, bool)> {
    // Keys from `prefix` on, in (bytewise) order, while they still start with
    // it: one range of the key index.
    let mut rows = c
        .query(
            "SELECT key, value, updated_at FROM memory
             WHERE scope = $1 AND key >= $2 AND starts_with(key, $2) AND ($3::TEXT IS NULL OR key > $3)
             ORDER BY key LIMIT $4",
            &[&scope, &prefix, &after, &(i64::from(limit) + 1)],
        )
        .await?
        .iter()
        .map(entry_from_row)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

pub(super) async fn usage(c: &Reader, scope: &str) -> anyhow::Result<(u64, u64)> {
    let row = c
        .query_opt("SELECT bytes, entries FROM memory_usage WHERE scope = $1", &[&scope])
        .await?;
    match row {
        Some(r) => Ok((u64_at(&r, 0)?, u64_at(&r, 1)?)),
        None => Ok((0, 0)),
    }
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn get(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        let c = self.reader().await?;
        conversation(&c, id).await.map_err(read_error)
    }

    async fn list(&self, filter: ConversationFilter) -> Result<(Vec<Conversation>, bool), StoreError> {
        let c = self.reader().await?;
        conversations(&c, &filter).await.map_err(read_error)
    }

    async fn turns(&self, id: &str) -> Result<Vec<Turn>, StoreError> {
        let c = self.reader().await?;
        turns(&c, id).await.map_err(read_error)
    }

    async fn recent_turns(&self, id: &str, max_turns: u32, max_tokens: u64) -> Result<(Vec<Turn>, bool), StoreError> {
        let c = self.reader().await?;
        recent_turns(&c, id, max_turns, max_tokens).await.map_err(read_error)
    }

    async fn turns_under_way(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.reader().await?;
        turns_under_way(&c, id).await.map_err(read_error)
    }

    async fn hold_turns(&self, id: &str) -> Result<Option<Box<dyn crate::store::TurnHold>>, StoreError> {
        super::holds::hold_turns(self, id).await.map(Some)
    }
}

#[async_trait]
impl MemoryStore for PgStore {
    async fn hold_scope(&self, scope: &str) -> Result<Option<Box<dyn crate::store::Hold>>, StoreError> {
        super::holds::hold_memory(self, scope).await.map(Some)
    }

    async fn store(&self, workspace: &str, id_or_name: &str) -> Result<Option<MemoryStoreInfo>, StoreError> {
        let c = self.reader().await?;
        store(&c, workspace, id_or_name).await.map_err(read_error)
    }

    async fn stores(
        &self,
        workspace: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<MemoryStoreInfo>, bool), StoreError> {
        let c = self.reader().await?;
        stores(&c, workspace, after.as_deref(), limit).await.map_err(read_error)
    }

    async fn get(&self, scope: &str, key: &str) -> Result<Option<MemoryEntry>, StoreError> {
        let c = self.reader().await?;
        entry(&c, scope, key).await.map_err(read_error)
    }

    async fn entries(
        &self,
        scope: &str,
        prefix: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<MemoryEntry>, bool), StoreError> {
        let c = self.reader().await?;
        entries(&c, scope, prefix, after.as_deref(), limit)
            .await
            .map_err(read_error)
    }

    async fn usage(&self, scope: &str) -> Result<(u64, u64), StoreError> {
        let c = self.reader().await?;
        usage(&c, scope).await.map_err(read_error)
    }

    async fn exists(&self, scope: &str) -> Result<bool, StoreError> {
        let c = self.reader().await?;
        exists(&c, scope).await.map_err(read_error)
    }
}
