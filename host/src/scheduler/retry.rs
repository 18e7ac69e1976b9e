//! Retries: the next attempt of a failed execution, by the agent's retry policy
//! (delayed by its backoff) or on request (`POST /v1/executions/{id}/retry`);
//! each new execution is linked to the one it retries, both ways.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Accepted, Request, SubmitError, cancel, submit};
use crate::app::App;
use crate::execution::{Execution, Status};
use crate::registry::{Entry, Version};
use crate::store::read;
use crate::store::writer::Write;

/// Failure codes a retry cannot fix.
const NOT_RETRYABLE: &[&str] = &["invalid_input"];

/// Whether the agent's retry policy retries this failed execution.
fn retryable(execution: &Execution, version: &Version) -> Option<Duration> {
    let policy = version.meta.manifest.retry?;
    let code = execution.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
    (execution.status == Status::Failed && execution.attempt < policy.max_attempts && !NOT_RETRYABLE.contains(&code))
        .then(|| policy.backoff(execution.attempt + 1))
}

/// The next attempt of a failed execution when its policy says so: `None` at
/// once when it does not (most runs), else the future creating it, which gives
/// its id.
pub(super) fn retry_by_policy<'a>(
    app: &'a Arc<App>,
    execution: &'a Execution,
    version: &'a Arc<Version>,
) -> Option<impl Future<Output = Option<String>> + Send + 'a> {
    let delay = retryable(execution, version)?;
    Some(async move {
        let (entry, _) = app.registry.version(&version.meta.id)?;
        match create_retry(app, &entry, Arc::clone(version), execution, Some(delay), false).await {
            Ok(accepted) => Some(accepted.execution.id),
            Err(e) => {
                tracing::warn!(execution = %execution.id, error = %e, "could not schedule the policy's retry");
                None
            }
        }
    })
}

/// A new execution with the original's version, input, metadata and priority,
/// linked both ways.
async fn create_retry(
    app: &Arc<App>,
    entry: &Entry,
    version: Arc<Version>,
    original: &Execution,
    delay: Option<Duration>,
    durable: bool,
) -> Result<Accepted, SubmitError> {
    let mut request = Request::new(
        original.input.clone(),
        original.metadata.clone(),
        original.priority,
        "retry",
    );
    request.retry_of = Some((original.id.clone(), original.attempt + 1));
    request.delay = delay;
    let accepted = submit(app, entry, version, request, durable).await?;
    app.store.writer.send(Write::LinkRetry {
        id: original.id.clone(),
        retried_by: accepted.execution.id.clone(),
    });
    Ok(accepted)
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no execution {0:?}")]
    NotFound(String),
    #[error("the agent version this execution ran is no longer deployed")]
    VersionGone,
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

/// `POST /v1/executions/{id}/retry`: cancels the original if it is still live,
/// then queues a new, linked execution.
pub async fn retry(app: &Arc<App>, id: &str) -> Result<Accepted, RetryError> {
    let lookup = id.to_owned();
    let original = app
        .store
        .read(move |conn| read::execution(conn, &lookup))
        .await
        .map_err(RetryError::Internal)?
        .ok_or_else(|| RetryError::NotFound(id.to_owned()))?;
    if !original.status.is_terminal() {
        cancel(app, id).await.map_err(|e| RetryError::Internal(e.into()))?;
    }
    let (entry, version) = app
        .registry
        .version(&original.agent_version_id)
        .ok_or(RetryError::VersionGone)?;
    Ok(create_retry(app, &entry, version, &original, None, true).await?)
}
