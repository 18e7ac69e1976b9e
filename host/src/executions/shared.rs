//! The shared queue, on a store several hosts share: an execution this host
//! accepts waits in the store (its `queued` record committed, no owner) until
//! a host with room claims it: this one, woken at once, or another, at its
//! next poll. This host claims while it has room (its cap, less what runs
//! and waits here), as soon as something here ends and every [`POLL`]; and
//! it follows what it accepted and another host claimed, to answer whoever
//! waits here for its end once that end is stored. (A conversation's turns
//! stay with the host that accepted them, in order.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::{Executions, Job};
use crate::record::{Execution, Status};
use crate::registry::Registry;
use crate::scheduler::Scheduler;
use crate::store::{Slots, StoreError};
use crate::time;

/// How often a host looks for executions waiting in the shared queue (and
/// for the ends of those it follows that somebody here waits for), when
/// nothing woke it before.
const POLL: Duration = Duration::from_millis(100);

/// Every how many polls a host looks for those nobody waits for (to give
/// their places in its bound back once another host took them), and how
/// many it looks for at once.
const SWEEP_EVERY: u32 = 10;
const SWEEP_BATCH: usize = 1_000;

/// Executions claimed here that another host accepted.
#[derive(Default)]
pub(super) struct Foreign(Mutex<HashSet<String>>);

impl Foreign {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What this host may claim: its registry's agents and versions.
struct Known<'a>(&'a Registry, &'a Scheduler<Job, Arc<Execution>>);

impl Slots for Known<'_> {
    fn here(&self) -> std::collections::HashMap<String, usize> {
        self.1.busy_by_agent()
    }

    fn of_agent(&self, agent_id: &str) -> Option<usize> {
        self.0.max_concurrency(agent_id)
    }

    fn runs(&self, version_id: &str) -> bool {
        self.0.version(version_id).is_some_and(|(_, v)| v.pre.is_ok())
    }
}

impl Executions {
    /// Whether executions wait in the store for any host to claim them.
    pub(super) fn shares_queue(&self) -> bool {
        self.store.shares_queue()
    }

    /// Claims at once: something waits, or room was made.
    pub(super) fn wake_claims(&self) {
        if self.shares_queue() {
            self.wake.notify_one();
        }
    }

    /// Claims once `delay` is over (an execution's `run_after`).
    pub(super) fn wake_claims_after(&self, delay: Duration) {
        let wake = Arc::clone(&self.wake);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            wake.notify_one();
        });
    }

    /// Starts claiming (on a store several hosts share).
    pub(super) fn start_claiming(self: &Arc<Self>) {
        if self.shares_queue() {
            tokio::spawn(claim_and_follow(Arc::downgrade(self)));
        }
    }

    /// Claims what this host has room for and starts it (`surely`: something
    /// is known to wait); how many, of how many it had room for.
    async fn claim(self: &Arc<Self>, surely: bool) -> Result<(usize, usize), StoreError> {
        let room = self.scheduler.room();
        if room == 0 || self.is_draining() {
            return Ok((0, room));
        }
        let known = Known(&self.registry, &self.scheduler);
        let claimed = self.store.claim(room, time::now_ms(), &known, surely).await?;
        let n = claimed.len();
        for execution in claimed {
            self.queue_claimed(execution).await;
        }
        self.launch(self.scheduler.dispatch());
        Ok((n, room))
    }

    /// An execution this host claimed joins its queue (not started yet).
    pub(super) async fn queue_claimed(self: &Arc<Self>, mut execution: Execution) {
        let found = self
            .registry
            .version(&execution.agent_version_id)
            .filter(|(_, v)| v.pre.is_ok());
        // Claimed only when runnable here; should the version have gone
        // meanwhile, it ends as after a restart.
        let Some((_, version)) = found else {
            self.take_up(vec![execution], "").await.ok();
            return;
        };
        execution.status = Status::Queued;
        let events = self.lifecycle.log_of(&execution).await;
        let id = execution.id.clone();
        let followed = self.scheduler.claimed(Job {
            execution,
            version,
            events,
            resume: false,
        });
        if !followed {
            self.foreign.lock().insert(id);
        }
    }

    /// An execution claimed from the shared queue ended here: the host that
    /// accepted it, if another, is hinted to look.
    pub(super) fn ended_here(&self, id: &str) {
        if self.foreign.lock().remove(id) {
            self.hint();
        }
    }

    /// Hints the other hosts (without waiting).
    pub(super) fn hint(&self) {
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            if let Err(e) = store.hint().await {
                tracing::debug!(error = %e, "could not hint the other hosts");
            }
        });
    }

    /// Follows an execution another host may run, for whoever waits here.
    pub(super) fn follow(&self, id: &str, agent_id: &str) -> super::Watch {
        let watch = self.scheduler.follow(None, id, agent_id);
        self.wake_claims();
        watch
    }

    /// Learns where the executions followed here are: those another host
    /// took stream from the store from now on; those ended are announced.
    /// Those nobody here waits for are looked at only on a `sweep`, and
    /// forgotten once another host took them (they are the store's).
    async fn look_elsewhere(&self, sweep: bool) -> Result<(), StoreError> {
        let (awaited, unawaited): (Vec<_>, Vec<_>) = self
            .scheduler
            .elsewhere()
            .into_iter()
            .partition(|(id, waited)| *waited || self.lifecycle.is_streamed(id));
        let mut ids: Vec<String> = awaited.into_iter().map(|(id, _)| id).collect();
        let forget = if sweep {
            let before = ids.len();
            ids.extend(unawaited.into_iter().take(SWEEP_BATCH).map(|(id, _)| id));
            ids[before..].iter().cloned().collect()
        } else {
            HashSet::new()
        };
        if ids.is_empty() {
            return Ok(());
        }
        let found = self.store.whereabouts(&ids).await?;
        for id in &found.elsewhere {
            if !self.scheduler.is_elsewhere(id) {
                continue;
            }
            self.lifecycle.detach(id);
            if forget.contains(id) {
                self.scheduler.unfollow(id);
            }
        }
        for execution in found.ended {
            let id = execution.id.clone();
            if self.scheduler.is_elsewhere(&id) {
                self.lifecycle.detach(&id);
                self.scheduler.announce(&id, Some(Arc::new(execution)));
            }
        }
        for id in &found.gone {
            if self.scheduler.is_elsewhere(id) {
                self.lifecycle.detach(id);
                self.scheduler.announce(id, None);
            }
        }
        Ok(())
    }
}

/// Until the host closes: claims when woken or every [`POLL`], as long as
/// there is room and something to claim, then looks for what it follows.
async fn claim_and_follow(executions: Weak<Executions>) {
    let mut polls = 0u32;
    loop {
        polls = polls.wrapping_add(1);
        let wake = match executions.upgrade() {
            Some(this) => Arc::clone(&this.wake),
            None => return,
        };
        // Woken: something waits, or room was made, or another host hints.
        let woken = tokio::select! {
            () = wake.notified() => true,
            () = tokio::time::sleep(POLL) => false,
        };
        let Some(this) = executions.upgrade() else { return };
        if *this.closing.borrow() {
            return;
        }
        let mut surely = woken;
        loop {
            match this.claim(surely).await {
                Ok((n, room)) if n > 0 && n == room => surely = false,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim from the shared queue");
                    break;
                }
            }
        }
        if let Err(e) = this.look_elsewhere(polls % SWEEP_EVERY == 0).await {
            tracing::warn!(error = %e, "could not read the executions other hosts run");
        }
    }
}
