//! Idempotency keys on Postgres: remembered like the other records, and
//! taken at once in the database (a claim several hosts may race for: one
//! wins, the others learn whose key it is).

use async_trait::async_trait;

use super::sql::Reader;
use super::{PgStore, read_error};
use crate::store::{IdempotencyRecord, IdempotencyStore, StoreError};

/// Takes an idempotency key for `r` (free, or held since before `since`), or
/// the record of whoever holds it.
pub async fn claim_idempotency_key(
    c: &Reader,
    r: &IdempotencyRecord,
    since: i64,
) -> anyhow::Result<Option<IdempotencyRecord>> {
    let taken = c
        .query_opt(
            "INSERT INTO idempotency_keys (key, request_hash, execution_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
                execution_id = EXCLUDED.execution_id, created_at = EXCLUDED.created_at
             WHERE idempotency_keys.created_at < $5 OR idempotency_keys.execution_id = EXCLUDED.execution_id
             RETURNING 1",
            &[&r.key, &r.request_hash, &r.execution_id, &r.created_at, &since],
        )
        .await?;
    if taken.is_some() {
        return Ok(None);
    }
    match idempotency_key(c, &r.key).await? {
        Some(held) => Ok(Some(held)),
        // Forgotten in between: taken now, or held by whoever took it first.
        None => {
            let taken = c
                .query_opt(
                    "INSERT INTO idempotency_keys (key, request_hash, execution_id, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING RETURNING 1",
                    &[&r.key, &r.request_hash, &r.execution_id, &r.created_at],
                )
                .await?;
            match taken {
                Some(_) => Ok(None),
                None => idempotency_key(c, &r.key).await,
            }
        }
    }
}

/// A stored idempotency key.
pub async fn idempotency_key(c: &Reader, key: &str) -> anyhow::Result<Option<IdempotencyRecord>> {
    let held = c
        .query_opt(
            "SELECT key, request_hash, execution_id, created_at FROM idempotency_keys WHERE key = $1",
            &[&key],
        )
        .await?;
    held.map(|row| {
        Ok(IdempotencyRecord {
            key: row.try_get(0)?,
            request_hash: row.try_get(1)?,
            execution_id: row.try_get(2)?,
            created_at: row.try_get(3)?,
        })
    })
    .transpose()
}

/// Idempotency keys created at or after `since`.
pub async fn idempotency_keys(c: &Reader, since: i64) -> anyhow::Result<Vec<IdempotencyRecord>> {
    let rows = c
        .query(
            "SELECT key, request_hash, execution_id, created_at FROM idempotency_keys WHERE created_at >= $1",
            &[&since],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(IdempotencyRecord {
                key: r.try_get(0)?,
                request_hash: r.try_get(1)?,
                execution_id: r.try_get(2)?,
                created_at: r.try_get(3)?,
            })
        })
        .collect()
}

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn holder(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let c = self.reader().await?;
        idempotency_key(&c, key).await.map_err(read_error)
    }

    async fn claim(&self, record: &IdempotencyRecord, since: i64) -> Result<Option<IdempotencyRecord>, StoreError> {
        let c = self.reader().await?;
        claim_idempotency_key(&c, record, since).await.map_err(read_error)
    }

    async fn load(&self, since: i64) -> Result<Vec<IdempotencyRecord>, StoreError> {
        let c = self.reader().await?;
        idempotency_keys(&c, since).await.map_err(read_error)
    }
}
