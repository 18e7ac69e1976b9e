//! Executions, the use cases: the one way in that creates every execution
//! ([`Executions::submit`], for the API, `agent_call`, retries and whatever
//! triggers come next), the one lifecycle that makes every status change
//! ([`lifecycle`]), runs under the scheduler's slots ([`run`]), cancel, retries,
//! idempotency keys, and recovery after a restart.
//!
//! An accepted execution always reaches a terminal state: its `queued` record is
//! written before it can run; a run's slot is given back when the run ends, when
//! its task dies, or at the latest its timeout plus a grace period after it
//! started; a restart runs what was queued and ends what was running with
//! `host_restart`. Listeners learn of an end only after it is committed.

mod approvals;
mod cancel;
mod conversations;
mod idempotency;
mod lifecycle;
mod ports;
mod recovery;
mod retry;
mod run;
mod shared;
mod shutdown;
mod submit;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

pub use self::approvals::{Ask, DecideError, Decider};
pub use self::cancel::Cancel;
pub use self::conversations::{ConversationError, ConversationRef, IfBusy, TurnRequest};
use self::idempotency::IdempotencyKeys;
use self::lifecycle::Lifecycle;
pub use self::retry::{RetryError, WaitError};
pub use self::submit::{Accepted, DEFAULT_PRIORITY, NewExecution, SubmitError, Target};
use crate::config::{CaptureLimits, Config, DurabilityConfig};
use crate::events::{EventHub, EventLog};
use crate::llm::Llm;
use crate::memory::Memory;
use crate::ports::{ArtifactStore, Outbox, ToolHost};
use crate::record::Execution;
use crate::registry::{Registry, Version};
use crate::runtime::Runtime;
use crate::scheduler::{self, Scheduler};
use crate::store::{ApprovalStore, Backend, ConversationStore, EventStore, ExecutionStore, JournalStore, Stores};
use crate::time;

/// Receives the final record of an execution (`None` until it ends).
pub type Watch = scheduler::Watch<Arc<Execution>>;

/// An execution waiting or running, and what it runs.
struct Job {
    execution: Execution,
    version: Arc<Version>,
    events: Arc<EventLog>,
    /// A durable run picked up again: it replays its journal.
    resume: bool,
}

impl scheduler::Job for Job {
    fn id(&self) -> &str {
        &self.execution.id
    }

    fn agent_id(&self) -> &str {
        &self.execution.agent_id
    }

    fn priority(&self) -> u8 {
        self.execution.priority
    }

    fn max_concurrency(&self) -> usize {
        self.version.meta.limits.max_concurrency as usize
    }
}

/// The settings executions run with (from the host's config).
struct Settings {
    capture: CaptureLimits,
    default_token_budget: u64,
    max_token_budget: u64,
    max_tool_calls: usize,
    max_input_bytes: usize,
    slot_grace: Duration,
    retention_secs: u64,
    retention_sweep: Duration,
    conversation_ttl_secs: u64,
    durability: DurabilityConfig,
}

/// What executions need from the rest of the host.
pub struct Parts {
    pub registry: Arc<Registry>,
    pub runtime: Arc<Runtime>,
    pub llm: Arc<Llm>,
    pub tools: Arc<dyn ToolHost>,
    pub memory: Arc<Memory>,
    /// Where ends and approval requests go out as webhooks.
    pub outbox: Arc<dyn Outbox>,
    /// Where ended executions' traces go (OTLP export), if anywhere.
    pub traces: Option<Arc<dyn crate::ports::TraceSink>>,
}

pub struct Executions {
    settings: Settings,
    scheduler: Scheduler<Job, Arc<Execution>>,
    lifecycle: Lifecycle,
    idempotency: IdempotencyKeys,
    store: Arc<dyn ExecutionStore>,
    journal: Arc<dyn JournalStore>,
    approvals: Arc<dyn ApprovalStore>,
    /// Runs waiting for decisions in memory.
    waiters: approvals::Waiters,
    /// Whether storage is failing (new executions are refused meanwhile).
    backend: Arc<dyn Backend>,
    artifacts: Arc<dyn ArtifactStore>,
    registry: Arc<Registry>,
    runtime: Arc<Runtime>,
    llm: Arc<Llm>,
    tools: Arc<dyn ToolHost>,
    memory: Arc<Memory>,
    conversations: Arc<dyn ConversationStore>,
    /// The turns under way, by conversation.
    turns: conversations::Turns,
    /// New executions are refused (the host is shutting down).
    draining: AtomicBool,
    /// `true` once the host closes: streams end, waiting callers are answered.
    closing: watch::Sender<bool>,
    /// Itself, for the child executions of its runs' `agent_call`s.
    this: Weak<Executions>,
    /// Wakes the claims from the shared queue (a store several hosts share)
    /// when something waits or room was made here.
    wake: Arc<tokio::sync::Notify>,
    /// What the shared queue keeps on this host.
    shared: shared::SharedState,
}

impl Executions {
    pub fn new(config: &Config, stores: &Stores, parts: Parts) -> Arc<Self> {
        Arc::new_cyclic(|this| Executions {
            settings: Settings {
                capture: config.capture,
                default_token_budget: config.llm.default_token_budget,
                max_token_budget: config.llm.max_token_budget,
                max_tool_calls: config.tools.max_tool_calls as usize,
                max_input_bytes: config.http.max_input_bytes,
                slot_grace: Duration::from_millis(config.slot_grace_ms),
                retention_secs: config.retention_secs,
                retention_sweep: Duration::from_millis(config.retention_sweep_ms.max(1)),
                conversation_ttl_secs: config.memory.conversation_ttl_secs,
                durability: config.durability,
            },
            scheduler: Scheduler::new(config.max_concurrent_executions as usize, config.max_queued_executions),
            lifecycle: Lifecycle::new(
                stores,
                config.capture.record_details,
                Arc::clone(&parts.outbox),
                parts.traces.clone(),
                Arc::clone(&parts.registry),
            ),
            idempotency: IdempotencyKeys::new(config.idempotency_ttl_secs, Arc::clone(&stores.idempotency)),
            store: Arc::clone(&stores.executions),
            journal: Arc::clone(&stores.journal),
            approvals: Arc::clone(&stores.approvals),
            waiters: approvals::Waiters::default(),
            backend: Arc::clone(&stores.backend),
            artifacts: Arc::new(ports::StoredArtifacts::new(stores)),
            registry: parts.registry,
            runtime: parts.runtime,
            llm: parts.llm,
            tools: parts.tools,
            memory: parts.memory,
            conversations: Arc::clone(&stores.conversations),
            turns: conversations::Turns::default(),
            draining: AtomicBool::new(false),
            closing: watch::channel(false).0,
            this: this.clone(),
            wake: Arc::new(tokio::sync::Notify::new()),
            shared: shared::SharedState::default(),
        })
    }

    /// After a restart: loads idempotency keys, recovers what was running or
    /// queued, and starts the housekeeping (expiring keys, the retention sweep).
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        self.idempotency.load(time::now_ms()).await?;
        self.recover().await?;
        self.resume_answered().await?;
        self.start_claiming();
        tokio::spawn(expire_idempotency_keys(Arc::downgrade(self)));
        let every = Duration::from_millis(self.settings.durability.expiry_sweep_ms.max(1));
        tokio::spawn(approvals::expire_requests(Arc::downgrade(self), every));
        if self.settings.retention_secs > 0 || self.settings.conversation_ttl_secs > 0 {
            tokio::spawn(sweep_old_executions(Arc::downgrade(self)));
        }
        Ok(())
    }

    /// The end of a live execution, if it is live.
    pub fn watch(&self, id: &str) -> Option<Watch> {
        self.scheduler.watch(id)
    }

    /// The agent of a live execution, if it is live.
    pub fn live_agent(&self, id: &str) -> Option<String> {
        self.scheduler.live_agent(id)
    }

    /// The workspace of an execution, live or stored (`None`: no such one).
    pub async fn workspace_of(&self, id: &str) -> Result<Option<String>, crate::store::StoreError> {
        match self.live_agent(id) {
            Some(agent_id) => Ok(self.registry.workspace_of(&agent_id)),
            None => self.store.workspace_of(id).await,
        }
    }

    /// Executions running and waiting, host-wide.
    pub fn load(&self) -> (usize, usize) {
        self.scheduler.load()
    }

    /// Queued and running executions of one agent.
    pub fn agent_load(&self, agent_id: &str) -> (usize, usize) {
        self.scheduler.agent_load(agent_id)
    }

    /// Live executions' event logs.
    pub fn events(&self) -> &EventHub {
        self.lifecycle.hub()
    }

    /// Stored events.
    pub fn stored_events(&self) -> &Arc<dyn EventStore> {
        self.lifecycle.stored_events()
    }

    /// Whether a repeated request's idempotency key still names `execution_id`.
    /// The request hash and execution an idempotency key names.
    pub async fn idempotency_holder(&self, key: &str) -> Option<(String, String)> {
        self.idempotency.holder(key).await
    }
}

/// Forgets expired idempotency keys every few minutes, for as long as the
/// executions live.
async fn expire_idempotency_keys(executions: Weak<Executions>) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        let Some(executions) = executions.upgrade() else { return };
        executions.idempotency.expire(time::now_ms());
    }
}

/// Deletes finished executions past the retention time, and conversations
/// inactive past theirs, for as long as the executions live.
async fn sweep_old_executions(executions: Weak<Executions>) {
    let every = match executions.upgrade() {
        Some(e) => e.settings.retention_sweep,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(executions) = executions.upgrade() else { return };
        // On a store several hosts share, the leading host sweeps.
        if !executions.backend.leads() {
            continue;
        }
        let ms = |secs: u64| (secs.min(i64::MAX as u64 / 1000) * 1000) as i64;
        let settings = &executions.settings;
        if settings.retention_secs > 0
            && let Err(e) = executions
                .store
                .sweep(time::now_ms() - ms(settings.retention_secs))
                .await
        {
            tracing::warn!(error = %e, "retention sweep failed");
        }
        if settings.conversation_ttl_secs > 0
            && let Err(e) = executions
                .conversations
                .sweep(time::now_ms() - ms(settings.conversation_ttl_secs))
                .await
        {
            tracing::warn!(error = %e, "conversation sweep failed");
        }
    }
}
