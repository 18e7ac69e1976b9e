//! Firing: one loop sleeps until the earliest slot (or a change), then takes
//! the schedules due, a few at a time, each on its own (one that fails never
//! holds up the others). A slot's run is fixed (its execution id) and the
//! schedule advanced in one commit before the run is made, so a restart makes
//! a fixed run that is missing and never a slot twice. After downtime the
//! newest missed slot runs if it is inside the catch-up window; the overlap
//! policy is checked against the schedule's previous run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::Schedules;
use super::cron::Pattern;
use crate::executions::{Accepted, NewExecution, SubmitError, Target};
use crate::record::{Overlap, Schedule, Trigger};
use crate::store::StoreError;
use crate::{ids, time};

/// Schedules read per pass.
const BATCH: u32 = 500;
/// Schedules handled at once.
const CONCURRENCY: usize = 32;
/// How long a schedule that could not fire waits before it is tried again.
const SET_ASIDE: Duration = Duration::from_secs(60);
/// Longest the loop sleeps without looking (a buffered slot's previous run
/// ending is noticed by then at the latest).
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub(super) async fn run(schedules: Weak<Schedules>, mut closing: watch::Receiver<bool>) {
    loop {
        let Some(this) = schedules.upgrade() else { return };
        if *closing.borrow() {
            return;
        }
        // While the host drains, nothing new is accepted: slots wait for
        // its successor (which makes the fixed ones and catches up). On a
        // store several hosts share, only the leading host fires.
        if this.executions.is_draining() || !this.backend.leads() {
            drop(this);
            tokio::select! {
                () = tokio::time::sleep(MAX_SLEEP) => {}
                _ = closing.changed() => {}
            }
            continue;
        }
        let now = time::now_ms();
        let failed = AtomicUsize::new(0);
        let full = match this.store.due(now, BATCH).await {
            Ok(due) => {
                let slots_due = due
                    .iter()
                    .filter(|s| s.enabled && s.next_run_at.is_some_and(|t| t <= now))
                    .count();
                futures_util::stream::iter(due)
                    .for_each_concurrent(CONCURRENCY, |s| {
                        let (this, failed) = (Arc::clone(&this), &failed);
                        async move {
                            let id = s.id.clone();
                            if let Err(e) = this.handle(s, now).await {
                                failed.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(schedule = %id, error = %e, "a failing schedule could not be set aside");
                            }
                        }
                    })
                    .await;
                slots_due == BATCH as usize
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "could not read the schedules due");
                false
            }
        };
        let failed = failed.load(Ordering::Relaxed) > 0;
        if full && !failed {
            continue;
        }
        let next = this.store.next_due().await.ok().flatten();
        // After a failure (storage failing, say), a pause before trying again.
        let wait = match (failed, next) {
            (true, _) | (_, None) => MAX_SLEEP,
            (false, Some(t)) => Duration::from_millis(t.saturating_sub(time::now_ms()).max(0) as u64).min(MAX_SLEEP),
        };
        // (It holds the schedules for at most a second: a closing host ends it.)
        let woken = this.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = woken => {}
            _ = closing.changed() => {}
        }
    }
}

impl Schedules {
    /// Whether the schedule's previous run has not ended.
    async fn previous_runs(&self, s: &Schedule) -> Result<bool, StoreError> {
        let Some(id) = &s.last_execution_id else {
            return Ok(false);
        };
        if let Some(done) = self.executions.watch(id) {
            return Ok(done.borrow().as_ref().is_none_or(|e| !e.status.is_terminal()));
        }
        Ok(self
            .executions_store
            .get(id)
            .await?
            .is_some_and(|e| !e.status.is_terminal()))
    }

    /// One due schedule, in its turn (across hosts too); one that cannot fire
    /// is set aside (in the same turn, so no change made meanwhile is
    /// undone), and the others go on at their time.
    async fn handle(&self, due: Schedule, now: i64) -> anyhow::Result<()> {
        let turn = self.turn(&due.id).await?;
        let handled = match self.fire_due(&due.id, now).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(schedule = %due.id, error = %e, "a schedule could not fire");
                self.set_aside(&due.id, now, &e).await
            }
        };
        turn.end().await;
        handled
    }

    /// A fixed run made, a buffered slot run, a slot fired or skipped, and
    /// the next slot set.
    async fn fire_due(&self, id: &str, now: i64) -> anyhow::Result<()> {
        // Read again under the lock: changed or deleted meanwhile.
        let Some(mut s) = self.store.get(id).await? else {
            return Ok(());
        };
        // A fixed run and a buffered slot are made even once the schedule
        // is disabled (by its end, say); new slots only while enabled.
        if let Some(id) = s.pending_execution_id.clone() {
            self.make_fixed(&mut s, id).await?;
        }
        if let Some(slot) = s.buffered_slot
            && !self.previous_runs(&s).await?
        {
            s.buffered_slot = None;
            if let Err(e) = self.fire(&mut s, slot, false).await {
                tracing::warn!(schedule = %s.id, error = %e, "a buffered slot could not run");
            }
        }
        let Some(next) = s.next_run_at.filter(|t| *t <= now && s.enabled) else {
            return Ok(());
        };
        let pattern = Pattern::parse(&s.cron, &s.timezone)?;
        // The newest slot missed (the one due, unless the host was down),
        // not past the schedule's end.
        let until = s.end_at.map_or(now, |end| end.min(now));
        let slot = pattern.latest_until(until).unwrap_or(next).max(next);
        let window = (s.catchup_window_secs.min(i64::MAX as u64 / 1000) * 1000) as i64;
        s.next_run_at = pattern
            .next_after(now.max(slot))
            .filter(|t| *t > now && s.end_at.is_none_or(|end| *t <= end));
        if s.next_run_at.is_none() {
            s.enabled = false;
        }
        if now - slot > window.max(MAX_SLEEP.as_millis() as i64) {
            // Missed by more than the window: skipped.
            s.skipped += 1;
            s.last_slot = Some(slot);
            return self.save(s).await;
        }
        match (s.overlap, self.previous_runs(&s).await?) {
            (Overlap::Allow, _) | (_, false) => {
                // Its failure is on the schedule (`last_error`); the slot is spent.
                match self.fire(&mut s, slot, false).await {
                    Err(super::ScheduleError::Store(e)) => Err(e.into()),
                    _ => Ok(()),
                }
            }
            (Overlap::Skip, true) => {
                s.skipped += 1;
                s.last_slot = Some(slot);
                self.save(s).await
            }
            (Overlap::BufferOne, true) => {
                if s.buffered_slot.is_some() {
                    s.skipped += 1;
                }
                s.buffered_slot = Some(slot);
                s.last_slot = Some(slot);
                self.save(s).await
            }
        }
    }

    /// A schedule that could not fire (its lock held): its error noted (the
    /// store's own words stay in the host's log), its slot due again after
    /// [`SET_ASIDE`].
    async fn set_aside(&self, id: &str, now: i64, error: &anyhow::Error) -> anyhow::Result<()> {
        let Some(mut s) = self.store.get(id).await? else {
            return Ok(());
        };
        let why = if error.downcast_ref::<StoreError>().is_some() {
            "storage failed (the host's log says how)".to_owned()
        } else {
            format!("{error:#}")
        };
        s.last_error = Some(format!("could not fire: {why}"));
        let later = now + SET_ASIDE.as_millis() as i64;
        s.next_run_at = s.next_run_at.map(|t| t.max(later));
        self.save(s).await
    }

    async fn save(&self, mut s: Schedule) -> anyhow::Result<()> {
        s.updated_at = time::now_ms();
        self.store.save(s).await?;
        Ok(())
    }

    /// A run fixed before a restart: made now unless it exists.
    async fn make_fixed(&self, s: &mut Schedule, id: String) -> anyhow::Result<()> {
        let exists = self.executions.watch(&id).is_some() || self.executions_store.get(&id).await?.is_some();
        let slot = s.last_slot.unwrap_or_else(time::now_ms);
        let made = if exists {
            Ok(())
        } else {
            self.submit(s, id, slot).await.map(drop)
        };
        if matches!(made, Err(SubmitError::ShuttingDown)) {
            // Still fixed: the next start makes it.
            return Ok(());
        }
        s.pending_execution_id = None;
        s.last_error = made.err().map(|e| e.to_string());
        self.save(s.clone()).await
    }

    /// Fires a slot: the run fixed and the schedule advanced in one commit,
    /// then the run made. A slot's run refused because the host is shutting
    /// down stays fixed for the next start, unless `asked` (a person's
    /// trigger, told to ask again).
    pub(super) async fn fire(
        &self,
        s: &mut Schedule,
        slot: i64,
        asked: bool,
    ) -> Result<Accepted, super::ScheduleError> {
        let id = ids::execution();
        s.pending_execution_id = Some(id.clone());
        s.last_slot = Some(slot);
        s.last_execution_id = Some(id.clone());
        s.runs += 1;
        s.updated_at = time::now_ms();
        self.store.save(s.clone()).await?;
        let made = self.submit(s, id, slot).await;
        if matches!(made, Err(SubmitError::ShuttingDown)) && !asked {
            // Left fixed: the next start makes it.
            return Ok(made?);
        }
        s.pending_execution_id = None;
        s.last_error = made.as_ref().err().map(ToString::to_string);
        if made.is_err() {
            s.runs = s.runs.saturating_sub(1);
        }
        s.updated_at = time::now_ms();
        self.store.save(s.clone()).await?;
        Ok(made?)
    }

    async fn submit(&self, s: &Schedule, id: String, slot: i64) -> Result<Accepted, SubmitError> {
        let mut new = NewExecution::new(
            Target::Agent {
                workspace: s.workspace.clone(),
                agent: s.agent_id.clone(),
                version: s.version,
            },
            Arc::clone(&s.input),
            Trigger::Schedule,
        );
        new.id = Some(id);
        new.metadata = Some(Arc::clone(&s.metadata));
        new.priority = Some(s.priority);
        new.schedule = Some((s.id.clone(), slot));
        new.durable = true;
        self.executions.submit(new).await
    }
}
