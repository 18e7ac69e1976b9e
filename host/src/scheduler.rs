//! Accepting and running executions: a record is created `queued`, the run waits
//! for one of the host's execution slots, runs in the sandbox, and its final record
//! (with logs and steps) is committed before anyone is told it finished.
//!
//! Every accepted execution reaches a terminal state: a run that panics the task it
//! is on is recorded `failed` with `internal`.

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::app::App;
use crate::execution::{ExecError, Execution, Status};
use crate::registry::{Entry, Version};
use crate::store::StoreError;
use crate::store::writer::Write;
use crate::{ids, time};

pub const DEFAULT_PRIORITY: u8 = 50;

/// What a caller asks to run.
pub struct Request {
    pub input: Box<RawValue>,
    pub metadata: Box<RawValue>,
    pub priority: u8,
    pub trigger: &'static str,
}

/// An accepted execution: its record as accepted, and where its final record comes.
pub struct Accepted {
    pub execution: Execution,
    pub done: oneshot::Receiver<Execution>,
}

/// Accepts an execution of `version`. With `durable`, returns only once the
/// `queued` record is committed (async callers poll it right away).
pub async fn submit(
    app: &Arc<App>,
    entry: &Entry,
    version: Arc<Version>,
    request: Request,
    durable: bool,
) -> Result<Accepted, StoreError> {
    let now = time::now_ms();
    let execution = Execution {
        id: ids::execution(),
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
        created_at: now,
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
    let (tx, done) = oneshot::channel();
    tokio::spawn(supervise(Arc::clone(app), version, execution.clone(), tx));
    Ok(Accepted { execution, done })
}

/// Runs the execution on its own task and records a failure if that task dies.
async fn supervise(app: Arc<App>, version: Arc<Version>, execution: Execution, tx: oneshot::Sender<Execution>) {
    let fallback = execution.clone();
    let run = tokio::spawn(run(Arc::clone(&app), version, execution));
    let finished = match run.await {
        Ok(finished) => finished,
        Err(e) => {
            tracing::error!(execution = %fallback.id, error = %e, "execution task died");
            let mut failed = fallback;
            failed.status = Status::Failed;
            failed.error = Some(ExecError::host(
                "internal",
                "the host failed while running this execution",
            ));
            failed.completed_at = Some(time::now_ms());
            if let Err(e) = app
                .store
                .writer
                .commit(Write::Execution(Box::new(failed.clone())))
                .await
            {
                tracing::error!(execution = %failed.id, error = %e, "could not record the failure");
            }
            failed
        }
    };
    let _ = tx.send(finished);
}

async fn run(app: Arc<App>, version: Arc<Version>, mut execution: Execution) -> Execution {
    // The semaphore is never closed, so acquiring only waits.
    let _permit = Arc::clone(&app.slots).acquire_owned().await.ok();
    execution.status = Status::Running;
    execution.started_at = Some(time::now_ms());
    app.store.writer.send(Write::Execution(Box::new(execution.clone())));

    let outcome = app
        .runtime
        .run(&version.pre, execution.input.get(), version.meta.limits)
        .await;

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
            execution.status = Status::Failed;
            execution.error = Some(error);
        }
    }
    let finish = Write::Finish {
        execution: Box::new(execution.clone()),
        logs: recording.logs,
        steps: recording.steps,
    };
    if let Err(e) = app.store.writer.commit(finish).await {
        tracing::error!(execution = %execution.id, error = %e, "could not record the finished execution");
    }
    execution
}
