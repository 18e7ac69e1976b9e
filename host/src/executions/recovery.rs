//! After a restart, and when this host takes over the executions of another
//! whose lease ran out (a store several hosts share): executions that were
//! queued run again (in priority order, their stored events continued);
//! durable ones that were running resume, replaying their journals; other
//! running ones end `failed` with `host_restart` (or `cancelled` if a cancel
//! had been asked) and are retried when their agent's policy allows; a queued
//! turn of a conversation waits again for the turns before it. (Those waiting
//! unloaded for a decision stay so, unless it came meanwhile: see
//! `resume_answered`.)

use std::sync::Arc;
use std::time::Duration;

use super::lifecycle::End;
use super::{Executions, Job};
use crate::record::{ExecError, Execution, Status};
use crate::store::StoreError;
use crate::time;

impl Executions {
    pub(super) async fn recover(self: &Arc<Self>) -> anyhow::Result<()> {
        let unfinished = self.store.unfinished().await?;
        self.take_up(unfinished, "the host restarted while this execution was running")
            .await
    }

    /// Takes over the unfinished executions of hosts whose lease ran out (on
    /// a store several hosts share); how many.
    pub async fn adopt(self: &Arc<Self>) -> anyhow::Result<usize> {
        // A host shutting down takes nothing more on.
        if self.is_draining() {
            return Ok(0);
        }
        let orphans = self.store.orphans().await?;
        let n = orphans.len();
        if n > 0 {
            tracing::warn!(
                executions = n,
                "taking over the executions of a host whose lease ran out"
            );
        }
        self.take_up(orphans, "the host running this execution stopped (its lease ran out)")
            .await?;
        self.end_stopped_waits().await?;
        Ok(n)
    }

    /// Runs again, resumes or ends executions no host runs any more;
    /// `stopped` says why those that cannot go on ended.
    pub(super) async fn take_up(self: &Arc<Self>, unfinished: Vec<Execution>, stopped: &str) -> anyhow::Result<()> {
        let now = time::now_ms();
        // Queued ones first, so that retries made below queue behind them in order.
        let (mut unfinished, ended): (Vec<_>, Vec<_>) = unfinished
            .into_iter()
            .partition(|e| matches!(e.status, Status::Pending | Status::Queued));
        unfinished.extend(ended);
        for mut execution in unfinished {
            // A version that cannot run any more is as good as gone.
            let found = self
                .registry
                .version(&execution.agent_version_id)
                .filter(|(_, v)| v.pre.is_ok());
            match (execution.status, found) {
                (Status::Pending | Status::Queued, Some((_, version))) => {
                    let reservation = self.scheduler.reserve_accepted();
                    let delay = execution
                        .run_after
                        .filter(|t| *t > now)
                        .map(|t| Duration::from_millis((t - now) as u64));
                    execution.status = Status::Queued;
                    tracing::info!(execution = %execution.id, "re-queued");
                    // A turn of a conversation waits for the turns before it.
                    let turn = execution.conversation_id.clone().map(|conversation| {
                        let key = execution.turn_key.clone().unwrap_or_else(|| execution.id.clone());
                        (conversation, key)
                    });
                    let events = self.lifecycle.reopen(&execution).await;
                    let id = execution.id.clone();
                    let job = Job {
                        execution,
                        version,
                        events,
                        resume: false,
                    };
                    self.scheduler
                        .queue(reservation, job, delay.is_some() || turn.is_some());
                    match (turn, delay) {
                        (Some((conversation, key)), delay) => self.after_turn(id, conversation, key, delay),
                        (None, Some(delay)) => self.end_delay_after(id, delay),
                        (None, None) => {}
                    }
                }
                (Status::Running, Some((_, version))) if version.meta.manifest.durable => {
                    tracing::info!(execution = %execution.id, "resuming by replay");
                    self.requeue(execution, true).await;
                }
                (status, found) => {
                    let end = match (status, &found) {
                        (Status::CancelRequested, _) => End::Cancelled(ExecError::host(
                            "cancelled",
                            "the execution was cancelled (the host restarted meanwhile)",
                        )),
                        (_, None) => End::Failed(ExecError::host(
                            "agent_unavailable",
                            "the agent version could not be loaded after a restart",
                        )),
                        _ => End::Failed(ExecError::host("host_restart", stopped)),
                    };
                    let events = self.lifecycle.reopen(&execution).await;
                    // One that cannot be stored now does not hold up the others.
                    match self.lifecycle.end(&mut execution, &events, end, None).settle().await {
                        Ok(()) => {}
                        Err(e @ StoreError::TakenOver(_)) => {
                            tracing::warn!(execution = %execution.id, error = %e, "not ended here");
                            continue;
                        }
                        Err(e) => {
                            tracing::error!(execution = %execution.id, error = %e, "could not end an execution whose host stopped");
                            continue;
                        }
                    }
                    tracing::warn!(execution = %execution.id, status = execution.status.as_str(), "ended: its host stopped");
                    if let Some((_, version)) = found
                        && let Some(retry) = self.retry_by_policy(&execution, &version)
                    {
                        retry.await;
                    }
                }
            }
        }
        self.launch(self.scheduler.dispatch());
        // What went back to the shared queue is claimed by whoever has room.
        self.wake_claims();
        Ok(())
    }
}
