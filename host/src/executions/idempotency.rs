//! `Idempotency-Key`: the same key with the same request gives the same execution;
//! the same key with a different request is refused. Keys live in memory (the
//! authority, so two concurrent requests cannot both win) and in the store (so a
//! restart remembers them) for a configured time, 24 h by default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::store::{IdempotencyRecord, IdempotencyStore, StoreError};

pub struct IdempotencyKeys {
    ttl_ms: i64,
    keys: Mutex<HashMap<String, Claimed>>,
    store: Arc<dyn IdempotencyStore>,
}

struct Claimed {
    request_hash: String,
    execution_id: String,
    created_at: i64,
}

/// What a key says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use (or the old use expired): the key now names `execution_id`.
    New,
    /// Seen with this same request: here is its execution.
    Same(String),
    /// Seen with a different request.
    Conflict,
}

/// The hash that tells "the same request" apart: agent, version, input, metadata
/// and priority, byte for byte.
pub fn request_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    crate::digest::hex(&hasher.finalize())
}

impl IdempotencyKeys {
    pub fn new(ttl_secs: u64, store: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            ttl_ms: (ttl_secs.min(i64::MAX as u64 / 1000) * 1000) as i64,
            keys: Mutex::new(HashMap::new()),
            store,
        }
    }

    /// Loads the stored keys that have not expired (after a restart).
    pub async fn load(&self, now: i64) -> Result<(), StoreError> {
        let rows = self.store.load(now - self.ttl_ms).await?;
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        for r in rows {
            keys.insert(
                r.key,
                Claimed {
                    request_hash: r.request_hash,
                    execution_id: r.execution_id,
                    created_at: r.created_at,
                },
            );
        }
        Ok(())
    }

    /// Claims `key` for a request, naming `execution_id` if it is new. A new
    /// claim is stored by [`IdempotencyKeys::store`] once its execution is.
    pub fn claim(&self, key: &str, request_hash: &str, execution_id: &str, now: i64) -> Claim {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = keys.get(key)
            && now - c.created_at < self.ttl_ms
        {
            return if c.request_hash == request_hash {
                Claim::Same(c.execution_id.clone())
            } else {
                Claim::Conflict
            };
        }
        keys.insert(
            key.to_owned(),
            Claimed {
                request_hash: request_hash.to_owned(),
                execution_id: execution_id.to_owned(),
                created_at: now,
            },
        );
        Claim::New
    }

    /// On a store several hosts share, a claim new here is taken there too:
    /// another host that holds the key decides, as [`IdempotencyKeys::claim`]
    /// would (the claim here is given back then).
    pub async fn claim_shared(
        &self,
        key: &str,
        request_hash: &str,
        execution_id: &str,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let record = IdempotencyRecord {
            key: key.to_owned(),
            request_hash: request_hash.to_owned(),
            execution_id: execution_id.to_owned(),
            created_at: now,
        };
        let held = match self.store.claim(&record, now - self.ttl_ms).await {
            Ok(None) => return Ok(Claim::New),
            Ok(Some(held)) => held,
            Err(e) => {
                self.release(key, execution_id);
                return Err(e);
            }
        };
        // Given back here: requests that found this host's claim meanwhile
        // follow the stored one (see `holder`).
        self.release(key, execution_id);
        Ok(if held.request_hash == request_hash {
            Claim::Same(held.execution_id)
        } else {
            Claim::Conflict
        })
    }

    /// The request hash and execution `key` names: here, or (a claim another
    /// host made, on a store several hosts share) as stored.
    pub async fn holder(&self, key: &str) -> Option<(String, String)> {
        let here = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map(|c| (c.request_hash.clone(), c.execution_id.clone()));
        if here.is_some() {
            return here;
        }
        match self.store.holder(key).await {
            Ok(Some(r)) => Some((r.request_hash, r.execution_id)),
            _ => None,
        }
    }

    /// Stores a new claim, after its execution (not waited for).
    pub fn store(&self, key: &str, execution_id: &str) {
        let claimed = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .filter(|c| c.execution_id == execution_id)
            .map(|c| (c.request_hash.clone(), c.created_at));
        if let Some((request_hash, created_at)) = claimed {
            self.store
                .put(IdempotencyRecord {
                    key: key.to_owned(),
                    request_hash,
                    execution_id: execution_id.to_owned(),
                    created_at,
                })
                .detach();
        }
    }

    /// Gives a key back when its request was not accepted after all.
    pub fn release(&self, key: &str, execution_id: &str) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.get(key).is_some_and(|c| c.execution_id == execution_id) {
            keys.remove(key);
            self.store.forget(key, execution_id).detach();
        }
    }

    /// Forgets expired keys, here and in the store.
    pub fn expire(&self, now: i64) {
        let before = now - self.ttl_ms;
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, c| c.created_at >= before);
        self.store.expire(before).detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;

    impl crate::store::Queue for Nowhere {
        fn queue(&self, _: crate::store::Write) -> crate::store::Commit {
            crate::store::Commit::ready(Ok(()))
        }
    }

    #[async_trait::async_trait]
    impl IdempotencyStore for Nowhere {
        async fn load(&self, _: i64) -> Result<Vec<IdempotencyRecord>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn same_different_and_expired() {
        let keys = IdempotencyKeys::new(10, Arc::new(Nowhere));
        let a = request_hash(&["agent", "input-a"]);
        let b = request_hash(&["agent", "input-b"]);
        assert_eq!(keys.claim("k", &a, "exec_1", 0), Claim::New);
        assert_eq!(keys.claim("k", &a, "exec_2", 5_000), Claim::Same("exec_1".into()));
        assert_eq!(keys.claim("k", &b, "exec_3", 5_000), Claim::Conflict);
        // After the TTL the key is free again.
        assert_eq!(keys.claim("k", &b, "exec_4", 10_000), Claim::New);
        keys.release("k", "exec_4");
        assert_eq!(keys.claim("k", &a, "exec_5", 10_001), Claim::New);
        // Parts are length-prefixed: moving a boundary changes the hash.
        assert_ne!(request_hash(&["ab", "c"]), request_hash(&["a", "bc"]));
    }
}
