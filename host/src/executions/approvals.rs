//! Approvals, the use cases: a run's requests (the [`Desk`] each run gets),
//! decisions from people (`approve`, `reject`), expiry after a request's
//! timeout, and resuming the runs that were unloaded while they waited.
//!
//! A decision is stored first (the first one wins), then delivered: to the run
//! waiting for it in memory, if there is one, else by resuming the execution,
//! which replays its journal up to the request and finds the decision stored.
//! Nothing of a waiting, unloaded run is held in memory: expiry reads the
//! store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{Executions, Job};
use crate::events::EventLog;
use crate::ports::{ApprovalDesk, EffectRefused};
use crate::record::{Approval, ApprovalStatus, Decision, Role, Status};
use crate::store::StoreError;
use crate::time;

/// Requests one expiry pass decides at most (the next pass takes the rest).
const EXPIRY_BATCH: u32 = 500;

/// Runs waiting for a decision in memory (within their grace), by request.
#[derive(Default)]
pub(super) struct Waiters {
    waiting: Mutex<HashMap<String, oneshot::Sender<Approval>>>,
    /// Executions being resumed now (one resume at a time each).
    resuming: Mutex<HashSet<String>>,
}

/// Removes a waiter when its wait ends.
struct Registered<'a>(&'a Waiters, &'a str);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(self.1);
    }
}

impl Waiters {
    /// Whether a resume of this execution is under way.
    pub(super) fn is_resuming(&self, id: &str) -> bool {
        self.resuming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Approval>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who decides: a key of a workspace.
pub struct Decider {
    pub workspace: String,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    /// An admin key decides any request of its workspace; others only those
    /// that name them (or name nobody).
    pub admin: bool,
}

impl Decider {
    /// A key of `workspace` as a decider: admin and approver keys decide,
    /// others do not.
    pub fn of_key(workspace: &str, key_id: Option<&str>, key_name: Option<&str>, role: Role) -> Option<Decider> {
        matches!(role, Role::Admin | Role::Approver).then(|| Decider {
            workspace: workspace.to_owned(),
            key_id: key_id.map(str::to_owned),
            key_name: key_name.map(str::to_owned),
            admin: role == Role::Admin,
        })
    }
}

/// A decision asked for.
pub struct Ask {
    pub approve: bool,
    pub comment: Option<String>,
    pub data: Option<Arc<RawValue>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no approval request {0:?}")]
    NotFound(String),
    #[error("execution {0:?} has no open approval request")]
    NoneOpen(String),
    #[error("this request names who may decide it ({0}); this key is not one of them")]
    NotAnApprover(String),
    #[error("the request was already decided: {}", .0.status.as_str())]
    AlreadyDecided(Box<Approval>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// One run's approval requests.
pub(super) struct Desk {
    pub executions: Arc<Executions>,
    pub execution_id: String,
    pub log: Arc<EventLog>,
}

#[async_trait]
impl ApprovalDesk for Desk {
    async fn open(&self, mut approval: Approval, announce: bool) -> Result<(), EffectRefused> {
        let this = &self.executions;
        approval.workspace = this.registry.workspace_of(&approval.agent_id).unwrap_or_default();
        this.lifecycle
            .await_approval(&self.execution_id, announce.then_some(&*self.log), &approval)
            .await
            .map_err(|e| EffectRefused(e.to_string()))
    }

    async fn get(&self, id: &str) -> Result<Option<Approval>, EffectRefused> {
        self.executions
            .approvals
            .get(id)
            .await
            .map_err(|e| EffectRefused(e.to_string()))
    }

    async fn wait(&self, id: &str, grace: Duration) -> Option<Approval> {
        let waiters = &self.executions.waiters;
        let (tx, mut rx) = oneshot::channel();
        waiters.lock().insert(id.to_owned(), tx);
        // Whatever ends the wait (a decision, the grace, a cancel dropping it).
        let _registered = Registered(waiters, id);
        // Decided before the waiter was there: the decider resumed nobody (the
        // run is live), so it is found here.
        if let Ok(Some(stored)) = self.executions.approvals.get(id).await
            && stored.status != ApprovalStatus::Pending
        {
            waiters.lock().remove(id);
            return Some(stored);
        }
        let decided = if grace == Duration::MAX {
            (&mut rx).await.ok()
        } else {
            tokio::time::timeout(grace, &mut rx).await.ok().and_then(Result::ok)
        };
        if decided.is_some() {
            return decided;
        }
        waiters.lock().remove(id);
        // Sent between the timeout and the removal.
        rx.try_recv().ok()
    }

    async fn decided(&self, approval: &Approval) {
        self.executions
            .lifecycle
            .approval_decided(&self.execution_id, &self.log, approval);
    }
}

impl Executions {
    /// `approve` or `reject`: stores the decision (the first one wins) and
    /// hands it to its run. The same decision again answers the stored one;
    /// another is `AlreadyDecided`.
    pub async fn decide(self: &Arc<Self>, who: &Decider, id: &str, ask: Ask) -> Result<Approval, DecideError> {
        let not_found = || DecideError::NotFound(id.to_owned());
        let approval = self.approvals.get(id).await?.ok_or_else(not_found)?;
        if approval.workspace != who.workspace {
            return Err(not_found());
        }
        let wanted = if ask.approve {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Rejected
        };
        let settled = |approval: Approval| {
            if approval.status == wanted {
                Ok(approval)
            } else {
                Err(DecideError::AlreadyDecided(Box::new(approval)))
            }
        };
        if approval.status != ApprovalStatus::Pending {
            return settled(approval);
        }
        if !who.admin
            && !approval.approvers.is_empty()
            && !who.key_name.as_ref().is_some_and(|n| approval.approvers.contains(n))
        {
            return Err(DecideError::NotAnApprover(approval.approvers.join(", ")));
        }
        let decision = Decision {
            status: wanted,
            at: time::now_ms(),
            by: who.key_id.clone(),
            by_name: who.key_name.clone(),
            comment: ask.comment,
            data: if ask.approve { ask.data } else { None },
        };
        self.approvals.decide(id, decision).await?;
        let stored = self.approvals.get(id).await?.ok_or_else(not_found)?;
        self.deliver(&stored).await;
        settled(stored)
    }

    /// The open request of an execution (for `/v1/executions/{id}/approve`).
    pub async fn open_request(&self, workspace: &str, execution_id: &str) -> Result<Approval, DecideError> {
        match self.approvals.of_execution(execution_id).await? {
            Some(a) if a.workspace == workspace && a.status == ApprovalStatus::Pending => Ok(a),
            _ => Err(DecideError::NoneOpen(execution_id.to_owned())),
        }
    }

    /// Hands a stored decision to its run: the one waiting in memory, or the
    /// execution resumed.
    async fn deliver(self: &Arc<Self>, decided: &Approval) {
        let waiter = self.waiters.lock().remove(&decided.id);
        if let Some(waiter) = waiter
            && waiter.send(decided.clone()).is_ok()
        {
            return;
        }
        self.resume(&decided.execution_id).await;
    }

    /// Picks up an execution unloaded while it waited (its request decided,
    /// or a cancel asked): queued again, to replay its journal (on a store
    /// several hosts share, a decided one once its agent has a slot across
    /// them). Nothing happens when it is live, or no longer waiting.
    pub(super) async fn resume(self: &Arc<Self>, id: &str) {
        if !self
            .waiters
            .resuming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned())
        {
            return;
        }
        // Held by another host (a shared store): that host resumes it.
        let elsewhere = match self.store.held_elsewhere(id).await {
            Ok(held) => held,
            Err(e) => {
                tracing::error!(execution = %id, error = %e, "could not read who holds an execution");
                true
            }
        };
        // A host shutting down starts nothing more; on a shared store, one
        // that cannot run the version leaves it to a host that can.
        if self.scheduler.watch(id).is_none() && !elsewhere && !(self.shares_queue() && self.is_draining()) {
            match self.store.get(id).await {
                Ok(Some(execution))
                    if matches!(execution.status, Status::AwaitingApproval | Status::CancelRequested)
                        && !self.not_durable(&execution.agent_version_id)
                        && (!self.shares_queue() || self.runnable(&execution.agent_version_id)) =>
                {
                    if self.shares_queue() && execution.status == Status::AwaitingApproval {
                        // Decided: it starts again within its agent's slots
                        // across the hosts, claimed as waiting ones are.
                        self.resume_when_room(id);
                    } else {
                        // Unloaded, it is nobody's: one host takes it to
                        // resume it, or to end it (others deciding, or
                        // looking, at once leave it).
                        match self.store.take_waiting(id).await {
                            Ok(true) => self.requeue(execution, true).await,
                            Ok(false) => {}
                            Err(e) => {
                                tracing::error!(execution = %id, error = %e, "could not take an execution to resume it")
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(execution = %id, error = %e, "could not read an execution to resume it"),
            }
        }
        self.waiters
            .resuming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Queues an accepted execution again: `resume`d to replay its journal,
    /// or from the start.
    pub(super) async fn requeue(self: &Arc<Self>, execution: crate::record::Execution, resume: bool) {
        let found = self
            .registry
            .version(&execution.agent_version_id)
            .filter(|(_, v)| v.pre.is_ok());
        let Some((_, version)) = found else {
            let mut execution = execution;
            let error = crate::record::ExecError::host(
                "agent_unavailable",
                "the agent version could not be loaded to resume this execution",
            );
            let events = self.lifecycle.reopen(&execution).await;
            let ending = self
                .lifecycle
                .end(&mut execution, &events, super::lifecycle::End::Failed(error), None);
            match ending.settle().await {
                Ok(()) => {}
                Err(e @ StoreError::TakenOver(_)) => {
                    tracing::warn!(execution = %execution.id, error = %e, "not ended here")
                }
                Err(e) => tracing::error!(execution = %execution.id, error = %e, "could not record an execution's end"),
            }
            return;
        };
        let events = self.lifecycle.reopen(&execution).await;
        let reservation = self.scheduler.reserve_accepted();
        let job = Job {
            execution,
            version,
            events,
            resume,
        };
        self.scheduler.queue(reservation, job, false);
        self.launch(self.scheduler.dispatch());
    }

    /// After a run was unloaded: a decision or a cancel that came meanwhile
    /// (and found it still live) resumes it now.
    pub(super) async fn after_unload(self: &Arc<Self>, id: &str) {
        let answered = match self.approvals.of_execution(id).await {
            Ok(Some(a)) => a.status != ApprovalStatus::Pending,
            _ => false,
        };
        let cancelled = matches!(self.store.get(id).await, Ok(Some(e)) if e.status == Status::CancelRequested);
        if answered || cancelled {
            self.resume(id).await;
        }
    }

    /// After a restart: runs of agents that are not durable, which waited in
    /// memory, end `host_restart`; executions whose requests were decided
    /// while nobody resumed them resume.
    pub(super) async fn resume_answered(self: &Arc<Self>) -> anyhow::Result<()> {
        for (id, version) in self.approvals.waiting().await? {
            if self.not_durable(&version) {
                let why =
                    "the host restarted while this execution (of an agent that is not durable) waited for an approval";
                self.end_lost_wait(&id, why).await?;
            }
        }
        // What this host held in memory as it waited is nobody's now.
        self.store.release_waiting().await?;
        for id in self.approvals.answered_waiting().await? {
            self.resume(&id).await;
        }
        Ok(())
    }

    /// On a store several hosts share: runs of agents that are not durable
    /// that a host whose lease ran out held in memory as they waited for a
    /// decision end `host_restart` (taken by one host first). Durable ones
    /// are resumed by whichever host decides.
    pub(super) async fn end_stopped_waits(self: &Arc<Self>) -> anyhow::Result<()> {
        for (id, version) in self.approvals.waiting_of_stopped_hosts().await? {
            if self.not_durable(&version) && self.store.take_waiting(&id).await? {
                let why = "the host that held this execution (of an agent that is not durable) in memory while it \
                           waited for an approval stopped";
                self.end_lost_wait(&id, why).await?;
            }
        }
        Ok(())
    }

    /// Ends a run that waited in a host's memory, lost with it.
    async fn end_lost_wait(&self, id: &str, why: &str) -> anyhow::Result<()> {
        if let Some(mut execution) = self.store.get(id).await? {
            let error = crate::record::ExecError::host("host_restart", why);
            let events = self.lifecycle.reopen(&execution).await;
            let end = super::lifecycle::End::Failed(error);
            match self.lifecycle.end(&mut execution, &events, end, None).settle().await {
                // Another host holds it now: its end is that host's.
                Err(e @ StoreError::TakenOver(_)) => tracing::warn!(execution = %id, error = %e, "not ended here"),
                ended => ended?,
            }
        }
        Ok(())
    }

    /// Decisions made on other hosts (a shared store): handed to the runs
    /// waiting for them here in memory, and the runs of this host unloaded
    /// meanwhile resumed.
    pub async fn take_decisions(self: &Arc<Self>) -> anyhow::Result<()> {
        let waiting: Vec<String> = self.waiters.lock().keys().cloned().collect();
        for id in waiting {
            if let Some(decided) = self.approvals.get(&id).await?
                && decided.status != ApprovalStatus::Pending
            {
                self.deliver(&decided).await;
            }
        }
        let answered = self.approvals.answered_waiting().await?;
        self.keep_resumes(&answered);
        for id in answered {
            self.resume(&id).await;
        }
        Ok(())
    }

    /// Whether this host has a version loaded and can run it.
    fn runnable(&self, version_id: &str) -> bool {
        self.registry.version(version_id).is_some_and(|(_, v)| v.pre.is_ok())
    }

    /// Whether a version's runs keep no journal (and so cannot be resumed).
    fn not_durable(&self, version_id: &str) -> bool {
        self.registry
            .version(version_id)
            .is_some_and(|(_, v)| !v.meta.manifest.durable)
    }
}

/// Expires requests past their timeout, for as long as the executions live.
pub(super) async fn expire_requests(executions: Weak<Executions>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(this) = executions.upgrade() else { return };
        // On a store several hosts share, only the leading host expires them.
        if !this.backend.leads() {
            continue;
        }
        let due = match this.approvals.due(time::now_ms(), EXPIRY_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the approval requests due to expire");
                continue;
            }
        };
        for approval in due {
            let decision = Decision {
                status: ApprovalStatus::Expired,
                at: time::now_ms(),
                by: None,
                by_name: None,
                comment: None,
                data: None,
            };
            if let Err(e) = this.approvals.decide(&approval.id, decision).await {
                tracing::warn!(approval = %approval.id, error = %e, "could not expire an approval request");
                continue;
            }
            if let Ok(Some(stored)) = this.approvals.get(&approval.id).await {
                this.deliver(&stored).await;
            }
        }
    }
}
