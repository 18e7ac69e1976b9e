//! Memory, the use cases: the rules every write to a memory keeps, whoever
//! makes it (a run through its import, the API, an execute's
//! `memory.session`): keys and values within their sizes, values JSON the host
//! accepts, a memory's bytes within its cap (writes to one memory take turns,
//! across the hosts sharing a store too, so two cannot both pass the cap),
//! and memory stores made and found per
//! workspace. Runs reach it as the [`Memories`] port.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::config::MemoryConfig;
use crate::ports::{Memories, MemoryError, Scope};
use crate::record::{MemoryEntry, MemoryStoreInfo, Turn};
use crate::store::{ConversationStore, MemoryStore, StoreError, Stores};
use crate::{ids, time};

/// Longest name of a memory store.
const MAX_NAME: usize = 64;
/// Longest description of a memory store.
const MAX_DESCRIPTION: usize = 1024;
/// Locks that writes to the same memory share (by a hash of its id).
const STRIPES: usize = 64;

pub struct Memory {
    store: Arc<dyn MemoryStore>,
    conversations: Arc<dyn ConversationStore>,
    config: MemoryConfig,
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
}

fn unavailable(e: StoreError) -> MemoryError {
    MemoryError::Unavailable(format!("memory storage failed: {e}"))
}

impl Memory {
    pub fn new(stores: &Stores, config: MemoryConfig) -> Self {
        Self {
            store: Arc::clone(&stores.memory),
            conversations: Arc::clone(&stores.conversations),
            config,
            stripes: (0..STRIPES).map(|_| Arc::new(tokio::sync::Mutex::new(()))).collect(),
        }
    }

    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// A conversation's session memory.
    pub fn session(&self, conversation_id: &str) -> Scope {
        Scope {
            id: conversation_id.to_owned(),
            max_bytes: self.config.session_max_bytes,
        }
    }

    /// A memory store's entries.
    pub fn scope_of(store: &MemoryStoreInfo) -> Scope {
        Scope {
            id: store.id.clone(),
            max_bytes: store.max_bytes,
        }
    }

    fn check_key(&self, key: &str) -> Result<(), MemoryError> {
        if key.is_empty() || key.chars().count() > self.config.max_key_chars || key.chars().any(char::is_control) {
            return Err(MemoryError::Invalid(format!(
                "a key must be 1 to {} characters, none of them control characters",
                self.config.max_key_chars
            )));
        }
        Ok(())
    }

    /// Creates a memory store of `workspace`; `Ok(None)` when the name is taken.
    pub async fn create_store(
        &self,
        workspace: &str,
        name: &str,
        description: &str,
        max_bytes: Option<u64>,
    ) -> Result<Option<MemoryStoreInfo>, MemoryError> {
        let good_name = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !good_name {
            return Err(MemoryError::Invalid(format!(
                "a store's name must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
            )));
        }
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(MemoryError::Invalid(format!(
                "a description must be at most {MAX_DESCRIPTION} characters"
            )));
        }
        let cap = self.config.store_max_bytes;
        let max_bytes = max_bytes.unwrap_or(cap);
        if max_bytes == 0 || max_bytes > cap {
            return Err(MemoryError::LimitExceeded(format!(
                "max_bytes must be 1 to {cap} (the host's cap for a store)"
            )));
        }
        let _turn = self.stripe(workspace).lock().await;
        if self.store.store(workspace, name).await.map_err(unavailable)?.is_some() {
            return Ok(None);
        }
        let info = MemoryStoreInfo {
            id: ids::memory_store(),
            workspace: workspace.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            max_bytes,
            bytes: 0,
            entries: 0,
            created_at: time::now_ms(),
        };
        self.store.create_store(info.clone()).await.map_err(unavailable)?;
        Ok(Some(info))
    }

    /// A store of `workspace`, by id or name.
    pub async fn find_store(&self, workspace: &str, id_or_name: &str) -> Result<Option<MemoryStoreInfo>, StoreError> {
        self.store.store(workspace, id_or_name).await
    }

    pub async fn stores(
        &self,
        workspace: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<MemoryStoreInfo>, bool), StoreError> {
        self.store.stores(workspace, after, limit).await
    }

    /// Deletes a store and its entries.
    pub async fn delete_store(&self, id: &str) -> Result<(), StoreError> {
        let _turn = self.stripe(id).lock().await;
        self.store.delete_store(id).await
    }

    /// One entry.
    pub async fn entry(&self, scope: &Scope, key: &str) -> Result<Option<MemoryEntry>, StoreError> {
        self.store.get(&scope.id, key).await
    }

    /// A page of entries.
    pub async fn entries(
        &self,
        scope: &Scope,
        prefix: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<MemoryEntry>, bool), StoreError> {
        self.store.entries(&scope.id, prefix, after, limit).await
    }

    /// Checks a key and a JSON value against the host's rules (not against a
    /// memory's cap).
    pub fn check(&self, key: &str, value: &str) -> Result<(), MemoryError> {
        self.check_key(key)?;
        if value.len() > self.config.max_value_bytes {
            return Err(MemoryError::LimitExceeded(format!(
                "the value is {} bytes, over the limit of {}",
                value.len(),
                self.config.max_value_bytes
            )));
        }
        crate::json_text::check(value)
            .map_err(|e| MemoryError::Invalid(format!("the value is not JSON the host accepts: {e}")))
    }

    /// Sets a key to a JSON value, within the caps; returns the entry stored.
    pub async fn set(&self, scope: &Scope, key: &str, value: &str) -> Result<MemoryEntry, MemoryError> {
        self.check(key, value)?;
        let value: Arc<RawValue> = crate::json_text::raw(value.to_owned())
            .map_err(|e| MemoryError::Invalid(e.to_string()))?
            .into();
        let entry = MemoryEntry {
            key: key.to_owned(),
            value,
            updated_at: time::now_ms(),
        };
        // Writes to one memory take turns (across hosts too, on a store they
        // share): each sees the bytes the last one left, and a store's delete
        // takes the same turn here. The turn is a task of its own: a caller
        // that goes away (a run stopped, a request dropped) does not end it
        // before its write is committed.
        let turn = Arc::clone(self.stripe(&scope.id)).lock_owned();
        let (store, scope) = (Arc::clone(&self.store), scope.clone());
        tokio::spawn(async move {
            let _turn = turn.await;
            let hold = store.hold_scope(&scope.id).await.map_err(unavailable)?;
            let written = write_within_cap(store.as_ref(), &scope, entry).await;
            if let Some(hold) = hold {
                hold.release().await;
            }
            written
        })
        .await
        .map_err(|e| MemoryError::Unavailable(format!("the memory write failed in the host: {e}")))?
    }

    /// Deletes a key; whether it was there.
    pub async fn delete(&self, scope: &Scope, key: &str) -> Result<bool, MemoryError> {
        let _turn = self.stripe(&scope.id).lock().await;
        still_there(self.store.as_ref(), scope).await?;
        let found = self.store.get(&scope.id, key).await.map_err(unavailable)?.is_some();
        if found {
            self.store.remove(&scope.id, key).await.map_err(unavailable)?;
        }
        Ok(found)
    }

    fn stripe(&self, id: &str) -> &Arc<tokio::sync::Mutex<()>> {
        let hash = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.stripes[hash % STRIPES]
    }
}

/// Sets an entry if the scope's bytes leave room for it (its turn held).
async fn write_within_cap(
    store: &dyn MemoryStore,
    scope: &Scope,
    entry: MemoryEntry,
) -> Result<MemoryEntry, MemoryError> {
    still_there(store, scope).await?;
    let (bytes, _) = store.usage(&scope.id).await.map_err(unavailable)?;
    let old = store
        .get(&scope.id, &entry.key)
        .await
        .map_err(unavailable)?
        .map_or(0, |e| e.size());
    let after = bytes.saturating_sub(old) + entry.size();
    if after > scope.max_bytes {
        return Err(MemoryError::LimitExceeded(format!(
            "this memory would hold {after} bytes, over its cap of {}",
            scope.max_bytes
        )));
    }
    store.put(&scope.id, entry.clone()).await.map_err(unavailable)?;
    Ok(entry)
}

/// `Gone` when the memory was deleted (a run may hold a store deleted since
/// it started).
async fn still_there(store: &dyn MemoryStore, scope: &Scope) -> Result<(), MemoryError> {
    if store.exists(&scope.id).await.map_err(unavailable)? {
        Ok(())
    } else {
        Err(MemoryError::Gone(format!("memory {} no longer exists", scope.id)))
    }
}

#[async_trait]
impl Memories for Memory {
    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<String>, MemoryError> {
        self.check_key(key)?;
        Ok(self
            .store
            .get(&scope.id, key)
            .await
            .map_err(unavailable)?
            .map(|e| e.value.get().to_owned()))
    }

    async fn put(&self, scope: &Scope, key: &str, value: &str) -> Result<(), MemoryError> {
        self.set(scope, key, value).await.map(drop)
    }

    async fn remove(&self, scope: &Scope, key: &str) -> Result<bool, MemoryError> {
        self.check_key(key)?;
        self.delete(scope, key).await
    }

    async fn keys(&self, scope: &Scope, prefix: &str, limit: u32) -> Result<Vec<String>, MemoryError> {
        let (entries, _) = self
            .store
            .entries(&scope.id, prefix, None, limit)
            .await
            .map_err(unavailable)?;
        Ok(entries.into_iter().map(|e| e.key).collect())
    }

    async fn history(
        &self,
        conversation_id: &str,
        max_turns: u32,
        max_tokens: u64,
    ) -> Result<(Vec<Turn>, bool), MemoryError> {
        self.conversations
            .recent_turns(
                conversation_id,
                max_turns.min(self.config.history_max_turns),
                max_tokens.min(self.config.history_max_tokens),
            )
            .await
            .map_err(unavailable)
    }
}
