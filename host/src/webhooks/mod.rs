//! Webhooks. Outgoing ones ([`outgoing`]) send a workspace's events to its
//! subscriptions. Incoming: a hook is a URL that runs one agent with the JSON body
//! it is sent (`trigger: "webhook"`), accepted only when signed per Standard
//! Webhooks with the hook's secret ([`signature`]), within five minutes of the
//! sender's timestamp; a `webhook-id` seen in the last 24 hours gives the
//! execution it made then, not a new one.

pub mod outgoing;
pub mod signature;

use std::sync::Arc;

use bytes::Bytes;

use self::signature::SignatureError;
use crate::executions::{Executions, NewExecution, SubmitError, Target};
use crate::record::{Hook, Trigger};
use crate::registry::Registry;
use crate::store::{HookStore, StoreError, Stores};
use crate::{ids, time};

/// Longest description of a hook.
const MAX_DESCRIPTION: usize = 1024;
/// Longest `webhook-id` accepted.
const MAX_MESSAGE_ID: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("no hook {0:?}")]
    NotFound(String),
    #[error("no agent with id or name {0:?}")]
    AgentNotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The headers of a signed message.
pub struct Signed<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

pub struct Webhooks {
    hooks: Arc<dyn HookStore>,
    executions: Arc<Executions>,
    registry: Arc<Registry>,
}

impl Webhooks {
    pub fn new(stores: &Stores, executions: Arc<Executions>, registry: Arc<Registry>) -> Self {
        Self {
            hooks: Arc::clone(&stores.hooks),
            executions,
            registry,
        }
    }

    /// Makes a hook for an agent of `workspace`; the hook carries its secret
    /// (shown this once).
    pub async fn create(&self, workspace: &str, agent: &str, description: String) -> Result<Hook, HookError> {
        let entry = self
            .registry
            .get(workspace, agent)
            .ok_or_else(|| HookError::AgentNotFound(agent.to_owned()))?;
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(HookError::Invalid(format!(
                "description: at most {MAX_DESCRIPTION} characters"
            )));
        }
        let id = ids::hook();
        let hook = Hook {
            url: Hook::url_of(&id),
            id,
            workspace: workspace.to_owned(),
            agent_id: entry.agent.id.clone(),
            description,
            secret: signature::new_secret()?,
            created_at: time::now_ms(),
        };
        self.hooks.create(hook.clone()).await?;
        Ok(hook)
    }

    pub async fn list(&self, workspace: &str) -> Result<Vec<Hook>, StoreError> {
        self.hooks.list(workspace).await
    }

    pub async fn delete(&self, workspace: &str, id: &str) -> Result<(), HookError> {
        match self.hooks.get(id).await? {
            Some(h) if h.workspace == workspace => Ok(self.hooks.delete(id).await?),
            _ => Err(HookError::NotFound(id.to_owned())),
        }
    }

    /// A message sent to a hook: checked, then its agent run with the body as
    /// input, in the sender's W3C trace if it sent one (`trace`: its id and
    /// the sender's span). Returns the execution's id (the one it made before,
    /// for a `webhook-id` seen already).
    pub async fn receive(
        &self,
        id: &str,
        signed: Signed<'_>,
        trace: Option<(String, String)>,
        body: Bytes,
    ) -> Result<String, HookError> {
        let hook = self
            .hooks
            .get(id)
            .await?
            .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        let (Some(message), Some(timestamp), Some(signatures)) = (signed.id, signed.timestamp, signed.signature) else {
            return Err(SignatureError::Missing.into());
        };
        signature::verify(
            &hook.secret,
            message,
            timestamp,
            signatures,
            &body,
            time::now_ms() / 1000,
        )?;
        if message.is_empty() || message.len() > MAX_MESSAGE_ID {
            return Err(HookError::Invalid(format!(
                "webhook-id must be 1 to {MAX_MESSAGE_ID} bytes"
            )));
        }
        let text = if body.iter().all(u8::is_ascii_whitespace) {
            "null".to_owned()
        } else {
            String::from_utf8(body.to_vec()).map_err(|_| HookError::Invalid("the body is not UTF-8 JSON".into()))?
        };
        let input =
            crate::json_text::raw(text).map_err(|e| HookError::Invalid(format!("the body is not JSON: {e}")))?;
        let metadata = serde_json::json!({ "hook_id": hook.id, "webhook_id": message }).to_string();
        let mut new = NewExecution::new(
            Target::Agent {
                workspace: hook.workspace.clone(),
                agent: hook.agent_id.clone(),
                version: None,
            },
            input.into(),
            Trigger::Webhook,
        );
        new.metadata = crate::json_text::raw(metadata).ok().map(Into::into);
        // The same message again (a sender's retry) is the same execution.
        new.idempotency_key = Some(format!("webhook:{}:{message}", hook.id));
        new.durable = true;
        (new.trace_id, new.trace_parent) = trace.unzip();
        match self.executions.submit(new).await {
            Ok(accepted) => Ok(accepted.execution.id),
            Err(SubmitError::Repeated { execution_id, .. }) => Ok(execution_id),
            Err(e) => Err(e.into()),
        }
    }
}
