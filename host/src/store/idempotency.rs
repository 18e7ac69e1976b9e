//! Idempotency keys, whatever the backend: which execution a request under
//! a key made, remembered across restarts (and, on a store several hosts
//! share, taken by one host at a time).

use async_trait::async_trait;

use super::{Commit, Queue, StoreError, Write};

/// An idempotency key: which execution a request made, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    pub request_hash: String,
    pub execution_id: String,
    pub created_at: i64,
}

/// Idempotency keys, remembered across restarts.
#[async_trait]
pub trait IdempotencyStore: Queue {
    /// Remembers a key (on a store several hosts share, a key another
    /// execution holds stays as it is: see [`IdempotencyStore::claim`]).
    fn put(&self, record: IdempotencyRecord) -> Commit {
        self.queue(Write::IdempotencyKey(record))
    }
    /// Forgets one key, if it still names `execution_id`.
    fn forget(&self, key: &str, execution_id: &str) -> Commit {
        self.queue(Write::ForgetIdempotencyKey {
            key: key.to_owned(),
            execution_id: execution_id.to_owned(),
        })
    }
    /// Forgets keys created before `before`.
    fn expire(&self, before: i64) -> Commit {
        self.queue(Write::ExpireIdempotencyKeys { before })
    }
    /// Keys created at or after `since`.
    async fn load(&self, since: i64) -> Result<Vec<IdempotencyRecord>, StoreError>;
    /// On a store several hosts share: takes the key for `record` at once,
    /// unless another host holds it (made at or after `since`); that host's
    /// record then. (`None` on a store of one host, whose memory decides.)
    async fn claim(&self, _record: &IdempotencyRecord, _since: i64) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(None)
    }
    /// A stored key (on a store several hosts share; a store of one host
    /// answers from memory, so `None`).
    async fn holder(&self, _key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(None)
    }
}
