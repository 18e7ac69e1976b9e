//! Storage, behind one trait per concern: executions (with what their runs leave
//! behind), events, agents and versions, API keys, the agents' key-value store,
//! idempotency keys, journals and approvals, conversations and memory,
//! schedules, and blobs. Callers hold the traits, never a backend; SQL lives
//! only inside a backend's folder ([`sqlite`], the embedded default;
//! [`postgres`], shared by several hosts).
//!
//! Writes are handed to the backend, which batches them (group commit), and
//! answer a [`Commit`]: await it to know the write is durable, or detach it.
//! A backend keeps the order of the writes it is handed. Reads never wait
//! behind writes and never run on an async worker.

pub mod blobs;
mod chunks;
mod claims;
mod commit;
mod conversations;
mod durable;
mod idempotency;
pub mod postgres;
pub mod sqlite;
mod triggers;
mod write;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use self::claims::{Claims, Slots, Whereabouts};
pub use self::commit::Commit;
pub use self::conversations::{ConversationFilter, ConversationStore, MemoryStore, TurnHold};
pub use self::durable::{ApprovalFilter, ApprovalStore, JournalStore};
pub use self::idempotency::{IdempotencyRecord, IdempotencyStore};
pub use self::triggers::{HookStore, ScheduleFilter, ScheduleStore, WebhookStore};
pub use self::write::{MemoryWrite, Write};
use crate::events::{Event, EventSink};
use crate::record::{
    Agent, AgentSummary, AgentVersion, ApiKey, Artifact, Delivery, DeployJob, Execution, LogLine, Status, Step, Turn,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is shut down")]
    Closed,
    /// Storage is failing (a full disk, an I/O error): writes wait until it
    /// recovers, and new work is refused meanwhile.
    #[error("storage is failing: {0}")]
    Unavailable(String),
    #[error("write failed: {0}")]
    Write(String),
    #[error("read failed: {0}")]
    Read(String),
    /// Another host took the execution (or deploy) over (this host's lease
    /// ran out): what this host would have stored of its end is that host's
    /// to store.
    #[error("another host took {0} over")]
    TakenOver(String),
}

/// An execution's final write: its record, its log lines and steps, its last
/// events, and (a completed turn of a conversation) the turns it adds,
/// committed together (its journal deleted, its pending approval requests
/// cancelled).
pub struct FinalRecord {
    pub execution: Execution,
    pub logs: Vec<LogLine>,
    pub steps: Vec<Step>,
    pub events: Vec<Arc<Event>>,
    /// Added to the execution's conversation (if it still exists), which
    /// counts them and the execution's tokens.
    pub turns: Vec<Turn>,
    /// Webhook deliveries announcing the end.
    pub deliveries: Vec<Delivery>,
}

/// Where a backend takes writes: each store's write methods become a
/// [`Write`] handed here, committed in the order handed, batched.
pub trait Queue: Send + Sync {
    fn queue(&self, write: Write) -> Commit;
}

/// Makes the events' JSON on the caller's thread: a backend's writer does
/// every write in turn, and should only copy it.
pub fn serialize(events: &[Arc<Event>]) {
    for event in events {
        event.json();
    }
}

/// Filters and cursor of an execution listing. Newest first; `after` is the last
/// id of the previous page.
#[derive(Debug, Default, Clone)]
pub struct ExecutionFilter {
    /// Only executions of this workspace's agents.
    pub workspace: String,
    pub agent_id: Option<String>,
    pub status: Option<Status>,
    pub trigger: Option<String>,
    /// Only the turns of this conversation.
    pub conversation_id: Option<String>,
    /// Only the runs of this schedule.
    pub schedule_id: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    pub after: Option<String>,
    pub limit: u32,
}

/// Executions and what their runs leave behind: log lines, steps, artifacts.
#[async_trait]
pub trait ExecutionStore: Queue + Claims {
    /// Creates the record, or updates what changes over an execution's life
    /// (status, output, error, times, usage, counts, `retried_by`); what it was
    /// created with (agent, version, trigger, priority, input, metadata,
    /// attempt, links) keeps its first value.
    fn save(&self, execution: Execution) -> Commit {
        self.queue(Write::Execution(Box::new(execution)))
    }
    /// Stores an execution's final record with its log, steps and last events.
    fn finish(&self, record: FinalRecord) -> Commit {
        serialize(&record.events);
        self.queue(Write::Finish(Box::new(record)))
    }
    /// Sets the status, only if it still is `from`.
    fn set_status(&self, id: &str, from: Status, to: Status) -> Commit {
        self.queue(Write::Status {
            id: id.to_owned(),
            from,
            to,
        })
    }
    /// Marks a queued execution `running`, started at `started_at` (only if it
    /// is still queued).
    fn set_running(&self, id: &str, started_at: i64) -> Commit {
        self.queue(Write::Running {
            id: id.to_owned(),
            started_at,
        })
    }
    /// A run waiting for a decision was unloaded: no host holds it any more
    /// (on a store several hosts share, where one held in memory counts
    /// against its agent's slots).
    fn release(&self, id: &str) -> Commit {
        self.queue(Write::Release(id.to_owned()))
    }
    /// Records that `retried_by` retries execution `id`.
    fn link_retry(&self, id: &str, retried_by: &str) -> Commit {
        self.queue(Write::LinkRetry {
            id: id.to_owned(),
            retried_by: retried_by.to_owned(),
        })
    }
    /// Records an artifact (its bytes are already a blob).
    fn put_artifact(&self, artifact: Artifact) -> Commit {
        self.queue(Write::Artifact(Box::new(artifact)))
    }
    /// Deletes finished executions that completed before `before`, with
    /// everything of theirs, and the blobs nothing refers to any more.
    fn sweep(&self, before: i64) -> Commit {
        self.queue(Write::Sweep { before })
    }

    async fn get(&self, id: &str) -> Result<Option<Execution>, StoreError>;
    /// The workspace of a stored execution (its agent's).
    async fn workspace_of(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// One page, newest first, and whether more follow.
    async fn list(&self, filter: ExecutionFilter) -> Result<(Vec<Execution>, bool), StoreError>;
    /// Executions that had not finished, oldest first (what a restart recovers).
    /// On a store several hosts share: this host's own, and those of hosts
    /// whose lease ran out, which become this host's.
    async fn unfinished(&self) -> Result<Vec<Execution>, StoreError>;
    /// Unfinished executions of other hosts whose lease ran out, taken over by
    /// this host, oldest first (none on a store of one host).
    async fn orphans(&self) -> Result<Vec<Execution>, StoreError> {
        Ok(Vec::new())
    }
    /// Whether another live host holds the execution (on a store several
    /// hosts share: it last took it and its lease runs); such a run is that
    /// host's to resume.
    async fn held_elsewhere(&self, _id: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// This host's executions another host asked to cancel (on a store
    /// several hosts share; none on a store of one host).
    async fn cancels_asked(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    /// How many executions have this status.
    async fn count(&self, status: Status) -> Result<u64, StoreError>;
    /// Log lines after `after`, at most `limit`, and whether more follow.
    async fn logs(&self, id: &str, after: u32, limit: u32) -> Result<(Vec<LogLine>, bool), StoreError>;
    async fn steps(&self, id: &str) -> Result<Vec<Step>, StoreError>;
    async fn artifacts(&self, execution_id: &str) -> Result<Vec<Artifact>, StoreError>;
    async fn artifact(&self, execution_id: &str, id: &str) -> Result<Option<Artifact>, StoreError>;
    /// An agent's activity since `since`.
    async fn summary(&self, agent_id: &str, since: i64) -> Result<AgentSummary, StoreError>;
}

/// How much one read of stored events may return: at most `events` events, and
/// no more once their JSON reaches `bytes` (at least one event, whatever its size).
#[derive(Debug, Clone, Copy)]
pub struct EventBudget {
    pub events: usize,
    pub bytes: usize,
}

/// Execution events, stored as they happen ([`EventSink::append`], batched).
#[async_trait]
pub trait EventStore: EventSink {
    /// Events after number `after`, in order, within `budget`; a backend reads
    /// only as much of what it stored as that takes.
    async fn read(&self, execution_id: &str, after: u64, budget: EventBudget) -> Result<Vec<Arc<Event>>, StoreError>;
    /// The number of the last stored event (0 for none).
    async fn last_seq(&self, execution_id: &str) -> Result<u64, StoreError>;
}

/// Deployed agents and their versions, the deploys made in the background,
/// and the digests of their compiled artifacts.
#[async_trait]
pub trait AgentStore: Queue {
    /// Creates or updates the agent and adds the version; with `job` (a deploy
    /// made in the background, ended `deployed`), stores its end with them.
    /// A job another host took over is not this host's to end: the commit
    /// answers [`StoreError::TakenOver`] and nothing of it is stored.
    fn deploy(&self, agent: Agent, version: AgentVersion, job: Option<DeployJob>) -> Commit {
        self.queue(Write::Deploy {
            agent,
            version: Box::new(version),
            job: job.map(Box::new),
        })
    }
    /// Stores a deploy made in the background as it starts, or as it fails.
    fn save_deploy_job(&self, job: DeployJob) -> Commit {
        self.queue(Write::DeployJob(Box::new(job)))
    }
    /// A deploy made in the background (with what it deployed).
    async fn deploy_job(&self, id: &str) -> Result<Option<DeployJob>, StoreError>;
    /// Deploys still compiling that this host takes, oldest first: with
    /// `mine`, those it made itself (what a restart resumes); always those of
    /// hosts whose lease ran out (on a store several hosts share).
    async fn take_deploy_jobs(&self, mine: bool) -> Result<Vec<DeployJob>, StoreError>;
    async fn agents(&self) -> Result<Vec<Agent>, StoreError>;
    /// Every version of every agent, oldest first.
    async fn versions(&self) -> Result<Vec<AgentVersion>, StoreError>;
    /// Records the SHA-256 of the compiled artifact of a component, for an
    /// engine compatibility class.
    fn record_compiled(&self, engine: &str, component_hash: &str, sha256: &str) -> Commit {
        self.queue(Write::Compiled {
            engine: engine.to_owned(),
            component_hash: component_hash.to_owned(),
            sha256: sha256.to_owned(),
        })
    }
    /// The recorded artifact digests of an engine class, by component hash.
    async fn compiled(&self, engine: &str) -> Result<HashMap<String, String>, StoreError>;
}

/// API keys, each with the SHA-256 digest of its secret.
#[async_trait]
pub trait KeyStore: Queue {
    fn insert(&self, key: ApiKey, secret_sha256: String) -> Commit {
        self.queue(Write::ApiKey { key, secret_sha256 })
    }
    /// A key with its secret's digest.
    async fn find(&self, id: &str) -> Result<Option<(ApiKey, String)>, StoreError>;
    /// Keys of one workspace, or of all, oldest first.
    async fn list(&self, workspace: Option<&str>) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a key (of `workspace`, when given); the key as it is now, or
    /// `None` when there is no such key there. Revoking twice keeps the first time.
    async fn revoke(&self, id: &str, workspace: Option<&str>, at: i64) -> Result<Option<ApiKey>, StoreError> {
        self.queue(Write::RevokeApiKey {
            id: id.to_owned(),
            workspace: workspace.map(str::to_owned),
            at,
        })
        .await?;
        let found = self.find(id).await?;
        Ok(found
            .map(|(key, _)| key)
            .filter(|key| workspace.is_none_or(|w| key.workspace == w)))
    }
    /// Whether any key is active (not revoked).
    async fn any_active(&self) -> Result<bool, StoreError>;
}

/// Each agent's small persistent key-value store (the `kv` tool).
#[async_trait]
pub trait KvStore: Queue {
    async fn get(&self, agent_id: &str, key: &str) -> Result<Option<String>, StoreError>;
    fn set(&self, agent_id: &str, key: &str, value: String, at: i64) -> Commit {
        self.queue(Write::KvSet {
            agent_id: agent_id.to_owned(),
            key: key.to_owned(),
            value,
            updated_at: at,
        })
    }
    fn delete(&self, agent_id: &str, key: &str) -> Commit {
        self.queue(Write::KvDelete {
            agent_id: agent_id.to_owned(),
            key: key.to_owned(),
        })
    }
    /// Keys starting with `prefix`, in order, at most `limit`.
    async fn list(&self, agent_id: &str, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError>;
}

/// Why a blob could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the bytes are no longer stored")]
    Missing,
    #[error("the stored bytes do not match their SHA-256")]
    Damaged,
    #[error("reading the bytes failed: {0}")]
    Unreadable(String),
}

/// Content-addressed bytes (component binaries, artifacts). Blocking: call from
/// `spawn_blocking`.
pub trait BlobStore: Send + Sync {
    /// Stores bytes under their SHA-256 (a no-op when already there).
    fn put(&self, hash: &str, bytes: &[u8]) -> anyhow::Result<()>;
    /// The bytes stored under `hash`, only if they still have that hash.
    fn get(&self, hash: &str) -> Result<Vec<u8>, BlobError>;
    /// Deletes a blob nothing refers to any more.
    fn remove(&self, hash: &str);
}

/// Something held still across the hosts sharing a store (a memory's writes,
/// a schedule's changes), until released; dropped unreleased, it is given up
/// all the same (less cheaply).
#[async_trait]
pub trait Hold: Send {
    async fn release(self: Box<Self>);
}

/// Storage that is failing: why, and since when (Unix ms).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StorageFailure {
    pub error: String,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub since: i64,
}

/// What a backend is, besides its stores.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The backend and its version, for health (`sqlite 3.50.2`).
    fn version(&self) -> String;
    /// Whether storage is failing now (its writes wait until it recovers).
    fn failing(&self) -> Option<StorageFailure>;
    /// Commits what is queued and stops; writes after this fail with `Closed`.
    async fn close(&self);
    /// How long this host's lease on a store several hosts share lasts
    /// without a heartbeat (`None`: a store of one host).
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }
    /// Renews this host's lease (and the lead, when this host holds it or
    /// nobody does).
    async fn heartbeat(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether this host leads: fires schedules, sends webhook deliveries and
    /// expires approval requests (one host at a time on a shared store; a
    /// store of one host always leads).
    fn leads(&self) -> bool {
        true
    }
    /// Gives the lead up (a host shutting down).
    async fn resign(&self) {}
}

/// One data dir's stores, each behind its trait.
#[derive(Clone)]
pub struct Stores {
    pub executions: Arc<dyn ExecutionStore>,
    pub events: Arc<dyn EventStore>,
    pub agents: Arc<dyn AgentStore>,
    pub keys: Arc<dyn KeyStore>,
    pub kv: Arc<dyn KvStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub journal: Arc<dyn JournalStore>,
    pub approvals: Arc<dyn ApprovalStore>,
    pub conversations: Arc<dyn ConversationStore>,
    pub memory: Arc<dyn MemoryStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub hooks: Arc<dyn HookStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub backend: Arc<dyn Backend>,
}

impl Stores {
    /// Every store from one backend that implements them all.
    pub fn of<B>(backend: Arc<B>, blobs: Arc<dyn BlobStore>) -> Stores
    where
        B: ExecutionStore
            + EventStore
            + AgentStore
            + KeyStore
            + KvStore
            + IdempotencyStore
            + JournalStore
            + ApprovalStore
            + ConversationStore
            + MemoryStore
            + ScheduleStore
            + HookStore
            + WebhookStore
            + Backend
            + 'static,
    {
        Stores {
            executions: backend.clone(),
            events: backend.clone(),
            agents: backend.clone(),
            keys: backend.clone(),
            kv: backend.clone(),
            idempotency: backend.clone(),
            journal: backend.clone(),
            approvals: backend.clone(),
            conversations: backend.clone(),
            memory: backend.clone(),
            schedules: backend.clone(),
            hooks: backend.clone(),
            webhooks: backend.clone(),
            blobs,
            backend,
        }
    }

    /// The embedded SQLite store in `data_dir` (created and migrated as needed),
    /// with blobs as files beside it.
    pub fn open(data_dir: &Path) -> anyhow::Result<Stores> {
        sqlite::SqliteStore::open(data_dir)
    }

    /// The store `config` names: the Postgres database at `[store] url`, or
    /// else the embedded SQLite store in `data_dir`.
    pub async fn connect(data_dir: &Path, config: &crate::config::StoreConfig) -> anyhow::Result<Stores> {
        match &config.url {
            Some(url) => postgres::PgStore::open(url, config, data_dir).await,
            None => Self::open(data_dir),
        }
    }

    /// Commits what is queued and stops the backend.
    pub async fn close(&self) {
        self.backend.close().await;
    }

    /// `Unavailable` while storage is failing: new work is refused then (what is
    /// already under way waits for storage to recover).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        match self.backend.failing() {
            Some(failure) => Err(StoreError::Unavailable(failure.error)),
            None => Ok(()),
        }
    }
}
