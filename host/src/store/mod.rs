//! Storage: SQLite (WAL) for rows, content-addressed files for blobs.
//!
//! One writer thread batches all writes ([`writer`]); reads use their own
//! connections ([`read`]) and never wait behind it. Nothing here runs on an async
//! worker: reads go through [`Store::read`], which uses `spawn_blocking`.

pub mod blobs;
mod checkpoint;
pub mod read;
mod schema;
pub mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use rusqlite::Connection;

use self::blobs::Blobs;
use self::checkpoint::Checkpointer;
use self::read::Readers;
use self::writer::{Writer, WriterThread};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is shut down")]
    Closed,
    #[error("write failed: {0}")]
    Write(String),
}

/// The database and blob store of one data dir.
pub struct Store {
    readers: Arc<Readers>,
    pub writer: Writer,
    writer_thread: Mutex<Option<WriterThread>>,
    _checkpointer: Checkpointer,
    pub blobs: Blobs,
}

/// Opens (creating if needed) the database in `data_dir`, migrated: for the
/// store's writer, and for operator commands that work on a data dir directly.
pub fn connect(data_dir: &Path) -> anyhow::Result<Connection> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let db_path = data_dir.join("warden.db");
    let mut conn = Connection::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
    schema::configure(&conn)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and migrates the schema.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let conn = connect(data_dir)?;
        // Checkpoints happen on their own thread, not inside the writer's commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let db_path = data_dir.join("warden.db");
        let checkpointer = Checkpointer::start(db_path.clone())?;
        let blobs = Blobs::open(data_dir)?;
        let (writer, thread) = Writer::spawn(conn, blobs.clone(), Arc::clone(&checkpointer.wal_frames))?;
        Ok(Self {
            readers: Arc::new(Readers::new(db_path)),
            writer,
            writer_thread: Mutex::new(Some(thread)),
            _checkpointer: checkpointer,
            blobs,
        })
    }

    /// Runs a read off the async workers.
    pub async fn read<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<R> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .context("read task failed")?
    }

    /// Commits what is queued and stops the writer.
    pub async fn close(&self) {
        let thread = self.writer_thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread {
            self.writer.shutdown(thread).await;
        }
    }
}

/// The SQLite library version linked into this binary.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}
