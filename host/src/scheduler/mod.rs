//! Scheduling executions: accept (bounded queue), order (priority, then arrival),
//! run within the host's cap and each agent's concurrency slots, cancel, retry
//! (on request and by the agent's policy), and recover after a restart.
//!
//! An accepted execution always reaches a terminal state: its `queued` record is
//! written before it can run; a run's slot is given back when the run ends, when
//! its task dies, or at the latest its timeout plus a grace period after it
//! started; a restart runs what was queued and ends what was running with
//! `host_restart`. Listeners learn of the end only after the final record is
//! committed.

mod queue;
mod recovery;
mod retry;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use self::queue::{Job, Live, LiveState, Queue};
pub use self::recovery::recover;
use self::retry::retry_by_policy;
pub use self::retry::{RetryError, retry};
use crate::app::App;
use crate::config::Config;
use crate::events::{Event, EventLog};
use crate::execution::{ExecError, Execution, Status};
use crate::registry::{Entry, Version};
use crate::runtime::{ArtifactSink, Grants};
use crate::store::writer::Write;
use crate::store::{StoreError, read};
use crate::tools::ToolCtx;
use crate::{ids, time};

pub const DEFAULT_PRIORITY: u8 = 50;

/// A run still going after this long is stored `running`.
const RUNNING_WRITE_DELAY: Duration = Duration::from_millis(10);

pub struct Scheduler {
    queue: Mutex<Queue>,
    max_running: usize,
    max_queued: usize,
    slot_grace: Duration,
}

/// What a caller asks to run.
pub struct Request {
    pub input: Box<RawValue>,
    pub metadata: Box<RawValue>,
    pub priority: u8,
    pub trigger: &'static str,
    /// Use this id (already promised to an idempotency key) instead of a new one.
    pub id: Option<String>,
    /// The execution this one retries.
    pub retry_of: Option<(String, u32)>,
    /// Wait this long before queueing (a retry's backoff).
    pub delay: Option<Duration>,
    /// The execution whose `agent_call` asks for this one, and this one's depth.
    pub parent: Option<(String, u32)>,
}

impl Request {
    pub fn new(input: Box<RawValue>, metadata: Box<RawValue>, priority: u8, trigger: &'static str) -> Self {
        Self {
            input,
            metadata,
            priority,
            trigger,
            id: None,
            retry_of: None,
            delay: None,
            parent: None,
        }
    }
}

/// Receives the final record of an execution (`None` until it ends).
pub type Watch = watch::Receiver<Option<Arc<Execution>>>;

/// An accepted execution: its record as accepted and where its end is announced.
pub struct Accepted {
    pub execution: Execution,
    pub done: Watch,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full ({0} executions waiting); try again shortly")]
    QueueFull(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancel request did.
pub enum Cancel {
    /// It was queued: now it is cancelled.
    Cancelled(Arc<Execution>),
    /// It was running: the guest is being stopped (`cancel_requested`).
    Requested,
    /// It is not live here (finished, or unknown).
    NotLive,
}

/// Room for one more waiting execution, held until it is queued or dropped.
pub struct Reservation<'a> {
    scheduler: &'a Scheduler,
    used: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            let mut q = self.scheduler.lock();
            q.waiting = q.waiting.saturating_sub(1);
        }
    }
}

impl Scheduler {
    pub fn new(config: &Config) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            max_running: config.max_concurrent_executions as usize,
            max_queued: config.max_queued_executions,
            slot_grace: Duration::from_millis(config.slot_grace_ms),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves a place in the queue, or refuses when it is full.
    pub fn reserve(&self) -> Result<Reservation<'_>, SubmitError> {
        let mut q = self.lock();
        if q.waiting >= self.max_queued {
            return Err(SubmitError::QueueFull(q.waiting));
        }
        q.waiting += 1;
        Ok(Reservation {
            scheduler: self,
            used: false,
        })
    }

    /// Reserves a place for an execution that was already accepted (recovery):
    /// the queue's bound does not apply to it.
    fn reserve_accepted(&self) -> Reservation<'_> {
        self.lock().waiting += 1;
        Reservation {
            scheduler: self,
            used: false,
        }
    }

    /// The agent of a live execution, if it is live.
    pub fn live_agent(&self, id: &str) -> Option<String> {
        self.lock().live.get(id).map(|l| l.agent_id.clone())
    }

    /// The end of a live execution, if it is live.
    pub fn watch(&self, id: &str) -> Option<Watch> {
        self.lock().live.get(id).map(|l| l.done.subscribe())
    }

    /// Executions running and waiting, host-wide.
    pub fn load(&self) -> (usize, usize) {
        let q = self.lock();
        (q.running, q.waiting)
    }

    /// Queued and running executions of one agent.
    pub fn agent_load(&self, agent_id: &str) -> (usize, usize) {
        self.lock().agent_load(agent_id)
    }
}

/// Accepts an execution of `version`. With `durable`, returns once the `queued`
/// record is committed (async callers read it right away); otherwise the record is
/// committed with the next batch, still before the run's own writes.
pub async fn submit(
    app: &Arc<App>,
    entry: &Entry,
    version: Arc<Version>,
    request: Request,
    durable: bool,
) -> Result<Accepted, SubmitError> {
    let reservation = app.scheduler.reserve()?;
    let now = time::now_ms();
    let (retry_of, attempt) = match request.retry_of {
        Some((id, attempt)) => (Some(id), attempt),
        None => (None, 1),
    };
    let (parent_id, depth) = match request.parent {
        Some((id, depth)) => (Some(id), depth),
        None => (None, 0),
    };
    let execution = Execution {
        id: request.id.unwrap_or_else(ids::execution),
        agent_id: entry.agent.id.clone(),
        agent_name: entry.agent.name.clone(),
        agent_version_id: version.meta.id.clone(),
        agent_version: version.meta.version,
        status: Status::Queued,
        trigger: request.trigger.to_owned(),
        priority: request.priority,
        input: request.input,
        output: None,
        error: None,
        metadata: request.metadata,
        fuel_used: None,
        peak_memory_bytes: None,
        n_steps: 0,
        n_logs: 0,
        logs_truncated: false,
        attempt,
        retry_of,
        retried_by: None,
        parent_id,
        depth,
        token_usage: Default::default(),
        cost_usd: 0.0,
        model_used: None,
        llm_provider: None,
        n_tool_calls: 0,
        tool_calls: Vec::new(),
        n_artifacts: 0,
        n_screenshots: 0,
        first_token_ms: None,
        tool_ms: 0,
        created_at: now,
        run_after: request.delay.map(|d| now + d.as_millis() as i64),
        queued_at: Some(now),
        started_at: None,
        completed_at: None,
    };
    let write = Write::Execution(Box::new(execution.clone()));
    if durable {
        app.store.writer.commit(write).await?;
    } else {
        app.store.writer.send(write);
    }
    let events = app.events.open(&execution.id);
    events.emit("status", &StatusEvent { status: Status::Queued });
    let job = Job {
        execution: execution.clone(),
        version,
        events,
    };
    let done = admit(app, reservation, job, request.delay);
    Ok(Accepted { execution, done })
}

/// The data of a `status` event.
#[derive(Serialize)]
struct StatusEvent {
    status: Status,
}

/// The data of a `done` event: the final record's summary.
#[derive(Serialize)]
struct DoneEvent<'a> {
    status: Status,
    output: &'a Option<Box<RawValue>>,
    token_usage: &'a crate::llm::Usage,
    cost_usd: f64,
    model_used: &'a Option<String>,
    n_steps: u32,
    n_tool_calls: u32,
    timing: crate::execution::Timing,
}

/// The data of an `error` event.
#[derive(Serialize)]
struct ErrorEvent<'a> {
    status: Status,
    error: &'a Option<ExecError>,
}

/// Ends an execution's event log: its final status, then `done` with the record's
/// summary or `error`; returns the write that stores the log.
fn end_events(events: &EventLog, e: &Execution) -> Write {
    emit_end(events, e);
    stored_events(events, &e.id)
}

/// The last events of an execution: its final status, then `done` or `error`.
fn emit_end(events: &EventLog, e: &Execution) {
    events.emit("status", &StatusEvent { status: e.status });
    if e.status == Status::Completed {
        events.emit(
            "done",
            &DoneEvent {
                status: e.status,
                output: &e.output,
                token_usage: &e.token_usage,
                cost_usd: e.cost_usd,
                model_used: &e.model_used,
                n_steps: e.n_steps,
                n_tool_calls: e.n_tool_calls,
                timing: e.timing(),
            },
        );
    } else {
        events.emit(
            "error",
            &ErrorEvent {
                status: e.status,
                error: &e.error,
            },
        );
    }
}

/// The write that stores an execution's event log.
fn stored_events(events: &EventLog, execution_id: &str) -> Write {
    let all = events.all();
    let list: Vec<&Event> = all.iter().map(|e| &**e).collect();
    Write::Events {
        execution_id: execution_id.to_owned(),
        events: serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned()),
    }
}

/// Puts an accepted (and recorded) job in the queue, or in a backoff wait first.
fn admit(app: &Arc<App>, mut reservation: Reservation<'_>, job: Job, delay: Option<Duration>) -> Watch {
    let watch = enqueue(app, &mut reservation, job, delay);
    dispatch(app);
    watch
}

/// Starts whatever the queue allows now.
fn dispatch(app: &Arc<App>) {
    let started = app.scheduler.lock().dispatch(app.scheduler.max_running);
    start_all(app, started);
}

/// Admits without starting anything (recovery admits everything, then starts the
/// best).
fn enqueue(app: &Arc<App>, reservation: &mut Reservation<'_>, job: Job, delay: Option<Duration>) -> Watch {
    reservation.used = true;
    let id = job.execution.id.clone();
    let agent_id = job.execution.agent_id.clone();
    let (done, watch) = watch::channel(None);
    let mut q = app.scheduler.lock();
    let state = match delay {
        Some(delay) => {
            let app = Arc::clone(app);
            let id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                end_delay(&app, &id);
            });
            LiveState::Delayed(Box::new(job))
        }
        None => {
            let key = q.key(job.execution.priority);
            q.push(key, job);
            LiveState::Queued(key)
        }
    };
    q.live.insert(id, Live { agent_id, state, done });
    watch
}

/// A backoff ended: the job joins its queue (unless it was cancelled meanwhile).
fn end_delay(app: &Arc<App>, id: &str) {
    let mut q = app.scheduler.lock();
    let Some(live) = q.live.get_mut(id) else {
        return;
    };
    let state = std::mem::replace(&mut live.state, LiveState::CancelRequested);
    let LiveState::Delayed(job) = state else {
        live.state = state;
        return;
    };
    let key = q.key(job.execution.priority);
    if let Some(live) = q.live.get_mut(id) {
        live.state = LiveState::Queued(key);
    }
    q.push(key, *job);
    let started = q.dispatch(app.scheduler.max_running);
    drop(q);
    start_all(app, started);
}

fn start_all(app: &Arc<App>, started: Vec<(Job, oneshot::Receiver<()>)>) {
    for (job, cancel) in started {
        tokio::spawn(supervise(Arc::clone(app), job, cancel));
    }
}

/// Runs a job on its own task; whatever happens to that task, records an end,
/// gives the slot back, and announces the final record.
///
/// The run task starts here; the returned future, a task of its own, waits for
/// it. It holds only what it needs (thousands of them wait at once, so every
/// byte of its state counts; a `Job` or a rare path's future kept in it did).
fn supervise(app: Arc<App>, job: Job, cancel: oneshot::Receiver<()>) -> impl Future<Output = ()> + Send {
    let id = job.execution.id.clone();
    let agent_id = job.execution.agent_id.clone();
    let version = Arc::clone(&job.version);
    let bound = version.meta.limits.timeout() + app.scheduler.slot_grace;
    let task = tokio::spawn(run(Arc::clone(&app), job, cancel));
    wait_for_run(app, id, agent_id, version, bound, task)
}

async fn wait_for_run(
    app: Arc<App>,
    id: String,
    agent_id: String,
    version: Arc<Version>,
    bound: Duration,
    task: JoinHandle<(Execution, impl Future<Output = Result<(), StoreError>> + Send + 'static)>,
) {
    let abort = task.abort_handle();
    let mut committed = None;
    let finished = match tokio::time::timeout(bound, task).await {
        Ok(Ok((execution, commit))) => {
            committed = Some(commit);
            Some(execution)
        }
        Ok(Err(e)) => {
            tracing::error!(execution = %id, error = %e, "execution task died");
            Box::pin(fail_vanished(
                &app,
                &id,
                ExecError::host("internal", "the host failed while running this execution"),
            ))
            .await
        }
        Err(_) => {
            abort.abort();
            tracing::error!(execution = %id, "execution held its slot past its timeout; reclaimed");
            Box::pin(fail_vanished(
                &app,
                &id,
                ExecError::host(
                    "timeout",
                    "the execution did not end within its timeout and was stopped",
                ),
            ))
            .await
        }
    };
    let started = {
        let mut q = app.scheduler.lock();
        q.release(&agent_id);
        q.dispatch(app.scheduler.max_running)
    };
    start_all(&app, started);
    // The slot is free while the final record commits; listeners wait for it.
    if let Some(commit) = committed
        && let Err(e) = commit.await
    {
        tracing::error!(execution = %id, error = %e, "could not record the finished execution");
    }
    let finished = match finished {
        Some(mut execution) => {
            // Boxed: a rare path, kept out of the state of every waiting task.
            let retry = match retry_by_policy(&app, &execution, &version) {
                Some(retry) => Box::pin(retry).await,
                None => None,
            };
            if let Some(retry_id) = retry {
                execution.retried_by = Some(retry_id);
            }
            Some(Arc::new(execution))
        }
        None => None,
    };
    announce(&app, &id, finished);
}

/// Removes the live entry and tells every listener how it ended.
fn announce(app: &Arc<App>, id: &str, finished: Option<Arc<Execution>>) {
    app.events.close(id);
    let live = app.scheduler.lock().live.remove(id);
    if let Some(live) = live {
        live.done.send_replace(finished);
    }
}

/// Records a failure for an execution whose run task is gone.
async fn fail_vanished(app: &Arc<App>, id: &str, error: ExecError) -> Option<Execution> {
    let lookup = id.to_owned();
    let current = app.store.read(move |conn| read::execution(conn, &lookup)).await;
    let mut execution = match current {
        Ok(Some(e)) => e,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(execution = %id, error = %e, "could not read the execution to fail it");
            return None;
        }
    };
    execution.status = Status::Failed;
    execution.error = Some(error);
    execution.completed_at = Some(time::now_ms());
    let events = app.events.get(id).unwrap_or_else(|| app.events.open(id));
    app.store.writer.send(end_events(&events, &execution));
    if let Err(e) = app
        .store
        .writer
        .commit(Write::Execution(Box::new(execution.clone())))
        .await
    {
        tracing::error!(execution = %id, error = %e, "could not record the failure");
    }
    Some(execution)
}

/// Runs the guest and queues the final record; returns it with the future of its
/// commit.
async fn run(
    app: Arc<App>,
    job: Job,
    cancel: oneshot::Receiver<()>,
) -> (Execution, impl Future<Output = Result<(), StoreError>> + Send + 'static) {
    let Job {
        mut execution,
        version,
        events,
    } = job;
    execution.status = Status::Running;
    execution.started_at = Some(time::now_ms());
    events.emit(
        "status",
        &StatusEvent {
            status: Status::Running,
        },
    );

    // A dropped sender is not a cancel: only a sent message is.
    let cancelled = async {
        if cancel.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let manifest = &version.meta.manifest;
    let grants = Grants {
        llm: Arc::clone(&app.llm),
        tool_host: Arc::clone(&app.tools),
        models: manifest.models.clone(),
        token_budget: manifest
            .token_budget
            .unwrap_or(app.config.llm.default_token_budget)
            .min(app.config.llm.max_token_budget),
        tools: manifest.tools.clone(),
        events: Arc::clone(&events),
        artifacts: ArtifactSink {
            blobs: app.store.blobs.clone(),
            writer: app.store.writer.clone(),
            caps: app.config.capture,
        },
        ctx: ToolCtx {
            agent_id: execution.agent_id.clone(),
            execution_id: execution.id.clone(),
            depth: execution.depth,
            allowed_hosts: manifest.allowed_hosts.clone(),
        },
    };
    // Most runs end within milliseconds; storing `running` for them would only be
    // overwritten at once. A run still going after a moment is stored `running`
    // (the event stream says `running` at once either way).
    let outcome = {
        let run = app.runtime.run(
            &version.pre,
            execution.input.get(),
            version.meta.limits,
            grants,
            cancelled,
        );
        tokio::pin!(run);
        tokio::select! {
            biased;
            outcome = &mut run => outcome,
            () = tokio::time::sleep(RUNNING_WRITE_DELAY) => {
                app.store.writer.send(Write::Execution(Box::new(execution.clone())));
                run.await
            }
        }
    };
    execution.token_usage = outcome.llm.usage;
    execution.cost_usd = outcome.llm.cost_usd;
    execution.model_used = outcome.llm.model_used;
    execution.llm_provider = outcome.llm.provider;
    execution.first_token_ms = outcome.llm.first_token_ms;
    execution.n_tool_calls = outcome.tool_calls.len() as u32;
    execution.tool_ms = outcome.tool_calls.iter().map(|c| c.duration_ms as i64).sum();
    execution.tool_calls = outcome.tool_calls;
    execution.n_artifacts = outcome.artifacts.len() as u32;
    execution.n_screenshots = outcome.artifacts.iter().filter(|a| a.is_image()).count() as u32;

    let recording = outcome.recording;
    execution.completed_at = Some(time::now_ms());
    execution.fuel_used = Some(outcome.fuel_used);
    execution.peak_memory_bytes = Some(outcome.peak_memory_bytes);
    execution.n_logs = recording.logs.len() as u32;
    execution.n_steps = recording.steps.len() as u32;
    execution.logs_truncated = recording.logs_truncated;
    match outcome.result {
        Ok(output) => {
            execution.status = Status::Completed;
            execution.output = Some(output);
        }
        Err(error) => {
            execution.status = if outcome.cancelled {
                Status::Cancelled
            } else {
                Status::Failed
            };
            execution.error = Some(error);
        }
    }
    let details = app.config.capture.record_details;
    emit_end(&events, &execution);
    if details {
        app.store.writer.send(stored_events(&events, &execution.id));
    }
    let (logs, steps) = if details {
        (recording.logs, recording.steps)
    } else {
        (Vec::new(), Vec::new())
    };
    let finish = Write::Finish {
        execution: Box::new(execution.clone()),
        logs,
        steps,
    };
    let commit = app.store.writer.queue(finish);
    (execution, commit)
}

/// `POST /v1/executions/{id}/cancel` for a live execution.
pub async fn cancel(app: &Arc<App>, id: &str) -> Result<Cancel, StoreError> {
    enum Action {
        Dequeued(Box<Job>, queue::Done),
        Requested,
        Already,
        NotLive,
    }
    let action = {
        let mut q = app.scheduler.lock();
        let state = q.live.get_mut(id).map(|live| {
            let state = std::mem::replace(&mut live.state, LiveState::CancelRequested);
            (live.agent_id.clone(), state)
        });
        match state {
            None => Action::NotLive,
            Some((agent_id, LiveState::Queued(key))) => match q.remove(&agent_id, key) {
                Some(job) => {
                    q.waiting = q.waiting.saturating_sub(1);
                    match q.live.remove(id) {
                        Some(live) => Action::Dequeued(Box::new(job), live.done),
                        None => Action::NotLive,
                    }
                }
                None => Action::NotLive,
            },
            Some((_, LiveState::Delayed(job))) => {
                q.waiting = q.waiting.saturating_sub(1);
                match q.live.remove(id) {
                    Some(live) => Action::Dequeued(job, live.done),
                    None => Action::NotLive,
                }
            }
            Some((_, LiveState::Running(stop))) => {
                if let Some(stop) = stop {
                    let _ = stop.send(());
                }
                Action::Requested
            }
            Some((_, LiveState::CancelRequested)) => Action::Already,
        }
    };
    match action {
        Action::NotLive => Ok(Cancel::NotLive),
        Action::Already => Ok(Cancel::Requested),
        Action::Requested => {
            if let Some(events) = app.events.get(id) {
                events.emit(
                    "status",
                    &StatusEvent {
                        status: Status::CancelRequested,
                    },
                );
            }
            app.store
                .writer
                .commit(Write::Status {
                    id: id.to_owned(),
                    from: Status::Running,
                    to: Status::CancelRequested,
                })
                .await?;
            Ok(Cancel::Requested)
        }
        Action::Dequeued(job, done) => {
            let mut execution = job.execution;
            execution.status = Status::Cancelled;
            execution.error = Some(ExecError::host(
                "cancelled",
                "the execution was cancelled before it ran",
            ));
            execution.completed_at = Some(time::now_ms());
            app.store.writer.send(end_events(&job.events, &execution));
            app.events.close(id);
            let result = app
                .store
                .writer
                .commit(Write::Execution(Box::new(execution.clone())))
                .await;
            let execution = Arc::new(execution);
            done.send_replace(Some(Arc::clone(&execution)));
            result?;
            Ok(Cancel::Cancelled(execution))
        }
    }
}
