//! Cancel: a waiting execution ends `cancelled` at once; a running one is asked
//! to stop (`cancel_requested`) and ends `cancelled` when it has; one unloaded
//! while it waits for a decision is marked, then resumed to end; one another
//! host runs (a shared store) is marked, and that host stops it.

use std::sync::Arc;
use std::time::Duration;

use super::lifecycle::End;
use super::{Executions, Job};
use crate::record::{ExecError, Execution, Status};
use crate::scheduler;
use crate::store::StoreError;

/// Longest a cancel waits for a resume under way to put its run in the queue.
const RESUME_WAIT: Duration = Duration::from_secs(10);

/// What a cancel request did.
pub enum Cancel {
    /// It was waiting: now it is cancelled.
    Cancelled(Arc<Execution>),
    /// It was running: the guest is being stopped (`cancel_requested`).
    Requested,
    /// It is not live here (finished, or unknown).
    NotLive,
}

impl Executions {
    /// `POST /v1/executions/{id}/cancel` for a live execution.
    pub async fn cancel(self: &Arc<Self>, id: &str) -> Result<Cancel, StoreError> {
        match self.scheduler.cancel(id) {
            scheduler::Cancel::NotLive | scheduler::Cancel::Elsewhere => {
                // Waiting in the shared queue: claimed here and ended at once
                // (never queued here, where it could start).
                if let Some(cancelled) = self.cancel_waiting(id).await? {
                    return Ok(cancelled);
                }
                let mut stored = self.store.get(id).await?;
                // Another host runs it (a store several hosts share): marked,
                // it is stopped by that host when it sees the mark. (The mark
                // is set only from the status read: read again if it moved on.)
                for _ in 0..3 {
                    match &stored {
                        Some(e)
                            if self.backend.lease().is_some()
                                && matches!(e.status, Status::Pending | Status::Queued | Status::Running) =>
                        {
                            self.store.set_status(id, e.status, Status::CancelRequested).await?;
                            stored = self.store.get(id).await?;
                        }
                        _ => break,
                    }
                }
                if stored.as_ref().is_some_and(|e| e.status == Status::CancelRequested) {
                    return Ok(Cancel::Requested);
                }
                // Unloaded while it waits for a decision: resumed to end.
                if !stored.is_some_and(|e| e.status == Status::AwaitingApproval) {
                    return Ok(Cancel::NotLive);
                }
                self.lifecycle.request_cancel(id, &[Status::AwaitingApproval]).await?;
                self.resume(id).await;
                // A decision may have been resuming it meanwhile (before the
                // cancel was stored): that run is stopped like any other.
                self.wait_out_resume(id).await;
                match self.scheduler.cancel(id) {
                    scheduler::Cancel::Signalled => {
                        self.lifecycle
                            .request_cancel(id, &[Status::Running, Status::AwaitingApproval])
                            .await?;
                    }
                    scheduler::Cancel::Dequeued { job, done } => {
                        return self.end_dequeued(job, done).await;
                    }
                    scheduler::Cancel::AlreadyRequested | scheduler::Cancel::NotLive | scheduler::Cancel::Elsewhere => {
                    }
                }
                Ok(Cancel::Requested)
            }
            scheduler::Cancel::AlreadyRequested => Ok(Cancel::Requested),
            scheduler::Cancel::Signalled => {
                // Running, or waiting for a decision within its grace.
                self.lifecycle
                    .request_cancel(id, &[Status::Running, Status::AwaitingApproval])
                    .await?;
                // It may have been unloaded meanwhile, before the cancel was
                // stored: then it is resumed to end.
                self.resume(id).await;
                Ok(Cancel::Requested)
            }
            scheduler::Cancel::Dequeued { job, done } => self.end_dequeued(job, done).await,
        }
    }

    /// Stops the runs of this host that another host was asked to cancel (on
    /// a store several hosts share).
    pub async fn cancel_asked(self: &Arc<Self>) -> Result<(), StoreError> {
        for id in self.store.cancels_asked().await? {
            if self.scheduler.watch(&id).is_some() {
                tracing::info!(execution = %id, "cancel asked on another host");
                self.cancel(&id).await?;
            }
        }
        Ok(())
    }

    /// Ends a job taken out of the queue `cancelled`.
    async fn end_dequeued(&self, job: Job, done: scheduler::Done<Arc<Execution>>) -> Result<Cancel, StoreError> {
        self.end_waiting(job.execution, &job.events, Some(done)).await
    }

    /// Cancels an execution waiting in the shared queue (a store several
    /// hosts share), if it still waits: claimed by this host, it ends.
    async fn cancel_waiting(&self, id: &str) -> Result<Option<Cancel>, StoreError> {
        if !self.shares_queue() {
            return Ok(None);
        }
        let Some(mut execution) = self.store.claim_one(id).await? else {
            return Ok(None);
        };
        execution.status = Status::Queued;
        let events = self.lifecycle.log_of(&execution).await;
        let done = self.scheduler.unfollow(id, false);
        let followed = done.is_some();
        let ended = self.end_waiting(execution, &events, done).await.map(Some);
        if !followed {
            // The host that accepted it follows it.
            self.hint();
        }
        ended
    }

    /// Ends an execution that never ran `cancelled`, and says so to whoever waits.
    async fn end_waiting(
        &self,
        mut execution: Execution,
        events: &Arc<crate::events::EventLog>,
        done: Option<scheduler::Done<Arc<Execution>>>,
    ) -> Result<Cancel, StoreError> {
        let error = ExecError::host("cancelled", "the execution was cancelled before it ran");
        let id = execution.id.clone();
        let from = execution.status;
        let ending = self.lifecycle.end(&mut execution, events, End::Cancelled(error), None);
        let stored = ending.settle().await;
        if let Err(StoreError::TakenOver(_)) = stored {
            // Another host holds it now: marked, that host ends it, and
            // whoever waits here hears that end.
            if let Some(done) = done
                && !self.scheduler.refollow(&id, &execution.agent_id, done)
            {
                tracing::warn!(execution = %id, "live here again while its cancel was under way");
            }
            self.store.set_status(&id, from, Status::CancelRequested).await?;
            self.wake_claims();
            return Ok(Cancel::Requested);
        }
        let execution = Arc::new(execution);
        if let Some(done) = done {
            done.send_replace(Some(Arc::clone(&execution)));
        }
        self.ended_here(&execution.id);
        stored?;
        Ok(Cancel::Cancelled(execution))
    }

    /// Waits while a resume of `id` is under way (it reads and queues).
    async fn wait_out_resume(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + RESUME_WAIT;
        while self.waiters.is_resuming(id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
