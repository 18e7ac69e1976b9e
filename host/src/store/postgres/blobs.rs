//! Blobs in the database, so that every host sharing it reaches the same
//! component and artifact bytes: content-addressed rows of `blobs`, written
//! once, read back only if they still have their hash. Blocking, like every
//! blob store: each call waits on the runtime for a pooled connection, so it
//! runs from `spawn_blocking` or a thread of its own, never on an async worker.

use deadpool_postgres::Pool;
use tokio::runtime::Handle;

use crate::digest::sha256_hex;
use crate::store::{BlobError, BlobStore};

pub struct PgBlobs {
    pool: Pool,
    runtime: Handle,
}

impl PgBlobs {
    pub fn new(pool: Pool, runtime: Handle) -> Self {
        Self { pool, runtime }
    }
}

impl BlobStore for PgBlobs {
    fn put(&self, hash: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            let client = self.pool.get().await?;
            client
                .execute(
                    "INSERT INTO blobs (hash, bytes) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                    &[&hash, &bytes],
                )
                .await?;
            Ok(())
        })
    }

    fn get(&self, hash: &str) -> Result<Vec<u8>, BlobError> {
        let row = self
            .runtime
            .block_on(async {
                let client = self.pool.get().await?;
                let row = client
                    .query_opt("SELECT bytes FROM blobs WHERE hash = $1", &[&hash])
                    .await?;
                anyhow::Ok(row)
            })
            .map_err(|e| BlobError::Unreadable(format!("{e:#}")))?;
        let bytes: Vec<u8> = row
            .ok_or(BlobError::Missing)?
            .try_get(0)
            .map_err(|e| BlobError::Unreadable(e.to_string()))?;
        if sha256_hex(&bytes) != hash {
            return Err(BlobError::Damaged);
        }
        Ok(bytes)
    }

    fn remove(&self, hash: &str) {
        let removed = self.runtime.block_on(async {
            let client = self.pool.get().await?;
            client.execute("DELETE FROM blobs WHERE hash = $1", &[&hash]).await?;
            anyhow::Ok(())
        });
        if let Err(e) = removed {
            tracing::warn!(hash, error = %format!("{e:#}"), "could not delete an unreferenced blob");
        }
    }
}
