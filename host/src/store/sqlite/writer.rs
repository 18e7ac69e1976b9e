//! The one writer: a thread that owns the write connection and commits whatever
//! has queued up in one transaction (group commit). Readers never wait on it
//! (WAL). A batch that fails is retried write by write, so one bad write cannot
//! sink the others. What each write does in SQL is [`super::apply`]'s business.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::apply::{Write, apply};
use crate::store::{BlobStore, Commit, StoreError};

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 1024;

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
    ) -> anyhow::Result<(Writer, WriterThread)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = std::thread::Builder::new()
            .name("warden-sqlite-writer".into())
            .spawn(move || run(conn, blobs.as_ref(), rx, &wal_frames))?;
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

fn run(mut conn: Connection, blobs: &dyn BlobStore, mut rx: mpsc::UnboundedReceiver<Job>, wal_frames: &AtomicI64) {
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
        commit_batch(&mut conn, blobs, &mut batch);
        super::checkpoint::restart_if_long(&conn, wal_frames);
    }
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Commits a batch in one transaction, or, when that fails, write by write.
pub(super) fn commit_batch(conn: &mut Connection, blobs: &dyn BlobStore, batch: &mut Vec<(Write, Option<Ack>)>) {
    if batch.is_empty() {
        return;
    }
    let writes: Vec<&Write> = batch.iter().map(|(w, _)| w).collect();
    match apply(conn, blobs, &writes) {
        Ok(()) => {
            for (_, ack) in batch.drain(..) {
                if let Some(ack) = ack {
                    let _ = ack.send(Ok(()));
                }
            }
        }
        Err(batch_err) => {
            tracing::warn!(error = %batch_err, "batched write failed; retrying one by one");
            for (write, ack) in batch.drain(..) {
                let result = apply(conn, blobs, &[&write]).map_err(|e| StoreError::Write(format!("{e:#}")));
                if let Err(e) = &result {
                    tracing::error!(error = %e, "write failed");
                }
                if let Some(ack) = ack {
                    let _ = ack.send(result);
                }
            }
        }
    }
}
