//! The one way in: every execution is created here, whoever asks (the API,
//! `agent_call`, retries, and the triggers to come). Version choice, the
//! priority and metadata checks, the input's size and schema, the idempotency
//! key, the queue's bound, and undoing a claim the request did not use, all in
//! one place.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use super::idempotency::{Claim, request_hash};
use super::{Executions, Job, Watch};
use crate::manifest::InputError;
use crate::record::{Execution, Trigger};
use crate::registry::{Entry, Version};
use crate::scheduler::QueueFull;
use crate::store::StoreError;
use crate::{ids, time};

pub const DEFAULT_PRIORITY: u8 = 50;

/// Which agent version to run.
pub enum Target {
    /// An agent of `workspace` by id or name: `version` of it, or its latest.
    Agent {
        workspace: String,
        agent: String,
        version: Option<u32>,
    },
    /// Exactly this version (by id), whatever its agent's latest is.
    Version(String),
}

/// What a caller asks to run.
pub struct NewExecution {
    /// The id to give it (one fixed in a parent's journal); a new one if unset.
    pub id: Option<String>,
    pub target: Target,
    pub input: Arc<RawValue>,
    /// A JSON object kept on the record (`{}` when absent).
    pub metadata: Option<Arc<RawValue>>,
    /// 0 to 100 (default 50).
    pub priority: Option<u8>,
    pub trigger: Trigger,
    /// The same key with the same request gives the same execution (scoped to
    /// the agent's workspace).
    pub idempotency_key: Option<String>,
    /// The execution this one retries, and this one's attempt number.
    pub retry_of: Option<(String, u32)>,
    /// The execution whose `agent_call` asks for this one, and this one's depth.
    pub parent: Option<(String, u32)>,
    /// Wait this long before queueing (a retry's backoff).
    pub delay: Option<Duration>,
    /// Answer only once the `queued` record is committed (async callers read
    /// it right away); otherwise it is committed with the next batch, still
    /// before the run's own writes.
    pub durable: bool,
}

impl NewExecution {
    pub fn new(target: Target, input: Arc<RawValue>, trigger: Trigger) -> Self {
        Self {
            id: None,
            target,
            input,
            metadata: None,
            priority: None,
            trigger,
            idempotency_key: None,
            retry_of: None,
            parent: None,
            delay: None,
            durable: false,
        }
    }
}

/// An accepted execution: its record as accepted and where its end is announced.
pub struct Accepted {
    pub execution: Execution,
    pub done: Watch,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no agent with id or name {0:?}")]
    AgentNotFound(String),
    #[error("agent {agent:?} has no version {version}")]
    VersionNotFound { agent: String, version: u32 },
    #[error("agent {0:?} has no runnable version")]
    NoVersion(String),
    #[error("the agent version this execution ran is no longer deployed")]
    VersionGone,
    #[error("agent {agent:?} version {version} cannot run: {reason}")]
    Unavailable {
        agent: String,
        version: u32,
        reason: String,
    },
    #[error("priority must be 0 to 100")]
    InvalidPriority,
    #[error("metadata must be a JSON object")]
    InvalidMetadata,
    #[error("input is {size} bytes of JSON; the limit is {limit}")]
    InputTooLarge { size: usize, limit: usize },
    #[error("the input does not match the agent's input_schema: {}", crate::manifest::describe(.0))]
    InvalidInput(Vec<InputError>),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyConflict,
    /// The same request came with this idempotency key before: here is its
    /// execution (which the first request may still be creating), not a new one.
    #[error("this request was made before with the same Idempotency-Key: execution {execution_id}")]
    Repeated { execution_id: String, key: String },
    #[error(transparent)]
    QueueFull(#[from] QueueFull),
    #[error("the host is shutting down; send it again to its successor")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Executions {
    /// Creates an execution and queues it (or holds it for its delay).
    pub async fn submit(self: &Arc<Self>, new: NewExecution) -> Result<Accepted, SubmitError> {
        if self.is_draining() {
            return Err(SubmitError::ShuttingDown);
        }
        // What cannot be stored is not accepted: storage is failing.
        if let Some(failure) = self.backend.failing() {
            return Err(SubmitError::Store(StoreError::Unavailable(failure.error)));
        }
        let (entry, version) = self.resolve(&new.target)?;
        if let Err(reason) = &version.pre {
            return Err(SubmitError::Unavailable {
                agent: entry.agent.name.clone(),
                version: version.meta.version,
                reason: reason.clone(),
            });
        }
        let priority = new.priority.unwrap_or(DEFAULT_PRIORITY);
        if priority > 100 {
            return Err(SubmitError::InvalidPriority);
        }
        let metadata = match new.metadata {
            Some(m) if m.get().starts_with('{') && crate::json_text::check(m.get()).is_ok() => Some(m),
            Some(_) => return Err(SubmitError::InvalidMetadata),
            None => None,
        };
        let input = new.input;
        let limit = self.settings.max_input_bytes;
        if input.get().len() > limit {
            return Err(SubmitError::InputTooLarge {
                size: input.get().len(),
                limit,
            });
        }
        crate::json_text::check(input.get()).map_err(|e| {
            SubmitError::InvalidInput(vec![InputError {
                path: String::new(),
                message: format!("the input is not JSON the host accepts: {e}"),
            }])
        })?;
        version.check_input(&input).await.map_err(SubmitError::InvalidInput)?;

        let id = new.id.unwrap_or_else(ids::execution);
        let now = time::now_ms();
        // Keys are the agent's workspace's: another tenant's same key is another key.
        let key = new.idempotency_key.map(|k| format!("{}:{k}", entry.agent.workspace));
        if let Some(key) = &key {
            let version_part = match &new.target {
                Target::Agent { version: Some(v), .. } => v.to_string(),
                Target::Agent { version: None, .. } => "latest".to_owned(),
                Target::Version(id) => id.clone(),
            };
            let hash = request_hash(&[
                &entry.agent.id,
                &version_part,
                input.get(),
                metadata.as_ref().map_or("{}", |m| m.get()),
                &priority.to_string(),
            ]);
            match self.idempotency.claim(key, &hash, &id, now) {
                Claim::New => {}
                Claim::Same(execution_id) => {
                    return Err(SubmitError::Repeated {
                        execution_id,
                        key: key.clone(),
                    });
                }
                Claim::Conflict => return Err(SubmitError::IdempotencyConflict),
            }
        }
        let undo = |e: SubmitError| {
            if let Some(key) = &key {
                self.idempotency.release(key, &id);
            }
            e
        };
        let reservation = self.scheduler.reserve().map_err(|e| undo(e.into()))?;
        let (retry_of, attempt) = match new.retry_of {
            Some((id, attempt)) => (Some(id), attempt),
            None => (None, 1),
        };
        let (parent_id, depth) = match new.parent {
            Some((id, depth)) => (Some(id), depth),
            None => (None, 0),
        };
        let mut execution = Execution {
            trigger: new.trigger,
            priority,
            input,
            attempt,
            retry_of,
            parent_id,
            depth,
            run_after: new.delay.map(|d| now + d.as_millis() as i64),
            ..Execution::queued(id.clone(), &entry.agent, &version.meta, now)
        };
        if let Some(metadata) = metadata {
            execution.metadata = metadata;
        }
        let events = self
            .lifecycle
            .create(&execution, new.durable)
            .await
            .map_err(|e| undo(e.into()))?;
        if let Some(key) = &key {
            self.idempotency.store(key, &id);
        }
        let job = Job {
            execution: execution.clone(),
            version,
            events,
            resume: false,
        };
        let done = self.scheduler.queue(reservation, job, new.delay.is_some());
        match new.delay {
            Some(delay) => self.end_delay_after(id, delay),
            None => self.launch(self.scheduler.dispatch()),
        }
        Ok(Accepted { execution, done })
    }

    /// The agent and version a target names.
    fn resolve(&self, target: &Target) -> Result<(Arc<Entry>, Arc<Version>), SubmitError> {
        match target {
            Target::Agent {
                workspace,
                agent,
                version,
            } => {
                let entry = self
                    .registry
                    .get(workspace, agent)
                    .ok_or_else(|| SubmitError::AgentNotFound(agent.clone()))?;
                let found = match version {
                    Some(v) => entry.version(*v).ok_or_else(|| SubmitError::VersionNotFound {
                        agent: entry.agent.name.clone(),
                        version: *v,
                    })?,
                    None => entry
                        .latest()
                        .ok_or_else(|| SubmitError::NoVersion(entry.agent.name.clone()))?,
                };
                let found = Arc::clone(found);
                Ok((entry, found))
            }
            Target::Version(id) => self.registry.version(id).ok_or(SubmitError::VersionGone),
        }
    }

    /// Queues a delayed execution once its delay is over.
    pub(super) fn end_delay_after(self: &Arc<Self>, id: String, delay: Duration) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            this.launch(this.scheduler.end_delay(&id));
        });
    }
}
