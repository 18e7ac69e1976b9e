//! The lifecycle: every status change of an execution happens here, and each
//! builds the record's change, emits its event and hands the write to the store
//! together. A new status is added here (and in [`Status::can_become`]).
//!
//! queued (created) → running (started; stored before the run's first effect
//! beyond its sandbox) ⇄ awaiting_approval (a request open) → cancel_requested
//! → completed | failed | cancelled | rejected (ended). A durable run resumed
//! after a restart or a decision goes on `running` ([`Lifecycle::resume`]). An end is stored with the execution's last events and its
//! run's log and steps in one commit, and published only once that commit is
//! done ([`Ending::settle`]), so nobody hears of an end the store does not have.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::events::{EventData, EventHub, EventLog};
use crate::ports::{EffectRefused, Effects, Outbox, Reach, TraceSink};
use crate::record::{
    Approval, ExecError, Execution, ExecutionView, LogLine, Status, Step, Turn, TurnRole, assistant_text, user_text,
};
use crate::registry::Registry;
use crate::store::{ApprovalStore, Commit, EventStore, ExecutionStore, FinalRecord, StoreError, Stores};
use crate::time;

/// How an execution ends.
pub enum End {
    Completed(Arc<serde_json::value::RawValue>),
    Failed(ExecError),
    Cancelled(ExecError),
    /// The agent gave up on a refused (or expired) approval request.
    Rejected(ExecError),
}

impl End {
    fn status(&self) -> Status {
        match self {
            End::Completed(_) => Status::Completed,
            End::Failed(_) => Status::Failed,
            End::Cancelled(_) => Status::Cancelled,
            End::Rejected(_) => Status::Rejected,
        }
    }
}

pub struct Lifecycle {
    executions: Arc<dyn ExecutionStore>,
    events: Arc<dyn EventStore>,
    approvals: Arc<dyn ApprovalStore>,
    hub: Arc<EventHub>,
    /// Store each run's log, steps and events (config `capture.record_details`).
    details: bool,
    /// Webhook deliveries of ends and approval requests.
    outbox: Arc<dyn Outbox>,
    /// Where ended executions' traces go, if anywhere.
    traces: Option<Arc<dyn TraceSink>>,
    registry: Arc<Registry>,
}

/// An end being stored: settle it to wait for the commit and publish the end.
#[must_use = "settle the end, or its last events are never published"]
pub struct Ending {
    commit: Commit,
    log: Arc<EventLog>,
    hub: Arc<EventHub>,
    id: String,
    /// Webhooks to send once the end is stored.
    announce: Option<Arc<dyn Outbox>>,
    /// The trace to export once the end is stored.
    trace: Option<Box<TraceOwed>>,
}

/// An end's trace, owed to where traces go once the end is stored.
type TraceOwed = (Arc<dyn TraceSink>, Execution, Vec<Step>);

impl Lifecycle {
    pub fn new(
        stores: &Stores,
        details: bool,
        outbox: Arc<dyn Outbox>,
        traces: Option<Arc<dyn TraceSink>>,
        registry: Arc<Registry>,
    ) -> Self {
        let sink: Arc<dyn crate::events::EventSink> = stores.events.clone();
        Self {
            executions: Arc::clone(&stores.executions),
            events: Arc::clone(&stores.events),
            approvals: Arc::clone(&stores.approvals),
            hub: Arc::new(EventHub::new(sink)),
            details,
            outbox,
            traces,
            registry,
        }
    }

    /// The live executions' event logs.
    pub fn hub(&self) -> &EventHub {
        &self.hub
    }

    /// Where events are stored.
    pub fn stored_events(&self) -> &Arc<dyn EventStore> {
        &self.events
    }

    /// A new execution, queued: stores its record (waiting for the commit when
    /// `durable`), then opens its event log with `status: queued`.
    pub async fn create(&self, execution: &Execution, durable: bool) -> Result<Arc<EventLog>, StoreError> {
        debug_assert_eq!(execution.status, Status::Queued);
        // Open before the commit: once committed, a host may claim it (this
        // one too, which then runs it on this log).
        let log = self.hub.open(&execution.id, 0, self.details);
        log.emit(EventData::Status(Status::Queued));
        let commit = self.executions.save(execution.clone());
        if durable {
            if let Err(e) = commit.await {
                self.hub.close(&execution.id);
                return Err(e);
            }
        } else {
            commit.detach();
        }
        Ok(log)
    }

    /// The event log of an execution accepted before a restart, continuing its
    /// stored events.
    pub async fn reopen(&self, execution: &Execution) -> Arc<EventLog> {
        let stored = match self.events.last_seq(&execution.id).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(execution = %execution.id, error = %e, "could not read its stored events; numbering them afresh");
                0
            }
        };
        let log = self.hub.open(&execution.id, stored, self.details);
        if stored == 0 {
            log.emit(EventData::Status(execution.status));
        }
        log
    }

    /// Whether a stream follows an execution's live log here.
    pub fn is_streamed(&self, id: &str) -> bool {
        self.hub.get(id).is_some_and(|log| log.is_followed())
    }

    /// Another host took the execution over: its log here closes, unstored.
    pub fn detach(&self, id: &str) {
        if let Some(log) = self.hub.get(id) {
            log.abandon();
            self.hub.close(id);
        }
    }

    /// The live log of an execution, or its log reopened.
    pub async fn log_of(&self, execution: &Execution) -> Arc<EventLog> {
        match self.hub.get(&execution.id) {
            Some(log) => log,
            None => self.reopen(execution).await,
        }
    }

    /// queued → running. The event says so at once; the record is stored by
    /// the returned [`Start`]: before the run's first effect beyond its sandbox,
    /// or once it proves long, whichever comes first (most runs end before
    /// either, and their end is all that is stored).
    pub fn start(&self, execution: &mut Execution, log: &Arc<EventLog>) -> Arc<Start> {
        check(execution, Status::Running);
        let now = time::now_ms();
        execution.status = Status::Running;
        execution.started_at = Some(now);
        log.emit(EventData::Status(Status::Running));
        Arc::new(Start {
            id: execution.id.clone(),
            started_at: now,
            executions: Arc::clone(&self.executions),
            log: Arc::clone(log),
            commit: Mutex::new(None),
        })
    }

    /// A durable run picked up again (after a restart, or a decision it was
    /// unloaded for): `running`, its start stored before. From
    /// `awaiting_approval` the change is stored; a run that was `running` when
    /// the host stopped just goes on.
    pub async fn resume(&self, execution: &mut Execution, log: &Arc<EventLog>) -> Result<Arc<Start>, StoreError> {
        // The decision that resumes it announces `running` (with itself) when
        // the replay reaches it.
        let from = execution.status;
        if from != Status::Running {
            check(execution, Status::Running);
            self.executions.set_status(&execution.id, from, Status::Running).await?;
        }
        execution.status = Status::Running;
        let started_at = execution.started_at.unwrap_or_else(time::now_ms);
        execution.started_at = Some(started_at);
        let start = Arc::new(Start {
            id: execution.id.clone(),
            started_at,
            executions: Arc::clone(&self.executions),
            log: Arc::clone(log),
            commit: Mutex::new(Some(futures_util::future::ready(Ok(())).boxed().shared())),
        });
        log.flush();
        Ok(start)
    }

    /// running → awaiting_approval: a request is open (stored with it), and
    /// announced on `log` if given.
    pub async fn await_approval(
        &self,
        id: &str,
        log: Option<&EventLog>,
        approval: &Approval,
    ) -> Result<(), StoreError> {
        // A request announced is announced to webhooks too, in the same commit.
        let deliveries = match log {
            Some(_) => {
                let data = || serde_json::to_string(approval).unwrap_or_else(|_| "null".into());
                self.outbox.deliveries(&approval.workspace, "approval.requested", &data)
            }
            None => Vec::new(),
        };
        let announce = !deliveries.is_empty();
        let stored = self.approvals.create(approval.clone(), deliveries);
        let status = self
            .executions
            .set_status(id, Status::Running, Status::AwaitingApproval);
        stored.await?;
        status.await?;
        if announce {
            self.outbox.stored();
        }
        if let Some(log) = log {
            log.emit(EventData::Status(Status::AwaitingApproval));
            log.emit(EventData::Approval(approval));
        }
        Ok(())
    }

    /// awaiting_approval → running: the request is decided (announced).
    pub fn approval_decided(&self, id: &str, log: &EventLog, approval: &Approval) {
        self.executions
            .set_status(id, Status::AwaitingApproval, Status::Running)
            .detach();
        log.emit(EventData::Approval(approval));
        log.emit(EventData::Status(Status::Running));
    }

    /// A run unloaded while it waits: its live log is closed and forgotten
    /// (its events are stored; a resume continues them; a stream of it ends).
    pub fn unload(&self, id: &str) {
        if let Some(log) = self.hub.get(id) {
            log.unload();
        }
        self.hub.close(id);
    }

    /// running or awaiting_approval (whichever of `from` it is) → cancel_requested.
    pub async fn request_cancel(&self, id: &str, from: &[Status]) -> Result<(), StoreError> {
        if let Some(log) = self.hub.get(id) {
            log.emit(EventData::Status(Status::CancelRequested));
        }
        let commits: Vec<Commit> = from
            .iter()
            .map(|from| self.executions.set_status(id, *from, Status::CancelRequested))
            .collect();
        for commit in commits {
            commit.await?;
        }
        Ok(())
    }

    /// → completed, failed or cancelled: the record's end, stored with its last
    /// events and (from a run) its log lines and steps.
    pub fn end(
        &self,
        execution: &mut Execution,
        log: &Arc<EventLog>,
        end: End,
        run: Option<(Vec<LogLine>, Vec<Step>)>,
    ) -> Ending {
        let to = end.status();
        check(execution, to);
        execution.status = to;
        execution.completed_at = Some(time::now_ms());
        match end {
            End::Completed(output) => execution.output = Some(output),
            End::Failed(error) | End::Cancelled(error) | End::Rejected(error) => execution.error = Some(error),
        }
        let events = log.end(&EventData::end_of(execution));
        let (logs, steps) = match run {
            Some(run) if self.details => run,
            _ => (Vec::new(), Vec::new()),
        };
        let event = match to {
            Status::Completed => "execution.completed",
            Status::Cancelled => "execution.cancelled",
            Status::Rejected => "execution.rejected",
            _ => "execution.failed",
        };
        let workspace = self.registry.workspace_of(&execution.agent_id).unwrap_or_default();
        let agent = self.registry.get(&workspace, &execution.agent_id);
        let name = agent
            .as_ref()
            .map_or(execution.agent_id.as_str(), |e| e.agent.name.as_str());
        crate::metrics::execution_ended(name, execution);
        let view = || serde_json::to_string(&ExecutionView::from(&*execution)).unwrap_or_else(|_| "null".into());
        let deliveries = self.outbox.deliveries(&workspace, event, &view);
        let announce = (!deliveries.is_empty()).then(|| Arc::clone(&self.outbox));
        let trace = self
            .traces
            .as_ref()
            .map(|sink| Box::new((Arc::clone(sink), execution.clone(), steps.clone())));
        let commit = self.executions.finish(FinalRecord {
            deliveries,
            turns: turns_of(execution),
            execution: execution.clone(),
            logs,
            steps,
            events: if self.details { events } else { Vec::new() },
        });
        Ending {
            commit,
            log: Arc::clone(log),
            hub: Arc::clone(&self.hub),
            id: execution.id.clone(),
            announce,
            trace,
        }
    }
}

/// A run's start, stored once: its `running` status; and its events, as they
/// happen, once the run proves long.
pub struct Start {
    id: String,
    started_at: i64,
    executions: Arc<dyn ExecutionStore>,
    log: Arc<EventLog>,
    /// The start's write, once made.
    commit: Mutex<Option<StartCommit>>,
}

/// The commit of a start, awaited by whoever needs it.
type StartCommit = Shared<BoxFuture<'static, Result<(), StoreError>>>;

impl Start {
    /// Hands the start to the store (once); the answer is its commit.
    fn make(&self) -> StartCommit {
        self.commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| self.executions.set_running(&self.id, self.started_at).boxed().shared())
            .clone()
    }

    /// Stores the start (once) and waits until it is committed. The events stay
    /// held back: a run that ends soon stores them with its end.
    pub async fn store(&self) -> Result<(), StoreError> {
        self.make().await
    }

    /// The run is still going after a moment: its events so far are stored,
    /// then each as it happens, and its start too.
    pub async fn proves_long(&self) -> Result<(), StoreError> {
        // The start is queued before the events that say it started.
        let stored = self.make();
        self.log.flush();
        stored.await
    }
}

#[async_trait]
impl Effects for Start {
    async fn before_effect(&self, reach: Reach) -> Result<(), EffectRefused> {
        let result = match reach {
            Reach::Nothing => Ok(()),
            // The store commits the effect's write after this one, or neither.
            Reach::Store => self.make().peek().cloned().unwrap_or(Ok(())),
            Reach::Outside => self.store().await,
        };
        result.map_err(|e| EffectRefused(e.to_string()))
    }

    fn keep(&self) {
        // Detached: the store commits the start, then the events so far,
        // before whatever comes next.
        drop(self.make());
        self.log.store_held();
    }
}

impl Ending {
    /// Waits for the end to be committed, then publishes it and forgets the live
    /// log (readers find the end in the store from now on).
    pub async fn settle(self) -> Result<(), StoreError> {
        let result = self.commit.await;
        if let (Some(outbox), Ok(())) = (&self.announce, &result) {
            outbox.stored();
        }
        if let (Some(trace), Ok(())) = (self.trace, &result) {
            let (sink, execution, steps) = *trace;
            sink.ended(execution, steps);
        }
        if let Err(StoreError::TakenOver(_)) = &result {
            // Its end is the other host's: whoever streams it reads on from the store.
            self.log.abandon();
        } else {
            self.log.publish_end();
        }
        self.hub.close(&self.id);
        result
    }
}

/// What a completed turn of a conversation adds to it: the user's message (its
/// input) and the agent's answer (its output, with its tool calls). A turn
/// that did not complete adds nothing.
fn turns_of(execution: &Execution) -> Vec<Turn> {
    let (Some(_), Some(output), Status::Completed) = (&execution.conversation_id, &execution.output, execution.status)
    else {
        return Vec::new();
    };
    let at = execution.completed_at.unwrap_or(execution.created_at);
    let user = Turn::new(
        TurnRole::User,
        user_text(&execution.input),
        &execution.id,
        execution.created_at,
    );
    let mut answer = Turn::new(TurnRole::Assistant, assistant_text(output), &execution.id, at);
    answer.tool_calls = execution.tool_calls.clone();
    vec![user, answer]
}

/// Every status change is one [`Status::can_become`] allows; one that is not is
/// a bug, logged, and made anyway (an end must be recorded whatever happened).
fn check(execution: &Execution, to: Status) {
    if !execution.status.can_become(to) {
        tracing::error!(
            execution = %execution.id,
            from = execution.status.as_str(),
            to = to.as_str(),
            "a status change the lifecycle does not allow"
        );
    }
}
