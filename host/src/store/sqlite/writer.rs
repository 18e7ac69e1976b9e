//! The one writer: a thread that owns the write connection and commits whatever
//! has queued up in one transaction (group commit). Readers never wait on it
//! (WAL). A batch that fails for a write's own reason is retried write by write,
//! so one bad write cannot sink the others; a batch that fails because storage
//! does (a full disk) is kept and tried again until it commits. What each write
//! does in SQL is [`super::apply`]'s business.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::thread::JoinHandle;

use std::time::Duration;

use rusqlite::{Connection, ErrorCode};
use tokio::sync::{mpsc, oneshot};

use super::StorageHealth;
use super::apply::{Write, apply};
use crate::store::{BlobStore, Commit, StoreError};

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// How long the writer waits before it tries failing storage again, at first
/// and at most.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

pub(super) type Ack = oneshot::Sender<Result<(), StoreError>>;

enum Job {
    Write(Write, Option<Ack>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Job>,
}

pub struct WriterThread(JoinHandle<()>);

impl Writer {
    pub fn spawn(
        conn: Connection,
        blobs: Arc<dyn BlobStore>,
        wal_frames: Arc<AtomicI64>,
        health: Arc<StorageHealth>,
    ) -> anyhow::Result<(Writer, WriterThread)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = std::thread::Builder::new()
            .name("warden-sqlite-writer".into())
            .spawn(move || run(conn, blobs.as_ref(), rx, &wal_frames, &health))?;
        Ok((Writer { tx }, WriterThread(handle)))
    }

    /// Queues a write that nobody waits for; it is committed with the next batch.
    pub fn send(&self, write: Write) {
        // The thread only stops at shutdown; a write after that has nowhere to go.
        let _ = self.tx.send(Job::Write(write, None));
    }

    /// Queues a write; the answer says when it is committed.
    pub fn queue(&self, write: Write) -> Commit {
        let (ack, done) = oneshot::channel();
        match self.tx.send(Job::Write(write, Some(ack))) {
            Ok(()) => Commit::pending(done),
            Err(_) => Commit::ready(Err(StoreError::Closed)),
        }
    }

    /// Commits everything queued so far, then stops the thread.
    pub async fn shutdown(&self, thread: WriterThread) {
        let (done, stopped) = oneshot::channel();
        if self.tx.send(Job::Shutdown(done)).is_ok() {
            let _ = stopped.await;
        }
        let _ = tokio::task::spawn_blocking(move || thread.0.join()).await;
    }
}

fn run(
    mut conn: Connection,
    blobs: &dyn BlobStore,
    mut rx: mpsc::UnboundedReceiver<Job>,
    wal_frames: &AtomicI64,
    health: &StorageHealth,
) {
    let mut batch: Vec<(Write, Option<Ack>)> = Vec::with_capacity(MAX_BATCH);
    let mut stop: Option<oneshot::Sender<()>> = None;
    while stop.is_none() {
        let Some(first) = rx.blocking_recv() else { break };
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(w, ack) => batch.push((w, ack)),
                Job::Shutdown(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // Storage that fails (a full disk, an I/O error) is waited out: the
        // writes stay queued, in order, and are tried again until they commit,
        // while `health` tells the host to refuse new work. Only a shutdown
        // ends the wait; then what could not be stored is answered `Unavailable`.
        let mut wait = RETRY_FIRST;
        while let Err(failure) = commit_batch(&mut conn, blobs, &mut batch) {
            if health.set_failing(&failure) {
                tracing::error!(error = %failure, "storage is failing; writes wait until it recovers");
            }
            if stop.is_some() || shutdown_asked(&mut rx, &mut batch, &mut stop) {
                for (_, ack) in batch.drain(..) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Err(StoreError::Unavailable(failure.clone())));
                    }
                }
                break;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MAX);
        }
        if health.set_ok() {
            tracing::info!("storage recovered; queued writes are committed");
        }
        super::checkpoint::restart_if_long(&conn, wal_frames);
    }
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Moves what has arrived meanwhile behind the batch (in order); whether a
/// shutdown was asked.
fn shutdown_asked(
    rx: &mut mpsc::UnboundedReceiver<Job>,
    batch: &mut Vec<(Write, Option<Ack>)>,
    stop: &mut Option<oneshot::Sender<()>>,
) -> bool {
    while let Ok(job) = rx.try_recv() {
        match job {
            Job::Write(w, ack) => batch.push((w, ack)),
            Job::Shutdown(done) => {
                *stop = Some(done);
                return true;
            }
        }
    }
    false
}

/// Commits a batch in one transaction, or, when that fails for a write's own
/// reason, write by write (that write answered with its error). When storage
/// itself fails, returns why, with what is not committed still in `batch`.
pub(super) fn commit_batch(
    conn: &mut Connection,
    blobs: &dyn BlobStore,
    batch: &mut Vec<(Write, Option<Ack>)>,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let writes: Vec<&Write> = batch.iter().map(|(w, _)| w).collect();
    let began = std::time::Instant::now();
    let batch_err = match apply(conn, blobs, &writes) {
        Ok(()) => {
            crate::metrics::store_commit(writes.len(), began.elapsed());
            for (_, ack) in batch.drain(..) {
                if let Some(ack) = ack {
                    let _ = ack.send(Ok(()));
                }
            }
            return Ok(());
        }
        Err(e) if storage_failed(&e) => return Err(format!("{e:#}")),
        Err(e) => e,
    };
    tracing::warn!(error = %batch_err, "batched write failed; retrying one by one");
    let mut rest = std::mem::take(batch).into_iter();
    while let Some((write, ack)) = rest.next() {
        let result = match apply(conn, blobs, &[&write]) {
            Ok(()) => Ok(()),
            Err(e) if storage_failed(&e) => {
                batch.push((write, ack));
                batch.extend(rest);
                return Err(format!("{e:#}"));
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "write failed");
                Err(StoreError::Write(format!("{e:#}")))
            }
        };
        if let Some(ack) = ack {
            let _ = ack.send(result);
        }
    }
    Ok(())
}

/// Whether a write failed because storage did (full, unwritable, I/O), not
/// because of the write itself.
fn storage_failed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code)
            .is_some_and(|code| {
                matches!(
                    code,
                    ErrorCode::DiskFull
                        | ErrorCode::SystemIoFailure
                        | ErrorCode::CannotOpen
                        | ErrorCode::ReadOnly
                        | ErrorCode::DatabaseBusy
                        | ErrorCode::DatabaseLocked
                        | ErrorCode::PermissionDenied
                )
            })
            || cause.downcast_ref::<std::io::Error>().is_some()
    })
}
