//! Running executions: each started job runs on its own task, supervised by
//! another that, whatever happens to the run, records an end, gives the slot
//! back, and announces the final record once it is committed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::approvals::Desk;
use super::lifecycle::{End, Ending, Start};
use super::{Executions, Job};
use crate::events::{EventKind, EventLog};
use crate::memory::Memory;
use crate::ports::Memories;
use crate::ports::{AgentCalls, Effects, ToolCtx};
use crate::record::{ExecError, Execution, JournalEntry, Status};
use crate::registry::Version;
use crate::runtime::journal::RunJournal;
use crate::runtime::{Grants, MemoryGrant, Pauses, RunArtifacts, RunOutcome};
use crate::scheduler::Started;
use crate::store::{EventBudget, StoreError};

/// A run still going after this long is stored `running`.
const RUNNING_WRITE_DELAY: Duration = Duration::from_millis(10);

impl Executions {
    /// Runs the jobs the scheduler let go.
    pub(super) fn launch(self: &Arc<Self>, started: Vec<Started<Job>>) {
        for Started { job, cancel } in started {
            tokio::spawn(supervise(Arc::clone(self), job, cancel));
        }
    }

    /// What a run may use beyond its sandbox.
    async fn grants(
        self: &Arc<Self>,
        execution: &Execution,
        version: &Version,
        events: &Arc<EventLog>,
        start: &Arc<Start>,
        durable: Option<(Vec<JournalEntry>, (u32, u32))>,
        pauses: Arc<Pauses>,
    ) -> Grants {
        let memory = self.memory_grant(execution).await;
        let manifest = &version.meta.manifest;
        let effects: Arc<dyn Effects> = Arc::clone(start) as Arc<dyn Effects>;
        let artifacts = Arc::new(RunArtifacts::new(
            &execution.id,
            self.settings.capture,
            Arc::clone(&self.artifacts),
            Arc::clone(events),
            Arc::clone(&effects),
        ));
        let children: Arc<dyn AgentCalls> = Arc::clone(self) as Arc<dyn AgentCalls>;
        let (journal, announced) = match durable {
            Some((earlier, announced)) => (
                Some(RunJournal::new(
                    &execution.id,
                    earlier,
                    Arc::clone(&self.journal),
                    Arc::clone(&effects),
                    self.settings.durability,
                )),
                announced,
            ),
            None => (None, (0, 0)),
        };
        Grants {
            llm: Arc::clone(&self.llm),
            tools: Arc::clone(&self.tools),
            models: Arc::clone(&manifest.models),
            model: execution.model.clone(),
            token_budget: manifest
                .token_budget
                .unwrap_or(self.settings.default_token_budget)
                .min(self.settings.max_token_budget),
            allowed_tools: Arc::clone(&manifest.tools),
            max_tool_calls: self.settings.max_tool_calls,
            ctx: ToolCtx {
                agent_id: execution.agent_id.clone(),
                workspace: self.registry.workspace_of(&execution.agent_id).unwrap_or_default(),
                execution_id: execution.id.clone(),
                trace_id: execution.trace_id.clone(),
                span_id: None,
                depth: execution.depth,
                allowed_hosts: Arc::clone(&manifest.allowed_hosts),
                mcp_servers: Arc::clone(&manifest.mcp_servers),
                artifacts: artifacts.clone(),
                children,
                child_id: None,
            },
            events: Arc::clone(events),
            artifacts,
            effects,
            desk: Arc::new(Desk {
                executions: Arc::clone(self),
                execution_id: execution.id.clone(),
                log: Arc::clone(events),
            }),
            approval_grace: Duration::from_millis(self.settings.durability.approval_grace_ms),
            pauses,
            journal,
            announced,
            memory,
            streamed: Arc::default(),
        }
    }

    /// What a run may reach of conversations and memory: its conversation's
    /// history and session memory, and the stores attached to it (a store
    /// deleted since is not there).
    async fn memory_grant(&self, execution: &Execution) -> MemoryGrant {
        let config = self.memory.config();
        let mut stores = Vec::new();
        if !execution.memory_store_ids.is_empty()
            && let Some(workspace) = self.registry.workspace_of(&execution.agent_id)
        {
            for id in &execution.memory_store_ids {
                match self.memory.find_store(&workspace, id).await {
                    Ok(Some(store)) => stores.push((store.name.clone(), Memory::scope_of(&store))),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(execution = %execution.id, error = %e, "could not read a memory store"),
                }
            }
        }
        MemoryGrant {
            port: Arc::clone(&self.memory) as Arc<dyn Memories>,
            session: execution.conversation_id.as_deref().map(|c| self.memory.session(c)),
            conversation_id: execution.conversation_id.clone(),
            stores,
            history_budget: (config.history_max_turns, config.history_max_tokens),
        }
    }

    /// Ends an execution whose run task is gone (it died, or held its slot
    /// past its timeout), from its stored record.
    async fn fail_vanished(&self, id: &str, error: ExecError) -> Option<(Execution, Ending)> {
        let mut execution = match self.store.get(id).await {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(execution = %id, error = %e, "could not read the execution to fail it");
                return None;
            }
        };
        let log = self.lifecycle.log_of(&execution).await;
        let ending = self.lifecycle.end(&mut execution, &log, End::Failed(error), None);
        Some((execution, ending))
    }
}

/// Runs a job on its own task; whatever happens to that task, records an end,
/// gives the slot back, and announces the final record.
///
/// The run task starts here; the returned future, a task of its own, waits for
/// it. It holds only what it needs (thousands of them wait at once, so every
/// byte of its state counts; a `Job` or a rare path's future kept in it did).
fn supervise(this: Arc<Executions>, job: Job, cancel: oneshot::Receiver<()>) -> impl Future<Output = ()> + Send {
    let id = job.execution.id.clone();
    let agent_id = job.execution.agent_id.clone();
    let version = Arc::clone(&job.version);
    let bound = version.meta.limits.timeout() + this.settings.slot_grace;
    let pauses = Arc::new(Pauses::default());
    let task = tokio::spawn(run(Arc::clone(&this), job, cancel, Arc::clone(&pauses)));
    wait_for_run(this, id, agent_id, version, (bound, pauses), task)
}

async fn wait_for_run(
    this: Arc<Executions>,
    id: String,
    agent_id: String,
    version: Arc<Version>,
    (bound, pauses): (Duration, Arc<Pauses>),
    task: JoinHandle<RunEnd>,
) {
    let abort = task.abort_handle();
    let ended = match crate::runtime::within(bound, &pauses, task).await {
        Ok(Ok(RunEnd::Unloaded(execution))) => {
            // Waiting for a decision, unloaded: its slot is free (here, and
            // for other hosts once the release is stored), and whoever waits
            // for its end hears it waits.
            this.launch(this.scheduler.finished(&agent_id));
            this.wake_claims();
            // Stored before this host looks for a decision (after the
            // release, the host that resumes it takes it first).
            if let Err(e) = this.store.release(&id).await {
                tracing::warn!(execution = %id, error = %e, "could not release a run unloaded while it waits");
            }
            this.ended_here(&id);
            this.lifecycle.unload(&id);
            this.scheduler.announce(&id, Some(Arc::new(execution)));
            Box::pin(this.after_unload(&id)).await;
            return;
        }
        Ok(Ok(RunEnd::Ended(execution, ending))) => Some((execution, ending)),
        Ok(Err(e)) => {
            tracing::error!(execution = %id, error = %e, "execution task died");
            let error = ExecError::host("internal", "the host failed while running this execution");
            // Boxed: a rare path, kept out of the state of every waiting task.
            Box::pin(this.fail_vanished(&id, error)).await
        }
        Err(_) => {
            abort.abort();
            tracing::error!(execution = %id, "execution held its slot past its timeout; reclaimed");
            let error = ExecError::host(
                "timeout",
                "the execution did not end within its timeout and was stopped",
            );
            Box::pin(this.fail_vanished(&id, error)).await
        }
    };
    this.launch(this.scheduler.finished(&agent_id));
    this.wake_claims();
    // The slot is free while the final record commits; listeners wait for it.
    let finished = match ended {
        Some((mut execution, ending)) => {
            match ending.settle().await {
                Ok(()) => {}
                Err(StoreError::TakenOver(_)) => {
                    // Another host took it over before this end was stored:
                    // whoever waits here hears the end that host stores.
                    tracing::warn!(execution = %id, "another host took this execution over: its end here is not stored");
                    this.scheduler.surrender(&id);
                    this.scheduler.announce(&id, None);
                    this.ended_here(&id);
                    return;
                }
                Err(e) => tracing::error!(execution = %id, error = %e, "could not record the finished execution"),
            }
            // Boxed: a rare path, kept out of the state of every waiting task.
            let retry = match this.retry_by_policy(&execution, &version) {
                // Another host took it over: retrying it is that host's call.
                Some(_) if this.scheduler.is_surrendered(&id) => None,
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
    this.scheduler.announce(&id, finished);
    // Its agent's slot is free across the hosts too, now its end is stored.
    this.wake_claims();
    this.ended_here(&id);
}

/// How a run task ended.
enum RunEnd {
    /// Its final record is being stored.
    Ended(Execution, Ending),
    /// Unloaded while it waits for a decision (`awaiting_approval`).
    Unloaded(Execution),
}

/// Runs the guest and starts storing the final record; returns it with its end.
async fn run(this: Arc<Executions>, job: Job, cancel: oneshot::Receiver<()>, pauses: Arc<Pauses>) -> RunEnd {
    let Job {
        mut execution,
        version,
        events,
        resume,
    } = job;
    let ended = |this: &Executions, mut execution: Execution, end: End| {
        let ending = this.lifecycle.end(&mut execution, &events, end, None);
        RunEnd::Ended(execution, ending)
    };
    if resume && execution.status == Status::CancelRequested {
        let error = ExecError::host(
            "cancelled",
            "the execution was cancelled while it waited for an approval",
        );
        return ended(&this, execution, End::Cancelled(error));
    }
    let durable = version.meta.manifest.durable;
    let (start, earlier) = if resume {
        match this.resumed(&mut execution, &events).await {
            Ok(resumed) => resumed,
            Err(error) => return ended(&this, execution, End::Failed(error)),
        }
    } else {
        (this.lifecycle.start(&mut execution, &events), None)
    };
    // A turn's session values are set as it starts (after the turns before
    // it); a resumed turn set them in its first life.
    if !resume && let Err(error) = this.set_session(&execution).await {
        return ended(&this, execution, End::Failed(error));
    }
    let pre = match &version.pre {
        Ok(pre) => pre,
        // Refused at submit; a run admitted before its version became unloadable.
        Err(reason) => {
            let error = ExecError::host("agent_unavailable", format!("this agent version cannot run: {reason}"));
            return ended(&this, execution, End::Failed(error));
        }
    };
    // A dropped sender is not a cancel: only a sent message is.
    let cancelled = async {
        if cancel.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let durable = durable.then(|| earlier.unwrap_or_default());
    let grants = this
        .grants(&execution, &version, &events, &start, durable, pauses)
        .await;
    let journal = grants.journal.clone();
    // Most runs end within milliseconds; storing `running` for them would only be
    // overwritten at once. A run's start is stored before its first effect beyond
    // its sandbox, and once it is still going after a moment (the event stream
    // says `running` at once either way).
    let outcome = {
        let run = this
            .runtime
            .run(pre, execution.input.get(), version.meta.limits, grants, cancelled);
        tokio::pin!(run);
        tokio::select! {
            biased;
            outcome = &mut run => outcome,
            () = tokio::time::sleep(RUNNING_WRITE_DELAY) => {
                // Its journal so far is stored before the events that follow it.
                if let Some(journal) = &journal {
                    journal.eager();
                }
                let (outcome, stored) = tokio::join!(run, start.proves_long());
                if let Err(e) = stored {
                    tracing::error!(execution = %execution.id, error = %e, "could not record a run's start");
                }
                outcome
            }
        }
    };
    if outcome.suspended {
        execution.status = Status::AwaitingApproval;
        return RunEnd::Unloaded(execution);
    }
    let mut outcome = outcome;
    let (partial, cut_short) = std::mem::take(&mut outcome.streamed);
    let (end, run_record) = record_outcome(&mut execution, outcome);
    if !matches!(end, End::Completed(_)) {
        // Ended without an output: what it had said shows, and a model call
        // it was in counts (estimated), for the budget and the bill.
        execution.output_partial = partial;
        if let Some((model, usage)) = cut_short {
            execution.token_usage.add(&usage);
            execution.usage_estimated = true;
            execution.cost_usd += this.llm.pricing.cost(&model, &usage).unwrap_or(0.0);
        }
    }
    let ending = this.lifecycle.end(&mut execution, &events, end, Some(run_record));
    RunEnd::Ended(execution, ending)
}

impl Executions {
    /// A durable run picked up again: `running`, with its journal and what its
    /// earlier lives announced.
    async fn resumed(
        &self,
        execution: &mut Execution,
        events: &Arc<EventLog>,
    ) -> Result<(Arc<Start>, Option<(Vec<JournalEntry>, (u32, u32))>), ExecError> {
        let unavailable = |e: crate::store::StoreError| {
            ExecError::host(
                "storage_unavailable",
                format!("could not read the run's journal to resume it: {e}"),
            )
        };
        let earlier = self.journal.load(&execution.id).await.map_err(unavailable)?;
        let announced = self.announced(&execution.id).await.map_err(unavailable)?;
        let start = self.lifecycle.resume(execution, events).await.map_err(unavailable)?;
        Ok((start, Some((earlier, announced))))
    }

    /// The highest log line and step numbers an execution's stored events
    /// announced.
    async fn announced(&self, id: &str) -> Result<(u32, u32), crate::store::StoreError> {
        let budget = EventBudget {
            events: 1000,
            bytes: 4 << 20,
        };
        let (mut after, mut logs, mut steps) = (0, 0, 0);
        loop {
            let page = self.lifecycle.stored_events().read(id, after, budget).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for event in &page {
                let slot = match event.kind {
                    EventKind::Log => &mut logs,
                    EventKind::Step => &mut steps,
                    _ => continue,
                };
                let seq = serde_json::from_str::<serde_json::Value>(event.json())
                    .ok()
                    .and_then(|v| v["data"]["seq"].as_u64())
                    .unwrap_or(0);
                *slot = (*slot).max(seq.min(u64::from(u32::MAX)) as u32);
            }
        }
        Ok((logs, steps))
    }
}

/// Copies what the run used and recorded onto the execution; returns how it
/// ended, with its log lines and steps.
fn record_outcome(
    execution: &mut Execution,
    outcome: RunOutcome,
) -> (End, (Vec<crate::record::LogLine>, Vec<crate::record::Step>)) {
    execution.token_usage = outcome.llm.usage;
    execution.usage_estimated = outcome.llm.usage_estimated;
    execution.cost_usd = outcome.llm.cost_usd;
    execution.model_used = outcome.llm.model_used;
    execution.llm_provider = outcome.llm.provider;
    execution.first_token_ms = outcome.llm.first_token_ms;
    execution.n_tool_calls = outcome.tool_calls.len() as u32;
    execution.tool_ms = outcome.tool_calls.iter().map(|c| c.duration_ms as i64).sum();
    execution.tool_calls = outcome.tool_calls;
    execution.n_artifacts = outcome.artifacts.len() as u32;
    execution.n_screenshots = outcome.artifacts.iter().filter(|a| a.is_image()).count() as u32;
    execution.fuel_used = Some(outcome.fuel_used);
    execution.peak_memory_bytes = Some(outcome.peak_memory_bytes);
    let recording = outcome.recording;
    execution.n_logs = recording.logs.len() as u32;
    execution.n_steps = recording.steps.len() as u32;
    execution.logs_truncated = recording.logs_truncated;
    let end = match outcome.result {
        Ok(output) => End::Completed(output.into()),
        Err(error) if outcome.cancelled => End::Cancelled(error),
        Err(error)
            if error.source == crate::record::ErrorSource::Agent && outcome.refusal == Some(error.code.as_str()) =>
        {
            End::Rejected(error)
        }
        Err(error) => End::Failed(error),
    };
    (end, (recording.logs, recording.steps))
}
