//! The shared queue, on a store several hosts share: an execution this host
//! accepts waits in the store (its `queued` record committed, no owner) until
//! a host with room claims it: this one, woken at once, or another, at its
//! next poll. This host claims while it has room (its cap, less what runs
//! and is queued here: not a conversation's turn waiting behind others), as
//! soon as something here ends and every [`POLL`]; and
//! it follows what it accepted and another host claimed, to answer whoever
//! waits here for its end once that end is stored. (A conversation's turns
//! stay with the host that accepted them, in order.)

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

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

/// How long a failed end whose agent's policy retries it may go without
/// naming its retry (the host that ran it links the retry just after).
const RETRY_LINK_WAIT: Duration = Duration::from_secs(2);

/// How often, at most, the loop warns that the store fails it.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the shared queue keeps on this host.
#[derive(Default)]
pub(super) struct SharedState {
    /// Executions claimed here that another host accepted (and follows).
    foreign: Mutex<HashSet<String>>,
    /// Executions followed here whose stored state is not yet their end for
    /// whoever waits (a failed one before its retry is linked, one waiting
    /// for a decision within its grace): in which status, since when.
    unsure: Mutex<HashMap<String, (Status, Instant)>>,
    /// Decided runs this host would resume, claimed when their agent has a
    /// slot across the hosts: since when.
    resumes: Mutex<HashMap<String, Instant>>,
    /// Conversations' turns of this host whose turns before them ended,
    /// held (delayed) until their agent has a slot across the hosts.
    turns: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many decided runs to resume one claim looks at, at most.
const RESUMES_AT_ONCE: usize = 1_000;

/// How long a decided run to resume is kept without the store naming it
/// (a decision made here, which the store's list of them read just before
/// may not hold yet).
const RESUME_KEPT: Duration = Duration::from_secs(10);

/// What this host may claim: its registry's agents and versions, and what
/// it holds back for a slot.
struct Known<'a>(&'a Registry, &'a Scheduler<Job, Arc<Execution>>, Vec<String>);

impl Slots for Known<'_> {
    fn here(&self) -> HashMap<String, usize> {
        self.1.busy_by_agent()
    }

    fn of_agent(&self, agent_id: &str) -> Option<usize> {
        self.0.max_concurrency(agent_id)
    }

    fn runnable(&self) -> Vec<String> {
        self.0.runnable_versions()
    }

    fn held_back(&self) -> Vec<String> {
        self.2.clone()
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
        let mut held: Vec<String> = {
            // A turn cancelled as it waited is held no more.
            let mut turns = lock(&self.shared.turns);
            turns.retain(|id| self.scheduler.is_delayed(id));
            turns.iter().cloned().collect()
        };
        // What waits out a delay here (a turn behind others, or held back
        // for a slot) takes no room until it joins the queue.
        let room = self.scheduler.room();
        if room == 0 || self.is_draining() {
            return Ok((0, room));
        }
        held.extend(lock(&self.shared.resumes).keys().take(RESUMES_AT_ONCE).cloned());
        let known = Known(&self.registry, &self.scheduler, held);
        let claimed = self.store.claim(room, time::now_ms(), &known, surely).await?;
        // This host's turns go on here (they were queued here all along); a
        // turn that waited for a decision resumes as any other run.
        let (turns, claimed): (Vec<_>, Vec<_>) = claimed
            .into_iter()
            .partition(|e| e.conversation_id.is_some() && e.status != Status::AwaitingApproval);
        for turn in &turns {
            lock(&self.shared.turns).remove(&turn.id);
            self.launch(self.scheduler.end_delay(&turn.id));
        }
        {
            let mut resumes = lock(&self.shared.resumes);
            for execution in claimed.iter().filter(|e| e.status == Status::AwaitingApproval) {
                resumes.remove(&execution.id);
            }
        }
        let n = claimed.len() + turns.len();
        if self.is_draining() {
            // Shutting down meanwhile: nothing more starts here.
            let ids: Vec<String> = claimed.into_iter().map(|e| e.id).collect();
            self.store.give_back(&ids).await?;
            self.hint();
            return Ok((0, room));
        }
        for execution in claimed {
            self.queue_claimed(execution).await;
        }
        if self.is_draining() {
            // The drain began while these were queued, and may have given
            // back what was queued before them: these go back too.
            self.give_back().await;
            return Ok((0, room));
        }
        self.launch(self.scheduler.dispatch());
        Ok((n, room))
    }

    /// A conversation's turn whose turns before it ended joins the queue: on
    /// a store several hosts share, once its agent has a slot across them.
    pub(super) fn turn_ready(self: &Arc<Self>, id: &str) {
        if self.shares_queue() {
            lock(&self.shared.turns).insert(id.to_owned());
            self.wake_claims();
        } else {
            self.launch(self.scheduler.end_delay(id));
        }
    }

    /// A decided run, unloaded while it waited, resumes here once its agent
    /// has a slot across the hosts (unless another host resumes it first).
    pub(super) fn resume_when_room(&self, id: &str) {
        lock(&self.shared.resumes)
            .entry(id.to_owned())
            .or_insert_with(Instant::now);
        self.wake_claims();
    }

    /// Of the decided runs to resume, keeps those the store still names
    /// (`decided`: it waits for a decision no more, and nobody holds it),
    /// and those named here lately.
    pub(super) fn keep_resumes(&self, decided: &[String]) {
        let decided: HashSet<&str> = decided.iter().map(String::as_str).collect();
        lock(&self.shared.resumes).retain(|id, since| decided.contains(id.as_str()) || since.elapsed() < RESUME_KEPT);
    }

    /// An execution this host claimed joins its queue (not started yet): a
    /// decided run (`awaiting_approval`) to resume by replaying its journal.
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
        let resume = execution.status == Status::AwaitingApproval;
        if !resume {
            execution.status = Status::Queued;
        }
        let events = self.lifecycle.log_of(&execution).await;
        let id = execution.id.clone();
        // Marked first: once in the queue, it may start and end at once.
        let marked = lock(&self.shared.foreign).insert(id.clone());
        let claimed = self.scheduler.claimed(Job {
            execution,
            version,
            events,
            resume,
        });
        if marked && claimed != Some(false) {
            lock(&self.shared.foreign).remove(&id);
        }
    }

    /// An execution claimed from the shared queue ended here (or waits for a
    /// decision, unloaded): the host that accepted it, if another, is hinted
    /// to look.
    pub(super) fn ended_here(&self, id: &str) {
        if lock(&self.shared.foreign).remove(id) {
            self.hint();
        }
    }

    /// Stops what runs or waits here that another host took over (this
    /// host's lease ran out, say while it was paused or cut off from the
    /// database): a run is stopped at once, without writing (what it would
    /// write is the other host's now), and whoever waits for it here hears
    /// the end the other host stores. How many.
    pub async fn surrender_taken(&self) -> Result<usize, StoreError> {
        let here = self.scheduler.here();
        let taken = self.store.taken_over(&here).await?;
        let mut surrendered = 0;
        for id in taken {
            if self.scheduler.surrender(&id) {
                tracing::warn!(
                    execution = %id,
                    "another host took this execution over (this host's lease ran out): stopped here"
                );
                self.lifecycle.detach(&id);
                lock(&self.shared.foreign).remove(&id);
                surrendered += 1;
            }
        }
        Ok(surrendered)
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

    /// A host shutting down (which starts nothing more) gives back what it
    /// claimed and had not started, for another host to run now.
    pub async fn give_back(&self) {
        if !self.shares_queue() {
            return;
        }
        let queued = self.scheduler.queued();
        match self.store.give_back(&queued).await {
            Ok(given) => {
                for id in &given {
                    self.scheduler.give_back(id);
                    lock(&self.shared.foreign).remove(id);
                }
                if !given.is_empty() {
                    self.hint();
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not give back what this host claimed"),
        }
    }

    /// Follows an execution another host may run, for whoever waits here.
    pub(super) fn follow(&self, id: &str, agent_id: &str) -> super::Watch {
        let watch = self.scheduler.follow(None, id, agent_id);
        self.wake_claims();
        watch
    }

    /// Learns where the executions followed here are: those another host
    /// took stream from the store from now on; those ended are announced.
    /// Those nobody here waits for are looked at only on a sweep (`round`,
    /// a batch at a time, in turn), and forgotten once another host took
    /// them (they are the store's).
    async fn look_elsewhere(&self, sweep: Option<usize>) -> Result<(), StoreError> {
        let (awaited, mut unawaited): (Vec<_>, Vec<_>) = self
            .scheduler
            .elsewhere()
            .into_iter()
            .partition(|(id, waited)| *waited || self.lifecycle.is_streamed(id));
        let mut ids: Vec<String> = awaited.into_iter().map(|(id, _)| id).collect();
        let mut forget = HashSet::new();
        if let Some(round) = sweep
            && !unawaited.is_empty()
        {
            unawaited.sort_unstable();
            let from = round.wrapping_mul(SWEEP_BATCH) % unawaited.len();
            unawaited.rotate_left(from);
            forget = unawaited.into_iter().take(SWEEP_BATCH).map(|(id, _)| id).collect();
            ids.extend(forget.iter().cloned());
        }
        if ids.is_empty() {
            return Ok(());
        }
        let found = self.store.whereabouts(&ids).await?;
        for id in &found.elsewhere {
            if !self.scheduler.is_elsewhere(id) {
                continue;
            }
            self.lifecycle.detach(id);
            if forget.contains(id) && self.scheduler.unfollow(id, true).is_some() {
                lock(&self.shared.unsure).remove(id);
            }
        }
        for execution in found.ended {
            let id = execution.id.clone();
            if !self.scheduler.is_elsewhere(&id) || self.not_over_yet(&execution) {
                continue;
            }
            self.lifecycle.detach(&id);
            self.scheduler.announce(&id, Some(Arc::new(execution)));
        }
        for id in &found.gone {
            if self.scheduler.is_elsewhere(id) {
                lock(&self.shared.unsure).remove(id);
                self.lifecycle.detach(id);
                self.scheduler.announce(id, None);
            }
        }
        Ok(())
    }

    /// Whether a stored end is not yet one for whoever waits here: a failed
    /// run its policy retries, before the retry is linked to it (for a
    /// while); a run waiting for a decision, within its grace (its host
    /// holds it meanwhile, and may go on at once).
    fn not_over_yet(&self, execution: &Execution) -> bool {
        let wait = match execution.status {
            Status::AwaitingApproval => Duration::from_millis(self.settings.durability.approval_grace_ms),
            Status::Failed if execution.retried_by.is_none() => {
                let retried = self
                    .registry
                    .version(&execution.agent_version_id)
                    .is_some_and(|(_, v)| super::retry::retryable(execution, &v).is_some());
                if !retried {
                    return false;
                }
                RETRY_LINK_WAIT
            }
            _ => Duration::ZERO,
        };
        let mut unsure = lock(&self.shared.unsure);
        if wait.is_zero() {
            unsure.remove(&execution.id);
            return false;
        }
        let seen = unsure
            .entry(execution.id.clone())
            .or_insert_with(|| (execution.status, Instant::now()));
        // Another status than the one seen (a second decision asked): anew.
        if seen.0 != execution.status {
            *seen = (execution.status, Instant::now());
        }
        let waiting = seen.1.elapsed() < wait;
        if !waiting {
            unsure.remove(&execution.id);
        }
        waiting
    }
}

/// Until the host closes: claims when woken or every [`POLL`], as long as
/// there is room and something to claim, then looks for what it follows.
async fn claim_and_follow(executions: Weak<Executions>) {
    let mut polls = 0u32;
    let mut warned: Option<Instant> = None;
    let mut warn = |what: &str, e: StoreError| {
        if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            warned = Some(Instant::now());
            tracing::warn!(error = %e, "could not {what} (said again at most every 10 s)");
        }
    };
    loop {
        polls = polls.wrapping_add(1);
        let (wake, hinted) = match executions.upgrade() {
            Some(this) => (Arc::clone(&this.wake), this.store.hinted()),
            None => return,
        };
        // Woken here: something waits, or room was made. Hinted: another
        // host's work or end, or none (hints go to every host).
        let surely = tokio::select! {
            () = wake.notified() => true,
            () = async {
                match &hinted {
                    Some(hinted) => hinted.notified().await,
                    None => std::future::pending().await,
                }
            } => false,
            () = tokio::time::sleep(POLL) => false,
        };
        let Some(this) = executions.upgrade() else { return };
        if *this.closing.borrow() {
            return;
        }
        let mut surely = surely;
        loop {
            match this.claim(surely).await {
                Ok((n, room)) if n > 0 && n == room => surely = false,
                Ok(_) => break,
                Err(e) => {
                    warn("claim from the shared queue", e);
                    break;
                }
            }
        }
        let sweep = polls
            .is_multiple_of(SWEEP_EVERY)
            .then_some((polls / SWEEP_EVERY) as usize);
        if let Err(e) = this.look_elsewhere(sweep).await {
            warn("read the executions other hosts run", e);
        }
    }
}
