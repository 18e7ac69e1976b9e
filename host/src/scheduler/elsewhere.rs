//! The scheduler's side of a store several hosts share: jobs accepted here
//! that wait in the store's queue or run on another host, followed here for
//! whoever waits for their end; jobs claimed from the store's queue; jobs
//! given back to it; and jobs another host took over.

use tokio::sync::watch;

use super::{Done, Job, Live, LiveState, Reservation, Scheduler, Watch};

impl<J: Job, O> Scheduler<J, O> {
    /// Follows a job accepted here that waits in the store's shared queue
    /// (holding its place in this host's bound until its end); or, without a
    /// reservation, one accepted elsewhere that somebody here waits for.
    pub fn follow(&self, reservation: Option<Reservation<'_, J, O>>, id: &str, agent_id: &str) -> Watch<O> {
        let counted = reservation.is_some();
        let mut inner = self.lock();
        // Claimed here already (the reservation, unused, gives its place back).
        if let Some(live) = inner.live.get(id) {
            let watch = live.done.subscribe();
            drop(inner);
            drop(reservation);
            return watch;
        }
        if let Some(mut reservation) = reservation {
            reservation.used = true;
            inner.elsewhere += 1;
        }
        let (done, watch) = watch::channel(None);
        inner.live.insert(
            id.to_owned(),
            Live {
                agent_id: agent_id.to_owned(),
                state: LiveState::Elsewhere { counted },
                done,
            },
        );
        watch
    }

    /// A job this host claimed from the shared queue joins this host's queue
    /// (whoever follows it here goes on waiting for its end): call
    /// [`Scheduler::dispatch`] next. Whether it was followed here; `None`
    /// when it is here already (queued or running: this host's claim lapsed
    /// and it took it back), and nothing changes.
    pub fn claimed(&self, job: J) -> Option<bool> {
        let mut inner = self.lock();
        let id = job.id().to_owned();
        let followed = match inner.live.get(&id) {
            None => false,
            Some(Live {
                state: LiveState::Elsewhere { .. },
                ..
            }) => true,
            Some(_) => return None,
        };
        let key = inner.queue.key(job.priority());
        match inner
            .live
            .get(&id)
            .map(|l| matches!(l.state, LiveState::Elsewhere { counted: true }))
        {
            Some(true) => inner.elsewhere = inner.elsewhere.saturating_sub(1),
            _ => inner.waiting += 1,
        }
        match inner.live.get_mut(&id) {
            Some(live) => live.state = LiveState::Queued(key),
            None => {
                let done = watch::channel(None).0;
                let agent_id = job.agent_id().to_owned();
                inner.live.insert(
                    id,
                    Live {
                        agent_id,
                        state: LiveState::Queued(key),
                        done,
                    },
                );
            }
        }
        inner.queue.push(key, job);
        Some(followed)
    }

    /// Stops following a job (claimed here to end it at once; or, `idle`,
    /// taken by another host while nobody here waits for it): where its end
    /// is to be announced, if it was followed (and, `idle`, nobody waits).
    pub fn unfollow(&self, id: &str, idle: bool) -> Option<Done<O>> {
        let mut inner = self.lock();
        if !inner
            .live
            .get(id)
            .is_some_and(|l| matches!(l.state, LiveState::Elsewhere { .. }) && !(idle && l.done.receiver_count() > 0))
        {
            return None;
        }
        let live = inner.live.remove(id)?;
        if matches!(live.state, LiveState::Elsewhere { counted: true }) {
            inner.waiting = inner.waiting.saturating_sub(1);
            inner.elsewhere = inner.elsewhere.saturating_sub(1);
        }
        Some(live.done)
    }

    /// Follows again a job taken out of this host's queue (to be ended here)
    /// that another host holds now: whoever waits on `done` hears the end
    /// that host stores. Whether it is followed (not when it is live here
    /// again meanwhile).
    pub fn refollow(&self, id: &str, agent_id: &str, done: Done<O>) -> bool {
        let mut inner = self.lock();
        if inner.live.contains_key(id) {
            return false;
        }
        inner.live.insert(
            id.to_owned(),
            Live {
                agent_id: agent_id.to_owned(),
                state: LiveState::Elsewhere { counted: false },
                done,
            },
        );
        true
    }

    /// How many more jobs this host has room to claim, to start now: its
    /// cap, less what runs and what its queue holds (not what waits out a
    /// delay, nor reservations).
    pub fn room(&self) -> usize {
        let inner = self.lock();
        if inner.paused {
            return 0;
        }
        let busy: usize = inner.queue.busy_by_agent().values().sum();
        self.max_running.saturating_sub(busy)
    }

    /// Whether a job waits out a delay here (held until it ends).
    pub fn is_delayed(&self, id: &str) -> bool {
        self.lock()
            .live
            .get(id)
            .is_some_and(|l| matches!(l.state, LiveState::Delayed(_)))
    }

    /// Whether a job is followed elsewhere (not claimed here).
    pub fn is_elsewhere(&self, id: &str) -> bool {
        self.lock()
            .live
            .get(id)
            .is_some_and(|l| matches!(l.state, LiveState::Elsewhere { .. }))
    }

    /// A job in this host's queue, given back to the shared queue: followed
    /// from now on (for whoever waits here), its place in the bound kept.
    pub fn give_back(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let Some((agent_id, key)) = inner.live.get(id).and_then(|l| match l.state {
            LiveState::Queued(key) => Some((l.agent_id.clone(), key)),
            _ => None,
        }) else {
            return false;
        };
        if inner.queue.remove(&agent_id, key).is_none() {
            return false;
        }
        inner.elsewhere += 1;
        if let Some(live) = inner.live.get_mut(id) {
            live.state = LiveState::Elsewhere { counted: true };
        }
        true
    }

    /// Another host took a job of this host over: one waiting here (queued
    /// or delayed) is followed from now on, its place in the bound kept; one
    /// running is asked to stop ([`LiveState::Surrendered`]). Whether it was
    /// here.
    pub fn surrender(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let Some(live) = inner.live.get_mut(id) else {
            return false;
        };
        let agent_id = live.agent_id.clone();
        match std::mem::replace(&mut live.state, LiveState::Elsewhere { counted: true }) {
            LiveState::Running(stop) => {
                live.state = LiveState::Surrendered;
                if let Some(stop) = stop {
                    let _ = stop.send(());
                }
            }
            LiveState::CancelRequested => live.state = LiveState::Surrendered,
            LiveState::Delayed(_) => inner.elsewhere += 1,
            LiveState::Queued(key) => {
                inner.queue.remove(&agent_id, key);
                inner.elsewhere += 1;
            }
            other => {
                live.state = other;
                return false;
            }
        }
        true
    }

    /// Whether another host took over a job running here.
    pub fn is_surrendered(&self, id: &str) -> bool {
        self.lock()
            .live
            .get(id)
            .is_some_and(|l| matches!(l.state, LiveState::Surrendered))
    }

    /// The jobs of this host: running, queued or delayed.
    pub fn here(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .live
            .iter()
            .filter(|(_, l)| {
                matches!(
                    l.state,
                    LiveState::Running(_) | LiveState::CancelRequested | LiveState::Queued(_) | LiveState::Delayed(_)
                )
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The jobs in this host's queue (not delayed, not started).
    pub fn queued(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .live
            .iter()
            .filter(|(_, l)| matches!(l.state, LiveState::Queued(_)))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The jobs followed elsewhere, and whether anybody waits for each one's end.
    pub fn elsewhere(&self) -> Vec<(String, bool)> {
        let inner = self.lock();
        inner
            .live
            .iter()
            .filter(|(_, l)| matches!(l.state, LiveState::Elsewhere { .. }))
            .map(|(id, l)| (id.clone(), l.done.receiver_count() > 0))
            .collect()
    }
}
