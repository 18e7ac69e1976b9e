//! Cancel: a waiting execution ends `cancelled` at once; a running one is asked
//! to stop (`cancel_requested`) and ends `cancelled` when it has.

use std::sync::Arc;

use super::lifecycle::End;
use super::{Executions, Job};
use crate::record::{ExecError, Execution, Status};
use crate::scheduler;
use crate::store::StoreError;

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
            scheduler::Cancel::NotLive => {
                // Unloaded while it waits for a decision: resumed to end.
                if let Some(execution) = self.store.get(id).await?
                    && execution.status == Status::AwaitingApproval
                {
                    self.lifecycle.request_cancel(id, &[Status::AwaitingApproval]).await?;
                    self.resume(id).await;
                    return Ok(Cancel::Requested);
                }
                Ok(Cancel::NotLive)
            }
            scheduler::Cancel::AlreadyRequested => Ok(Cancel::Requested),
            scheduler::Cancel::Signalled => {
                // Running, or waiting for a decision within its grace.
                self.lifecycle
                    .request_cancel(id, &[Status::Running, Status::AwaitingApproval])
                    .await?;
                Ok(Cancel::Requested)
            }
            scheduler::Cancel::Dequeued { job, done } => {
                let Job {
                    mut execution, events, ..
                } = job;
                let error = ExecError::host("cancelled", "the execution was cancelled before it ran");
                let ending = self.lifecycle.end(&mut execution, &events, End::Cancelled(error), None);
                let stored = ending.settle().await;
                let execution = Arc::new(execution);
                done.send_replace(Some(Arc::clone(&execution)));
                stored?;
                Ok(Cancel::Cancelled(execution))
            }
        }
    }
}
