//! The shared store: Postgres, for several hosts on one database (`[store]
//! url`). The same store traits as the embedded SQLite store, the same one
//! writer batching every write of this host in order ([`crate::store::writer`],
//! on its own connection with the blocking client; the SQL in [`apply`]), and
//! reads on a pool of async connections that never wait behind it. This folder
//! is the only place that knows Postgres.

mod apply;
mod blobs;
mod claims;
mod conversations;
mod deploys;
mod durable;
mod hints;
mod holds;
mod hosts;
mod idempotency;
mod outbox;
mod read;
mod schema;
mod sql;
mod stores;
mod summary;
mod sweep;
mod tls;
mod triggers;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use self::blobs::PgBlobs;
use self::sql::{Reader, Session, Tx};
use super::writer::{Dropped, Sink, StorageHealth, Writer, WriterThread};
use super::{Backend, BlobStore, Commit, Queue, StorageFailure, StoreError, Stores, Write};
use crate::config::StoreConfig;

/// The fewest connections kept for holds across hosts (each hold lasts about
/// a commit); half the read pool's when that is more.
const MIN_HOLD_CONNECTIONS: usize = 2;

/// The Postgres store of one host.
pub struct PgStore {
    pool: Pool,
    /// One connection of its own for the heartbeat, so that reads filling
    /// the pool never delay it past the lease (other hosts would take this
    /// host's executions over, and it would stop them).
    beat_pool: Pool,
    /// Connections of their own for holds across hosts (see [`holds`]), so
    /// that holds never take the connections the reads made under them need.
    hold_pool: Pool,
    writer: Writer,
    writer_thread: Mutex<Option<WriterThread>>,
    health: Arc<StorageHealth>,
    /// `postgres 16.4`, for health.
    version: String,
    /// This host's id, and how long its lease lasts.
    host: String,
    lease: Duration,
    /// Until when this host leads (from its last heartbeat that found it
    /// leading), if it does.
    lead_until: Mutex<Option<std::time::Instant>>,
    /// Heartbeats made; whether the lead was given up; whether closed.
    beats: AtomicU64,
    resigned: AtomicBool,
    closed: AtomicBool,
    /// Woken by other hosts' hints (see [`hints`]), and the task listening.
    hints: Arc<tokio::sync::Notify>,
    listener: Mutex<Option<tokio::task::AbortHandle>>,
}

impl PgStore {
    /// Connects to the database `settings.url` names (creating and migrating
    /// its tables as needed) as the host whose id `data_dir` keeps; blobs
    /// live there too.
    pub async fn open(url: &str, settings: &StoreConfig, data_dir: &Path) -> anyhow::Result<Stores> {
        let tls::Connection { config, tls } = tls::parse(url)?;
        let writer_config = config.clone();
        let listen_config = config.clone();
        let (writer_tls, listen_tls) = (tls.clone(), tls.clone());
        let host = hosts::identity(data_dir)?;
        let health = Arc::new(StorageHealth::default());
        let sink_host = host.clone();
        let (writer, thread, ready) = Writer::spawn(
            "warden-pg-writer",
            move || PgSink::connect(writer_config, writer_tls, sink_host),
            Arc::clone(&health),
        )?;
        ready
            .await
            .map_err(|_| anyhow::anyhow!("the store's writer stopped"))?
            .map_err(anyhow::Error::msg)
            .context("connecting to the store's database")?;
        let pool_of = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .context("the store's connection pool")
        };
        let pool = pool_of(settings.max_connections)?;
        let beat_pool = pool_of(1)?;
        let hold_pool = pool_of(hold_connections(settings.max_connections))?;
        let version = {
            let client = pool.get().await.context("connecting to the store's database")?;
            let row = client.query_one("SHOW server_version", &[]).await?;
            let full: String = row.try_get(0)?;
            format!("postgres {}", full.split_whitespace().next().unwrap_or_default())
        };
        let hinted = Arc::new(tokio::sync::Notify::new());
        let listener = tokio::spawn(hints::listen(listen_config, listen_tls, Arc::clone(&hinted))).abort_handle();
        let blobs: Arc<dyn BlobStore> = Arc::new(PgBlobs::new(pool.clone(), tokio::runtime::Handle::current()));
        let store = Arc::new(PgStore {
            pool,
            beat_pool,
            hold_pool,
            writer,
            writer_thread: Mutex::new(Some(thread)),
            health,
            version,
            host,
            lease: Duration::from_millis(settings.lease_ms),
            lead_until: Mutex::new(None),
            beats: AtomicU64::new(0),
            resigned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            hints: hinted,
            listener: Mutex::new(Some(listener)),
        });
        tracing::info!(host = %store.host, "on a shared Postgres store");
        Ok(Stores::of(store, blobs))
    }

    /// A pooled connection for reads.
    async fn reader(&self) -> Result<Reader, StoreError> {
        connection(&self.pool).await
    }

    /// A connection of the holds' own.
    async fn holder(&self) -> Result<Reader, StoreError> {
        connection(&self.hold_pool).await
    }

    /// Queues a write that nobody waits for.
    fn send(&self, write: Write) {
        self.writer.send(write);
    }
}

/// A connection of `pool`.
async fn connection(pool: &Pool) -> Result<Reader, StoreError> {
    pool.get()
        .await
        .map(Reader)
        .map_err(|e| StoreError::Read(format!("no connection to the database: {e}")))
}

/// Connections kept for holds across hosts, for a read pool of `reads`.
pub fn hold_connections(reads: usize) -> usize {
    (reads / 2).max(MIN_HOLD_CONNECTIONS)
}

fn read_error(e: anyhow::Error) -> StoreError {
    StoreError::Read(format!("{e:#}"))
}

impl Queue for PgStore {
    fn queue(&self, write: Write) -> Commit {
        self.writer.queue(write)
    }
}

#[async_trait::async_trait]
impl Backend for PgStore {
    fn version(&self) -> String {
        self.version.clone()
    }

    fn failing(&self) -> Option<StorageFailure> {
        self.health.get()
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    async fn heartbeat(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        let began = std::time::Instant::now();
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let resigned = self.resigned.load(Ordering::Relaxed);
        let beat = async {
            let c = self
                .beat_pool
                .get()
                .await
                .map(Reader)
                .context("no connection to the database")?;
            let lapsed = hosts::heartbeat(&c, &self.host, lease).await?;
            // A host shutting down renews its lease (its runs finish) but
            // leads no more.
            let leads = !resigned && hosts::lead(&c, &self.host, lease).await?;
            anyhow::Ok((lapsed, leads))
        };
        // A beat that takes a third of a lease is as good as lost.
        let beat = tokio::time::timeout(self.lease / 3, beat).await;
        match beat {
            Ok(Ok((lapsed, leads))) => {
                // (The first beat of a restart finds the old lease run out.)
                let earlier = self.beats.fetch_add(1, Ordering::Relaxed);
                if lapsed && earlier > 0 {
                    tracing::error!(host = %self.host, "this host's lease had run out: other hosts may have taken over its executions");
                }
                // Leads until a lease from when this beat began, less a margin
                // for the database's answer on the way back.
                let until = if leads { Some(began + self.lease * 2 / 3) } else { None };
                let was = std::mem::replace(
                    &mut *self.lead_until.lock().unwrap_or_else(PoisonError::into_inner),
                    until,
                );
                if was.is_some() != leads {
                    tracing::info!(host = %self.host, leads, "the lead changed");
                }
                Ok(())
            }
            Ok(Err(e)) => Err(StoreError::Write(format!("{e:#}"))),
            Err(_) => Err(StoreError::Write("the heartbeat took a third of a lease".into())),
        }
    }

    fn leads(&self) -> bool {
        let until = *self.lead_until.lock().unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|t| std::time::Instant::now() < t)
    }

    async fn resign(&self) {
        self.resigned.store(true, Ordering::Relaxed);
        self.lead_until.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Ok(c) = self.reader().await
            && let Err(e) = hosts::resign(&c, &self.host).await
        {
            tracing::warn!(error = %format!("{e:#}"), "could not give the lead up");
        }
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        if let Some(listener) = self.listener.lock().unwrap_or_else(PoisonError::into_inner).take() {
            listener.abort();
        }
        let thread = self.writer_thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread {
            self.writer.shutdown(thread).await;
        }
        self.pool.close();
        self.beat_pool.close();
        self.hold_pool.close();
    }
}

/// The writer thread's connection: reconnected when it is lost.
struct PgSink {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// This host, the owner of the execution rows it writes.
    host: String,
    session: Session,
}

impl PgSink {
    fn connect(
        config: tokio_postgres::Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
        host: String,
    ) -> anyhow::Result<Self> {
        let mut session = Session::connect(&config, &tls)?;
        schema::migrate(&mut session)?;
        Ok(Self {
            config,
            tls,
            host,
            session,
        })
    }
}

impl Sink for PgSink {
    fn apply(&mut self, writes: &[&Write]) -> anyhow::Result<Dropped> {
        if self.session.is_closed() {
            self.session = Session::connect(&self.config, &self.tls)?;
        }
        let mut tx = Tx::begin(&mut self.session)?;
        let dropped = apply::apply(&mut tx, &self.host, writes)?;
        tx.commit()?;
        Ok(dropped)
    }

    /// A lost connection, a database that is shutting down, out of disk or
    /// memory, or in trouble of its own, or a transaction that lost a race:
    /// storage's failure, waited out; anything else is the write's own.
    fn storage_failed(&self, e: &anyhow::Error) -> bool {
        e.chain()
            .any(|cause| match cause.downcast_ref::<tokio_postgres::Error>() {
                Some(error) => match error.code() {
                    Some(state) => {
                        let code = state.code();
                        ["08", "53", "57", "58", "40"]
                            .iter()
                            .any(|class| code.starts_with(class))
                    }
                    None => error.is_closed() || self.session.is_closed(),
                },
                None => cause.downcast_ref::<std::io::Error>().is_some(),
            })
    }
}
