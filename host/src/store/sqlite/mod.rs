//! The embedded store: SQLite (WAL) in the data dir, blobs as files beside it.
//!
//! One writer thread batches all writes ([`crate::store::writer`], their SQL
//! in [`apply`]);
//! reads use a small pool of read-only connections ([`read`]) and never wait
//! behind it. Nothing here runs on an async worker: reads go through
//! `spawn_blocking`. This folder is the only place that knows SQL or `rusqlite`.

mod apply;
mod checkpoint;
mod conversations;
mod deploys;
mod durable;
mod outbox;
mod read;
mod schema;
mod stores;
mod summary;
#[cfg(test)]
mod tests;
mod triggers;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

use self::apply::SqliteSink;
use self::checkpoint::Checkpointer;
use super::blobs::FileBlobs;
use super::writer::{StorageHealth, Writer, WriterThread};
use super::{BlobStore, Commit, Queue, StoreError, Stores, Write};

/// Read connections kept idle in the pool; more may exist briefly under load.
const MAX_IDLE_READERS: usize = 8;
/// Reads that run at once (each on a blocking thread, with a connection and
/// its page cache); more wait their turn, so a crowd of readers costs the host
/// no more than this many.
const MAX_READERS: usize = 8;

/// The SQLite store of one data dir.
pub struct SqliteStore {
    db_path: Arc<Path>,
    idle_readers: Mutex<Vec<Connection>>,
    readers: tokio::sync::Semaphore,
    writer: Writer,
    writer_thread: Mutex<Option<WriterThread>>,
    health: Arc<StorageHealth>,
    _checkpointer: Checkpointer,
}

/// The SQLite library version linked into this binary.
pub fn version() -> &'static str {
    rusqlite::version()
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Stores> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let db_path = data_dir.join("warden.db");
        let mut conn = Connection::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        // Checkpoints happen on their own thread, not inside the writer's commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(db_path.clone())?;
        let blobs: Arc<dyn BlobStore> = Arc::new(FileBlobs::open(data_dir)?);
        let health = Arc::new(StorageHealth::default());
        let sink = SqliteSink {
            conn,
            blobs: Arc::clone(&blobs),
            wal_frames: Arc::clone(&checkpointer.wal_frames),
        };
        let (writer, thread, _ready) = Writer::spawn("warden-sqlite-writer", move || Ok(sink), Arc::clone(&health))?;
        let store = Arc::new(SqliteStore {
            db_path: db_path.into(),
            idle_readers: Mutex::new(Vec::new()),
            readers: tokio::sync::Semaphore::new(MAX_READERS),
            writer,
            writer_thread: Mutex::new(Some(thread)),
            health,
            _checkpointer: checkpointer,
        });
        Ok(Stores::of(store, blobs))
    }

    /// Runs a read on a pooled connection, off the async workers.
    async fn query<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<R> + Send + 'static,
    {
        let _turn = self
            .readers
            .acquire()
            .await
            .map_err(|e| StoreError::Read(format!("the store is closed: {e}")))?;
        let conn = self.idle_readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let path = Arc::clone(&self.db_path);
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(conn) => conn,
                None => match open_reader(&path) {
                    Ok(conn) => conn,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = f(&conn);
            (Some(conn), result)
        })
        .await
        .map_err(|e| StoreError::Read(format!("the read task failed: {e}")))?;
        if let Some(conn) = conn {
            let mut idle = self.idle_readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result.map_err(|e| StoreError::Read(format!("{e:#}")))
    }

    /// Commits what is queued and stops the writer.
    async fn shutdown(&self) {
        let thread = self.writer_thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread {
            self.writer.shutdown(thread).await;
        }
    }
}

impl Queue for SqliteStore {
    fn queue(&self, write: Write) -> Commit {
        self.writer.queue(write)
    }
}

fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}
