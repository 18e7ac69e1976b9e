//! The conversation and memory stores' traits: conversations with their
//! turns (a turn a row), and memory key-values by scope.

use async_trait::async_trait;

use super::{Commit, Hold, MemoryWrite, Queue, StoreError, Write};
use crate::record::{Conversation, MemoryEntry, MemoryStoreInfo, Turn};

/// Filters and cursor of a conversations listing. Newest first; `after` is
/// the last id of the previous page.
#[derive(Debug, Default, Clone)]
pub struct ConversationFilter {
    pub workspace: String,
    pub agent_id: Option<String>,
    pub after: Option<String>,
    pub limit: u32,
}

/// Conversations and their turns. A turn is a row, never a snapshot of the
/// whole history.
#[async_trait]
pub trait ConversationStore: Queue {
    /// Creates a conversation with its first turns (none, usually).
    fn create(&self, conversation: Conversation, turns: Vec<Turn>) -> Commit {
        self.queue(Write::Memory(MemoryWrite::Conversation(Box::new(conversation), turns)))
    }
    /// Deletes a conversation with its turns and its session memory.
    fn delete(&self, id: &str) -> Commit {
        self.queue(Write::Memory(MemoryWrite::DeleteConversation(id.to_owned())))
    }
    /// Deletes conversations last active before `before` with no turn under
    /// way, as [`Self::delete`] does.
    fn sweep(&self, before: i64) -> Commit {
        self.queue(Write::Memory(MemoryWrite::SweepConversations(before)))
    }
    async fn get(&self, id: &str) -> Result<Option<Conversation>, StoreError>;
    /// One page, newest first, and whether more follow.
    async fn list(&self, filter: ConversationFilter) -> Result<(Vec<Conversation>, bool), StoreError>;
    /// Every turn, oldest first.
    async fn turns(&self, id: &str) -> Result<Vec<Turn>, StoreError>;
    /// The newest turns, oldest first: at most `max_turns` of them, and no more
    /// once their tokens would pass `max_tokens`; and whether older ones were
    /// left out.
    async fn recent_turns(&self, id: &str, max_turns: u32, max_tokens: u64) -> Result<(Vec<Turn>, bool), StoreError>;
    /// The executions of the conversation that have not ended (its turns
    /// under way or waiting their turn), each with its turn key, in turn
    /// order (by key, then id).
    async fn turns_under_way(&self, id: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// On a store several hosts share: keeps other hosts from placing a turn
    /// of the conversation until the hold is released (a host reads the
    /// turns under way, then commits its turn, under it). `None` on a store
    /// of one host, whose own lock suffices.
    async fn hold_turns(&self, _id: &str) -> Result<Option<Box<dyn TurnHold>>, StoreError> {
        Ok(None)
    }
}

/// A conversation's turns held still across hosts (see
/// [`ConversationStore::hold_turns`]); dropped unreleased, it is given up
/// all the same (less cheaply).
#[async_trait]
pub trait TurnHold: Send {
    /// The conversation's turns under way, as [`ConversationStore::turns_under_way`].
    async fn turns_under_way(&self) -> Result<Vec<(String, String)>, StoreError>;
    async fn release(self: Box<Self>);
}

/// Memory key-values, by scope: a conversation's session memory (scope: the
/// conversation's id) or a memory store's entries (scope: the store's id).
#[async_trait]
pub trait MemoryStore: Queue {
    fn create_store(&self, store: MemoryStoreInfo) -> Commit {
        self.queue(Write::Memory(MemoryWrite::Store(Box::new(store))))
    }
    /// Deletes a memory store with its entries.
    fn delete_store(&self, id: &str) -> Commit {
        self.queue(Write::Memory(MemoryWrite::DeleteStore(id.to_owned())))
    }
    /// A store of `workspace`, by id or name.
    async fn store(&self, workspace: &str, id_or_name: &str) -> Result<Option<MemoryStoreInfo>, StoreError>;
    /// One page of a workspace's stores, by name, and whether more follow.
    async fn stores(
        &self,
        workspace: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<MemoryStoreInfo>, bool), StoreError>;
    /// Sets a key (a store's count of bytes and entries follows).
    fn put(&self, scope: &str, entry: MemoryEntry) -> Commit {
        self.queue(Write::Memory(MemoryWrite::Put(scope.to_owned(), Box::new(entry))))
    }
    fn remove(&self, scope: &str, key: &str) -> Commit {
        self.queue(Write::Memory(MemoryWrite::Remove(scope.to_owned(), key.to_owned())))
    }
    async fn get(&self, scope: &str, key: &str) -> Result<Option<MemoryEntry>, StoreError>;
    /// Entries whose key starts with `prefix`, after key `after`, in key order,
    /// at most `limit`, and whether more follow.
    async fn entries(
        &self,
        scope: &str,
        prefix: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<MemoryEntry>, bool), StoreError>;
    /// Bytes (keys and values) and entries a scope holds.
    async fn usage(&self, scope: &str) -> Result<(u64, u64), StoreError>;
    /// Whether the memory a scope names (a store or a conversation) exists.
    async fn exists(&self, scope: &str) -> Result<bool, StoreError>;
    /// On a store several hosts share: keeps other hosts from writing the
    /// scope until the hold is released (a host reads its bytes, then
    /// commits its write, under it). `None` on a store of one host, whose own
    /// lock suffices.
    async fn hold_scope(&self, _scope: &str) -> Result<Option<Box<dyn Hold>>, StoreError> {
        Ok(None)
    }
}
