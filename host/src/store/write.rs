//! What a write to the store is, whatever the backend: the store traits'
//! write methods become [`Write`]s, which a backend applies in the order they
//! were handed to it, batched.

use std::sync::Arc;

use crate::events::Event;
use crate::record::{
    Agent, AgentVersion, ApiKey, Approval, Artifact, Conversation, Decision, Delivery, DeployJob, Execution, Hook,
    JournalEntry, MemoryEntry, MemoryStoreInfo, Schedule, Status, Subscription, Turn,
};
use crate::store::{FinalRecord, IdempotencyRecord};

pub enum Write {
    /// Creates or updates the agent row and adds the version; with a deploy
    /// made in the background, ends its job in the same transaction (left out,
    /// version and all, when the job is no longer this host's to end).
    Deploy {
        agent: Agent,
        version: Box<AgentVersion>,
        job: Option<Box<DeployJob>>,
    },
    /// Creates a deploy made in the background, or ends it (failed).
    DeployJob(Box<DeployJob>),
    /// Upserts the whole execution row.
    Execution(Box<Execution>),
    /// Upserts the final execution row with the run's log lines, steps and
    /// last events.
    Finish(Box<FinalRecord>),
    /// Events of an execution, as they happen.
    Events {
        execution_id: Arc<str>,
        events: Vec<Arc<Event>>,
    },
    /// Records an artifact (its bytes are already in the blob store).
    Artifact(Box<Artifact>),
    /// Records the digest of a compiled artifact.
    Compiled {
        engine: String,
        component_hash: String,
        sha256: String,
    },
    /// Deletes finished executions that completed before `before`, with
    /// everything of theirs, and the blobs nothing else refers to.
    Sweep {
        before: i64,
    },
    /// Sets an execution's status, only if it still has status `from`.
    Status {
        id: String,
        from: Status,
        to: Status,
    },
    /// Marks a queued execution running.
    Running {
        id: String,
        started_at: i64,
    },
    /// A run waiting for a decision, unloaded: held by no host any more (on
    /// a store several hosts share; nothing to do on a store of one).
    Release(String),
    /// Records that `retried_by` retries execution `id`.
    LinkRetry {
        id: String,
        retried_by: String,
    },
    IdempotencyKey(IdempotencyRecord),
    /// Forgets one idempotency key, if it still names the execution.
    ForgetIdempotencyKey {
        key: String,
        execution_id: String,
    },
    /// Forgets idempotency keys created before `before`.
    ExpireIdempotencyKeys {
        before: i64,
    },
    KvSet {
        agent_id: String,
        key: String,
        value: String,
        updated_at: i64,
    },
    KvDelete {
        agent_id: String,
        key: String,
    },
    /// Stores a new API key (its secret's digest only).
    ApiKey {
        key: ApiKey,
        secret_sha256: String,
    },
    /// Revokes an API key (of `workspace` only, when given).
    RevokeApiKey {
        id: String,
        workspace: Option<String>,
        at: i64,
    },
    /// Journal entries of a durable run (a done entry replaces its start).
    Journal {
        execution_id: String,
        entries: Vec<JournalEntry>,
    },
    /// A new approval request, with the webhook deliveries announcing it.
    Approval(Box<Approval>, Vec<Delivery>),
    /// Decides a request, only if it is still pending.
    Decide {
        id: String,
        decision: Box<Decision>,
    },
    /// Conversations and memory.
    Memory(MemoryWrite),
    /// Creates or replaces a schedule.
    Schedule(Box<Schedule>),
    DeleteSchedule(String),
    Hook(Box<Hook>),
    DeleteHook(String),
    /// Outgoing webhooks.
    Subscribe(Box<Subscription>),
    Unsubscribe(String),
    Deliver(Vec<Delivery>),
    /// Deletes finished deliveries made before this time.
    SweepDeliveries(i64),
}

impl Write {
    /// The execution whose row this write replaces, if any.
    pub fn execution_id(&self) -> Option<&str> {
        match self {
            Write::Execution(e) => Some(&e.id),
            Write::Finish(f) => Some(&f.execution.id),
            _ => None,
        }
    }
}

/// Writes of conversations and memory.
pub enum MemoryWrite {
    Conversation(Box<Conversation>, Vec<Turn>),
    DeleteConversation(String),
    /// Deletes conversations last active before this time.
    SweepConversations(i64),
    Store(Box<MemoryStoreInfo>),
    DeleteStore(String),
    Put(String, Box<MemoryEntry>),
    Remove(String, String),
}
