//! The one way in: every execution is created here, whoever asks (the API,
//! `agent_call`, retries, and the triggers to come). Version choice, the
//! priority and metadata checks, the input's size and schema, the idempotency
//! key, the queue's bound, a conversation's turn (one at a time) and its
//! session memory, the memory stores attached, and undoing a claim the request
//! did not use, all in one place.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tracing::Instrument;

use super::conversations::{ConversationRef, TurnRequest};
use super::idempotency::{Claim, request_hash};
use super::{Executions, Job, Watch};
use crate::manifest::InputError;
use crate::ports::MemoryError;
use crate::record::{Execution, Trigger};
use crate::registry::{Entry, Version};
use crate::scheduler::QueueFull;
use crate::store::StoreError;
use crate::{ids, time};

pub const DEFAULT_PRIORITY: u8 = 50;
/// Session values as the JSON object a turn keeps until it starts.
fn session_object(session: &[(String, String)]) -> Option<Arc<RawValue>> {
    if session.is_empty() {
        return None;
    }
    let mut text = String::from("{");
    for (i, (key, value)) in session.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::Value::String(key.clone()).to_string());
        text.push(':');
        text.push_str(value);
    }
    text.push('}');
    RawValue::from_string(text).ok().map(Into::into)
}

/// Most memory stores one run may have attached.
const MAX_ATTACHED_STORES: usize = 16;

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
    /// A turn of a conversation.
    pub turn: Option<TurnRequest>,
    /// Memory stores of the workspace to attach, by id or name.
    pub memory_stores: Vec<String>,
    /// The schedule that makes it, and the slot it runs for.
    pub schedule: Option<(String, i64)>,
    /// The W3C trace it joins (a caller's `traceparent`, a parent's); a new
    /// one if unset.
    pub trace_id: Option<String>,
    /// The caller's span in that trace it hangs under.
    pub trace_parent: Option<String>,
    /// The model of the agent's calls that name none (one of its manifest's).
    pub model: Option<String>,
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
            turn: None,
            memory_stores: Vec::new(),
            schedule: None,
            trace_id: None,
            trace_parent: None,
            model: None,
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
    #[error("model {model:?} is not one of the agent's models ({allowed})")]
    ModelNotAllowed { model: String, allowed: String },
    #[error("input is {size} bytes of JSON; the limit is {limit}")]
    InputTooLarge { size: usize, limit: usize },
    #[error("the input does not match the agent's input_schema: {}", crate::manifest::describe(.0))]
    InvalidInput(Vec<InputError>),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyConflict,
    /// The same request came with this idempotency key before: here is its
    /// execution (which the first request may still be creating), not a new one.
    #[error("this request was made before with the same Idempotency-Key: execution {execution_id}")]
    Repeated {
        execution_id: String,
        key: String,
        /// The request's hash, to follow the key should it come to name
        /// another execution of the same request (one another host made).
        request_hash: String,
    },
    #[error(transparent)]
    QueueFull(#[from] QueueFull),
    #[error("the host is shutting down; send it again to its successor")]
    ShuttingDown,
    #[error("no conversation {0:?}")]
    ConversationNotFound(String),
    #[error("conversation {conversation:?} is with agent {agent:?}, not this one")]
    ConversationAgent { conversation: String, agent: String },
    #[error("conversation {conversation} has a turn under way (execution {execution})")]
    ConversationBusy { conversation: String, execution: String },
    #[error("no memory store {0:?}")]
    MemoryStoreNotFound(String),
    #[error("at most {0} memory stores may be attached to a run")]
    TooManyMemoryStores(usize),
    #[error("memory: {0}")]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Executions {
    /// Creates an execution and queues it (or holds it for its delay).
    ///
    /// The submission runs to its end on a task of its own, whether or not
    /// its caller still waits: a request dropped midway (a client that hangs
    /// up) leaves no claimed idempotency key, held turn, or committed record
    /// that nothing queues behind.
    pub async fn submit(self: &Arc<Self>, new: NewExecution) -> Result<Accepted, SubmitError> {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.submit_to_end(new).await }.instrument(tracing::Span::current()))
            .await
            .unwrap_or_else(|e| Err(SubmitError::Internal(format!("the submission stopped: {e}"))))
    }

    async fn submit_to_end(self: Arc<Self>, new: NewExecution) -> Result<Accepted, SubmitError> {
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
        if let Some(model) = &new.model {
            let models = &version.meta.manifest.models;
            let allowed = if models.is_empty() {
                model == "scripted"
            } else {
                models.iter().any(|m| m == model)
            };
            if !allowed {
                return Err(SubmitError::ModelNotAllowed {
                    model: model.clone(),
                    allowed: if models.is_empty() {
                        "scripted".into()
                    } else {
                        models.join(", ")
                    },
                });
            }
        }
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

        let workspace = entry.agent.workspace.clone();
        let continued = self.check_turn(&workspace, &entry.agent.id, new.turn.as_ref()).await?;
        let memory_stores = self.attached_stores(&workspace, &new.memory_stores).await?;

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
            let priority_text = priority.to_string();
            let mut parts = vec![
                entry.agent.id.as_str(),
                &version_part,
                input.get(),
                metadata.as_ref().map_or("{}", |m| m.get()),
                &priority_text,
                continued
                    .as_deref()
                    .unwrap_or(if new.turn.is_some() { "new" } else { "" }),
            ];
            // A picked model is part of the request (and a request without
            // one hashes as it did before models could be picked).
            if let Some(model) = &new.model {
                parts.push(model);
            }
            let hash = request_hash(&parts);
            let claim = match self.idempotency.claim(key, &hash, &id, now) {
                Claim::New => self.idempotency.claim_shared(key, &hash, &id, now).await?,
                other => other,
            };
            match claim {
                Claim::New => {}
                Claim::Same(execution_id) => {
                    return Err(SubmitError::Repeated {
                        execution_id,
                        key: key.clone(),
                        request_hash: hash,
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
        // One turn at a time: its place after the turns under way (or
        // refused), held from here until its record is committed.
        let place = match (&continued, &new.turn) {
            (Some(conversation), Some(turn)) => Some(self.place_turn(conversation, &turn.if_busy).await.map_err(undo)?),
            _ => None,
        };
        let (conversation_id, session) = match (continued, new.turn) {
            (Some(id), Some(turn)) => (Some(id), turn.session),
            (
                None,
                Some(TurnRequest {
                    conversation: ConversationRef::Start(metadata),
                    session,
                    ..
                }),
            ) => {
                let made = self
                    .new_conversation(&workspace, &entry.agent.id, metadata, Vec::new(), 0)
                    .await
                    .map_err(undo)?;
                (Some(made.id), session)
            }
            _ => (None, Vec::new()),
        };
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
            turn_key: conversation_id.as_ref().map(|_| match place.as_ref() {
                Some(place) => place.key_for(&id),
                None => id.clone(),
            }),
            session_set: session_object(&session),
            conversation_id,
            memory_store_ids: memory_stores,
            scheduled_for: new.schedule.as_ref().map(|(_, slot)| *slot),
            schedule_id: new.schedule.map(|(id, _)| id),
            trace_id: Some(new.trace_id.unwrap_or_else(crate::trace::new_trace_id)),
            trace_parent: new.trace_parent,
            model: new.model,
            ..Execution::queued(id.clone(), &entry.agent, &version.meta, now)
        };
        if let Some(metadata) = metadata {
            execution.metadata = metadata;
        }
        // A turn's record is committed before the next turn is placed: the
        // store knows every turn before it. One for the shared queue is
        // committed before any host can claim it.
        let shared = self.shares_queue() && execution.conversation_id.is_none();
        let durable = new.durable || execution.conversation_id.is_some() || shared;
        let events = self
            .lifecycle
            .create(&execution, durable)
            .await
            .map_err(|e| undo(e.into()))?;
        if let Some(key) = &key {
            self.idempotency.store(key, &id);
        }
        if shared {
            // Claimed by whichever host has room: this one, woken now (or
            // once its delay is over), if it has.
            let done = self.scheduler.follow(Some(reservation), &id, &execution.agent_id);
            match new.delay {
                Some(delay) => self.wake_claims_after(delay),
                // No room here: another host may have.
                None if self.scheduler.room() == 0 => self.hint(),
                None => self.wake_claims(),
            }
            return Ok(Accepted { execution, done });
        }
        let job = Job {
            execution: execution.clone(),
            version,
            events,
            resume: false,
        };
        // On a store several hosts share, every turn waits for a slot on
        // every host, as a claim does.
        let waits = place.as_ref().is_some_and(|p| p.waits) || self.shares_queue();
        let done = self.scheduler.queue(reservation, job, new.delay.is_some() || waits);
        match (&execution.conversation_id, &execution.turn_key, new.delay) {
            (Some(conversation), Some(turn_key), delay) if waits => {
                self.after_turn(id, conversation.clone(), turn_key.clone(), delay);
            }
            (_, _, Some(delay)) => self.end_delay_after(id, delay),
            _ => self.launch(self.scheduler.dispatch()),
        }
        // Released last: a request dropped meanwhile leaves its turn on its way.
        if let Some(hold) = place.and_then(|p| p.hold) {
            hold.release().await;
        }
        Ok(Accepted { execution, done })
    }

    /// The ids of the memory stores a run is to have, by id or name.
    async fn attached_stores(&self, workspace: &str, names: &[String]) -> Result<Vec<String>, SubmitError> {
        if names.len() > MAX_ATTACHED_STORES {
            return Err(SubmitError::TooManyMemoryStores(MAX_ATTACHED_STORES));
        }
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            let store = self
                .memory
                .find_store(workspace, name)
                .await?
                .ok_or_else(|| SubmitError::MemoryStoreNotFound(name.clone()))?;
            if !ids.contains(&store.id) {
                ids.push(store.id);
            }
        }
        Ok(ids)
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
