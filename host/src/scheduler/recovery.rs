//! After a restart: executions that were queued run again (in priority order);
//! those that were running end `failed` with `host_restart` (or `cancelled` if a
//! cancel had been asked) and are retried when their agent's policy allows.

use std::sync::Arc;
use std::time::Duration;

use super::queue::Job;
use super::{StatusEvent, dispatch, end_events, enqueue, retry_by_policy};
use crate::app::App;
use crate::execution::{ExecError, Status};
use crate::store::read;
use crate::store::writer::Write;
use crate::time;

/// After a restart: what was queued runs again; what was running ends `failed`
/// with `host_restart` (or `cancelled`, if a cancel had been asked), and is
/// retried when its agent's policy allows.
pub async fn recover(app: &Arc<App>) -> anyhow::Result<()> {
    let unfinished = app.store.read(read::unfinished_executions).await?;
    let now = time::now_ms();
    // Queued ones first, so that retries made below queue behind them in order.
    let (mut unfinished, ended): (Vec<_>, Vec<_>) = unfinished
        .into_iter()
        .partition(|e| matches!(e.status, Status::Pending | Status::Queued));
    unfinished.extend(ended);
    for mut execution in unfinished {
        let found = app.registry.version(&execution.agent_version_id);
        match (execution.status, found) {
            (Status::Pending | Status::Queued, Some((_, version))) => {
                let reservation = app.scheduler.reserve_accepted();
                let delay = execution
                    .run_after
                    .filter(|t| *t > now)
                    .map(|t| Duration::from_millis((t - now) as u64));
                execution.status = Status::Queued;
                tracing::info!(execution = %execution.id, "re-queued after restart");
                // Events before a crash were not stored; the log starts again.
                let events = app.events.open(&execution.id);
                events.emit("status", &StatusEvent { status: Status::Queued });
                let mut reservation = reservation;
                let job = Job {
                    execution,
                    version,
                    events,
                };
                enqueue(app, &mut reservation, job, delay);
            }
            (status, found) => {
                let (status, error) = match (status, &found) {
                    (Status::CancelRequested, _) => (
                        Status::Cancelled,
                        ExecError::host(
                            "cancelled",
                            "the execution was cancelled (the host restarted meanwhile)",
                        ),
                    ),
                    (_, None) => (
                        Status::Failed,
                        ExecError::host(
                            "agent_unavailable",
                            "the agent version could not be loaded after a restart",
                        ),
                    ),
                    _ => (
                        Status::Failed,
                        ExecError::host("host_restart", "the host restarted while this execution was running"),
                    ),
                };
                execution.status = status;
                execution.error = Some(error);
                execution.completed_at = Some(now);
                let events = app.events.open(&execution.id);
                events.emit("status", &StatusEvent { status: Status::Queued });
                events.emit(
                    "status",
                    &StatusEvent {
                        status: Status::Running,
                    },
                );
                app.store.writer.send(end_events(&events, &execution));
                app.events.close(&execution.id);
                app.store
                    .writer
                    .commit(Write::Execution(Box::new(execution.clone())))
                    .await?;
                tracing::warn!(execution = %execution.id, status = status.as_str(), "ended after restart");
                if let Some((_, version)) = found
                    && let Some(retry) = retry_by_policy(app, &execution, &version)
                {
                    retry.await;
                }
            }
        }
    }
    dispatch(app);
    Ok(())
}
