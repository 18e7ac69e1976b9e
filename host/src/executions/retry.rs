//! Retries: the next attempt of a failed execution, by the agent's retry policy
//! (delayed by its backoff) or on request (`POST /v1/executions/{id}/retry`);
//! each is a new execution, created through the one way in and linked to the one
//! it retries, both ways.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::conversations::{ConversationRef, IfBusy, TurnRequest};
use super::{Accepted, Executions, NewExecution, SubmitError, Target};
use crate::record::{Execution, Status, Trigger};
use crate::registry::Version;
use crate::store::StoreError;

/// Failure codes a retry cannot fix.
const NOT_RETRYABLE: &[&str] = &["invalid_input"];

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no execution {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether the agent's retry policy retries this failed execution, and after
/// which backoff.
pub(super) fn retryable(execution: &Execution, version: &Version) -> Option<Duration> {
    let policy = version.meta.manifest.retry?;
    let code = execution.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
    (execution.status == Status::Failed && execution.attempt < policy.max_attempts && !NOT_RETRYABLE.contains(&code))
        .then(|| policy.backoff(execution.attempt + 1))
}

impl Executions {
    /// The next attempt of a failed execution when its policy says so: `None` at
    /// once when it does not (most runs), else the future creating it, which
    /// gives its id.
    pub(super) fn retry_by_policy<'a>(
        self: &'a Arc<Self>,
        execution: &'a Execution,
        version: &'a Version,
    ) -> Option<impl Future<Output = Option<String>> + Send + 'a> {
        let delay = retryable(execution, version)?;
        Some(async move {
            match self.create_retry(execution, Some(delay), false).await {
                Ok(accepted) => Some(accepted.execution.id),
                Err(e) => {
                    tracing::warn!(execution = %execution.id, error = %e, "could not schedule the policy's retry");
                    None
                }
            }
        })
    }

    /// `POST /v1/executions/{id}/retry`: cancels the original if it is still
    /// live, then queues a new, linked execution.
    pub async fn retry(self: &Arc<Self>, id: &str) -> Result<Accepted, RetryError> {
        let original = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| RetryError::NotFound(id.to_owned()))?;
        if !original.status.is_terminal() {
            self.cancel(id).await?;
        }
        Ok(self.create_retry(&original, None, true).await?)
    }

    /// A new execution with the original's version, input, metadata and
    /// priority, linked both ways.
    async fn create_retry(
        self: &Arc<Self>,
        original: &Execution,
        delay: Option<Duration>,
        durable: bool,
    ) -> Result<Accepted, SubmitError> {
        let mut new = NewExecution::new(
            Target::Version(original.agent_version_id.clone()),
            original.input.clone(),
            Trigger::Retry,
        );
        new.metadata = Some(original.metadata.clone());
        new.priority = Some(original.priority);
        new.retry_of = Some((original.id.clone(), original.attempt + 1));
        // Another attempt at the same request: the same trace.
        new.trace_id = original.trace_id.clone();
        new.trace_parent = original.trace_parent.clone();
        new.model = original.model.clone();
        new.delay = delay;
        new.durable = durable;
        new.memory_stores = original.memory_store_ids.clone();
        // A retried turn is a turn of the same conversation: one its policy
        // makes takes over the failed turn's place; one asked for waits its turn.
        new.turn = original.conversation_id.clone().map(|id| TurnRequest {
            conversation: ConversationRef::Continue(id),
            if_busy: match (delay, &original.turn_key) {
                (Some(_), Some(key)) => IfBusy::Follow(key.clone()),
                _ => IfBusy::Wait,
            },
            session: Vec::new(),
        });
        let accepted = self.submit(new).await?;
        self.store.link_retry(&original.id, &accepted.execution.id).detach();
        Ok(accepted)
    }
}

/// Why a caller waiting for an execution's end got no record.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(
        "the host is shutting down before execution {0} ended: if it is queued it runs after the restart, if it is \
         running it ends host_restart"
    )]
    Closing(String),
    #[error("execution {0} ended without a record")]
    Lost(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Executions {
    /// Waits for an execution's end, following the retries its agent's policy
    /// makes, and returns the last attempt's record (an execution waiting
    /// unloaded for an approval ends this wait `awaiting_approval`).
    pub async fn last_attempt(&self, id: &str, mut done: super::Watch) -> Result<Arc<Execution>, WaitError> {
        let mut closing = self.closing();
        let mut id = id.to_owned();
        loop {
            let ended = tokio::select! {
                ended = done.wait_for(Option::is_some) => ended.map_err(|_| WaitError::Lost(id.clone()))?.clone(),
                _ = closing.wait_for(|c| *c) => return Err(WaitError::Closing(id)),
            };
            let ended = ended.ok_or_else(|| WaitError::Lost(id.clone()))?;
            let next = match (&ended.status, &ended.retried_by) {
                (Status::Failed, Some(next)) => next.clone(),
                _ => return Ok(ended),
            };
            done = match self.watch(&next) {
                Some(watch) => watch,
                None => {
                    // Already over: continue from its stored record.
                    let stored = self
                        .store
                        .get(&next)
                        .await?
                        .ok_or_else(|| WaitError::Lost(next.clone()))?;
                    if stored.status.is_terminal() || !self.shares_queue() {
                        let (_, watch) = tokio::sync::watch::channel(Some(Arc::new(stored)));
                        watch
                    } else {
                        // Another host made the retry (a shared store): followed.
                        self.follow(&next, &stored.agent_id)
                    }
                }
            };
            id = next;
        }
    }
}
