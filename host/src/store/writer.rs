//! The one writer of a backend: a thread that owns the write connection and
//! commits whatever has queued up in one transaction (group commit). A batch
//! that fails for a write's own reason is retried write by write, so one bad
//! write cannot sink the others; a batch that fails because storage does (a
//! full disk, a lost database) is kept and tried again until it commits. What
//! each write does is the backend's [`Sink`]'s business.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Commit, StorageFailure, StoreError, Write};

/// Whether the writer thread could make its sink (and if not, why).
pub type Ready = oneshot::Receiver<Result<(), String>>;

/// Executions whose run writes a batch left out, and deploys whose end it
/// left out: another host holds their rows (it took them over, on a store
/// several hosts share).
pub type Dropped = std::collections::HashSet<String>;

/// What the writer thread needs of a backend's write connection.
pub trait Sink: 'static {
    /// Applies writes in one transaction, committed when this returns `Ok`;
    /// the executions whose run writes it left out.
    fn apply(&mut self, writes: &[&Write]) -> anyhow::Result<Dropped>;
    /// Whether a failure is storage's (wait and retry), not the write's own.
    fn storage_failed(&self, e: &anyhow::Error) -> bool;
    /// Called after each batch is settled.
    fn settled(&mut self) {}
}

/// Whether the writer's storage is failing, as the writer last found it.
#[derive(Default)]
pub struct StorageHealth(Mutex<Option<StorageFailure>>);

impl StorageHealth {
    /// Records a failure; true when storage was fine until now.
    fn set_failing(&self, error: &str) -> bool {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let newly = state.is_none();
        let since = state.as_ref().map_or_else(crate::time::now_ms, |f| f.since);
        *state = Some(StorageFailure {
            error: error.to_owned(),
            since,
        });
        newly
    }

    /// Records that writes commit; true when storage was failing until now.
    fn set_ok(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take().is_some()
    }

    pub fn get(&self) -> Option<StorageFailure> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// How long the writer waits before it tries failing storage again, at first
/// and at most.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

pub type Ack = oneshot::Sender<Result<(), StoreError>>;

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
    /// Starts the writer thread, which first makes its sink (a connection
    /// that must live on that thread): `ready` says whether it could.
    pub fn spawn<S: Sink>(
        name: &str,
        make: impl FnOnce() -> anyhow::Result<S> + Send + 'static,
        health: Arc<StorageHealth>,
    ) -> anyhow::Result<(Writer, WriterThread, Ready)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || match make() {
                Ok(mut sink) => {
                    let _ = ready_tx.send(Ok(()));
                    run(&mut sink, rx, &health);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                }
            })?;
        Ok((Writer { tx }, WriterThread(handle), ready))
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

fn run(sink: &mut impl Sink, mut rx: mpsc::UnboundedReceiver<Job>, health: &StorageHealth) {
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
        while let Err(failure) = commit_batch(sink, &mut batch) {
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
        sink.settled();
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
pub fn commit_batch(sink: &mut impl Sink, batch: &mut Vec<(Write, Option<Ack>)>) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let writes: Vec<&Write> = batch.iter().map(|(w, _)| w).collect();
    let began = std::time::Instant::now();
    let batch_err = match sink.apply(&writes) {
        Ok(dropped) => {
            crate::metrics::store_commit(writes.len(), began.elapsed());
            for (write, ack) in batch.drain(..) {
                if let Some(ack) = ack {
                    let _ = ack.send(answer(&write, &dropped));
                }
            }
            return Ok(());
        }
        Err(e) if sink.storage_failed(&e) => return Err(format!("{e:#}")),
        Err(e) => e,
    };
    tracing::warn!(error = %batch_err, "batched write failed; retrying one by one");
    let mut rest = std::mem::take(batch).into_iter();
    while let Some((write, ack)) = rest.next() {
        let result = match sink.apply(&[&write]) {
            Ok(dropped) => answer(&write, &dropped),
            Err(e) if sink.storage_failed(&e) => {
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

/// What a committed batch answers a write: an execution's end, or a
/// deploy's, that was left out (another host holds it) is not stored.
fn answer(write: &Write, dropped: &Dropped) -> Result<(), StoreError> {
    match write {
        Write::Finish(f) if dropped.contains(&f.execution.id) => Err(StoreError::TakenOver(f.execution.id.clone())),
        Write::Deploy { job: Some(job), .. } if dropped.contains(&job.id) => Err(StoreError::TakenOver(job.id.clone())),
        _ => Ok(()),
    }
}
