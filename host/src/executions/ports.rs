//! The ports executions give their runs: artifacts kept in the store, and child
//! executions for `agent_call`, made through the one way in like any other.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::{Executions, NewExecution, SubmitError, Target};
use crate::digest::sha256_hex;
use crate::ports::{AgentCalls, ArtifactStore, ChildOutcome, ToolCtx, ToolError};
use crate::record::{Artifact, Trigger};
use crate::store::{BlobStore, ExecutionStore, Stores};
use crate::{ids, time};

/// Artifacts in the store: bytes as a blob (off the async workers), the record
/// as a row (committed with the next batch, before the run's final record).
pub struct StoredArtifacts {
    blobs: Arc<dyn BlobStore>,
    executions: Arc<dyn ExecutionStore>,
}

impl StoredArtifacts {
    pub fn new(stores: &Stores) -> Self {
        Self {
            blobs: Arc::clone(&stores.blobs),
            executions: Arc::clone(&stores.executions),
        }
    }
}

#[async_trait]
impl ArtifactStore for StoredArtifacts {
    async fn store(
        &self,
        execution_id: &str,
        id: Option<String>,
        name: String,
        media_type: String,
        data: Vec<u8>,
    ) -> anyhow::Result<Artifact> {
        let size = data.len() as u64;
        let blobs = Arc::clone(&self.blobs);
        let sha256 = tokio::task::spawn_blocking(move || {
            let hash = sha256_hex(&data);
            blobs.put(&hash, &data).map(|()| hash)
        })
        .await??;
        let artifact = Artifact {
            id: id.unwrap_or_else(ids::artifact),
            execution_id: execution_id.to_owned(),
            name,
            media_type,
            size,
            sha256,
            created_at: time::now_ms(),
        };
        self.executions.put_artifact(artifact.clone()).detach();
        Ok(artifact)
    }
}

#[async_trait]
impl AgentCalls for Executions {
    async fn call(&self, ctx: &ToolCtx, agent: &str, input: Box<RawValue>) -> Result<ChildOutcome, ToolError> {
        let this = self
            .this
            .upgrade()
            .ok_or_else(|| ToolError::Failed("the host is shutting down".into()))?;
        // Only agents of the caller's own workspace.
        let workspace = self
            .registry
            .workspace_of(&ctx.agent_id)
            .ok_or_else(|| ToolError::Failed(format!("no agent named {agent:?}")))?;
        let target = Target::Agent {
            workspace,
            agent: agent.to_owned(),
            version: None,
        };
        // A durable parent fixed its child's id before the call: after a
        // restart, the call finds that child (made, running or over) again.
        if let Some(id) = &ctx.child_id {
            let made = match this.watch(id) {
                Some(_) => true,
                None => this
                    .store
                    .get(id)
                    .await
                    .map_err(|e| ToolError::Failed(format!("agent_call: could not look for child {id}: {e}")))?
                    .is_some(),
            };
            if made {
                return this.child_outcome(id).await;
            }
        }
        let mut new = NewExecution::new(target, input.into(), Trigger::Agent);
        new.parent = Some((ctx.execution_id.clone(), ctx.depth + 1));
        new.trace_id = ctx.trace_id.clone();
        new.trace_parent = ctx.span_id.clone();
        new.id = ctx.child_id.clone();
        let accepted = this.submit(new).await.map_err(|e| match e {
            SubmitError::AgentNotFound(_) => ToolError::Failed(format!("no agent named {agent:?}")),
            SubmitError::NoVersion(_) => ToolError::Failed(format!("agent {agent:?} has no runnable version")),
            SubmitError::InvalidInput(errors) => ToolError::InvalidArguments(format!(
                "input does not match {agent:?}'s input_schema: {}",
                crate::manifest::describe(&errors)
            )),
            SubmitError::InputTooLarge { .. } => ToolError::InvalidArguments(format!("input: {e}")),
            other => ToolError::Failed(format!("agent_call: {other}")),
        })?;
        this.child_outcome(&accepted.execution.id).await
    }
}

/// How often a parent looks again at a child that waits unloaded (for an
/// approval) until it ends.
const CHILD_POLL: Duration = Duration::from_millis(500);

impl Executions {
    /// Waits for a child execution's end, across its waits for approvals.
    pub(super) async fn child_outcome(&self, child: &str) -> Result<ChildOutcome, ToolError> {
        let lost = || ToolError::Failed(format!("child execution {child} ended without a record"));
        loop {
            let ended = match self.watch(child) {
                Some(mut done) => done.wait_for(Option::is_some).await.ok().and_then(|e| e.clone()),
                None => match self.store.get(child).await {
                    Ok(Some(stored)) => Some(Arc::new(stored)),
                    Ok(None) => return Err(lost()),
                    Err(_) => None,
                },
            };
            if let Some(ended) = ended
                && ended.status.is_terminal()
            {
                return Ok(ChildOutcome {
                    execution_id: child.to_owned(),
                    status: ended.status,
                    output: ended.output.clone(),
                    error: ended.error.clone(),
                });
            }
            tokio::time::sleep(CHILD_POLL).await;
        }
    }
}
