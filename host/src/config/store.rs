//! Where the records live: the embedded SQLite database in the data dir (the
//! default), or a Postgres database several hosts may share.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A Postgres connection URL (`postgres://user:password@host:5432/warden`);
    /// unset: SQLite in the data dir.
    pub url: Option<String>,
    /// Connections kept for reads (the writer, the listener and the
    /// heartbeat hold one more each; holds across hosts half as many again,
    /// at least two).
    pub max_connections: usize,
    /// How long a host's lease lasts without a heartbeat (it beats three
    /// times a lease): past it, other hosts take over its unfinished
    /// executions.
    pub lease_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            lease_ms: 10_000,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_connections >= 1, "store.max_connections must be at least 1");
        anyhow::ensure!(self.lease_ms >= 300, "store.lease_ms must be at least 300");
        if let Some(url) = &self.url {
            anyhow::ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "store.url must be a postgres:// URL (unset, the store is SQLite in the data dir)"
            );
        }
        Ok(())
    }
}
